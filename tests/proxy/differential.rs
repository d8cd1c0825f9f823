//! The differential test (issue #10): a generated stream of mutated requests, each judged by
//! ringfence and read by the simulator's model of the pool (`ringfence::sim::model`, written
//! apart from ringfence's parser from IIS's and System.Web's code). Whenever ringfence lets a
//! request through, the pool model must find in it only targets the policy allows, and must be
//! able to read it at all.
//!
//! Mutations come from every class of issue #10 and #4: path spellings (escapes, cookieless
//! segments raw, encoded and spliced into a name, default-ignorable code points, dot segments,
//! backslashes), query spellings (key case and escapes, a key in EBCDIC, pairs that are not
//! UTF-8, `+`), headers that change the pool's reading (hidden charsets, `x-up-devcap-post-charset`,
//! `AspFilterSessionId`, method overrides, a second Content-Type, a cookie named `target`, a `Data:`
//! header), and
//! batch parts (network-path references, the same path spellings, `Data:`).
//!
//! Keys and values are spelled with escapes too (JSON `\u`, XML character references, form
//! percent-escapes). The in-process test runs the judge itself on many cases; the socket test
//! sends fewer through the real server, where the members' own reading is checked, and no member
//! may receive the denied number in any spelling.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

use ringfence::config::Config;
use ringfence::judge::{self, Admission};
use ringfence::sim::encoding::Encoding;
use ringfence::sim::model::{self, Resources};
use ringfence::upstream::UpstreamBody;

use crate::hostile::{
    assert_never_received, batch_of, embedded, form_post, part, post, q, q_all, ucwa_xml, Req,
    ALLOWED, BATCH, DENIED, DENIED_DIGITS, HOST,
};
use crate::support::{self, client, POLICY, TIMEOUT};

/// Targets: allowed, denied by number, by number inside a SIP URI, by host, by organisation.
const TARGETS: &[&str] = &[
    ALLOWED,
    DENIED,
    "tel:+1-900-555-0100",
    "sip:+19005550100@contoso.com;user=phone",
    "sip:+14255550100@evil.example;user=phone",
    "sip:+14255550100@contoso.com",
    "sip:jane@contoso.com",
    "sip:jane@evil.example",
    "tel:+14255559999",
];

const RESOURCE_FOLDER: &str =
    "/ucwa/oauth/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings";
const RESOURCE: &str = "simultaneousRingToContact";

/// Code points a linguistic comparison skips, as UTF-8 escapes or `%u` escapes.
const IGNORABLES: &[&str] = &[
    "%C2%AD",
    "%E2%80%8B",
    "%EF%BB%BF",
    "%uFEFF",
    "%u200D",
    "%E2%81%A0",
];

/// One edit of the path.
#[derive(Debug, Clone)]
enum PathEdit {
    /// A cookieless segment after segment `at` (counted from the end), raw or encoded.
    Cookieless {
        at: usize,
        encoded: bool,
    },
    /// `simultaneous/(S(a))RingToContact/(S(a))/..`: a group cut out of the name by
    /// RemoveAppPathModifier before the 2023 update.
    Splice,
    /// Letter `at` of the resource escaped: `%XX`, `%uNNNN` or `%25XX`.
    Escape {
        at: usize,
        kind: u8,
    },
    /// An ignorable code point before letter `at` of the resource, or after it.
    Ignorable {
        at: usize,
        which: usize,
    },
    DotDot,
    /// A detour into the folder that readers split differently: `/..;/..` (HTTP.sys keeps `..;`
    /// as a segment), `/;/..` or `//..` (an empty segment), after segment `at`.
    Detour {
        at: usize,
        kind: u8,
    },
    Semicolon,
    TrailingDot,
    Backslash {
        at: usize,
    },
    TrailingSlash,
}

