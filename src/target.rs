//! The UCWA call-forwarding `target`: parsed once, fail closed, into a normal form the policy
//! can trust (SPEC §5 and §10). Anything not clearly valid is `Malformed`.

use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::iis::{self, escape, host};

/// E.164 allows at most 15 digits.
const MAX_DIGITS: usize = 15;
/// The only SIP URI parameter kept; Display writes it back so the normal form re-parses to itself.
const USER_PHONE: &str = ";user=phone";

/// An E.164 number: 1-15 ASCII digits, stored inline (no heap). Copy.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Number {
    len: u8,
    /// ASCII digits; bytes past `len` stay zero so the derived Eq/Hash are exact.
    digits: [u8; MAX_DIGITS],
}

impl Number {
    const EMPTY: Number = Number {
        len: 0,
        digits: [0; MAX_DIGITS],
    };

    /// The digits without '+', e.g. "14255550100".
    pub fn digits(&self) -> &str {
        // Only ASCII digits are ever stored, so the fallback is unreachable.
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The digits as bytes: what the policy's lookups read, without `digits`' UTF-8 check.
    pub fn digit_bytes(&self) -> &[u8] {
        &self.digits[..usize::from(self.len)]
    }

    /// "+14255550100" written into the caller's stack buffer, for regex matching without allocating.
    pub fn plus_digits<'b>(&self, buf: &'b mut [u8; 16]) -> &'b str {
        std::str::from_utf8(self.plus_digit_bytes(buf)).unwrap_or_default()
    }

    /// [`Number::plus_digits`] as bytes (a regex searches bytes as well), without its UTF-8 check.
    pub fn plus_digit_bytes<'b>(&self, buf: &'b mut [u8; 16]) -> &'b [u8] {
        let n = usize::from(self.len);
        buf[0] = b'+';
        buf[1..=n].copy_from_slice(&self.digits[..n]);
        &buf[..=n]
    }

    /// Parses a configured E.164 prefix such as "+1425" ('+' then 1-15 ASCII digits, nothing else).
    pub fn parse_prefix(s: &str) -> Option<Number> {
        let mut n = Number::EMPTY;
        for b in s.strip_prefix('+')?.bytes() {
            if !b.is_ascii_digit() {
                return None;
            }
            n.push(b).ok()?;
        }
        (n.len > 0).then_some(n)
    }

    /// True when `prefix` (e.g. from `parse_prefix`) is an E.164 prefix of this number.
    pub fn starts_with(&self, prefix: &Number) -> bool {
        self.digit_bytes().starts_with(prefix.digit_bytes())
    }

    /// RFC 3966 global-number-digits: '+' then digits and visual separators, 1-15 digits.
    fn parse_global(s: &str) -> Result<Number, &'static str> {
        let rest = s
            .strip_prefix('+')
            .ok_or("only global numbers ('+' and digits) are allowed")?;
        let mut n = Number::EMPTY;
        for b in rest.bytes() {
            match b {
                b'0'..=b'9' => n.push(b)?,
                b if is_visual_separator(b) => {}
                _ => return Err("a number may hold only digits and visual separators"),
            }
        }
        if n.len == 0 {
            return Err("a number needs at least one digit");
        }
        Ok(n)
    }

    fn push(&mut self, digit: u8) -> Result<(), &'static str> {
        let slot = self
            .digits
            .get_mut(usize::from(self.len))
            .ok_or("a number has at most 15 digits")?;
        *slot = digit;
        self.len += 1;
        Ok(())
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:+{}", self.digits())
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Number(+{})", self.digits())
    }
}

/// How the host of a SIP URI is spelled.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum SipHost {
    /// Lower-case ASCII LDH labels, possibly IDNA punycode (`xn--`).
    Domain(Box<str>),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl fmt::Display for SipHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SipHost::Domain(d) => f.write_str(d),
            SipHost::Ipv4(a) => write!(f, "{a}"),
            SipHost::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// What a SIP user part means as a telephone number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Phone {
    NotPhone,
    /// Judged as this number, so number rules cannot be dodged with a SIP URI.
    Global(Number),
    /// Digits without '+': denied unless the exact URI is allowed.
    Local,
}

