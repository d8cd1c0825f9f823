//! The pool's answers come back unchanged; dead members are skipped.

use ringfence::sim::Fault;

use crate::support::{self, assert_refused, eventually, Options, Toml, HOST};
const ALLOWED: &str = "target=tel:%2B14255550100";

#[tokio::test]
async fn the_pools_own_errors_come_back_unchanged() {
    let h = support::start_with(Options {
        members: 1,
        ..Options::default()
    })
    .await;
    for (fault, status, subcode) in [
        (Fault::AlreadyExists, 409, "AlreadyExists"),
        (Fault::CannotRedirect, 410, "CannotRedirect"),
        (Fault::CallbackChannelError, 500, "CallbackChannelError"),
    ] {
        h.members[0].set_fault(fault);
        let reply = h.ring(HOST, ALLOWED).await;
        assert_eq!(reply.status, status);
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["subcode"], subcode);
        assert!(
            v.get("debugInfo").is_none(),
            "the pool's body, not ringfence's"
        );
        assert_eq!(reply.header("x-sim-member"), Some("fe1"));
    }
}

#[tokio::test]
async fn a_dead_member_is_skipped_without_losing_the_request() {
    let h = support::start_with(Options {
        members: 1,
        dead_member_first: true,
        ..Options::default()
    })
    .await;
    for _ in 0..4 {
        assert_eq!(h.ring(HOST, ALLOWED).await.status, 204);
        assert_eq!(
            h.client
                .get("/ucwa/v1/applications/1/me", HOST)
                .await
                .status,
            200
        );
    }
    assert_eq!(h.members[0].received().len(), 8);
    let metrics = h.metrics().await;
    let errors = support::metrics::sample(
        &metrics,
        "ringfence_upstream_errors_total",
        &[("kind", "connect")],
    );
    assert!(errors.unwrap_or(0.0) >= 1.0, "{metrics}");
}

#[tokio::test]
async fn round_robin_spreads_requests_over_members() {
    let h = support::start().await;
    for _ in 0..6 {
        assert_eq!(
            h.client
                .get("/ucwa/v1/applications/1/me", HOST)
                .await
                .status,
            200
        );
    }
    assert_eq!(h.members[0].received().len(), 3);
    assert_eq!(h.members[1].received().len(), 3);
}

