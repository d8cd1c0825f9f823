//! The path IIS and UCWA act on (SPEC §3 "Canonical path", §10 "Path").
//!
//! HTTP.sys decodes the path once (`%XX`, `%uNNNN`), turns `\` into `/` and resolves dot
//! segments; Windows drops trailing dots and spaces; System.Web's `CookielessHelperClass`
//! (System.Web/Security/CookielessHelper.cs, `RemoveCookielessValuesFromPath`) then removes a
//! cookieless-session segment such as `/(S(x))/`. It looks for it in the *raw* URL
//! (`Request.RawUrl`, before decoding) and cuts the same text from the decoded `FilePath`
//! (`HttpResponse.RemoveAppPathModifier`), so the segment may be spelled raw or encoded and may
//! stand before or after dot segments are resolved.
//!
//! ringfence reads more than that, never less: escapes are decoded until none is left, `;params`
//! are dropped, every cookieless segment is removed wherever it stands, and the path is read
//! once per place removal could happen ([`readings`]). A path that could reach UCWA is judged by
//! every reading; a default-ignorable code point in it (U+200B, U+00AD, ...) makes it unreadable.

use std::borrow::Cow;

use super::escape::{self, EscapeError};
use super::{fold, is_default_ignorable};

/// Why a path has no canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PathError {
    #[error(transparent)]
    Escape(#[from] EscapeError),
    #[error("the path does not decode to UTF-8")]
    InvalidUtf8,
    #[error("the path decodes to a control character")]
    ControlCharacter,
    #[error("the path decodes to a default-ignorable code point")]
    Ignorable,
    #[error("the path is percent-encoded too many times")]
    TooDeeplyEncoded,
    #[error("a segment of dots and spaces is neither `.` nor `..`")]
    DotSegment,
    #[error("the path holds too many cookieless-session groups to read")]
    Ambiguous,
}

/// Decoding rounds allowed before a path counts as undecodable. Without a bound, nested `%25`
/// would make decoding quadratic in the path length; IIS itself decodes at most twice.
pub const MAX_DECODE_ROUNDS: usize = 16;

/// The path as IIS and UCWA act on it, case-folded, with cookieless segments removed after dot
/// segments are resolved (the reading of `FilePath`).
///
/// Escapes are decoded until none is left, in at most [`MAX_DECODE_ROUNDS`] rounds, so the
/// result never contains `%`; it must then be UTF-8 without control characters (C0, DEL, C1)
/// or default-ignorable code points. Then `\` is a separator, empty, `.` and `..` segments are
/// resolved (never above the root), `;params` are dropped, trailing dots and spaces are stripped
/// from each segment, cookieless segments are removed, and a trailing `/` is dropped. The result
/// starts with `/`, is idempotent under this function, and is folded by [`fold`].
///
/// Borrows `raw` when it is already canonical.
pub fn canonical(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if is_plain(raw) {
        let trimmed = trim_trailing_slash(raw);
        return Ok(if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(trimmed.to_ascii_lowercase())
        } else {
            Cow::Borrowed(trimmed)
        });
    }
    normalise(&decoded(raw)?, Dots::Refuse, CANONICAL).map(Cow::Owned)
}

/// The path decoded fully, if it is UTF-8 without control characters or default-ignorable code
/// points.
fn decoded(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let decoded = decode_fully(raw)?;
    if decoded.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    if decoded.chars().any(is_default_ignorable) {
        return Err(PathError::Ignorable);
    }
    Ok(decoded)
}

/// How a reading settles what servers disagree on when they split a path into segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Splitting {
    /// `;params` are cut from each segment before dot segments are resolved (a servlet
    /// container's reading), and so is what follows a `:` (an NTFS stream, read as its file);
    /// otherwise `;` is an ordinary character, as it is to HTTP.sys, and `..;` is a segment that
    /// a following `..` removes.
    drop_params: bool,
    /// With `;` ordinary while dot segments are resolved, the names left after cut at a `;`
    /// (`;params`) or a `:` (an NTFS stream, `name::$DATA`): HTTP.sys's resolution read by a
    /// router that ignores matrix parameters, or by file mapping, so that
    /// `/ucwa/oauth/..;/../v1/.../simultaneousRingToContact;x` names the resource (found by the
    /// socket differential test, session 28; neither reading above does), and so does
    /// `.../simultaneousRingToContact::$DATA` (fresh eyes, round 20; ASP.NET refuses `:` in a
    /// path by default, `RequestPathInvalidCharacters`).
    params_after_dots: bool,
    /// An empty segment (`//`) is a segment that `..` removes (RFC 3986 `remove_dot_segments`);
    /// otherwise `//` is one separator, as `VirtualPath` reads it.
    empty_segments: bool,
}

