//! Media types, read two ways.
//!
//! - [`MediaType::parse`] is RFC 9110 §8.3.1: `type "/" subtype *( OWS ";" OWS [ parameter ] )`,
//!   parameter values as tokens or quoted strings. ringfence uses it to choose a body grammar
//!   and to find a batch's boundary. It refuses what it cannot read exactly, quoted-pairs
//!   included (a lax parser and a strict one would unescape differently).
//! - [`aspnet_attribute`] is ASP.NET's own reading, `HttpRequest.GetAttributeFromHeader`
//!   (System.Web/HttpRequest.cs), which decides the request encoding that ASP.NET re-decodes
//!   the query and the form with. It is blind to quoting: it finds `charset` inside a quoted
//!   parameter value, after a `,`, or after whitespace, where RFC 9110 sees no parameter.
//!
//! Both readings of one header are taken, and each must agree with what was judged:
//! [`request_encoding`] gives the encoding ASP.NET would derive.

/// Why a media type could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("not `type/subtype`")]
    Essence,
    #[error("malformed parameter list")]
    Parameters,
}

/// A media type read by RFC 9110: its essence, and a parameter list already checked to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    essence: &'a str,
    /// Everything after the first `;`, known to be well formed.
    parameters: &'a str,
}

impl<'a> MediaType<'a> {
    pub fn parse(value: &'a str) -> Result<MediaType<'a>, MediaError> {
        // Split at bytes (both ASCII, so at char boundaries): a media type is a few bytes,
        // shorter than what a `str::split_once` search costs to set up.
        let (essence, parameters) = super::split_at_byte(value, b';').unwrap_or((value, ""));
        let essence = essence.trim_matches(is_ows);
        let (top, sub) = super::split_at_byte(essence, b'/').ok_or(MediaError::Essence)?;
        if !is_token(top) || !is_token(sub) {
            return Err(MediaError::Essence);
        }
        let media = MediaType {
            essence,
            parameters,
        };
        for parameter in media.parameters() {
            parameter?;
        }
        Ok(media)
    }

    /// `type/subtype` as written; compare it with [`MediaType::is`].
    pub fn essence(&self) -> &'a str {
        self.essence
    }

    /// Whether the essence is `essence`, ASCII case-insensitively.
    pub fn is(&self, essence: &str) -> bool {
        self.essence.eq_ignore_ascii_case(essence)
    }

    /// The value of the parameter `name` (case-insensitive); `Err` when it is given twice.
    pub fn parameter(&self, name: &str) -> Result<Option<&'a str>, MediaError> {
        let mut found = None;
        for (n, value) in self.parameters().flatten() {
            if n.eq_ignore_ascii_case(name) && found.replace(value).is_some() {
                return Err(MediaError::Parameters);
            }
        }
        Ok(found)
    }

    /// Whether every parameter reads well and is named in `names` (case-insensitive).
    pub fn has_only(&self, names: &[&str]) -> bool {
        self.parameters()
            .all(|p| p.is_ok_and(|(n, _)| names.iter().any(|m| n.eq_ignore_ascii_case(m))))
    }

    fn parameters(&self) -> Parameters<'a> {
        Parameters {
            rest: self.parameters,
        }
    }
}

/// The parameters after the first `;`, as `(name, value)` with quotes removed.
struct Parameters<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Parameters<'a> {
    type Item = Result<(&'a str, &'a str), MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest.trim_start_matches(is_ows);
            if rest.is_empty() {
                return None;
            }
            // Each parameter follows a ';' (the first one's was consumed by the split).
            let rest = rest
                .strip_prefix(';')
                .unwrap_or(rest)
                .trim_start_matches(is_ows);
            if rest.is_empty() || rest.starts_with(';') {
                self.rest = rest;
                continue;
            }
            let parsed = parameter(rest);
            self.rest = match parsed {
                Ok((_, after)) => after,
                Err(_) => "",
            };
            return Some(parsed.map(|(pair, _)| pair));
        }
    }
}