fn path_edit() -> impl Strategy<Value = PathEdit> {
    prop_oneof![
        (0usize..4, any::<bool>()).prop_map(|(at, encoded)| PathEdit::Cookieless { at, encoded }),
        Just(PathEdit::Splice),
        (0usize..25, 0u8..3).prop_map(|(at, kind)| PathEdit::Escape { at, kind }),
        (0usize..26, 0..IGNORABLES.len()).prop_map(|(at, which)| PathEdit::Ignorable { at, which }),
        Just(PathEdit::DotDot),
        (0usize..6, 0u8..3).prop_map(|(at, kind)| PathEdit::Detour { at, kind }),
        Just(PathEdit::Semicolon),
        Just(PathEdit::TrailingDot),
        (0usize..6).prop_map(|at| PathEdit::Backslash { at }),
        Just(PathEdit::TrailingSlash),
    ]
}

/// The guarded path with its edits applied, in order.
fn edited_path(edits: &[PathEdit]) -> String {
    let mut name = RESOURCE.to_string();
    let mut folder = RESOURCE_FOLDER.to_string();
    let mut tail = String::new();
    for edit in edits {
        match edit {
            PathEdit::Escape { at, kind } => {
                let letters: Vec<char> = name.chars().collect();
                let i = letters
                    .iter()
                    .position(char::is_ascii_alphabetic)
                    .map_or(0, |first| {
                        let alpha: Vec<usize> = (0..letters.len())
                            .filter(|&j| letters[j].is_ascii_alphabetic())
                            .collect();
                        alpha.get(at % alpha.len().max(1)).copied().unwrap_or(first)
                    });
                if let Some(c) = letters.get(i).filter(|c| c.is_ascii_alphabetic()) {
                    let escaped = match kind {
                        0 => format!("%{:02X}", u32::from(*c)),
                        1 => format!("%u{:04X}", u32::from(*c)),
                        _ => format!("%25{:02X}", u32::from(*c)),
                    };
                    let mut out: String = letters[..i].iter().collect();
                    out += &escaped;
                    out.extend(&letters[i + 1..]);
                    name = out;
                }
            }
            PathEdit::Ignorable { at, which } => {
                let cut = (*at).min(name.len());
                let cut = (0..=cut)
                    .rev()
                    .find(|&c| {
                        name.is_char_boundary(c)
                            && !name[..c].ends_with('%')
                            && !name[..c].ends_with("%u")
                    })
                    .unwrap_or(0);
                name.insert_str(cut, IGNORABLES[*which]);
            }
            PathEdit::Splice => {
                if name == RESOURCE {
                    name = "simultaneous/(S(a))RingToContact".into();
                    tail += "/(S(a))/..";
                }
            }
            PathEdit::Cookieless { at, encoded } => {
                let segment = if *encoded {
                    "%28S%28x1%29%29"
                } else {
                    "(S(x1))"
                };
                match at {
                    0 => tail = format!("/{segment}/{tail}"),
                    1 => tail += &format!("/{segment}"),
                    2 => folder += &format!("/{segment}"),
                    _ => folder = folder.replacen("/ucwa/", &format!("/ucwa/{segment}/"), 1),
                }
            }
            PathEdit::DotDot => tail += "/x/..",
            PathEdit::Detour { at, kind } => {
                let segments: Vec<&str> = folder.split('/').collect();
                let at = 2 + at % (segments.len() - 2);
                let detour = match kind {
                    0 => "..;/..",
                    1 => ";/..",
                    _ => "/..",
                };
                let mut out = segments[..at].join("/");
                out += "/";
                out += detour;
                for s in &segments[at..] {
                    out += "/";
                    out += s;
                }
                folder = out;
            }
            PathEdit::Semicolon => tail += ";x",
            PathEdit::TrailingDot => tail += ".",
            PathEdit::Backslash { at } => {
                let slashes: Vec<usize> = folder.match_indices('/').map(|(i, _)| i).collect();
                if let Some(&i) = slashes.get(1 + at % (slashes.len() - 1)) {
                    folder.replace_range(i..=i, "\\");
                }
            }
            PathEdit::TrailingSlash => tail += "/",
        }
    }
    format!("{folder}/{name}{tail}")
}

