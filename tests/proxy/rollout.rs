//! Rolling out and blunting abuse (SPEC §12, issue 14): an organisation in shadow mode beside
//! one that enforces, in one process; rate limits on call-forwarding changes under concurrent
//! clients.

use std::path::Path;

use serde_json::Value;

use crate::audit::lines_until;
use crate::hostile::{multipart, part, BOUNDARY};
use crate::support::{self, assert_refused, metrics::sample, Options, HOST, SIMRING};

const SHADOW_HOST: &str = "lync.fabrikam.com";
const PREMIUM: &str = "target=tel:%2B19005550100";
/// Allowed by neither organisation's lists: `not_allowed` in both.
const ABROAD: &str = "target=tel:%2B33155550100";

/// contoso enforces (the policy's mode); fabrikam is in shadow.
fn shadow_policy() -> String {
    support::POLICY.replace(
        "name = \"fabrikam\"\n",
        "name = \"fabrikam\"\nmode = \"shadow\"\n",
    )
}

fn audit_to(path: &Path) -> String {
    format!("sink = \"file\"\npath = {path:?}")
}

#[tokio::test]
async fn a_shadow_organisation_records_what_it_would_refuse_and_forwards_it_while_its_neighbour_enforces(
) {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit.jsonl");
    let h = support::start_with(Options {
        policy: shadow_policy(),
        members: 1,
        audit: audit_to(&trail),
        ..Options::default()
    })
    .await;
    // The enforcing organisation refuses; the pool never sees it.
    assert_refused(&h.ring(HOST, ABROAD).await, 403, "not_allowed");
    assert!(h.received_guarded().is_empty());
    // The shadow organisation forwards the same request, and a premium number denied globally.
    for query in [ABROAD, PREMIUM] {
        let reply = h.ring(SHADOW_HOST, query).await;
        assert_eq!(reply.status, 204, "{query}: {}", reply.text());
    }
    assert_eq!(h.received_guarded().len(), 2, "both reached the pool");
    // A refusal that protects the reading of the request stays enforced in shadow.
    let encoded = h
        .client
        .request(
            "POST",
            &format!("{SIMRING}?{PREMIUM}"),
            SHADOW_HOST,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            b"{}",
        )
        .await;
    assert_refused(&encoded, 415, "encoded_body");
    // A target rule's refusal whose line could not show what the pool would be sent stays
    // enforced: colliding targets none of which was parsed, a value that cannot be decoded.
    let duplicate = h.ring(SHADOW_HOST, &format!("{PREMIUM}&{ABROAD}")).await;
    assert_refused(&duplicate, 400, "duplicate");
    let undecodable = h.ring(SHADOW_HOST, "target=%u0074el:%2B19005550100").await;
    assert_refused(&undecodable, 400, "malformed");
    // A value with a control character, its own or another pair's, is the request's encoding:
    // enforced, though the trail shows the value (fresh eyes, round 33: shadowed, once the
    // line could show it).
    for query in [
        "target=tel:%2B1900%00",
        "target=tel:%2B1425555%0D%0A0100",
        "target=tel:%2B14255550100&x=%00",
    ] {
        assert_refused(&h.ring(SHADOW_HOST, query).await, 400, "malformed");
    }
    assert_eq!(h.received_guarded().len(), 2);

    let metrics = h.metrics().await;
    let decisions = |org: &str, decision: &str, reason: &str| {
        sample(
            &metrics,
            "ringfence_policy_decisions_total",
            &[
                ("organisation", org),
                ("decision", decision),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(
        decisions("fabrikam", "shadow_deny", "not_allowed"),
        Some(1.0)
    );
    assert_eq!(decisions("fabrikam", "shadow_deny", "denied"), Some(1.0));
    assert_eq!(decisions("fabrikam", "deny", "duplicate"), Some(1.0));
    assert_eq!(decisions("fabrikam", "deny", "malformed"), Some(4.0));
    assert_eq!(decisions("contoso", "deny", "not_allowed"), Some(1.0));
    assert_eq!(decisions("contoso", "shadow_deny", "not_allowed"), None);
    let mode = |org: &str, mode: &str| {
        sample(
            &metrics,
            "ringfence_organisation_mode",
            &[("organisation", org), ("mode", mode)],
        )
    };
    assert_eq!(mode("fabrikam", "shadow"), Some(1.0));
    assert_eq!(mode("contoso", "enforce"), Some(1.0));
    assert_eq!(mode("none", "enforce"), Some(1.0));

    let lines = lines_until(&trail, |l| {
        l.iter().filter(|l| l["kind"] == "decision").count() >= 9
    })
    .await;
    let decided: Vec<(&str, &str, &str)> = lines
        .iter()
        .filter(|l| l["kind"] == "decision")
        .map(|l| {
            (
                l["organisation"].as_str().unwrap(),
                l["decision"].as_str().unwrap(),
                l["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            ("contoso", "deny", "not_allowed"),
            ("fabrikam", "shadow_deny", "not_allowed"),
            ("fabrikam", "shadow_deny", "denied"),
            ("fabrikam", "deny", "encoded_body"),
            ("fabrikam", "deny", "duplicate"),
            ("fabrikam", "deny", "malformed"),
            ("fabrikam", "deny", "malformed"),
            ("fabrikam", "deny", "malformed"),
            ("fabrikam", "deny", "malformed"),
        ]
    );
    // The value refused is shown where it is the target's own, never the target beside it;
    // one that cannot be decoded (`%u`) as received (fresh eyes round 39).
    let raw: Vec<&Value> = lines
        .iter()
        .filter(|l| l["reason"] == "malformed")
        .map(|l| &l["raw_target"])
        .collect();
    assert_eq!(
        raw,
        [
            &Value::from("%u0074el:%2B19005550100"),
            &Value::from("tel:+1900\\u{0}"),
            &Value::from("tel:+1425555\\u{d}\\u{a}0100"),
            &Value::Null,
        ]
    );
    let shadowed = lines
        .iter()
        .find(|l| l["decision"] == "shadow_deny" && l["reason"] == "denied")
        .unwrap();
    assert_eq!(shadowed["targets"][0], "tel:+19005550100");
    assert_eq!(shadowed["rule"], "policy.deny_numbers +1900");
}

#[tokio::test]
async fn a_shadowed_batch_part_is_forwarded_with_its_batch_and_recorded_as_shadow_deny() {
    let h = support::start_with(Options {
        policy: shadow_policy(),
        members: 1,
        ..Options::default()
    })
    .await;
    let ring = |query: &str| {
        part(&format!(
            "POST {SIMRING}?{query} HTTP/1.1\r\nHost: {SHADOW_HOST}\r\n\r\n"
        ))
    };
    let body = multipart(
        BOUNDARY,
        &[ring(PREMIUM), ring("target=tel:%2B442071234567")],
    );
    let batch = async |host: &str| {
        post_batch(&h, "/ucwa/oauth/v1/applications/192/batch", host, &body).await
    };
    // Its parts name fabrikam's Host: under contoso's it is refused whole.
    assert_refused(&batch(HOST).await, 421, "misdirected");
    let forwarded = batch(SHADOW_HOST).await;
    assert_ne!(forwarded.status, 403, "{}", forwarded.text());
    let received = h.members[0].received();
    assert_eq!(received.len(), 1, "the shadow batch alone reached the pool");
    assert_eq!(received[0].body, body.as_bytes(), "byte for byte");
    let metrics = h.metrics().await;
    let count = |decision: &str, reason: &str| {
        sample(
            &metrics,
            "ringfence_policy_decisions_total",
            &[
                ("organisation", "fabrikam"),
                ("decision", decision),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(count("shadow_deny", "denied"), Some(1.0));
    assert_eq!(count("allow", "allowed"), Some(1.0), "the other part");
}

/// Ten clients at once, one user, `3/min`: three reach the pool, seven are told when to retry.
#[tokio::test]
async fn concurrent_requests_of_one_user_get_no_more_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit.jsonl");
    let h = support::start_with(Options {
        policy: support::POLICY.replacen(
            "[[organisations]]",
            "[policy.rate_limit]\nper_user = \"3/min\"\n\n[[organisations]]",
            1,
        ),
        members: 1,
        audit: audit_to(&trail),
        ..Options::default()
    })
    .await;
    let addr = h.server.addrs()[0];
    let replies = at_once(10, move |i| async move {
        // Each on its own connection, allowed and denied alike: every judged request counts.
        let query = if i % 2 == 0 {
            "target=tel:%2B14255550100"
        } else {
            PREMIUM
        };
        support::Client::new(addr, None, false)
            .request("POST", &format!("{SIMRING}?{query}"), HOST, &[], b"")
            .await
    })
    .await;
    let limited: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(limited.len(), 7, "{:?}", statuses(&replies));
    for reply in &limited {
        assert_refused(reply, 429, "rate_limited");
        let retry: u64 = reply
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "retry after {retry}s");
    }
    let forwarded = h.received_guarded().len();
    let denied = replies.iter().filter(|r| r.status == 403).count();
    assert_eq!(forwarded + denied, 3, "{:?}", statuses(&replies));
    // The same application spelt otherwise, as the pool reads it, is the same user.
    for spelt in ["/19%32/", "/%31%392/", "/192;x/"] {
        let reply = h
            .client
            .request("POST", &SIMRING.replace("/192/", spelt), HOST, &[], b"")
            .await;
        assert_refused(&reply, 429, "rate_limited");
    }
    // A batch charges each part to its own application: a fresh one first does not carry an
    // exhausted one's parts (fresh eyes, issue 14, C).
    let ring_as = |app: &str| {
        part(&format!(
            "POST {}?target=tel:%2B14255550100 HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
            SIMRING.replace("/192/", &format!("/{app}/"))
        ))
    };
    let batch = post_batch(
        &h,
        "/ucwa/oauth/v1/applications/500/batch",
        HOST,
        &multipart(BOUNDARY, &[ring_as("500"), ring_as("192"), ring_as("192")]),
    )
    .await;
    assert_refused(&batch, 429, "rate_limited");
    // Nor does a batch of the exhausted application whose part names a fresh one: the pool may
    // run the part in the batch's application.
    let batch = post_batch(
        &h,
        "/ucwa/oauth/v1/applications/192/batch",
        HOST,
        &multipart(BOUNDARY, &[ring_as("600")]),
    )
    .await;
    assert_refused(&batch, 429, "rate_limited");
    // Another user (application) has a bucket of its own.
    let other = h
        .client
        .request(
            "POST",
            &SIMRING.replace("/192/", "/193/").to_string(),
            HOST,
            &[],
            b"",
        )
        .await;
    assert_ne!(other.status, 429, "{}", other.text());

    let metrics = h.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "ringfence_rate_limited_total",
            &[("scope", "user")]
        ),
        Some(12.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "ringfence_policy_decisions_total",
            &[("decision", "deny"), ("reason", "rate_limited")]
        ),
        Some(14.0)
    );
    let lines = lines_until(&trail, |l| {
        l.iter().filter(|l| l["reason"] == "rate_limited").count() >= 9
    })
    .await;
    let line: &Value = lines
        .iter()
        .find(|l| l["reason"] == "rate_limited")
        .unwrap();
    assert_eq!(line["decision"], "deny");
    assert!(line["targets"][0].is_string(), "what was asked: {line}");
}

/// The organisation's bucket is shared by its users; a request it refuses costs its user
/// nothing.
#[tokio::test]
async fn an_organisation_limit_holds_across_its_users() {
    let h = support::start_with(Options {
        policy: support::POLICY.replace(
            "name = \"contoso\"\n",
            "name = \"contoso\"\nrate_limit = { per_organisation = \"4/min\" }\n",
        ),
        members: 1,
        ..Options::default()
    })
    .await;
    let addr = h.server.addrs()[0];
    let replies = at_once(12, move |i| async move {
        let path = SIMRING.replace("/192/", &format!("/{}/", 300 + i % 6));
        support::Client::new(addr, None, false)
            .request(
                "POST",
                &format!("{path}?target=tel:%2B14255550100"),
                HOST,
                &[],
                b"",
            )
            .await
    })
    .await;
    assert_eq!(
        replies.iter().filter(|r| r.status == 204).count(),
        4,
        "{:?}",
        statuses(&replies)
    );
    assert_eq!(replies.iter().filter(|r| r.status == 429).count(), 8);
    // fabrikam has no organisation limit of its own.
    let uk = h.ring(SHADOW_HOST, "target=tel:%2B442071234567").await;
    assert_eq!(uk.status, 204, "{}", uk.text());
    let metrics = h.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "ringfence_rate_limited_total",
            &[("scope", "organisation")]
        ),
        Some(8.0)
    );
}

fn statuses(replies: &[support::Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.status).collect()
}

/// `n` requests made at once, each on its own task.
async fn at_once<F, Fut>(n: usize, request: F) -> Vec<support::Reply>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = support::Reply> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        set.spawn(request(i));
    }
    set.join_all().await
}

