//! What the judge reads of a request head, and how: the Host it is judged by, its one
//! Content-Type, its Content-Encoding list, and the headers the pool acts on although no client
//! needs them on UCWA (method overrides, ASP.NET's cookieless-session header). Each reader takes
//! the header's lines, so a batch part's headers are read by the same code as a request's.

use std::borrow::Cow;

use http::header::{HeaderName, HeaderValue};
use http::Version;

use crate::iis::{self, host};
use crate::reject::Rejection;

mod head;
mod headers;
pub use head::{Head, RequestTarget, TargetForm};
pub use headers::{is_field_value, Headers, InvalidLine, Line};

/// `X-HTTP-Method-Override` and its kin: ASP.NET and WCF honour them, so on UCWA a POST could be
/// read as another method, or the reverse.
pub const METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Headers that change the path the pool routes on, so that no reading of the request line
/// predicts it: `AspFilterSessionId`, whose value System.Web's
/// `CookielessHelperClass.GetCookielessValuesFromHeader` cuts out of the path
/// (System.Web/Security/CookielessHelper.cs), and `X-Original-URL` / `X-Rewrite-URL`, which
/// URL-rewriting front ends set and some frameworks route on instead of the request line.
pub const PATH_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("aspfiltersessionid"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

/// ASP.NET's `HttpRequest.GetEncodingFromHeaders` reads this header's charset when the
/// User-Agent begins with `UP` (OWASP CRS rule 920490).
pub const X_UP_DEVCAP_POST_CHARSET: &str = "x-up-devcap-post-charset";

/// What a header reads as when it cannot be read unambiguously: no media type, coding or
/// grammar accepts it, so a non-empty body is refused.
pub const UNREADABLE: &str = "\u{fffd}";

/// The host the request names: an absolute-form or HTTP/2 authority, else the one Host header
/// (RFC 9112 §3.2.2). It must be `host[:port]` ([`host::parse_authority`]); userinfo is refused
/// (RFC 9110 §4.2.4), since the organisation would be chosen by the text after the `@` while
/// the pool receives the whole value.
pub fn host(head: &Head) -> Result<HeaderValue, Rejection> {
    let value = if let Some(authority) = head.target.authority() {
        HeaderValue::from_str(authority.as_str()).map_err(|_| Rejection::BadHost)?
    } else {
        let mut hosts = head.headers.get_all("host");
        match (hosts.next(), hosts.next()) {
            (Some(h), None) => head.headers.header_value(h).ok_or(Rejection::BadHost)?,
            (None, None) if head.version < Version::HTTP_11 => {
                return Ok(HeaderValue::from_static(""))
            }
            _ => return Err(Rejection::BadHost),
        }
    };
    let text = value.to_str().map_err(|_| Rejection::BadHost)?;
    host::parse_authority(text).ok_or(Rejection::BadHost)?;
    Ok(value)
}

/// The host a request named, for the trail of a request refused for it: the absolute-form
/// authority, else its Host lines joined as a list (empty without either). Not checked: the
/// trail escapes it.
pub fn host_as_sent(head: &Head) -> HeaderValue {
    if let Some(authority) = head.target.authority() {
        return HeaderValue::from_str(authority.as_str()).unwrap_or(HeaderValue::from_static(""));
    }
    let mut hosts = head.headers.get_all("host");
    let Some(first) = hosts.next() else {
        return HeaderValue::from_static("");
    };
    let mut joined = first.to_vec();
    for more in hosts {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(more);
    }
    HeaderValue::from_bytes(&joined).unwrap_or(HeaderValue::from_static(""))
}

/// The values of every line of header `name`; `None` for a line that is not visible ASCII.
pub fn lines<'h>(
    headers: &'h Headers,
    name: &'h str,
) -> impl Iterator<Item = Option<&'h str>> + 'h {
    headers.get_all(name).map(visible)
}

/// A value as `HeaderValue::to_str` reads it: text when it is HTAB and visible ASCII only.
pub fn visible(value: &[u8]) -> Option<&str> {
    if is_visible(value) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Whether a value is HTAB and visible ASCII only (`HeaderValue::to_str`'s test).
pub fn is_visible(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// A singleton field such as Content-Type (RFC 9110 §8.3): sent twice, the pool may act on
/// another line than the first, so several lines (or one that cannot be read) read as
/// [`UNREADABLE`].
pub fn single<'a>(mut lines: impl Iterator<Item = Option<&'a str>>) -> Option<&'a str> {
    let first = lines.next()?;
    if lines.next().is_some() {
        return Some(UNREADABLE);
    }
    Some(first.unwrap_or(UNREADABLE))
}

/// A list field such as Content-Encoding: several lines are one comma-separated list (RFC 9110
/// §5.3), so `identity` on one line cannot hide `gzip` on the next.
pub fn list<'a>(lines: impl Iterator<Item = Option<&'a str>>) -> Option<Cow<'a, str>> {
    let mut joined: Option<Cow<'a, str>> = None;
    for line in lines {
        let line = line.unwrap_or(UNREADABLE);
        joined = Some(match joined {
            None => Cow::Borrowed(line),
            Some(before) => Cow::Owned(format!("{before}, {line}")),
        });
    }
    joined
}

