//! Running in production: reload under load, slow clients, long polls, members going away and
//! coming back.

use std::sync::Arc;
use std::time::Duration;

use ringfence::server::Server;
use ringfence::sim;

use crate::support::{
    self, assert_refused, eventually, metrics::sample, Client, ConfigFile, Toml, HOST, SIMRING,
    TIMEOUT,
};

/// A server started from a file (so it can be reloaded), in front of `members`.
struct Running {
    server: Server,
    client: Client,
    file: ConfigFile,
    members: Vec<sim::FrontEnd>,
}

fn toml(members: &[sim::FrontEnd], allow: &str, extra: &str) -> String {
    Toml::of(members)
        .server(extra)
        .upstream(
            "connect_timeout = \"1s\"\n\
             health = { interval = \"100ms\", timeout = \"500ms\", unhealthy_after = 1, healthy_after = 1 }",
        )
        .rest(&format!(
            "[policy]\ndefault_organisation = \"contoso\"\n\
             [[organisations]]\nname = \"contoso\"\nhosts = [\"{HOST}\"]\nallow_numbers = [\"{allow}\"]\n"
        ))
        .build()
}

async fn running(members: usize, allow: &str, extra: &str) -> Running {
    let mut list = Vec::new();
    for i in 0..members {
        list.push(sim::FrontEnd::start(&format!("fe{}", i + 1)).await.unwrap());
    }
    let file = ConfigFile::new(&toml(&list, allow, extra));
    let server = file.serve().await;
    let client = Client::new(server.addrs()[0], None, false);
    Running {
        server,
        client,
        file,
        members: list,
    }
}

impl Running {
    async fn reload(&self) -> u16 {
        support::reload(&self.server).await
    }

    async fn metrics(&self) -> String {
        support::scrape(&self.server).await
    }
}

#[tokio::test]
async fn reload_under_load_switches_policy_and_loses_no_request() {
    let r = Arc::new(running(2, "+1206", "").await);
    let a = format!("{SIMRING}?target=tel:%2B12065550100");
    let b = format!("{SIMRING}?target=tel:%2B14255550100");
    assert_eq!(
        r.client.request("POST", &a, HOST, &[], b"").await.status,
        204
    );
    assert_refused(
        &r.client.request("POST", &b, HOST, &[], b"").await,
        403,
        "not_allowed",
    );

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (r, stop, total) = (Arc::clone(&r), Arc::clone(&stop), Arc::clone(&total));
        load.push(tokio::spawn(async move {
            let mut answered = 0;
            while !stop.load(Relaxed) && answered < 2000 {
                let reply = r.client.get("/ucwa/v1/applications/1/me", HOST).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                answered += 1;
                total.fetch_add(1, Relaxed);
            }
            answered
        }));
    }
    // The reload lands while requests are being answered, and more are answered after it.
    eventually("the load to be answered", async || {
        total.load(Relaxed) >= 20
    })
    .await;
    r.file.write(&toml(&r.members, "+1425", ""));
    assert_eq!(r.reload().await, 200);
    let at_reload = total.load(Relaxed);
    eventually("more load answered after the reload", async || {
        total.load(Relaxed) >= at_reload + 20
    })
    .await;
    stop.store(true, Relaxed);
    for task in load {
        let answered = tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
        assert!(answered > 0);
    }
    assert_refused(
        &r.client.request("POST", &a, HOST, &[], b"").await,
        403,
        "not_allowed",
    );
    assert_eq!(
        r.client.request("POST", &b, HOST, &[], b"").await.status,
        204
    );
    let m = r.metrics().await;
    assert_eq!(
        sample(
            &m,
            "ringfence_config_reloads_total",
            &[("result", "success")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_broken_file_keeps_the_old_policy_and_counts_a_failure() {
    let r = running(1, "+1206", "").await;
    r.file
        .write("[server]\nlisten = [\"nonsense\"]\nunknown = 1\n");
    assert_eq!(r.reload().await, 422);
    let ok = r
        .client
        .request(
            "POST",
            &format!("{SIMRING}?target=tel:%2B12065550100"),
            HOST,
            &[],
            b"",
        )
        .await;
    assert_eq!(ok.status, 204, "the old policy still applies");
    let m = r.metrics().await;
    assert_eq!(
        sample(
            &m,
            "ringfence_config_reloads_total",
            &[("result", "failure")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "ringfence_config_reloads_total",
            &[("result", "success")]
        ),
        Some(0.0),
        "both series exist from the start"
    );
}

/// Sends `bytes` on a fresh connection, then nothing; what the server sent before it closed the
/// connection, and how long after the bytes it did.
async fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, Duration) {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let started = tokio::time::Instant::now();
    let (answer, closed) = until_closed(&mut stream).await;
    (
        String::from_utf8_lossy(&answer).into_owned(),
        closed - started,
    )
}

/// Reads what the server sends until it closes `stream` (cleanly: a read error fails the test),
/// and when it closed it, on tokio's clock.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> (Vec<u8>, tokio::time::Instant) {
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .unwrap();
    (rest, tokio::time::Instant::now())
}

/// On paused time: the clock is tokio's, so each close is seen at the timeout itself.
#[tokio::test(start_paused = true)]
async fn a_slow_loris_connection_is_closed_at_the_header_timeout() {
    let r = running(1, "+1206", "header_read_timeout = \"1s\"").await;
    let addr = r.server.addrs()[0];
    // Half a request head, then silence: closed by hyper's header timeout.
    let (answer, waited) = closed_after(
        addr,
        b"GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: lyncweb.contoso.com\r\nX-Slow: ",
    )
    .await;
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
        "closed after {waited:?}"
    );
    assert!(!answer.contains("200"), "{answer}");
    // A connection that says nothing at all is closed too.
    let (silent, waited) = closed_after(addr, b"").await;
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(2100),
        "closed after {waited:?}"
    );
    assert!(silent.is_empty(), "{silent}");
    assert!(r.members[0].received().is_empty());
}

