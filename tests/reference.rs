//! docs/reference.md must keep up with the code: every configuration key, refusal reason,
//! metric and signal the source defines has a row there. The items are read from the source
//! text with the rules below, so a key, reason, metric or signal added without its row fails
//! here, with the list of every missing item.
//!
//! Extraction rules (deliberately simple; a rule that stops understanding the source fails
//! loudly through the floor checks rather than passing with nothing extracted):
//!
//! - **Configuration keys**, from `src/config/raw.rs`: every `struct` body (up to a line that is
//!   only `}`) gives its fields, one per line (`pub name: Type,`); comment lines are skipped, a
//!   field's `#[serde(rename = "x")]` renames it, `#[serde(flatten)]` lifts its fields into the
//!   parent, `#[serde(skip...)]` drops it, and a `rename_all` anywhere is refused (extend the rule
//!   first). Starting from `RawConfig`, `Option<..>`, `Box<..>` and `Vec<..>` are unwrapped; a
//!   field whose inner type is another struct of the file is a table whose fields are nested as
//!   `section.key`, with `[]` after a `Vec` of tables (`organisations[].allow_numbers`,
//!   `guard[].parameter`); any other field is a key.
//! - **Refusal reasons**, from `src/reject.rs`: every `=> "..."` string in the body of
//!   `fn reason(` (up to the first line that is only `    }`). Their number must equal the
//!   number of `Rejection` variants.
//! - **Metrics**, from every `.rs` file under `src/`: every string literal that is exactly a
//!   metric name, `"ringfence_[a-z0-9_]*"`. Every `ringfence_` family the registry exports at
//!   start must be among them.
//! - **Signals**, from every `.rs` file under `src/` (comment lines skipped): every
//!   `SignalKind::<constructor>()` (mapped to its `SIG...` name), every
//!   `SignalKind::from_raw(...SIGNAME)`, and `ctrl_c()` (SIGINT).
//!
//! An item is documented when it is a `code` span in the first cell of a table row under its
//! section heading in docs/reference.md: `## Configuration keys`, `## Refusal reasons`,
//! `## Metrics`, `## Signals` (a section runs to the next `## ` heading; a first cell may hold
//! several spans, e.g. `SIGTERM`, `SIGINT`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Every `.rs` file under `src/`, with its path relative to the repository.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&repo("src"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p.strip_prefix(repo("")).unwrap().display().to_string();
            (rel, text)
        })
        .collect()
}