/// The splitting of [`canonical`].
const CANONICAL: Splitting = Splitting {
    drop_params: true,
    params_after_dots: false,
    empty_segments: false,
};

/// Every splitting a reading of the path is made with; the first is [`CANONICAL`].
const SPLITTINGS: [Splitting; 6] = [
    CANONICAL,
    Splitting {
        drop_params: false,
        params_after_dots: false,
        empty_segments: false,
    },
    Splitting {
        drop_params: false,
        params_after_dots: true,
        empty_segments: false,
    },
    Splitting {
        drop_params: true,
        params_after_dots: false,
        empty_segments: true,
    },
    Splitting {
        drop_params: false,
        params_after_dots: false,
        empty_segments: true,
    },
    Splitting {
        drop_params: false,
        params_after_dots: true,
        empty_segments: true,
    },
];

/// The readings of one path text: [`canonical`], the other [`SPLITTINGS`] of the same decoded
/// path when they could differ (a `;` or an empty segment), and, when the decoded path holds
/// non-ASCII characters, its ASCII [`skeleton`](super::skeleton) (a comparison that gives them no
/// weight, such as Windows' linguistic one with unassigned code points and non-spacing marks, or
/// one that equates compatibility forms such as `ⓢ`, would not see them).
fn splittings(raw: &str) -> Vec<Result<Cow<'_, str>, PathError>> {
    if is_plain(raw) {
        return vec![canonical(raw)];
    }
    let decoded = match decoded(raw) {
        Ok(decoded) => decoded,
        Err(e) => return vec![Err(e)],
    };
    let split_differently = |text: &str| {
        text.contains([';', ':'])
            || text
                .as_bytes()
                .windows(2)
                .any(|w| matches!(w, [b'/' | b'\\', b'/' | b'\\']))
    };
    let splittings = if split_differently(&decoded) {
        &SPLITTINGS[..]
    } else {
        &SPLITTINGS[..1]
    };
    let mut all: Vec<Result<Cow<'_, str>, PathError>> = splittings
        .iter()
        .map(|splitting| normalise(&decoded, Dots::Refuse, *splitting).map(Cow::Owned))
        .collect();
    if !decoded.is_ascii() {
        let ascii = super::skeleton(&decoded);
        let splittings = if split_differently(&ascii) {
            &SPLITTINGS[..]
        } else {
            &SPLITTINGS[..1]
        };
        for splitting in splittings {
            if let Ok(reading) = normalise(&ascii, Dots::Dropped, *splitting) {
                all.push(Ok(Cow::Owned(reading)));
            }
        }
    }
    all
}

/// Every canonical form the pool could act on. The first is [`canonical`] (the `FilePath`
/// reading: cookieless segments removed after dot segments are resolved). When a `(` appears at
/// some decoding stage, each cookieless group found at any stage adds readings:
/// - every cookieless segment removed from that stage's text, before dot segments are resolved
///   and later rounds decoded (the `RawUrl` reading, `RemoveCookielessValuesFromPath`);
/// - `/` + the group cut out where it follows a separator, even inside a segment, before and
///   after dot segments are resolved: `HttpResponse.RemoveAppPathModifier` before the 2023
///   security update cut its first match wherever it stood (CVE-2023-36899), so that
///   `/simultaneous/(S(x))RingToContact/(S(x))/..` reads `/simultaneousRingToContact`.
///
/// More than [`MAX_COOKIELESS_READINGS`] such readings, or more than [`MAX_COOKIELESS_BYTES`] of
/// text in them, make the path unreadable: each is read with every splitting, so the work is
/// bounded by the second limit whatever the length of the path.
pub fn readings(raw: &str) -> Vec<Result<Cow<'_, str>, PathError>> {
    let mut all = splittings(raw);
    if is_plain(raw) {
        return all;
    }
    let stages = decoding_stages(raw);
    if !stages.iter().any(|s| s.contains('(')) {
        dedup(&mut all);
        return all;
    }
    match cookieless_texts(&stages) {
        Ok(texts) => {
            for text in &texts {
                all.extend(
                    splittings(text)
                        .into_iter()
                        .map(|r| r.map(|c| Cow::Owned(c.into_owned()))),
                );
            }
        }
        Err(e) => all.push(Err(e)),
    }
    dedup(&mut all);
    all
}