/// A sip:/sips: contact in normal form.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Contact {
    secure: bool,
    host: SipHost,
    phone: Phone,
    /// The normal form. Its user part is the decoded one: every byte a user part may decode to
    /// is one it may carry unescaped.
    text: String,
    /// End of the user part inside `text`.
    user_end: usize,
    /// End of "user@host" inside `text`.
    address_end: usize,
}

impl Contact {
    /// True for `sips:`.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The percent-decoded user part, case kept.
    pub fn user(&self) -> &str {
        &self.text[self.scheme_len()..self.user_end]
    }

    pub fn host(&self) -> &SipHost {
        &self.host
    }

    /// The lower-case domain, or None when the host is an IP literal.
    pub fn domain(&self) -> Option<&str> {
        match &self.host {
            SipHost::Domain(d) => Some(d),
            SipHost::Ipv4(_) | SipHost::Ipv6(_) => None,
        }
    }

    /// "user@host" with the decoded user: the exact-URI list key, independent of sip/sips.
    pub fn address(&self) -> &str {
        &self.text[self.scheme_len()..self.address_end]
    }

    pub fn phone(&self) -> Phone {
        self.phone
    }

    /// Parses a configured exact URI such as "sip:helpdesk@fabrikam.com" with the grammar of
    /// `Target::parse` (no length limit).
    pub fn parse_uri(s: &str) -> Result<Contact, TargetError> {
        check_chars(s)?;
        match split_scheme(s)? {
            Scheme::Sip { secure, rest } => Contact::parse_sip(rest, secure),
            Scheme::Tel(_) => Err(TargetError::Malformed("expected a sip: or sips: URI")),
        }
    }

    fn scheme_len(&self) -> usize {
        if self.secure {
            "sips:".len()
        } else {
            "sip:".len()
        }
    }

