//! The deployment files under `deploy/` (issue #5), checked without a cluster or network: the
//! Kubernetes manifests parse and fit together (ports, probes, drain timing, selectors), the
//! ConfigMap's configuration is one ringfence accepts, the PrometheusRule is the plain rules file,
//! and the alerts and the Grafana dashboard only query metrics ringfence exports (SPEC §9).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

mod common;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of every YAML file in `deploy/kubernetes`, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|e| panic!("{name}: not YAML: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn one<'a>(docs: &'a [(String, Value)], wanted: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|(_, d)| kind(d) == wanted)
        .map(|(_, d)| d)
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one {wanted}");
    found[0]
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {v:?}"))
}

fn int_of(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what}: expected a number, found {v:?}"))
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_owned(),
                        v.as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A selector matches when every one of its labels is on the object.
fn selects(selector: &BTreeMap<String, String>, on: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| on.get(k) == Some(v))
}

fn config_toml(docs: &[(String, Value)]) -> String {
    str_of(
        &one(docs, "ConfigMap")["data"]["ringfence.toml"],
        "ConfigMap data.ringfence.toml",
    )
    .to_owned()
}

fn config(docs: &[(String, Value)]) -> ringfence::config::Config {
    ringfence::config::Config::from_toml(&config_toml(docs))
        .unwrap_or_else(|e| panic!("the ConfigMap's ringfence.toml is refused: {e}"))
}

