use std::fmt;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use serde::{Serialize, Serializer};

use super::*;

#[test]
fn client_text_is_escaped_and_cut() {
    assert_eq!(escaped("/ucwa/v1", Cut::Bytes(512)), "/ucwa/v1");
    assert_eq!(
        escaped("a\nb\u{7f}c\u{85}", Cut::Bytes(512)),
        "a\\u{a}b\\u{7f}c\\u{85}"
    );
    assert_eq!(escaped("x\u{2028}", Cut::Bytes(512)), "x\\u{2028}");
    // The bidirectional controls: a right-to-left override shows a reversed target as it is
    // not (`tel:+11900`), so it is shown as the escape it is.
    assert_eq!(
        escaped("tel:+1\u{202e}0091\u{202c}", Cut::Chars(128)),
        "tel:+1\\u{202e}0091\\u{202c}"
    );
    for c in [
        '\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{2066}', '\u{2069}',
    ] {
        assert_eq!(
            escaped(&format!("a{c}b"), Cut::Bytes(512)),
            format!("a\\u{{{:x}}}b", c as u32)
        );
    }
    // The cut is of the text as written: escapes count at their length, and none is split.
    let overrides = "\u{202e}".repeat(128);
    let cut = escaped(&overrides, Cut::Chars(128));
    assert_eq!(
        cut,
        "\\u{202e}".repeat(16),
        "128 characters, 16 whole escapes"
    );
    let separators = format!("/ucwa/{}", "\u{2028}".repeat(80));
    let cut = escaped(&separators, Cut::Bytes(512));
    assert_eq!(
        cut,
        format!("/ucwa/{}", "\\u{2028}".repeat(63)),
        "506 bytes, not 514"
    );
    let mixed = format!("{}\u{7f}", "é".repeat(255));
    assert_eq!(
        escaped(&mixed, Cut::Bytes(512)),
        "\\u{e9}".repeat(85),
        "510 bytes: the next escape does not fit"
    );
    // The other invisible ones too (fresh eyes, round 31): zero-width space, BOM, soft hyphen,
    // Mongolian vowel separator, word joiner; and (round 32) the format characters that are not
    // default-ignorable (Arabic number sign, interlinear annotation, Egyptian format controls),
    // blank-looking ones (braille blank, no-break and ideographic spaces), and look-alikes
    // (fullwidth digits, Cyrillic letters): every character beyond ASCII.
    for c in [
        '\u{200b}',
        '\u{feff}',
        '\u{ad}',
        '\u{180e}',
        '\u{2060}',
        '\u{600}',
        '\u{6dd}',
        '\u{70f}',
        '\u{890}',
        '\u{8e2}',
        '\u{110bd}',
        '\u{fff9}',
        '\u{13430}',
        '\u{2800}',
        '\u{a0}',
        '\u{3000}',
        '\u{ff11}',
        '\u{430}',
        'é',
        '\u{5d1}',
    ] {
        assert_eq!(
            escaped(&format!("tel:+1{c}900"), Cut::Chars(128)),
            format!("tel:+1\\u{{{:x}}}900", c as u32)
        );
    }
    // A client's own backslash is doubled, so its text cannot pass for an escape.
    assert_eq!(
        escaped("tel:+1425555\\u{202e}0100", Cut::Chars(128)),
        "tel:+1425555\\\\u{202e}0100"
    );
    assert_eq!(
        escaped("a\\b", Cut::Bytes(2)),
        "a",
        "a doubled backslash is not split"
    );
    let long = "é".repeat(300);
    let cut = escaped(&long, Cut::Bytes(512));
    assert_eq!(cut.len(), 510);
    let longer = format!("a{long}");
    let cut = escaped(&longer, Cut::Bytes(512));
    assert_eq!(cut.len(), 511, "cut after a whole escape");
    assert_eq!(escaped(&long, Cut::Chars(128)).chars().count(), 126);
    assert_eq!(escaped(&"x".repeat(300), Cut::Chars(128)).len(), 128);
    assert_eq!(escaped("short", Cut::Chars(128)), "short");
}

