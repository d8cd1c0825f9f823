//! Who (SPEC §12): ringfence learns an application's user from the pool's own answers, in JSON
//! and XML, and from nothing a client sends.

use crate::support::{self, Harness, HOST};
const APPLICATIONS: &str = "/ucwa/oauth/v1/applications";
const XML: &str = "application/vnd.microsoft.com.ucwa+xml";

/// The user the harness's server knows for `application`, waiting (bounded) for the end of the
/// answer's stream, which is when it is learnt.
pub(crate) async fn user_of(
    h: &Harness,
    application: &str,
    expected: Option<&str>,
) -> Option<String> {
    let user = || {
        h.server
            .shared()
            .snapshot()
            .identities
            .user(application)
            .map(|u| u.to_string())
    };
    support::eventually(
        &format!("the user of application {application} to be {expected:?}"),
        async || user().as_deref() == expected,
    )
    .await;
    user()
}

/// The application id an answer's self href names.
fn created_application(body: &str) -> String {
    let at = body.find(APPLICATIONS).expect("an application href") + APPLICATIONS.len() + 1;
    body[at..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

pub(crate) async fn create(h: &Harness, user: &str, accept: &str) -> String {
    let bearer = format!("Bearer {user}");
    let reply = h
        .client
        .request(
            "POST",
            APPLICATIONS,
            HOST,
            &[
                ("authorization", bearer.as_str()),
                ("accept", accept),
                ("content-type", "application/json"),
            ],
            br#"{"userAgent":"test","endpointId":"1","culture":"en-US"}"#,
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    created_application(&reply.text())
}

#[tokio::test]
async fn a_new_application_is_mapped_to_its_user_from_the_pools_json_and_xml_answers() {
    let h = support::start().await;
    let alice = create(&h, "alice", "application/json").await;
    let bob = create(&h, "bob", XML).await;
    assert_ne!(alice, bob);
    let (a, b) = ("sip:alice@contoso.com", "sip:bob@contoso.com");
    assert_eq!(user_of(&h, &alice, Some(a)).await.as_deref(), Some(a));
    assert_eq!(user_of(&h, &bob, Some(b)).await.as_deref(), Some(b));
}

#[tokio::test]
async fn a_get_of_me_teaches_its_applications_user_in_json_and_xml() {
    let h = support::start().await;
    for (application, user, accept) in [("77", "carol", "application/json"), ("78", "dave", XML)] {
        let bearer = format!("Bearer {user}");
        let path = format!("/ucwa/v1/applications/{application}/me");
        let headers = [("authorization", bearer.as_str()), ("accept", accept)];
        let reply = h.client.request("GET", &path, HOST, &headers, b"").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let want = format!("sip:{user}@contoso.com");
        assert_eq!(
            user_of(&h, application, Some(&want)).await,
            Some(want),
            "{accept}"
        );
    }
}

#[tokio::test]
async fn a_client_body_shaped_like_an_answer_teaches_nothing() {
    let h = support::start().await;
    let me = "/ucwa/v1/applications/55/me";
    let body = format!(
        r#"{{"rel":"me","uri":"sip:ceo@contoso.com","_links":{{"self":{{"href":"{me}"}}}}}}"#
    );
    let headers = [("content-type", "application/vnd.microsoft.com.ucwa+json")];
    h.client
        .request("PUT", me, HOST, &headers, body.as_bytes())
        .await;
    h.client
        .request("POST", me, HOST, &headers, body.as_bytes())
        .await;
    // A request that teaches, sent after, shows the map was being written.
    let later = create(&h, "erin", "application/json").await;
    let erin = "sip:erin@contoso.com";
    assert_eq!(user_of(&h, &later, Some(erin)).await.as_deref(), Some(erin));
    assert_eq!(user_of(&h, "55", None).await, None);
}
