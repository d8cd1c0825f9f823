//! Targets in JSON and XML bodies, alone or beside a query target.

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
async fn denied_json_body_never_reaches_the_pool() {
    let h = support::start().await;
    for body in [
        &br#"{"target":"tel:+19005550100"}"#[..],
        br#"{"TARGET":"tel:+19005550100"}"#,
        br#"{"a":1,"Target":"tel:+19005550100"}"#,
    ] {
        let reply = h
            .client
            .request(
                "POST",
                SIMRING,
                HOST,
                &[("content-type", "application/vnd.microsoft.com.ucwa+json")],
                body,
            )
            .await;
        assert_refused(&reply, 403, "denied");
    }
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn query_and_body_must_name_the_same_target() {
    let h = support::start().await;
    let json = [("content-type", "application/json")];
    let agree = h
        .client
        .request(
            "POST",
            &format!("{SIMRING}?target=tel:%2B1-425-555-0100"),
            HOST,
            &json,
            br#"{"target":"tel:+14255550100"}"#,
        )
        .await;
    assert_eq!(agree.status, 204, "{}", agree.text());
    let disagree = h
        .client
        .request(
            "POST",
            &format!("{SIMRING}?target=tel:%2B14255550100"),
            HOST,
            &json,
            br#"{"target":"tel:+19005550100"}"#,
        )
        .await;
    assert_refused(&disagree, 400, "conflict");
    assert_eq!(h.received_guarded().len(), 1);
}

#[tokio::test]
async fn ucwa_xml_body_is_judged() {
    let h = support::start().await;
    let xml = [("content-type", "application/vnd.microsoft.com.ucwa+xml")];
    let allowed = br#"<?xml version="1.0" encoding="utf-8"?><input xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"><property name="target">sip:jane@contoso.com</property></input>"#;
    let reply = h.client.request("POST", SIMRING, HOST, &xml, allowed).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(&h.received_guarded()[0].body[..], &allowed[..]);
    let denied = br#"<input xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"><property name="target">tel:&#43;19005550100</property></input>"#;
    assert_refused(
        &h.client.request("POST", SIMRING, HOST, &xml, denied).await,
        403,
        "denied",
    );
    assert_eq!(h.received_guarded().len(), 1);
}

#[tokio::test]
async fn bodies_that_cannot_be_checked_are_refused() {
    let h = support::start().await;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], u16, &'a str);
    let cases: [Case; 6] = [
        (&[("content-type", "application/json")], b"{not json", 400, "bad_body"),
        (&[("content-type", "application/json")], br#"{"target":5}"#, 400, "malformed"),
        (&[("content-type", "application/json")], br#"{"target":"tel:+1","TARGET":"tel:+1"}"#, 400, "duplicate"),
        (&[("content-type", "text/plain")], b"tel:+14255550100", 415, "unsupported_media_type"),
        (&[("content-type", "application/json"), ("content-encoding", "gzip")], b"\x1f\x8b\x08", 415, "encoded_body"),
        (&[("content-type", "application/xml")], br#"<!DOCTYPE x [<!ENTITY e "tel:+1900">]><input><property name="target">&e;</property></input>"#, 400, "bad_body"),
    ];
    for (headers, body, status, reason) in cases {
        assert_refused(
            &h.client.request("POST", SIMRING, HOST, headers, body).await,
            status,
            reason,
        );
    }
    assert!(h.received().is_empty());
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