#[test]
fn every_manifest_parses_and_the_kinds_are_there() {
    let docs = manifests();
    let kinds: BTreeSet<&str> = docs.iter().map(|(_, d)| kind(d)).collect();
    for wanted in [
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PrometheusRule",
        "Kustomization",
    ] {
        assert!(kinds.contains(wanted), "no {wanted} in deploy/kubernetes");
    }
    for (file, doc) in &docs {
        assert!(doc["apiVersion"].as_str().is_some(), "{file}: apiVersion");
        if kind(doc) != "Kustomization" {
            assert!(doc["metadata"]["name"].as_str().is_some(), "{file}: name");
        }
    }
    assert_eq!(
        one(&docs, "HorizontalPodAutoscaler")["apiVersion"],
        "autoscaling/v2"
    );
    assert_eq!(one(&docs, "PodDisruptionBudget")["apiVersion"], "policy/v1");
    assert_eq!(
        one(&docs, "PrometheusRule")["apiVersion"],
        "monitoring.coreos.com/v1"
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let docs = manifests();
    let listed: BTreeSet<String> = one(&docs, "Kustomization")["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| str_of(r, "resource").to_owned())
        .collect();
    let files: BTreeSet<String> = docs
        .iter()
        .filter(|(_, d)| kind(d) != "Kustomization")
        .map(|(f, _)| f.clone())
        .collect();
    assert_eq!(listed, files);
}

#[test]
fn configmap_holds_a_configuration_ringfence_accepts() {
    let docs = manifests();
    let config = config(&docs);
    assert!(
        !config.admin().listen.ip().is_loopback(),
        "the kubelet and Prometheus reach the admin listener on the pod IP"
    );
    assert!(config
        .server()
        .listen
        .iter()
        .all(|a| a.ip().is_unspecified()));
    assert!(
        config.server().tls.is_none(),
        "TLS files do not exist here; keep the example plain HTTP"
    );
}

#[test]
fn deployment_probes_drains_and_runs_unprivileged() {
    let docs = manifests();
    let config = config(&docs);
    let deployment = one(&docs, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(int_of(&spec["replicas"], "replicas"), 3);
    let pod_labels = labels(&spec["template"]["metadata"]["labels"]);
    assert!(selects(
        &labels(&spec["selector"]["matchLabels"]),
        &pod_labels
    ));
    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // Named ports match the configuration's listeners.
    let ports: BTreeMap<String, u64> = c["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                str_of(&p["name"], "port name").to_owned(),
                int_of(&p["containerPort"], "containerPort"),
            )
        })
        .collect();
    assert_eq!(
        ports.get("admin"),
        Some(&u64::from(config.admin().listen.port()))
    );
    assert_eq!(
        ports.get("proxy"),
        Some(&u64::from(config.server().listen[0].port()))
    );
    let admin_port = |probe: &Value| -> u64 {
        match &probe["httpGet"]["port"] {
            Value::String(name) => *ports.get(name).expect("probe port is a named port"),
            other => int_of(other, "probe port"),
        }
    };
    for (probe, path) in [("livenessProbe", "/live"), ("readinessProbe", "/ready")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(
            admin_port(&c[probe]),
            u64::from(config.admin().listen.port()),
            "{probe} must hit the admin listener"
        );
    }

    // Drain: preStop delay, then SIGTERM and shutdown_grace, all inside the grace period.
    let pre_stop = &c["lifecycle"]["preStop"];
    assert!(pre_stop.is_mapping(), "a preStop hook");
    let delay = pre_stop["sleep"]["seconds"].as_u64().unwrap_or(0);
    assert!(delay >= 5 || pre_stop["exec"].is_mapping(), "preStop waits");
    let grace = int_of(
        &pod["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    assert!(
        Duration::from_secs(grace) > Duration::from_secs(delay) + config.server().shutdown_grace,
        "terminationGracePeriodSeconds {grace} must exceed preStop {delay}s + shutdown_grace {:?}",
        config.server().shutdown_grace
    );

    // Unprivileged.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert!(sc["capabilities"]["drop"]
        .as_sequence()
        .expect("capabilities.drop")
        .iter()
        .any(|d| d == "ALL"));
    for r in ["requests", "limits"] {
        for what in ["cpu", "memory"] {
            assert!(c["resources"][r][what].as_str().is_some(), "{r}.{what}");
        }
    }

    // The configuration comes from the ConfigMap, mounted where the image looks for it.
    let cm_name = str_of(&one(&docs, "ConfigMap")["metadata"]["name"], "name");
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let config_path = Path::new(args[args.iter().position(|a| *a == "--config").unwrap() + 1]);
    let volume_name = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| {
            v["configMap"]["name"] == cm_name
                || v["projected"]["sources"]
                    .as_sequence()
                    .is_some_and(|s| s.iter().any(|s| s["configMap"]["name"] == cm_name))
        })
        .map(|v| str_of(&v["name"], "volume name"))
        .expect("a volume from the ConfigMap");
    let mount = c["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == volume_name)
        .expect("the ConfigMap volume is mounted");
    assert_eq!(
        Path::new(str_of(&mount["mountPath"], "mountPath")).join("ringfence.toml"),
        config_path
    );
    assert!(
        mount["subPath"].is_null(),
        "a subPath mount never sees ConfigMap updates"
    );
    assert!(
        spec["template"]["metadata"]["annotations"]["ringfence.io/config-checksum"].is_string()
    );
    assert!(
        pod["topologySpreadConstraints"].is_sequence()
            || pod["affinity"]["podAntiAffinity"].is_mapping()
    );
}

#[test]
fn services_pdb_hpa_and_servicemonitor_fit_the_deployment() {
    let docs = manifests();
    let deployment = one(&docs, "Deployment");
    let name = str_of(&deployment["metadata"]["name"], "name");
    let pod_labels = labels(&deployment["spec"]["template"]["metadata"]["labels"]);
    let container_ports: BTreeSet<String> = deployment["spec"]["template"]["spec"]["containers"][0]
        ["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();

    let services: Vec<&Value> = docs
        .iter()
        .filter(|(_, d)| kind(d) == "Service")
        .map(|(_, d)| d)
        .collect();
    let mut metrics_service = None;
    for s in &services {
        assert!(selects(&labels(&s["spec"]["selector"]), &pod_labels));
        for p in s["spec"]["ports"].as_sequence().unwrap() {
            let target = str_of(&p["targetPort"], "targetPort (named)");
            assert!(
                container_ports.contains(target),
                "no container port {target}"
            );
            if p["name"] == "metrics" {
                assert_eq!(target, "admin");
                assert_ne!(
                    s["spec"]["type"], "LoadBalancer",
                    "the admin port must stay inside the cluster"
                );
                metrics_service = Some(*s);
            }
        }
    }
    let metrics_service = metrics_service.expect("a Service port named metrics");
    assert!(services.iter().any(|s| s["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|p| p["targetPort"] == "proxy")));

    let pdb = &one(&docs, "PodDisruptionBudget")["spec"];
    assert!(selects(
        &labels(&pdb["selector"]["matchLabels"]),
        &pod_labels
    ));
    assert!(pdb["minAvailable"] == 2 || pdb["maxUnavailable"] == 1);

    let hpa = &one(&docs, "HorizontalPodAutoscaler")["spec"];
    assert_eq!(hpa["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["scaleTargetRef"]["name"], name);
    assert!(int_of(&hpa["minReplicas"], "minReplicas") >= 3);
    assert!(hpa["metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| m["resource"]["name"] == "cpu"));

    let sm = &one(&docs, "ServiceMonitor")["spec"];
    assert!(selects(
        &labels(&sm["selector"]["matchLabels"]),
        &labels(&metrics_service["metadata"]["labels"])
    ));
    let endpoint = &sm["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
}

/// SPEC §9: every metric ringfence exports (the histograms also as `_bucket`, `_sum`, `_count`),
/// and the `process_*` metrics of the prometheus crate's process collector.
const HISTOGRAMS: &[&str] = &[
    "ringfence_http_request_duration_seconds",
    "ringfence_upstream_request_duration_seconds",
];
const METRICS: &[&str] = &[
    "ringfence_http_requests_total",
    "ringfence_policy_decisions_total",
    "ringfence_upstream_requests_total",
    "ringfence_upstream_errors_total",
    "ringfence_upstream_member_healthy",
    "ringfence_upstream_connections",
    "ringfence_connections_open",
    "ringfence_connections_parked",
    "ringfence_connections_refused_total",
    "ringfence_accept_errors_total",
    "ringfence_upstream_probe_failures_total",
    "ringfence_tls_handshake_errors_total",
    "ringfence_config_reloads_total",
    "ringfence_config_last_reload_success_timestamp_seconds",
    "ringfence_build_info",
    "ringfence_client_body_timeouts_total",
    "ringfence_tls_certificate_expiry_timestamp_seconds",
    "ringfence_config_info",
    "ringfence_organisation_mode",
    "ringfence_rate_limited_total",
    "ringfence_http_requests_in_flight",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

// ALLOW-LIST, TO BE REMOVED WHEN THE BRANCH THAT ADDS THEM IS MERGED (issue 11): metrics another
// branch adds to src/metrics.rs in parallel. The dashboard and the alerts use them already; once
// ringfence exports them, `the_metric_list_matches_what_ringfence_exports` fails until they are
// moved into METRICS and this list is deleted.
const PENDING_METRICS: &[&str] = &[];

/// Registered by the audit trail and the access log as they start (`Shared::new`), not by
/// `Metrics::new`.
const TRAIL_METRICS: &[&str] = &[
    "ringfence_audit_lines_total",
    "ringfence_audit_queue_lines",
    "ringfence_access_log_lines_total",
    "ringfence_access_log_queue_lines",
];

fn known_metrics() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = METRICS
        .iter()
        .chain(PENDING_METRICS)
        .chain(TRAIL_METRICS)
        .map(|m| m.to_string())
        .collect();
    for h in HISTOGRAMS {
        for suffix in ["_bucket", "_sum", "_count"] {
            known.insert(format!("{h}{suffix}"));
        }
    }
    known
}

#[test]
fn the_metric_list_matches_what_ringfence_exports() {
    let metrics = ringfence::metrics::Metrics::new();
    let text = String::from_utf8(metrics.encode()).unwrap();
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let listed: BTreeSet<&str> = METRICS.iter().chain(HISTOGRAMS).copied().collect();
    for name in &exported {
        assert!(
            listed.contains(name),
            "{name} is exported but not in SPEC §9's list here"
        );
    }
    for name in PENDING_METRICS {
        assert!(
            !exported.contains(name),
            "{name} is exported now: move it from PENDING_METRICS to METRICS"
        );
    }
    if cfg!(target_os = "linux") {
        for name in METRICS.iter().filter(|m| m.starts_with("process_")) {
            assert!(exported.contains(name), "{name} is not exported");
        }
    }
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
];
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// aggregations, keywords, label names in `by (...)`-like lists, label matchers `{...}`, ranges
/// `[...]`, strings, numbers or Grafana variables.
fn metric_names(expr: &str) -> Vec<String> {
    // Strings first (they may hold braces or parentheses), then matchers and ranges.
    let mut plain = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
                plain.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                for d in chars.by_ref() {
                    if d == close {
                        break;
                    }
                }
                plain.push(' ');
            }
            // Grafana variables ($x, ${x}).
            '$' => {
                while chars
                    .peek()
                    .is_some_and(|d| d.is_ascii_alphanumeric() || matches!(d, '_' | '{' | '}'))
                {
                    chars.next();
                }
                plain.push(' ');
            }
            _ => plain.push(c),
        }
    }
    let bytes: Vec<char> = plain.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() || (c == '.' && bytes.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // Numbers and durations: 0.99, 1e3, 5m, 0x1F.
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            let mut j = i;
            while j < bytes.len() && bytes[j].is_whitespace() {
                j += 1;
            }
            let call = bytes.get(j) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) && call {
                // Skip the label list.
                while i < bytes.len() && bytes[i] != ')' {
                    i += 1;
                }
            } else if !call
                && !AGGREGATIONS.contains(&word.as_str())
                && !KEYWORDS.contains(&word.as_str())
            {
                names.push(word);
            }
            continue;
        }
        i += 1;
    }
    names
}

#[test]
fn the_promql_scanner_finds_metric_names_only() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, route) (rate(ringfence_http_request_duration_seconds_bucket{job=~"$job", route="a{b}"}[$__rate_interval]))) > 1e3"#
        ),
        ["ringfence_http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names(
            "a / on (x) group_left (y) b offset 5m or absent(up) unless sum(c) without (d)"
        ),
        ["a", "b", "up", "c"]
    );
}

