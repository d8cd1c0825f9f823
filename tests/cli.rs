//! The real binary: demo serves what it prints, check-config and eval exit codes, SIGTERM drains.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits for the child to exit, killing it if it does not within `limit`.
fn wait(mut child: Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

#[test]
fn check_config_reports_every_problem_with_its_key_path() {
    let dir = std::env::temp_dir().join(format!("ringfence-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
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
    let _ = std::fs::remove_dir_all(dir);
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

#[test]
fn run_exits_1_with_the_cause_when_the_config_cannot_be_used() {
    let (code, _, err) = run(&["run", "--config", "/nonexistent/ringfence.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/ringfence.toml"), "{err}");
}

#[test]
fn demo_serves_the_requests_it_prints_and_stops_on_ctrl_c() {
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    assert_eq!(wait(child, Duration::from_secs(15)), 0);
}

/// `ringfence run` on a configuration file, with JSON logs read line by line.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
    dir: PathBuf,
    file: PathBuf,
}

impl Running {
    fn start(name: &str, config: &str) -> Running {
        Running::start_logging(name, config, "info")
    }

    /// Starts with `RUST_LOG` set to `filter`.
    fn start_logging(name: &str, config: &str, filter: &str) -> Running {
        let dir = std::env::temp_dir().join(format!("ringfence-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ringfence.toml");
        std::fs::write(&file, config).unwrap();
        let mut child = Command::new(BIN)
            .args([
                "run",
                "--log-format",
                "json",
                "--config",
                file.to_str().unwrap(),
            ])
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut running = Running {
            child,
            lines,
            addr: "127.0.0.1:0".parse().unwrap(),
            dir,
            file,
        };
        let serving = running.line_containing("ringfence is serving");
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
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no log line containing `{needle}` in {seen:#?}"));
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
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no log line containing `{needle}`"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// SIGTERM, then the exit code.
    fn stop(self) -> i32 {
        signal(&self.child, "-TERM");
        let code = wait(self.child, Duration::from_secs(15));
        let _ = std::fs::remove_dir_all(self.dir);
        code
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
    let member = rt.block_on(ringfence::sim::Member::start("fe1")).unwrap();
    member.set_fault(ringfence::sim::Fault::Slow(Duration::from_millis(1500)));
    let running = Running::start("drain", &config(&member.url(), ""));
    let addr = running.addr;
    let in_flight = std::thread::spawn(move || {
        http(addr, "GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: lyncweb.contoso.com\r\nConnection: close\r\n\r\n")
    });
    std::thread::sleep(Duration::from_millis(400));
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
    let member = rt.block_on(ringfence::sim::Member::start("fe1")).unwrap();
    let policy = |allow: &str| {
        let org = format!("[policy]\ndefault_organisation = \"c\"\n[[organisations]]\nname = \"c\"\nallow_numbers = [\"{allow}\"]\n");
        config(&member.url(), &org)
    };
    let running = Running::start("hup", &policy("+1206"));
    let path = format!("{SIMRING}?target=tel:%2B14255550100");
    assert!(post(running.addr, "x", &path).starts_with("HTTP/1.1 403"));
    std::fs::write(&running.file, policy("+1425")).unwrap();
    signal(&running.child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !post(running.addr, "x", &path).starts_with("HTTP/1.1 204") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP never switched the policy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running.line_containing("configuration reloaded (SIGHUP)");
    assert_eq!(running.stop(), 0);
}

#[test]
fn log_lines_about_a_request_are_json_and_carry_its_request_id() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let running = Running::start("logid", &config(&format!("http://{dead}"), ""));
    let answer = http(
        running.addr,
        "GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: x\r\nX-Request-Id: trace-me-42\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let failure = running.line_containing("pool member failed");
    let v: serde_json::Value = serde_json::from_str(&failure).unwrap();
    assert_eq!(v["span"]["request_id"], "trace-me-42", "{failure}");
    assert_eq!(running.stop(), 0);
}

#[test]
fn json_logs_and_the_audit_trail_carry_the_same_plain_request_id() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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
            .find(|v| v["fields"]["message"] == message && v["fields"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no `{message}` line with request_id {id}: {lines:#?}"))
    };
    let refused = found("refused", "join-me-1");
    assert_eq!(refused["span"]["request_id"], "join-me-1");
    let audit = json
        .iter()
        .find(|v| v["decision"] == "deny")
        .unwrap_or_else(|| panic!("no audit line: {lines:#?}"));
    assert_eq!(audit["request_id"], refused["fields"]["request_id"]);
    let failed = found("no answer from the pool", "join-me-2");
    assert_eq!(failed["span"]["request_id"], "join-me-2");
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
    let dir = std::env::temp_dir().join(format!("ringfence-cli-ca-{}", std::process::id()));
    let (cert, key, _) = certificates(&dir, "member");
    let (_, _, other_ca) = certificates(&dir, "other");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tls =
        ringfence::tls::server_config(&ringfence::config::ServerTls { cert, key }, true).unwrap();
    let member = rt
        .block_on(ringfence::sim::Member::start_on(
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
    let _ = std::fs::remove_dir_all(dir);
}