// The lines as serde_json wrote them before `json.rs`: the records' old
// `#[derive(Serialize)]` definitions and their `serialize_with` helpers, unchanged but for
// borrowing the record (whose time, now a `SystemTime`, humantime formats as before). The
// hand-written lines must stay byte-identical to these.

#[derive(Serialize)]
struct SerdeDecision<'a> {
    v: u8,
    kind: &'static str,
    #[serde(serialize_with = "as_str")]
    ts: humantime::Rfc3339Timestamp,
    id: &'a str,
    client_request_id: Option<&'a str>,
    client: &'a str,
    #[serde(serialize_with = "option_name")]
    sni: Option<&'a str>,
    #[serde(serialize_with = "name")]
    host: &'a str,
    #[serde(serialize_with = "method")]
    method: &'a str,
    #[serde(serialize_with = "path")]
    path: &'a str,
    resource: &'a str,
    organisation: Option<&'a str>,
    application: Option<&'a str>,
    user: Option<&'a str>,
    token_fingerprint: Option<&'a str>,
    #[serde(serialize_with = "each_as_str")]
    targets: &'a [Target],
    #[serde(serialize_with = "raw_target")]
    raw_target: Option<&'a str>,
    decision: Decided,
    reason: &'static str,
    #[serde(serialize_with = "option_as_str")]
    rule: Option<Rule<'a>>,
    batch: Option<SerdeBatchPart<'a>>,
}

#[derive(Serialize)]
struct SerdeBatchPart<'a> {
    id: &'a str,
    part: Option<usize>,
    parts: Option<usize>,
}

#[derive(Serialize)]
struct SerdeOutcome<'a> {
    v: u8,
    kind: &'static str,
    #[serde(serialize_with = "as_str")]
    ts: humantime::Rfc3339Timestamp,
    id: &'a str,
    status: Option<u16>,
    source: Source,
    duration_ms: u64,
}

#[derive(Serialize)]
struct SerdeAccess<'a> {
    v: u8,
    kind: &'static str,
    #[serde(serialize_with = "as_str")]
    ts: humantime::Rfc3339Timestamp,
    id: &'a str,
    client: &'a str,
    #[serde(serialize_with = "name")]
    host: &'a str,
    #[serde(serialize_with = "method")]
    method: &'a str,
    #[serde(serialize_with = "path")]
    path: &'a str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: u64,
    member: Option<&'a str>,
    route: &'static str,
}

fn serde_decision(d: &Decision<'_>) -> String {
    serde_line(&SerdeDecision {
        v: d.v,
        kind: d.kind,
        ts: humantime::format_rfc3339_millis(d.ts),
        id: d.id,
        client_request_id: d.client_request_id,
        client: d.client,
        sni: d.sni,
        host: d.host,
        method: d.method,
        path: d.path,
        resource: d.resource,
        organisation: d.organisation,
        application: d.application,
        user: d.user,
        token_fingerprint: d.token_fingerprint,
        targets: d.targets,
        raw_target: d.raw_target,
        decision: d.decision,
        reason: d.reason,
        rule: d.rule,
        batch: d.batch.as_ref().map(|b| SerdeBatchPart {
            id: b.id,
            part: b.part,
            parts: b.parts,
        }),
    })
}

fn serde_outcome(o: &Outcome<'_>) -> String {
    serde_line(&SerdeOutcome {
        v: o.v,
        kind: o.kind,
        ts: humantime::format_rfc3339_millis(o.ts),
        id: o.id,
        status: o.status,
        source: o.source,
        duration_ms: o.duration_ms,
    })
}