fn rules_file() -> Value {
    serde_yaml::from_str(&read("deploy/prometheus/ringfence-rules.yml")).expect("rules YAML")
}

#[test]
fn prometheus_rule_spec_is_the_plain_rules_file() {
    let docs = manifests();
    let spec = &one(&docs, "PrometheusRule")["spec"];
    let plain = rules_file();
    if *spec != plain {
        // Name the first rule that differs rather than printing both files.
        let rules = |v: &Value| -> Vec<Value> {
            v["groups"]
                .as_sequence()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
                .collect()
        };
        let (a, b) = (rules(spec), rules(&plain));
        let differing = a
            .iter()
            .zip(&b)
            .find(|(x, y)| x != y)
            .map(|(x, _)| format!("{:?}", x["alert"]))
            .unwrap_or_else(|| format!("group names or rule count ({} vs {})", a.len(), b.len()));
        panic!(
            "deploy/kubernetes/prometheusrule.yaml spec differs from \
             deploy/prometheus/ringfence-rules.yml at {differing}"
        );
    }
}

#[test]
fn alerts_are_complete_and_query_known_metrics() {
    let mut known = known_metrics();
    known.insert("up".into());
    let mut alerts = BTreeSet::new();
    for group in rules_file()["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = str_of(&rule["alert"], "alert").to_owned();
            let expr = str_of(&rule["expr"], "expr");
            for metric in metric_names(expr) {
                assert!(known.contains(&metric), "{name}: unknown metric {metric}");
            }
            assert!(rule["for"].is_string(), "{name}: for");
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("critical" | "warning" | "info")
                ),
                "{name}: severity"
            );
            for a in ["summary", "description"] {
                assert!(rule["annotations"][a].is_string(), "{name}: {a}");
            }
            assert!(alerts.insert(name), "duplicate alert");
        }
    }
    for wanted in [
        "RingfenceDenialSpike",
        "RingfenceNoHealthyMember",
        "RingfenceReloadFailures",
        "RingfenceUpstreamErrorRate",
        "RingfenceDown",
        "RingfenceMemberUnhealthy",
        "RingfenceProbeTlsFailures",
        "RingfenceConnectionsRefused",
        "RingfenceIdleConnectionsHoldTheSlots",
        "RingfenceSlowRequestBodies",
        "RingfenceCertificateExpiresSoon",
        "RingfenceCertificateExpiryCritical",
        "RingfenceConfigurationMismatch",
    ] {
        assert!(alerts.contains(wanted), "no alert {wanted}");
    }
}

