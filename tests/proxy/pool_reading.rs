//! Requests read as the pool's own code reads them (issue #10, SPEC §3-§6): the request encoding
//! ASP.NET derives, cookieless-session segments, batch parts that are network-path references,
//! default-ignorable code points, SIP contacts whose user part is a number, TLS server names of
//! another organisation, and UCWA's XML error form.
//!
//! Each table row is a hostile request with its refusal and, where the shape allows one, its
//! allowed twin, sent over HTTP/1.1, h2c and h2 over TLS as in `hostile.rs`. Rows of the classes
//! where the pool itself would act on the denied target (by the simulator's model of the pool,
//! written apart from ringfence) are also read by that model offline, to show that they are real
//! bypasses of a gateway that reads less than ringfence does.

use ringfence::config::Config;
use ringfence::sim::encoding::Encoding;
use ringfence::sim::model::{self, Reading, Resources};

use crate::hostile::{
    at, batch_of, form_post, json_post, json_target, part, post, property, q, ring_line, run,
    ucwa_xml, Req, Row, ALLOWED, BATCH, DENIED, HOST, SETTINGS,
};
use crate::support::{self, assert_refused, client, Options, POLICY, SIMRING};

/// What the simulator's pool model makes of a request, read offline.
fn pool_reading(req: &Req) -> Reading {
    let mut headers = vec![("Host".to_string(), HOST.to_string())];
    headers.extend(req.headers.iter().cloned());
    model::read(
        &model::Request {
            method: &req.method,
            target: req.origin_form(),
            headers: &headers,
            body: &req.body,
        },
        &Resources::default(),
    )
}

/// Every hostile row is one the pool would act on for a target the policy does not allow: a
/// gateway that did not read requests as the pool does would let it through.
fn assert_the_pool_would_act_on_a_denied_target(rows: &[Row]) {
    let config = Config::from_toml(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nmembers = [\"http://127.0.0.1:1\"]\n{POLICY}"
    ))
    .unwrap();
    let harmless: Vec<&str> = rows
        .iter()
        .filter(|(_, shape, hostile, ..)| {
            ringfence::sim::oracle::judge(config.policy(), HOST, &pool_reading(&shape(hostile)))
                .is_ok()
        })
        .map(|(name, ..)| *name)
        .collect();
    assert!(
        harmless.is_empty(),
        "the pool model acts on nothing denied in: {harmless:?}"
    );
}

/// `s` in IBM037 (EBCDIC), every byte percent-encoded.
fn ebcdic(s: &str) -> String {
    s.chars()
        .map(|c| {
            let byte = (0..=255u8)
                .find(|&b| Encoding::Ibm037.decode(&[b]).as_deref() == Some(&c.to_string()))
                .expect("an IBM037 character");
            format!("%{byte:02X}")
        })
        .collect()
}

/// A POST whose query names the target in EBCDIC, with a body and Content-Type of the row's.
fn ebcdic_query(t: &str) -> String {
    format!("{SIMRING}?{}={}", ebcdic("target"), ebcdic(t))
}

