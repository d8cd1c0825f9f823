//! Percent-escapes: `%XX`, and IIS's `%uNNNN` (a UTF-16 code unit).
//!
//! The pool decodes escapes in three places, and ringfence reads each with these rules:
//! - the path: HTTP.sys decodes `%XX` and, with its default `PercentUAllowed`, `%uNNNN`
//!   ([`PATH`]; IIS's own `%U` is accepted too, which only reads more);
//! - query and form keys: ASP.NET `HttpEncoder.UrlDecode(byte[], int, int, Encoding)` keeps an
//!   escape it cannot read as a literal `%` ([`QUERY_KEY`], [`FORM_KEY`]);
//! - query and form values: the same decoder, but ringfence refuses what it would have to guess
//!   at ([`QUERY_VALUE`], [`FORM_VALUE`]).
//!
//! `UrlDecode` turns `+` into a space in query strings as well as in forms; ringfence reads it
//! literally in the query (SPEC §4), so `tel:+1` keeps its plus (docs/backend-model.md says why
//! that is safe). `%uNNNN` anywhere in a guarded query or form is refused before decoding
//! ([`has_percent_u`]).

use std::borrow::Cow;

/// What `+` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plus {
    Literal,
    Space,
}

/// What happens to a `%` that does not start an escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Kept as a literal `%`, as ASP.NET does.
    Keep,
    /// The text cannot be read: an error.
    Refuse,
}

/// How one kind of text is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// `%uNNNN` and `%UNNNN` are decoded (paths); otherwise `%u` is an invalid `%XX` escape.
    pub percent_u: bool,
    pub plus: Plus,
    pub invalid: Invalid,
}

/// One HTTP.sys decoding round of a path.
pub const PATH: Rules = Rules {
    percent_u: true,
    plus: Plus::Literal,
    invalid: Invalid::Refuse,
};
/// [`PATH`], keeping what it cannot decode: for asking where a broken path could lead.
pub const PATH_LENIENT: Rules = Rules {
    invalid: Invalid::Keep,
    ..PATH
};
/// RFC 3986 percent-decoding, nothing else: also how a SIP user part is unescaped.
pub const PERCENT: Rules = Rules {
    percent_u: false,
    plus: Plus::Literal,
    invalid: Invalid::Refuse,
};
pub const QUERY_KEY: Rules = Rules {
    invalid: Invalid::Keep,
    ..PERCENT
};
pub const QUERY_VALUE: Rules = PERCENT;
pub const FORM_KEY: Rules = Rules {
    plus: Plus::Space,
    ..QUERY_KEY
};
pub const FORM_VALUE: Rules = Rules {
    plus: Plus::Space,
    ..QUERY_VALUE
};

/// Why text could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Hash)]
pub enum EscapeError {
    #[error("a '%' does not start a valid escape")]
    InvalidEscape,
    #[error("a %u escape is an unpaired UTF-16 surrogate")]
    LoneSurrogate,
}

/// Whether the text holds a `%u` or `%U`, which ASP.NET's decoder reads as a UTF-16 code unit.
pub fn has_percent_u(input: &[u8]) -> bool {
    input
        .windows(2)
        .any(|w| w[0] == b'%' && matches!(w[1], b'u' | b'U'))
}

/// Decodes one round of escapes. Borrows the input when there is nothing to decode; the result
/// is bytes, since `%XX` escapes need not form UTF-8 (the caller decides what that means).
/// `%uNNNN` is written as UTF-8; a surrogate pair `%uD83D%uDE00` is one character.
pub fn decode(input: &[u8], rules: Rules) -> Result<Cow<'_, [u8]>, EscapeError> {
    let needs = |b: &u8| *b == b'%' || (*b == b'+' && rules.plus == Plus::Space);
    if !input.iter().any(needs) {
        return Ok(Cow::Borrowed(input));
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'%' => match escape_at(input, i, rules.percent_u) {
                Ok((Decoded::Byte(byte), len)) => {
                    out.push(byte);
                    i += len;
                    continue;
                }
                Ok((Decoded::Char(c), len)) => {
                    out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
                    i += len;
                    continue;
                }
                Err(_) if rules.invalid == Invalid::Keep => out.push(b'%'),
                Err(e) => return Err(e),
            },
            b'+' if rules.plus == Plus::Space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    Ok(Cow::Owned(out))
}

/// [`decode`] of text that must be UTF-8 afterwards; `None` when it is not.
pub fn decode_utf8(input: &str, rules: Rules) -> Result<Option<Cow<'_, str>>, EscapeError> {
    Ok(match decode(input.as_bytes(), rules)? {
        Cow::Borrowed(_) => Some(Cow::Borrowed(input)),
        Cow::Owned(bytes) => String::from_utf8(bytes).ok().map(Cow::Owned),
    })
}

enum Decoded {
    Byte(u8),
    Char(char),
}

