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