/// One edit of the query.
#[derive(Debug, Clone)]
enum QueryEdit {
    /// The key with letters upper-cased (bit mask) and escaped (bit mask).
    Key { upper: u8, escaped: u8 },
    /// Every byte of the value escaped.
    ValueEscaped,
    /// The value's `+` sent raw.
    RawPlus,
    /// Another pair: `target` in EBCDIC with another target, a pair that is not UTF-8, one with
    /// a NUL, or an ordinary one.
    Extra(u8, usize),
}

fn query_edit() -> impl Strategy<Value = QueryEdit> {
    prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(upper, escaped)| QueryEdit::Key { upper, escaped }),
        Just(QueryEdit::ValueEscaped),
        Just(QueryEdit::RawPlus),
        (0u8..4, 0..TARGETS.len()).prop_map(|(kind, t)| QueryEdit::Extra(kind, t)),
    ]
}

/// `s` in IBM037 (EBCDIC), every byte percent-encoded.
fn ebcdic(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            (0..=255u8).find(|&b| Encoding::Ibm037.decode(&[b]).as_deref() == Some(&c.to_string()))
        })
        .map(|b| format!("%{b:02X}"))
        .collect()
}

fn edited_query(t: &str, edits: &[QueryEdit]) -> String {
    let mut key = "target".to_string();
    let mut value = q(t);
    let mut extra = String::new();
    for edit in edits {
        match edit {
            QueryEdit::Key { upper, escaped } => {
                key = "target"
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        let c = if upper >> i & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        };
                        if escaped >> i & 1 == 1 {
                            format!("%{:02X}", u32::from(c))
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
            }
            QueryEdit::ValueEscaped => value = q_all(t),
            QueryEdit::RawPlus => value = q(t).replace("%2B", "+"),
            QueryEdit::Extra(kind, other) => {
                extra += &match kind {
                    0 => format!("&{}={}", ebcdic("target"), ebcdic(TARGETS[*other])),
                    1 => "&x=%ff".to_string(),
                    2 => "&x=a%00".to_string(),
                    _ => "&x=1".to_string(),
                }
            }
        }
    }
    format!("{key}={value}{extra}")
}

/// One edit of the headers.
#[derive(Debug, Clone)]
enum HeaderEdit {
    HiddenCharset(u8),
    UpDevcap {
        utf8: bool,
        up_agent: bool,
    },
    FilterSessionId,
    MethodOverride,
    SecondContentType,
    Cookie(usize),
    /// A `Data:` header with another target.
    Data(usize),
}

fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    prop_oneof![
        (0u8..4).prop_map(HeaderEdit::HiddenCharset),
        (any::<bool>(), any::<bool>())
            .prop_map(|(utf8, up_agent)| HeaderEdit::UpDevcap { utf8, up_agent }),
        Just(HeaderEdit::FilterSessionId),
        Just(HeaderEdit::MethodOverride),
        Just(HeaderEdit::SecondContentType),
        (0..TARGETS.len()).prop_map(HeaderEdit::Cookie),
        (0..TARGETS.len()).prop_map(HeaderEdit::Data),
    ]
}

/// Where the target goes.
#[derive(Debug, Clone, Copy)]
enum Place {
    Query,
    Json,
    Xml,
    Form,
    BatchQuery,
    BatchData,
    BatchJson,
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        Just(Place::Query),
        Just(Place::Json),
        Just(Place::Xml),
        Just(Place::Form),
        Just(Place::BatchQuery),
        Just(Place::BatchData),
        Just(Place::BatchJson),
    ]
}

/// A request-target for a batch part: the edited path, or a network-path reference to it.
fn part_target(path: &str, network: u8) -> String {
    match network {
        0 => format!("//evil.example{path}"),
        1 => format!("/%2Fevil{path}"),
        _ => path.to_string(),
    }
}

/// Which characters of a key or value are written as escapes (JSON `\u`, XML character
/// references, percent-escapes in a form), by bit.
#[derive(Debug, Clone, Copy)]
struct Spelling {
    key: u8,
    value: u64,
}