/// A Content-Length value (RFC 9110 §8.6): a non-empty run of ASCII digits that fits a `u64`;
/// no sign, space or list.
pub fn decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Every Cookie line's bytes, as they came.
pub fn cookies(headers: &Headers) -> impl Iterator<Item = &[u8]> {
    headers.get_all("cookie")
}

/// Whether a cookie's name is `name` as ASP.NET's `Request[name]` could find it: the indexer
/// falls back from the query and the form to `Request.Cookies` (System.Web/HttpRequest.cs,
/// `this[String key]`), whose names are split at `;` and `String.Trim()`med of any Unicode
/// white space (`HttpRequest.FillInCookiesCollection`), so `;\u{a0}target=` names `target`. The
/// header is read as UTF-8 and as the ANSI code page IIS reads it with (Latin-1 here): whichever
/// finds the name.
pub fn has_cookie<'a>(lines: impl Iterator<Item = &'a [u8]>, name: &str) -> bool {
    lines
        .flat_map(|line| line.split(|&b| b == b';'))
        .any(|cookie| {
            let cookie_name = cookie.split(|&b| b == b'=').next().unwrap_or(cookie);
            let is = |n: &str| iis::names_equal(n.trim_matches(char::is_whitespace), name);
            match std::str::from_utf8(cookie_name) {
                // ASCII reads the same in both code pages.
                Ok(ascii) if ascii.is_ascii() => is(ascii),
                utf8 => {
                    let latin1: String = cookie_name.iter().map(|&b| char::from(b)).collect();
                    is(&latin1) || utf8.is_ok_and(is)
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header, Request};

    fn host_of(uri: &str, hosts: &[&str]) -> Result<HeaderValue, Rejection> {
        let mut request = Request::builder().uri(uri);
        for h in hosts {
            request = request.header(header::HOST, *h);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        host(&parts.into())
    }

    #[test]
    fn the_host_is_the_authority_or_the_one_host_header_without_userinfo() {
        let contoso = HeaderValue::from_static("lyncweb.contoso.com");
        assert_eq!(
            host_of("/ucwa", &["lyncweb.contoso.com"]),
            Ok(contoso.clone())
        );
        assert_eq!(
            host_of("http://lyncweb.contoso.com/ucwa", &["other.example"]),
            Ok(contoso)
        );
        assert_eq!(host_of("/ucwa", &[]), Err(Rejection::BadHost));
        assert_eq!(
            host_of("/ucwa", &["a.example", "b.example"]),
            Err(Rejection::BadHost)
        );
        assert_eq!(
            host_of("http://lync.fabrikam.com@lyncweb.contoso.com/ucwa", &[]),
            Err(Rejection::BadHost)
        );
        assert_eq!(
            host_of("/ucwa", &["lync.fabrikam.com@lyncweb.contoso.com"]),
            Err(Rejection::BadHost)
        );
        assert_eq!(host_of("/ucwa", &["a b"]), Err(Rejection::BadHost));
    }

    fn map(lines: &[(&'static str, &'static [u8])]) -> Headers {
        let mut map = Headers::default();
        for &(name, value) in lines {
            map.append(name, value);
        }
        map
    }

    #[test]
    fn a_repeated_or_unreadable_singleton_reads_as_unreadable() {
        let ct = "content-type";
        assert_eq!(single(lines(&map(&[]), ct)), None);
        let one = map(&[("content-type", b"application/json")]);
        assert_eq!(single(lines(&one, ct)), Some("application/json"));
        let twice = map(&[
            ("content-type", b"application/x-www-form-urlencoded"),
            ("content-type", b"application/json"),
        ]);
        assert_eq!(single(lines(&twice, ct)), Some(UNREADABLE));
        let opaque = map(&[("content-type", b"application/json\xff")]);
        assert_eq!(single(lines(&opaque, ct)), Some(UNREADABLE));
    }

    #[test]
    fn list_lines_are_read_as_one_list() {
        let ce = "content-encoding";
        assert_eq!(list(lines(&map(&[]), ce)), None);
        let hidden = map(&[
            ("content-encoding", b"identity"),
            ("content-encoding", b"gzip"),
        ]);
        assert_eq!(list(lines(&hidden, ce)).as_deref(), Some("identity, gzip"));
    }

    #[test]
    fn cookies_are_found_by_name_as_aspnet_splits_them() {
        let found = |lines: &[&'static [u8]]| {
            let jar: Vec<(&str, &[u8])> = lines.iter().map(|l| ("cookie", *l)).collect();
            has_cookie(cookies(&map(&jar)), "target")
        };
        assert!(found(&[b"a=1; TARGET=tel:+1900", b"b=2"]));
        assert!(found(&[b"x=1;target"]));
        assert!(found(&[b"a=1;\xa0target=tel:+1900"]));
        assert!(found(&[b"a=1;\xc2\xa0target=tel:+1900"]));
        assert!(found(&[b"a=1;\xe3\x80\x80target=tel:+1900"]));
        assert!(found(&[b"a=1;target\x85=tel:+1900"]));
        assert!(!found(&[b"targets=1; xtarget=2, target=3"]));
        // Names compare as `iis::names_equal` compares, stricter than the ordinal cookie lookup.
        assert!(found(&[b"a=1; \xc2\xadtarget=1"]));
    }
}