fn panels(list: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    for p in list.as_array().into_iter().flatten() {
        out.push(p.clone());
        panels(&p["panels"], out);
    }
}

#[test]
fn dashboard_queries_known_metrics_through_the_datasource_variable() {
    let text = read("deploy/grafana/ringfence-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert!(dash["schemaVersion"].as_u64().unwrap_or(0) >= 36);
    let variables = dash["templating"]["list"].as_array().expect("templating");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a datasource variable of type prometheus"
    );

    let known = known_metrics();
    let mut all = Vec::new();
    panels(&dash["panels"], &mut all);
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut exprs = 0;
    for p in &all {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id at {title}"
        );
        for t in p["targets"].as_array().into_iter().flatten() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: expr"));
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: no metric in {expr}");
            for name in names {
                assert!(
                    known.contains(&name),
                    "{title}: unknown metric {name} in {expr}"
                );
                used.insert(name);
            }
            exprs += 1;
        }
    }
    assert!(exprs >= 15, "only {exprs} queries");
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            for name in metric_names(expr) {
                assert!(known.contains(&name), "annotation: unknown metric {name}");
            }
        }
    }
    // Variable queries such as label_values(ringfence_build_info, job).
    for v in variables {
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        for word in q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("ringfence_") || word.starts_with("process_") {
                assert!(
                    known.contains(word),
                    "variable {}: unknown metric {word}",
                    v["name"]
                );
            }
        }
    }
    for wanted in [
        "ringfence_http_requests_total",
        "ringfence_http_request_duration_seconds_bucket",
        "ringfence_policy_decisions_total",
        "ringfence_upstream_requests_total",
        "ringfence_upstream_errors_total",
        "ringfence_upstream_member_healthy",
        "ringfence_connections_open",
        "ringfence_connections_parked",
        "ringfence_connections_refused_total",
        "ringfence_upstream_probe_failures_total",
        "ringfence_client_body_timeouts_total",
        "ringfence_tls_certificate_expiry_timestamp_seconds",
        "ringfence_config_info",
        "ringfence_tls_handshake_errors_total",
        "ringfence_config_reloads_total",
        "ringfence_config_last_reload_success_timestamp_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(used.contains(wanted), "no panel shows {wanted}");
    }
}