#[tokio::test]
async fn when_every_member_is_down_the_answer_is_a_ucwa_503() {
    let h = support::start_with(Options {
        members: 1,
        ..Options::default()
    })
    .await;
    h.members[0].stop();
    let addr = h.members[0].addr();
    eventually("the stopped member to refuse connections", async || {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    let reply = h.ring(HOST, ALLOWED).await;
    assert_refused(&reply, 503, "upstream_unavailable");
}

#[tokio::test]
async fn members_can_be_reached_over_tls_with_the_configured_ca() {
    let h = support::start_with(Options {
        members: 1,
        upstream_tls: true,
        ..Options::default()
    })
    .await;
    assert!(h.members[0].url().starts_with("https://"));
    assert_eq!(h.ring(HOST, ALLOWED).await.status, 204);
    assert_eq!(h.members[0].received().len(), 1);
}

#[tokio::test]
async fn least_requests_sends_new_requests_away_from_a_busy_member() {
    let members = [
        ringfence::sim::FrontEnd::start("slow").await.unwrap(),
        ringfence::sim::FrontEnd::start("fast").await.unwrap(),
    ];
    for m in &members {
        m.set_event_wait(std::time::Duration::from_millis(1500));
    }
    let text = Toml::of(&members)
        .upstream("balance = \"least_requests\"")
        .build();
    let server = support::serve_toml(&text).await;
    let client = std::sync::Arc::new(support::Client::new(server.addrs()[0], None, false));
    // A long poll occupies one member; then every short request goes to the other.
    let c = std::sync::Arc::clone(&client);
    let poll =
        tokio::spawn(async move { c.get("/ucwa/v1/applications/1/events?ack=1", HOST).await });
    let busy = eventually("a member to receive the long poll", async || {
        members.iter().position(|m| m.received().len() == 1)
    })
    .await;
    let (busy, idle) = (&members[busy], &members[1 - busy]);
    for _ in 0..6 {
        assert_eq!(
            client.get("/ucwa/v1/applications/1/me", HOST).await.status,
            200
        );
    }
    assert_eq!(busy.received().len(), 1, "the busy member got nothing more");
    assert_eq!(idle.received().len(), 6);
    assert_eq!(poll.await.unwrap().status, 200);
}

/// One member's `ringfence_upstream_connections` sample in this state.
fn connections(metrics: &str, member: &str, state: &str) -> Option<f64> {
    support::metrics::sample(
        metrics,
        "ringfence_upstream_connections",
        &[("member", member), ("state", state)],
    )
}

/// After a burst of 50 concurrent long polls, the pool keeps at most `max_idle_per_member`
/// connections to the member: the rest are closed as they come back, on both ends.
#[tokio::test]
async fn the_idle_pool_never_keeps_more_than_its_cap_after_a_burst() {
    const BURST: usize = 50;
    let member = holding_member().await;
    let text = Toml::of(std::slice::from_ref(&member))
        .upstream("max_idle_per_member = 4\n[upstream.health]\ninterval = \"1h\"")
        .build();
    let server = support::serve_toml(&text).await;
    let client = std::sync::Arc::new(support::Client::new(server.addrs()[0], None, false));
    let polls: Vec<_> = (0..BURST)
        .map(|_| {
            let c = std::sync::Arc::clone(&client);
            tokio::spawn(async move { c.get("/ucwa/v1/applications/1/events?ack=1", HOST).await })
        })
        .collect();
    let name = member.url();
    eventually("every poll to be held by the member", async || {
        let metrics = support::scrape(&server).await;
        (member.received().len() == BURST
            && member.connections_open() >= BURST
            && connections(&metrics, &name, "busy") == Some(BURST as f64))
        .then_some(())
    })
    .await;
    member.hold_events(false);
    for poll in polls {
        assert_eq!(poll.await.unwrap().status, 200);
    }
    let (idle, open) = eventually("the pool to close what is over its cap", async || {
        let metrics = support::scrape(&server).await;
        let idle = connections(&metrics, &name, "idle")?;
        let open = member.connections_open();
        (idle <= 4.0 && open <= 4).then_some((idle, open))
    })
    .await;
    let metrics = support::scrape(&server).await;
    assert_eq!(connections(&metrics, &name, "busy"), Some(0.0), "{metrics}");
    assert!(idle >= 1.0, "kept connections are shown idle: {metrics}");
    assert_eq!(
        idle as usize, open,
        "ringfence and the member agree: {metrics}"
    );
    // The kept connections serve the next requests: no new connection is needed.
    for _ in 0..4 {
        assert_eq!(
            client.get("/ucwa/v1/applications/1/me", HOST).await.status,
            200
        );
    }
    assert!(member.connections_open() <= 4);
}

/// A client that goes away during a held long poll takes its upstream connection with it: the
/// exchange is dropped and its socket closed, never parked in the idle list with an answer still
/// to come.
#[tokio::test]
async fn a_client_gone_during_a_long_poll_closes_its_upstream_connection() {
    use tokio::io::AsyncWriteExt;
    let member = holding_member().await;
    let text = Toml::of(std::slice::from_ref(&member))
        .upstream("[upstream.health]\ninterval = \"1h\"")
        .build();
    let server = support::serve_toml(&text).await;
    let name = member.url();
    eventually("the first probe's answer", async || {
        let metrics = support::scrape(&server).await;
        support::metrics::sample(
            &metrics,
            "ringfence_upstream_member_healthy",
            &[("member", &name)],
        ) == Some(1.0)
    })
    .await;
    let mut client = tokio::net::TcpStream::connect(server.addrs()[0])
        .await
        .unwrap();
    let poll = format!("GET /ucwa/v1/applications/1/events?ack=1 HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    client.write_all(poll.as_bytes()).await.unwrap();
    let open = eventually("the poll to be held by the member", async || {
        let metrics = support::scrape(&server).await;
        (connections(&metrics, &name, "busy") == Some(1.0)).then(|| member.connections_open())
    })
    .await;
    drop(client);
    eventually("the upstream connection to close", async || {
        let metrics = support::scrape(&server).await;
        let now = member.connections_open();
        (now + 1 == open
            && connections(&metrics, &name, "busy") == Some(0.0)
            && connections(&metrics, &name, "idle") == Some(now as f64))
        .then_some(())
    })
    .await;
}

/// A member that holds every event-channel GET until told otherwise: a long poll that stays.
async fn holding_member() -> ringfence::sim::FrontEnd {
    let member = ringfence::sim::FrontEnd::start("fe1").await.unwrap();
    member.set_event_wait(std::time::Duration::ZERO);
    member.hold_events(true);
    member
}

/// A pass-through request whose body is streamed goes whole to another member when the first
/// member's connection cannot be made: none of it was sent (SPEC §7; fresh eyes, round 27: it
/// was answered 503 `upstream_unavailable`).
#[tokio::test]
async fn a_streamed_body_goes_to_another_member_when_the_first_cannot_be_reached() {
    let h = support::start_with(Options {
        members: 1,
        dead_member_first: true,
        ..Options::default()
    })
    .await;
    let body = |i: usize| format!(r#"{{"message":"number {i}"}}"#);
    for i in 0..4 {
        let reply = h
            .client
            .request(
                "POST",
                "/ucwa/v1/applications/1/communication/messages",
                HOST,
                &[("content-type", "application/json")],
                body(i).as_bytes(),
            )
            .await;
        assert_eq!(reply.status, 404, "request {i}: the pool's own answer");
    }
    let got: Vec<_> = h.members[0]
        .received()
        .iter()
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(got.len(), 4);
    for (i, got) in got.iter().enumerate() {
        assert_eq!(&got[..], body(i).as_bytes());
    }
    let metrics = h.metrics().await;
    let errors = support::metrics::sample(
        &metrics,
        "ringfence_upstream_errors_total",
        &[("kind", "connect")],
    );
    assert!(
        errors.unwrap_or(0.0) >= 1.0,
        "the dead member was tried: {metrics}"
    );
}

/// A member that takes the connection and never answers the TLS handshake is given up after
/// `connect_timeout` (1 s here), and the request goes to another member (fresh eyes, round 28:
/// it waited for `response_timeout`, 960 s by default, and was not retried).
#[tokio::test]
async fn a_member_that_never_answers_the_tls_handshake_is_given_up_after_connect_timeout() {
    let h = support::start_with(Options {
        members: 1,
        upstream_tls: true,
        hung_tls_member_first: true,
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        let started = std::time::Instant::now();
        assert_eq!(h.ring(HOST, ALLOWED).await.status, 204);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "answered after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(h.members[0].received().len(), 2);
}
