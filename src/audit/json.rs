//! The trail's lines, written by hand into one `String` sized once: serde_json spent ~12,500
//! instructions on a guarded POST's decision line and ~3,800 on its outcome line. Every line is
//! byte for byte what serde_json wrote from the records' old `#[derive(Serialize)]` definitions,
//! which the tests keep (`src/audit/tests.rs`) and compare against with random records.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{escaped, Access, Cut, Decided, Decision, Outcome, Source};
use super::{METHOD_BYTES, NAME_BYTES, PATH_BYTES, RAW_TARGET_CHARS};
use crate::policy::Rule;
use crate::target::Target;

/// A record the trail writes as one line.
pub trait Record {
    /// The line: one JSON object and its newline.
    fn line(&self) -> String;

    /// When the record was made, if it says (its `ts`): the line's syslog TIMESTAMP too.
    fn time(&self) -> Option<SystemTime> {
        None
    }
}

/// What serde_json escapes in a string, per byte: `"` and `\` with a backslash, the five short
/// control escapes, the other C0 controls as `\u00XX`; 0 for a byte written as it is (DEL and
/// all of UTF-8 above ASCII included).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as the inside of a JSON string (RFC 8259), as serde_json escapes it.
#[inline]
fn push_escaped(out: &mut String, s: &str) {
    if needs_escapes(s.as_bytes()) {
        push_with_escapes(out, s);
    } else {
        out.push_str(s);
    }
}

