//! Running out of descriptors is not a pool failure: the real binary under a low
//! `RLIMIT_NOFILE` (util-linux `prlimit`), long polls held until its upstream connects fail with
//! EMFILE.

use std::process::{Command, Stdio};

use tokio::net::TcpStream;

use crate::support::{self, eventually, Toml, HOST};

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

/// The open-files limit the binary runs under: room for its own descriptors and a few dozen
/// upstream connections, under the HTTP/2 stream limit of the one client connection.
const NOFILE: usize = 48;

/// `ringfence run` under `prlimit --nofile=N:N`, killed (by its PID) when dropped.
struct Limited {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Limited {
    /// The next log line containing `needle`; every line read is kept in `seen`.
    async fn line_containing(&mut self, needle: &str) -> String {
        loop {
            let line = tokio::time::timeout(support::TIMEOUT, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line containing `{needle}`: {:#?}", self.seen))
                .unwrap_or_else(|| panic!("the process ended: {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Every line logged so far.
    fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prlimit_available() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn upstream_connects_that_run_out_of_descriptors_do_not_mark_the_member_down() {
    if !prlimit_available() {
        eprintln!("skipped: util-linux `prlimit` is not installed");
        return;
    }
    let member = ringfence::sim::FrontEnd::start("fe1").await.unwrap();
    member.set_event_wait(std::time::Duration::ZERO);
    member.hold_events(true);
    // One counted failure would mark the member down; connections over 2 close when they come
    // back, so descriptors are free again once the polls are answered.
    let text = Toml::of(std::slice::from_ref(&member))
        .upstream(
            "max_idle_per_member = 2\n\
             [upstream.health]\ninterval = \"100ms\"\nunhealthy_after = 1",
        )
        .build();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ringfence.toml");
    std::fs::write(&file, text).unwrap();
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .args([BIN, "run", "--log-format", "json", "--config"])
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut process = Limited {
        child,
        lines,
        seen: Vec::new(),
    };
    let serving = process.line_containing("ringfence is serving").await;
    let v: serde_json::Value = serde_json::from_str(&serving).unwrap();
    let listen: std::net::SocketAddr = v["fields"]["listen"]
        .as_str()
        .and_then(|s| s.trim_matches(['[', ']']).parse().ok())
        .unwrap_or_else(|| panic!("listen address in {serving}"));
    let admin = support::Client::new(
        v["fields"]["admin"].as_str().unwrap().parse().unwrap(),
        None,
        false,
    );
    let name = member.url();
    let healthy = |metrics: &str| {
        support::metrics::sample(
            metrics,
            "ringfence_upstream_member_healthy",
            &[("member", &name)],
        )
    };
    eventually("the member's first good probe", async || {
        healthy(&admin.get("/metrics", "admin").await.text()) == Some(1.0)
    })
    .await;

    // One client connection, HTTP/2: each held poll costs ringfence one upstream descriptor.
    let tcp = TcpStream::connect(listen).await.unwrap();
    let (h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..NOFILE {
        let mut h2 = h2.clone().ready().await.unwrap();
        let request =
            http::Request::get(format!("http://{HOST}/ucwa/v1/applications/1/events?ack=1"))
                .body(())
                .unwrap();
        let (answer, _) = h2.send_request(request, true).unwrap();
        let answer = tokio::spawn(async move {
            let response = answer.await.unwrap();
            let status = response.status().as_u16();
            let mut stream = response.into_body();
            let mut body = Vec::new();
            while let Some(chunk) = stream.data().await {
                let chunk = chunk.unwrap();
                let _ = stream.flow_control().release_capacity(chunk.len());
                body.extend_from_slice(&chunk);
            }
            (status, body)
        });
        let before = held.len();
        eventually("the poll to be held or answered", async || {
            member.received().len() > before || answer.is_finished()
        })
        .await;
        if answer.is_finished() {
            refused = Some(answer.await.unwrap());
            break;
        }
        held.push(answer);
    }
    let (status, body) = refused.unwrap_or_else(|| {
        panic!(
            "{} polls held without running out of descriptors",
            held.len()
        )
    });
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains(r#""reason":"local_resources""#), "{text}");
    assert!(held.len() >= 5, "only {} polls held first", held.len());

    // The requests in flight complete.
    member.hold_events(false);
    for answer in held {
        assert_eq!(answer.await.unwrap().0, 200);
    }
    let metrics = eventually("/metrics to answer again", async || {
        let reply = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            admin.get("/metrics", "admin"),
        )
        .await;
        reply.ok().map(|r| r.text())
    })
    .await;
    assert_eq!(healthy(&metrics), Some(1.0), "{metrics}");
    let errors = |kind: &str| {
        support::metrics::sample(
            &metrics,
            "ringfence_upstream_errors_total",
            &[("member", &name), ("kind", kind)],
        )
    };
    assert!(errors("local").unwrap_or(0.0) >= 1.0, "{metrics}");
    assert_eq!(errors("connect"), Some(0.0), "{metrics}");
    // The member is still sent requests.
    let client = support::Client::new(listen, None, false);
    assert_eq!(
        client.get("/ucwa/v1/applications/1/me", HOST).await.status,
        200
    );
    let log = process.drain();
    assert!(
        !log.iter().any(|l| l.contains("marked unhealthy")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("local resource") && l.contains("Too many open files")),
        "{log:#?}"
    );
}