#[test]
fn dockerfile_and_systemd_unit_fit_the_binary() {
    let dockerfile = read("deploy/Dockerfile");
    for needle in [
        "FROM rust:1-bookworm@sha256:",
        " AS builder\n",
        "cargo build --profile image --locked",
        "config/ringfence.example.toml",
        "EXPOSE 8443 9090",
        r#"ENTRYPOINT ["/usr/local/bin/ringfence"]"#,
        r#"CMD ["run", "--config", "/etc/ringfence/ringfence.toml"]"#,
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle}");
    }
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    // The build context (repository root) keeps what the build copies (.ci/image-context checks
    // this with Docker's own matching rules: see the_image_context_holds_what_the_build_needs).
    let ignore = read(".dockerignore");
    for kept in ["Cargo.toml", "Cargo.lock", "src", "config", "benches"] {
        assert!(
            ignore.lines().any(|l| l.trim() == format!("!{kept}")),
            "{kept}"
        );
        assert!(repo().join(kept).exists());
    }

    let unit = read("deploy/systemd/ringfence.service");
    let key = |k: &str| -> Vec<&str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .collect()
    };
    assert_eq!(key("User"), ["ringfence"]);
    assert_eq!(key("Type"), ["notify"], "ringfence speaks sd_notify");
    // A reload or start with a file check-config refuses fails where systemd sees it.
    let check = "/usr/local/bin/ringfence check-config --config ${RINGFENCE_CONFIG}";
    assert_eq!(key("ExecStartPre"), [check]);
    assert_eq!(key("ExecReload"), [check, "/bin/kill -HUP $MAINPID"]);
    assert_eq!(key("KillSignal"), ["SIGTERM"]);
    let stop = humantime::parse_duration(key("TimeoutStopSec")[0]).expect("TimeoutStopSec");
    let default_grace = ringfence::config::Config::from_toml(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nmembers = [\"http://127.0.0.1:1\"]\n",
    )
    .expect("a minimal configuration")
    .server()
    .shutdown_grace;
    assert!(
        stop > default_grace,
        "TimeoutStopSec must exceed shutdown_grace"
    );
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("MemoryDenyWriteExecute", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(key(k), [v], "{k}");
    }
}

