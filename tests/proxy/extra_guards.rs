//! `[[guard]]` entries guard more resources, each with its own parameter, required or not. The
//! guards are the example configuration's own, so what it ships is what is tested.

use crate::support::{self, assert_refused, metrics, Options, HOST};
const CHANGE: &str = "/ucwa/oauth/v1/applications/192/me/phones/changeNumber";
const AVAILABLE: &str = "/ucwa/oauth/v1/applications/192/me/makeMeAvailable";
const BATCH: &str = "/ucwa/oauth/v1/applications/192/batch";
/// An ordinary UCWA sign-in: no phone number, so no audio through a phone.
const SIGN_IN: &[u8] = br#"{"signInAs":"Online","supportedModalities":["Messaging"],"supportedMessageFormats":["Plain","Html"]}"#;
const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

/// The `[[guard]]` tables of `config/ringfence.example.toml`.
fn example_guards() -> &'static str {
    let example = include_str!("../../config/ringfence.example.toml");
    let start = example.find("\n[[guard]]").expect("the example has guards");
    let end = example[start..]
        .find("\n[audit]")
        .map_or(example.len(), |i| start + i);
    &example[start..end]
}

async fn harness() -> support::Harness {
    support::start_with(Options {
        extra: example_guards().into(),
        ..Options::default()
    })
    .await
}

