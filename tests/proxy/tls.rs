//! Clients over TLS, HTTP/1.1 and HTTP/2 (ALPN).

use crate::support::{self, assert_refused, Options, SIMRING};

#[tokio::test]
async fn tls_http1_client_is_judged_and_forwarded() {
    let h = support::start_with(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    let ok = h.ring(support::HOST, "target=tel:%2B14255550100").await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.version, http::Version::HTTP_11);
    assert_refused(
        &h.ring(support::HOST, "target=tel:%2B19005550100").await,
        403,
        "denied",
    );
    let got = h.received_guarded();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn http2_client_over_tls_is_judged_by_its_authority() {
    let h = support::start_with(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    // The :authority is 127.0.0.1:port, which the test policy gives to fabrikam.
    let ok = h
        .client
        .request_h2(
            "POST",
            &format!("{SIMRING}?target=tel:%2B442071234567"),
            &[],
            b"",
        )
        .await;
    assert_eq!(ok.status, 204, "{}", ok.text());
    assert_eq!(ok.version, http::Version::HTTP_2);
    let denied = h
        .client
        .request_h2(
            "POST",
            &format!("{SIMRING}?target=tel:%2B14255550100"),
            &[],
            b"",
        )
        .await;
    assert_refused(&denied, 403, "not_allowed");
    let got = h.received_guarded();
    assert_eq!(got.len(), 1);
    assert!(got[0].headers["host"]
        .to_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}