/// The escape starting at the `%` at `at`, and its length in bytes.
fn escape_at(input: &[u8], at: usize, percent_u: bool) -> Result<(Decoded, usize), EscapeError> {
    if percent_u && matches!(input.get(at + 1), Some(b'u' | b'U')) {
        let unit = hex(input.get(at + 2..at + 6)).ok_or(EscapeError::InvalidEscape)?;
        let (code, len) = match unit {
            0xd800..=0xdbff => {
                let low = match (input.get(at + 6..at + 8), hex(input.get(at + 8..at + 12))) {
                    (Some([b'%', b'u' | b'U']), Some(low @ 0xdc00..=0xdfff)) => low,
                    _ => return Err(EscapeError::LoneSurrogate),
                };
                (0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00), 12)
            }
            0xdc00..=0xdfff => return Err(EscapeError::LoneSurrogate),
            _ => (unit, 6),
        };
        let c = char::from_u32(code).ok_or(EscapeError::LoneSurrogate)?;
        return Ok((Decoded::Char(c), len));
    }
    let byte = hex(input.get(at + 1..at + 3)).ok_or(EscapeError::InvalidEscape)?;
    // Two hex digits always fit a byte.
    Ok((Decoded::Byte(byte as u8), 3))
}

/// The value of ASCII hex digits (`HttpEncoderUtility.HexToInt` accepts `0-9a-fA-F`).
fn hex(digits: Option<&[u8]>) -> Option<u32> {
    digits?.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(input: &str, rules: Rules) -> Result<String, EscapeError> {
        decode(input.as_bytes(), rules).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn path_escapes_decode_percent_and_percent_u() {
        let cases: &[(&str, Result<&str, EscapeError>)] = &[
            ("/a%2Fb", Ok("/a/b")),
            ("%73%u0069%U006D", Ok("sim")),
            ("%uD83D%uDE00", Ok("\u{1f600}")),
            ("%uD83D%UDE00", Ok("\u{1f600}")),
            ("+", Ok("+")),
            ("%", Err(EscapeError::InvalidEscape)),
            ("%2", Err(EscapeError::InvalidEscape)),
            ("%zz", Err(EscapeError::InvalidEscape)),
            ("%u12", Err(EscapeError::InvalidEscape)),
            ("%uDC00", Err(EscapeError::LoneSurrogate)),
            ("%uD800x", Err(EscapeError::LoneSurrogate)),
            ("%uD800%u0041", Err(EscapeError::LoneSurrogate)),
        ];
        for &(input, want) in cases {
            assert_eq!(text(input, PATH).as_deref(), want.as_deref(), "{input}");
        }
        assert_eq!(text("%zz%u12%", PATH_LENIENT).as_deref(), Ok("%zz%u12%"));
    }

    #[test]
    fn query_and_form_escapes_follow_aspnet_url_decode() {
        assert_eq!(text("tar%67et", QUERY_KEY).as_deref(), Ok("target"));
        assert_eq!(text("targ%et%4", QUERY_KEY).as_deref(), Ok("targ%et%4"));
        assert_eq!(text("%u0074", QUERY_KEY).as_deref(), Ok("%u0074"));
        assert_eq!(text("a+b", QUERY_VALUE).as_deref(), Ok("a+b"));
        assert_eq!(text("a+b", FORM_VALUE).as_deref(), Ok("a b"));
        assert_eq!(text("a+b%2B", FORM_KEY).as_deref(), Ok("a b+"));
        assert_eq!(text("%4", QUERY_VALUE), Err(EscapeError::InvalidEscape));
        assert_eq!(text("%u0074", QUERY_VALUE), Err(EscapeError::InvalidEscape));
    }

    #[test]
    fn nothing_to_decode_borrows() {
        assert!(matches!(
            decode(b"plain+text", QUERY_VALUE),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(decode(b"plain", FORM_VALUE), Ok(Cow::Borrowed(_))));
        assert!(matches!(
            decode_utf8("tel:+1", QUERY_VALUE),
            Ok(Some(Cow::Borrowed("tel:+1")))
        ));
        assert_eq!(decode_utf8("%ff", QUERY_VALUE), Ok(None));
    }

    #[test]
    fn percent_u_is_found_in_either_case() {
        assert!(has_percent_u(b"a=%u0041"));
        assert!(has_percent_u(b"%U0041"));
        assert!(!has_percent_u(b"%25u0041"));
        assert!(!has_percent_u(b"u%"));
    }

    proptest! {
        #[test]
        fn decoding_never_panics(input in prop::collection::vec(any::<u8>(), 0..64)) {
            for rules in [PATH, PATH_LENIENT, QUERY_KEY, QUERY_VALUE, FORM_KEY, FORM_VALUE] {
                let _ = decode(&input, rules);
            }
        }

        #[test]
        fn lenient_decoding_always_succeeds(input in "[%uUdD0-9a-fA-F+x]{0,24}") {
            prop_assert!(decode(input.as_bytes(), QUERY_KEY).is_ok());
            prop_assert!(decode(input.as_bytes(), FORM_KEY).is_ok());
        }
    }
}