fn decisions(metrics: &str, resource: &str, decision: &str, reason: &str) -> f64 {
    metrics::sample(
        metrics,
        "ringfence_policy_decisions_total",
        &[
            ("organisation", "contoso"),
            ("resource", resource),
            ("decision", decision),
            ("reason", reason),
        ],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_configured_resource_is_judged_on_its_own_parameter() {
    let h = harness().await;
    let denied = h
        .client
        .request(
            "POST",
            &format!("{CHANGE}?number=tel:%2B19005550100"),
            HOST,
            &[],
            b"",
        )
        .await;
    assert_refused(&denied, 403, "denied");
    let v: serde_json::Value = serde_json::from_slice(&denied.body).unwrap();
    assert_eq!(
        v["message"], "The number is not allowed by your organisation's policy.",
        "names the resource's parameter"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&h.ring(HOST, "target=x").await.body).unwrap();
    assert_eq!(v["parameters"]["target"], "invalid");
    let body = br#"{"signInAs":"Online","phoneNumber":"tel:+19005550100"}"#;
    assert_refused(
        &h.client.request("POST", AVAILABLE, HOST, &JSON, body).await,
        403,
        "denied",
    );
    assert!(h
        .received()
        .iter()
        .all(|r| !r.path_and_query.contains("1900") && !r.body.windows(4).any(|w| w == b"1900")));
}

#[tokio::test]
async fn a_required_parameter_that_is_missing_or_bad_is_named_in_the_answer() {
    let h = harness().await;
    let missing = h.client.request("POST", CHANGE, HOST, &[], b"").await;
    assert_refused(&missing, 400, "missing");
    let v: serde_json::Value = serde_json::from_slice(&missing.body).unwrap();
    assert_eq!(v["parameters"]["number"], "invalid");
    assert_eq!(
        v["message"],
        "The number parameter is missing, repeated, too long or not a valid tel or sip URI."
    );
    let malformed = h
        .client
        .request(
            "POST",
            &format!("{CHANGE}?number=12345"),
            HOST,
            &[("accept", "application/xml")],
            b"",
        )
        .await;
    assert_eq!(malformed.status, 400);
    let text = malformed.text();
    assert!(
        text.contains(r#"<parameters><property name="number">invalid</property></parameters>"#),
        "{text}"
    );
    assert!(
        text.contains("<message>The number parameter is missing"),
        "{text}"
    );
    assert!(!text.contains("target"), "{text}");
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn a_configured_resource_with_an_allowed_value_reaches_the_pool_unchanged() {
    let h = harness().await;
    let body = br#"{"signInAs":"Online","phoneNumber":"tel:+14255550100"}"#;
    let reply = h.client.request("POST", AVAILABLE, HOST, &JSON, body).await;
    assert_eq!(
        reply.status, 404,
        "forwarded; the simulated pool does not know the resource"
    );
    let got = h.received();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], &body[..]);
    assert_eq!(got[0].path_and_query, AVAILABLE);
}

/// The example guards `makeMeAvailable` with `required = false`: signing in without a phone
/// number is forwarded (and recorded as an allow without targets); a phone number it carries is
/// still judged.
#[tokio::test]
async fn a_sign_in_without_the_optional_parameter_is_forwarded_and_recorded() {
    let h = harness().await;
    let reply = h
        .client
        .request("POST", AVAILABLE, HOST, &JSON, SIGN_IN)
        .await;
    assert_eq!(reply.status, 404, "forwarded: {}", reply.text());
    let got = h.received();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], SIGN_IN);
    assert_eq!(
        decisions(&h.metrics().await, "makeMeAvailable", "allow", "allowed"),
        1.0
    );

    // Present, it is judged wherever it is: query, body, or a Data header.
    let denied_query = h
        .client
        .request(
            "POST",
            &format!("{AVAILABLE}?phoneNumber=tel:%2B19005550100"),
            HOST,
            &JSON,
            SIGN_IN,
        )
        .await;
    assert_refused(&denied_query, 403, "denied");
    let v: serde_json::Value = serde_json::from_slice(&denied_query.body).unwrap();
    assert_eq!(
        v["message"],
        "The phoneNumber is not allowed by your organisation's policy."
    );
    let data = h
        .client
        .request(
            "POST",
            AVAILABLE,
            HOST,
            &[
                ("content-type", "application/json"),
                ("data", r#"{"phoneNumber":"tel:+19005550100"}"#),
            ],
            SIGN_IN,
        )
        .await;
    assert_refused(&data, 403, "denied");
    let bad = h
        .client
        .request(
            "POST",
            AVAILABLE,
            HOST,
            &JSON,
            br#"{"signInAs":"Online","phoneNumber":"12345"}"#,
        )
        .await;
    assert_refused(&bad, 400, "malformed");
    let v: serde_json::Value = serde_json::from_slice(&bad.body).unwrap();
    assert_eq!(v["parameters"]["phoneNumber"], "invalid");
    // Named only where it cannot be judged (nested, in the body or a Data header): not forwarded.
    for (headers, body) in [
        (
            &JSON[..],
            &br#"{"signInAs":"Online","x":{"phoneNumber":"tel:+19005550100"}}"#[..],
        ),
        (
            &[
                ("content-type", "application/json"),
                ("data", r#"{"x":{"phoneNumber":"tel:+19005550100"}}"#),
            ][..],
            SIGN_IN,
        ),
    ] {
        let nested = h
            .client
            .request("POST", AVAILABLE, HOST, headers, body)
            .await;
        assert_refused(&nested, 400, "missing");
    }
    assert_eq!(h.received().len(), 1, "nothing refused reached the pool");
    assert_eq!(
        decisions(&h.metrics().await, "makeMeAvailable", "deny", "denied"),
        2.0
    );
}

#[tokio::test]
async fn a_batch_part_without_the_optional_parameter_is_forwarded_and_one_with_a_denied_one_is_not()
{
    let h = harness().await;
    let part = |body: &str| {
        format!(
            "Content-Type: application/http; msgtype=request\r\n\r\n\
             POST {AVAILABLE} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n\r\n{body}"
        )
    };
    let batch = |body: &str| format!("--b\r\n{}\r\n--b--\r\n", part(body));
    let batching = [("content-type", "multipart/batching; boundary=b")];
    let sign_in = std::str::from_utf8(SIGN_IN).unwrap();
    let allowed = batch(sign_in);
    let reply = h
        .client
        .request("POST", BATCH, HOST, &batching, allowed.as_bytes())
        .await;
    assert!(
        reply.status != 400 && reply.status != 403,
        "not refused: {} {}",
        reply.status,
        reply.text()
    );
    let got = h.received();
    assert_eq!(got.len(), 1, "the batch was forwarded");
    assert_eq!(&got[0].body[..], allowed.as_bytes());

    let denied = batch(r#"{"signInAs":"Online","phoneNumber":"tel:+19005550100"}"#);
    let reply = h
        .client
        .request("POST", BATCH, HOST, &batching, denied.as_bytes())
        .await;
    assert_refused(&reply, 403, "denied");
    assert_eq!(
        h.received().len(),
        1,
        "the denied batch never reached the pool"
    );
}

#[tokio::test]
async fn a_get_without_the_optional_parameter_is_forwarded_and_not_recorded() {
    let h = harness().await;
    let reply = h.client.get(AVAILABLE, HOST).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(h.received().len(), 1);
    assert_eq!(
        decisions(&h.metrics().await, "makeMeAvailable", "allow", "allowed"),
        0.0
    );
}
