//! The pool's answers come back unchanged; dead members are skipped.

use ringfence::sim::Fault;

use crate::support::{self, assert_refused, Options};

const HOST: &str = "lyncweb.contoso.com";
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
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