impl Spelling {
    fn apply(self, text: &str, mask: u64, escape: fn(char) -> String) -> String {
        text.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 64) & 1 == 1 {
                    escape(c)
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    fn key(self, escape: fn(char) -> String) -> String {
        self.apply("target", u64::from(self.key), escape)
    }

    /// The value with the flagged characters escaped, and the rest as they are (targets hold
    /// no character that needs escaping in JSON or XML).
    fn value(self, t: &str, escape: fn(char) -> String) -> String {
        self.apply(t, self.value, escape)
    }
}

fn json_escape(c: char) -> String {
    format!("\\u{:04x}", u32::from(c))
}

fn char_ref(c: char) -> String {
    format!("&#x{:X};", u32::from(c))
}

#[derive(Debug, Clone)]
struct Case {
    request: Req,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..TARGETS.len(),
        place(),
        prop::collection::vec(path_edit(), 0..3),
        prop::collection::vec(query_edit(), 0..3),
        prop::collection::vec(header_edit(), 0..2),
        0u8..6,
        any::<bool>(),
        (any::<u8>(), any::<u64>()).prop_map(|(key, value)| Spelling { key, value }),
    )
        .prop_map(
            |(
                t,
                place,
                path_edits,
                query_edits,
                header_edits,
                network,
                batch_cookieless,
                spelling,
            )| {
                let t = TARGETS[t];
                let path = edited_path(&path_edits);
                let query = edited_query(t, &query_edits);
                let json = format!(
                    r#"{{"{}":"{}"}}"#,
                    spelling.key(json_escape),
                    spelling.value(t, json_escape)
                );
                let mut request = match place {
                    Place::Query => post(format!("{path}?{query}")),
                    Place::Json => post(path).body("application/json", json),
                    Place::Xml => post(path).body(
                        "application/vnd.microsoft.com.ucwa+xml",
                        ucwa_xml(&format!(
                            r#"<property name="{}">{}</property>"#,
                            spelling.key(char_ref),
                            spelling.value(t, char_ref)
                        )),
                    ),
                    Place::Form => form_post(format!(
                        "{}={}",
                        spelling.key(|c| format!("%{:02X}", u32::from(c))),
                        q(t)
                    ))
                    .retarget(&path),
                    Place::BatchQuery => batch_of(&[part(&format!(
                        "POST {}?{query} HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
                        part_target(&path, network)
                    ))]),
                    Place::BatchData => batch_of(&[part(&format!(
                        "POST {} HTTP/1.1\r\nHost: {HOST}\r\nData: {json}\r\n\r\n",
                        part_target(&path, network)
                    ))]),
                    Place::BatchJson => batch_of(&[part(&embedded(
                        "POST",
                        &part_target(&path, network),
                        "application/json",
                        &json,
                    ))]),
                };
                if batch_cookieless
                    && matches!(
                        place,
                        Place::BatchQuery | Place::BatchData | Place::BatchJson
                    )
                {
                    request = request.retarget(&format!("{BATCH}/(S(abc))/"));
                }
                for edit in header_edits {
                    request = match edit {
                        HeaderEdit::HiddenCharset(kind) => {
                            let content_type = match kind {
                                0 => r#"application/json; x="a;charset=ibm037 ""#,
                                1 => "application/json, charset=ibm037",
                                2 => r#"application/json; charset="utf-8""#,
                                _ => "application/json; charset=utf-16be",
                            };
                            request
                                .without_header("Content-Type")
                                .header("Content-Type", content_type)
                        }
                        HeaderEdit::UpDevcap { utf8, up_agent } => {
                            let r = request.header(
                                "x-up-devcap-post-charset",
                                if utf8 { "utf-8" } else { "ibm037" },
                            );
                            if up_agent {
                                r.header("User-Agent", "UP.Browser/6")
                            } else {
                                r
                            }
                        }
                        HeaderEdit::FilterSessionId => {
                            request.header("AspFilterSessionId", "S(x1)")
                        }
                        HeaderEdit::MethodOverride => {
                            request.header("X-HTTP-Method-Override", "PUT")
                        }
                        HeaderEdit::SecondContentType => {
                            request.header("Content-Type", "application/x-www-form-urlencoded")
                        }
                        HeaderEdit::Cookie(other) => {
                            request.header("Cookie", &format!("a=1; target={}", TARGETS[other]))
                        }
                        HeaderEdit::Data(other) => {
                            request.header("Data", &format!(r#"{{"target":"{}"}}"#, TARGETS[other]))
                        }
                    };
                }
                Case { request }
            },
        )
}

/// The configuration the harness runs with, for judging in process.
fn config() -> Config {
    Config::from_toml(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nmax_body_bytes = 4096\n[upstream]\nmembers = [\"http://127.0.0.1:1\"]\n{POLICY}"
    ))
    .unwrap()
}

/// What ringfence would forward, judged in process: the target and headers it sends, or `None`
/// when it refuses. `Err` when the request cannot be built (a target `http` refuses).
#[allow(clippy::type_complexity)]
fn judged(config: &Config, req: &Req) -> Result<Option<(String, Vec<(String, String)>)>, String> {
    let mut builder = http::Request::builder()
        .method(req.method.as_str())
        .uri(req.target.as_str())
        .header("host", HOST);
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let (parts, ()) = builder.body(()).map_err(|e| e.to_string())?.into_parts();
    let mut clearance = match judge::admit(parts.into(), config, None) {
        Admission::Refused(_) => return Ok(None),
        Admission::Pass(passed) => passed.with_body(UpstreamBody::Empty),
        Admission::Guarded(pending) => {
            if req.body.len() > pending.body_limit() {
                return Ok(None);
            }
            match pending.judge(Bytes::copy_from_slice(&req.body)).outcome {
                Ok(clearance) => clearance,
                Err(_) => return Ok(None),
            }
        }
    };
    let target = clearance.target().to_string();
    let headers = clearance
        .headers_mut()
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                v.iter().map(|&b| char::from(b)).collect(),
            )
        })
        .collect();
    Ok(Some((target, headers)))
}