/// ASP.NET re-decodes the query and the form with the encoding it derives from the headers
/// (`HttpRequest.GetEncodingFromHeaders`): anything but UTF-8 is refused, however it is spelled.
#[tokio::test]
async fn every_request_encoding_the_pool_could_derive_must_be_utf8() {
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("charset inside a quoted parameter", |t| post(ebcdic_query(t)).body(r#"application/json; x="a;charset=ibm037 ""#, json_target(ALLOWED)), DENIED, 415, "unsupported_media_type", None),
        ("charset inside a quoted parameter, upper case", |t| post(ebcdic_query(t)).body(r#"application/json; foo="bar; CHARSET = IBM037 ""#, json_target(ALLOWED)), DENIED, 415, "unsupported_media_type", None),
        ("charset after a comma", |t| post(ebcdic_query(t)).body("application/json, charset=cp037", json_target(ALLOWED)), DENIED, 415, "unsupported_media_type", None),
        ("charset after a comma in a quoted value", |t| post(ebcdic_query(t)).body(r#"application/json; x="a,charset=ebcdic-cp-us ""#, json_target(ALLOWED)), DENIED, 415, "unsupported_media_type", None),
        ("charset after whitespace", |t| post(ebcdic_query(t)).body("application/json charset=ibm037", json_target(ALLOWED)), DENIED, 415, "unsupported_media_type", None),
        ("plain charset parameter", |t| post(ebcdic_query(t)).body("application/json; charset=ibm037", json_target(ALLOWED)), DENIED, 415, "unsupported_media_type", None),
        ("charset on a form body", |t| post(ebcdic_query(t)).body("application/x-www-form-urlencoded; x=\"; charset=IBM037 \"", "a=b"), DENIED, 415, "unsupported_media_type", None),
        ("charset on an XML body", |t| post(ebcdic_query(t)).body("application/xml; x=\"a;charset=ibm037 \"", ucwa_xml(&property(ALLOWED))), DENIED, 415, "unsupported_media_type", None),
        ("x-up-devcap-post-charset with an UP User-Agent", |t| post(ebcdic_query(t)).header("User-Agent", "UP.Browser/6.2.3.9").header("x-up-devcap-post-charset", "ibm037"), DENIED, 415, "unsupported_media_type", None),
    ];
    assert_the_pool_would_act_on_a_denied_target(rows);
    // ASP.NET reads x-up-devcap-post-charset only behind an `UP` User-Agent; ringfence refuses
    // it whatever the User-Agent, so that no spelling of one matters.
    #[rustfmt::skip]
    let stricter: &[Row] = &[
        ("x-up-devcap-post-charset whatever the User-Agent", |t| post(ebcdic_query(t)).header("User-Agent", "Mozilla/5.0").header("X-UP-DEVCAP-POST-CHARSET", "IBM037"), DENIED, 415, "unsupported_media_type", None),
        ("x-up-devcap-post-charset without a User-Agent", |t| post(ebcdic_query(t)).header("x-up-devcap-post-charset", "ibm037"), DENIED, 415, "unsupported_media_type", None),
        ("x-up-devcap-post-charset on a second line", |t| post(ebcdic_query(t)).header("User-Agent", "UP").header("x-up-devcap-post-charset", "").header("x-up-devcap-post-charset", "ibm037"), DENIED, 415, "unsupported_media_type", None),
        ("two User-Agent lines, one UP", |t| post(ebcdic_query(t)).header("User-Agent", "UP").header("User-Agent", "Mozilla").header("x-up-devcap-post-charset", "ibm037"), DENIED, 415, "unsupported_media_type", None),
        // The source ends the value at a space or comma (`ibm037;x=y` names nothing), SPEC §4 at
        // `;` too: both readings must be UTF-8.
        ("charset glued to the next parameter", |t| post(ebcdic_query(t)).body("application/x-www-form-urlencoded; charset=ibm037;x=y", "a=b"), DENIED, 415, "unsupported_media_type", None),
    ];
    run("request encoding", &[rows, stricter].concat()).await;
}

/// The same headers, naming UTF-8, or naming another charset where ASP.NET would not use it
/// (no body, or a value no encoding is named), leave a request as it was.
#[tokio::test]
async fn a_utf8_or_unused_request_encoding_leaves_a_request_as_it_was() {
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("quoted charset=UTF-8", |t| post(format!("{SIMRING}?target={}", q(t))).body(r#"application/json; charset="UTF-8""#, json_target(t)), DENIED, 403, "denied", Some(ALLOWED)),
        ("charset=utf-8 among other parameters", |t| post(SIMRING).header("X-Other", "1").body("application/json;odata=verbose;charset=utf-8", json_target(t)), DENIED, 403, "denied", Some(ALLOWED)),
        ("x-up-devcap-post-charset naming UTF-8", |t| post(format!("{SIMRING}?target={}", q(t))).header("User-Agent", "UP.Browser").header("x-up-devcap-post-charset", "utf-8"), DENIED, 403, "denied", Some(ALLOWED)),
        ("a hidden charset without a body", |t| post(format!("{SIMRING}?target={}", q(t))).header("Content-Type", r#"application/json; x="a;charset=ibm037 ""#), DENIED, 403, "denied", Some(ALLOWED)),
        ("a charset value no encoding is named", |t| post(SIMRING).body("application/json; charset=utf-8; x=\"y\"", json_target(t)), DENIED, 403, "denied", Some(ALLOWED)),
    ];
    run("utf-8 request encoding", rows).await;
}

/// System.Web removes cookieless-session segments (`/(S(x))/`) from the path before routing
/// (`CookielessHelperClass`), so a guarded resource may hide behind one, raw or encoded.
#[tokio::test]
async fn a_guarded_resource_behind_a_cookieless_segment_is_judged() {
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("segment after the resource", |t| at(&format!("{SIMRING}/(S(abcdefghijklmnopqrstuvwx))/"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("several values in one segment", |t| at(&format!("{SIMRING}/(A(x)S(y)F(z))/"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("segment before the resource", |t| at(&format!("{SETTINGS}/(S(abc))/simultaneousRingToContact"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("segment right after /ucwa", |t| at("/ucwa/(S(abc))/oauth/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact", t), DENIED, 403, "denied", Some(ALLOWED)),
        ("an encoded slash inside the value", |t| at(&format!("{SIMRING}/(S(a%2Fb))/"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("segment undone by a dot-dot", |t| at(&format!("{SIMRING}/(S(abc))/x/.."), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("value cut out of the resource name (CVE-2023-36899)", |t| at(&format!("{SETTINGS}/simultaneous/(S(a))RingToContact/(S(a))/.."), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("batch path behind a segment", |t| batch_of(&[part(&ring_line(t))]).retarget(&format!("{BATCH}/(S(abc))/")), DENIED, 403, "denied", Some(ALLOWED)),
        ("batch part behind a segment", |t| batch_of(&[part(&format!("POST {SIMRING}/(S(abc))/?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 403, "denied", Some(ALLOWED)),
    ];
    assert_the_pool_would_act_on_a_denied_target(rows);
    // Spellings System.Web does not remove (no `)/` after it, only one of two, encoded or
    // backslashed parentheses, a lower-case letter, a trailing dot): ringfence removes every
    // one wherever it stands, which can only judge more.
    #[rustfmt::skip]
    let stricter: &[Row] = &[
        ("segment after the resource, no trailing slash", |t| at(&format!("{SIMRING}/(S(abc))"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("two segments", |t| at(&format!("{SIMRING}/(S(a))/(F(b))/"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("percent-encoded parentheses", |t| at(&format!("{SIMRING}/%28S%28abc%29%29/"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("double-encoded parentheses", |t| at(&format!("{SIMRING}/%2528S%2528abc%2529%2529/"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("encoded slashes around the segment", |t| at(&format!("{SIMRING}%2F(S(abc))%2F"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("backslashes around the segment", |t| at(&format!("{SIMRING}\\(S(abc))\\"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("lower-case letter", |t| at(&format!("{SIMRING}/(s(abc))/"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("trailing dot on the segment", |t| at(&format!("{SIMRING}/(S(abc))./"), t), DENIED, 403, "denied", Some(ALLOWED)),
    ];
    run("cookieless segments", &[rows, stricter].concat()).await;
}

/// ASP.NET cuts the value of an `AspFilterSessionId` header out of the path; no reading of the
/// path can predict what is left, so a UCWA request carrying one is refused.
#[tokio::test]
async fn path_override_headers_are_refused_on_ucwa() {
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("header on the resource", |t| at(SIMRING, t).header("AspFilterSessionId", "S(abc)"), DENIED, 400, "bad_path", None),
        ("header naming a segment of the path", |t| at(&format!("{SETTINGS}/simultaneous(S(a))RingToContact"), t).header("aspfiltersessionid", "S(a)"), DENIED, 400, "bad_path", None),
        ("header on another UCWA path", |_| post("/ucwa/oauth/v1/applications/192/me/simultaneous(S(x))RingToContact?target=x").header("AspFilterSessionId", "S(x)"), DENIED, 400, "bad_path", None),
        ("header in a batch part", |t| batch_of(&[part(&format!("POST {SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\nAspFilterSessionId: S(a)\r\n\r\n", q(t)))]), DENIED, 400, "bad_path", None),
        // URL-rewriting front ends set these, and some frameworks route on them instead of the
        // request line: a guarded request could hide behind another path.
        ("X-Original-URL naming the resource", |t| post(format!("/ucwa/oauth/v1/applications/192/me?target={}", q(t))).header("X-Original-URL", SIMRING), DENIED, 400, "bad_path", None),
        ("X-Rewrite-URL on the resource", |t| at(SIMRING, t).header("X-Rewrite-URL", "/ucwa/x"), DENIED, 400, "bad_path", None),
        ("X_Original_URL spelt with underscores", |t| post(format!("/ucwa/oauth/v1/applications/192/me?target={}", q(t))).header("X_Original_URL", SIMRING), DENIED, 400, "bad_path", None),
        ("X-Original-URL in a batch part", |t| batch_of(&[part(&format!("POST /ucwa/oauth/v1/applications/192/me?target={} HTTP/1.1\r\nHost: {HOST}\r\nX-Original-URL: {SIMRING}\r\n\r\n", q(t)))]), DENIED, 400, "bad_path", None),
    ];
    run("path-override headers", rows).await;
}

/// `Request[name]` falls back from the query and the form to the cookies: a cookie named like the
/// guarded parameter is another place the pool could find a target, so it is refused.
#[tokio::test]
async fn a_cookie_named_like_the_parameter_is_refused() {
    // ASP.NET splits the Cookie header at `;` only and trims each cookie of Unicode white space
    // (`HttpRequest.FillInCookiesCollection`): a name after `,` is not `target`.
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("cookie beside a query target", |t| at(SIMRING, ALLOWED).header("Cookie", &format!("a=1; target={t}")), DENIED, 400, "duplicate", None),
        ("cookie in another case", |t| json_post(json_target(ALLOWED)).header("Cookie", &format!("TARGET={t}")), DENIED, 400, "duplicate", None),
        ("cookie on a second line", |t| at(SIMRING, ALLOWED).header("Cookie", "a=1").header("Cookie", &format!("target={t}")), DENIED, 400, "duplicate", None),
        ("cookie in a batch part", |t| batch_of(&[part(&format!("POST {SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\nCookie: target={t}\r\n\r\n", q(ALLOWED)))]), DENIED, 400, "duplicate", None),
        ("batch cookie beside a part's target", |t| batch_of(&[part(&ring_line(ALLOWED))]).header("Cookie", &format!("target={t}")), DENIED, 400, "duplicate", None),
        ("name after a no-break space (String.Trim)", |t| json_post(json_target(ALLOWED)).header("Cookie", &format!("a=1;\u{a0}target={t}")), DENIED, 400, "duplicate", None),
        ("name before an ideographic space", |t| json_post(json_target(ALLOWED)).header("Cookie", &format!("a=1; target\u{3000}={t}")), DENIED, 400, "duplicate", None),
        ("other cookies", |t| at(SIMRING, t).header("Cookie", "targets=1; x=target, target=2"), DENIED, 403, "denied", Some(ALLOWED)),
    ];
    run("cookies", rows).await;
}

/// The Batch.js sample sends a batch part's body in a `Data:` header; a `Data:` header on a
/// request of its own is judged the same way, as a JSON body that must agree with the rest.
#[tokio::test]
async fn a_data_header_is_judged_on_any_guarded_request() {
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("Data: alone", |t| post(SIMRING).header("Data", &json_target(t)), DENIED, 403, "denied", Some(ALLOWED)),
        ("Data: beside an allowed query", |t| at(SIMRING, ALLOWED).header("Data", &json_target(t)), DENIED, 400, "conflict", Some(ALLOWED)),
        ("Data: beside an allowed body", |t| json_post(json_target(ALLOWED)).header("data", &json_target(t)), DENIED, 400, "conflict", Some(ALLOWED)),
        ("two Data: lines", |t| at(SIMRING, ALLOWED).header("Data", &json_target(ALLOWED)).header("Data", &json_target(t)), DENIED, 400, "duplicate", None),
        ("Data: that is not JSON", |t| at(SIMRING, ALLOWED).header("Data", &format!("target={t}")), DENIED, 400, "bad_body", None),
    ];
    run("Data: headers", rows).await;
}

/// A batch part's request-target is resolved against the batch's URI: `//host/ucwa/...` is a
/// network-path reference to the guarded resource, however it is spelled.
#[tokio::test]
async fn a_batch_part_that_is_a_network_path_reference_refuses_the_batch() {
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("//host/path", |t| batch_of(&[part(&format!("POST //evil.example{SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 400, "bad_batch", None),
        ("//own host/path", |t| batch_of(&[part(&format!("POST //{HOST}{SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 400, "bad_batch", None),
        ("/\\host/path", |t| batch_of(&[part(&format!("POST /\\evil{SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 400, "bad_batch", None),
        ("//host/path with Data:", |t| batch_of(&[part(&format!("POST //evil{SIMRING} HTTP/1.1\r\nHost: {HOST}\r\nData: {}\r\n\r\n", json_target(t)))]), DENIED, 400, "bad_batch", None),
        ("//host/path after an allowed part", |t| batch_of(&[part(&ring_line(ALLOWED)), part(&format!("POST //evil{SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 400, "bad_batch", None),
    ];
    assert_the_pool_would_act_on_a_denied_target(rows);
    // References whose decoded form starts with two separators, `//ucwa/...` (host `ucwa`), and
    // a GET: refused as SPEC §3 says, although the pool model resolves them elsewhere.
    #[rustfmt::skip]
    let stricter: &[Row] = &[
        ("///path", |t| batch_of(&[part(&format!("POST /{SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 400, "bad_batch", None),
        ("/%2Fhost/path", |t| batch_of(&[part(&format!("POST /%2Fevil{SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 400, "bad_batch", None),
        ("/%5chost/path", |t| batch_of(&[part(&format!("POST /%5cevil{SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 400, "bad_batch", None),
        ("/%252Fhost/path", |t| batch_of(&[part(&format!("POST /%252Fevil{SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 400, "bad_batch", None),
        ("/%u002Fhost/path", |t| batch_of(&[part(&format!("POST /%u002Fevil{SIMRING}?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 400, "bad_batch", None),
        ("//host/path of a GET", |_| batch_of(&[part(&format!("GET //evil.example/ucwa/oauth/v1/applications/192/me HTTP/1.1\r\nHost: {HOST}\r\n\r\n"))]), DENIED, 400, "bad_batch", None),
    ];
    run("network-path parts", &[rows, stricter].concat()).await;
}

/// A default-ignorable code point (soft hyphen, zero-width characters, BOM, variation selectors,
/// tags) in a path that could reach UCWA makes the path unreadable: a linguistic comparison
/// does not see it.
#[tokio::test]
async fn a_ucwa_path_with_a_default_ignorable_code_point_is_refused() {
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("soft hyphen after the resource", |t| at(&format!("{SIMRING}%C2%AD"), t), DENIED, 400, "bad_path", None),
        ("zero-width space inside the resource", |t| at(&format!("{SETTINGS}/simultaneous%E2%80%8BRingToContact"), t), DENIED, 400, "bad_path", None),
        ("zero-width joiner", |t| at(&format!("{SETTINGS}/simultaneousRing%E2%80%8DToContact"), t), DENIED, 400, "bad_path", None),
        ("BOM after the resource", |t| at(&format!("{SIMRING}%EF%BB%BF"), t), DENIED, 400, "bad_path", None),
        ("BOM as %uFEFF", |t| at(&format!("{SIMRING}%uFEFF"), t), DENIED, 400, "bad_path", None),
        ("word joiner as %u2060", |t| at(&format!("{SIMRING}%u2060"), t), DENIED, 400, "bad_path", None),
        ("variation selector", |t| at(&format!("{SIMRING}%EF%B8%8F"), t), DENIED, 400, "bad_path", None),
        ("tag character", |t| at(&format!("{SIMRING}%F3%A0%80%81"), t), DENIED, 400, "bad_path", None),
        ("combining grapheme joiner", |t| at(&format!("{SETTINGS}/simultaneous%CD%8FRingToContact"), t), DENIED, 400, "bad_path", None),
        ("Mongolian vowel separator", |t| at(&format!("{SIMRING}%E1%A0%8E"), t), DENIED, 400, "bad_path", None),
        ("left-to-right mark", |t| at(&format!("{SIMRING}%E2%80%8E"), t), DENIED, 400, "bad_path", None),
        ("double-encoded soft hyphen", |t| at(&format!("{SIMRING}%25C2%25AD"), t), DENIED, 400, "bad_path", None),
        ("raw zero-width space", |t| at(&format!("{SIMRING}\u{200b}"), t), DENIED, 400, "bad_path", None),
        ("soft hyphen in /ucwa", |t| at(&format!("/u%C2%ADcwa{}", &SIMRING[5..]), t), DENIED, 400, "bad_path", None),
        ("soft hyphen on a middle segment", |t| at(&format!("/ucwa/v1%C2%AD{}", &SIMRING[8..]), t), DENIED, 400, "bad_path", None),
        ("soft hyphen in a batch part's path", |t| batch_of(&[part(&format!("POST {SIMRING}%C2%AD?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", q(t)))]), DENIED, 400, "bad_path", None),
        ("soft hyphen in the batch path", |t| batch_of(&[part(&ring_line(t))]).retarget(&format!("{BATCH}%C2%AD")), DENIED, 400, "bad_path", None),
    ];
    run("ignorable code points", rows).await;
}

/// HTTP.sys splits a path only at `/` and `\`: `;` is an ordinary character, so `..;` is a
/// segment that a following `..` removes, where a reader that drops `;params` first would remove
/// two. Which reading `//` gets (one separator, or an empty segment `..` removes) is not in the
/// reference source, so both are judged. A path is also read without its non-ASCII characters: a
/// comparison that gives an unassigned code point no weight would not see it.
#[tokio::test]
async fn a_path_split_as_http_sys_splits_it_is_judged() {
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("`..;` then `..`", |t| at(&format!("/ucwa/oauth/..;/..{}", &SIMRING["/ucwa".len()..]), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("`;` segment then `..`", |t| at(&format!("/ucwa/;/..{}", &SIMRING["/ucwa".len()..]), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("encoded `..;` then `..`", |t| at(&format!("/ucwa/oauth/..%3B/..{}", &SIMRING["/ucwa".len()..]), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("`..;` in a batch part", |t| batch_of(&[part(&format!("POST /ucwa/oauth/..;/..{}?target={} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", &SIMRING["/ucwa".len()..], q(t)))]), DENIED, 403, "denied", Some(ALLOWED)),
    ];
    assert_the_pool_would_act_on_a_denied_target(rows);
    // Readings the reference source does not settle, or that IIS would not take: judging them
    // too can only judge more.
    #[rustfmt::skip]
    let stricter: &[Row] = &[
        ("empty segment then `..`", |t| at(&format!("/ucwa//..{}", &SIMRING["/ucwa".len()..]), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("encoded empty segment then `..`", |t| at(&format!("/ucwa%2F%2F..{}", &SIMRING["/ucwa".len()..]), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("unassigned code point after the resource", |t| at(&format!("{SIMRING}%CD%B8"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("unassigned code point inside the resource", |t| at(&format!("{SETTINGS}/simultaneous%CD%B8RingToContact"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("full-width full stop after the resource", |t| at(&format!("{SIMRING}%uFF0E"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("accented letter in the resource", |t| at(&format!("{SETTINGS}/simult%C3%A1neousRingToContact"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("circled letter in the resource", |t| at(&format!("{SETTINGS}/%E2%93%A2imultaneousRingToContact"), t), DENIED, 403, "denied", Some(ALLOWED)),
        ("accented letter in the batch path", |t| batch_of(&[part(&ring_line(t))]).retarget("/ucwa/oauth/v1/applications/192/b%C3%A0tch"), DENIED, 403, "denied", Some(ALLOWED)),
    ];
    run("path splitting", &[rows, stricter].concat()).await;
}

/// SIP routes on the host: a SIP URI whose user part is a number is judged by the number rules
/// and by the SIP-domain rules, so an allowed number cannot ring at any host.
#[tokio::test]
async fn a_numeric_sip_user_is_judged_by_its_number_and_its_host() {
    fn ring(t: &str) -> Req {
        at(SIMRING, t)
    }
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("user=phone at a foreign host", ring, "sip:+14255550100@evil.example;user=phone", 403, "not_allowed", Some("sip:+14255550100@contoso.com;user=phone")),
        ("phone-like user at a foreign host", ring, "sip:+14255550100@evil.example", 403, "not_allowed", Some("sip:+14255550100@contoso.com")),
        ("separators in the number", ring, "sip:+1-425-555-0100@evil.example", 403, "not_allowed", Some("sip:+1-425-555-0100@lync.contoso.com")),
        ("sips:", ring, "sips:+14255550100@evil.example;user=phone", 403, "not_allowed", Some("sips:+14255550100@contoso.com;user=phone")),
        ("escaped plus", ring, "sip:%2B14255550100@evil.example;user=phone", 403, "not_allowed", Some("sip:%2B14255550100@contoso.com;user=phone")),
        ("upper case", ring, "SIP:+14255550100@EVIL.EXAMPLE;USER=PHONE", 403, "not_allowed", Some("SIP:+14255550100@CONTOSO.COM;USER=PHONE")),
        ("IPv4 host", ring, "sip:+14255550100@192.0.2.1;user=phone", 403, "not_allowed", None),
        ("IPv6 host", ring, "sip:+14255550100@[2001:db8::1]", 403, "not_allowed", None),
        ("look-alike host", ring, "sip:+14255550100@contoso.com.evil.example", 403, "not_allowed", None),
        ("another organisation's domain", ring, "sip:+14255550100@fabrikam.com", 403, "not_allowed", None),
        ("allowed host, denied number", ring, "sip:+19005550100@lync.contoso.com;user=phone", 403, "denied", Some("sip:+14255550100@lync.contoso.com;user=phone")),
        ("in a JSON body", |t| json_post(json_target(t)), "sip:+14255550100@evil.example;user=phone", 403, "not_allowed", Some("sip:+14255550100@contoso.com;user=phone")),
        ("in a form body", |t| form_post(format!("target={}", q(t))), "sip:+14255550100@evil.example", 403, "not_allowed", Some("sip:+14255550100@contoso.com")),
        ("in a batch part", |t| batch_of(&[part(&ring_line(t))]), "sip:+14255550100@evil.example;user=phone", 403, "not_allowed", Some("sip:+14255550100@contoso.com;user=phone")),
    ];
    assert_the_pool_would_act_on_a_denied_target(rows);
    run("numeric SIP users", rows).await;
}

/// A request's bytes over HTTP/1.1 on TLS.
fn wire(method: &str, path: &str, host: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// On TLS, the server name a client asked for binds the connection to that name's organisation:
/// a Host of another organisation, or of none, is misdirected (421), so one organisation's
/// clients cannot borrow another's lists. Over HTTP/1.1 and HTTP/2 alike.
#[tokio::test]
async fn a_host_of_another_organisation_than_the_tls_server_name_is_misdirected() {
    let h = support::start_with(Options {
        tls: true,
        policy: POLICY.replace("default_organisation = \"contoso\"\n", ""),
        ..Options::default()
    })
    .await;
    let certs = h.certs().unwrap();
    let addr = h.server.addrs()[0];
    let contoso_number = "tel:+14255550100";
    let fabrikam_number = "tel:+442071234567";
    let ring = |t: &str| format!("{SIMRING}?target={}", q(t));
    // (SNI, Host, target, status)
    let cases = [
        ("lync.fabrikam.com", HOST, contoso_number, 421),
        (support::HOST, "lync.fabrikam.com", fabrikam_number, 421),
        (support::HOST, "unknown.example", contoso_number, 421),
        ("x.contoso.com", "lync.fabrikam.com", fabrikam_number, 421),
        (
            support::HOST,
            "LYNCWEB.CONTOSO.COM:443",
            contoso_number,
            204,
        ),
        ("x.contoso.com", HOST, contoso_number, 204),
        (
            "lync.fabrikam.com",
            "lync.fabrikam.com",
            fabrikam_number,
            204,
        ),
        ("localhost", "lync.fabrikam.com", fabrikam_number, 204),
    ];
    for (sni, host, target, status) in cases {
        let before = h.received_counts();
        let reply = client::tls_raw_reply(addr, certs, sni, &wire("POST", &ring(target), host, ""))
            .await
            .unwrap();
        assert_eq!(
            reply.status,
            status,
            "HTTP/1.1 SNI {sni} Host {host}: {}",
            reply.text()
        );
        let h2 = client::h2_reply(
            addr,
            Some((certs, sni)),
            "POST",
            host,
            &ring(target),
            &[],
            b"",
        )
        .await
        .unwrap();
        assert_eq!(
            h2.status,
            status,
            "HTTP/2 SNI {sni} :authority {host}: {}",
            h2.text()
        );
        if status == 421 {
            assert_refused(&reply, 421, "misdirected");
            assert_refused(&h2, 421, "misdirected");
            assert!(
                h.received_since(&before).is_empty(),
                "SNI {sni} Host {host}"
            );
            let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(v["code"], "MisdirectedRequest");
        }
    }
    // A batch is judged by the outer Host, so the same rule holds for its parts.
    let batch = batch_of(&[part(&ring_line(fabrikam_number))]);
    let body = String::from_utf8(batch.body.clone()).unwrap();
    let content_type = &batch.headers[0].1;
    let request = format!(
        "POST {BATCH} HTTP/1.1\r\nHost: lync.fabrikam.com\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let reply = client::tls_raw_reply(addr, certs, HOST, request.as_bytes())
        .await
        .unwrap();
    assert_refused(&reply, 421, "misdirected");
    // Pass-through traffic is not judged, and goes through whatever the names.
    let me = client::tls_raw_reply(
        addr,
        certs,
        HOST,
        &wire(
            "GET",
            "/ucwa/oauth/v1/applications/192/me",
            "lync.fabrikam.com",
            "",
        ),
    )
    .await
    .unwrap();
    assert_eq!(me.status, 200, "{}", me.text());
    h.assert_pool_acted_only_on_allowed();
}

/// UCWA clients read the XML error's code, subcode and message as child elements of `reason`
/// (SPEC §6), as the pool writes its own errors.
#[tokio::test]
async fn xml_refusals_carry_code_subcode_and_message_as_child_elements() {
    let h = support::start().await;
    let accept = [("accept", "application/vnd.microsoft.com.ucwa+xml")];
    let cases = [
        (
            format!("{SIMRING}?target={}", q(DENIED)),
            403,
            "Forbidden",
            Some("NotAllowed"),
            "denied",
            false,
        ),
        (
            format!("{SIMRING}?target=x"),
            400,
            "BadRequest",
            Some("ParameterValidationFailure"),
            "malformed",
            true,
        ),
        (
            format!("{SIMRING}%C2%AD?target=x"),
            400,
            "BadRequest",
            Some("DeserializationFailure"),
            "bad_path",
            false,
        ),
    ];
    for (path, status, code, subcode, reason, names_target) in cases {
        let reply = h.client.request("POST", &path, HOST, &accept, b"").await;
        assert_eq!(reply.status, status, "{}", reply.text());
        assert!(reply
            .header("content-type")
            .unwrap()
            .starts_with("application/xml"));
        let text = reply.text();
        let id = reply.header("x-request-id").unwrap();
        let mut want = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><reason xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"><code>{code}</code>"#
        );
        if let Some(sub) = subcode {
            want += &format!("<subcode>{sub}</subcode>");
        }
        assert!(text.starts_with(&want), "{text}");
        assert!(text.contains("<message>"), "{text}");
        assert!(
            text.contains(&format!(
                r#"<debugInfo><property name="reason">{reason}</property><property name="requestId">{id}</property></debugInfo>"#
            )),
            "{text}"
        );
        if names_target {
            assert!(
                text.ends_with(r#"<parameters><property name="target">invalid</property></parameters></reason>"#),
                "{text}"
            );
        } else {
            assert!(text.ends_with("<parameters /></reason>"), "{text}");
        }
    }
}

/// A path full of cookieless groups costs a bounded amount of work (fresh-eyes round 3, H1:
/// nested groups took seconds of CPU, and one group repeated in a batch part took gigabytes):
/// past the limits it is unreadable, `bad_path` where it could reach UCWA and forwarded
/// elsewhere, and a plain request on the same server is still answered.
#[tokio::test]
async fn hostile_cookieless_paths_are_answered_at_once() {
    let h = support::start().await;
    let addr = h.server.addrs()[0];
    let nested = format!("/x/{}x{})/", "(S(".repeat(15_000), ")".repeat(15_000));
    let reply = client::raw_reply(addr, &wire("GET", &nested, HOST, ""))
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        404,
        "forwarded, the pool's answer: {}",
        reply.text()
    );
    // 63 KB: hyper answers a longer request-target 414 itself.
    let repeated = format!("/ucwa/{}x", "(S(x))/".repeat(9_000));
    let reply = client::raw_reply(addr, &wire("GET", &repeated, HOST, ""))
        .await
        .unwrap();
    assert_refused(&reply, 400, "bad_path");
    let longer = format!("/ucwa/{}x", "(S(x))/".repeat(16_000));
    let batch = batch_of(&[part(&format!(
        "GET {longer} HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    ))]);
    let reply = client::raw_reply(addr, &batch.to_bytes()).await.unwrap();
    assert_refused(&reply, 400, "bad_path");
    let me = client::raw_reply(
        addr,
        &wire("GET", "/ucwa/oauth/v1/applications/192/me", HOST, ""),
    )
    .await
    .unwrap();
    assert_eq!(me.status, 200);
}