/// The header timeout holds for every head on a keep-alive connection, not only its first: from
/// the end of the request before it, and, once the connection has parked (after 250 ms of quiet),
/// from its waking. On paused time, as above.
#[test]
fn a_later_head_is_held_to_the_header_timeout_too() {
    support::on_paused_time(|| async {
        use tokio::io::AsyncWriteExt;
        let r = running(1, "+1206", "header_read_timeout = \"1s\"").await;
        let addr = r.server.addrs()[0];
        let request = format!("GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        let half = format!("GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ");
        for quiet in [Duration::ZERO, Duration::from_secs(3)] {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            // The whole answer, so that nothing is left to read but the close.
            assert_eq!(support::read_answer(&mut stream).await.status, 200);
            // Still open after the quiet (idle_timeout is 120 s): parked, when there was one.
            tokio::time::sleep(quiet).await;
            stream.write_all(half.as_bytes()).await.unwrap();
            let started = tokio::time::Instant::now();
            let (rest, closed) = until_closed(&mut stream).await;
            let waited = closed - started;
            assert!(
                waited >= Duration::from_millis(900) && waited < Duration::from_millis(1100),
                "after {quiet:?} of quiet, closed {waited:?} after half a head"
            );
            assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        }
        assert_eq!(r.members[0].received().len(), 2);
    });
}

/// The first head is due within the header timeout of the accept, however its bytes are
/// spread: after a quiet start, and after a first byte that could begin HTTP/2's preface ("P",
/// which hyper's auto builder reads on). Found by fresh eyes (round 20): both closed up to twice
/// the limit after the accept, and (round 21) the second finished a head begun in time during a
/// graceful close. On paused time.
#[test]
fn the_first_head_is_due_within_the_header_timeout_of_the_accept() {
    support::on_paused_time(|| async {
        use tokio::io::AsyncWriteExt;
        let r = running(1, "+1206", "header_read_timeout = \"1s\"").await;
        let addr = r.server.addrs()[0];
        let half = format!("GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ");
        for first in ["", "P"] {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let accepted = tokio::time::Instant::now();
            stream.write_all(first.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(600)).await;
            stream
                .write_all(&half.as_bytes()[first.len()..])
                .await
                .unwrap();
            let (rest, closed) = until_closed(&mut stream).await;
            let waited = closed - accepted;
            assert!(
                waited >= Duration::from_millis(950) && waited < Duration::from_millis(1050),
                "first bytes {first:?}: closed {waited:?} after the accept"
            );
            assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        }
        assert!(r.members[0].received().is_empty());
    });
}

/// A keep-alive connection served by hyper's auto builder (here a plaintext client whose first
/// segment is a lone "P", as one that could begin HTTP/2's preface; likewise a TLS client that
/// names no protocol) lives for `idle_timeout` between requests, as a parkable one does: hyper's
/// header timer closed it `header_read_timeout` after each answer (fresh eyes, round 21). On
/// paused time.
#[test]
fn an_auto_builder_keep_alive_connection_lives_for_the_idle_timeout() {
    support::on_paused_time(|| async {
        use tokio::io::AsyncWriteExt;
        let r = running(
            1,
            "+1206",
            "header_read_timeout = \"1s\"\nidle_timeout = \"5s\"",
        )
        .await;
        let mut stream = tokio::net::TcpStream::connect(r.server.addrs()[0])
            .await
            .unwrap();
        let create = format!(
            "POST /ucwa/oauth/v1/applications HTTP/1.1\r\nHost: {HOST}\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        stream.write_all(b"P").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(&create.as_bytes()[1..]).await.unwrap();
        let created = support::read_answer(&mut stream).await;
        assert!((200..300).contains(&created.status), "{created:?}");
        // Quiet for longer than the header timeout, then the next request.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let me = format!("GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        stream.write_all(me.as_bytes()).await.unwrap();
        assert_eq!(support::read_answer(&mut stream).await.status, 200);
        let answered = tokio::time::Instant::now();
        let (_, closed) = until_closed(&mut stream).await;
        let waited = closed - answered;
        assert!(
            waited >= Duration::from_millis(4900) && waited < Duration::from_millis(5300),
            "closed {waited:?} after the answer"
        );
        assert_eq!(r.members[0].received().len(), 2);
    });
}

/// A head begun before the answer before it ended (read with that request) is due from that
/// answer's end, also when the connection hands it to a fresh hyper connection at the park delay:
/// fresh eyes (round 20) saw the close 250 ms late. On paused time.
#[test]
fn a_head_begun_during_the_last_request_is_due_from_its_end() {
    support::on_paused_time(|| async {
        use tokio::io::AsyncWriteExt;
        let r = running(1, "+1206", "header_read_timeout = \"1s\"").await;
        let mut stream = tokio::net::TcpStream::connect(r.server.addrs()[0])
            .await
            .unwrap();
        let request = format!("GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        let half = format!("GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ");
        stream
            .write_all(format!("{request}{half}").as_bytes())
            .await
            .unwrap();
        assert_eq!(support::read_answer(&mut stream).await.status, 200);
        let answered = tokio::time::Instant::now();
        let (rest, closed) = until_closed(&mut stream).await;
        let waited = closed - answered;
        assert!(
            waited >= Duration::from_millis(950) && waited < Duration::from_millis(1100),
            "closed {waited:?} after the answer"
        );
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        assert_eq!(r.members[0].received().len(), 1);
    });
}

#[tokio::test]
async fn a_long_poll_outlives_the_idle_and_header_timeouts() {
    let r = running(
        1,
        "+1206",
        "header_read_timeout = \"1s\"\nidle_timeout = \"1s\"",
    )
    .await;
    r.members[0].set_event_wait(Duration::from_millis(2500));
    let reply = r
        .client
        .get("/ucwa/v1/applications/192/events?ack=1", HOST)
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("ack=3"));
}

#[tokio::test]
async fn the_pool_timing_out_is_a_ucwa_504() {
    let members = [sim::FrontEnd::start("slow").await.unwrap()];
    let text = Toml::of(&members)
        .upstream("response_timeout = \"500ms\"")
        .build();
    let server = support::serve_toml(&text).await;
    let client = Client::new(server.addrs()[0], None, false);
    // Answered requests first: their deadlines' timers are kept (src/deadline.rs), and the slow
    // one's must still fire at its own 500 ms, not at a kept one's, nor never.
    for _ in 0..5 {
        assert_eq!(
            client.get("/ucwa/v1/applications/1/me", HOST).await.status,
            200
        );
    }
    // Kept timers set for ~500 ms from now; the slow request's deadline is 300 ms later than
    // theirs, and a timer fired at the kept deadline would answer after ~200 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    members[0].set_fault(sim::Fault::Slow(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    assert_refused(
        &client.get("/ucwa/v1/applications/1/me", HOST).await,
        504,
        "upstream_timeout",
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(2_500),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_member_taken_down_under_load_loses_no_request_and_takes_traffic_when_back() {
    let mut r = running(2, "+1206", "").await;
    let addr = r.members[0].addr();
    let client = Arc::new(Client::new(r.server.addrs()[0], None, false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // The load goes on until the member is gone, and for a few requests after: it spans the
    // member's going away by construction, whatever the pace.
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, answered, stopped) = (
            Arc::clone(&client),
            Arc::clone(&answered),
            Arc::clone(&stopped),
        );
        load.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut after_stop = 0;
            for i in 0..10_000 {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    after_stop += 1;
                    if after_stop > 10 {
                        break;
                    }
                }
                let reply = if i % 2 == 0 {
                    client.get("/ucwa/v1/applications/1/me", HOST).await
                } else {
                    client
                        .request(
                            "POST",
                            &format!("{SIMRING}?target=tel:%2B12065550100"),
                            HOST,
                            &[],
                            b"",
                        )
                        .await
                };
                statuses.push(reply.status);
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            statuses
        }));
    }
    eventually("the load to be answered by both members", async || {
        answered.load(std::sync::atomic::Ordering::Relaxed) >= 20
            && r.members.iter().all(|m| !m.received().is_empty())
    })
    .await;
    r.members[0].stop();
    stopped.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        let statuses = tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
        // GETs are retryable (idempotent, empty body): none may fail. A POST whose connection
        // broke after it was sent may have been acted on, so it is answered 502, never resent.
        for (i, status) in statuses.iter().enumerate() {
            match (i % 2 == 0, status) {
                (_, 200 | 204) => {}
                (false, 502) => {}
                other => panic!("request {i}: {other:?} in {statuses:?}"),
            }
        }
    }
    let m = r.metrics().await;
    let healthy = sample(
        &m,
        "ringfence_upstream_member_healthy",
        &[("member", &format!("http://{addr}"))],
    );
    assert_eq!(healthy, Some(0.0), "{m}");

    // The member comes back, on a fresh port (its old one was released and may have been
    // taken since): a reload names it, probes find it healthy and it takes traffic again.
    let before = r.members[1].received().len();
    r.members[0] = sim::FrontEnd::start("fe1").await.unwrap();
    r.file.write(&toml(&r.members, "+1206", ""));
    assert_eq!(r.reload().await, 200);
    let back = r.members[0].url();
    eventually("the member back to be found healthy", async || {
        let m = r.metrics().await;
        sample(
            &m,
            "ringfence_upstream_member_healthy",
            &[("member", &back)],
        ) == Some(1.0)
    })
    .await;
    eventually(
        "the member back to take traffic beside the other",
        async || {
            assert_eq!(
                client.get("/ucwa/v1/applications/1/me", HOST).await.status,
                200
            );
            !r.members[0].received().is_empty() && r.members[1].received().len() > before
        },
    )
    .await;
}

