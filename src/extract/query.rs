//! Query strings: `&`-separated pairs, percent-encoded, `+` literal (SPEC §4, §10 "Query"), as
//! ASP.NET's `HttpValueCollection.FillFromEncodedBytes` splits them (System.Web/
//! HttpValueCollection.cs): pairs at `&`, name and value at the first `=`, each decoded by
//! `HttpEncoder.UrlDecode` ([`crate::iis::escape`]).
//!
//! Every pair must decode to UTF-8 without control characters, not only the matching one: a key
//! that is not UTF-8 to ringfence may be `target` to a pool that decodes it another way, and a
//! NUL is dropped by ASP.NET's request validation before it looks. A `%u` escape anywhere is
//! refused too: ASP.NET decodes `%uNNNN` in keys and values, so it could rename any key.

use std::borrow::Cow;

use super::{name_matches, ExtractError};
use crate::iis::escape::{self, Plus, Rules};

/// The parameter's value in a query string (without the leading '?'). None when absent;
/// `target` and `target=` give `Some("")`.
pub fn find<'a>(query: &'a str, parameter: &str) -> Result<Option<Cow<'a, str>>, ExtractError> {
    find_pair(query.as_bytes(), parameter, Grammar::QUERY)
}

/// The decoding rules of keys and of values, for the query or for a form body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grammar {
    key: Rules,
    value: Rules,
}

impl Grammar {
    pub(crate) const QUERY: Grammar = Grammar {
        key: escape::QUERY_KEY,
        value: escape::QUERY_VALUE,
    };
    /// Form bodies (WHATWG, and ASP.NET alike): `+` is a space.
    pub(crate) const FORM: Grammar = Grammar {
        key: escape::FORM_KEY,
        value: escape::FORM_VALUE,
    };
}

/// Finds the single pair whose decoded key matches `parameter` and decodes its value.
///
/// Keys decode leniently (an invalid escape stays literal, as ASP.NET does), so a key that does
/// not decode cleanly cannot match by accident. Other values decode the same way; the matching
/// value must decode strictly. Every key and value must be UTF-8 without control characters.
/// A repeated key wins over a malformed value. Borrows when the value has no escape.
pub(crate) fn find_pair<'a>(
    input: &'a [u8],
    parameter: &str,
    grammar: Grammar,
) -> Result<Option<Cow<'a, str>>, ExtractError> {
    if escape::has_percent_u(input) {
        return Err(ExtractError::Malformed);
    }
    let mut found: Option<&'a [u8]> = None;
    let mut unreadable = false;
    for pair in input.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let Some(key) = readable(key, grammar.key) else {
            unreadable = true;
            continue;
        };
        if !name_matches(&key, parameter) {
            unreadable |= readable(value, grammar.key).is_none();
            continue;
        }
        if found.is_some() {
            return Err(ExtractError::Duplicate);
        }
        found = Some(value);
    }
    if found
        .is_some_and(|value| grammar.value.plus == Plus::Literal && !plus_where_read_alike(value))
    {
        return Err(ExtractError::Malformed);
    }
    let value = found
        .map(|value| readable(value, grammar.value).ok_or(ExtractError::Malformed))
        .transpose()?;
    if unreadable {
        return Err(ExtractError::Malformed);
    }
    Ok(value)
}

/// The value of the first pair whose key reads as `parameter`, when that value is what
/// [`find_pair`] refuses as `malformed` (read alone, it is still refused), for the trail to show
/// (escaped) the target the client named: decoded if it decodes to UTF-8, control characters
/// included, else as received (`%u`, a bad escape: fresh eyes, round 39). `None` where there
/// is no such pair, or where the refusal was another pair's (the trail must not blame a
/// readable target: fresh eyes, round 33).
pub(crate) fn attempted(input: &[u8], parameter: &str, grammar: Grammar) -> Option<String> {
    input.split(|&b| b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
        let key = readable(&pair[..eq], grammar.key)?;
        if !name_matches(&key, parameter) {
            return None;
        }
        if find_pair(pair, parameter, grammar) != Err(ExtractError::Malformed) {
            return Some(None);
        }
        let value = pair.get(eq + 1..).unwrap_or_default();
        let decoded = escape::decode(value, grammar.value)
            .ok()
            .and_then(|d| String::from_utf8(d.into_owned()).ok());
        Some(Some(decoded.unwrap_or_else(|| {
            String::from_utf8_lossy(value).into_owned()
        })))
    })?
}

/// Whether every raw `+` of a query value stands where reading it as a space (as ASP.NET's
/// `UrlDecode` does) and as a plus (as SPEC §4 does) comes to the same judgement: right after a
/// `tel:`, `sip:` or `sips:` scheme, the leading plus of a global number, which a naive client
/// sends unencoded. The pool then acts on the judged digits without their plus
/// (docs/backend-model.md §2); anywhere else (`sip:ceo+@contoso.com`, read `sip:ceo @...`) the two
/// readings name different targets.
fn plus_where_read_alike(raw: &[u8]) -> bool {
    let scheme = ["tel:", "sip:", "sips:"]
        .iter()
        .find(|s| {
            raw.get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s.as_bytes()))
        })
        .map_or(0, |s| s.len());
    raw.iter()
        .enumerate()
        .all(|(i, &b)| b != b'+' || (scheme > 0 && i == scheme))
}