/// The text without its comment lines (`//`, `///`, `//!`).
fn without_comment_lines(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- the reference document ----

/// The first cell of a markdown table row (a `|` inside a code span does not end it).
fn first_cell(row: &str) -> Option<&str> {
    let rest = row.trim_start().strip_prefix('|')?;
    let mut in_code = false;
    for (i, c) in rest.char_indices() {
        match c {
            '`' => in_code = !in_code,
            '|' if !in_code => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

/// The code spans in the first cells of the table rows under `## {heading}`.
fn documented(doc: &str, heading: &str) -> BTreeSet<String> {
    let span = Regex::new(r"`([^`]+)`").unwrap();
    let mut lines = doc.lines();
    let found = lines
        .by_ref()
        .any(|l| l.strip_prefix("## ").is_some_and(|h| h.trim() == heading));
    assert!(
        found,
        "docs/reference.md has no `## {heading}` section (tests/reference.rs looks for it)"
    );
    lines
        .take_while(|l| !l.starts_with("## "))
        .filter_map(first_cell)
        .flat_map(|cell| {
            span.captures_iter(cell)
                .map(|c| c[1].trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Fails with every item of `expected` that the section does not document.
fn assert_documented(kind: &str, heading: &str, source: &str, expected: &BTreeSet<String>) {
    let doc = read("docs/reference.md");
    let have = documented(&doc, heading);
    let missing: Vec<&String> = expected.iter().filter(|i| !have.contains(*i)).collect();
    assert!(
        missing.is_empty(),
        "docs/reference.md falls behind the code: {n} {kind} from {source} have no row under \
         `## {heading}` (the item as a `code` span in the row's first cell):\n{list}\n\
         Add a row for each (what it is, its default or values, and why/when), then rerun \
         `cargo test --test reference`.",
        n = missing.len(),
        list = missing
            .iter()
            .map(|m| format!("  - {m}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

// ---- configuration keys ----

#[derive(Debug)]
struct Field {
    name: String,
    ty: String,
    flatten: bool,
}

/// The fields of every struct in `src`, by struct name.
fn structs(src: &str) -> BTreeMap<String, Vec<Field>> {
    assert!(
        !src.contains("rename_all"),
        "tests/reference.rs does not understand #[serde(rename_all)]: extend its key rule"
    );
    let item = Regex::new(r"(?ms)\bstruct\s+(\w+)[^{;]*\{(.*?)^\s*\}").unwrap();
    let field = Regex::new(r"^(?:pub(?:\([^)]*\))?\s+)?(?:r#)?(\w+)\s*:\s*(.+?),?$").unwrap();
    let rename = Regex::new(r#"rename\s*=\s*"([^"]+)""#).unwrap();
    let mut out = BTreeMap::new();
    for s in item.captures_iter(src) {
        let mut fields = Vec::new();
        let (mut renamed, mut flatten, mut skip) = (None, false, false);
        for line in s[2].lines().map(str::trim) {
            if line.is_empty() || line.starts_with("//") {
                continue;
            }
            if line.starts_with("#[") {
                if line.contains("serde(") {
                    if let Some(r) = rename.captures(line) {
                        renamed = Some(r[1].to_string());
                    }
                    flatten |= line.contains("flatten");
                    skip |= line.contains("skip");
                }
                continue;
            }
            if let Some(f) = field.captures(line) {
                if !skip {
                    fields.push(Field {
                        name: renamed.take().unwrap_or_else(|| f[1].to_string()),
                        ty: f[2].trim().to_string(),
                        flatten,
                    });
                }
                (renamed, flatten, skip) = (None, false, false);
            }
        }
        out.insert(s[1].to_string(), fields);
    }
    out
}

/// Every key path under `root`, tables nested as `a.b`, arrays of tables as `a[].b`.
fn key_paths(structs: &BTreeMap<String, Vec<Field>>, root: &str) -> BTreeSet<String> {
    fn walk(
        structs: &BTreeMap<String, Vec<Field>>,
        name: &str,
        prefix: &str,
        out: &mut BTreeSet<String>,
    ) {
        for f in &structs[name] {
            let mut ty = f.ty.replace(' ', "");
            let mut array = false;
            loop {
                let inner = ["Option<", "Box<", "Vec<"]
                    .iter()
                    .find_map(|w| Some((*w, ty.strip_prefix(w)?.strip_suffix('>')?)));
                match inner {
                    Some((w, inner)) => {
                        array |= w == "Vec<";
                        ty = inner.to_string();
                    }
                    None => break,
                }
            }
            if structs.contains_key(&ty) {
                let nested = if f.flatten {
                    prefix.to_string()
                } else {
                    format!("{prefix}{}{}.", f.name, if array { "[]" } else { "" })
                };
                walk(structs, &ty, &nested, out);
            } else {
                out.insert(format!("{prefix}{}", f.name));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(structs, root, "", &mut out);
    out
}

fn config_keys() -> BTreeSet<String> {
    let src = read("src/config/raw.rs");
    let structs = structs(&src);
    assert!(
        structs.contains_key("RawConfig"),
        "src/config/raw.rs has no `struct RawConfig`: the key rule of tests/reference.rs must follow it"
    );
    key_paths(&structs, "RawConfig")
}

// ---- refusal reasons ----

fn refusal_reasons() -> BTreeSet<String> {
    let src = read("src/reject.rs");
    let start = src.find("fn reason(").expect(
        "src/reject.rs has no `fn reason(`: the reason rule of tests/reference.rs must follow it",
    );
    let body = &src[start..];
    let body = &body[..body.find("\n    }\n").unwrap_or(body.len())];
    let arm = Regex::new(r#"=>\s*"([^"]+)""#).unwrap();
    let reasons: BTreeSet<String> = arm.captures_iter(body).map(|c| c[1].to_string()).collect();
    let variants = enum_variants(&src, "Rejection");
    assert_eq!(
        reasons.len(),
        variants,
        "the reason rule of tests/reference.rs found {} reason strings in `fn reason` but \
         `enum Rejection` has {variants} variants: {reasons:?}",
        reasons.len()
    );
    reasons
}

/// How many unit variants `enum name` declares (a line that is a capitalised name and a comma).
fn enum_variants(src: &str, name: &str) -> usize {
    let item = Regex::new(&format!(r"(?ms)\benum\s+{name}\s*\{{(.*?)^\}}")).unwrap();
    let body = item
        .captures(src)
        .unwrap_or_else(|| panic!("no `enum {name}`"))[1]
        .to_string();
    let variant = Regex::new(r"^\s*[A-Z]\w*\s*,?\s*$").unwrap();
    body.lines().filter(|l| variant.is_match(l)).count()
}

// ---- metrics ----

fn metric_names(sources: &[(String, String)]) -> BTreeSet<String> {
    // A metric name ends in a letter or digit (`ringfence__` is the environment prefix).
    let literal = Regex::new(r#""(ringfence_[a-z0-9_]*[a-z0-9])""#).unwrap();
    sources
        .iter()
        .flat_map(|(_, text)| {
            literal
                .captures_iter(text)
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

// ---- signals ----

/// tokio's `SignalKind` constructors and the signals they name.
const SIGNAL_KINDS: &[(&str, &str)] = &[
    ("alarm", "SIGALRM"),
    ("child", "SIGCHLD"),
    ("hangup", "SIGHUP"),
    ("interrupt", "SIGINT"),
    ("io", "SIGIO"),
    ("pipe", "SIGPIPE"),
    ("quit", "SIGQUIT"),
    ("terminate", "SIGTERM"),
    ("user_defined1", "SIGUSR1"),
    ("user_defined2", "SIGUSR2"),
    ("window_change", "SIGWINCH"),
];

fn signals(sources: &[(String, String)]) -> BTreeSet<String> {
    let kind = Regex::new(r"SignalKind::(\w+)\s*\(\s*\)").unwrap();
    let raw = Regex::new(r"SignalKind::from_raw\s*\(([^)]*)\)").unwrap();
    let name = Regex::new(r"\bSIG[A-Z0-9]+\b").unwrap();
    let ctrl_c = Regex::new(r"\bctrl_c\s*\(\s*\)").unwrap();
    let mut out = BTreeSet::new();
    for (path, text) in sources {
        let code = without_comment_lines(text);
        for c in kind.captures_iter(&code) {
            let signal = SIGNAL_KINDS
                .iter()
                .find(|(k, _)| *k == &c[1])
                .unwrap_or_else(|| {
                    panic!(
                        "{path}: SignalKind::{}() is not in tests/reference.rs's SIGNAL_KINDS",
                        &c[1]
                    )
                })
                .1;
            out.insert(signal.to_string());
        }
        for c in raw.captures_iter(&code) {
            let signal = name.find(&c[1]).unwrap_or_else(|| {
                panic!(
                    "{path}: SignalKind::from_raw({}) does not name its signal (SIGxxx)",
                    &c[1]
                )
            });
            out.insert(signal.as_str().to_string());
        }
        if ctrl_c.is_match(&code) {
            out.insert("SIGINT".into());
        }
    }
    out
}

// ---- the checks ----

#[test]
fn every_configuration_key_has_a_row() {
    let keys = config_keys();
    for floor in [
        "server.listen",
        "upstream.health.interval",
        "guard[].parameter",
    ] {
        assert!(
            keys.contains(floor),
            "the key rule of tests/reference.rs no longer finds `{floor}` in src/config/raw.rs \
             (found {keys:?}): update the rule"
        );
    }
    assert_documented(
        "configuration keys",
        "Configuration keys",
        "src/config/raw.rs",
        &keys,
    );
}

#[test]
fn every_refusal_reason_has_a_row() {
    assert_documented(
        "refusal reasons",
        "Refusal reasons",
        "src/reject.rs `Rejection::reason`",
        &refusal_reasons(),
    );
}

#[test]
fn every_metric_has_a_row() {
    let names = metric_names(&sources());
    // Cross-check the rule with the registry: every family exported at start must be found.
    let text = String::from_utf8(ringfence::metrics::Metrics::new().encode()).unwrap();
    let unseen: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("ringfence_") && !names.contains(*n))
        .collect();
    assert!(
        unseen.is_empty(),
        "the metric rule of tests/reference.rs misses {unseen:?}, which the registry exports: \
         name each metric as one string literal, or extend the rule"
    );
    assert_documented("metrics", "Metrics", "src/", &names);
}

#[test]
fn every_handled_signal_has_a_row() {
    let signals = signals(&sources());
    for floor in ["SIGHUP", "SIGTERM"] {
        assert!(
            signals.contains(floor),
            "the signal rule of tests/reference.rs no longer finds {floor} in src/: update it"
        );
    }
    assert_documented("signals", "Signals", "src/", &signals);
}

/// The rules themselves, on source shapes the code does not use yet.
#[test]
fn the_extraction_rules_read_the_shapes_they_promise() {
    let src = r#"
pub struct RawConfig {
    /// A comment line: `pub ignored: String,`
    pub server: RawServer,
    pub items: Vec<RawItem>,
    #[serde(flatten)]
    pub extra: RawExtra,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(skip)]
    pub cache: Option<u8>,
    pub r#match: Option<Vec<String>>,
}
pub struct RawServer {
    pub tls: Option<Box<RawTls>>,
    pub listen: Option<Vec<String>>,
}
pub struct RawTls { pub cert: Option<String>,
}
pub struct RawItem {
    pub name: Option<String>,
}
struct RawExtra {
    lifted: bool,
}
"#;
    let keys: Vec<String> = key_paths(&structs(src), "RawConfig").into_iter().collect();
    assert_eq!(
        keys,
        [
            "items[].name",
            "lifted",
            "match",
            "server.listen",
            "server.tls.cert",
            "type"
        ]
    );

    let code = r#"
        // SignalKind::quit() in a comment is not handled
        let a = signal(SignalKind::user_defined1())?;
        let b = signal(SignalKind::from_raw(libc::SIGUSR2))?;
        tokio::signal::ctrl_c().await;
        let m = IntCounter::new("ringfence_x_total", "help")?;
        let s = "see ringfence_not_a_metric{label}";
    "#;
    let sources = [("src/x.rs".to_string(), code.to_string())];
    assert_eq!(
        signals(&sources).into_iter().collect::<Vec<_>>(),
        ["SIGINT", "SIGUSR1", "SIGUSR2"]
    );
    assert_eq!(
        metric_names(&sources).into_iter().collect::<Vec<_>>(),
        ["ringfence_x_total"]
    );

    let doc = "## Signals\n| signal | does |\n|---|---|\n| `SIGTERM`, `SIGINT` | drain; `SIGHUP` here is not a row's item |\n| `a|b` | c |\n## Next\n| `SIGUSR1` | elsewhere |\n";
    assert_eq!(
        documented(doc, "Signals").into_iter().collect::<Vec<_>>(),
        ["SIGINT", "SIGTERM", "a|b"]
    );
}
