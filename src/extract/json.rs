//! JSON bodies (SPEC §4, §10 "JSON"): a top-level object whose keys are matched
//! case-insensitively. Nothing else is materialised: other members are walked only for keys
//! naming the parameter, and the matching value borrows from the body unless it has escapes.
//!
//! Only a top-level key is the target (SPEC §4: a nested one alone means `missing`), but a nested
//! key naming the parameter beside a target is `duplicate`: a reader that walks the tokens and
//! stops at the first `target` would act on the nested value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{name_matches, ExtractError};

/// The parameter's value in a JSON body. A leading UTF-8 BOM is skipped; anything but one
/// object of UTF-8 text (trailing data included) is [`ExtractError::BadBody`]; a nested key
/// alone does not count, beside a top-level one it is [`ExtractError::Duplicate`]. The whole body
/// must be UTF-8, not only the strings serde reads: a member skipped here is one the pool's
/// deserialiser reads too.
pub fn find<'a>(body: &'a [u8], parameter: &str) -> Result<Option<Cow<'a, str>>, ExtractError> {
    let (members, nested) = read(body, parameter)?;
    match members {
        Members::Absent => Ok(None),
        Members::Found(_) if nested => Err(ExtractError::Duplicate),
        Members::Duplicate => Err(ExtractError::Duplicate),
        Members::Found(Member::NotString) => Err(ExtractError::Malformed),
        Members::Found(Member::String(value)) => Ok(Some(value)),
    }
}

/// Whether a JSON body names the parameter in a nested object, for a body [`find`] found no
/// target in while the request carries one elsewhere (the query, a `Data:` header).
pub fn nests(body: &[u8], parameter: &str) -> bool {
    read(body, parameter).is_ok_and(|(_, nested)| nested)
}

fn read<'a>(body: &'a [u8], parameter: &str) -> Result<(Members<'a>, bool), ExtractError> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let body = std::str::from_utf8(body).map_err(|_| ExtractError::BadBody)?;
    let mut deserializer = serde_json::Deserializer::from_str(body);
    let read = deserializer
        .deserialize_map(TopLevel { parameter })
        .map_err(|_| ExtractError::BadBody)?;
    deserializer.end().map_err(|_| ExtractError::BadBody)?;
    Ok(read)
}

enum Members<'de> {
    Absent,
    Found(Member<'de>),
    Duplicate,
}

enum Member<'de> {
    String(Cow<'de, str>),
    NotString,
}

struct TopLevel<'p> {
    parameter: &'p str,
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    /// The top-level members naming the parameter, and whether a nested key names it too.
    type Value = (Members<'de>, bool);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Members::Absent;
        let mut nested = false;
        let key = KeyMatches {
            parameter: self.parameter,
        };
        while let Some(matches) = map.next_key_seed(key)? {
            if !matches {
                nested |= map.next_value_seed(Nested(key))?;
                continue;
            }
            let value = map.next_value_seed(MemberSeed)?;
            members = match members {
                Members::Absent => Members::Found(value),
                _ => Members::Duplicate,
            };
        }
        Ok((members, nested))
    }
}

/// Walks a value for an object key naming the parameter, at any depth.
#[derive(Clone, Copy)]
struct Nested<'p>(KeyMatches<'p>);

impl<'de> DeserializeSeed<'de> for Nested<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i128<E>(self, _: i128) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u128<E>(self, _: u128) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_none<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(inner) = seq.next_element_seed(self)? {
            found |= inner;
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(matches) = map.next_key_seed(self.0)? {
            found |= matches;
            found |= map.next_value_seed(self)?;
        }
        Ok(found)
    }
}

/// Deserialises a key to whether it names the parameter, without keeping it.
#[derive(Clone, Copy)]
struct KeyMatches<'p> {
    parameter: &'p str,
}

impl<'de> DeserializeSeed<'de> for KeyMatches<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatches<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(name_matches(key, self.parameter))
    }
}

/// Deserialises the matching member: its string, borrowed when unescaped, or the fact that it
/// is not a string (consumed so the rest of the document is still checked).
struct MemberSeed;

