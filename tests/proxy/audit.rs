//! The audit trail (SPEC §9, issue 12): every line parses against the schema docs/audit.md
//! documents; a decision is in the trail before the pool sees the request, an outcome after; a
//! refused batch has no `allow`; refusals keep what they could not parse; a full queue refuses
//! guarded requests (or drops, counted) and leaves pass-through traffic alone; the access log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::hostile::{batch_of, part, ring_line, BATCH};
use crate::support::{self, assert_refused, metrics::sample, Options, HOST, SIMRING};

const ALLOWED: &str = "tel:%2B14255550100";
const DENIED: &str = "tel:%2B19005550100";

/// The lines of a trail file, parsed (a line that is not JSON fails the test).
pub(crate) fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits (bounded) until the trail holds lines for which `done` holds, and returns them.
pub(crate) async fn lines_until(path: &Path, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let what = format!("the trail {} to hold the lines awaited", path.display());
    support::eventually(&what, async || {
        let got = lines(path);
        done(&got).then_some(got)
    })
    .await
}

/// The schema as docs/audit.md documents it: for each kind, each field and its type.
fn documented_schema() -> BTreeMap<String, BTreeMap<String, String>> {
    let doc = include_str!("../../docs/audit.md");
    let mut schema: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut kind = None;
    for line in doc.lines() {
        if let Some(k) = line.strip_prefix("### ") {
            kind = Some(k.trim().to_owned());
            continue;
        }
        if line.starts_with("## ") {
            kind = None;
        }
        let (Some(kind), Some(row)) = (&kind, line.strip_prefix("| `")) else {
            continue;
        };
        let mut cells = row.split(" | ");
        let field = cells.next().unwrap().trim_end_matches('`');
        let ty = cells.next().unwrap().trim();
        schema
            .entry(kind.clone())
            .or_default()
            .insert(field.to_owned(), ty.to_owned());
    }
    assert_eq!(
        schema.keys().collect::<Vec<_>>(),
        ["access", "config", "decision", "outcome"],
        "docs/audit.md documents each kind of line"
    );
    schema
}

/// Asserts that `line` has exactly the fields docs/audit.md lists for its kind, each of the
/// documented type, and `v` = 1.
pub(crate) fn assert_schema(line: &Value) {
    let schema = documented_schema();
    let kind = line["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("kind: {line}"));
    let fields = schema
        .get(kind)
        .unwrap_or_else(|| panic!("kind {kind}: {line}"));
    let object = line.as_object().unwrap();
    let got: Vec<&String> = object.keys().collect();
    let want: Vec<&String> = fields.keys().collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(
        got_sorted, want,
        "the documented fields of a {kind} line: {line}"
    );
    assert_eq!(line["v"], 1, "{line}");
    for (field, ty) in fields {
        let value = &object[field];
        let ok = match ty.as_str() {
            "string" => value.is_string(),
            "string?" => value.is_string() || value.is_null(),
            "integer" => value.is_u64(),
            "integer?" => value.is_u64() || value.is_null(),
            "object" => value.is_object(),
            "object?" => value.is_object() || value.is_null(),
            "array of string" => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
            other => panic!("docs/audit.md: unknown type {other} of {kind}.{field}"),
        };
        assert!(ok, "{kind}.{field} is {ty}, got {value}: {line}");
    }
    if let Some(ts) = line["ts"].as_str() {
        humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("ts {ts}: {e}"));
    }
}

/// A harness with one member and its audit trail in a file of its own; the directory lives as
/// long as the returned guard.
async fn with_trail(more: &str) -> (tempfile::TempDir, PathBuf, support::Harness) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let h = support::start_with(Options {
        members: 1,
        audit: file_audit(&path, more),
        ..Options::default()
    })
    .await;
    (dir, path, h)
}

fn file_audit(path: &Path, more: &str) -> String {
    format!("sink = \"file\"\npath = {path:?}\n{more}")
}

/// An allowed guarded POST with this X-Request-Id, on a connection of its own (so that several
/// can be held by a slow pool at once).
async fn allowed_as(addr: std::net::SocketAddr, id: String) -> support::Reply {
    support::Client::new(addr, None, false)
        .request(
            "POST",
            &format!("{SIMRING}?target={ALLOWED}"),
            HOST,
            &[("x-request-id", id.as_str())],
            b"",
        )
        .await
}

/// Waits (bounded) until `member` has received at least `n` requests.
async fn until_received(member: &ringfence::sim::FrontEnd, n: usize) {
    support::eventually(&format!("the pool to receive {n} requests"), async || {
        member.received().len() >= n
    })
    .await;
}

/// Sends a batch built by the hostile tests' helpers.
async fn send(h: &support::Harness, batch: &crate::hostile::Req) -> support::Reply {
    let content_type = batch
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str())
        .unwrap();
    h.client
        .request(
            "POST",
            BATCH,
            HOST,
            &[("content-type", content_type)],
            &batch.body,
        )
        .await
}

async fn ring(h: &support::Harness, query: &str, headers: &[(&str, &str)]) -> support::Reply {
    h.client
        .request("POST", &format!("{SIMRING}?{query}"), HOST, headers, b"")
        .await
}

