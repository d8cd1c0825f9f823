//! Finds the raw value of a guarded parameter in the query string and in the body (SPEC §4, §10).
//! Values are returned decoded but unjudged; parsing targets is another module's job.
//!
//! Name matching everywhere is case-insensitive by [`name_matches`]. When several problems are
//! present, a body that cannot be parsed wins over a duplicate, which wins over a malformed value.

use std::borrow::Cow;

use crate::iis::{self, media, media::MediaType};

pub mod batch;
pub mod form;
pub mod json;
pub mod query;
pub mod xml;

/// Why no single value could be extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("the parameter is given more than once")]
    Duplicate,
    #[error("the parameter value is not valid")]
    Malformed,
    #[error("the body cannot be parsed")]
    BadBody,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("the body is content-encoded")]
    EncodedBody,
}

/// Which body grammar a Content-Type selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Xml,
    Form,
}

/// Chooses the grammar from Content-Type (RFC 9110 reading, [`MediaType`]), case-insensitively.
///
/// Parameters are ignored except `charset`, which must be `utf-8` for every kind (the back end
/// would otherwise decode the bytes differently than we do). A parameter list that cannot be
/// read, so could hide a charset, is refused too; ASP.NET's own quote-blind charset lookup is
/// the judge's business ([`crate::iis::media::request_encoding`]).
pub fn body_kind(content_type: Option<&str>) -> Result<BodyKind, ExtractError> {
    let unsupported = ExtractError::UnsupportedMediaType;
    let media = MediaType::parse(content_type.ok_or(unsupported)?).map_err(|_| unsupported)?;
    let kind = [
        ("application/json", BodyKind::Json),
        ("application/vnd.microsoft.com.ucwa+json", BodyKind::Json),
        ("application/xml", BodyKind::Xml),
        ("application/vnd.microsoft.com.ucwa+xml", BodyKind::Xml),
        ("text/xml", BodyKind::Xml),
        ("application/x-www-form-urlencoded", BodyKind::Form),
    ]
    .into_iter()
    .find_map(|(name, kind)| media.is(name).then_some(kind))
    .ok_or(unsupported)?;
    match media.parameter("charset") {
        Ok(None) => Ok(kind),
        Ok(Some(charset)) if media::is_utf8(charset) => Ok(kind),
        Ok(Some(_)) | Err(_) => Err(unsupported),
    }
}

/// The parameter's value in the query string (the part after '?', without it). None when absent.
pub fn from_query<'a>(
    query: &'a str,
    parameter: &str,
) -> Result<Option<Cow<'a, str>>, ExtractError> {
    query::find(query, parameter)
}

/// The parameter's value in a body. An empty body yields None whatever its type or encoding;
/// `content_encoding` is the raw header value if present.
pub fn from_body<'a>(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &'a [u8],
    parameter: &str,
) -> Result<Option<Cow<'a, str>>, ExtractError> {
    if body.is_empty() {
        return Ok(None);
    }
    if content_encoding.is_some_and(|e| !is_identity(e)) {
        return Err(ExtractError::EncodedBody);
    }
    match body_kind(content_type)? {
        BodyKind::Json => json::find(body, parameter),
        BodyKind::Xml => xml::find(body, parameter),
        BodyKind::Form => form::find(body, parameter),
    }
}

/// The target a request named where it was refused as `malformed`: the parameter's value in the
/// query, else in a form body, decoded but with what made it malformed (a control character)
/// kept, or as received where it cannot be decoded ([`query::attempted`]); `None` in JSON or
/// XML.
pub fn attempted(
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    parameter: &str,
) -> Option<String> {
    let in_query = || query::attempted(query?.as_bytes(), parameter, query::Grammar::QUERY);
    let in_form = || match body_kind(content_type) {
        Ok(BodyKind::Form) => query::attempted(body, parameter, query::Grammar::FORM),
        _ => None,
    };
    in_query().or_else(in_form)
}

/// Whether a body that holds no target of its own names the parameter where a looser reader
/// could find one: a JSON body's nested key ([`json::nests`]). Beside a target found elsewhere,
/// such a body makes the request `duplicate`.
pub fn nests(content_type: Option<&str>, body: &[u8], parameter: &str) -> bool {
    !body.is_empty()
        && matches!(body_kind(content_type), Ok(BodyKind::Json))
        && json::nests(body, parameter)
}

/// A Content-Encoding list naming no coding but `identity` (an empty list included).
pub(crate) fn is_identity(content_encoding: &str) -> bool {
    content_encoding
        .split(',')
        .map(|c| c.trim_matches(is_ows))
        .all(|c| c.is_empty() || c.eq_ignore_ascii_case("identity"))
}

