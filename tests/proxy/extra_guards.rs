//! `[[guard]]` entries guard more resources, each with its own parameter.

use crate::support::{self, assert_refused, Options};

const HOST: &str = "lyncweb.contoso.com";
const CHANGE: &str = "/ucwa/oauth/v1/applications/192/me/phones/changeNumber";
const AVAILABLE: &str = "/ucwa/oauth/v1/applications/192/me/makeMeAvailable";

async fn harness() -> support::Harness {
    support::start_with(Options {
        extra: "[[guard]]\nresource = \"changeNumber\"\nparameter = \"number\"\n\
                [[guard]]\nresource = \"makeMeAvailable\"\nparameter = \"phoneNumber\"\n"
            .into(),
        ..Options::default()
    })
    .await
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
    let v: serde_json::Value =
        serde_json::from_slice(&h.ring(HOST, "target=x").await.body).unwrap();
    assert_eq!(v["parameters"]["target"], "invalid");
    let json = [("content-type", "application/json")];
    let body = br#"{"signInAs":"Online","phoneNumber":"tel:+19005550100"}"#;
    assert_refused(
        &h.client.request("POST", AVAILABLE, HOST, &json, body).await,
        403,
        "denied",
    );
    let missing = h.client.request("POST", CHANGE, HOST, &[], b"").await;
    assert_refused(&missing, 400, "missing");
    let v: serde_json::Value = serde_json::from_slice(&missing.body).unwrap();
    assert_eq!(
        v["parameters"]["number"], "invalid",
        "names the resource's parameter"
    );
    assert!(h
        .received()
        .iter()
        .all(|r| !r.path_and_query.contains("1900") && !r.body.windows(4).any(|w| w == b"1900")));
}

#[tokio::test]
async fn a_configured_resource_with_an_allowed_value_reaches_the_pool_unchanged() {
    let h = harness().await;
    let body = br#"{"signInAs":"Online","phoneNumber":"tel:+14255550100"}"#;
    let json = [("content-type", "application/json")];
    let reply = h.client.request("POST", AVAILABLE, HOST, &json, body).await;
    assert_eq!(
        reply.status, 404,
        "forwarded; the simulated pool does not know the resource"
    );
    let got = h.received();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], &body[..]);
    assert_eq!(got[0].path_and_query, AVAILABLE);
}
