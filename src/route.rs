//! Decides whether a request path is guarded, judging the path as IIS and UCWA will act on it
//! (SPEC §3 "Canonical path", §10 "Path"). The request itself is always forwarded with its
//! original bytes; the canonical form is only used for classification.

use std::borrow::Cow;
use std::collections::HashMap;

/// One guarded resource: the last path segment name (compared ASCII case-insensitively) and the
/// parameter that carries its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    pub resource: Box<str>,
    pub parameter: Box<str>,
}

/// The guarded resources of one configuration, looked up by last segment in O(1).
///
/// Keys are stored case-folded (see [`canonical_path`]), so a lookup only folds the segment.
#[derive(Clone, Debug, Default)]
pub struct Guards {
    by_segment: HashMap<Box<str>, Guard>,
    /// Longest folded key in bytes: longer segments cannot match and are rejected without work.
    longest: usize,
}

/// Segments up to this many bytes are folded on the stack during lookup.
const INLINE_KEY: usize = 64;

impl Guards {
    /// Builds the lookup table. When two guards name the same resource (after case folding) the
    /// first one is kept; configuration validation is expected to report such duplicates.
    pub fn new(guards: impl IntoIterator<Item = Guard>) -> Guards {
        let mut by_segment = HashMap::new();
        let mut longest = 0;
        for guard in guards {
            let key: String = guard.resource.chars().map(fold).collect();
            longest = longest.max(key.len());
            by_segment.entry(key.into_boxed_str()).or_insert(guard);
        }
        Guards {
            by_segment,
            longest,
        }
    }

    /// SPEC §3 defaults: the three call-forwarding resources, all taking `target`.
    pub fn defaults() -> Vec<Guard> {
        [
            "simultaneousRingToContact",
            "immediateForwardToContact",
            "unansweredCallToContact",
        ]
        .into_iter()
        .map(|resource| Guard {
            resource: resource.into(),
            parameter: "target".into(),
        })
        .collect()
    }

    /// The guard whose resource is `segment`, in any case. Does not allocate unless a configured
    /// resource name is longer than 64 bytes.
    pub fn get(&self, segment: &str) -> Option<&Guard> {
        if segment.is_empty() || self.by_segment.is_empty() {
            return None;
        }
        let mut buf = [0u8; INLINE_KEY];
        let mut len = 0;
        for c in segment.chars().map(fold) {
            let mut utf8 = [0u8; 4];
            let encoded = c.encode_utf8(&mut utf8).as_bytes();
            let end = len + encoded.len();
            if end > self.longest {
                return None;
            }
            let Some(slot) = buf.get_mut(len..end) else {
                let key: String = segment.chars().map(fold).collect();
                return self.by_segment.get(key.as_str());
            };
            slot.copy_from_slice(encoded);
            len = end;
        }
        let key = std::str::from_utf8(buf.get(..len)?).ok()?;
        self.by_segment.get(key)
    }

    /// Number of distinct guarded resources.
    pub fn len(&self) -> usize {
        self.by_segment.len()
    }

    /// True when nothing is guarded.
    pub fn is_empty(&self) -> bool {
        self.by_segment.is_empty()
    }
}

/// Proof that [`classify`] found a path unguarded. Only this module makes one, so a request
/// goes to the pool unjudged only on its word (see `policy::Clearance`).
#[derive(Debug, PartialEq, Eq)]
pub struct Unguarded(());

/// How a request is handled, by path alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'g> {
    /// Not guarded: forward untouched and streamed.
    Passthrough(Unguarded),
    /// Canonical path is under /ucwa/ and its last non-empty segment is a guarded resource.
    Guarded(&'g Guard),
    /// Canonical path is under /ucwa/ and ends in /batch (SPEC §3 Batches).
    Batch,
    /// The path could be a UCWA path but cannot be canonicalised: refuse 400 `bad_path`.
    BadPath,
}

/// Why a path has no canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("a '%' does not start a valid escape")]
    InvalidEscape,
    #[error("a %u escape is an unpaired UTF-16 surrogate")]
    LoneSurrogate,
    #[error("the path does not decode to UTF-8")]
    InvalidUtf8,
    #[error("the path decodes to a control character")]
    ControlCharacter,
    #[error("the path is percent-encoded too many times")]
    TooDeeplyEncoded,
    #[error("a segment of dots and spaces is neither `.` nor `..`")]
    DotSegment,
}

