//! Query strings: `&`-separated pairs, percent-encoded, `+` literal (SPEC §4, §10 "Query").
//!
//! A `%u` escape anywhere in the input is refused as [`ExtractError::Malformed`], not only in
//! the matching pair: ASP.NET decodes `%uNNNN` in keys and values, so such an escape could
//! rename any key to the parameter.

use std::borrow::Cow;

use super::{name_matches, ExtractError};

/// The parameter's value in a query string (without the leading '?'). None when absent;
/// `target` and `target=` give `Some("")`.
pub fn find<'a>(query: &'a str, parameter: &str) -> Result<Option<Cow<'a, str>>, ExtractError> {
    find_pair(query.as_bytes(), parameter, Plus::Literal)
}

/// What `+` means in a value or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plus {
    /// Query strings (RFC 3986): `+` is itself.
    Literal,
    /// Form bodies (WHATWG): `+` is a space.
    Space,
}

/// Finds the single pair whose decoded key matches `parameter` and decodes its value.
///
/// Keys decode leniently (an invalid escape stays literal, as ASP.NET does), so a key that does
/// not decode cleanly cannot match by accident. The matching value must decode strictly to
/// UTF-8. A repeated key wins over a malformed value. Borrows when the value has no escape.
pub(crate) fn find_pair<'a>(
    input: &'a [u8],
    parameter: &str,
    plus: Plus,
) -> Result<Option<Cow<'a, str>>, ExtractError> {
    if input
        .windows(2)
        .any(|w| w[0] == b'%' && (w[1] == b'u' || w[1] == b'U'))
    {
        return Err(ExtractError::Malformed);
    }
    let mut found: Option<&'a [u8]> = None;
    for pair in input.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        if !key_matches(key, parameter, plus) {
            continue;
        }
        if found.is_some() {
            return Err(ExtractError::Duplicate);
        }
        found = Some(value);
    }
    found.map(|value| decode_value(value, plus)).transpose()
}

fn needs_decoding(bytes: &[u8], plus: Plus) -> bool {
    bytes
        .iter()
        .any(|&b| b == b'%' || (b == b'+' && plus == Plus::Space))
}

fn key_matches(key: &[u8], parameter: &str, plus: Plus) -> bool {
    if !needs_decoding(key, plus) {
        return std::str::from_utf8(key).is_ok_and(|k| name_matches(k, parameter));
    }
    let mut decoded = Vec::with_capacity(key.len());
    let mut i = 0;
    while let Some(&b) = key.get(i) {
        match b {
            b'%' => match hex_byte(key.get(i + 1..i + 3)) {
                Some(byte) => {
                    decoded.push(byte);
                    i += 3;
                    continue;
                }
                None => decoded.push(b'%'),
            },
            b'+' if plus == Plus::Space => decoded.push(b' '),
            _ => decoded.push(b),
        }
        i += 1;
    }
    std::str::from_utf8(&decoded).is_ok_and(|k| name_matches(k, parameter))
}

fn decode_value(value: &[u8], plus: Plus) -> Result<Cow<'_, str>, ExtractError> {
    if !needs_decoding(value, plus) {
        return std::str::from_utf8(value)
            .map(Cow::Borrowed)
            .map_err(|_| ExtractError::Malformed);
    }
    let mut decoded = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        match b {
            b'%' => {
                decoded.push(hex_byte(value.get(i + 1..i + 3)).ok_or(ExtractError::Malformed)?);
                i += 3;
                continue;
            }
            b'+' if plus == Plus::Space => decoded.push(b' '),
            _ => decoded.push(b),
        }
        i += 1;
    }
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| ExtractError::Malformed)
}

fn hex_byte(digits: Option<&[u8]>) -> Option<u8> {
    match digits? {
        &[hi, lo] => {
            let hi = (hi as char).to_digit(16)?;
            let lo = (lo as char).to_digit(16)?;
            u8::try_from(hi << 4 | lo).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ExtractError::*;

    #[test]
    fn query_table() {
        let cases: &[(&str, crate::extract::Expected)] = &[
            ("target=tel:%2B1425", Ok(Some("tel:+1425"))),
            ("target=tel:+14255550100", Ok(Some("tel:+14255550100"))),
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
            ("target=%ff", Err(Malformed)),
            ("target=%C0%AF", Err(Malformed)),
            ("target=%", Err(Malformed)),
            ("target=%2", Err(Malformed)),
            ("target=%zz", Err(Malformed)),
            ("target=%u0074", Err(Malformed)),
            ("%u0074arget=x", Err(Malformed)),
            ("other=%U0041&target=x", Err(Malformed)),
            ("other=%zz&target=x", Ok(Some("x"))),
            ("other=%ff&target=x", Ok(Some("x"))),
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