/// Compares a name from the request with the configured parameter, as loosely as any reading
/// of the pool could ([`crate::iis::names_equal`]).
pub(crate) fn name_matches(candidate: &str, parameter: &str) -> bool {
    iis::names_equal(candidate, parameter)
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// What a test table expects from an extraction.
#[cfg(test)]
pub(crate) type Expected = Result<Option<&'static str>, ExtractError>;

/// Test view of an extraction result.
#[cfg(test)]
pub(crate) fn view<'x>(
    result: &'x Result<Option<Cow<'_, str>>, ExtractError>,
) -> Result<Option<&'x str>, ExtractError> {
    result.as_ref().map(|v| v.as_deref()).map_err(|e| *e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ExtractError::*;

    #[test]
    fn media_types() {
        let cases: &[(Option<&str>, Result<BodyKind, ExtractError>)] = &[
            (Some("application/json"), Ok(BodyKind::Json)),
            (Some("Application/JSON"), Ok(BodyKind::Json)),
            (Some("application/json; charset=utf-8"), Ok(BodyKind::Json)),
            (
                Some("application/json;charset=\"UTF-8\""),
                Ok(BodyKind::Json),
            ),
            (
                Some("application/json ; charset=\"utf-8\" ;"),
                Ok(BodyKind::Json),
            ),
            (
                Some("application/json ; charset=\"utf\\-8\" ;"),
                Err(UnsupportedMediaType),
            ),
            (Some("application/json; odata=verbose"), Ok(BodyKind::Json)),
            (
                Some("application/json; x=\"a;charset=utf-16\""),
                Ok(BodyKind::Json),
            ),
            (
                Some("application/vnd.microsoft.com.ucwa+json"),
                Ok(BodyKind::Json),
            ),
            (
                Some("application/json; charset=utf-16"),
                Err(UnsupportedMediaType),
            ),
            (
                Some("application/json; charset=\"utf-16\""),
                Err(UnsupportedMediaType),
            ),
            (
                Some("application/json; charset=utf-8; charset=latin1"),
                Err(UnsupportedMediaType),
            ),
            (Some("application/json; charset"), Err(UnsupportedMediaType)),
            (
                Some("application/json; charset=\"utf-8"),
                Err(UnsupportedMediaType),
            ),
            (Some("application/json; a=b c=d"), Err(UnsupportedMediaType)),
            (Some("application/xml"), Ok(BodyKind::Xml)),
            (Some("text/xml; charset=utf-8"), Ok(BodyKind::Xml)),
            (
                Some("application/vnd.microsoft.com.ucwa+xml"),
                Ok(BodyKind::Xml),
            ),
            (
                Some("text/xml; charset=iso-8859-1"),
                Err(UnsupportedMediaType),
            ),
            (
                Some("application/x-www-form-urlencoded"),
                Ok(BodyKind::Form),
            ),
            (Some("text/plain"), Err(UnsupportedMediaType)),
            (Some("application/jsonx"), Err(UnsupportedMediaType)),
            (Some(""), Err(UnsupportedMediaType)),
            (None, Err(UnsupportedMediaType)),
        ];
        for &(content_type, want) in cases {
            assert_eq!(body_kind(content_type), want, "{content_type:?}");
        }
    }

    #[test]
    fn body_dispatch() {
        let json = Some("application/json");
        // (content type, content encoding, body, expected)
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            &'static [u8],
            Expected,
        );
        let cases: &[Case] = &[
            (Some("text/plain"), None, b"", Ok(None)),
            (None, None, b"", Ok(None)),
            (json, Some("gzip"), b"", Ok(None)),
            (json, Some("gzip"), b"\x1f\x8b", Err(EncodedBody)),
            (Some("text/plain"), Some("br"), b"x", Err(EncodedBody)),
            (json, Some("identity, gzip"), b"{}", Err(EncodedBody)),
            (
                json,
                Some(" Identity "),
                br#"{"target":"a"}"#,
                Ok(Some("a")),
            ),
            (json, Some(""), br#"{"target":"a"}"#, Ok(Some("a"))),
            (
                Some("text/plain"),
                None,
                b"target=a",
                Err(UnsupportedMediaType),
            ),
            (None, None, b"target=a", Err(UnsupportedMediaType)),
            (
                Some("application/x-www-form-urlencoded"),
                None,
                b"target=a+b",
                Ok(Some("a b")),
            ),
            (
                Some("application/xml"),
                None,
                b"<input><property name=\"target\">a</property></input>",
                Ok(Some("a")),
            ),
            (json, None, br#"{"target":"tel:+1"}"#, Ok(Some("tel:+1"))),
        ];
        for &(content_type, encoding, body, want) in cases {
            let have = from_body(content_type, encoding, body, "target");
            assert_eq!(view(&have), want, "{content_type:?} {encoding:?} {body:?}");
        }
    }

    proptest! {
        #[test]
        fn from_body_never_panics(body in prop::collection::vec(any::<u8>(), 0..256), kind in 0usize..7) {
            let content_type = [
                Some("application/json"),
                Some("application/xml"),
                Some("application/x-www-form-urlencoded"),
                Some("text/plain"),
                None,
                Some("text/xml; charset=utf-8"),
                Some("application/json; charset=utf-16"),
            ][kind];
            let _ = from_body(content_type, None, &body, "target");
        }

        #[test]
        fn from_query_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let query = String::from_utf8_lossy(&bytes);
            let _ = from_query(&query, "target");
        }

        #[test]
        fn body_kind_never_panics(content_type in any::<String>()) {
            let _ = body_kind(Some(&content_type));
        }
    }
}
