//! Query targets, for what a hostile.rs table row cannot say: the forwarded Host, the UCWA
//! error body's codes and parameter, its XML form, a GET without a target left to the pool. The
//! allow- and deny-list rows themselves are in hostile.rs's tables.

use crate::support::{self, assert_refused, SIMRING};

#[tokio::test]
async fn allowed_number_reaches_the_pool_byte_for_byte() {
    let h = support::start().await;
    let reply = h.ring(support::HOST, "target=tel:%2B14255550100").await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let got = h.received_guarded();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(
        got[0].path_and_query,
        format!("{SIMRING}?target=tel:%2B14255550100")
    );
    assert!(got[0].body.is_empty());
    assert_eq!(got[0].headers["host"], support::HOST);
}

#[tokio::test]
async fn globally_denied_number_never_reaches_the_pool() {
    let h = support::start().await;
    let reply = h.ring(support::HOST, "target=tel:%2B19005550100").await;
    assert_refused(&reply, 403, "denied");
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["code"], "Forbidden");
    assert_eq!(v["subcode"], "NotAllowed");
    assert!(h.received().is_empty(), "the pool saw nothing");
}

#[tokio::test]
async fn eighty_characters_pass_and_eighty_one_are_refused() {
    let h = support::start().await;
    let user80 = "a".repeat(80 - "sip:@contoso.com".len());
    let t80 = format!("sip:{user80}@contoso.com");
    assert_eq!(t80.chars().count(), 80);
    assert_eq!(
        h.ring(support::HOST, &format!("target={t80}")).await.status,
        204
    );
    let t81 = format!("sip:a{user80}@contoso.com");
    let reply = h.ring(support::HOST, &format!("target={t81}")).await;
    assert_refused(&reply, 400, "too_long");
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["subcode"], "ParameterValidationFailure");
    assert_eq!(v["parameters"]["target"], "invalid");
    assert_eq!(h.received_guarded().len(), 1);
}

#[tokio::test]
async fn a_get_without_target_on_a_guarded_path_goes_to_the_pool() {
    let h = support::start().await;
    let reply = h.client.get(SIMRING, support::HOST).await;
    assert_eq!(reply.status, 405, "the pool answers the method itself");
    assert_eq!(h.received().len(), 1);
}

#[tokio::test]
async fn refusals_answer_in_xml_when_accept_prefers_it() {
    let h = support::start().await;
    let reply = h
        .client
        .request(
            "POST",
            &format!("{SIMRING}?target=tel:%2B19005550100"),
            support::HOST,
            &[("accept", "application/vnd.microsoft.com.ucwa+xml")],
            b"",
        )
        .await;
    assert_eq!(reply.status, 403);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("application/xml"));
    let text = reply.text();
    assert!(
        text.contains(r#"xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa""#),
        "{text}"
    );
    assert!(
        text.contains("<code>Forbidden</code><subcode>NotAllowed</subcode>"),
        "{text}"
    );
    assert!(
        text.contains(r#"<property name="reason">denied</property>"#),
        "{text}"
    );
}