/// The path as IIS and UCWA act on it, case-folded.
///
/// Percent escapes (`%XX` and IIS `%uNNNN` or `%UNNNN`, surrogate pairs combined) are decoded
/// until none is left, in at most 16 rounds, so the result never contains `%`; it must then be
/// UTF-8 without control characters (C0, DEL and C1). Then `\` is a separator, empty, `.` and `..` segments
/// are resolved (never above the root), `;params` are dropped and trailing dots and spaces are
/// stripped from each segment, and a trailing `/` is dropped. The result starts with `/`, is
/// idempotent under this function, and is folded: ASCII lower case, plus `ſ`→`s`, `ı` and
/// `İ`→`i` and the Kelvin sign→`k`, the non-ASCII letters that .NET case-insensitive comparison
/// or lower-casing equates with ASCII ones.
///
/// Borrows `raw_path` when it is already canonical.
pub fn canonical_path(raw_path: &str) -> Result<Cow<'_, str>, PathError> {
    if is_plain(raw_path) {
        let trimmed = trim_trailing_slash(raw_path);
        return Ok(if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(trimmed.to_ascii_lowercase())
        } else {
            Cow::Borrowed(trimmed)
        });
    }
    let decoded = decode_strict(raw_path)?;
    if decoded.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    normalise(&decoded).map(Cow::Owned)
}

/// Classifies a request path (no query, as sent on the request line).
///
/// A path that cannot be canonicalised is `BadPath` when it could reach UCWA: the raw path, a
/// single lenient decode of it, or its lenient canonical form (invalid escapes kept literally)
/// starts with `/ucwa`, case-insensitively. Any other such path is `Passthrough`.
pub fn classify<'g>(raw_path: &str, guards: &'g Guards) -> Route<'g> {
    if is_plain(raw_path) {
        return route_of(trim_trailing_slash(raw_path), guards);
    }
    match canonical_path(raw_path) {
        Ok(canonical) => route_of(&canonical, guards),
        Err(_) if could_reach_ucwa(raw_path) => Route::BadPath,
        Err(_) => Route::Passthrough(Unguarded(())),
    }
}

/// Routes a path that is canonical up to ASCII case.
fn route_of<'g>(path: &str, guards: &'g Guards) -> Route<'g> {
    const PREFIX: &[u8] = b"/ucwa/";
    let under_ucwa = path.len() > PREFIX.len()
        && path
            .as_bytes()
            .get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX));
    if !under_ucwa {
        return Route::Passthrough(Unguarded(()));
    }
    // Only an escape (`%3F`, `%23`) puts these in a path; a back end that re-reads the decoded
    // path as a URL would cut the segment there, so such a UCWA path cannot be classified.
    if path.contains(['?', '#']) {
        return Route::BadPath;
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.eq_ignore_ascii_case("batch") {
        Route::Batch
    } else {
        guards
            .get(last)
            .map_or(Route::Passthrough(Unguarded(())), Route::Guarded)
    }
}

/// True when canonicalisation changes nothing but ASCII case and a trailing `/`: rooted,
/// printable ASCII without `%`, `\` or `;`, no empty segment before the last, and no segment
/// ending in `.` (which covers `.` and `..`).
fn is_plain(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut previous = b'/';
    for &b in &bytes[1..] {
        let ok = match b {
            b'%' | b'\\' | b';' => false,
            b'/' => previous != b'/' && previous != b'.',
            0x21..=0x7e => true,
            _ => false,
        };
        if !ok {
            return false;
        }
        previous = b;
    }
    previous != b'.'
}

fn trim_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    }
}

/// Case folding used for matching: ASCII lower case plus the non-ASCII letters whose simple
/// Unicode case mapping is an ASCII letter, which .NET ordinal case-insensitive comparison
/// (`ſ`, `ı` upper-case to `S`, `I`) or lower-casing (`İ`, the Kelvin sign lower-case to `i`,
/// `k`) equates with ASCII letters.
fn fold(c: char) -> char {
    match c {
        '\u{17f}' => 's',
        '\u{131}' | '\u{130}' => 'i',
        '\u{212a}' => 'k',
        _ => c.to_ascii_lowercase(),
    }
}