#[tokio::test]
async fn ready_turns_503_when_no_member_is_healthy() {
    let r = running(1, "+1206", "").await;
    let admin = support::admin(&r.server);
    support::wait_ready(r.server.admin_addr(), 200).await;
    r.members[0].stop();
    support::wait_ready(r.server.admin_addr(), 503).await;
    assert_refused(
        &r.client.get("/ucwa/v1/applications/1/me", HOST).await,
        503,
        "upstream_unavailable",
    );
    assert_eq!(admin.get("/live", "admin").await.status, 200);
}

#[tokio::test]
async fn during_the_drain_ready_answers_503_and_in_flight_requests_finish() {
    let r = running(1, "+1206", "shutdown_grace = \"10s\"").await;
    r.members[0].set_event_wait(Duration::from_millis(1500));
    let Running {
        server,
        client,
        members,
        ..
    } = r;
    let admin_addr = server.admin_addr();
    let admin = support::admin(&server);
    let client = Arc::new(client);
    let c = Arc::clone(&client);
    let poll =
        tokio::spawn(async move { c.get("/ucwa/v1/applications/192/events?ack=1", HOST).await });
    eventually("the long poll to reach the member", async || {
        !members[0].received().is_empty()
    })
    .await;
    let drain = tokio::spawn(server.shutdown());
    support::wait_ready(admin_addr, 503).await;
    assert_eq!(admin.get("/live", "admin").await.status, 200);
    assert_eq!(
        poll.await.unwrap().status,
        200,
        "the in-flight long poll finished"
    );
    assert!(
        tokio::time::timeout(TIMEOUT, drain)
            .await
            .unwrap()
            .unwrap()
            .clean(),
        "drained in time"
    );
    drop(members);
}

