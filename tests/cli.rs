//! The real binary: demo serves what it prints, check-config and eval exit codes, SIGTERM drains.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;
use common::{dead_address, eventually, scratch, Process, HOST, TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(args: &[&str]) -> (i32, String, String) {
    run_env(args, &[])
}

/// Runs the binary with these environment variables set, and none of ringfence's own otherwise.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("RINGFENCE") {
            command.env_remove(name);
        }
    }
    let out = command
        .envs(env.iter().copied())
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A self-signed certificate and its key, written as `name.crt` and `name.key`.
fn key_pair(dir: &std::path::Path, name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (
        cert_path.to_str().unwrap().to_owned(),
        key_path.to_str().unwrap().to_owned(),
    )
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits for the child to exit, for at most `limit`; the exit code.
fn wait(child: &mut Child, limit: Duration) -> i32 {
    let status = eventually("the process to exit", limit, || child.try_wait().unwrap());
    status.code().unwrap_or(-1)
}

/// One HTTP/1.1 request on a fresh connection; returns the whole answer.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn post(addr: SocketAddr, host: &str, path_and_query: &str) -> String {
    http(
        addr,
        &format!("POST {path_and_query} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
}

/// Reads lines from a child's stream on a thread until one contains `needle`.
fn lines_until(stream: impl Read + Send + 'static, needle: &'static str) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                let _ = tx.send(seen.clone());
            }
        }
    });
    rx
}

#[test]
fn check_config_accepts_the_shipped_example_and_demo_files() {
    for file in ["config/ringfence.example.toml", "config/demo.toml"] {
        let (code, out, err) = run(&["check-config", "--config", repo(file).to_str().unwrap()]);
        assert_eq!(code, 0, "{file}: {out}{err}");
        assert!(out.contains("valid"), "{out}");
        assert!(out.contains("organisations: 2"), "{out}");
    }
}

/// `check-config | head`: a reader that closed its end before the output comes ends the output
/// quietly, and the exit status still says the file is valid (`println!` panicked on the
/// broken pipe; fresh eyes, round 29).
#[test]
fn check_config_into_a_closed_pipe_exits_0_without_a_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args([
            "check-config",
            "--config",
            repo("config/demo.toml").to_str().unwrap(),
        ])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn check_config_reports_every_problem_with_its_key_path() {
    let dir = scratch();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
[server]
listen = ["127.0.0.1:8443"]
colour = "blue"
[upstream]
members = []
[policy]
deny_numbers = ["1900"]
[[organisations]]
name = "x"
allow_number_patterns = ["(unclosed"]
[[organisations]]
name = "x"
"#,
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    for path in [
        "server.colour: unknown key",
        "upstream.members:",
        "policy.deny_numbers[0]:",
        "organisations[0].allow_number_patterns[0]: invalid regex",
        "organisations[1].name:",
    ] {
        assert!(err.contains(path), "missing `{path}` in:\n{err}");
    }
}