fn serde_access(a: &Access<'_>) -> String {
    serde_line(&SerdeAccess {
        v: a.v,
        kind: a.kind,
        ts: humantime::format_rfc3339_millis(a.ts),
        id: a.id,
        client: a.client,
        host: a.host,
        method: a.method,
        path: a.path,
        status: a.status,
        bytes_in: a.bytes_in,
        bytes_out: a.bytes_out,
        duration_ms: a.duration_ms,
        member: a.member,
        route: a.route,
    })
}

/// The old `audit::line`'s text.
fn serde_line(record: &impl Serialize) -> String {
    let mut text = serde_json::to_string(record).unwrap();
    text.push('\n');
    text
}

/// A value serialised as the JSON string of its `Display` form.
struct AsStr<'v, T>(&'v T);

impl<T: fmt::Display> Serialize for AsStr<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

fn each_as_str<T: fmt::Display, S: Serializer>(values: &&[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(AsStr))
}

fn option_as_str<T: fmt::Display, S: Serializer>(
    value: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&AsStr(v)),
        None => s.serialize_none(),
    }
}

fn path<S: Serializer>(value: &&str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escaped(value, Cut::Bytes(PATH_BYTES)))
}

fn name<S: Serializer>(value: &&str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escaped(value, Cut::Bytes(NAME_BYTES)))
}

fn option_name<S: Serializer>(value: &Option<&str>, s: S) -> Result<S::Ok, S::Error> {
    option_escaped(value, Cut::Bytes(NAME_BYTES), s)
}

fn method<S: Serializer>(value: &&str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escaped(value, Cut::Bytes(METHOD_BYTES)))
}

fn raw_target<S: Serializer>(value: &Option<&str>, s: S) -> Result<S::Ok, S::Error> {
    option_escaped(value, Cut::Chars(RAW_TARGET_CHARS), s)
}

fn option_escaped<S: Serializer>(value: &Option<&str>, cut: Cut, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&*escaped(v, cut)),
        None => s.serialize_none(),
    }
}

/// Text a client could send, or a configuration hold: quotes, backslashes, every control
/// (C0, DEL, C1), the line separators, multi-byte UTF-8, and lengths past every cut.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9/._:+@-]{0,40}",
        "[\"\\\\\\x00-\\x1f\\x7f-\\u{a0}\\u{2028}\\u{2029}aZ0é€😀/ %{}]{0,40}",
        any::<String>(),
        "[a\"\\\\\\x01\\né€😀]{100,700}",
    ]
}

fn some_of(strategy: impl Strategy<Value = String>) -> impl Strategy<Value = Option<String>> {
    proptest::option::of(strategy)
}

/// A rule's scope, list (an index into [`LISTS`]), entry, and second list and entry.
type RuleTexts = (String, usize, String, Option<(usize, String)>);

const LISTS: [&str; 4] = [
    "allow_numbers",
    "deny_numbers",
    "allow_domains",
    "deny_uris",
];

/// A decision's text, owned, for a [`Decision`] to borrow.
#[derive(Debug, Clone)]
struct Texts {
    ts_ms: u64,
    id: String,
    client_request_id: Option<String>,
    client: String,
    sni: Option<String>,
    host: String,
    method: String,
    path: String,
    organisation: Option<String>,
    application: Option<String>,
    user: Option<String>,
    token_fingerprint: Option<String>,
    targets: Vec<Target>,
    raw_target: Option<String>,
    decision: Decided,
    rule: Option<RuleTexts>,
    batch: Option<(String, Option<usize>, Option<usize>)>,
    numbers: (u16, u64, u64, u64),
}

fn targets() -> impl Strategy<Value = Vec<Target>> {
    let one = prop_oneof![
        Just("tel:+14255550100".to_owned()),
        Just("sip:alice@contoso.com".to_owned()),
        Just("sips:bob@[2001:db8::1]".to_owned()),
        Just("sip:+14255550100@10.0.0.1;user=phone".to_owned()),
        "sip:[a-z0-9.!~*'()&=+$,;?/%-]{1,12}@[a-z]{1,8}\\.com",
        "tel:\\+[0-9]{1,15}",
    ];
    proptest::collection::vec(one, 0..4).prop_map(|raws| {
        raws.iter()
            .filter_map(|raw| Target::parse(raw, 256).ok())
            .collect()
    })
}