/// Whether JSON escapes any of these bytes. Nearly every value needs none: one branch-free pass
/// the compiler vectorises.
#[inline]
fn needs_escapes(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |special, &b| {
        special | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

#[cold]
#[inline(never)]
fn push_with_escapes(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        // `b` is ASCII, so both `start` and `i` are character boundaries.
        out.push_str(&s[start..i]);
        out.push('\\');
        if escape == b'u' {
            out.push_str("u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push(char::from(escape));
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Printable ASCII but `"` and `\`: client text that [`escaped`] leaves as it is and JSON needs
/// no escapes for (nearly every path, host and method).
fn plain_ascii(bytes: &[u8]) -> bool {
    !bytes.iter().fold(false, |odd, &b| {
        odd | (b.wrapping_sub(0x20) > 0x7e - 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// `time` as humantime's `format_rfc3339_millis` writes it (`2026-12-02T10:15:02.114Z`, the
/// milliseconds cut, not rounded), without its formatter; `None` where humantime fails (before
/// 1970, after 9999).
pub(super) fn rfc3339_millis(time: SystemTime) -> Option<[u8; 24]> {
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    let secs = since.as_secs();
    if secs >= 253_402_300_800 {
        return None;
    }
    // The date and time of day change once a second; lines come by the thousand. The text of
    // the last second is kept per thread, and only the milliseconds are written anew.
    thread_local! {
        static LAST: Cell<(u64, [u8; 24])> = const { Cell::new((u64::MAX, [0; 24])) };
    }
    let (last, mut text) = LAST.get();
    if last != secs {
        text = second_text(secs);
        LAST.set((secs, text));
    }
    put_digits(&mut text, 20, 3, u64::from(since.subsec_millis()));
    Some(text)
}

/// `secs` since the epoch (before year 10000) as `YYYY-MM-DDThh:mm:ss.000Z`.
fn second_text(secs: u64) -> [u8; 24] {
    // Days to a civil date (Howard Hinnant's `civil_from_days`), in eras of 400 years from
    // 0000-03-01.
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let of_era = z - era * 146_097;
    let year_of_era = (of_era - of_era / 1_460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * of_year + 2) / 153;
    let day = of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    let mut text = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut text, 0, 4, year);
    put_digits(&mut text, 5, 2, month);
    put_digits(&mut text, 8, 2, day);
    put_digits(&mut text, 11, 2, of_day / 3_600);
    put_digits(&mut text, 14, 2, of_day / 60 % 60);
    put_digits(&mut text, 17, 2, of_day % 60);
    text
}

/// `n`'s last `width` decimal digits into `text` at `at`.
fn put_digits(text: &mut [u8; 24], at: usize, width: usize, mut n: u64) {
    for i in (at..at + width).rev() {
        text[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// A `fmt::Write` that escapes what it is given: a `Display` value written as a JSON string
/// without formatting it into a string of its own first (serde_json's `collect_str`).
struct Escaping<'o>(&'o mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.0, s);
        Ok(())
    }
}

/// One line being written.
struct Json(String);

impl Json {
    fn with_capacity(capacity: usize) -> Json {
        Json(String::with_capacity(capacity))
    }

    /// JSON text as it is: keys and punctuation.
    fn raw(&mut self, text: &str) -> &mut Json {
        self.0.push_str(text);
        self
    }

    fn str(&mut self, s: &str) -> &mut Json {
        self.0.push('"');
        push_escaped(&mut self.0, s);
        self.0.push('"');
        self
    }

    fn opt_str(&mut self, s: Option<&str>) -> &mut Json {
        match s {
            Some(s) => self.str(s),
            None => self.raw("null"),
        }
    }

    /// A name of ringfence's own (a kind, a decision, a reason, a label): snake_case ASCII,
    /// which JSON writes as it is.
    fn name(&mut self, s: &'static str) -> &mut Json {
        debug_assert!(plain_ascii(s.as_bytes()), "{s:?}");
        self.0.push('"');
        self.0.push_str(s);
        self.0.push('"');
        self
    }

    /// Client text, escaped into visible `\u{..}` and cut ([`escaped`]), then as a JSON string.
    /// Short printable ASCII (nearly all of it) is neither, and is checked in one pass.
    fn client_text(&mut self, s: &str, cut: Cut) -> &mut Json {
        let (Cut::Bytes(max) | Cut::Chars(max)) = cut;
        if s.len() <= max && plain_ascii(s.as_bytes()) {
            self.0.push('"');
            self.0.push_str(s);
            self.0.push('"');
            return self;
        }
        self.str(&escaped(s, cut))
    }

    /// The request's `host`, `method` and `path` fields, each cut as the trail cuts client text
    /// (the decision and the access line carry them alike).
    fn request(&mut self, host: &str, method: &str, path: &str) -> &mut Json {
        self.raw(",\"host\":")
            .client_text(host, Cut::Bytes(NAME_BYTES))
            .raw(",\"method\":")
            .client_text(method, Cut::Bytes(METHOD_BYTES))
            .raw(",\"path\":")
            .client_text(path, Cut::Bytes(PATH_BYTES))
    }

    fn opt_client_text(&mut self, s: Option<&str>, cut: Cut) -> &mut Json {
        match s {
            Some(s) => self.client_text(s, cut),
            None => self.raw("null"),
        }
    }

    /// A value's `Display` form as a JSON string.
    fn display(&mut self, value: &impl fmt::Display) -> &mut Json {
        self.0.push('"');
        // Writing into a String cannot fail, and the trail's `Display`s (a time, a target, a
        // rule) report no errors of their own.
        let _ = write!(Escaping(&mut self.0), "{value}");
        self.0.push('"');
        self
    }

    fn timestamp(&mut self, time: SystemTime) -> &mut Json {
        match rfc3339_millis(time) {
            Some(text) => {
                self.0.push('"');
                // Only ASCII digits and `-:.TZ`.
                self.0
                    .push_str(std::str::from_utf8(&text).unwrap_or_default());
                self.0.push('"');
                self
            }
            None => self.display(&humantime::format_rfc3339_millis(time)),
        }
    }

    /// A target as its `Display` writes it; a number's digits need no escapes.
    fn target(&mut self, target: &Target) -> &mut Json {
        match target {
            Target::Number(number) => self.raw("\"tel:+").raw(number.digits()).raw("\""),
            Target::Contact(_) => self.display(target),
        }
    }

    /// A rule as its `Display` writes it (`scope.list entry`, then ` and scope.list entry`).
    fn rule(&mut self, rule: &Rule<'_>) -> &mut Json {
        self.0.push('"');
        push_escaped(&mut self.0, rule.scope);
        self.0.push('.');
        push_escaped(&mut self.0, rule.list);
        self.0.push(' ');
        push_escaped(&mut self.0, rule.entry);
        if let Some((list, entry)) = rule.and {
            self.0.push_str(" and ");
            push_escaped(&mut self.0, rule.scope);
            self.0.push('.');
            push_escaped(&mut self.0, list);
            self.0.push(' ');
            push_escaped(&mut self.0, entry);
        }
        self.0.push('"');
        self
    }

    fn uint(&mut self, n: u64) -> &mut Json {
        self.0.push_str(itoa::Buffer::new().format(n));
        self
    }

    fn opt_uint(&mut self, n: Option<u64>) -> &mut Json {
        match n {
            Some(n) => self.uint(n),
            None => self.raw("null"),
        }
    }

    fn end(&mut self) -> String {
        self.0.push_str("}\n");
        std::mem::take(&mut self.0)
    }
}

fn len(s: Option<&str>) -> usize {
    s.map_or(0, str::len)
}

impl Decided {
    /// The line's `decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decided::Allow => "allow",
            Decided::Deny => "deny",
            Decided::NotSent => "not_sent",
            Decided::ShadowDeny => "shadow_deny",
        }
    }
}

impl Source {
    /// The line's `source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Pool => "pool",
            Source::Ringfence => "ringfence",
            Source::ClientGone => "client_gone",
        }
    }
}

/// A usize as serde_json writes it (the same digits as a u64).
fn wide(n: usize) -> u64 {
    n as u64
}