/// Many generated requests judged in process: whatever ringfence forwards, the pool model acts
/// on nothing the policy denies.
#[test]
fn whatever_ringfence_forwards_the_pool_acts_on_nothing_denied_in_process() {
    let config = config();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 3000,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let forwarded = std::cell::Cell::new(0usize);
    let result = runner.run(&case(), |Case { request }| {
        let Ok(Some((target, headers))) = judged(&config, &request) else {
            return Ok(());
        };
        forwarded.set(forwarded.get() + 1);
        let reading = model::read(
            &model::Request {
                method: &request.method,
                target: &target,
                headers: &headers,
                body: &request.body,
            },
            &Resources::default(),
        );
        ringfence::sim::oracle::judge(config.policy(), HOST, &reading)
            .map_err(|e| TestCaseError::fail(format!("{request:?}: {e}")))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "in process: {} of 3000 generated requests forwarded",
        forwarded.get()
    );
    // Not vacuous: a good share of the stream is allowed and reaches the check.
    assert!(
        forwarded.get() > 300,
        "only {} of 3000 forwarded",
        forwarded.get()
    );
}

/// Fewer generated requests through the real server: the members read what they receive with
/// the pool model, and it must find nothing denied.
#[test]
fn whatever_ringfence_forwards_the_pool_acts_on_nothing_denied_over_sockets() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = runtime.block_on(support::start());
    let addr = h.server.addrs()[0];
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 256,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let result = runner.run(&case(), |Case { request }| {
        let bytes = request.to_bytes();
        let reply = runtime
            .block_on(async {
                tokio::time::timeout(TIMEOUT, client::raw_reply(addr, &bytes)).await
            })
            .map_err(|_| TestCaseError::fail("no answer in time"))?
            .map_err(TestCaseError::fail)?;
        prop_assert!(
            reply.status < 500,
            "{request:?}: {} {}",
            reply.status,
            reply.text()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "over sockets: {} of 256 generated requests forwarded",
        h.received().len()
    );
    assert!(!h.received().is_empty(), "nothing was forwarded");
    assert_never_received(&h, DENIED_DIGITS);
    h.assert_pool_acted_only_on_allowed();
    runtime.block_on(async move { drop(h) });
}