/// The texts of the cookieless readings of a path's decoding stages, sorted and deduplicated; more
/// than [`MAX_COOKIELESS_READINGS`] of them, or more than [`MAX_COOKIELESS_BYTES`] of text, is
/// [`PathError::Ambiguous`], found before the text that goes over is made.
fn cookieless_texts(stages: &[Cow<'_, str>]) -> Result<Vec<String>, PathError> {
    let mut groups: Vec<&str> = Vec::new();
    for stage in stages {
        for group in cookieless_groups(stage)? {
            if !groups.contains(&group) {
                if groups.len() == MAX_COOKIELESS_READINGS {
                    return Err(PathError::Ambiguous);
                }
                groups.push(group);
            }
        }
    }
    let mut texts: Vec<String> = Vec::new();
    let mut bytes = 0;
    let mut keep = |text: String| {
        bytes += text.len();
        texts.push(text);
        if texts.len() > MAX_COOKIELESS_READINGS || bytes > MAX_COOKIELESS_BYTES {
            return Err(PathError::Ambiguous);
        }
        Ok(())
    };
    for stage in stages {
        if let Cow::Owned(removed) = remove_cookieless_text(stage) {
            keep(removed)?;
        }
        let resolved = resolve_dots(stage);
        for group in &groups {
            for cut in
                cut_after_separator(stage, group).chain(cut_after_separator(&resolved, group))
            {
                keep(cut)?;
            }
        }
    }
    texts.sort_unstable();
    texts.dedup();
    Ok(texts)
}
/// Drops repeated readings, keeping the first of each (the canonical one stays first).
fn dedup(all: &mut Vec<Result<Cow<'_, str>, PathError>>) {
    let mut seen = std::collections::HashSet::with_capacity(all.len());
    let first: Vec<bool> = all.iter().map(|reading| seen.insert(reading)).collect();
    let mut first = first.into_iter();
    all.retain(|_| first.next().unwrap_or(false));
}

/// Readings beyond [`canonical`] that a path may need before it is too ambiguous to judge.
pub const MAX_COOKIELESS_READINGS: usize = 64;

/// Bytes of text in those readings before the path is too ambiguous to judge: 4 KiB is 16
/// readings of a 256-byte path (a UCWA path is about 150 bytes, and no UCWA client sends
/// cookieless segments at all). Each reading is read with every splitting and as its skeleton,
/// so this bounds the work a hostile path costs: about 0.15 ms at the limit
/// (`cargo bench --bench readings`, docs/performance.md).
pub const MAX_COOKIELESS_BYTES: usize = 4 * 1024;

/// The raw path and each round of decoding it, while decoding succeeds and `%` remains.
fn decoding_stages(raw: &str) -> Vec<Cow<'_, str>> {
    let mut stages = vec![Cow::Borrowed(raw)];
    for _ in 0..MAX_DECODE_ROUNDS {
        let Some(last) = stages.last().filter(|s| s.contains('%')) else {
            break;
        };
        let Ok(next) = escape::decode(last.as_bytes(), escape::PATH) else {
            break;
        };
        let Ok(next) = String::from_utf8(next.into_owned()) else {
            break;
        };
        stages.push(Cow::Owned(next));
    }
    stages
}

/// Every substring that is a cookieless group by [`is_cookieless_segment`]'s grammar,
/// wherever it stands, in order. More than [`MAX_OPENING_PARENTHESES`] `(` in the text is
/// [`PathError::Ambiguous`]: each may start a group, and no client sends such a path.
fn cookieless_groups(text: &str) -> Result<Vec<&str>, PathError> {
    let bytes = text.as_bytes();
    if !bytes.contains(&b'(') {
        return Ok(Vec::new());
    }
    if bytes.iter().filter(|&&b| b == b'(').count() > MAX_OPENING_PARENTHESES {
        return Err(PathError::Ambiguous);
    }
    // The first `)`, `/` or `\` at or after each index, so that finding the end of a group's
    // value costs one lookup, not a scan: nested `(S((S(...` would make the scans quadratic.
    let mut stop = vec![bytes.len(); bytes.len() + 1];
    for i in (0..bytes.len()).rev() {
        stop[i] = if matches!(bytes[i], b')' | b'/' | b'\\') {
            i
        } else {
            stop[i + 1]
        };
    }
    let group_at = |at: usize| {
        let mut end = at + 1;
        loop {
            match bytes.get(end..)? {
                [b')', ..] if end > at + 1 => return Some(&text[at..=end]),
                [letter, b'(', ..] if letter.is_ascii_alphabetic() => {
                    let close = stop[end + 2];
                    if bytes.get(close) != Some(&b')') {
                        return None;
                    }
                    end = close + 1;
                }
                _ => return None,
            }
        }
    };
    Ok(text
        .match_indices('(')
        .filter_map(|(at, _)| group_at(at))
        .collect())
}