/// SPEC §9: every field of each kind of line, as documented; never the caller's credentials;
/// the id is ringfence's, the client's kept apart.
#[tokio::test]
async fn every_line_has_the_documented_schema_and_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let h = support::start_with(Options {
        audit: file_audit(&path, ""),
        ..Options::default()
    })
    .await;
    const SECRET: &str = "cwt=AAEBHAEFAAAAAAAFFQAAAOJl4DmyRg-SECRET";
    let authorization = format!("Bearer {SECRET}");
    let credentials = [
        ("authorization", authorization.as_str()),
        ("cookie", "cwt=SECRET-COOKIE"),
    ];
    let with_id = |id: &'static str| {
        let mut headers = credentials.to_vec();
        headers.push(("x-request-id", id));
        headers
    };
    let allowed = ring(
        &h,
        &format!("target={ALLOWED}"),
        &with_id("audit-allowed-1"),
    )
    .await;
    assert_eq!(allowed.status, 204, "{}", allowed.text());
    assert_eq!(allowed.header("x-request-id"), Some("audit-allowed-1"));
    let denied = ring(&h, &format!("target={DENIED}"), &with_id("audit-denied-1")).await;
    assert_refused(&denied, 403, "denied");
    let mut json = credentials.to_vec();
    json.push(("content-type", "application/json"));
    let malformed = h
        .client
        .request(
            "POST",
            SIMRING,
            HOST,
            &json,
            br#"{"target":"tel:+1-425-CALL-\u007fNOW\u202e\\u{202e}\uff11"}"#,
        )
        .await;
    assert_refused(&malformed, 400, "malformed");
    let long = format!("tel:%2B1{}", "4".repeat(200));
    let too_long = ring(&h, &format!("target={long}"), &credentials).await;
    assert_refused(&too_long, 400, "too_long");
    // A query value refused for a control character still names its number (fresh eyes,
    // round 32).
    let control = ring(
        &h,
        "target=tel:%2B1900%0A5550100",
        &with_id("audit-control-1"),
    )
    .await;
    assert_refused(&control, 400, "malformed");
    // A refused batch: an allowed part, then a denied one.
    let batch = batch_of(&[
        part(&ring_line("tel:+14255550100")),
        part(&ring_line("tel:+19005550100")),
    ]);
    let refused_batch = send(&h, &batch).await;
    assert_refused(&refused_batch, 403, "denied");

    let all = lines_until(&path, |l| l.len() >= 8).await;
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [SECRET, "Bearer", "SECRET-COOKIE"] {
        assert!(!text.contains(secret), "{secret} in the trail: {text}");
    }
    for line in &all {
        assert_schema(line);
        if line["kind"] == "decision" {
            assert_eq!(line["client"], "127.0.0.1");
            assert_eq!(line["host"], HOST);
            assert_eq!(line["organisation"], "contoso");
            assert_eq!(line["method"], "POST");
            assert_eq!(line["id"].as_str().unwrap().len(), 24, "{line}");
        }
    }
    let by_client_id = |id: &str| {
        all.iter()
            .filter(|l| l["client_request_id"] == id)
            .collect::<Vec<_>>()
    };
    let allow = by_client_id("audit-allowed-1");
    assert_eq!(allow.len(), 1, "{all:#?}");
    let allow = allow[0];
    assert_eq!(allow["decision"], "allow");
    assert_eq!(allow["reason"], "allowed");
    assert_eq!(allow["targets"], serde_json::json!(["tel:+14255550100"]));
    assert_eq!(allow["path"], SIMRING);
    assert_eq!(allow["resource"], "simultaneousRingToContact");
    assert!(allow["rule"]
        .as_str()
        .is_some_and(|r| r.starts_with("contoso.allow_numbers ")));
    assert_ne!(allow["id"], "audit-allowed-1", "the id is ringfence's own");
    let outcome: Vec<&Value> = all
        .iter()
        .filter(|l| l["kind"] == "outcome" && l["id"] == allow["id"])
        .collect();
    assert_eq!(outcome.len(), 1, "{all:#?}");
    assert_eq!(outcome[0]["status"], 204);
    assert_eq!(outcome[0]["source"], "pool");

    let deny = by_client_id("audit-denied-1")[0];
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["reason"], "denied");
    assert_eq!(deny["rule"], "policy.deny_numbers +1900");
    assert!(
        !all.iter()
            .any(|l| l["kind"] == "outcome" && l["id"] == deny["id"]),
        "a refused request has no outcome line: {all:#?}"
    );
    let reason = |r: &str| {
        all.iter()
            .find(|l| l["reason"] == r)
            .unwrap_or_else(|| panic!("no {r} line: {all:#?}"))
    };
    // What could not be parsed is kept, escaped (a bidirectional override and a fullwidth
    // digit too), cut; the client's own backslash is doubled, so its `\u{202e}` is not taken
    // for the override.
    assert_eq!(
        reason("malformed")["raw_target"],
        "tel:+1-425-CALL-\\u{7f}NOW\\u{202e}\\\\u{202e}\\u{ff11}"
    );
    assert_eq!(
        by_client_id("audit-control-1")[0]["raw_target"],
        "tel:+1900\\u{a}5550100"
    );
    let raw = reason("too_long")["raw_target"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(raw.chars().count(), 128);
    assert!(raw.starts_with("tel:+1444"), "{raw}");

    // The refused batch: the denied part is the one deny, the allowed part not_sent.
    let parts: Vec<&Value> = all.iter().filter(|l| l["batch"].is_object()).collect();
    assert_eq!(parts.len(), 2, "{all:#?}");
    assert!(parts.iter().all(|l| l["decision"] != "allow"), "{parts:#?}");
    assert_eq!(parts[0]["decision"], "not_sent");
    assert_eq!(parts[0]["reason"], "batch_refused");
    assert_eq!(parts[0]["batch"]["part"], 1);
    assert_eq!(parts[1]["decision"], "deny");
    assert_eq!(parts[1]["reason"], "denied");
    assert_eq!(parts[1]["batch"]["part"], 2);
    for p in &parts {
        assert_eq!(p["batch"]["parts"], 2);
        assert_eq!(p["batch"]["id"], p["id"]);
        assert_eq!(p["path"], SIMRING);
    }
    // The decision counter counts the batch's deny once, its not_sent part never.
    let m = h.metrics().await;
    let allows = sample(
        &m,
        "ringfence_policy_decisions_total",
        &[("decision", "allow")],
    );
    assert_eq!(
        allows,
        Some(1.0),
        "only the forwarded request was allowed\n{m}"
    );
    assert_eq!(
        sample(&m, "ringfence_audit_lines_total", &[("result", "written")]),
        Some(all.len() as f64)
    );
}