/// `token "=" ( token / quoted-string )` (whitespace around `=` tolerated), then OWS and
/// either `;` or the end.
#[allow(clippy::type_complexity)]
fn parameter(input: &str) -> Result<((&str, &str), &str), MediaError> {
    let bad = MediaError::Parameters;
    let name_len = input.bytes().take_while(|&b| is_tchar(b)).count();
    let (name, rest) = input.split_at(name_len);
    // RFC 9110 allows no whitespace around '='; clients send it, and it is unambiguous.
    let rest = rest
        .trim_start_matches(is_ows)
        .strip_prefix('=')
        .ok_or(bad)?
        .trim_start_matches(is_ows);
    if name.is_empty() {
        return Err(bad);
    }
    let (value, after) = match rest.strip_prefix('"') {
        Some(quoted) => {
            let end = quoted.find('"').ok_or(bad)?;
            let (value, after) = quoted.split_at(end);
            let qdtext = |b: u8| b == b'\t' || ((b' '..=b'~').contains(&b) && b != b'\\');
            if !value.bytes().all(qdtext) {
                return Err(bad);
            }
            (value, &after[1..])
        }
        None => {
            let len = rest.bytes().take_while(|&b| is_tchar(b)).count();
            if len == 0 {
                return Err(bad);
            }
            rest.split_at(len)
        }
    };
    let after = after.trim_start_matches(is_ows);
    if !after.is_empty() && !after.starts_with(';') {
        return Err(bad);
    }
    Ok(((name, value), after))
}

/// ASP.NET's `HttpRequest.GetAttributeFromHeader(headerValue, attrName)`, step for step:
/// search from index 1 for `name`, case-insensitively, until one is preceded by `;`, `,` or
/// whitespace and followed by `=` or whitespace; skip whitespace, `=`, whitespace; then the value
/// is the text up to the next `"` when it opens with one (the empty quoted value is no value),
/// else up to the next space or `,` (not `;`). Both are trimmed.
///
/// The original compares with the invariant culture, which ignores default-ignorable code
/// points, and tests `Char.IsWhiteSpace`, which includes non-ASCII spaces: non-ASCII input is
/// therefore [`AspnetAttribute::Unreadable`] rather than guessed at.
pub fn aspnet_attribute<'a>(header: &'a str, name: &str) -> AspnetAttribute<'a> {
    if !header.is_ascii() {
        return AspnetAttribute::Unreadable;
    }
    let bytes = header.as_bytes();
    let (l, k) = (bytes.len(), name.len());
    let white = |b: u8| b.is_ascii_whitespace() || b == 0x0b;
    let mut i = 1;
    let found = loop {
        if i >= l {
            break None;
        }
        let Some(at) = find_ignore_case(bytes, name.as_bytes(), i) else {
            break None;
        };
        if at + k >= l {
            break None;
        }
        let (prev, next) = (bytes[at - 1], bytes[at + k]);
        if (prev == b';' || prev == b',' || white(prev)) && (next == b'=' || white(next)) {
            break Some(at);
        }
        i = at + k;
    };
    let Some(at) = found else {
        return AspnetAttribute::Absent;
    };
    let mut i = at + k;
    while i < l && white(bytes[i]) {
        i += 1;
    }
    if i >= l || bytes[i] != b'=' {
        return AspnetAttribute::Absent;
    }
    i += 1;
    while i < l && white(bytes[i]) {
        i += 1;
    }
    if i >= l {
        return AspnetAttribute::Absent;
    }
    let value = if bytes[i] == b'"' {
        if i == l - 1 {
            return AspnetAttribute::Absent;
        }
        match header[i + 1..].find('"') {
            Some(0) | None => return AspnetAttribute::Absent,
            Some(len) => &header[i + 1..i + 1 + len],
        }
    } else {
        let len = bytes[i..]
            .iter()
            .take_while(|&&b| b != b' ' && b != b',')
            .count();
        &header[i..i + len]
    };
    AspnetAttribute::Value(value.trim_matches(|c: char| white(c as u8)))
}

/// What [`aspnet_attribute`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AspnetAttribute<'a> {
    Absent,
    Value(&'a str),
    /// The header holds non-ASCII text, whose culture-aware reading ringfence does not model.
    Unreadable,
}

/// The first `needle` in `haystack` at or after `from`, ASCII case-insensitively.
fn find_ignore_case(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let last = haystack.len().checked_sub(needle.len())?;
    (from..=last).find(|&at| haystack[at..at + needle.len()].eq_ignore_ascii_case(needle))
}