#[tokio::test]
async fn a_reload_that_removes_a_member_drops_its_health_series() {
    let r = running(2, "+1206", "").await;
    let gone = r.members[1].url();
    // Its first probe makes it healthy.
    eventually("the member to be found healthy", async || {
        let m = r.metrics().await;
        sample(
            &m,
            "ringfence_upstream_member_healthy",
            &[("member", &gone)],
        ) == Some(1.0)
    })
    .await;
    r.file.write(&toml(&r.members[..1], "+1206", ""));
    assert_eq!(r.reload().await, 200);
    let m = r.metrics().await;
    assert_eq!(
        sample(
            &m,
            "ringfence_upstream_member_healthy",
            &[("member", &gone)]
        ),
        None,
        "{m}"
    );
    let before = r.members[1].received().len();
    for _ in 0..4 {
        let reply = r.client.get("/ucwa/v1/applications/1/me", HOST).await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(
        r.members[1].received().len(),
        before,
        "the removed member gets no traffic"
    );
}

#[tokio::test]
async fn an_ipv4_and_an_ipv6_wildcard_listener_can_share_a_port() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 on this machine: skipped");
        return;
    }
    let member = sim::FrontEnd::start("fe1").await.unwrap();
    // Two listeners share one port, so it cannot be 0: a free port is picked, and picked again
    // if another process took it before ringfence bound it (bounded).
    let mut started = None;
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = Toml::of(std::slice::from_ref(&member)).build().replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [\"0.0.0.0:{port}\", \"[::]:{port}\"]"),
        );
        let config = ringfence::config::Config::from_toml(&text).unwrap();
        match support::try_serve(config, None).await {
            Ok(server) => {
                started = Some((server, port));
                break;
            }
            Err(ringfence::server::StartError::Bind { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let (server, port) = started.expect("both bind");
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let client = Client::new(addr.parse().unwrap(), None, false);
        assert_eq!(
            client.get("/ucwa/v1/applications/1/me", HOST).await.status,
            200,
            "{addr}"
        );
    }
    drop(server);
}