/// Lists from files (issue 14): a bad line is reported at its file and line, with the message an
/// inline entry would get; a good file's entries are counted in the summary.
#[test]
fn check_config_reports_a_list_file_problem_at_its_line() {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    let list = dir.path().join("lists/contoso.txt");
    std::fs::write(&list, "# contoso desks\n+14255550100\n+1 425\n").unwrap();
    let file = dir.path().join("ringfence.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = [\"127.0.0.1:18443\"]\n[upstream]\nmembers = [\"http://127.0.0.1:1\"]\n\
         [audit]\nsink = \"off\"\n[policy]\ndeny_numbers_file = \"deny.txt\"\n\
         [[organisations]]\nname = \"c\"\nallow_numbers = [\"+44207\"]\n\
         allow_numbers_file = \"lists/contoso.txt\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (code, _, err) = run(&["check-config", "--config", path]);
    assert_eq!(code, 2, "{err}");
    for expected in [
        "organisations[0].allow_numbers_file: lists/contoso.txt:3: `+1 425` is not `+` followed by 1-15 digits",
        "policy.deny_numbers_file: cannot read ",
    ] {
        assert!(err.contains(expected), "`{expected}` in:\n{err}");
    }
    std::fs::write(
        &list,
        "# contoso desks\n+14255550100\n+1425555 # helpdesk\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("deny.txt"), "+1900\r\n+44870\r\n").unwrap();
    let (code, out, err) = run(&["check-config", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("global deny: 2 number prefixes"), "{out}");
    assert!(
        out.contains("c (enforce): allow 3 number prefixes"),
        "{out}"
    );
}

#[test]
fn eval_exits_0_when_all_allowed_3_when_any_denied_2_on_bad_config() {
    let demo = repo("config/demo.toml");
    let demo = demo.to_str().unwrap();
    let (code, out, _) = run(&[
        "eval",
        "--config",
        demo,
        "--host",
        "lyncweb.contoso.com",
        "tel:+14255550100",
        "sip:a@contoso.com",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("contoso.allow_numbers +1425555"), "{out}");
    let (code, out, _) = run(&[
        "eval",
        "--config",
        demo,
        "--org",
        "contoso",
        "tel:+14255550100",
        "tel:+19005550100",
    ]);
    assert_eq!(code, 3);
    assert!(out.contains("policy.deny_numbers +1900"), "{out}");
    let (code, out, _) = run(&[
        "eval",
        "--json",
        "--config",
        demo,
        "--org",
        "fabrikam",
        "tel:+442071234567",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["organisation"], "fabrikam");
    assert_eq!(v["normalised"], "tel:+442071234567");
    let (code, _, _) = run(&["eval", "--config", "/nonexistent.toml", "tel:+1"]);
    assert_eq!(code, 2);
}

/// Each organisation's mode is shown by check-config and eval, and eval says `shadow_deny` (and
/// exits 0: the request would be forwarded) where an organisation in shadow would refuse; a bad
/// mode or rate names its key.
#[test]
fn check_config_and_eval_show_each_organisations_mode() {
    let dir = scratch();
    let file = dir.path().join("shadow.toml");
    let text = |extra: &str| {
        format!(
            r#"
[server]
listen = ["127.0.0.1:8443"]
[upstream]
members = ["http://127.0.0.1:1"]
[audit]
sink = "off"
[policy]
deny_numbers = ["+1900"]
[policy.rate_limit]
per_user = "10/min"
[[organisations]]
name = "contoso"
hosts = ["lyncweb.contoso.com"]
allow_numbers = ["+1425"]
[[organisations]]
name = "fabrikam"
hosts = ["lync.fabrikam.com"]
mode = "shadow"
allow_numbers = ["+44"]
{extra}"#
        )
    };
    std::fs::write(&file, text("")).unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = run(&["check-config", "--config", path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mode: enforce"), "{out}");
    assert!(out.contains("contoso (enforce)"), "{out}");
    assert!(out.contains("fabrikam (shadow)"), "{out}");
    let (code, out, _) = run(&[
        "eval",
        "--json",
        "--config",
        path,
        "--org",
        "fabrikam",
        "tel:+19005550100",
    ]);
    assert_eq!(code, 0, "forwarded in shadow: {out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["mode"], "shadow");
    assert_eq!(v["decision"], "shadow_deny");
    assert_eq!(v["reason"], "denied");
    let (code, out, _) = run(&[
        "eval",
        "--json",
        "--config",
        path,
        "--org",
        "contoso",
        "tel:+19005550100",
    ]);
    assert_eq!(code, 3, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["mode"].as_str(), v["decision"].as_str()),
        (Some("enforce"), Some("deny"))
    );

    std::fs::write(
        &file,
        text("rate_limit = { per_user = \"ten/min\" }\n")
            .replace("mode = \"shadow\"", "mode = \"dry-run\""),
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", "--config", path]);
    assert_eq!(code, 2, "{err}");
    for key in [
        "organisations[1].mode: `dry-run` is not `enforce` or `shadow`",
        "organisations[1].rate_limit.per_user: `ten/min`",
    ] {
        assert!(err.contains(key), "missing `{key}` in:\n{err}");
    }
}

/// `eval --request` on a file of tests/fixtures/requests/ with the demo configuration, plus
/// `extra` arguments; the request on standard input when `stdin` is given.
fn eval_request(file: &str, extra: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let demo = repo("config/demo.toml");
    let path = repo(&format!("tests/fixtures/requests/{file}"));
    let mut args = vec!["eval", "--config", demo.to_str().unwrap(), "--request"];
    args.push(if stdin.is_some() {
        "-"
    } else {
        path.to_str().unwrap()
    });
    args.extend_from_slice(extra);
    let Some(input) = stdin else {
        return run(&args);
    };
    let mut child = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The fields docs/audit.md gives a `decision` line.
fn documented_decision_fields() -> Vec<String> {
    let doc = std::fs::read_to_string(repo("docs/audit.md")).unwrap();
    let table = doc.split("### decision").nth(1).unwrap();
    let table = table.split("\n### ").next().unwrap();
    let fields: Vec<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|l| l.split('`').next().unwrap().to_owned())
        .collect();
    assert!(fields.len() > 10, "{fields:?}");
    fields
}

#[test]
fn eval_request_judges_a_guarded_post_as_the_gateway_would() {
    let (code, out, err) = eval_request("allowed.http", &[], None);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(
            "allow\tallowed\ttel:+14255550100\tcontoso.allow_numbers +1425555\t(organisation contoso, resource simultaneousRingToContact, POST /ucwa/"
        ),
        "{out}"
    );
    assert_eq!(lines[1], "forward to the pool");

    // Denied, with the body's target normalised and the Host's organisation.
    let (code, out, err) = eval_request("denied.http", &[], None);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains(
            "deny\tdenied\ttel:+19005550100\tpolicy.deny_numbers +1900\t(organisation fabrikam,"
        ),
        "{out}"
    );
    assert!(
        out.contains("refuse: 403 denied, parameter target (UCWA Forbidden/NotAllowed"),
        "{out}"
    );
    // The same request on standard input.
    let file = std::fs::read(repo("tests/fixtures/requests/denied.http")).unwrap();
    let (code, from_stdin, _) = eval_request("denied.http", &[], Some(&file));
    assert_eq!((code, &from_stdin), (3, &out));

    // The TLS server name of another organisation than the Host.
    let (code, out, _) = eval_request("allowed.http", &["--sni", "lync.fabrikam.com"], None);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("deny\tmisdirected\t"), "{out}");
    // Not about the parameter: its answer names none.
    assert!(out.contains("refuse: 421 misdirected (UCWA"), "{out}");
}

#[test]
fn eval_request_reads_a_batch_an_unguarded_get_lf_only_and_chunked_files() {
    let (code, out, err) = eval_request("batch.http", &[], None);
    assert_eq!(code, 3, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("not_sent\tbatch_refused\ttel:+14255550100\t"),
        "{out}"
    );
    assert!(lines[0].ends_with(", batch part 2 of 3)"), "{out}");
    assert!(
        lines[1].starts_with("deny\tdenied\ttel:+19005550100\tpolicy.deny_numbers +1900\t"),
        "{out}"
    );
    assert!(lines[1].ends_with(", batch part 3 of 3)"), "{out}");
    assert!(lines[2].starts_with("refuse: 403 denied"), "{out}");

    let (code, out, _) = eval_request("unguarded.http", &[], None);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "not guarded: forward to the pool unjudged (host lyncweb.contoso.com)\n"
    );

    let lf_only = std::fs::read(repo("tests/fixtures/requests/lf-only.http")).unwrap();
    assert!(
        !lf_only.contains(&b'\r'),
        "the fixture has LF line ends only"
    );
    let (code, out, err) = eval_request("lf-only.http", &[], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("allow\tallowed\tsip:helpdesk@fabrikam.com\t"),
        "{out}"
    );

    let (code, out, err) = eval_request("chunked.http", &[], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("allow\tallowed\ttel:+14255550100\t"),
        "{out}"
    );
}

#[test]
fn eval_request_exits_2_on_a_bad_request_file_or_configuration() {
    let (code, out, err) = eval_request("bad-content-length.http", &[], None);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("Content-Length is 100 but the body has 30 bytes"),
        "{err}"
    );
    let (code, _, err) = eval_request("no-such-file.http", &[], None);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read it"), "{err}");
    let (code, _, _) = eval_request("allowed.http", &[], Some(b"not a request\n\n"));
    assert_eq!(code, 2);
    let allowed = repo("tests/fixtures/requests/allowed.http");
    let (code, _, _) = run(&[
        "eval",
        "--config",
        "/nonexistent.toml",
        "--request",
        allowed.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    // Targets and a request together are a usage error.
    let (code, _, _) = eval_request("allowed.http", &["tel:+1"], None);
    assert_eq!(code, 2);
}

#[test]
fn eval_request_json_speaks_the_audit_trails_field_names() {
    let documented = documented_decision_fields();
    let (code, out, err) = eval_request("batch.http", &["--json"], None);
    assert_eq!(code, 3, "{out}{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    for line in &lines[..2] {
        assert_eq!(line["kind"], "decision");
        for field in line.as_object().unwrap().keys() {
            assert!(
                documented.contains(field),
                "`{field}` is no field of the trail's decision line: {line}"
            );
        }
        for field in line["batch"].as_object().unwrap().keys() {
            assert!(["part", "parts"].contains(&field.as_str()), "{line}");
        }
        assert_eq!(line["organisation"], "contoso");
        assert_eq!(line["host"], "lyncweb.contoso.com");
        assert_eq!(line["application"], "192");
    }
    assert_eq!(lines[0]["decision"], "not_sent");
    assert_eq!(lines[0]["reason"], "batch_refused");
    assert_eq!(lines[0]["targets"], serde_json::json!(["tel:+14255550100"]));
    assert_eq!(
        lines[0]["batch"],
        serde_json::json!({"part": 2, "parts": 3})
    );
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(lines[1]["reason"], "denied");
    assert_eq!(lines[1]["rule"], "policy.deny_numbers +1900");
    assert_eq!(
        lines[2],
        serde_json::json!({
            "kind": "answer", "route": "guarded", "forward": false, "judged": true,
            "status": 403, "reason": "denied", "code": "Forbidden", "subcode": "NotAllowed",
            "parameter": "target",
        })
    );
    let (code, out, _) = eval_request("unguarded.http", &["--json"], None);
    assert_eq!(code, 0);
    let answer: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answer["route"], "passthrough");
    assert_eq!(answer["forward"], true);
    assert_eq!(answer["judged"], false);
}

#[test]
fn run_exits_1_with_the_cause_when_the_config_cannot_be_used() {
    let (code, _, err) = run(&["run", "--config", "/nonexistent/ringfence.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/ringfence.toml"), "{err}");
}

#[test]
fn demo_serves_the_requests_it_prints_and_stops_on_ctrl_c() {
    let mut child = Process(
        Command::new(BIN)
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let banner = lines_until(child.stdout.take().unwrap(), "Ctrl-C")
        .recv_timeout(Duration::from_secs(30))
        .expect("demo prints its banner");
    let proxy: SocketAddr = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("proxy:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.strip_prefix("http://"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("proxy URL in banner:\n{banner}"));
    // Each printed curl line, replayed.
    let curls: Vec<&str> = banner
        .lines()
        .filter(|l| l.trim_start().starts_with("curl -i -X POST"))
        .collect();
    assert_eq!(curls.len(), 4, "{banner}");
    let url_of = |line: &str| line.rsplit('\'').nth(1).unwrap().to_owned();
    let path = |url: String| url.split_once(&proxy.to_string()).unwrap().1.to_owned();
    let allowed = post(proxy, "lyncweb.contoso.com", &path(url_of(curls[0])));
    assert!(allowed.starts_with("HTTP/1.1 204"), "{allowed}");
    let denied = post(proxy, "lyncweb.contoso.com", &path(url_of(curls[1])));
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    assert!(denied.contains(r#""reason":"denied""#), "{denied}");
    let long = post(proxy, "lyncweb.contoso.com", &path(url_of(curls[3])));
    assert!(long.starts_with("HTTP/1.1 400"), "{long}");
    assert!(long.contains("too_long"), "{long}");
    let metrics_url = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("metrics:"))
        .unwrap()
        .trim();
    let admin: SocketAddr = metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let metrics = http(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    assert!(
        metrics.contains(
            "ringfence_policy_decisions_total{decision=\"deny\",organisation=\"contoso\""
        ),
        "{metrics}"
    );
    signal(&child, "-INT");
    assert_eq!(wait(&mut child, Duration::from_secs(15)), 0);
}

/// `ringfence run` on a configuration file, with JSON logs read line by line.
struct Running {
    child: Process,
    lines: mpsc::Receiver<String>,
    /// Lines logged before "ringfence is serving", which a test may still look for: the pool's
    /// first health probe runs as the pool is made, before the listeners bind, so its failure can
    /// be logged first (a probe test timed out once in eight runs, its line read and dropped
    /// while the start waited for this one).
    early: std::cell::RefCell<std::collections::VecDeque<String>>,
    addr: SocketAddr,
    file: PathBuf,
    /// Holds the configuration file's directory.
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(name: &str, config: &str) -> Running {
        Running::start_with(name, config, &[])
    }

    /// Starts with `RUST_LOG` set to `filter`.
    fn start_logging(name: &str, config: &str, filter: &str) -> Running {
        Running::start_with(name, config, &[("RUST_LOG", filter)])
    }

    /// Starts `ringfence run` on `config` with more environment variables.
    fn start_with(name: &str, config: &str, env: &[(&str, &str)]) -> Running {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ringfence-{name}-"))
            .tempdir()
            .unwrap();
        let file = dir.path().join("ringfence.toml");
        std::fs::write(&file, config).unwrap();
        let mut child = Command::new(BIN)
            .args([
                "run",
                "--log-format",
                "json",
                "--config",
                file.to_str().unwrap(),
            ])
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = common::stderr_lines(&mut child);
        let mut running = Running {
            child: Process(child),
            lines,
            early: Default::default(),
            addr: "127.0.0.1:0".parse().unwrap(),
            file,
            _dir: dir,
        };
        let mut seen = running.lines_through("ringfence is serving");
        let serving = seen.pop().expect("the serving line");
        running.early.borrow_mut().extend(seen);
        let v: serde_json::Value = serde_json::from_str(&serving).expect("a JSON log line");
        running.addr = v["fields"]["listen"]
            .as_str()
            .and_then(|s| s.trim_matches(['[', ']']).parse().ok())
            .unwrap_or_else(|| panic!("listen address in {serving}"));
        running
    }

    /// Every line up to and including the first that contains `needle`.
    fn lines_through(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .next_line()
                .unwrap_or_else(|| panic!("no log line containing `{needle}` in {seen:#?}"));
            let done = line.contains(needle);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    fn line_containing(&self, needle: &str) -> String {
        loop {
            let line = self
                .next_line()
                .unwrap_or_else(|| panic!("no log line containing `{needle}`"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The next line not yet looked at: those logged before serving first, then the rest as they
    /// come (`None` after 30 s without one).
    fn next_line(&self) -> Option<String> {
        if let Some(line) = self.early.borrow_mut().pop_front() {
            return Some(line);
        }
        self.lines.recv_timeout(Duration::from_secs(30)).ok()
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> i32 {
        signal(&self.child, "-TERM");
        wait(&mut self.child, Duration::from_secs(15))
    }
}

fn config(member: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nshutdown_grace = \"10s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstream]\nmembers = [\"{member}\"]\n[audit]\nsink = \"off\"\n{extra}"
    )
}

const SIMRING: &str = "/ucwa/v1/applications/1/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact";

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let member = rt.block_on(ringfence::sim::FrontEnd::start("fe1")).unwrap();
    member.set_fault(ringfence::sim::Fault::Slow(Duration::from_millis(1500)));
    let running = Running::start("drain", &config(&member.url(), ""));
    let addr = running.addr;
    let in_flight = std::thread::spawn(move || {
        http(addr, "GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: lyncweb.contoso.com\r\nConnection: close\r\n\r\n")
    });
    eventually("the request to reach the member", TIMEOUT, || {
        !member.received().is_empty()
    });
    signal(&running.child, "-TERM");
    let answer = in_flight.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "in-flight request finished: {answer}"
    );
    assert_eq!(running.stop(), 0);
}

#[test]
fn sighup_reloads_the_file() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let member = rt.block_on(ringfence::sim::FrontEnd::start("fe1")).unwrap();
    let policy = |allow: &str| {
        let org = format!("[policy]\ndefault_organisation = \"c\"\n[[organisations]]\nname = \"c\"\nallow_numbers = [\"{allow}\"]\n");
        config(&member.url(), &org)
    };
    let running = Running::start("hup", &policy("+1206"));
    let path = format!("{SIMRING}?target=tel:%2B14255550100");
    assert!(post(running.addr, "x", &path).starts_with("HTTP/1.1 403"));
    std::fs::write(&running.file, policy("+1425")).unwrap();
    signal(&running.child, "-HUP");
    eventually("SIGHUP to switch the policy", TIMEOUT, || {
        post(running.addr, "x", &path).starts_with("HTTP/1.1 204")
    });
    let reloaded = running.line_containing("configuration reloaded");
    assert!(reloaded.contains("SIGHUP"), "{reloaded}");
    assert_eq!(running.stop(), 0);
}

#[test]
fn log_lines_about_a_request_are_json_and_carry_its_request_id() {
    let dead = dead_address();
    let running = Running::start("logid", &config(&format!("http://{dead}"), ""));
    let answer = http(
        running.addr,
        "GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: x\r\nX-Request-Id: trace-me-42\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let failure = running.line_containing("pool member failed");
    let v: serde_json::Value = serde_json::from_str(&failure).unwrap();
    assert_eq!(v["span"]["request_id"], "trace-me-42", "{failure}");
    // The gateway's line about the same request, at the default level too, where the span is
    // made only when a line about the request is logged: in it, with its id and client.
    let gone = running.line_containing("no answer from the pool");
    let w: serde_json::Value = serde_json::from_str(&gone).unwrap();
    assert_eq!(w["span"]["request_id"], "trace-me-42", "{gone}");
    assert_eq!(w["span"]["id"], v["span"]["id"], "{gone}");
    assert_eq!(w["span"]["client"], "127.0.0.1", "{gone}");
    assert_eq!(running.stop(), 0);
}

/// A configuration `run` cannot start with is one `check-config` refuses, with the same key path:
/// both build the TLS configuration and open the audit sink through the same function.
#[test]
fn check_config_refuses_what_run_refuses_naming_the_key() {
    let dir = scratch();
    let (cert, key) = key_pair(dir.path(), "good");
    let (_, other_key) = key_pair(dir.path(), "other");
    let file = dir.path().join("ringfence.toml");
    let nowhere = dir.path().join("no-such-dir").join("audit.jsonl");
    let nowhere = nowhere.to_str().unwrap();
    let write = |tls_cert: &str, tls_key: &str, audit: &str| {
        std::fs::write(
            &file,
            format!(
                "[server]\nlisten = [\"127.0.0.1:0\"]\ntls = {{ cert = {tls_cert:?}, key = {tls_key:?} }}\n\
                 [admin]\nlisten = \"127.0.0.1:0\"\n[upstream]\nmembers = [\"http://127.0.0.1:1\"]\n\
                 [audit]\n{audit}\n"
            ),
        )
        .unwrap();
    };
    let path = file.to_str().unwrap();
    let cases = [
        (
            key.as_str(),
            "sink = \"off\"".to_owned(),
            "server.tls.key: does not match the certificate in server.tls.cert".to_owned(),
            Some(other_key.as_str()),
        ),
        (
            key.as_str(),
            "sink = \"off\"".to_owned(),
            format!("server.tls.key: {cert} holds no private key (found a CERTIFICATE)"),
            Some(cert.as_str()),
        ),
        (
            key.as_str(),
            format!("sink = \"file\"\npath = {nowhere:?}"),
            format!("audit.path: cannot open {nowhere}: No such file or directory"),
            None,
        ),
    ];
    for (good_key, audit, expected, bad_key) in cases {
        write(&cert, bad_key.unwrap_or(good_key), &audit);
        let (code, out, err) = run(&["check-config", "--config", path]);
        assert_eq!(code, 2, "check-config: {out}{err}");
        assert!(
            err.contains(&expected),
            "check-config: `{expected}` in:\n{err}"
        );
        let (code, _, err) = run(&["run", "--config", path]);
        assert_eq!(code, 1, "run: {err}");
        assert!(err.contains(&expected), "run: `{expected}` in:\n{err}");
    }
    // Both at once, both reported.
    write(
        &cert,
        &other_key,
        &format!("sink = \"file\"\npath = {nowhere:?}"),
    );
    let (code, _, err) = run(&["check-config", "--config", path]);
    assert_eq!(code, 2);
    assert!(
        err.contains("server.tls.key:") && err.contains("audit.path:"),
        "{err}"
    );
    // The matching pair and a writable audit path are valid.
    let audit = dir.path().join("audit.jsonl");
    write(
        &cert,
        &key,
        &format!("sink = \"file\"\npath = {:?}", audit.to_str().unwrap()),
    );
    let (code, out, err) = run(&["check-config", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("valid"), "{out}");
}

#[test]
fn check_config_and_eval_read_runs_default_path_and_ringfence_config() {
    let (code, _, err) = run(&["check-config"]);
    assert_eq!(code, 2);
    assert!(err.contains("/etc/ringfence/ringfence.toml"), "{err}");
    let (code, _, err) = run(&["eval", "tel:+14255550100"]);
    assert_eq!(code, 2);
    assert!(err.contains("/etc/ringfence/ringfence.toml"), "{err}");
    let demo = repo("config/demo.toml");
    let demo = demo.to_str().unwrap();
    let (code, out, err) = run_env(&["check-config"], &[("RINGFENCE_CONFIG", demo)]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run_env(
        &["eval", "--org", "contoso", "tel:+14255550100"],
        &[("RINGFENCE_CONFIG", demo)],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn environment_overrides_set_lists_and_a_bad_value_names_its_variable() {
    let demo = repo("config/demo.toml");
    let demo = demo.to_str().unwrap();
    let (code, out, err) = run_env(
        &["check-config", "--config", demo],
        &[("RINGFENCE__POLICY__DENY_NUMBERS", "+1900,+44870,+44871")],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("global deny: 3 number prefixes"), "{out}");
    // One entry stays a `+` prefix, not the integer 1425.
    let (code, out, err) = run_env(
        &[
            "eval",
            "--config",
            demo,
            "--org",
            "contoso",
            "tel:+14255550100",
        ],
        &[("RINGFENCE__POLICY__DENY_NUMBERS", "+1425")],
    );
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("policy.deny_numbers +1425"), "{out}");
    // An organisation's list, by the organisation's index.
    let (code, out, err) = run_env(
        &[
            "eval",
            "--config",
            demo,
            "--org",
            "contoso",
            "tel:+12065550100",
        ],
        &[(
            "RINGFENCE__ORGANISATIONS__0__ALLOW_NUMBERS",
            "+1425555, +1206",
        )],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("contoso.allow_numbers +1206"), "{out}");
    let bad = [("RINGFENCE__POLICY__DENY_NUMBERS", "+1900,1900")];
    let expected = "policy.deny_numbers[1] (from RINGFENCE__POLICY__DENY_NUMBERS): `1900` is not";
    let (code, _, err) = run_env(&["check-config", "--config", demo], &bad);
    assert_eq!(code, 2);
    assert!(err.contains(expected), "{err}");
    let (code, _, err) = run_env(&["run", "--config", demo], &bad);
    assert_eq!(code, 1);
    assert!(err.contains(expected), "{err}");
}

#[test]
fn check_config_warns_of_a_repeated_listener_and_a_country_wide_allow_list() {
    let dir = scratch();
    let file = dir.path().join("ringfence.toml");
    let config = |admin: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:18443\", \"127.0.0.1:18443\"]\n[admin]\nlisten = {admin:?}\n\
             [upstream]\nmembers = [\"http://127.0.0.1:1\"]\n[audit]\nsink = \"off\"\n\
             [[organisations]]\nname = \"c\"\nallow_numbers = [\"+1\", \"+1425555\"]\nallow_number_patterns = ['.*']\n"
        )
    };
    std::fs::write(&file, config("127.0.0.1:19090")).unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = run(&["check-config", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    for warning in [
        "warning: server.listen[1]: `127.0.0.1:18443` is listed twice",
        "warning: organisations[0].allow_numbers[0]: allows every number in +1 (as broad as a whole country code)",
        "warning: organisations[0].allow_number_patterns[0]: `.*` matches every number",
    ] {
        assert!(out.contains(warning), "`{warning}` in:\n{out}");
    }
    assert!(!out.contains("allow_numbers[1]"), "{out}");
    std::fs::write(&file, config("0.0.0.0:18443")).unwrap();
    let (code, _, err) = run(&["check-config", "--config", path]);
    assert_eq!(code, 2);
    assert!(
        err.contains("admin.listen: must not share an address"),
        "{err}"
    );
}

#[test]
fn sighup_names_each_changed_setting_that_needs_a_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let member = rt.block_on(ringfence::sim::FrontEnd::start("fe1")).unwrap();
    let running = Running::start("restartkeys", &config(&member.url(), ""));
    let changed = config(&member.url(), "").replace(
        "shutdown_grace = \"10s\"",
        "shutdown_grace = \"10s\"\nmax_connections = 7\nidle_timeout = \"9s\"",
    );
    std::fs::write(&running.file, changed).unwrap();
    signal(&running.child, "-HUP");
    let first = running.line_containing("takes effect at the next restart");
    let second = running.line_containing("takes effect at the next restart");
    let both = format!("{first}\n{second}");
    assert!(both.contains("server.max_connections"), "{both}");
    assert!(both.contains("server.idle_timeout"), "{both}");
    assert_eq!(running.stop(), 0);
}

#[test]
fn sigusr1_reopens_the_audit_file_after_logrotate_moved_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let member = rt.block_on(ringfence::sim::FrontEnd::start("fe1")).unwrap();
    let dir = scratch();
    let audit = dir.path().join("audit.jsonl");
    let text = config(&member.url(), "").replace(
        "sink = \"off\"",
        &format!("sink = \"file\"\npath = {:?}", audit.to_str().unwrap()),
    );
    let running = Running::start("usr1", &text);
    let denied = format!("{SIMRING}?target=tel:%2B19005550100");
    assert!(post(running.addr, "x", &denied).starts_with("HTTP/1.1 403"));
    let lines = |path: &std::path::Path| {
        let what = format!("a line in {}", path.display());
        eventually(&what, TIMEOUT, || {
            let count = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .count();
            (count >= 1).then_some(count)
        })
    };
    assert_eq!(lines(&audit), 1);
    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&audit, &rotated).unwrap();
    signal(&running.child, "-USR1");
    running.line_containing("audit trail reopened");
    assert!(post(running.addr, "x", &denied).starts_with("HTTP/1.1 403"));
    assert_eq!(lines(&audit), 1, "the new line is in the new file");
    assert_eq!(lines(&rotated), 1, "the old file kept only its own line");
    assert_eq!(running.stop(), 0, "SIGUSR1 did not kill the process");
}

#[test]
fn sigusr1_reopens_the_log_file() {
    let dead = dead_address();
    let dir = scratch();
    let file = dir.path().join("ringfence.toml");
    std::fs::write(&file, config(&format!("http://{dead}"), "")).unwrap();
    let log = dir.path().join("ringfence.log");
    let mut child = Process(
        Command::new(BIN)
            .args(["run", "--config", file.to_str().unwrap(), "--log-file"])
            .arg(&log)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let contains = |path: &std::path::Path, needle: &str| {
        let what = format!("`{needle}` in {}", path.display());
        eventually(&what, TIMEOUT, || {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .contains(needle)
        });
        true
    };
    assert!(
        contains(&log, "ringfence is serving"),
        "logs go to the file"
    );
    let rotated = dir.path().join("ringfence.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    signal(&child, "-USR1");
    assert!(contains(&log, "log file reopened"), "a new file is opened");
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("log file reopened"));
    signal(&child, "-TERM");
    assert_eq!(wait(&mut child, Duration::from_secs(15)), 0);
    assert!(
        contains(&log, "stopped"),
        "the final line goes to the new file"
    );
}

#[test]
fn systemd_is_told_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let member = rt.block_on(ringfence::sim::FrontEnd::start("fe1")).unwrap();
    let dir = scratch();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut running = Running::start_with(
        "notify",
        &config(&member.url(), ""),
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    assert!(next().starts_with("READY=1"));
    signal(&running.child, "-HUP");
    let reloading = next();
    assert!(reloading.starts_with("RELOADING=1"), "{reloading}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert!(next().starts_with("READY=1"));
    signal(&running.child, "-TERM");
    assert!(next().starts_with("STOPPING=1"));
    assert_eq!(wait(&mut running.child, Duration::from_secs(15)), 0);
}

#[test]
fn a_drain_that_cuts_requests_exits_4_and_says_how_many() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let member = rt.block_on(ringfence::sim::FrontEnd::start("fe1")).unwrap();
    member.set_fault(ringfence::sim::Fault::Slow(Duration::from_secs(8)));
    let text =
        config(&member.url(), "").replace("shutdown_grace = \"10s\"", "shutdown_grace = \"1s\"");
    let mut running = Running::start("cut", &text);
    let addr = running.addr;
    let _in_flight = std::thread::spawn(move || {
        http(addr, &format!("GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"))
    });
    eventually("the request to reach the member", TIMEOUT, || {
        !member.received().is_empty()
    });
    signal(&running.child, "-TERM");
    let stopped = running.line_containing("stopped");
    let v: serde_json::Value = serde_json::from_str(&stopped).unwrap();
    assert_eq!(v["fields"]["cut_requests"], 1, "{stopped}");
    assert_eq!(wait(&mut running.child, Duration::from_secs(15)), 4);
}

#[test]
fn json_logs_and_the_audit_trail_carry_the_same_plain_ids() {
    let dead = dead_address();
    let policy = "[policy]\ndefault_organisation = \"c\"\n[[organisations]]\nname = \"c\"\nallow_numbers = [\"+1206\"]\n";
    let text = config(&format!("http://{dead}"), policy)
        .replace("[audit]\nsink = \"off\"", "[audit]\nsink = \"stderr\"");
    let running = Running::start_logging("joinid", &text, "ringfence=debug");
    let denied = http(
        running.addr,
        &format!("POST {SIMRING}?target=tel:%2B14255550100 HTTP/1.1\r\nHost: x\r\nX-Request-Id: join-me-1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    let unavailable = http(
        running.addr,
        "GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: x\r\nX-Request-Id: join-me-2\r\nConnection: close\r\n\r\n",
    );
    assert!(unavailable.starts_with("HTTP/1.1 503"), "{unavailable}");
    let lines = running.lines_through("no answer from the pool");
    let json: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for line in &lines {
        assert!(!line.contains(r#"\"join-me"#), "a quoted id: {line}");
    }
    let found = |message: &str, id: &str| {
        json.iter()
            .find(|v| v["fields"]["message"] == message && v["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no `{message}` line with request_id {id}: {lines:#?}"))
    };
    // The span carries the client's X-Request-Id and ringfence's own id, which is the trail's.
    let refused = found("refused", "join-me-1");
    let ours = refused["span"]["id"]
        .as_str()
        .expect("ringfence's id in the span");
    assert_eq!(ours.len(), 24, "{refused}");
    // The trail is written by its own thread: its line may come after the log lines.
    let audit = match json.iter().find(|v| v["decision"] == "deny") {
        Some(line) => line.clone(),
        None => serde_json::from_str(&running.line_containing("\"decision\":\"deny\""))
            .expect("an audit line is JSON"),
    };
    assert_eq!(audit["id"], ours);
    assert_eq!(audit["client_request_id"], "join-me-1");
    let failed = found("no answer from the pool", "join-me-2");
    assert_ne!(failed["span"]["id"], ours);
    assert_eq!(running.stop(), 0);
}

/// A filter that turns on debug lines inside requests' spans only (`[request]=debug`) still
/// gets them: the span is made at once whenever any debug line may be logged (session 30's
/// second read: it was made only for `ringfence=debug`-style filters).
#[test]
fn a_span_filter_gets_the_debug_lines_of_requests() {
    let dead = dead_address();
    let policy = "[policy]\ndefault_organisation = \"c\"\n[[organisations]]\nname = \"c\"\nallow_numbers = [\"+1206\"]\n";
    let running = Running::start_logging(
        "spanfilter",
        &config(&format!("http://{dead}"), policy),
        "info,[request]=debug",
    );
    let denied = http(
        running.addr,
        &format!("POST {SIMRING}?target=tel:%2B14255550100 HTTP/1.1\r\nHost: x\r\nX-Request-Id: span-me-1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    let refused = running.line_containing("refused");
    let v: serde_json::Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(v["span"]["request_id"], "span-me-1", "{refused}");
    assert_eq!(running.stop(), 0);
}

/// A CA of its own (PEM) and a server certificate for 127.0.0.1 it signed, written to `dir`;
/// returns the paths of (certificate chain, key, CA).
fn certificates(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let paths = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}-ca.pem")),
    );
    std::fs::write(&paths.0, format!("{}{}", cert.pem(), ca.pem())).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    std::fs::write(&paths.2, ca.pem()).unwrap();
    paths
}

#[test]
fn a_member_failing_its_probes_is_logged_with_the_tls_reason() {
    let dir = scratch();
    let (cert, key, _) = certificates(dir.path(), "member");
    let (_, _, other_ca) = certificates(dir.path(), "other");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tls =
        ringfence::tls::server_config(&ringfence::config::ServerTls::new(cert, key), true).unwrap();
    let member = rt
        .block_on(ringfence::sim::FrontEnd::start_on(
            "fe1",
            "127.0.0.1:0".parse().unwrap(),
            Some(tls),
        ))
        .unwrap();
    let upstream = format!(
        "[upstream.tls]\nca_file = {other_ca:?}\n[upstream.health]\ninterval = \"100ms\"\nunhealthy_after = 1\n"
    );
    let text = config(&member.url(), "").replace("[audit]", &format!("{upstream}[audit]"));
    let running = Running::start("probetls", &text);
    let line = running.line_containing("pool member marked unhealthy");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "WARN", "{line}");
    assert_eq!(v["fields"]["member"], member.url().as_str(), "{line}");
    assert_eq!(v["fields"]["from"], "unknown", "{line}");
    let cause = v["fields"]["cause"].as_str().unwrap_or("");
    assert!(cause.contains("tls failure"), "{line}");
    assert!(cause.contains("UnknownIssuer"), "rustls' reason: {line}");
    assert_eq!(running.stop(), 0);
}

/// Issue 12: `kill -9` in the middle of a load of guarded requests loses no decision. Every
/// request the (separate, recording) pool received has its `decision` line in the trail, and
/// every line in the file parses.
#[test]
fn sigkill_under_load_loses_no_decision_the_pool_acted_on() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let member = rt.block_on(ringfence::sim::FrontEnd::start("fe1")).unwrap();
    // A slow pool keeps requests in flight when the kill comes.
    member.set_fault(ringfence::sim::Fault::Slow(Duration::from_millis(5)));
    let dir = scratch();
    let audit = dir.path().join("audit.jsonl");
    let policy = "[policy]\ndefault_organisation = \"c\"\n[[organisations]]\nname = \"c\"\nallow_numbers = [\"+1425\"]\n";
    let text = config(&member.url(), policy).replace(
        "[audit]\nsink = \"off\"",
        &format!(
            "[audit]\nsink = \"file\"\npath = {:?}",
            audit.to_str().unwrap()
        ),
    );
    let mut running = Running::start("sigkill", &text);
    let addr = running.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut sent = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 5000 {
                    let target = if sent % 4 == 3 { "%2B1900" } else { "%2B1425" };
                    let request = format!(
                        "POST {SIMRING}?target=tel:{target}5550100 HTTP/1.1\r\nHost: x\r\n\
                         X-Request-Id: w{w}-{sent}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
                        break;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    if s.write_all(request.as_bytes()).is_err() {
                        break;
                    }
                    let mut answer = String::new();
                    let _ = s.read_to_string(&mut answer);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    eventually("a real load to reach the pool", TIMEOUT, || {
        member.received().len() > 150
    });
    signal(&running.child, "-KILL");
    let _ = wait(&mut running.child, Duration::from_secs(10));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();

    let trail = std::fs::read_to_string(&audit).unwrap();
    let mut decided = std::collections::HashSet::new();
    for line in trail.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: a torn line {line:?}"));
        if v["kind"] == "decision" {
            decided.insert(v["client_request_id"].as_str().unwrap().to_owned());
        }
    }
    let received = member.received();
    assert!(
        received.len() > 100,
        "a real load: {} received of {sent}",
        received.len()
    );
    for r in &received {
        let id = r.headers["x-request-id"].to_str().unwrap();
        assert!(
            decided.contains(id),
            "the pool received {id}, which has no decision line ({} lines)",
            decided.len()
        );
    }
}