/// An allowed batch: a line per guarded part, each `allow`, and one outcome for the batch.
#[tokio::test]
async fn an_allowed_batch_records_each_part_and_one_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let h = support::start_with(Options {
        audit: file_audit(&path, ""),
        ..Options::default()
    })
    .await;
    // The third part names a Host of its own, of no organisation: judged by the default's
    // (the batch's) lists, and its line shows that Host (fresh eyes round 35: it showed the
    // batch's).
    let batch = batch_of(&[
        part(&crate::hostile::get_me()),
        part(&ring_line("tel:+14255550100")),
        part(&ring_line("sip:helpdesk@fabrikam.com").replace(HOST, "other.example:8443")),
    ]);
    let reply = send(&h, &batch).await;
    assert!(reply.status < 300, "{} {}", reply.status, reply.text());
    let all = lines_until(&path, |l| l.iter().any(|l| l["kind"] == "outcome")).await;
    let decisions: Vec<&Value> = all.iter().filter(|l| l["kind"] == "decision").collect();
    assert_eq!(decisions.len(), 2, "{all:#?}");
    for (d, (part, target, host)) in decisions.iter().zip([
        (2, "tel:+14255550100", HOST),
        (3, "sip:helpdesk@fabrikam.com", "other.example:8443"),
    ]) {
        assert_schema(d);
        assert_eq!(d["decision"], "allow");
        assert_eq!(d["host"], host);
        assert_eq!(d["organisation"], "contoso");
        assert_eq!(d["batch"]["part"], part);
        assert_eq!(d["batch"]["parts"], 3);
        assert_eq!(d["targets"], serde_json::json!([target]));
    }
    let outcome = all.iter().find(|l| l["kind"] == "outcome").unwrap();
    assert_schema(outcome);
    assert_eq!(outcome["id"], decisions[0]["id"]);
    assert_eq!(outcome["source"], "pool");
    assert_eq!(outcome["status"], reply.status);
}