/// Splits, drops `;params`, resolves `.`/`..`, strips trailing dots and spaces, folds case.
/// A segment such as `.. ` or `...` is refused: Windows may read it as `..` once trailing dots
/// and spaces go, or drop it, and the two readings lead to different resources.
fn normalise(decoded: &str) -> Result<String, PathError> {
    normalise_reading(decoded, Dots::Refuse)
}

/// How a segment of only dots and spaces (other than `.` and `..`) is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dots {
    Refuse,
    AsParent,
    Dropped,
}

fn normalise_reading(decoded: &str, dots: Dots) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        let segment = segment.split_once(';').map_or(segment, |(s, _)| s);
        match segment {
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
    let mut out = String::with_capacity(decoded.len() + 1);
    if segments.is_empty() {
        out.push('/');
    }
    for segment in segments {
        out.push('/');
        out.extend(segment.chars().map(fold));
    }
    Ok(out)
}

/// Decoding rounds allowed before a path counts as undecodable. Without a bound, nested `%25`
/// would make decoding quadratic in the path length; IIS itself decodes at most twice.
const MAX_DECODE_ROUNDS: usize = 16;

/// Decodes until no `%` is left, in at most [`MAX_DECODE_ROUNDS`] rounds.
fn decode_strict(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut bytes = decode_once(raw.as_bytes(), false)?;
    let mut rounds = 1;
    while bytes.contains(&b'%') {
        if rounds == MAX_DECODE_ROUNDS {
            return Err(PathError::TooDeeplyEncoded);
        }
        bytes = decode_once(&bytes, false)?;
        rounds += 1;
    }
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| PathError::InvalidUtf8)
}

/// One decoding round. Lenient mode keeps an undecodable `%` as a literal byte.
fn decode_once(input: &[u8], lenient: bool) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        match escape_at(input, i) {
            Ok((Decoded::Byte(byte), len)) => {
                out.push(byte);
                i += len;
            }
            Ok((Decoded::Char(c), len)) => {
                out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
                i += len;
            }
            Err(_) if lenient => {
                out.push(b'%');
                i += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

enum Decoded {
    Byte(u8),
    Char(char),
}

/// Decodes the escape starting at the `%` at `at`; returns it and its length in bytes.
fn escape_at(input: &[u8], at: usize) -> Result<(Decoded, usize), PathError> {
    if matches!(input.get(at + 1), Some(b'u' | b'U')) {
        let unit = hex_value(input.get(at + 2..at + 6)).ok_or(PathError::InvalidEscape)?;
        let (code, len) = match unit {
            0xd800..=0xdbff => {
                let low = match (
                    input.get(at + 6..at + 8),
                    hex_value(input.get(at + 8..at + 12)),
                ) {
                    (Some([b'%', b'u' | b'U']), Some(low @ 0xdc00..=0xdfff)) => low,
                    _ => return Err(PathError::LoneSurrogate),
                };
                (0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00), 12)
            }
            0xdc00..=0xdfff => return Err(PathError::LoneSurrogate),
            _ => (unit, 6),
        };
        let c = char::from_u32(code).ok_or(PathError::LoneSurrogate)?;
        return Ok((Decoded::Char(c), len));
    }
    let byte = hex_value(input.get(at + 1..at + 3)).ok_or(PathError::InvalidEscape)?;
    // Two hex digits always fit a byte.
    Ok((Decoded::Byte(byte as u8), 3))
}

fn hex_value(digits: Option<&[u8]>) -> Option<u32> {
    digits?.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

fn starts_with_ucwa(bytes: &[u8]) -> bool {
    bytes
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"/ucwa"))
}