/// Fresh eyes, issue 14, A: an application belongs to the organisation it was learnt under. Its
/// user cannot have its call-forwarding changes judged by another organisation's lists or mode by
/// sending them with that organisation's Host, alone or as a batch part.
#[tokio::test]
async fn an_application_learnt_under_one_organisation_is_not_judged_by_anothers_host() {
    let h = support::start_with(Options {
        policy: shadow_policy(),
        members: 1,
        ..Options::default()
    })
    .await;
    let application = crate::identity::create(&h, "alice", "application/json").await;
    let user = crate::identity::user_of(&h, &application, Some("sip:alice@contoso.com")).await;
    assert!(user.is_some());
    let path = SIMRING.replace("/192/", &format!("/{application}/"));
    let before = h.received_guarded().len();
    let direct = h
        .client
        .request("POST", &format!("{path}?{PREMIUM}"), SHADOW_HOST, &[], b"")
        .await;
    assert_refused(&direct, 421, "misdirected");
    let body = multipart(
        BOUNDARY,
        &[part(&format!(
            "POST {path}?{PREMIUM} HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        ))],
    );
    let batch = post_batch(
        &h,
        &format!("/ucwa/oauth/v1/applications/{application}/batch"),
        SHADOW_HOST,
        &body,
    )
    .await;
    assert_refused(&batch, 421, "misdirected");
    // Asking for the application again under fabrikam's Host does not move it there.
    let me = format!("/ucwa/oauth/v1/applications/{application}/me");
    let again = h
        .client
        .request(
            "GET",
            &me,
            SHADOW_HOST,
            &[("authorization", "Bearer alice")],
            b"",
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    crate::identity::user_of(&h, &application, Some("sip:alice@contoso.com")).await;
    let moved = h
        .client
        .request("POST", &format!("{path}?{PREMIUM}"), SHADOW_HOST, &[], b"")
        .await;
    assert_refused(&moved, 421, "misdirected");
    // Nor does spelling its id in another case, or with a parameter its readings disagree on.
    for spelt in [application.to_ascii_uppercase(), format!("{application};x")] {
        let path = SIMRING.replace("/192/", &format!("/{spelt}/"));
        let reply = h
            .client
            .request("POST", &format!("{path}?{PREMIUM}"), SHADOW_HOST, &[], b"")
            .await;
        assert_refused(&reply, 421, "misdirected");
    }
    // A fabrikam batch of the application, whose part names an application never seen.
    let part_elsewhere = multipart(
        BOUNDARY,
        &[part(&format!(
            "POST {}?{PREMIUM} HTTP/1.1\r\nHost: {SHADOW_HOST}\r\n\r\n",
            SIMRING.replace("/192/", "/never-seen/")
        ))],
    );
    let batch = post_batch(
        &h,
        &format!("/ucwa/oauth/v1/applications/{application}/batch"),
        SHADOW_HOST,
        &part_elsewhere,
    )
    .await;
    assert_refused(&batch, 421, "misdirected");
    // A batch refused by its first part: a later part that names the application binds
    // nothing (it is read for the trail alone), so the answer is the first part's, not 421.
    let later_part = multipart(
        BOUNDARY,
        &[
            part(&format!(
                "POST {SIMRING}?{PREMIUM}&{ABROAD} HTTP/1.1\r\nHost: {SHADOW_HOST}\r\n\r\n"
            )),
            part(&format!(
                "POST {path}?{PREMIUM} HTTP/1.1\r\nHost: {SHADOW_HOST}\r\n\r\n"
            )),
        ],
    );
    let batch = post_batch(
        &h,
        "/ucwa/oauth/v1/applications/192/batch",
        SHADOW_HOST,
        &later_part,
    )
    .await;
    assert_refused(&batch, 400, "duplicate");
    assert_eq!(
        h.received_guarded().len(),
        before,
        "nothing reached the pool"
    );
    // Under its own organisation's Host it is judged as ever.
    assert_refused(
        &h.client
            .request("POST", &format!("{path}?{PREMIUM}"), HOST, &[], b"")
            .await,
        403,
        "denied",
    );
}

/// POSTs a `multipart/batching` body (of [`BOUNDARY`]) to `path` under `host`.
async fn post_batch(h: &support::Harness, path: &str, host: &str, body: &str) -> support::Reply {
    let content_type = format!("multipart/batching; boundary={BOUNDARY}");
    h.client
        .request(
            "POST",
            path,
            host,
            &[("content-type", &content_type)],
            body.as_bytes(),
        )
        .await
}

/// A batch refused by its first part takes one of its user's tokens, not one per part after it:
/// the answer stays 403 and the user's later requests are not limited early (fresh eyes, round
/// 29: judging the later parts for the trail took their tokens too, turned the 403 into a 429,
/// and limited the next requests).
#[tokio::test]
async fn a_refused_batch_takes_one_token_whatever_follows_its_refusal() {
    let h = support::start_with(Options {
        policy: support::POLICY.replacen(
            "[[organisations]]",
            "[policy.rate_limit]\nper_user = \"5/min\"\n\n[[organisations]]",
            1,
        ),
        members: 1,
        ..Options::default()
    })
    .await;
    let ring = |query: &str| {
        part(&format!(
            "POST {SIMRING}?{query} HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        ))
    };
    let allowed = "target=tel:%2B14255550100";
    let batch = post_batch(
        &h,
        "/ucwa/oauth/v1/applications/192/batch",
        HOST,
        &multipart(
            BOUNDARY,
            &[ring(PREMIUM), ring(allowed), ring(allowed), ring(allowed)],
        ),
    )
    .await;
    assert_refused(&batch, 403, "denied");
    // Four tokens are left of five.
    for i in 0..4 {
        let reply = h
            .client
            .request("POST", &format!("{SIMRING}?{allowed}"), HOST, &[], b"")
            .await;
        assert!(
            reply.status < 300,
            "request {i}: {} {}",
            reply.status,
            reply.text()
        );
    }
    let reply = h
        .client
        .request("POST", &format!("{SIMRING}?{allowed}"), HOST, &[], b"")
        .await;
    assert_refused(&reply, 429, "rate_limited");
}

/// A refused batch writes its lines within the queue's room for a batch whatever follows its
/// refusal: with `audit.queue_lines = 8`, a batch refused by its first of eight parts is
/// answered 403 with its `deny` line, not 503 `audit_unavailable` (fresh eyes, round 29: a line
/// for every later part overflowed the half of the queue one request may take, and the deny
/// was lost).
#[tokio::test]
async fn a_refused_batch_fits_a_small_audit_queue() {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit.jsonl");
    let h = support::start_with(Options {
        members: 1,
        audit: format!("{}\nqueue_lines = 8", audit_to(&trail)),
        ..Options::default()
    })
    .await;
    let ring = |query: &str| {
        part(&format!(
            "POST {SIMRING}?{query} HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        ))
    };
    let mut parts = vec![ring(PREMIUM)];
    parts.extend((0..7).map(|_| ring("target=tel:%2B14255550100")));
    let batch = post_batch(
        &h,
        "/ucwa/oauth/v1/applications/192/batch",
        HOST,
        &multipart(BOUNDARY, &parts),
    )
    .await;
    assert_refused(&batch, 403, "denied");
    let lines = lines_until(&trail, |l| !l.is_empty()).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["decision"], "deny");
    assert_eq!(lines[0]["batch"]["part"], 1);
    // The seven `not_sent` lines after it did not fit the half of the queue a request's lines
    // may take: dropped, and counted.
    let m = h.metrics().await;
    assert_eq!(
        sample(&m, "ringfence_audit_lines_total", &[("result", "dropped")]),
        Some(7.0),
        "{m}"
    );
}