fn texts() -> impl Strategy<Value = Texts> {
    let decided = prop_oneof![
        Just(Decided::Allow),
        Just(Decided::Deny),
        Just(Decided::NotSent),
        Just(Decided::ShadowDeny),
    ];
    let rule = proptest::option::of((
        hostile(),
        0..LISTS.len(),
        hostile(),
        proptest::option::of((0..LISTS.len(), hostile())),
    ));
    let count = proptest::option::of(0..usize::MAX);
    let batch = proptest::option::of((hostile(), count.clone(), count));
    (
        (
            any::<u64>().prop_map(|ms| ms % 253_402_300_799_000),
            hostile(),
            some_of(hostile()),
            hostile(),
            some_of(hostile()),
            hostile(),
            hostile(),
            hostile(),
        ),
        (
            some_of(hostile()),
            some_of(hostile()),
            some_of(hostile()),
            some_of(hostile()),
            targets(),
            some_of(hostile()),
            decided,
            rule,
            batch,
            (any::<u16>(), any::<u64>(), any::<u64>(), any::<u64>()),
        ),
    )
        .prop_map(
            |(
                (ts_ms, id, client_request_id, client, sni, host, method, path),
                (
                    organisation,
                    application,
                    user,
                    token_fingerprint,
                    targets,
                    raw_target,
                    decision,
                    rule,
                    batch,
                    numbers,
                ),
            )| Texts {
                ts_ms,
                id,
                client_request_id,
                client,
                sni,
                host,
                method,
                path,
                organisation,
                application,
                user,
                token_fingerprint,
                targets,
                raw_target,
                decision,
                rule,
                batch,
                numbers,
            },
        )
}

fn ts(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

impl Texts {
    fn decision(&self) -> Decision<'_> {
        Decision {
            v: VERSION,
            kind: "decision",
            ts: ts(self.ts_ms),
            id: &self.id,
            client_request_id: self.client_request_id.as_deref(),
            client: &self.client,
            sni: self.sni.as_deref(),
            host: &self.host,
            method: &self.method,
            path: &self.path,
            resource: &self.method,
            organisation: self.organisation.as_deref(),
            application: self.application.as_deref(),
            user: self.user.as_deref(),
            token_fingerprint: self.token_fingerprint.as_deref(),
            targets: &self.targets,
            raw_target: self.raw_target.as_deref(),
            decision: self.decision,
            reason: "malformed",
            rule: self.rule.as_ref().map(|(scope, list, entry, and)| Rule {
                scope,
                list: LISTS[*list],
                entry,
                and: and
                    .as_ref()
                    .map(|(list, entry)| (LISTS[*list], entry.as_str())),
            }),
            batch: self.batch.as_ref().map(|(id, part, parts)| BatchPart {
                id,
                part: *part,
                parts: *parts,
            }),
        }
    }

    fn outcome(&self) -> Outcome<'_> {
        let (status, _, _, duration_ms) = self.numbers;
        Outcome {
            v: VERSION,
            kind: "outcome",
            ts: ts(self.ts_ms),
            id: &self.id,
            status: self.client_request_id.as_ref().map(|_| status),
            source: match status % 3 {
                0 => Source::Pool,
                1 => Source::Ringfence,
                _ => Source::ClientGone,
            },
            duration_ms,
        }
    }

    fn access(&self) -> Access<'_> {
        let (status, bytes_in, bytes_out, duration_ms) = self.numbers;
        Access {
            v: VERSION,
            kind: "access",
            ts: ts(self.ts_ms),
            id: &self.id,
            client: &self.client,
            host: &self.host,
            method: &self.method,
            path: &self.path,
            status,
            bytes_in,
            bytes_out,
            duration_ms,
            member: self.user.as_deref(),
            route: if status % 2 == 0 {
                "guarded"
            } else {
                "passthrough"
            },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn lines_are_what_serde_wrote(texts in texts()) {
        let decision = texts.decision();
        prop_assert_eq!(decision.line(), serde_decision(&decision));
        let outcome = texts.outcome();
        prop_assert_eq!(outcome.line(), serde_outcome(&outcome));
        let access = texts.access();
        prop_assert_eq!(access.line(), serde_access(&access));
    }
}

