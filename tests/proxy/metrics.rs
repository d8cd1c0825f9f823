//! Decisions and traffic are counted per organisation, decision and reason.

use crate::support::{self, metrics::sample};

#[tokio::test]
async fn decisions_are_counted_per_organisation_resource_and_reason() {
    let h = support::start().await;
    h.ring("lyncweb.contoso.com", "target=tel:%2B14255550100")
        .await;
    h.ring("lyncweb.contoso.com", "target=tel:%2B14255550101")
        .await;
    h.ring("lyncweb.contoso.com", "target=tel:%2B19005550100")
        .await;
    h.ring("lync.fabrikam.com", "target=tel:%2B14255550100")
        .await;
    h.ring("lync.fabrikam.com", "target=x").await;
    let m = h.metrics().await;
    let decisions = |org: &str, decision: &str, reason: &str| {
        sample(
            &m,
            "ringfence_policy_decisions_total",
            &[
                ("organisation", org),
                ("resource", "simultaneousRingToContact"),
                ("decision", decision),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(decisions("contoso", "allow", "allowed"), Some(2.0), "{m}");
    assert_eq!(decisions("contoso", "deny", "denied"), Some(1.0));
    assert_eq!(decisions("fabrikam", "deny", "not_allowed"), Some(1.0));
    assert_eq!(decisions("fabrikam", "deny", "malformed"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "ringfence_http_requests_total",
            &[("route", "guarded"), ("code", "204")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "ringfence_http_requests_total",
            &[("route", "guarded"), ("code", "403")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "ringfence_upstream_requests_total", &[("code", "204")]),
        Some(2.0)
    );
    assert!(sample(&m, "ringfence_build_info", &[]).is_some());
}

#[tokio::test]
async fn live_and_ready_answer_on_the_admin_listener_only() {
    let h = support::start().await;
    let admin = support::Client::new(h.server.admin_addr(), None, false);
    assert_eq!(admin.get("/live", "admin").await.status, 200);
    assert_eq!(admin.get("/ready", "admin").await.status, 200);
    let public = h.client.get("/metrics", "lyncweb.contoso.com").await;
    assert_eq!(
        public.status, 404,
        "the public listener forwards /metrics to the pool"
    );
}