/// `(` in one decoding stage of a path before it is too ambiguous to judge: a cookieless
/// segment holds two per group, and [`MAX_COOKIELESS_READINGS`] groups at most are read.
const MAX_OPENING_PARENTHESES: usize = 4 * MAX_COOKIELESS_READINGS;

/// `text` with `/` + `group` cut out, once for each place the group follows a separator.
fn cut_after_separator<'t>(text: &'t str, group: &'t str) -> impl Iterator<Item = String> + 't {
    text.match_indices(group)
        .filter(|&(at, _)| at > 0 && matches!(text.as_bytes()[at - 1], b'/' | b'\\'))
        .map(|(at, _)| format!("{}{}", &text[..at - 1], &text[at + group.len()..]))
}

/// `/`-separated segments with `.` and `..` resolved as HTTP.sys resolves them, nothing else
/// changed: the text `RemoveAppPathModifier` searches.
fn resolve_dots(text: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(text.len() + 1);
    for segment in segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether a path that has no canonical form could still be acted on by UCWA: the raw path, a
/// single lenient decode of it, or its lenient canonical form (invalid escapes kept literally,
/// default-ignorable code points skipped, and odd dot segments read both ways) starts with
/// `/ucwa`, case-insensitively.
pub fn could_reach_ucwa(raw: &str) -> bool {
    if starts_with_ucwa(raw.as_bytes()) {
        return true;
    }
    let Ok(first) = escape::decode(raw.as_bytes(), escape::PATH_LENIENT) else {
        return false;
    };
    let mut bytes = first.into_owned();
    if starts_with_ucwa(&bytes) {
        return true;
    }
    for _ in 1..MAX_DECODE_ROUNDS {
        match escape::decode(&bytes, escape::PATH_LENIENT) {
            Ok(next) if *next != *bytes => bytes = next.into_owned(),
            _ => break,
        }
    }
    let lenient: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|&c| !is_default_ignorable(c))
        .collect();
    [Dots::AsParent, Dots::Dropped].into_iter().any(|dots| {
        [
            Cow::Borrowed(lenient.as_str()),
            remove_cookieless_text(&lenient),
        ]
        .iter()
        .any(|path| {
            SPLITTINGS.iter().any(|splitting| {
                normalise(path, dots, *splitting).is_ok_and(|n| starts_with_ucwa(n.as_bytes()))
            })
        })
    })
}

/// True when canonicalisation changes nothing but ASCII case and a trailing `/`: rooted,
/// printable ASCII without `%`, `\`, `;` or `(`, no empty segment before the last, and no
/// segment ending in `.` (which covers `.` and `..`).
pub fn is_plain(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    // Every request's path is asked this several times, and almost every one is plain: two
    // branch-free passes over all its bytes, which the compiler vectorises, instead of a loop
    // that decides at each byte (about ten instructions a byte).
    let odd = bytes.iter().fold(false, |odd, &b| {
        odd | (b.wrapping_sub(0x21) > 0x7e - 0x21)
            | (b == b'%')
            | (b == b'\\')
            | (b == b';')
            | (b == b':')
            | (b == b'(')
    });
    let empty_or_dotted = bytes
        .iter()
        .zip(&bytes[1..])
        .fold(false, |bad, (&before, &b)| {
            bad | ((b == b'/') & ((before == b'/') | (before == b'.')))
        });
    !odd && !empty_or_dotted && bytes.last() != Some(&b'.')
}

