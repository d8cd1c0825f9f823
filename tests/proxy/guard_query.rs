//! Targets in the query string: allow-lists, deny-lists, the 80-character limit.

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
async fn global_deny_pattern_wins_over_everything() {
    let h = support::start().await;
    assert_refused(
        &h.ring(support::HOST, "target=tel:%2B8812345").await,
        403,
        "denied",
    );
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn organisation_deny_beats_its_own_allow_prefix() {
    let h = support::start().await;
    // +1425555 is allowed, but +14255559 is denied for contoso.
    assert_refused(
        &h.ring(support::HOST, "target=tel:%2B14255559999").await,
        403,
        "denied",
    );
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn number_outside_the_allow_list_is_not_allowed() {
    let h = support::start().await;
    assert_refused(
        &h.ring(support::HOST, "target=tel:%2B33123456789").await,
        403,
        "not_allowed",
    );
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn number_matching_an_allow_pattern_is_allowed() {
    let h = support::start().await;
    assert_eq!(
        h.ring(support::HOST, "target=tel:%2B12065550123")
            .await
            .status,
        204
    );
    assert_refused(
        &h.ring(support::HOST, "target=tel:%2B120655501234").await,
        403,
        "not_allowed",
    );
    assert_eq!(h.received_guarded().len(), 1);
}

#[tokio::test]
async fn visual_separators_are_removed_before_judging() {
    let h = support::start().await;
    assert_eq!(
        h.ring(support::HOST, "target=tel:%2B1-425-555-0100")
            .await
            .status,
        204
    );
    assert_refused(
        &h.ring(support::HOST, "target=tel:%2B1-900-555-0100").await,
        403,
        "denied",
    );
}

#[tokio::test]
async fn contacts_are_judged_by_domain_wildcard_and_exact_uri() {
    let h = support::start().await;
    for allowed in [
        "sip:jane@contoso.com",
        "sip:jane@emea.contoso.com",
        "sip:helpdesk@fabrikam.com",
        "sips:helpdesk@fabrikam.com",
        "SIP:Jane@CONTOSO.COM",
    ] {
        let reply = h.ring(support::HOST, &format!("target={allowed}")).await;
        assert_eq!(reply.status, 204, "{allowed}: {}", reply.text());
    }
    for (denied, reason) in [
        ("sip:someone@fabrikam.com", "not_allowed"),
        ("sip:jane@contoso.com.evil.example", "not_allowed"),
        ("sip:ceo@contoso.com", "denied"),
        ("sip:jane@10.0.0.1", "not_allowed"),
    ] {
        let reply = h.ring(support::HOST, &format!("target={denied}")).await;
        assert_refused(&reply, 403, reason);
    }
    assert_eq!(h.received_guarded().len(), 5);
}

#[tokio::test]
async fn sip_uri_with_a_phone_number_is_judged_as_that_number() {
    let h = support::start().await;
    let reply = h
        .ring(
            support::HOST,
            "target=sip:%2B19005550100@contoso.com;user=phone",
        )
        .await;
    assert_refused(&reply, 403, "denied");
    let reply = h
        .ring(support::HOST, "target=sip:%2B19005550100@contoso.com")
        .await;
    assert_refused(&reply, 403, "denied");
    assert!(h.received().is_empty());
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
async fn a_post_without_target_is_refused_as_missing() {
    let h = support::start().await;
    let reply = h
        .client
        .request("POST", SIMRING, support::HOST, &[], b"")
        .await;
    assert_refused(&reply, 400, "missing");
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn malformed_targets_are_refused() {
    let h = support::start().await;
    for bad in [
        "target=",
        "target=14255550100",
        "target=tel:5550100",
        "target=mailto:a@contoso.com",
        "target=sip:contoso.com",
        "target=tel:%2B1425;phone-context=contoso.com",
        "target=sip:jane:pw@contoso.com",
        "target=sip:jane@contoso.com:5060",
    ] {
        assert_refused(&h.ring(support::HOST, bad).await, 400, "malformed");
    }
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn query_keys_are_matched_case_insensitively_and_once() {
    let h = support::start().await;
    assert_refused(
        &h.ring(support::HOST, "TARGET=tel:%2B19005550100").await,
        403,
        "denied",
    );
    assert_refused(
        &h.ring(support::HOST, "%74arget=tel:%2B19005550100").await,
        403,
        "denied",
    );
    assert_refused(
        &h.ring(
            support::HOST,
            "target=tel:%2B14255550100&Target=tel:%2B19005550100",
        )
        .await,
        400,
        "duplicate",
    );
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn guarded_paths_are_recognised_in_any_case_and_encoding() {
    let h = support::start().await;
    for path in [
        "/UCWA/V1/applications/1/me/callForwardingSettings/simultaneousRingSettings/SIMULTANEOUSRINGTOCONTACT",
        "/ucwa/v1/applications/1/me/callForwardingSettings/immediateForwardSettings/immediateForwardToContact",
        "/ucwa/oauth/v1/applications/1/me/callForwardingSettings/unansweredCallSettings/unansweredCallToContact",
        "/ucwa/v1/applications/1/me/callForwardingSettings/simultaneousRingSettings/%73imultaneousRingToContact",
        "/ucwa/v1/applications/1/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact/",
    ] {
        let reply = h
            .client
            .request("POST", &format!("{path}?target=tel:%2B19005550100"), support::HOST, &[], b"")
            .await;
        assert_refused(&reply, 403, "denied");
    }
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn a_get_without_target_on_a_guarded_path_goes_to_the_pool() {
    let h = support::start().await;
    let reply = h.client.get(SIMRING, support::HOST).await;
    assert_eq!(reply.status, 405, "the pool answers the method itself");
    assert_eq!(h.received().len(), 1);
}

#[tokio::test]
async fn a_put_carrying_a_denied_target_is_judged_like_a_post() {
    let h = support::start().await;
    let reply = h
        .client
        .request(
            "PUT",
            &format!("{SIMRING}?target=tel:%2B19005550100"),
            support::HOST,
            &[],
            b"",
        )
        .await;
    assert_refused(&reply, 403, "denied");
    assert!(h.received().is_empty());
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

#[tokio::test]
async fn method_override_headers_on_ucwa_are_refused() {
    let h = support::start().await;
    let reply = h
        .client
        .request(
            "GET",
            "/ucwa/v1/applications/1/me",
            support::HOST,
            &[("x-http-method-override", "POST")],
            b"",
        )
        .await;
    assert_refused(&reply, 400, "method_override");
    assert!(h.received().is_empty());
}
