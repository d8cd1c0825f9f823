//! Running out of open files (issue 16), with the real binary under a low RLIMIT_NOFILE set by
//! util-linux's `prlimit` (Debian's util-linux, which is essential, ships it): the limit raised
//! at start and warned about, and a process whose client connections take every descriptor
//! still finishing the requests in flight, answering `/metrics`, and serving again once the
//! clients go.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

mod common;
use common::{eventually, scratch, Process, TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

/// `ringfence ARGS` under `prlimit --nofile=SOFT:HARD`.
fn limited(soft: u64, hard: u64, args: &[&str]) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={soft}:{hard}"))
        .arg(BIN)
        .args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("RINGFENCE") {
            command.env_remove(name);
        }
    }
    command
}

fn config(member: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nheader_read_timeout = \"60s\"\n{extra}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstream]\nmembers = [\"{member}\"]\n\
         [upstream.health]\nunhealthy_after = 1000\n\
         [audit]\nsink = \"off\"\n"
    )
}

/// `ringfence run` (JSON logs) under the limit; its log lines and its two addresses.
struct Running {
    child: Process,
    lines: mpsc::Receiver<String>,
    listen: SocketAddr,
    admin: SocketAddr,
    /// The log lines up to "ringfence is serving".
    startup: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(soft: u64, hard: u64, config: &str) -> Running {
        let dir = scratch();
        let file = dir.path().join("ringfence.toml");
        std::fs::write(&file, config).unwrap();
        let mut child = limited(
            soft,
            hard,
            &[
                "run",
                "--log-format",
                "json",
                "--config",
                file.to_str().unwrap(),
            ],
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs");
        let lines = common::stderr_lines(&mut child);
        let mut running = Running {
            child: Process(child),
            lines,
            listen: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            startup: Vec::new(),
            _dir: dir,
        };
        running.startup = running.lines_through("ringfence is serving");
        let serving: serde_json::Value =
            serde_json::from_str(running.startup.last().unwrap()).unwrap();
        let field = |name: &str| -> SocketAddr {
            serving["fields"][name]
                .as_str()
                .and_then(|s| s.trim_matches(['[', ']']).parse().ok())
                .unwrap_or_else(|| panic!("{name} in {serving}"))
        };
        running.listen = field("listen");
        running.admin = field("admin");
        running
    }

    /// Every log line up to and including the first that contains `needle`.
    fn lines_through(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(TIMEOUT)
                .unwrap_or_else(|_| panic!("no log line containing `{needle}` in {seen:#?}"));
            let done = line.contains(needle);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    /// `GET /metrics`, which must answer within 5 s.
    fn metrics(&self) -> String {
        let answer = exchange(
            self.admin,
            "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "/metrics: {answer:?}");
        answer
    }
}

/// One request on a fresh connection; the whole answer (empty if none came within `limit`).
fn exchange(addr: SocketAddr, request: &str, limit: Duration) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of the one sample of `metrics` whose line starts with `series`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

const EVENTS: &str = "/ucwa/v1/applications/1/events?ack=1";

fn long_poll() -> String {
    format!("GET {EVENTS} HTTP/1.1\r\nHost: lyncweb.contoso.com\r\nConnection: close\r\n\r\n")
}

/// A pool member that holds every `events` long poll until released, and answers anything else
/// (probes included) at once: 200 `ok`.
struct Member {
    addr: SocketAddr,
    held: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

async fn member() -> Member {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(AtomicUsize::new(0));
    let (release, released) = tokio::sync::watch::channel(false);
    let count = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            let mut released = released.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let head = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break buf.drain(..end + 4).collect::<Vec<u8>>();
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    if String::from_utf8_lossy(&head).contains("/events") {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = released.wait_for(|r| *r).await;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Member {
        addr,
        held,
        release,
    }
}

#[test]
fn check_config_warns_when_max_connections_needs_more_files_than_the_limit() {
    let dir = scratch();
    let file = dir.path().join("ringfence.toml");
    let check = |max: &str| {
        std::fs::write(
            &file,
            config("http://127.0.0.1:9", &format!("max_connections = {max}")),
        )
        .unwrap();
        let out = limited(
            100,
            256,
            &["check-config", "--config", file.to_str().unwrap()],
        )
        .output()
        .expect("prlimit (util-linux) runs");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // The hard limit counts: `run` raises the soft one to it.
    let out = check("10000");
    assert!(
        out.contains(
            "warning: server.max_connections = 10000 needs up to 20064 open files (2 per \
             connection, the client's and its upstream's, and 64 for"
        ),
        "{out}"
    );
    assert!(
        out.contains("the open-files limit (RLIMIT_NOFILE) is 256: raise it to at least 20064 (LimitNOFILE= in the systemd unit"),
        "{out}"
    );
    assert!(
        out.contains("or lower server.max_connections to 96"),
        "{out}"
    );
    // 2 × 96 + 64 = 256 fits.
    assert!(!check("96").contains("open files"), "fits");
}

#[test]
fn run_raises_the_soft_limit_to_the_hard_one_and_warns_when_it_is_short() {
    let mut running = Running::start(100, 300, &config("http://127.0.0.1:9", ""));
    let text = running.startup.join("\n");
    assert!(
        text.contains("raised the open-files limit (RLIMIT_NOFILE) to its hard limit")
            && text.contains(r#""from":"100""#)
            && text.contains(r#""to":"300""#),
        "{text}"
    );
    assert!(
        text.contains("server.max_connections = 10000 needs up to 20064 open files")
            && text.contains("(RLIMIT_NOFILE) is 300"),
        "{text}"
    );
    let metrics = running.metrics();
    assert_eq!(
        sample(&metrics, "process_max_fds "),
        Some(300.0),
        "{metrics}"
    );
    assert!(running.alive());
}

/// The whole story: long polls held at the member, then idle clients until every descriptor is
/// taken (the listener's accepts fail with EMFILE and back off). The admin listener answers
/// from its reserve, the long polls finish, a new client waits rather than anything crashing,
/// and once the idle clients go, new requests are served again.
#[test]
fn at_the_open_files_limit_requests_in_flight_finish_and_metrics_answer() {
    const LIMIT: u64 = 128;
    const POLLS: usize = 10;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let member = rt.block_on(member());
    let mut running = Running::start(
        LIMIT,
        LIMIT,
        &config(&format!("http://{}", member.addr), ""),
    );
    let listen = running.listen;
    let polls: Vec<_> = (0..POLLS)
        .map(|_| {
            std::thread::spawn(move || exchange(listen, &long_poll(), Duration::from_secs(60)))
        })
        .collect();
    eventually("the long polls to reach the member", TIMEOUT, || {
        member.held.load(Ordering::SeqCst) == POLLS
    });

    // More idle clients than the process has descriptors: the kernel completes each connection;
    // the listener takes what it can and leaves the rest in its backlog.
    let idle: Vec<TcpStream> = (0..LIMIT)
        .map(|_| TcpStream::connect_timeout(&listen, Duration::from_secs(5)).unwrap())
        .collect();
    let label = format!("ringfence_accept_errors_total{{kind=\"emfile\",listener=\"{listen}\"}}");
    let metrics = eventually("accepts to fail with EMFILE", TIMEOUT, || {
        let metrics = running.metrics();
        (sample(&metrics, &label).unwrap_or(0.0) > 0.0).then_some(metrics)
    });
    // At the limit: every further scrape is answered from the admin reserve.
    for _ in 0..5 {
        let again = running.metrics();
        assert!(sample(&again, &label).unwrap() >= sample(&metrics, &label).unwrap());
    }
    let open = sample(&metrics, "ringfence_connections_open{").unwrap();
    assert!(
        open > POLLS as f64 && open < LIMIT as f64,
        "client connections open at the limit: {open}"
    );

    // A new client now waits in the backlog: no answer, and nothing crashes.
    let waiting =
        std::thread::spawn(move || exchange(listen, &long_poll(), Duration::from_secs(60)));
    assert!(running.alive());

    // The long polls in flight finish.
    member.release.send(true).unwrap();
    for poll in polls {
        let answer = poll.join().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "a long poll: {answer:?}"
        );
        assert!(answer.ends_with("ok"), "{answer:?}");
    }
    assert!(running.alive());
    assert!(running
        .metrics()
        .contains("ringfence_upstream_member_healthy"));

    // The idle clients go: the one waiting is served, and so are new ones.
    drop(idle);
    let answer = waiting.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the waiting client: {answer:?}"
    );
    let answer = exchange(listen, &long_poll(), Duration::from_secs(10));
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "a new client: {answer:?}"
    );
    let metrics = running.metrics();
    let healthy = format!(
        "ringfence_upstream_member_healthy{{member=\"http://{}\"}}",
        member.addr
    );
    assert_eq!(sample(&metrics, &healthy), Some(1.0), "{metrics}");
    assert!(
        sample(&metrics, "process_open_fds ").unwrap() < LIMIT as f64,
        "the process metrics are back: {metrics}"
    );
    assert!(running.alive());
}