/// Whether a target's path, as written or after any number of decoding rounds, begins with two
/// separators (`//`, `/\\`): a network-path reference (RFC 3986 §4.2) to a reader that resolves
/// it against a base URI, whose path is then the one behind the authority.
pub fn is_network_path(target: &[u8]) -> bool {
    // Decoding changes only `%XX`: the second byte is a separator after decoding only if it is
    // one, or `%`, as written.
    if !matches!(target.get(1), Some(b'/' | b'\\' | b'%')) {
        return false;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let mut text = Cow::Borrowed(path);
    for _ in 0..=MAX_DECODE_ROUNDS {
        if matches!(text.get(1), Some(b'/' | b'\\')) {
            return true;
        }
        match escape::decode(&text, escape::PATH_LENIENT) {
            Ok(next) if *next != *text => text = Cow::Owned(next.into_owned()),
            _ => return false,
        }
    }
    true
}

/// How many `ucwa` segments inside a path are read ([`ucwa_suffixes`]).
const MAX_UCWA_SUFFIXES: usize = 8;

/// How many rounds of folding and lenient decoding [`ucwa_suffixes`] takes; a path that still
/// changes after them is `None`.
const MAX_LOOSE_ROUNDS: usize = 32;

/// Slash look-alikes that [`super::skeleton`] drops rather than folds (Windows' best-fit
/// code-page mappings read several as `/` or `\\`), and U+FFFD, which bytes that are not UTF-8
/// (an overlong `%C0%AF`) decode to: each a separator to [`ucwa_suffixes`] (fresh eyes,
/// rounds 44 and 45).
const SEPARATOR_LOOK_ALIKES: [char; 9] = [
    '\u{2044}', '\u{2215}', '\u{2216}', '\u{2571}', '\u{2572}', '\u{29F5}', '\u{29F8}', '\u{29F9}',
    '\u{FFFD}',
];

fn as_separators(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(SEPARATOR_LOOK_ALIKES) {
        std::borrow::Cow::Owned(text.replace(SEPARATOR_LOOK_ALIKES, "/"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Where a path holds a `ucwa` segment after any character but an ASCII letter or digit, the
/// path from there on (as `/ucwa...`): as written (past the path's own start), and
/// in each text that rounds of folding ([`super::skeleton`]: ignorable code points, controls
/// and marks dropped, compatibility forms such as `％` and `／` folded, case folded) and of
/// decoding that keeps what it cannot decode give, until nothing changes. `None` for more than
/// [`MAX_UCWA_SUFFIXES`], or a path still changing after [`MAX_LOOSE_ROUNDS`]. `plain`:
/// [`is_plain`] of the path, which changes under neither.
pub fn ucwa_suffixes(raw: &str, plain: bool) -> Option<Vec<String>> {
    let mut suffixes: Vec<String> = Vec::new();
    // `from`: where `ucwa` may start; past the path's own start as written (that path is read
    // already), anywhere past the first byte in a text that folding or decoding made.
    let mut note = |text: &str, from: usize| -> Option<()> {
        let bytes = text.as_bytes();
        let mut from = from;
        while let Some(found) = bytes
            .get(from..)
            .and_then(|rest| memchr::memchr2(b'u', b'U', rest))
        {
            let at = from + found;
            from = at + 1;
            let word = bytes
                .get(at..at + 4)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"ucwa"));
            if !word || bytes[at - 1].is_ascii_alphanumeric() {
                continue;
            }
            let suffix = format!("/{}", &text[at..]);
            if !suffixes.contains(&suffix) {
                if suffixes.len() == MAX_UCWA_SUFFIXES {
                    return None;
                }
                suffixes.push(suffix);
            }
        }
        Some(())
    };
    note(raw, 2)?;
    if plain {
        return Some(suffixes);
    }
    let mut text = raw.to_owned();
    for _ in 0..MAX_LOOSE_ROUNDS {
        let folded = super::skeleton(&as_separators(&text));
        note(&folded, 1)?;
        let decoded = escape::decode(folded.as_bytes(), escape::PATH_LENIENT)
            .ok()
            .map(|d| as_separators(&String::from_utf8_lossy(&d)).into_owned())
            .unwrap_or_else(|| folded.clone());
        note(&decoded, 1)?;
        if decoded == text {
            return Some(suffixes);
        }
        text = decoded;
    }
    None
}

pub fn trim_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    }
}

pub fn starts_with_ucwa(bytes: &[u8]) -> bool {
    bytes
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"/ucwa"))
}

/// Whether a segment is an ASP.NET cookieless-session segment: `(`, then one or more groups of
/// a letter and a parenthesised value without `)`, then `)`, as `(S(abc))` or `(A(x)S(y))`.
/// `CookielessHelperClass.IsValidHeader` wants an upper-case letter; any ASCII letter is taken
/// here, which removes more.
pub fn is_cookieless_segment(segment: &str) -> bool {
    let Some(inner) = segment.strip_prefix('(').and_then(|s| s.strip_suffix(')')) else {
        return false;
    };
    let mut rest = inner.as_bytes();
    if rest.is_empty() {
        return false;
    }
    while let [letter, b'(', after @ ..] = rest {
        if !letter.is_ascii_alphabetic() {
            return false;
        }
        let Some(close) = after.iter().position(|&b| b == b')') else {
            return false;
        };
        rest = &after[close + 1..];
        if rest.is_empty() {
            return true;
        }
    }
    false
}

