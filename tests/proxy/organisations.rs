//! Which organisation's lists apply: exact host, wildcard, default, none.

use crate::support::{self, assert_refused, Options};

const UK_NUMBER: &str = "target=tel:%2B442071234567";

#[tokio::test]
async fn an_exact_host_selects_its_organisation() {
    let h = support::start().await;
    assert_eq!(h.ring("lync.fabrikam.com", UK_NUMBER).await.status, 204);
    assert_refused(&h.ring(support::HOST, UK_NUMBER).await, 403, "not_allowed");
    assert_eq!(h.received_guarded().len(), 1);
}

#[tokio::test]
async fn host_matching_ignores_port_case_and_a_trailing_dot() {
    let h = support::start().await;
    for host in [
        "LYNC.Fabrikam.com",
        "lync.fabrikam.com:443",
        "lync.fabrikam.com.",
    ] {
        assert_eq!(h.ring(host, UK_NUMBER).await.status, 204, "{host}");
    }
}

#[tokio::test]
async fn a_host_with_an_empty_label_is_no_host() {
    // Fresh eyes round 35: `lync.fabrikam.com..` was matched as `lync.fabrikam.com.`, no
    // organisation's, and judged by the default organisation's lists.
    let h = support::start().await;
    for host in [
        "lync.fabrikam.com..",
        "lync..fabrikam.com",
        ".lync.fabrikam.com",
    ] {
        assert_refused(&h.ring(host, UK_NUMBER).await, 400, "bad_host");
        assert_refused(
            &h.ring(host, "target=tel:%2B14255550100").await,
            400,
            "bad_host",
        );
    }
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn a_wildcard_host_matches_deeper_labels_only() {
    let h = support::start_with(Options {
        policy: support::POLICY.replace("default_organisation = \"contoso\"\n", ""),
        ..Options::default()
    })
    .await;
    let contoso_number = "target=tel:%2B14255550100";
    assert_eq!(h.ring("a.contoso.com", contoso_number).await.status, 204);
    assert_eq!(h.ring("a.b.contoso.com", contoso_number).await.status, 204);
    // `*.contoso.com` does not match contoso.com itself, and there is no default here.
    assert_refused(
        &h.ring("contoso.com", contoso_number).await,
        403,
        "no_organisation",
    );
}

#[tokio::test]
async fn unknown_hosts_use_the_default_organisation() {
    let h = support::start().await;
    assert_eq!(
        h.ring("unknown.example", "target=tel:%2B14255550100")
            .await
            .status,
        204
    );
    assert_refused(
        &h.ring("unknown.example", UK_NUMBER).await,
        403,
        "not_allowed",
    );
}

#[tokio::test]
async fn without_a_default_unknown_hosts_are_denied() {
    let h = support::start_with(Options {
        policy: support::POLICY.replace("default_organisation = \"contoso\"\n", ""),
        ..Options::default()
    })
    .await;
    assert_refused(
        &h.ring("unknown.example", "target=tel:%2B14255550100").await,
        403,
        "no_organisation",
    );
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn an_absolute_form_request_uses_its_authority_as_the_host() {
    let h = support::start().await;
    let request = format!(
        "POST http://lync.fabrikam.com{}?{UK_NUMBER} HTTP/1.1\r\nHost: lyncweb.contoso.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        support::SIMRING
    );
    let answer = support::client::raw(h.server.addrs()[0], request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let got = h.received_guarded();
    assert_eq!(got[0].headers["host"], "lync.fabrikam.com");
    assert!(
        got[0].path_and_query.starts_with("/ucwa/"),
        "forwarded in origin form"
    );
}

#[tokio::test]
async fn http11_without_exactly_one_host_is_refused() {
    let h = support::start().await;
    let addr = h.server.addrs()[0];
    let none = support::client::raw(
        addr,
        b"GET /ucwa/v1/applications/1/me HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    let two = support::client::raw(
        addr,
        b"GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: a.contoso.com\r\nHost: b.contoso.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    assert!(two.contains("bad_host"), "{two}");
    assert!(h.received().is_empty());
}