impl<'de> DeserializeSeed<'de> for MemberSeed {
    type Value = Member<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Member<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MemberSeed {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Member<'de>, E> {
        Ok(Member::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Member<'de>, E> {
        Ok(Member::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Member<'de>, E> {
        Ok(Member::String(Cow::Owned(v)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Member<'de>, E> {
        Ok(Member::NotString)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Member<'de>, E> {
        Ok(Member::NotString)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Member<'de>, E> {
        Ok(Member::NotString)
    }

    fn visit_i128<E>(self, _: i128) -> Result<Member<'de>, E> {
        Ok(Member::NotString)
    }

    fn visit_u128<E>(self, _: u128) -> Result<Member<'de>, E> {
        Ok(Member::NotString)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Member<'de>, E> {
        Ok(Member::NotString)
    }

    fn visit_unit<E>(self) -> Result<Member<'de>, E> {
        Ok(Member::NotString)
    }

    fn visit_none<E>(self) -> Result<Member<'de>, E> {
        Ok(Member::NotString)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Member<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Member::NotString)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Member<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Member::NotString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ExtractError::*;

    #[test]
    fn json_table() {
        let cases: &[(&[u8], crate::extract::Expected)] = &[
            (br#"{"target":"tel:+1"}"#, Ok(Some("tel:+1"))),
            (br#" { "target" : "sip:a@b.c" } "#, Ok(Some("sip:a@b.c"))),
            (br#"{"Target":"x"}"#, Ok(Some("x"))),
            (br#"{"\u0074arget":"x"}"#, Ok(Some("x"))),
            (br#"{"target":"tel:\u002B1"}"#, Ok(Some("tel:+1"))),
            (br#"{"target":"a\"b"}"#, Ok(Some("a\"b"))),
            (br#"{"target":""}"#, Ok(Some(""))),
            (b"\xef\xbb\xbf{\"target\":\"x\"}", Ok(Some("x"))),
            (
                br#"{"a":[1,{"c":"target"}],"target":"x","b":{"c":null}}"#,
                Ok(Some("x")),
            ),
            (br#"{"x":{"target":"a"}}"#, Ok(None)),
            (
                br#"{"x":[{"target":"a"}],"y":{"z":{"TARGET":1}}}"#,
                Ok(None),
            ),
            (br#"{"a":[1,{"target":"no"}],"target":"x"}"#, Err(Duplicate)),
            (
                br#"{"target":"x","input":{"target":"sip:x@evil.example"}}"#,
                Err(Duplicate),
            ),
            (
                br#"{"input":{"deeper":[{"ta\u0072get":"y"}]},"target":"x"}"#,
                Err(Duplicate),
            ),
            (br#"{}"#, Ok(None)),
            (br#"{"targets":"a"}"#, Ok(None)),
            (br#"{"Target":1}"#, Err(Malformed)),
            (br#"{"target":null}"#, Err(Malformed)),
            (br#"{"target":true}"#, Err(Malformed)),
            (br#"{"target":["tel:+1"]}"#, Err(Malformed)),
            (br#"{"target":{"uri":"tel:+1"}}"#, Err(Malformed)),
            (br#"{"target":1e400}"#, Err(BadBody)),
            (br#"{"target":"a","TARGET":"b"}"#, Err(Duplicate)),
            (br#"{"target":"a","target":"a"}"#, Err(Duplicate)),
            (br#"{"target":1,"\u0054arget":"b"}"#, Err(Duplicate)),
            (br#"{"target":"a","target":"b""#, Err(BadBody)),
            (br#"[1]"#, Err(BadBody)),
            (br#""target""#, Err(BadBody)),
            (b"null", Err(BadBody)),
            (br#"{"target":"a"} x"#, Err(BadBody)),
            (br#"{"target":"a"}{}"#, Err(BadBody)),
            (br#"{"target":"a",}"#, Err(BadBody)),
            (br#"{"target":"\ud800"}"#, Err(BadBody)),
            (b"{\"target\":\"\xff\"}", Err(BadBody)),
            (b"{\"target\":\"x\",\"other\":\"\xff\"}", Err(BadBody)),
            (b"{\"\xc0\xaf\":1,\"target\":\"x\"}", Err(BadBody)),
            (b"\xef\xbb\xbf\xef\xbb\xbf{}", Err(BadBody)),
            (b"{'target':'a'}", Err(BadBody)),
        ];
        for &(body, want) in cases {
            let have = find(body, "target");
            assert_eq!(
                crate::extract::view(&have),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut body = String::from("{\"a\":");
        body.push_str(&"[".repeat(100_000));
        assert_eq!(find(body.as_bytes(), "target"), Err(BadBody));
    }

    #[test]
    fn unescaped_values_are_borrowed() {
        assert!(matches!(
            find(br#"{"target":"tel:+1"}"#, "target"),
            Ok(Some(Cow::Borrowed("tel:+1")))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = find(&body, "target");
        }

        #[test]
        fn never_panics_on_near_json(body in r#"[{}\[\]":,0-9a-zA-Z \\]{0,40}"#) {
            let _ = find(body.as_bytes(), "target");
        }
    }
}