/// A batch refused by one part: the guarded parts after it are in the trail too, each
/// `not_sent` (SPEC §9: each part of a refused batch is marked), a later part that would have
/// been denied on its own included, so that the batch has one `deny`; the refusal, its answer
/// and the decision counter are the refusing part's alone. An unguarded part has no line.
#[tokio::test]
async fn every_guarded_part_of_a_refused_batch_is_in_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let h = support::start_with(Options {
        audit: file_audit(&path, ""),
        ..Options::default()
    })
    .await;
    let batch = batch_of(&[
        part(&ring_line("tel:+14255550100")),
        part(&ring_line("tel:+19005550100")),
        part(&ring_line("sip:helpdesk@fabrikam.com")),
        part(&ring_line("tel:+19005550199")),
        part(&crate::hostile::get_me()),
    ]);
    let reply = send(&h, &batch).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("NotAllowed"), "{}", reply.text());
    assert!(
        h.received().is_empty(),
        "nothing of a refused batch is sent"
    );
    let all = lines_until(&path, |l| l.len() >= 4).await;
    let parts: Vec<(u64, &str, &str, &Value)> = all
        .iter()
        .map(|l| {
            assert_schema(l);
            assert_eq!(l["batch"]["parts"], 5);
            assert_eq!(l["batch"]["id"], l["id"]);
            (
                l["batch"]["part"].as_u64().unwrap(),
                l["decision"].as_str().unwrap(),
                l["reason"].as_str().unwrap(),
                &l["targets"],
            )
        })
        .collect();
    assert_eq!(
        parts,
        [
            (
                1,
                "not_sent",
                "batch_refused",
                &serde_json::json!(["tel:+14255550100"])
            ),
            (
                2,
                "deny",
                "denied",
                &serde_json::json!(["tel:+19005550100"])
            ),
            (
                3,
                "not_sent",
                "batch_refused",
                &serde_json::json!(["sip:helpdesk@fabrikam.com"])
            ),
            (
                4,
                "not_sent",
                "batch_refused",
                &serde_json::json!(["tel:+19005550199"])
            ),
        ],
        "{all:#?}"
    );
    let m = h.metrics().await;
    assert_eq!(
        sample(
            &m,
            "ringfence_policy_decisions_total",
            &[("decision", "deny")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "ringfence_policy_decisions_total",
            &[("decision", "allow")]
        ),
        None,
        "{m}"
    );

    // Nothing after the refusing part changes the answer: a part with a bad path, or with a
    // method override, would refuse a batch as a whole (400) if it came first. After a refusal
    // the bad path gets no line (it could not be judged), the override is recorded `not_sent`
    // as read, and the parts after them still have their lines.
    let bad_path =
        format!("POST {SIMRING}%00?target=tel:%2B14255550100 HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let overridden = format!(
        "POST {SIMRING}?target=tel:%2B14255550100 HTTP/1.1\r\nHost: {HOST}\r\nX-HTTP-Method-Override: PUT\r\n\r\n"
    );
    let batch = batch_of(&[
        part(&ring_line("tel:+19005550100")),
        part(&bad_path),
        part(&overridden),
        part(&ring_line("tel:+14255550100")),
    ]);
    let reply = send(&h, &batch).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let all = lines_until(&path, |l| l.len() >= 7).await;
    let second: Vec<(u64, &str)> = all[4..]
        .iter()
        .map(|l| {
            (
                l["batch"]["part"].as_u64().unwrap(),
                l["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        second,
        [(1, "deny"), (3, "not_sent"), (4, "not_sent")],
        "{all:#?}"
    );

    // Refused as a whole by a part it cannot judge (SPEC §9: "one line for the batch, and each
    // part marked not_sent"): the batch's line, then every guarded part's, the ones before the
    // bad part too, `not_sent`. The bad part itself could not be judged and has none.
    let batch = batch_of(&[
        part(&ring_line("tel:+14255550100")),
        part(&bad_path),
        part(&ring_line("tel:+19005550100")),
    ]);
    let reply = send(&h, &batch).await;
    assert_refused(&reply, 400, "bad_path");
    assert!(
        h.received().is_empty(),
        "nothing of a refused batch is sent"
    );
    let all = lines_until(&path, |l| l.len() >= 10).await;
    let third: Vec<(&Value, &str, &str, &str)> = all[7..]
        .iter()
        .map(|l| {
            assert_schema(l);
            (
                &l["batch"]["part"],
                l["resource"].as_str().unwrap(),
                l["decision"].as_str().unwrap(),
                l["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        third,
        [
            (&Value::Null, "batch", "deny", "bad_path"),
            (
                &1.into(),
                "simultaneousRingToContact",
                "not_sent",
                "batch_refused"
            ),
            (
                &3.into(),
                "simultaneousRingToContact",
                "not_sent",
                "batch_refused"
            ),
        ],
        "{all:#?}"
    );
    let m = h.metrics().await;
    let denies = |reason: &str| {
        sample(
            &m,
            "ringfence_policy_decisions_total",
            &[("decision", "deny"), ("reason", reason)],
        )
    };
    assert_eq!(
        (denies("denied"), denies("bad_path")),
        (Some(2.0), Some(1.0)),
        "{m}"
    );

    // A part naming another organisation's Host refuses the batch (421). Its own line is that
    // organisation's, read by its lists (contoso's would not allow this number): not the
    // batch's (fresh eyes, round 31), and not left out, so the number it carried is in the
    // trail (round 32).
    let foreign = format!(
        "POST {SIMRING}?target=tel:%2B442071234567 HTTP/1.1\r\nHost: lync.fabrikam.com\r\n\r\n"
    );
    let batch = batch_of(&[
        part(&ring_line("tel:+14255550100")),
        part(&foreign),
        part(&ring_line("tel:+14255550101")),
    ]);
    let reply = send(&h, &batch).await;
    assert_refused(&reply, 421, "misdirected");
    let all = lines_until(&path, |l| l.len() >= 14).await;
    let fourth: Vec<(&Value, &str, &str, &Value, &Value)> = all[10..]
        .iter()
        .map(|l| {
            (
                &l["batch"]["part"],
                l["decision"].as_str().unwrap(),
                l["organisation"].as_str().unwrap(),
                &l["targets"],
                &l["rule"],
            )
        })
        .collect();
    let none = Value::Null;
    let targets = |t: &str| serde_json::json!([t]);
    assert_eq!(
        fourth,
        [
            (&none, "deny", "contoso", &serde_json::json!([]), &none),
            (
                &1.into(),
                "not_sent",
                "contoso",
                &targets("tel:+14255550100"),
                &"contoso.allow_numbers +14255550100".into()
            ),
            (
                &2.into(),
                "not_sent",
                "fabrikam",
                &targets("tel:+442071234567"),
                &"fabrikam.allow_numbers +44207".into()
            ),
            (
                &3.into(),
                "not_sent",
                "contoso",
                &targets("tel:+14255550101"),
                &"contoso.allow_numbers +1425555".into()
            ),
        ],
        "{all:#?}"
    );
    let hosts: Vec<&str> = all[10..]
        .iter()
        .map(|l| l["host"].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        [HOST, HOST, "lync.fabrikam.com", HOST],
        "the foreign part's line shows the Host it was judged by"
    );

    // A part whose own Host cannot be read refuses the batch (bad_batch); its line names no
    // organisation and shows that Host, escaped (round 33).
    let unreadable = format!(
        "POST {SIMRING}?target=tel:%2B19005550100 HTTP/1.1\r\nHost: x@lync.fabrikam.com\r\n\r\n"
    );
    let batch = batch_of(&[part(&ring_line("tel:+14255550100")), part(&unreadable)]);
    let reply = send(&h, &batch).await;
    assert_refused(&reply, 400, "bad_batch");
    let all = lines_until(&path, |l| l.len() >= 17).await;
    let fifth: Vec<(&Value, &str, &Value, &str, &Value)> = all[14..]
        .iter()
        .map(|l| {
            (
                &l["batch"]["part"],
                l["decision"].as_str().unwrap(),
                &l["organisation"],
                l["host"].as_str().unwrap(),
                &l["targets"],
            )
        })
        .collect();
    assert_eq!(
        fifth,
        [
            (
                &none,
                "deny",
                &"contoso".into(),
                HOST,
                &serde_json::json!([])
            ),
            (
                &1.into(),
                "not_sent",
                &"contoso".into(),
                HOST,
                &targets("tel:+14255550100")
            ),
            (
                &2.into(),
                "not_sent",
                &none,
                "x@lync.fabrikam.com",
                &targets("tel:+19005550100")
            ),
        ],
        "{all:#?}"
    );
}

/// The decision is in the trail before the pool receives the request; the outcome only after
/// the pool answered (a slow member holds the answer).
#[tokio::test]
async fn the_decision_is_written_before_the_pool_sees_the_request() {
    let (_dir, path, h) = with_trail("").await;
    h.members[0].set_fault(ringfence::sim::Fault::Slow(Duration::from_millis(1500)));
    let request = tokio::spawn(allowed_as(h.server.addrs()[0], "ordered-1".into()));
    // The moment the pool has it, the decision must already be in the file.
    until_received(&h.members[0], 1).await;
    let at_receipt = lines(&path);
    assert_eq!(at_receipt.len(), 1, "{at_receipt:#?}");
    assert_eq!(at_receipt[0]["kind"], "decision");
    assert_eq!(at_receipt[0]["client_request_id"], "ordered-1");
    let reply = request.await.unwrap();
    assert_eq!(reply.status, 204);
    let all = lines_until(&path, |l| l.len() >= 2).await;
    assert_eq!(all[1]["kind"], "outcome");
    assert_eq!(all[1]["status"], 204);
    assert!(all[1]["duration_ms"].as_u64().unwrap() >= 1400, "{all:#?}");
}

/// The pool unreachable after the decision: the outcome is ringfence's own 503, not the pool's.
#[tokio::test]
async fn an_answer_ringfence_wrote_itself_is_not_recorded_as_the_pools() {
    let (_dir, path, h) = with_trail("").await;
    h.members[0].stop();
    let reply = ring(&h, &format!("target={ALLOWED}"), &[]).await;
    assert_refused(&reply, 503, "upstream_unavailable");
    let all = lines_until(&path, |l| l.len() >= 2).await;
    assert_eq!(all[0]["decision"], "allow");
    assert_eq!(all[1]["kind"], "outcome");
    assert_eq!(all[1]["status"], 503);
    assert_eq!(all[1]["source"], "ringfence");
}

/// A sink that takes nothing (a FIFO nobody reads): the queue fills; guarded requests are
/// refused 503 `audit_unavailable` and pass-through traffic goes on; the lines waiting are shown;
/// once the sink takes lines again, every queued line arrives.
#[tokio::test]
async fn a_stalled_sink_refuses_guarded_requests_and_spares_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, reader) = stalled_fifo(&dir);
    let h = support::start_with(Options {
        audit: file_audit(&fifo, "queue_lines = 50\nwrite_timeout = \"300ms\""),
        ..Options::default()
    })
    .await;
    // Fill the queue with denied requests' lines (they wait for nothing; the pipe is full).
    let mut refused_for_audit = 0;
    for i in 0..2000 {
        let reply = ring(&h, &format!("target={DENIED}"), &[]).await;
        match reply.status {
            403 => {}
            503 => {
                assert_refused(&reply, 503, "audit_unavailable");
                refused_for_audit += 1;
                break;
            }
            other => panic!("request {i}: {other} {}", reply.text()),
        }
    }
    assert_eq!(refused_for_audit, 1, "the queue filled");
    let allowed = ring(&h, &format!("target={ALLOWED}"), &[]).await;
    assert_refused(&allowed, 503, "audit_unavailable");
    let before = h.members.iter().map(|m| m.received().len()).sum::<usize>();
    assert_eq!(before, 0, "nothing was forwarded without its decision line");
    let get = h
        .client
        .get("/ucwa/oauth/v1/applications/192/me", HOST)
        .await;
    assert_eq!(get.status, 200, "pass-through traffic is untouched");
    let m = h.metrics().await;
    assert_eq!(
        sample(&m, "ringfence_audit_queue_lines", &[]),
        Some(50.0),
        "{m}"
    );
    assert!(sample(&m, "ringfence_audit_lines_total", &[("result", "dropped")]).unwrap() >= 2.0);

    // The sink takes lines again: everything queued arrives, and guarded requests go through.
    let drain = Drain::start(reader);
    let allowed = support::eventually(
        "guarded requests to go through once the sink takes lines",
        async || {
            let reply = ring(&h, &format!("target={ALLOWED}"), &[]).await;
            (reply.status == 204).then_some(reply)
        },
    )
    .await;
    assert_eq!(allowed.status, 204);
    let m = h.metrics().await;
    let written = sample(&m, "ringfence_audit_lines_total", &[("result", "written")]).unwrap();
    drop(h);
    // Every written line arrives (the server is not stopped, so the pipe never ends).
    let text = drain.lines(written as usize).await;
    for line in text.lines() {
        assert_schema(&serde_json::from_str(line).unwrap());
    }
}

/// `on_full = "drop"`: the same stalled sink, but requests go on and the lost lines are counted.
#[tokio::test]
async fn on_full_drop_forwards_and_counts_the_lost_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, reader) = stalled_fifo(&dir);
    let h = support::start_with(Options {
        audit: file_audit(
            &fifo,
            "queue_lines = 20\non_full = \"drop\"\nwrite_timeout = \"100ms\"",
        ),
        ..Options::default()
    })
    .await;
    for _ in 0..1500 {
        let reply = ring(&h, &format!("target={DENIED}"), &[]).await;
        assert_refused(&reply, 403, "denied");
    }
    let reply = ring(&h, &format!("target={ALLOWED}"), &[]).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let m = h.metrics().await;
    assert!(
        sample(&m, "ringfence_audit_lines_total", &[("result", "dropped")]).unwrap() >= 1.0,
        "{m}"
    );
    drop(h);
    // Never read: the pipe stays full to the end.
    drop(reader);
}

/// A FIFO as the audit file, with its read end open (so opening it for writing does not block)
/// and never read: the sink stalls once the pipe's buffer is full.
fn stalled_fifo(dir: &tempfile::TempDir) -> (PathBuf, std::fs::File) {
    use std::os::unix::fs::OpenOptionsExt;
    let fifo = dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    const O_NONBLOCK: i32 = 0o4000;
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    // The pipe is filled first (with spaces, which a JSON reader skips before the first line),
    // so the sink stalls at its first write. Left for ringfence to fill, the pipe filled after a
    // number of lines that depended on how the writer's thread batched them, and a writer that
    // fell behind let the queue fill first and then drained it (session 32).
    let mut filler = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let spaces = [b' '; 4096];
    loop {
        match std::io::Write::write(&mut filler, &spaces) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the FIFO: {e}"),
        }
    }
    (fifo, reader)
}

/// A FIFO's reader on a task, keeping what it read; stopped when dropped. It waits for the pipe
/// to be readable, never for a time.
struct Drain {
    read: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drain {
    fn start(reader: std::fs::File) -> Drain {
        let read: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = std::sync::Arc::default();
        let task = tokio::spawn({
            let read = std::sync::Arc::clone(&read);
            async move {
                use tokio::io::AsyncReadExt;
                let mut pipe = tokio::net::unix::pipe::Receiver::from_file(reader).unwrap();
                let mut buf = vec![0u8; 65536];
                while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                    read.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }
        });
        Drain { read, task }
    }

    /// Waits (bounded) until `n` lines were read; everything read.
    async fn lines(&self, n: usize) -> String {
        support::eventually(&format!("{n} lines through the FIFO"), async || {
            let read = self.read.lock().unwrap();
            (read.iter().filter(|&&b| b == b'\n').count() >= n)
                .then(|| String::from_utf8(read.clone()).unwrap())
        })
        .await
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A reload that takes effect writes a `config` line with both hashes and the counts.
#[tokio::test]
async fn a_reload_is_audited() {
    let members = [ringfence::sim::FrontEnd::start("fe1").await.unwrap()];
    let file = support::ConfigFile::new("");
    let path = file.dir().join("audit.jsonl");
    let toml = |allow: &str| {
        support::Toml::of(&members)
            .audit(&file_audit(&path, ""))
            .rest(&format!(
                "[policy]\ndefault_organisation = \"c\"\n\
                 [[organisations]]\nname = \"c\"\nallow_numbers = [{allow}]\n"
            ))
            .build()
    };
    file.write(&toml("\"+1425\""));
    let server = file.serve().await;
    file.write(&toml("\"+1425\", \"+1206\""));
    server.shared().reload().await.expect("reload");
    let all = lines_until(&path, |l| !l.is_empty()).await;
    let line = &all[0];
    assert_schema(line);
    assert_eq!(line["kind"], "config");
    assert_ne!(line["old_hash"], line["new_hash"]);
    assert_eq!(line["old"]["allow_entries"], 1);
    assert_eq!(line["new"]["allow_entries"], 2);
    assert_eq!(line["new"]["members"], 1);
    server.shutdown().await;
}

/// The access log: a line per request, guarded or not, with what went each way.
#[tokio::test]
async fn the_access_log_has_a_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.jsonl");
    let h = support::start_with(Options {
        extra: format!("[access_log]\nsink = \"file\"\npath = {path:?}\n"),
        ..Options::default()
    })
    .await;
    let get = h
        .client
        .get("/ucwa/oauth/v1/applications/192/me", HOST)
        .await;
    assert_eq!(get.status, 200);
    let body = br#"{"target":"tel:+14255550100"}"#;
    let post = h
        .client
        .request(
            "POST",
            SIMRING,
            HOST,
            &[("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(post.status, 204, "{}", post.text());
    let denied = ring(&h, &format!("target={DENIED}"), &[]).await;
    assert_eq!(denied.status, 403);
    let all = lines_until(&path, |l| l.len() >= 3).await;
    for l in &all {
        assert_schema(l);
        assert_eq!(l["client"], "127.0.0.1");
        assert_eq!(l["host"], HOST);
    }
    assert_eq!(all[0]["route"], "passthrough");
    assert_eq!(all[0]["method"], "GET");
    assert_eq!(all[0]["status"], 200);
    assert_eq!(all[0]["bytes_out"], get.body.len());
    assert!(all[0]["member"].is_string());
    assert_eq!(all[1]["route"], "guarded");
    assert_eq!(all[1]["status"], 204);
    assert_eq!(all[1]["bytes_in"], body.len());
    assert_eq!(all[2]["status"], 403);
    assert!(all[2]["member"].is_null(), "ringfence answered itself");
    assert_eq!(all[2]["bytes_out"], denied.body.len());
    assert_eq!(all[2]["path"], SIMRING, "the path without its query");
}

/// Who (SPEC §12): the application from the path, the user the pool named for it when it was
/// created, and the token's fingerprint; never the token.
#[tokio::test]
async fn a_decision_names_the_application_its_user_and_the_token_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let h = support::start_with(Options {
        audit: file_audit(&path, ""),
        ..Options::default()
    })
    .await;
    let application = crate::identity::create(&h, "alice", "application/json").await;
    let user = crate::identity::user_of(&h, &application, Some("sip:alice@contoso.com")).await;
    assert_eq!(user.as_deref(), Some("sip:alice@contoso.com"));
    let ring_path = SIMRING.replace("/192/", &format!("/{application}/"));
    let reply = h
        .client
        .request(
            "POST",
            &format!("{ring_path}?target={ALLOWED}"),
            HOST,
            &[("authorization", "Bearer alice")],
            b"",
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    // An application nobody saw created: its user is not known, the rest still is.
    let unknown = ring(
        &h,
        &format!("target={DENIED}"),
        &[("authorization", "Bearer alice")],
    )
    .await;
    assert_eq!(unknown.status, 403);
    let all = lines_until(&path, |l| {
        l.iter().filter(|l| l["kind"] == "decision").count() >= 2
    })
    .await;
    let decisions: Vec<&Value> = all.iter().filter(|l| l["kind"] == "decision").collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, b"Bearer alice");
    let fingerprint: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(decisions[0]["application"], application.as_str());
    assert_eq!(decisions[0]["user"], "sip:alice@contoso.com");
    assert_eq!(decisions[0]["token_fingerprint"], fingerprint.as_str());
    assert_eq!(decisions[1]["application"], "192");
    assert!(decisions[1]["user"].is_null(), "{}", decisions[1]);
    assert_eq!(decisions[1]["token_fingerprint"], fingerprint.as_str());
    assert!(!std::fs::read_to_string(&path).unwrap().contains("Bearer"));
}

/// SPEC §9: shutdown writes out the queue. Lines wait behind a stalled sink; the sink is
/// drained slowly while the server shuts down; once `shutdown` returns, none is left waiting and
/// every line reached the file.
#[tokio::test]
async fn shutdown_writes_the_queue_out() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, reader) = stalled_fifo(&dir);
    let h = support::start_with(Options {
        audit: file_audit(&fifo, "queue_lines = 100000"),
        ..Options::default()
    })
    .await;
    const N: usize = 600;
    for _ in 0..N {
        let reply = ring(&h, &format!("target={DENIED}"), &[]).await;
        assert_eq!(reply.status, 403);
    }
    let waiting = sample(&h.metrics().await, "ringfence_audit_queue_lines", &[]).unwrap();
    assert!(
        waiting > 100.0,
        "lines wait behind the full pipe: {waiting}"
    );
    let shared = std::sync::Arc::clone(h.server.shared());
    let drain = Drain::start(reader);
    h.server.shutdown().await;
    assert_eq!(
        shared.audit.counters().queued.get(),
        0,
        "shutdown returned with lines still queued"
    );
    drop(shared);
    drop(h.members);
    let text = drain.lines(N).await;
    assert_eq!(text.lines().count(), N);
}

/// Fresh-eyes round 6: no line grows with what a client sends. A 20 KB Host (refused since
/// round 41, as no host name is over 253 characters, and still recorded) and method are cut;
/// a batch of more guarded parts than `MAX_GUARDED_PARTS` is refused whole, one line, instead of
/// a line per part.
#[tokio::test]
async fn a_client_cannot_make_lines_grow_or_multiply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let h = support::start_with(Options {
        audit: file_audit(&path, ""),
        server: "max_batch_bytes = 1048576".into(),
        ..Options::default()
    })
    .await;
    let long_host = format!("{}.contoso.com", "a".repeat(20_000));
    let reply = h
        .client
        .request(
            "POST",
            &format!("{SIMRING}?target={DENIED}"),
            &long_host,
            &[],
            b"",
        )
        .await;
    assert_refused(&reply, 400, "bad_host");
    let many = |n: usize| {
        batch_of(
            &(0..n)
                .map(|i| part(&ring_line(&format!("tel:+1425555{i:04}"))))
                .collect::<Vec<_>>(),
        )
    };
    let at_limit = send(&h, &many(ringfence::judge::MAX_GUARDED_PARTS)).await;
    assert!(
        at_limit.status < 300,
        "{} {}",
        at_limit.status,
        at_limit.text()
    );
    let over = send(&h, &many(ringfence::judge::MAX_GUARDED_PARTS + 1)).await;
    assert_refused(&over, 400, "bad_batch");
    // The batch refused whole has its line, and its parts theirs, `not_sent`, up to the bound.
    let expected =
        1 + ringfence::judge::MAX_GUARDED_PARTS + 1 + 1 + ringfence::judge::MAX_GUARDED_PARTS;
    let all = lines_until(&path, |l| l.len() >= expected).await;
    // A marker's line closes the count: the trail is written in queue order, and the requests
    // above queued their lines before they were answered, so any further line of theirs would
    // come before it.
    let marker = ring(
        &h,
        &format!("target={DENIED}"),
        &[("x-request-id", "marker")],
    )
    .await;
    assert_refused(&marker, 403, "denied");
    let mut all_now = lines_until(&path, |l| {
        l.iter().any(|l| l["client_request_id"] == "marker")
    })
    .await;
    assert_eq!(all_now.pop().unwrap()["client_request_id"], "marker");
    assert_eq!(
        all_now.len(),
        expected,
        "{:#?}",
        &all_now[expected.min(all_now.len())..]
    );
    let host = all[0]["host"].as_str().unwrap();
    assert_eq!(host.len(), 260, "the Host is cut");
    for line in &all_now {
        assert_schema(line);
        let text = serde_json::to_string(line).unwrap();
        assert!(text.len() < 2048, "a line of {} bytes", text.len());
    }
    let over = &all_now[expected - 1 - ringfence::judge::MAX_GUARDED_PARTS..];
    let whole = &over[0];
    assert_eq!(whole["reason"], "bad_batch");
    assert_eq!(whole["resource"], "batch");
    for (i, line) in over[1..].iter().enumerate() {
        assert_eq!(line["decision"], "not_sent", "{line}");
        assert_eq!(line["batch"]["part"], i + 1);
        assert_eq!(
            line["batch"]["parts"],
            ringfence::judge::MAX_GUARDED_PARTS + 1
        );
    }
}

/// Fresh-eyes round 6, F2: a forwarded request's `outcome` keeps the place held for it when it
/// was decided, however full the queue gets while it is in flight; the lines that did not fit
/// are other requests' (refused `audit_unavailable`, counted `dropped`).
#[tokio::test]
async fn an_outcome_is_never_lost_to_a_full_queue() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let (fifo, reader) = stalled_fifo(&dir);
    let h = support::start_with(Options {
        members: 1,
        audit: file_audit(&fifo, "queue_lines = 8\nwrite_timeout = \"5s\""),
        ..Options::default()
    })
    .await;
    // A reader the test can pause: while paused, the pipe fills and the writer stalls. It waits
    // for the pipe to be readable or for its switch to turn, never for a time.
    let (reading, mut switch) = tokio::sync::watch::channel(true);
    let out = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let out = Arc::clone(&out);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut pipe = tokio::net::unix::pipe::Receiver::from_file(reader).unwrap();
            let mut buf = vec![0u8; 65536];
            while switch.wait_for(|on| *on).await.is_ok() {
                tokio::select! {
                    read = pipe.read(&mut buf) => match read {
                        Ok(n) if n > 0 => out.lock().unwrap().extend_from_slice(&buf[..n]),
                        _ => return,
                    },
                    _ = switch.changed() => {}
                }
            }
        })
    };
    let read = || -> Vec<Value> {
        String::from_utf8(out.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    h.members[0].set_fault(ringfence::sim::Fault::Slow(Duration::from_millis(4000)));
    let addr = h.server.addrs()[0];
    let in_flight: Vec<_> = (0..3)
        .map(|i| tokio::spawn(allowed_as(addr, format!("held-{i}"))))
        .collect();
    until_received(&h.members[0], 3).await;
    // Stall the sink and fill the queue with other requests' lines.
    reading.send_replace(false);
    let mut refused = 0;
    for sent in 0.. {
        if refused == 20 {
            break;
        }
        assert!(sent < 2000, "the queue never filled");
        let reply = ring(&h, &format!("target={DENIED}"), &[]).await;
        if reply.status == 503 {
            refused += 1;
        }
    }
    for request in in_flight {
        assert_eq!(request.await.unwrap().status, 204);
    }
    let m = h.metrics().await;
    let dropped = sample(&m, "ringfence_audit_lines_total", &[("result", "dropped")]).unwrap();
    assert_eq!(
        dropped,
        f64::from(refused),
        "only the refused requests' lines: {m}"
    );
    reading.send_replace(true);
    support::eventually("the queue to drain", async || {
        let m = h.metrics().await;
        sample(&m, "ringfence_audit_queue_lines", &[]) == Some(0.0)
    })
    .await;
    // Lost outcomes would never arrive: the wait's panic says so.
    let has_outcome = |all: &[Value], id: &str| {
        all.iter()
            .filter(|l| l["client_request_id"] == id)
            .any(|d| {
                all.iter()
                    .any(|l| l["kind"] == "outcome" && l["id"] == d["id"])
            })
    };
    support::eventually(
        "the reader to read the held requests' outcomes",
        async || {
            let all = read();
            (0..3).all(|i| has_outcome(&all, &format!("held-{i}")))
        },
    )
    .await;
    reader.abort();
    let all = read();
    for i in 0..3 {
        let id = format!("held-{i}");
        let decision = all
            .iter()
            .find(|l| l["client_request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id}'s decision"));
        let outcome = all
            .iter()
            .find(|l| l["kind"] == "outcome" && l["id"] == decision["id"])
            .unwrap_or_else(|| panic!("{id}'s outcome was lost"));
        assert_eq!(outcome["status"], 204);
    }
}

/// Fresh-eyes round 7, N1: the places held for outcome lines of requests in flight take no room
/// from the queue: with as many forwarded requests held open by a slow pool as the queue has
/// lines, another client's decision is still queued. Round 8, N2: with no place left for its
/// outcome, that request is refused (503 `audit_unavailable`) rather than forwarded unrecorded;
/// once one held request ends, the next is forwarded and every outcome is in the trail.
#[tokio::test]
async fn requests_in_flight_do_not_fill_the_queue() {
    let (_dir, path, h) = with_trail("queue_lines = 4").await;
    h.members[0].set_fault(ringfence::sim::Fault::Slow(Duration::from_millis(1500)));
    let addr = h.server.addrs()[0];
    // One at a time, so that each decision line is written before the next is queued.
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(tokio::spawn(allowed_as(addr, format!("held-{i}"))));
        until_received(&h.members[0], i + 1).await;
    }
    let refused = allowed_as(addr, "refused".into()).await;
    support::assert_refused(&refused, 503, "audit_unavailable");
    assert_eq!(
        h.members[0].received().len(),
        4,
        "the refused one was not forwarded"
    );
    for request in held {
        assert_eq!(request.await.unwrap().status, 204);
    }
    let other = allowed_as(addr, "other".into()).await;
    assert_eq!(other.status, 204, "{}", other.text());
    let all = lines_until(&path, |l| {
        l.iter().filter(|l| l["kind"] == "outcome").count() >= 5
    })
    .await;
    assert!(
        !all.iter().any(|l| l["client_request_id"] == "refused"),
        "a refused decision that could not be queued whole is not in the trail: {all:#?}"
    );
    assert_eq!(all.len(), 10, "five decisions and five outcomes: {all:#?}");
}