/// Text decoded by `rules`, if that succeeds and gives UTF-8 without control characters.
fn readable(bytes: &[u8], rules: Rules) -> Option<Cow<'_, str>> {
    let decoded = escape::decode(bytes, rules).ok()?;
    let text = match decoded {
        Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).ok()?),
        Cow::Owned(b) => Cow::Owned(String::from_utf8(b).ok()?),
    };
    (!text.chars().any(char::is_control)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ExtractError::*;

    /// A value refused as malformed is still read for the trail, as far as it is UTF-8.
    #[test]
    fn a_malformed_value_is_read_for_the_trail() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"target=tel:%2B1900%0A5550100", Some("tel:+1900\n5550100")),
            (b"a=1&TARGET=tel:%2B1%00", Some("tel:+1\0")),
            // Refused for another pair: the target itself is not blamed.
            (b"target=tel:%2B14255550100&x=%00", None),
            (b"target=tel:%2B14255550100&x%0A=1", None),
            (b"target=tel:%2B14255550100&x=%u0041", None),
            (b"target=sip:ceo+@contoso.com", Some("sip:ceo+@contoso.com")),
            // Not decoded: as received.
            (b"target=%ff", Some("%ff")),
            (
                b"target=tel:%u002B14255550100",
                Some("tel:%u002B14255550100"),
            ),
            (b"target=tel:%2B1%zz", Some("tel:%2B1%zz")),
            (b"other=%0a", None),
        ];
        for &(query, expected) in cases {
            assert_eq!(
                find_pair(query, "target", Grammar::QUERY).err(),
                Some(ExtractError::Malformed),
                "{query:?}"
            );
            assert_eq!(
                attempted(query, "target", Grammar::QUERY).as_deref(),
                expected,
                "{query:?}"
            );
        }
        assert_eq!(
            attempted(b"target=a+b%0d", "target", Grammar::FORM).as_deref(),
            Some("a b\r")
        );
    }

    #[test]
    fn query_table() {
        let cases: &[(&str, crate::extract::Expected)] = &[
            ("target=tel:%2B1425", Ok(Some("tel:+1425"))),
            ("target=tel:+14255550100", Ok(Some("tel:+14255550100"))),
            (
                "target=SIP:+14255550100@contoso.com",
                Ok(Some("SIP:+14255550100@contoso.com")),
            ),
            ("target=sip:ceo+@contoso.com", Err(Malformed)),
            ("target=tel:+1425+555", Err(Malformed)),
            ("target=+14255550100", Err(Malformed)),
            (
                "target=sip:ceo%2B@contoso.com",
                Ok(Some("sip:ceo+@contoso.com")),
            ),
            ("target=sip:a%40contoso.com", Ok(Some("sip:a@contoso.com"))),
            ("TARGET=x", Ok(Some("x"))),
            ("TaRgEt=x", Ok(Some("x"))),
            ("%74arget=x", Ok(Some("x"))),
            ("%54ARGET=x", Ok(Some("x"))),
            ("targ%zzet=x", Ok(None)),
            ("target%=x", Ok(None)),
            ("a=1&target=x&b=2", Ok(Some("x"))),
            ("target=a=b", Ok(Some("a=b"))),
            ("target=a;target=b", Ok(Some("a;target=b"))),
            ("target=a%20b", Ok(Some("a b"))),
            ("target=caf%C3%A9", Ok(Some("caf\u{e9}"))),
            ("target=tel:%252B1", Ok(Some("tel:%2B1"))),
            ("target=", Ok(Some(""))),
            ("target", Ok(Some(""))),
            ("&&target=x&&", Ok(Some("x"))),
            ("", Ok(None)),
            ("x=target", Ok(None)),
            ("targets=x", Ok(None)),
            (" target=x", Ok(None)),
            ("target=a&target=b", Err(Duplicate)),
            ("target=a&TaRgEt=b", Err(Duplicate)),
            ("target=a&target=a", Err(Duplicate)),
            ("target&target=", Err(Duplicate)),
            ("target=a&%74arget=b", Err(Duplicate)),
            ("target=%ff&target=a", Err(Duplicate)),
            ("target=a&target=%ff", Err(Duplicate)),
            ("target=%ff", Err(Malformed)),
            ("target=%C0%AF", Err(Malformed)),
            ("target=%", Err(Malformed)),
            ("target=%2", Err(Malformed)),
            ("target=%zz", Err(Malformed)),
            ("target=%u0074", Err(Malformed)),
            ("%u0074arget=x", Err(Malformed)),
            ("other=%U0041&target=x", Err(Malformed)),
            ("other=%zz&target=x", Ok(Some("x"))),
            ("other=%ff&target=x", Err(Malformed)),
            ("%ff=1&target=x", Err(Malformed)),
            ("tar%ffget=x", Err(Malformed)),
            ("%A3%81%99%87%85%A3=tel:%2B1900", Err(Malformed)),
            ("other=a%00b&target=x", Err(Malformed)),
            ("target=x&other=%0a", Err(Malformed)),
            ("target=tel:%2B1%00", Err(Malformed)),
            ("x%01=1", Err(Malformed)),
            ("other=caf%C3%A9&target=x", Ok(Some("x"))),
        ];
        for &(query, want) in cases {
            let have = find(query, "target");
            assert_eq!(crate::extract::view(&have), want, "{query:?}");
        }
    }

    #[test]
    fn plain_values_are_borrowed() {
        assert!(matches!(
            find("a=1&target=tel:+1425", "target"),
            Ok(Some(Cow::Borrowed("tel:+1425")))
        ));
    }

    #[test]
    fn other_parameter_names() {
        assert_eq!(
            crate::extract::view(&find("phoneNumber=tel:%2B1&target=x", "phonenumber")),
            Ok(Some("tel:+1"))
        );
    }

    proptest! {
        #[test]
        fn never_panics(query in any::<String>()) {
            let _ = find(&query, "target");
        }

        #[test]
        fn never_panics_near_matches(query in "(target|TARGET|%74arget|%|%u|%2|=|&|\\+|%[0-9a-fA-F]{2}|[a-z]){0,12}") {
            let _ = find(&query, "target");
        }
    }
}