/// The encoding ASP.NET would re-decode the query and the form with
/// (`HttpRequest.GetEncodingFromHeaders`, read by `ContentEncoding` and `QueryStringEncoding`):
/// - with a `User-Agent` that begins with `UP`, a non-empty `x-up-devcap-post-charset`;
/// - else, when there is a body, the Content-Type `charset` by [`aspnet_attribute`].
///
/// ringfence asks a stricter question, so that no User-Agent spelling matters:
/// `x-up-devcap-post-charset` is read whatever the User-Agent (the original's `IsPrefix` is a
/// linguistic comparison, blind to ignorable characters), and every value must be UTF-8.
/// `Ok` means UTF-8 or nothing was derived (ASP.NET then uses its configured `requestEncoding`,
/// UTF-8 by default); `Err` names what is not UTF-8.
pub fn request_encoding<'a>(
    up_devcap_post_charset: impl IntoIterator<Item = &'a str>,
    content_type: Option<&'a str>,
    has_body: bool,
) -> Result<(), EncodingError> {
    for value in up_devcap_post_charset {
        let value = value.trim();
        if !value.is_empty() && !is_utf8(value) {
            return Err(EncodingError::UpDevcapPostCharset);
        }
    }
    if !has_body {
        return Ok(());
    }
    // The value as the reference source ends it (at a space or a comma), and as SPEC §4 ends it
    // (at `;` too), without stray quotes: each must be UTF-8 or no encoding's name.
    let acceptable = |charset: &str| is_utf8(charset) || !could_name_an_encoding(charset);
    let cut = |charset: &'a str| {
        charset
            .split(';')
            .next()
            .unwrap_or(charset)
            .trim()
            .trim_matches('"')
    };
    match content_type.map(|ct| aspnet_attribute(ct, "charset")) {
        None | Some(AspnetAttribute::Absent) => Ok(()),
        Some(AspnetAttribute::Value(charset))
            if acceptable(charset) && acceptable(cut(charset)) =>
        {
            Ok(())
        }
        Some(AspnetAttribute::Value(_) | AspnetAttribute::Unreadable) => {
            Err(EncodingError::Charset)
        }
    }
}

/// Whether `Encoding.GetEncoding(name)` could accept the text: .NET's encoding names and
/// aliases (`encodingtable.cs`) are letters, digits and `-_.:$`, matched without trimming. Any
/// other text (`utf-8;` read up to a space, `ibm037"` up to the end) makes it throw, and ASP.NET
/// then uses its configured `requestEncoding`.
fn could_name_an_encoding(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:$".contains(&b))
}

/// Where a request encoding other than UTF-8 came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    #[error("x-up-devcap-post-charset names another encoding than UTF-8")]
    UpDevcapPostCharset,
    #[error("the Content-Type charset, as ASP.NET finds it, is not UTF-8")]
    Charset,
}