impl Decision<'_> {
    /// The line's length, but for escapes and long targets.
    pub(super) fn capacity(&self) -> usize {
        // The keys, punctuation, timestamp and nulls take ~340 bytes; a target ~40; the rest is
        // the values' own text. Escapes, rarely, grow the string.
        360 + self.id.len()
            + len(self.client_request_id)
            + self.client.len()
            + len(self.sni).min(NAME_BYTES)
            + self.host.len().min(NAME_BYTES)
            + self.method.len().min(METHOD_BYTES)
            + self.path.len().min(PATH_BYTES)
            + self.resource.len()
            + len(self.organisation)
            + len(self.application)
            + len(self.user)
            + len(self.token_fingerprint)
            + self.targets.len() * 48
            + len(self.raw_target).min(4 * RAW_TARGET_CHARS)
            + self.reason.len()
            + self.rule.map_or(0, |r| {
                let and = r.and.map_or(0, |(list, entry)| {
                    6 + r.scope.len() + list.len() + entry.len()
                });
                2 + r.scope.len() + r.list.len() + r.entry.len() + and
            })
            + self.batch.as_ref().map_or(0, |b| 40 + b.id.len())
    }
}

impl Record for Decision<'_> {
    fn time(&self) -> Option<SystemTime> {
        Some(self.ts)
    }

    fn line(&self) -> String {
        let mut json = Json::with_capacity(self.capacity());
        json.raw("{\"v\":")
            .uint(u64::from(self.v))
            .raw(",\"kind\":")
            .name(self.kind)
            .raw(",\"ts\":")
            .timestamp(self.ts)
            .raw(",\"id\":")
            .str(self.id)
            .raw(",\"client_request_id\":")
            .opt_str(self.client_request_id)
            .raw(",\"client\":")
            .str(self.client)
            .raw(",\"sni\":")
            .opt_client_text(self.sni, Cut::Bytes(NAME_BYTES))
            .request(self.host, self.method, self.path)
            .raw(",\"resource\":")
            .str(self.resource)
            .raw(",\"organisation\":")
            .opt_str(self.organisation)
            .raw(",\"application\":")
            .opt_str(self.application)
            .raw(",\"user\":")
            .opt_str(self.user)
            .raw(",\"token_fingerprint\":")
            .opt_str(self.token_fingerprint)
            .raw(",\"targets\":[");
        for (i, target) in self.targets.iter().enumerate() {
            if i > 0 {
                json.raw(",");
            }
            json.target(target);
        }
        json.raw("],\"raw_target\":")
            .opt_client_text(self.raw_target, Cut::Chars(RAW_TARGET_CHARS))
            .raw(",\"decision\":")
            .name(self.decision.as_str())
            .raw(",\"reason\":")
            .name(self.reason)
            .raw(",\"rule\":");
        match &self.rule {
            Some(rule) => json.rule(rule),
            None => json.raw("null"),
        };
        json.raw(",\"batch\":");
        match &self.batch {
            Some(batch) => json
                .raw("{\"id\":")
                .str(batch.id)
                .raw(",\"part\":")
                .opt_uint(batch.part.map(wide))
                .raw(",\"parts\":")
                .opt_uint(batch.parts.map(wide))
                .raw("}"),
            None => json.raw("null"),
        };
        json.end()
    }
}

impl Record for Outcome<'_> {
    fn time(&self) -> Option<SystemTime> {
        Some(self.ts)
    }

    fn line(&self) -> String {
        Json::with_capacity(120 + self.id.len())
            .raw("{\"v\":")
            .uint(u64::from(self.v))
            .raw(",\"kind\":")
            .name(self.kind)
            .raw(",\"ts\":")
            .timestamp(self.ts)
            .raw(",\"id\":")
            .str(self.id)
            .raw(",\"status\":")
            .opt_uint(self.status.map(u64::from))
            .raw(",\"source\":")
            .name(self.source.as_str())
            .raw(",\"duration_ms\":")
            .uint(self.duration_ms)
            .end()
    }
}

impl Access<'_> {
    /// The line's length, but for escapes.
    pub(super) fn capacity(&self) -> usize {
        260 + self.id.len()
            + self.client.len()
            + self.host.len().min(NAME_BYTES)
            + self.method.len().min(METHOD_BYTES)
            + self.path.len().min(PATH_BYTES)
            + len(self.member)
    }
}

impl Record for Access<'_> {
    fn line(&self) -> String {
        Json::with_capacity(self.capacity())
            .raw("{\"v\":")
            .uint(u64::from(self.v))
            .raw(",\"kind\":")
            .name(self.kind)
            .raw(",\"ts\":")
            .timestamp(self.ts)
            .raw(",\"id\":")
            .str(self.id)
            .raw(",\"client\":")
            .str(self.client)
            .request(self.host, self.method, self.path)
            .raw(",\"status\":")
            .uint(u64::from(self.status))
            .raw(",\"bytes_in\":")
            .uint(self.bytes_in)
            .raw(",\"bytes_out\":")
            .uint(self.bytes_out)
            .raw(",\"duration_ms\":")
            .uint(self.duration_ms)
            .raw(",\"member\":")
            .opt_str(self.member)
            .raw(",\"route\":")
            .name(self.route)
            .end()
    }
}