/// Whether a path that failed canonicalisation could still be acted on by UCWA.
fn could_reach_ucwa(raw: &str) -> bool {
    if starts_with_ucwa(raw.as_bytes()) {
        return true;
    }
    let Ok(mut bytes) = decode_once(raw.as_bytes(), true) else {
        return false;
    };
    if starts_with_ucwa(&bytes) {
        return true;
    }
    for _ in 1..MAX_DECODE_ROUNDS {
        match decode_once(&bytes, true) {
            Ok(next) if next != bytes => bytes = next,
            _ => break,
        }
    }
    let lenient = String::from_utf8_lossy(&bytes);
    [Dots::AsParent, Dots::Dropped]
        .into_iter()
        .any(|dots| normalise_reading(&lenient, dots).is_ok_and(|n| starts_with_ucwa(n.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SIM: &str = "/ucwa/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact";

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Want {
        Guarded(&'static str),
        Batch,
        Pass,
        Bad,
    }
    use Want::*;

    fn guards() -> Guards {
        let mut all = Guards::defaults();
        all.push(Guard {
            resource: "changeNumber".into(),
            parameter: "number".into(),
        });
        Guards::new(all)
    }

    fn got(route: Route<'_>) -> Want {
        match route {
            Route::Passthrough(_) => Pass,
            Route::Batch => Batch,
            Route::BadPath => Bad,
            Route::Guarded(g) => Guarded(match &*g.resource {
                "simultaneousRingToContact" => "sim",
                "immediateForwardToContact" => "imm",
                "unansweredCallToContact" => "una",
                "changeNumber" => "chg",
                _ => "?",
            }),
        }
    }

    #[test]
    fn classification_table() {
        let deep_ucwa = format!("/ucwa/v1/{}73imultaneousRingToContact", nested_percent(17));
        let deep_other = format!("/other/{}41", nested_percent(17));
        let cases: &[(&str, Want)] = &[
            (SIM, Guarded("sim")),
            ("/UCWA/V1/APPLICATIONS/192/ME/CALLFORWARDINGSETTINGS/SIMULTANEOUSRINGSETTINGS/SIMULTANEOUSRINGTOCONTACT", Guarded("sim")),
            ("/ucwa/oauth/v1/applications/1/me/callForwardingSettings/immediateForwardSettings/immediateForwardToContact", Guarded("imm")),
            ("/ucwa/v7/anything/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/unansweredCallToContact", Guarded("una")),
            ("/ucwa/v1/me/changeNumber", Guarded("chg")),
            ("/ucwa/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/%2573imultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/%252573imultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/%73imultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/%u0073imultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/%U0073imultaneousRingToContact", Guarded("sim")),
            ("/%75cwa/v1/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/..%2FsimultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x%5CsimultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x%255CsimultaneousRingToContact", Guarded("sim")),
            ("\\ucwa\\v1\\applications\\192\\simultaneousRingToContact", Guarded("sim")),
            ("//ucwa//v1//applications//simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/a/./b/../simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact/", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact//", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact/.", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact;x", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact;a=b/", Guarded("sim")),
            ("/ucwa/v1/x;jsessionid=1/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact.", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact...", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact%20", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact%20.%20.", Guarded("sim")),
            ("/ucwa/v1/%C5%BFimultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact/x/..", Guarded("sim")),
            ("/../ucwa/v1/simultaneousRingToContact", Guarded("sim")),
            ("/../../ucwa/simultaneousRingToContact", Guarded("sim")),
            ("/static/..%2Fucwa/v1/simultaneousRingToContact", Guarded("sim")),
            ("ucwa/v1/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact%00", Bad),
            ("/ucwa/v1/simultaneousRingToContact%0a", Bad),
            ("/ucwa/v1/x%7f", Bad),
            ("/ucwa/%", Bad),
            ("/ucwa/v1/%ff", Bad),
            ("/ucwa/v1/%C0%AFsimultaneousRingToContact", Bad),
            ("/ucwa/v1/%zz", Bad),
            ("/ucwa/v1/%2", Bad),
            ("/ucwa/v1/%25", Bad),
            ("/ucwa/v1/%uD83D", Bad),
            ("/ucwa/v1/%uDE00%uD83D", Bad),
            ("/ucwa/v1/%u00", Bad),
            (deep_ucwa.as_str(), Bad),
            (deep_other.as_str(), Pass),
            ("/UCWA/x%", Bad),
            ("/ucwax/%", Bad),
            ("/%75cwa/v1/simultaneousRingToContact%", Bad),
            ("/%2575cwa/v1/simultaneousRingToContact%", Bad),
            ("\\ucwa\\v1\\x%", Bad),
            ("/other/%", Pass),
            ("/other/%ff", Pass),
            ("/other/%00/ucwa", Pass),
            ("/ucwa/v1/%uD83D%uDE00", Pass),
            ("/ucwa/v1/applications/192/me", Pass),
            ("/ucwa/v1/applications/192/me/", Pass),
            ("/ucwa/v1/simultaneousRingToContactX", Pass),
            ("/ucwa/v1/XsimultaneousRingToContact", Pass),
            ("/ucwa/v1/simultaneousRingToContact/events", Pass),
            ("/ucwa/v1/simultaneousRingToContact/..", Pass),
            ("/static/simultaneousRingToContact", Pass),
            ("/ucwax/simultaneousRingToContact", Pass),
            ("/simultaneousRingToContact", Pass),
            ("/ucwa/", Pass),
            ("/ucwa", Pass),
            ("/ucwa/simultaneousRingToContact/../..", Pass),
            ("/", Pass),
            ("", Pass),
            ("/autodiscover/autodiscoverservice.svc/root", Pass),
            ("/ucwa/v1/applications/192/batch", Batch),
            ("/ucwa/v1/applications/192/BATCH/", Batch),
            ("/ucwa/v1/applications/192/batch;x", Batch),
            ("/ucwa/v1/applications/192/%62atch", Batch),
            ("/ucwa/batch", Batch),
            ("/ucwa/v1/x/simultaneousRingToContact%3Fa", Bad),
            ("/ucwa/v1/x/simultaneousRingToContact%23a", Bad),
            ("/ucwa/v1/x%3F/simultaneousRingToContact", Bad),
            ("/other/x%3Fy", Pass),
            ("/ucwa/v1/simultaneousRingToContact/x/..%20", Bad),
            ("/ucwa/v1/simultaneousRingToContact/x/...", Bad),
            ("/x/.../y", Pass),
            ("/x/...%20/ucwa/v1/simultaneousRingToContact", Bad),
            ("/batch", Pass),
            ("/other/batch", Pass),
        ];
        let guards = guards();
        let mut failures = Vec::new();
        for &(path, want) in cases {
            let have = got(classify(path, &guards));
            if have != want {
                failures.push(format!("{path:?}: want {want:?}, got {have:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// A `%` that takes `rounds` decoding rounds to appear, before two hex digits.
    fn nested_percent(rounds: usize) -> String {
        format!("%{}", "25".repeat(rounds - 1))
    }

    #[test]
    fn decoding_rounds_are_bounded() {
        let ok = format!("/ucwa/{}41", nested_percent(MAX_DECODE_ROUNDS));
        assert_eq!(canonical_path(&ok).as_deref(), Ok("/ucwa/a"));
        let deep = format!("/ucwa/{}41", nested_percent(MAX_DECODE_ROUNDS + 1));
        assert_eq!(canonical_path(&deep), Err(PathError::TooDeeplyEncoded));
        let huge = format!("/ucwa/%{}41", "25".repeat(30_000));
        assert_eq!(canonical_path(&huge), Err(PathError::TooDeeplyEncoded));
        let hidden = format!("/{}75cwa/v1/x%", nested_percent(MAX_DECODE_ROUNDS - 1));
        assert_eq!(classify(&hidden, &guards()), Route::BadPath);
    }

    #[test]
    fn canonical_forms() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/ucwa/v1/me", Ok("/ucwa/v1/me")),
            ("/UCWA/V1/Me/", Ok("/ucwa/v1/me")),
            ("/", Ok("/")),
            ("", Ok("/")),
            ("//", Ok("/")),
            ("/a/../..", Ok("/")),
            ("/a/%2e%2e/b", Ok("/b")),
            ("/a/%252e%252e/b", Ok("/b")),
            ("/a b /c", Ok("/a b/c")),
            ("/caf%C3%A9", Ok("/caf\u{e9}")),
            ("/%u00C9t%C3%89", Ok("/\u{c9}t\u{c9}")),
            ("/%uD83D%uDE00", Ok("/\u{1f600}")),
            ("/a%3Fb", Ok("/a?b")),
            ("/\u{212a}elvin", Ok("/kelvin")),
            ("/%C4%B0D/\u{130}d", Ok("/id/id")),
            ("/x;a/b;c/", Ok("/x/b")),
            ("/x/.../y", Err(PathError::DotSegment)),
            (
                "/ucwa/v1/simultaneousRingToContact/x/.. ",
                Err(PathError::DotSegment),
            ),
            ("/%", Err(PathError::InvalidEscape)),
            ("/%g0", Err(PathError::InvalidEscape)),
            ("/%u12", Err(PathError::InvalidEscape)),
            ("/%uDC00", Err(PathError::LoneSurrogate)),
            ("/%uD800x", Err(PathError::LoneSurrogate)),
            ("/%ff", Err(PathError::InvalidUtf8)),
            ("/a%09b", Err(PathError::ControlCharacter)),
            ("/a%C2%85", Err(PathError::ControlCharacter)),
        ];
        for &(raw, want) in cases {
            let have = canonical_path(raw);
            assert_eq!(have.as_deref().map_err(|e| *e), want, "{raw:?}");
        }
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(
            canonical_path("/ucwa/v1/applications/192/me"),
            Ok(Cow::Borrowed("/ucwa/v1/applications/192/me"))
        ));
        assert!(matches!(
            canonical_path("/ucwa/v1/me/"),
            Ok(Cow::Borrowed("/ucwa/v1/me"))
        ));
        assert!(matches!(
            canonical_path("/static/app.min.js"),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn guard_lookup_folds_case() {
        let guards = guards();
        assert_eq!(guards.len(), 4);
        assert!(guards.get("SIMULTANEOUSRINGTOCONTACT").is_some());
        assert!(guards.get("\u{17f}imultaneousRingToContact").is_some());
        assert!(guards.get("s\u{130}multaneousRingToContact").is_some());
        assert!(guards.get("s\u{131}multaneousRingToContact").is_some());
        assert!(guards.get("changenumber").is_some());
        assert!(guards.get("").is_none());
        assert!(guards.get(&"x".repeat(1000)).is_none());
        let long = "r".repeat(100);
        let custom = Guards::new([Guard {
            resource: long.clone().into(),
            parameter: "p".into(),
        }]);
        assert!(custom.get(&long.to_uppercase()).is_some());
        assert!(custom.get("r").is_none());
    }

    #[test]
    fn first_duplicate_guard_wins() {
        let guards = Guards::new([
            Guard {
                resource: "thing".into(),
                parameter: "a".into(),
            },
            Guard {
                resource: "THING".into(),
                parameter: "b".into(),
            },
        ]);
        assert_eq!(guards.len(), 1);
        assert_eq!(guards.get("thing").map(|g| &*g.parameter), Some("a"));
    }

    fn path_strategy() -> impl Strategy<Value = String> {
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
            Just("%u".to_string()),
            Just("%uD83D".to_string()),
            Just("%uDE00".to_string()),
            Just("%u0073".to_string()),
            Just("%C5%BF".to_string()),
            Just("ucwa".to_string()),
            Just("UCWA".to_string()),
            Just("batch".to_string()),
            Just("simultaneousRingToContact".to_string()),
            "[0-9a-fA-FuU]{1,4}",
            "\\PC{0,3}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn canonical_path_is_idempotent(raw in path_strategy()) {
            if let Ok(once) = canonical_path(&raw) {
                prop_assert!(once.starts_with('/'));
                prop_assert!(!once.contains('%'));
                let twice = canonical_path(&once);
                prop_assert_eq!(twice.as_deref(), Ok(&*once));
            }
        }

        #[test]
        fn canonical_path_never_panics(raw in any::<String>()) {
            if let Ok(once) = canonical_path(&raw) {
                let twice = canonical_path(&once);
                prop_assert_eq!(twice.as_deref(), Ok(&*once));
            }
        }

        #[test]
        fn classify_never_panics(raw in path_strategy(), other in any::<String>()) {
            let guards = guards();
            let _ = classify(&raw, &guards);
            let _ = classify(&other, &guards);
        }

        #[test]
        fn fast_path_agrees_with_full_canonicalisation(raw in "(/[a-zA-Z0-9._~!$&'()*+,=:@-]{0,6}){0,6}/?") {
            let guards = guards();
            let full = normalise(&raw);
            let canonical = canonical_path(&raw);
            prop_assert_eq!(canonical.as_deref().ok(), full.as_deref().ok());
            if let Ok(full) = &full {
                prop_assert_eq!(classify(&raw, &guards), route_of(full, &guards));
            }
        }
    }
}
