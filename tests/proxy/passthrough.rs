//! Everything that is not guarded goes to the pool untouched, streamed.

use std::time::Duration;

use crate::support::{self, HOST, SIMRING};

#[tokio::test]
async fn a_get_is_forwarded_with_forwarding_headers() {
    let h = support::start().await;
    let reply = h
        .client
        .request(
            "GET",
            "/ucwa/oauth/v1/applications/192/me?x=1",
            HOST,
            &[
                ("authorization", "Bearer cwt=abc"),
                ("x-forwarded-for", "192.0.2.7"),
            ],
            b"",
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("\"rel\":\"me\""));
    let got = h.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path_and_query, "/ucwa/oauth/v1/applications/192/me?x=1");
    assert_eq!(r.headers["host"], HOST);
    assert_eq!(r.headers["authorization"], "Bearer cwt=abc");
    assert_eq!(r.headers["x-forwarded-for"], "192.0.2.7, 127.0.0.1");
    assert_eq!(r.headers["x-forwarded-proto"], "http");
    assert_eq!(r.headers["x-forwarded-host"], HOST);
    let id = reply.header("x-request-id").expect("request id echoed");
    assert_eq!(r.headers["x-request-id"], id);
}

/// An HTTP/1.0 request that names no host is forwarded without `X-Forwarded-Host` (an empty
/// one would name a host), and its client's own line is not forwarded either (fresh eyes, round
/// 27: an empty line was sent).
#[tokio::test]
async fn a_request_naming_no_host_is_forwarded_without_x_forwarded_host() {
    let h = support::start().await;
    let reply = support::client::raw(
        h.server.addrs()[0],
        b"GET /ucwa/oauth/v1/applications/192/me HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
        "{reply}"
    );
    let got = h.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert!(
        !r.headers.contains_key("x-forwarded-host"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(r.headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn a_valid_client_request_id_is_kept_and_an_unsafe_one_replaced() {
    let h = support::start().await;
    let kept = h
        .client
        .request(
            "GET",
            "/ucwa/v1/applications/1/me",
            HOST,
            &[("x-request-id", "abc-123.X_y")],
            b"",
        )
        .await;
    assert_eq!(kept.header("x-request-id"), Some("abc-123.X_y"));
    let replaced = h
        .client
        .request(
            "GET",
            "/ucwa/v1/applications/1/me",
            HOST,
            &[("x-request-id", "a b<script>")],
            b"",
        )
        .await;
    let id = replaced.header("x-request-id").unwrap();
    assert_ne!(id, "a b<script>");
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let h = support::start().await;
    h.client
        .request(
            "GET",
            "/ucwa/v1/applications/1/me",
            HOST,
            &[
                ("connection", "x-secret"),
                ("x-secret", "1"),
                ("proxy-authorization", "Basic x"),
                ("te", "trailers"),
            ],
            b"",
        )
        .await;
    let r = &h.received()[0];
    for name in ["x-secret", "proxy-authorization", "te"] {
        assert!(!r.headers.contains_key(name), "{name} was forwarded");
    }
}

#[tokio::test]
async fn a_passthrough_post_body_arrives_unchanged() {
    let h = support::start().await;
    let body = br#"{"anything":"tel:+19005550100"}"#;
    let reply = h
        .client
        .request(
            "POST",
            "/ucwa/v1/applications/1/communication/messages",
            HOST,
            &[("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(reply.status, 404, "the pool's own answer");
    assert_eq!(&h.received()[0].body[..], &body[..]);
}

/// A pass-through body sent chunked reaches the pool chunked, an empty one too: it is not
/// turned into a POST with no length at all, which IIS answers 411 (fresh eyes, round 25).
#[tokio::test]
async fn a_chunked_passthrough_body_reaches_the_pool_chunked_even_when_empty() {
    let h = support::start().await;
    let addr = h.server.addrs()[0];
    // A GET's too (fresh eyes, round 46: it was sent as a GET without a body, its body then
    // failed the member's connection, 502).
    let cases = [("0\r\n\r\n", ""), ("2\r\nhi\r\n0\r\n\r\n", "hi")];
    for (method, (chunks, body)) in ["POST", "GET"]
        .into_iter()
        .flat_map(|m| cases.map(|c| (m, c)))
    {
        let request = format!(
            "{method} /ucwa/v1/applications/1/communication/messages HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunks}"
        );
        let counts = h.received_counts();
        let answer = support::client::raw(addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{method}: {answer}");
        let got = h.received_since(&counts);
        assert_eq!(got.len(), 1, "{answer}");
        assert_eq!(
            got[0]
                .headers
                .get("transfer-encoding")
                .map(|v| v.as_bytes()),
            Some(&b"chunked"[..]),
            "{:?}",
            got[0].headers
        );
        assert_eq!(&got[0].body[..], body.as_bytes());
    }
}

/// On paused time: the member's wait costs nothing, and the clock is tokio's.
#[tokio::test(start_paused = true)]
async fn the_events_long_poll_passes_through() {
    let h = support::start().await;
    for m in &h.members {
        m.set_event_wait(Duration::from_millis(1500));
    }
    let started = tokio::time::Instant::now();
    let reply = h
        .client
        .get("/ucwa/v1/applications/192/events?ack=1&timeout=180", HOST)
        .await;
    assert_eq!(reply.status, 200);
    // The behaviour itself: the poll was held for the member's whole wait, not cut.
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(reply.text().contains("events?ack=3"));
}

#[tokio::test]
async fn a_guarded_name_outside_ucwa_is_not_guarded() {
    let h = support::start().await;
    let reply = h
        .client
        .request(
            "POST",
            "/static/simultaneousRingToContact?target=tel:%2B19005550100",
            HOST,
            &[],
            b"",
        )
        .await;
    assert_eq!(reply.status, 404, "forwarded to the pool");
    assert_eq!(h.received().len(), 1);
    let _ = SIMRING;
}

/// A client whose streamed body breaks (a malformed chunk) is answered 400 `bad_body`: the
/// fault is the client's, so no pool member is blamed, counted or retried.
#[tokio::test]
async fn a_broken_streamed_body_is_the_clients_fault() {
    let h = support::start().await;
    let request = format!(
        "POST /ucwa/v1/applications/1/communication/messages HTTP/1.1\r\nHost: {HOST}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"a\":\r\nzz\r\n"
    );
    let reply = support::client::raw_reply(h.server.addrs()[0], request.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("bad_body"), "{}", reply.text());
    let metrics = h.metrics().await;
    for kind in ["connect", "tls", "timeout", "protocol"] {
        let errors = support::metrics::sample(
            &metrics,
            "ringfence_upstream_errors_total",
            &[("kind", kind)],
        );
        assert_eq!(errors.unwrap_or(0.0), 0.0, "{kind}: {metrics}");
    }
}

/// CONNECT names an authority, not a resource the pool serves: refused, never sent on (fresh
/// eyes, round 15: it reached a member).
#[tokio::test]
async fn connect_is_refused_and_not_forwarded() {
    let h = support::start().await;
    let request =
        format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let reply = support::client::raw_reply(h.server.addrs()[0], request.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("bad_path"), "{}", reply.text());
    assert!(h.received().is_empty(), "the pool got {:?}", h.received());
}

/// The authority form belongs to CONNECT, the asterisk to OPTIONS (RFC 9112 §3.2.3-4): on
/// another method neither names a resource the pool serves, and both are refused, never sent
/// on (fresh eyes, round 41: `POST host:443` went on as `POST /` with its authority for Host).
#[tokio::test]
async fn authority_and_asterisk_forms_are_refused_on_other_methods() {
    let h = support::start().await;
    for line in [
        format!("POST {HOST}:443 HTTP/1.1"),
        format!("GET {HOST} HTTP/1.1"),
        "POST * HTTP/1.1".to_string(),
        "GET * HTTP/1.1".to_string(),
    ] {
        refused_bad_path(&h, &line).await;
    }
    assert!(h.received().is_empty(), "the pool got {:?}", h.received());
    // A server-wide OPTIONS is the asterisk's own, and goes on.
    let request = format!("OPTIONS * HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let reply = support::client::raw_reply(h.server.addrs()[0], request.as_bytes())
        .await
        .unwrap();
    assert_ne!(reply.status, 400, "{}", reply.text());
    let received = h.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].path_and_query, "*");
}

/// An absolute-form target with an empty path and a query (`http://host?/ucwa/...`) is judged
/// by its path, `/`, and the pool is sent that path: `/?/ucwa/...`, not `?/ucwa/...`, which a
/// lenient reader could take for the guarded path (fresh eyes, round 41; RFC 9112 §3.2.1).
#[tokio::test]
async fn an_empty_absolute_path_goes_to_the_pool_as_a_slash() {
    let h = support::start().await;
    let query = format!("{SIMRING}?target=tel:%2B19005550100");
    let request = format!(
        "POST http://{HOST}?{query} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let reply = support::client::raw_reply(h.server.addrs()[0], request.as_bytes())
        .await
        .unwrap();
    let received = h.received();
    assert_eq!(received.len(), 1, "{}: {received:?}", reply.text());
    assert_eq!(received[0].path_and_query, format!("/?{query}"));
}

/// A request line whose target is shaped as a network-path reference to a guarded resource
/// (`//host/ucwa/.../simultaneousRingToContact`) is refused: HTTP.sys reads it as a path that
/// is not UCWA's, but a reader resolving it as a URI reference would act on the guarded one
/// (fresh eyes, rounds 40 and 41: forwarded unjudged). The same shape before a path that is
/// not guarded goes on.
#[tokio::test]
async fn a_network_path_to_a_guarded_resource_is_refused() {
    let h = support::start().await;
    for target in [
        format!("//{HOST}{SIMRING}?target=tel:%2B19005550100"),
        format!("/%2F{HOST}{SIMRING}?target=tel:%2B19005550100"),
        format!("/\\{HOST}{SIMRING}?target=tel:%2B19005550100"),
        // Reached through a decoding round or a normalisation (fresh eyes, round 42).
        format!("/%2F/{HOST}{SIMRING}?target=tel:%2B19005550100"),
        format!("/(S(x))//{HOST}{SIMRING}?target=tel:%2B19005550100"),
        format!("/(S(x))/%2F{HOST}{SIMRING}?target=tel:%2B19005550100"),
        format!("/.//{HOST}{SIMRING}?target=tel:%2B19005550100"),
        format!("/;x//{HOST}{SIMRING}?target=tel:%2B19005550100"),
        format!("/%20//{HOST}{SIMRING}?target=tel:%2B19005550100"),
        // Round 43: a segment emptied after the resource, prefixes another reader drops.
        format!("//{HOST}{SIMRING}/%20?target=tel:%2B19005550100"),
        format!("/%E2%80%8B/{HOST}{SIMRING}?target=tel:%2B19005550100"),
        format!("/%EF%BC%8F{HOST}{SIMRING}?target=tel:%2B19005550100"),
        // Round 44: a plain inner path, an undecodable escape before an encoded one.
        format!("/x{SIMRING}?target=tel:%2B19005550100"),
        format!(
            "/x%zz{}?target=tel:%2B19005550100",
            SIMRING.replacen("ucwa", "%75cwa", 1)
        ),
    ] {
        refused_bad_path(&h, &format!("POST {target} HTTP/1.1")).await;
    }
    assert!(h.received().is_empty(), "the pool got {:?}", h.received());
    let request =
        format!("GET //cdn.example/app.js HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let reply = support::client::raw_reply(h.server.addrs()[0], request.as_bytes())
        .await
        .unwrap();
    assert_ne!(reply.status, 400, "{}", reply.text());
    assert_eq!(h.received().len(), 1);
}

/// Sends `request_line` with this suite's Host and no body, and asserts the answer is 400
/// `bad_path`.
async fn refused_bad_path(h: &support::Harness, request_line: &str) {
    let request =
        format!("{request_line}\r\nHost: {HOST}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let reply = support::client::raw_reply(h.server.addrs()[0], request.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{request_line}: {}", reply.text());
    assert!(
        reply.text().contains("bad_path"),
        "{request_line}: {}",
        reply.text()
    );
}