    /// `rest` is everything after the scheme's ':' and holds only printable ASCII.
    fn parse_sip(rest: &str, secure: bool) -> Result<Contact, TargetError> {
        if rest.contains('?') {
            return Err(malformed("SIP URI headers are not allowed"));
        }
        let (user_raw, host_part) = rest
            .split_once('@')
            .ok_or(malformed("a SIP URI needs a user part"))?;
        if host_part.contains('@') {
            return Err(malformed("a SIP URI may hold only one '@'"));
        }
        if user_raw.is_empty() {
            return Err(malformed("the SIP user part is empty"));
        }
        if user_raw.contains(':') {
            return Err(malformed("passwords are not allowed"));
        }
        check_user_escapes(user_raw)?;
        let (host_raw, params) = match host_part.split_once(';') {
            Some((h, p)) => (h, Some(p)),
            None => (host_part, None),
        };
        let host = parse_host(host_raw).map_err(TargetError::Malformed)?;
        let user_phone = match params {
            None => false,
            Some(p) if p.eq_ignore_ascii_case("user=phone") => true,
            Some(_) => return Err(malformed("only the user=phone parameter is allowed")),
        };

        // Every escape was checked above, so decoding cannot fail.
        let user = escape::decode(user_raw.as_bytes(), escape::PERCENT)
            .map_err(|_| malformed("the SIP user part holds an invalid escape"))?;
        for &b in user.iter() {
            if !b.is_ascii() {
                return Err(malformed("the SIP user part must be ASCII"));
            }
            // A decoded space could hide a number from the phone test (`+1%20900...`).
            if b.is_ascii_control() || b == b' ' {
                return Err(malformed(
                    "whitespace and control characters are not allowed",
                ));
            }
            // A decoded delimiter (`x%40evil.example@contoso.com`, `%2540`) reads as another
            // URI to a stack that decodes before it splits: no real user part holds one.
            if !is_user_raw(b) {
                return Err(malformed("the SIP user part holds an escaped delimiter"));
            }
        }

        let host_len = match &host {
            SipHost::Domain(d) => d.len(),
            SipHost::Ipv4(_) => "255.255.255.255".len(),
            SipHost::Ipv6(_) => "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]".len(),
        };
        let mut text =
            String::with_capacity("sips:@".len() + user.len() + host_len + USER_PHONE.len());
        text.push_str(if secure { "sips:" } else { "sip:" });
        let user_start = text.len();
        text.extend(user.iter().map(|&b| char::from(b)));
        let user_end = text.len();
        // Writing to a String cannot fail.
        let _ = write!(text, "@{host}");
        let address_end = text.len();
        if user_phone {
            text.push_str(USER_PHONE);
        }

        let phone = user_phone_meaning(&text[user_start..user_end], user_phone)?;
        Ok(Contact {
            secure,
            host,
            phone,
            text,
            user_end,
            address_end,
        })
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A parsed UCWA `target`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Target {
    Number(Number),
    Contact(Contact),
}

impl Target {
    /// `raw` is the already percent-decoded parameter value; `max_len` is the configured limit,
    /// counted in Unicode scalar values before anything else (no trimming).
    pub fn parse(raw: &str, max_len: usize) -> Result<Target, TargetError> {
        // A string never has more chars than bytes, so counting is needed only for long input.
        if raw.len() > max_len && raw.chars().count() > max_len {
            return Err(TargetError::TooLong { max: max_len });
        }
        check_chars(raw)?;
        match split_scheme(raw)? {
            Scheme::Tel(rest) => parse_tel(rest).map(Target::Number),
            Scheme::Sip { secure, rest } => Contact::parse_sip(rest, secure).map(Target::Contact),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Number(n) => n.fmt(f),
            Target::Contact(c) => c.fmt(f),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target is longer than {max} characters")]
    TooLong { max: usize },
    #[error("target is malformed: {0}")]
    Malformed(&'static str),
}

fn malformed(why: &'static str) -> TargetError {
    TargetError::Malformed(why)
}

enum Scheme<'a> {
    Tel(&'a str),
    Sip { secure: bool, rest: &'a str },
}

fn split_scheme(raw: &str) -> Result<Scheme<'_>, TargetError> {
    let (scheme, rest) = iis::split_at_byte(raw, b':')
        .ok_or(malformed("a tel:, sip: or sips: scheme is required"))?;
    if scheme.eq_ignore_ascii_case("tel") {
        Ok(Scheme::Tel(rest))
    } else if scheme.eq_ignore_ascii_case("sip") {
        Ok(Scheme::Sip {
            secure: false,
            rest,
        })
    } else if scheme.eq_ignore_ascii_case("sips") {
        Ok(Scheme::Sip { secure: true, rest })
    } else {
        Err(malformed("only tel:, sip: and sips: targets are allowed"))
    }
}

/// Both grammars are printable ASCII; rejecting the rest up front also stops fullwidth digits
/// and unencoded IDN hosts.
fn check_chars(raw: &str) -> Result<(), TargetError> {
    for b in raw.bytes() {
        if !b.is_ascii() {
            return Err(malformed("non-ASCII characters are not allowed"));
        }
        if b == b' ' || b.is_ascii_control() {
            return Err(malformed(
                "whitespace and control characters are not allowed",
            ));
        }
    }
    Ok(())
}

/// RFC 3966 global number; `ext` and `isub` are checked and then dropped.
fn parse_tel(rest: &str) -> Result<Number, TargetError> {
    let (number, params) = match rest.split_once(';') {
        Some((n, p)) => (n, Some(p)),
        None => (rest, None),
    };
    let n = Number::parse_global(number).map_err(TargetError::Malformed)?;
    let (mut ext, mut isub) = (false, false);
    for param in params.into_iter().flat_map(|p| p.split(';')) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let (seen, valid) = if name.eq_ignore_ascii_case("ext") {
            (&mut ext, is_phone_digits(value))
        } else if name.eq_ignore_ascii_case("isub") {
            (&mut isub, is_uric(value))
        } else if name.eq_ignore_ascii_case("phone-context") {
            return Err(malformed("phone-context numbers are not allowed"));
        } else {
            return Err(malformed(
                "only the ext and isub tel parameters are allowed",
            ));
        };
        if std::mem::replace(seen, true) {
            return Err(malformed("a tel parameter is repeated"));
        }
        if !valid {
            return Err(malformed("a tel parameter value is invalid"));
        }
    }
    Ok(n)
}

fn is_visual_separator(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b'(' | b')')
}

/// RFC 3966 1*phonedigit, with at least one actual digit.
fn is_phone_digits(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || is_visual_separator(b))
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// RFC 3966 1*uric (';' already split off): reserved, unreserved or %HH.
fn is_uric(s: &str) -> bool {
    !s.is_empty()
        && escapes_ok(s, |b| {
            b.is_ascii_alphanumeric() || b"/?:@&=+$,-_.!~*'()".contains(&b)
        })
}

/// Characters a SIP user part may carry unescaped; the canonical form escapes every other byte.
fn is_user_raw(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!*'()&=+$,".contains(&b)
}

fn check_user_escapes(user: &str) -> Result<(), TargetError> {
    if escapes_ok(user, is_user_raw) {
        Ok(())
    } else {
        Err(malformed(
            "the SIP user part holds a character that must be escaped",
        ))
    }
}

/// Every byte is either allowed raw or starts a complete %HH escape.
fn escapes_ok(s: &str, raw_ok: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match b.get(i + 1..i + 3) {
                Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if raw_ok(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// A domain of LDH labels, a strict dotted quad, or a bracketed IPv6 literal; no port.
fn parse_host(host: &str) -> Result<SipHost, &'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']') {
            Some(v6) => v6
                .parse()
                .map(SipHost::Ipv6)
                .map_err(|_| "the IPv6 literal is invalid"),
            None if inner.contains("]:") => Err("ports are not allowed"),
            None => Err("the IPv6 literal is invalid"),
        };
    }
    if host.contains(':') {
        return Err("ports are not allowed");
    }
    host::domain_labels(host)?;
    let numeric_top = host
        .rsplit('.')
        .next()
        .is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit()));
    if numeric_top {
        // std accepts exactly four decimal octets without leading zeros.
        return host
            .parse()
            .map(SipHost::Ipv4)
            .map_err(|_| "the IPv4 address is invalid");
    }
    Ok(SipHost::Domain(host.to_ascii_lowercase().into_boxed_str()))
}