/// The one encoding name ringfence reads as UTF-8. .NET knows aliases (`unicode-1-1-utf-8`);
/// refusing them costs nothing real clients send.
pub fn is_utf8(name: &str) -> bool {
    name.eq_ignore_ascii_case("utf-8")
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// RFC 9110 §5.6.2 `tchar`.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_reading_takes_the_essence_and_well_formed_parameters_only() {
        let json = MediaType::parse("Application/JSON ; charset=\"UTF-8\" ;").unwrap();
        assert!(json.is("application/json"));
        assert_eq!(json.parameter("CHARSET"), Ok(Some("UTF-8")));
        assert_eq!(json.parameter("boundary"), Ok(None));
        let batch = MediaType::parse("multipart/batching;boundary=\"a b\"; charset=UTF-8").unwrap();
        assert_eq!(batch.parameter("boundary"), Ok(Some("a b")));
        let hidden = MediaType::parse("application/json; x=\"a;charset=latin1\"").unwrap();
        assert_eq!(hidden.parameter("charset"), Ok(None));
        let spaced = MediaType::parse(" multipart/batching ; boundary = x ").unwrap();
        assert_eq!(spaced.parameter("boundary"), Ok(Some("x")));
        let twice = MediaType::parse("text/xml; charset=utf-8; CHARSET=utf-8").unwrap();
        assert_eq!(twice.parameter("charset"), Err(MediaError::Parameters));
        for bad in [
            "",
            "application",
            "application/",
            "/json",
            "application json/x",
            "application/json x",
            "application/json; charset",
            "application/json; charset=",
            "application/json; charset=\"utf-8",
            "application/json; charset=\"utf\\-8\"",
            "application/json; a=b c=d",
            "application/json; =b",
            "application/json; a=\"\u{e9}\"",
            "application/json, application/xml",
        ] {
            assert!(MediaType::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn aspnet_reading_is_blind_to_quotes_and_stops_at_space_or_comma() {
        use AspnetAttribute::*;
        let cases: &[(&str, AspnetAttribute<'_>)] = &[
            ("application/json; charset=utf-8", Value("utf-8")),
            ("application/json;CHARSET=ibm037", Value("ibm037")),
            ("application/json; x=\"a;charset=ibm037 \"", Value("ibm037")),
            (
                "application/json; x=\"a;charset=ibm037\"",
                Value("ibm037\""),
            ),
            ("application/json, charset=ibm037", Value("ibm037")),
            ("application/json charset=ibm037", Value("ibm037")),
            ("application/json;\tcharset\t=\t\"ibm037\"", Value("ibm037")),
            ("application/json; charset=\" ibm037 \"", Value("ibm037")),
            ("application/json; charset=utf-8;x=y", Value("utf-8;x=y")),
            ("application/json; charset=utf-8,utf-16", Value("utf-8")),
            ("application/json; xcharset=ibm037", Absent),
            ("application/json; charsetx=ibm037", Absent),
            ("charset=ibm037", Absent),
            (";charset=ibm037", Value("ibm037")),
            ("application/json; charset", Absent),
            ("application/json; charset=", Absent),
            ("application/json; charset=\"\"", Absent),
            ("application/json; charset=\"", Absent),
            ("application/json; charset=\"ibm037", Absent),
            (
                "application/json; xcharset=a; charset=ibm037",
                Value("ibm037"),
            ),
            ("application/json; charset x; charset=ibm037", Absent),
            ("application/json; char\u{ad}set=ibm037", Unreadable),
        ];
        for &(header, want) in cases {
            assert_eq!(aspnet_attribute(header, "charset"), want, "{header:?}");
        }
    }

    #[test]
    fn the_request_encoding_must_be_utf8_however_it_is_derived() {
        use EncodingError::*;
        let json = Some("application/json; charset=utf-8");
        assert_eq!(request_encoding([], json, true), Ok(()));
        assert_eq!(request_encoding(["UTF-8", " "], json, true), Ok(()));
        assert_eq!(
            request_encoding(["ibm037"], None, false),
            Err(UpDevcapPostCharset)
        );
        let hidden = Some("application/json; x=\"a;charset=ibm037 \"");
        assert_eq!(request_encoding([], hidden, true), Err(Charset));
        assert_eq!(request_encoding([], hidden, false), Ok(()));
        assert_eq!(
            request_encoding([], Some("text/xml;charset=\u{feff}utf-8"), true),
            Err(Charset)
        );
        // Values no encoding is named (GetEncoding throws and ASP.NET falls back to UTF-8),
        // unless they name one once cut at `;` and unquoted, as SPEC §4 reads them.
        let utf8_trailing = Some("application/json; charset=utf-8; odata=verbose");
        assert_eq!(request_encoding([], utf8_trailing, true), Ok(()));
        let unnamed = Some("application/json; x=\"a;charset=not/an-encoding\"");
        assert_eq!(request_encoding([], unnamed, true), Ok(()));
        let trailing = Some("application/json; charset=utf-16; boundary=x");
        assert_eq!(request_encoding([], trailing, true), Err(Charset));
        let glued = Some("application/json; charset=ibm037;x=y");
        assert_eq!(request_encoding([], glued, true), Err(Charset));
        let quote = Some("application/json; x=\"a;charset=ibm037\"");
        assert_eq!(request_encoding([], quote, true), Err(Charset));
        let spaced = Some("application/json; x=\"a;charset=ibm037 \"");
        assert_eq!(request_encoding([], spaced, true), Err(Charset));
        let comma = Some("application/json, charset=utf-32,");
        assert_eq!(request_encoding([], comma, true), Err(Charset));
    }

    proptest! {
        #[test]
        fn splitting_at_a_byte_is_split_once(text in any::<String>(), ascii in "[ -~;/:]{0,40}") {
            for t in [&text, &ascii] {
                prop_assert_eq!(crate::iis::split_at_byte(t, b';'), t.split_once(';'));
                prop_assert_eq!(crate::iis::split_at_byte(t, b'/'), t.split_once('/'));
                prop_assert_eq!(crate::iis::split_at_byte(t, b':'), t.split_once(':'));
            }
        }

        #[test]
        fn neither_reading_panics(header in any::<String>(), ascii in "[ -~\t]{0,40}") {
            let _ = MediaType::parse(&header);
            let _ = MediaType::parse(&ascii);
            let _ = aspnet_attribute(&header, "charset");
            let _ = aspnet_attribute(&ascii, "charset");
        }

        #[test]
        fn a_charset_the_rfc_reading_finds_is_found_by_aspnet_too(
            value in "[a-zA-Z0-9-]{1,12}",
            quoted in any::<bool>(),
            space in any::<bool>(),
        ) {
            let value_text = if quoted { format!("\"{value}\"") } else { value.clone() };
            let sep = if space { "; " } else { ";" };
            let header = format!("application/json{sep}charset={value_text}");
            let rfc = MediaType::parse(&header).unwrap().parameter("charset").unwrap();
            prop_assert_eq!(rfc, Some(value.as_str()));
            prop_assert_eq!(aspnet_attribute(&header, "charset"), AspnetAttribute::Value(&value));
        }
    }
}