/// Fresh eyes, issue 14, G: a guarded request refused on its head alone for a header UCWA must
/// not see (a method override, a path rewrite) is a decision, and has its line and its count.
#[tokio::test]
async fn a_guarded_request_refused_on_its_head_is_recorded() {
    let (_dir, path, h) = with_trail("").await;
    let reply = h
        .client
        .request(
            "POST",
            &format!("{}?target=tel:%2B19005550100", support::SIMRING),
            support::HOST,
            &[("x-http-method-override", "PUT")],
            b"",
        )
        .await;
    support::assert_refused(&reply, 400, "method_override");
    let all = lines_until(&path, |l| !l.is_empty()).await;
    assert_eq!(all[0]["decision"], "deny", "{all:#?}");
    assert_eq!(all[0]["reason"], "method_override");
    assert_eq!(all[0]["resource"], "simultaneousRingToContact");
    assert_eq!(all[0]["organisation"], "contoso");
    // A Host that cannot be read names no organisation, but on a guarded resource the refusal
    // is a decision: recorded with the Host as sent, escaped (fresh eyes, round 32).
    let addr = h.server.addrs()[0];
    for (host, shown) in [
        ("lyncweb.contoso.com evil", "lyncweb.contoso.com evil"),
        // A port past 65535, which HTTP.sys refuses (round 34).
        ("lyncweb.contoso.com:99999", "lyncweb.contoso.com:99999"),
        (
            "lyncweb.contoso.com\u{202e}",
            "lyncweb.contoso.com\\u{202e}",
        ),
    ] {
        let request = format!(
            "POST {}?target=tel:%2B19005550100 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            support::SIMRING
        );
        let reply = support::client::raw_reply(addr, request.as_bytes())
            .await
            .unwrap();
        support::assert_refused(&reply, 400, "bad_host");
        let all = lines_until(&path, |l| l.iter().any(|l| l["host"] == shown)).await;
        let line = all.iter().find(|l| l["host"] == shown).unwrap();
        assert_eq!(line["decision"], "deny", "{all:#?}");
        assert_eq!(line["reason"], "bad_host");
        assert_eq!(line["resource"], "simultaneousRingToContact");
        assert_eq!(line["organisation"], serde_json::Value::Null);
    }
    // Not on a resource that is not guarded: nothing guarded was asked for.
    let before = lines(&path).len();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
        crate::hostile::ME
    );
    let reply = support::client::raw_reply(addr, request.as_bytes())
        .await
        .unwrap();
    support::assert_refused(&reply, 400, "bad_host");
    let metrics = h.metrics().await;
    let denies = |reason: &str| {
        support::metrics::sample(
            &metrics,
            "ringfence_policy_decisions_total",
            &[("decision", "deny"), ("reason", reason)],
        )
    };
    assert_eq!(
        (denies("method_override"), denies("bad_host")),
        (Some(1.0), Some(3.0))
    );
    assert_eq!(lines(&path).len(), before);
}