/// SPEC §10: a user part of digits and visual separators is a number, with or without '+'.
fn user_phone_meaning(user: &str, user_phone: bool) -> Result<Phone, TargetError> {
    if user_phone {
        return Number::parse_global(user)
            .map(Phone::Global)
            .map_err(|_| malformed("user=phone needs a global number"));
    }
    let body = user.strip_prefix('+').unwrap_or(user);
    if !is_phone_digits(body) {
        // `++1900...` or `1+900...`: a number to a stack that drops the extra `+`.
        if body.contains('+') && is_phone_digits(&body.replace('+', "")) {
            return Err(malformed("a number holds a misplaced +"));
        }
        // `+1900...x`, `+1900...p1` (a pause), `*1900...`: a number to a stack that reads the
        // digits and stops, or dials a feature code. No name begins so.
        let starts_a_number = |rest: &str| rest.starts_with(|c: char| c.is_ascii_digit());
        if user.strip_prefix(['+', '*']).is_some_and(starts_a_number) {
            return Err(malformed("a number holds characters that are not digits"));
        }
        return Ok(Phone::NotPhone);
    }
    if body.len() == user.len() {
        return Ok(Phone::Local);
    }
    Number::parse_global(user)
        .map(Phone::Global)
        .map_err(TargetError::Malformed)
}

#[cfg(test)]
mod tests;