proptest! {
    #[test]
    fn times_are_what_humantime_wrote(secs in 0..253_402_300_800u64, nanos in 0..1_000_000_000u32) {
        let time = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        let ours = json::rfc3339_millis(time).unwrap();
        prop_assert_eq!(
            std::str::from_utf8(&ours).unwrap(),
            humantime::format_rfc3339_millis(time).to_string()
        );
    }
}

#[test]
fn times_at_the_edges() {
    for secs in [
        0,
        59,
        86_399,
        86_400,
        951_782_400,
        951_868_799,
        4_107_542_400,
        253_402_300_799,
    ] {
        let time = SystemTime::UNIX_EPOCH + Duration::new(secs, 999_999_999);
        let ours = json::rfc3339_millis(time).unwrap();
        assert_eq!(
            std::str::from_utf8(&ours).unwrap(),
            humantime::format_rfc3339_millis(time).to_string()
        );
    }
    assert_eq!(
        json::rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
        None
    );
}

/// A decision's or an outcome's line is sent to syslog with the record's own time, not a
/// second reading of the clock.
#[test]
fn a_records_line_carries_the_records_time() {
    let texts = texts_of("abc");
    let mut decision = texts.decision();
    decision.ts = SystemTime::UNIX_EPOCH + Duration::from_millis(1_234_567);
    assert_eq!(
        line(&decision, "decision", Severity::Info).made(),
        decision.ts
    );
    let mut outcome = texts.outcome();
    outcome.ts = SystemTime::UNIX_EPOCH + Duration::from_millis(7_654_321);
    assert_eq!(line(&outcome, "outcome", Severity::Info).made(), outcome.ts);
}

/// The text of a second is kept for the next line: the milliseconds change within it, and the
/// next (or an earlier) second is written anew.
#[test]
fn times_in_turn_within_and_across_seconds() {
    for (secs, nanos) in [
        (951_868_799, 1_000_000),
        (951_868_799, 998_000_000),
        (951_868_800, 0),
        (951_868_799, 5_000_000),
        (59, 999_999_999),
        (59, 0),
        (60, 123_000_000),
    ] {
        let time = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        assert_eq!(
            std::str::from_utf8(&json::rfc3339_millis(time).unwrap()).unwrap(),
            humantime::format_rfc3339_millis(time).to_string()
        );
    }
}

/// Every string escape serde_json writes, one byte and character at a time.
#[test]
fn every_character_is_escaped_as_serde_json_does() {
    let mut texts = texts_of("x");
    for c in (0..=0x10ffff)
        .filter_map(char::from_u32)
        .step_by(7)
        .chain('\0'..'\u{100}')
    {
        texts.user = Some(format!("a{c}b{c}"));
        let decision = texts.decision();
        assert_eq!(decision.line(), serde_decision(&decision), "{c:?}");
    }
}

fn texts_of(s: &str) -> Texts {
    Texts {
        ts_ms: 1_796_206_502_114,
        id: "8c1f0e5a9d2b47c3000001a2".into(),
        client_request_id: None,
        client: "203.0.113.7".into(),
        sni: Some("lyncweb.contoso.com".into()),
        host: "lyncweb.contoso.com".into(),
        method: "POST".into(),
        path: format!("/ucwa/oauth/v1/applications/103/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact{s}"),
        organisation: Some("contoso".into()),
        application: Some("103".into()),
        user: Some("sip:jane@contoso.com".into()),
        token_fingerprint: Some("3f9a0c1d5e7b2a40".into()),
        targets: vec![Target::parse("tel:+14255550100", 256).unwrap()],
        raw_target: None,
        decision: Decided::Allow,
        rule: Some(("contoso".into(), 0, "+1425555".into(), None)),
        batch: None,
        numbers: (204, 0, 412, 17),
    }
}