/// The text with every cookieless segment between separators (`/` or `\`) removed, with one
/// of its separators. Borrows when there is none.
fn remove_cookieless_text(path: &str) -> Cow<'_, str> {
    if !path.split(['/', '\\']).any(is_cookieless_segment) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut first = true;
    for (i, segment) in path.split(['/', '\\']).enumerate() {
        if i > 0 && is_cookieless_segment(segment) {
            continue;
        }
        if !first {
            out.push('/');
        }
        out.push_str(segment);
        first = false;
    }
    Cow::Owned(out)
}

/// How a segment of only dots and spaces (other than `.` and `..`) is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dots {
    /// Windows may read `.. ` as `..` once trailing dots and spaces go, or drop it: refused.
    Refuse,
    AsParent,
    Dropped,
}

/// Splits by `splitting`, resolves `.`/`..`, strips trailing dots and spaces, removes
/// cookieless segments, folds case.
fn normalise(decoded: &str, dots: Dots, splitting: Splitting) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        let segment = match segment.split_once([';', ':']) {
            Some((before, _)) if splitting.drop_params => before,
            _ => segment,
        };
        match segment {
            "" if splitting.empty_segments => segments.push(""),
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => {
                let stripped = segment.trim_end_matches(['.', ' ']);
                match (stripped.is_empty(), dots) {
                    (false, _) => segments.push(stripped),
                    (true, Dots::Refuse) => return Err(PathError::DotSegment),
                    (true, Dots::AsParent) => {
                        segments.pop();
                    }
                    (true, Dots::Dropped) => {}
                }
            }
        }
    }
    if splitting.params_after_dots {
        for segment in &mut segments {
            if let Some((before, _)) = segment.split_once([';', ':']) {
                *segment = before.trim_end_matches(['.', ' ']);
            }
        }
    }
    segments.retain(|s| !s.is_empty() && !is_cookieless_segment(s));
    let mut out = String::with_capacity(decoded.len() + 1);
    for segment in segments {
        let start = out.len();
        out.push('/');
        if segment.is_ascii() {
            out.push_str(segment);
            out[start..].make_ascii_lowercase();
        } else {
            out.extend(segment.chars().map(fold));
            // Folding can make one (`(ſ(S(x))` is `(s(s(x))`): the reading is the same either
            // way round, so that reading it again changes nothing (proptest, issue 14).
            if is_cookieless_segment(&out[start + 1..]) {
                out.truncate(start);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Decodes until no `%` is left, in at most [`MAX_DECODE_ROUNDS`] rounds.
fn decode_fully(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut bytes = escape::decode(raw.as_bytes(), escape::PATH)?.into_owned();
    let mut rounds = 1;
    while bytes.contains(&b'%') {
        if rounds == MAX_DECODE_ROUNDS {
            return Err(PathError::TooDeeplyEncoded);
        }
        bytes = escape::decode(&bytes, escape::PATH)?.into_owned();
        rounds += 1;
    }
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| PathError::InvalidUtf8)
}

/// Path pieces that reach deep into the readings: escapes of every kind, separators, dot
/// segments, cookieless groups, ignorable code points, resource names.
#[cfg(test)]
pub(crate) fn path_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("\\".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just(";".to_string()),
        Just(" ".to_string()),
        Just("%".to_string()),
        Just("%25".to_string()),
        Just("%2F".to_string()),
        Just("%5c".to_string()),
        Just("%2e".to_string()),
        Just("%28".to_string()),
        Just("%29".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("(S(x))".to_string()),
        Just("%u".to_string()),
        Just("%uD83D".to_string()),
        Just("%uDE00".to_string()),
        Just("%u0073".to_string()),
        Just("%C5%BF".to_string()),
        Just("%E2%80%8B".to_string()),
        Just("ucwa".to_string()),
        Just("UCWA".to_string()),
        Just("batch".to_string()),
        Just("simultaneousRingToContact".to_string()),
        "[0-9a-fA-FuUS]{1,4}",
        "\\PC{0,3}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
}

#[cfg(test)]
mod tests;