/// The image's binary is built with the `image` profile: release without debuginfo.
#[test]
fn the_image_profile_ships_no_debuginfo() {
    let manifest = read("Cargo.toml");
    let section = manifest
        .split("\n[profile.image]\n")
        .nth(1)
        .expect("a [profile.image] in Cargo.toml");
    let section = section.split("\n[").next().unwrap();
    for line in [
        "inherits = \"release\"",
        "debug = false",
        "strip = \"debuginfo\"",
    ] {
        assert!(
            section.lines().any(|l| l.trim() == line),
            "[profile.image] lacks {line}"
        );
    }
}

/// A FROM line's image, with `--platform` and `AS name` taken off.
fn from_images(dockerfile: &str) -> Vec<(String, Option<String>)> {
    dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM "))
        .map(|rest| {
            let mut words = rest.split_whitespace().filter(|w| !w.starts_with("--"));
            let image = words.next().expect("FROM names an image").to_owned();
            let stage = match (words.next(), words.next()) {
                (Some(a), Some(name)) if a.eq_ignore_ascii_case("as") => Some(name.to_owned()),
                _ => None,
            };
            (image, stage)
        })
        .collect()
}

fn is_sha256_digest(image: &str) -> bool {
    image.split_once("@sha256:").is_some_and(|(name, hex)| {
        !name.is_empty()
            && hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[test]
fn every_base_image_is_pinned_by_digest() {
    let dockerfile = read("deploy/Dockerfile");
    let images = from_images(&dockerfile);
    assert!(images.len() >= 2, "a builder and a runtime stage");
    let mut stages = BTreeSet::new();
    for (image, stage) in &images {
        // `FROM builder` names an earlier stage, not an image.
        if !stages.contains(image.as_str()) {
            assert!(
                is_sha256_digest(image),
                "FROM {image}: pin the base image by digest (IMAGE:TAG@sha256:<64 hex>)"
            );
        }
        stages.extend(stage.clone());
    }
    // A `# syntax=` directive pulls a frontend image too; it must be pinned as well.
    for line in dockerfile.lines().take_while(|l| l.starts_with('#')) {
        if let Some(frontend) = line.strip_prefix("# syntax=") {
            assert!(is_sha256_digest(frontend), "{line}: pin it by digest");
        }
    }
    assert!(is_sha256_digest(
        "gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f"
    ));
    assert!(!is_sha256_digest("rust:1-bookworm"));
    assert!(!is_sha256_digest("rust:1-bookworm@sha256:93CE"));
}

#[test]
fn the_license_file_is_the_apache_2_0_text_cargo_toml_declares() {
    let manifest = read("Cargo.toml");
    let license = manifest
        .lines()
        .find_map(|l| l.strip_prefix("license = "))
        .expect("Cargo.toml declares a license");
    assert_eq!(license, "\"Apache-2.0\"");
    let text = read("LICENSE");
    let heading: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect();
    assert_eq!(
        heading,
        [
            "Apache License",
            "Version 2.0, January 2004",
            "http://www.apache.org/licenses/"
        ]
    );
    // The whole licence, not a notice pointing at it.
    for section in [
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "1. Definitions.",
        "2. Grant of Copyright License.",
        "3. Grant of Patent License.",
        "4. Redistribution.",
        "5. Submission of Contributions.",
        "6. Trademarks.",
        "7. Disclaimer of Warranty.",
        "8. Limitation of Liability.",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
        "APPENDIX: How to apply the Apache License to your work.",
    ] {
        assert!(text.contains(section), "LICENSE lacks {section:?}");
    }
    assert!(text.len() > 11_000, "LICENSE is {} bytes", text.len());
}

/// The .dockerignore this repository had when the image did not build (issue #11): it left out
/// benches/, which Cargo.toml declares.
const DOCKERIGNORE_WITHOUT_BENCHES: &str = "*\n!Cargo.toml\n!Cargo.lock\n!src\n!config\n";

/// Runs `.ci/image-context` with python3, or None when python3 is not installed (CI installs it
/// and sets RINGFENCE_REQUIRE_PYTHON=1, so there it never skips).
fn image_context(args: &[&str]) -> Option<std::process::Output> {
    let script = repo().join(".ci/image-context");
    match std::process::Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
    {
        Ok(out) => Some(out),
        Err(e) => {
            assert!(
                std::env::var_os("RINGFENCE_REQUIRE_PYTHON").is_none(),
                "python3 is required here: {e}"
            );
            eprintln!("python3 not installed: skipped");
            None
        }
    }
}

fn text_of(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The context Docker sends (`.dockerignore` applied with Docker's rules) holds every path
/// Cargo.toml references, every included file and every source the Dockerfile copies; with the
/// old .dockerignore it does not. The build itself runs in CI (`.ci/image-context`, no `--check`).
#[test]
fn the_image_context_holds_what_the_build_needs() {
    let Some(out) = image_context(&["--self-test"]) else {
        return;
    };
    assert!(
        out.status.success(),
        "the matcher's tests:\n{}",
        text_of(&out)
    );

    let out = image_context(&["--check"]).unwrap();
    assert!(out.status.success(), "{}", text_of(&out));

    let dir = common::scratch();
    let old = dir.path().join(".dockerignore");
    std::fs::write(&old, DOCKERIGNORE_WITHOUT_BENCHES).unwrap();
    let out = image_context(&["--check", "--ignore-file", old.to_str().unwrap()]).unwrap();
    let text = text_of(&out);
    assert!(
        !out.status.success(),
        "the old .dockerignore passed:\n{text}"
    );
    for missing in [
        "benches/decide.rs",
        "benches/readings.rs",
        "COPY in the builder stage",
    ] {
        assert!(text.contains(missing), "{missing} not reported:\n{text}");
    }
}