/// docs/audit.md's first example, and its line sized right the first time.
#[test]
fn the_documented_line() {
    let texts = texts_of("");
    let decision = texts.decision();
    let line = decision.line();
    assert_eq!(
        line,
        concat!(
            r#"{"v":1,"kind":"decision","ts":"2026-12-02T10:15:02.114Z","#,
            r#""id":"8c1f0e5a9d2b47c3000001a2","client_request_id":null,"#,
            r#""client":"203.0.113.7","sni":"lyncweb.contoso.com","host":"lyncweb.contoso.com","#,
            r#""method":"POST","path":"/ucwa/oauth/v1/applications/103/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact","#,
            r#""resource":"POST","organisation":"contoso","application":"103","#,
            r#""user":"sip:jane@contoso.com","token_fingerprint":"3f9a0c1d5e7b2a40","#,
            r#""targets":["tel:+14255550100"],"raw_target":null,"decision":"allow","#,
            r#""reason":"malformed","rule":"contoso.allow_numbers +1425555","batch":null}"#,
            "\n"
        )
    );
    assert!(
        line.len() <= decision.capacity(),
        "{} > {}",
        line.len(),
        decision.capacity()
    );
    let mut batched = texts_of("");
    batched.batch = Some((batched.id.clone(), Some(2), Some(3)));
    batched.client_request_id = Some("app-7781".into());
    let decision = batched.decision();
    assert!(decision.line().len() <= decision.capacity());
    let access = texts.access();
    assert!(access.line().len() <= access.capacity());
}

/// Reads escaped text back: `\\` is a backslash, `\u{..}` the character it names, anything
/// else itself; `None` where the text is not such a sequence (an escape split, or a backslash
/// that begins none).
fn unescape(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c != '\\' {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        } else if let Some(after) = rest.strip_prefix("\\\\") {
            out.push('\\');
            rest = after;
        } else {
            let body = rest.strip_prefix("\\u{")?;
            let end = body.find('}')?;
            out.push(char::from_u32(u32::from_str_radix(&body[..end], 16).ok()?)?);
            rest = &body[end + 1..];
        }
    }
    Some(out)
}

proptest! {
    /// Escaped and cut text is within its limit as written, is printable ASCII, reads back as
    /// a prefix of the text (so no two texts are written alike: a client's own `\u{202e}` is
    /// not U+202E), and is the longest such prefix that fits: the cut splits no escape.
    #[test]
    fn escaped_text_is_within_its_limit(
        text in "[a-z/\\\\{}u\u{7f}\u{85}\u{2028}\u{202e}\u{2066}\u{ff11}\u{430}é€😀\n]{0,200}",
        limit in 0usize..300,
    ) {
        let whole = escaped(&text, Cut::Bytes(usize::MAX));
        prop_assert_eq!(unescape(&whole), Some(text.clone()));
        for cut in [escaped(&text, Cut::Bytes(limit)), escaped(&text, Cut::Chars(limit))] {
            prop_assert!(cut.len() <= limit);
            prop_assert!(cut.bytes().all(|b| (0x20..0x7f).contains(&b)), "{}", cut);
            prop_assert!(whole.starts_with(&*cut));
            let read = unescape(&cut);
            prop_assert!(read.as_deref().is_some_and(|r| text.starts_with(r)), "{}", cut);
            // The longest: the next character's unit would not have fitted.
            let next = text[read.unwrap().len()..].chars().next();
            if let Some(next) = next {
                let unit = escaped(&next.to_string(), Cut::Bytes(usize::MAX)).len();
                prop_assert!(cut.len() + unit > limit);
            }
        }
    }
}
