//! Decisions and traffic are counted per organisation, decision and reason.

use crate::support::{self, metrics::sample};

#[tokio::test]
async fn decisions_are_counted_per_organisation_resource_and_reason() {
    let h = support::start().await;
    h.ring(support::HOST, "target=tel:%2B14255550100").await;
    h.ring(support::HOST, "target=tel:%2B14255550101").await;
    h.ring(support::HOST, "target=tel:%2B19005550100").await;
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
    let admin = support::admin(&h.server);
    assert_eq!(admin.get("/live", "admin").await.status, 200);
    support::wait_ready(h.server.admin_addr(), 200).await;
    let public = h.client.get("/metrics", support::HOST).await;
    assert_eq!(
        public.status, 404,
        "the public listener forwards /metrics to the pool"
    );
}

#[tokio::test]
async fn both_reload_results_are_exported_at_zero_before_any_reload() {
    let h = support::start().await;
    let m = h.metrics().await;
    for result in ["success", "failure"] {
        assert_eq!(
            sample(&m, "ringfence_config_reloads_total", &[("result", result)]),
            Some(0.0),
            "{result}: {m}"
        );
    }
}

#[tokio::test]
async fn a_connection_beyond_max_connections_is_closed_and_counted() {
    use tokio::io::AsyncReadExt;
    let members = [ringfence::sim::FrontEnd::start("fe1").await.unwrap()];
    let text = support::Toml::of(&members)
        .server("max_connections = 2")
        .build();
    let server = support::serve_toml(&text).await;
    let addr = server.addrs()[0];
    let listener = addr.to_string();
    let scrape = || support::scrape(&server);
    let m = scrape().await;
    assert_eq!(
        sample(
            &m,
            "ringfence_connections_refused_total",
            &[("listener", &listener)]
        ),
        Some(0.0),
        "the series exists from the start: {m}"
    );

    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Both are accepted (and hold their slots) before the third connects.
    support::eventually("both connections to hold their slots", async || {
        let m = scrape().await;
        sample(&m, "ringfence_connections_open", &[("listener", &listener)]) == Some(2.0)
    })
    .await;
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(support::TIMEOUT, third.read(&mut buf))
        .await
        .expect("the third connection is closed in time");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the third connection is closed"
    );
    let m = scrape().await;
    assert_eq!(
        sample(
            &m,
            "ringfence_connections_refused_total",
            &[("listener", &listener)]
        ),
        Some(1.0),
        "{m}"
    );
    drop(held);
}

/// The gateway keeps the series it counted decisions into, per snapshot: a reload that renames
/// the organisation at the same place in the list counts under the new name from its first
/// decision on, not into the old name's series.
#[tokio::test]
async fn after_a_reload_decisions_count_under_the_organisations_new_name() {
    use crate::support::{Client, ConfigFile, Toml, HOST, SIMRING};
    let member = ringfence::sim::FrontEnd::start("fe1").await.unwrap();
    let config = |name: &str| {
        Toml::of(std::slice::from_ref(&member))
            .rest(&format!(
                "[policy]\n[[organisations]]\nname = \"{name}\"\nhosts = [\"{HOST}\"]\n\
                 allow_numbers = [\"+1425555\"]\n"
            ))
            .build()
    };
    let file = ConfigFile::new(&config("contoso"));
    let server = file.serve().await;
    let client = Client::new(server.addrs()[0], None, false);
    let path = format!("{SIMRING}?target=tel:%2B14255550100");
    let ring = || client.request("POST", &path, HOST, &[], b"");
    assert_eq!(ring().await.status, 204);
    file.write(&config("northwind"));
    assert_eq!(support::reload(&server).await, 200);
    assert_eq!(ring().await.status, 204);
    assert_eq!(ring().await.status, 204);
    let m = support::scrape(&server).await;
    let allowed = |org: &str| {
        sample(
            &m,
            "ringfence_policy_decisions_total",
            &[("organisation", org), ("decision", "allow")],
        )
    };
    assert_eq!(allowed("contoso"), Some(1.0), "{m}");
    assert_eq!(allowed("northwind"), Some(2.0), "{m}");
}
