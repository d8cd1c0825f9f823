//! Body targets, for what a hostile.rs table row cannot say: the forwarded Content-Length, the
//! connection closed after a 413. The body spellings themselves are in hostile.rs's tables.

use crate::support::{self, assert_refused, HOST, SIMRING};

#[tokio::test]
async fn allowed_json_body_reaches_the_pool_byte_for_byte() {
    let h = support::start().await;
    let body = br#"{"target":"tel:+14255550100","extra":[1,2,{"x":null}]}"#;
    let reply = h
        .client
        .request(
            "POST",
            SIMRING,
            HOST,
            &[("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let got = h.received_guarded();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], &body[..]);
    assert_eq!(got[0].path_and_query, SIMRING);
    assert_eq!(got[0].headers["content-length"], body.len().to_string());
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused_with_413_and_the_connection_closed() {
    let h = support::start().await;
    let mut body = br#"{"target":"tel:+14255550100","pad":""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 5000));
    body.extend_from_slice(br#""}"#);
    let reply = h
        .client
        .request(
            "POST",
            SIMRING,
            HOST,
            &[("content-type", "application/json")],
            &body,
        )
        .await;
    assert_refused(&reply, 413, "body_too_large");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(h.received().is_empty());
}
