//! A request head as ringfence carries it from the listener to the pool: method, target,
//! version and headers. The target of an HTTP/1.1 request line in origin form (`/path?query`,
//! nearly every request) is checked here, by the bytes `http::uri::PathAndQuery` accepts, in a
//! few passes the compiler vectorises; `http::Uri`'s own scan cost ~1,340 instructions a guarded
//! POST (docs/performance.md, session 35). Any other form, and an HTTP/2 request's target, is
//! `http::Uri` itself.

use bytes::Bytes;
use bytestring::ByteString;
use http::uri::{Authority, InvalidUri, Uri};
use http::{Method, Version};

/// What the judge, the trail and the pool's copy are made from.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: Method,
    pub target: RequestTarget,
    pub version: Version,
    pub headers: super::Headers,
}

impl From<http::request::Parts> for Head {
    fn from(parts: http::request::Parts) -> Head {
        Head {
            method: parts.method,
            target: RequestTarget::from(parts.uri),
            version: parts.version,
            headers: super::Headers::from_map(&parts.headers),
        }
    }
}

/// A request-target (RFC 9112 §3.2), read as `http::Uri` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget(Form);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Form {
    /// Origin form, up to a fragment (left out, as `http::Uri` leaves it); `query` is where the
    /// `?` stands.
    Origin {
        text: ByteString,
        query: Option<usize>,
    },
    /// Absolute, authority or asterisk form, or a target that came as a `Uri`.
    Uri(Uri),
}

/// `http::Uri`'s longest target (`MAX_LEN`).
const MAX_LEN: usize = u16::MAX as usize - 1;

impl RequestTarget {
    /// Reads a request line's target: an origin-form one here, any other by `http::Uri`.
    pub fn parse(bytes: Bytes) -> Result<RequestTarget, InvalidUri> {
        match origin(&bytes) {
            Some(Ok((end, query))) => {
                let text = ByteString::try_from(bytes.slice(..end));
                // `origin` found no other byte above 0x7F than a UTF-8 check can pass or refuse:
                // a target that is not UTF-8 is refused, as `http::Uri` refuses it.
                match text {
                    Ok(text) => Ok(RequestTarget(Form::Origin { text, query })),
                    Err(_) => Uri::from_maybe_shared(bytes).map(RequestTarget::from),
                }
            }
            // Refused, or not origin form: `http::Uri` gives the answer and its error.
            Some(Err(())) | None => Uri::from_maybe_shared(bytes).map(RequestTarget::from),
        }
    }

    /// The path, as `http::Uri::path` gives it.
    pub fn path(&self) -> &str {
        match &self.0 {
            Form::Origin { text, query } => {
                let path = &text[..query.unwrap_or(text.len())];
                if path.is_empty() {
                    "/"
                } else {
                    path
                }
            }
            Form::Uri(uri) => uri.path(),
        }
    }

    /// The query, without its `?`, as `http::Uri::query` gives it.
    pub fn query(&self) -> Option<&str> {
        match &self.0 {
            Form::Origin { text, query } => query.map(|q| &text[q + 1..]),
            Form::Uri(uri) => uri.query(),
        }
    }

    /// Path and query, as `http::Uri::path_and_query` gives them.
    pub fn path_and_query(&self) -> Option<&str> {
        match &self.0 {
            Form::Origin { text, .. } => Some(text),
            Form::Uri(uri) => uri.path_and_query().map(|p| p.as_str()),
        }
    }

    /// The authority of an absolute-form, authority-form or HTTP/2 target.
    pub fn authority(&self) -> Option<&Authority> {
        match &self.0 {
            Form::Origin { .. } => None,
            Form::Uri(uri) => uri.authority(),
        }
    }

    /// The origin-form target the pool is sent (RFC 9112 §3.2.1): the path, `/` when it is
    /// empty, and the query; an origin-form target's own bytes. An absolute-form target with an
    /// empty path and a query (`http://host?/ucwa/...`) goes as `/?/ucwa/...`, the path `/` it
    /// was judged by, not as `?/ucwa/...` (fresh eyes, round 41).
    pub fn origin_form(&self) -> ByteString {
        let path = match self.path() {
            "" => "/",
            path => path,
        };
        match (&self.0, self.query()) {
            (Form::Origin { text, .. }, _) => text.clone(),
            (Form::Uri(_), None) => ByteString::from(path),
            (Form::Uri(_), Some(query)) => ByteString::from(format!("{path}?{query}")),
        }
    }

    /// Which of RFC 9112's four forms the target has; an HTTP/2 request's is absolute.
    pub fn form(&self) -> TargetForm {
        match &self.0 {
            Form::Origin { .. } => TargetForm::Origin,
            // HTTP/2's `:path *` comes with a scheme and an authority (fresh eyes, round 42).
            Form::Uri(uri) if uri.path() == "*" => TargetForm::Asterisk,
            Form::Uri(uri) if uri.scheme().is_some() => TargetForm::Absolute,
            Form::Uri(uri) if uri.authority().is_some() => TargetForm::Authority,
            Form::Uri(_) => TargetForm::Origin,
        }
    }
}

/// RFC 9112 §3.2's request-target forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    Origin,
    Absolute,
    /// `host:port`, for CONNECT only.
    Authority,
    /// `*`, for a server-wide OPTIONS only.
    Asterisk,
}

impl From<Uri> for RequestTarget {
    fn from(uri: Uri) -> RequestTarget {
        RequestTarget(Form::Uri(uri))
    }
}

impl std::fmt::Display for RequestTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Form::Origin { text, .. } => f.write_str(text),
            Form::Uri(uri) => uri.fmt(f),
        }
    }
}

/// An origin-form target as `http::uri::PathAndQuery::from_shared` reads it (http 1.x's
/// `scan_path_and_query`): the length up to a fragment and where the query begins, or `Err`
/// for a byte it refuses; `None` when the target is not origin form (not `/` first) or too long,
/// for `http::Uri` to answer.
///
/// Its byte classes: in the path anything but controls and space, `<`, `>`, `` ` `` and DEL
/// (`"`, `{`, `}` are let through, as httparse lets them); in the query anything but controls
/// and space, `"`, `<`, `>` and DEL; bytes above 0x7F in either, if the whole is UTF-8; nothing
/// after a `#` is looked at.
fn origin(bytes: &[u8]) -> Option<Result<(usize, Option<usize>), ()>> {
    if bytes.first() != Some(&b'/') || bytes.len() > MAX_LEN {
        return None;
    }
    let fragment = memchr::memchr(b'#', bytes).unwrap_or(bytes.len());
    let kept = &bytes[..fragment];
    let query = memchr::memchr(b'?', kept);
    let (path, rest) = kept.split_at(query.unwrap_or(kept.len()));
    // Branch-free folds over every byte, which the compiler vectorises.
    let path_bad = path.iter().fold(false, |bad, &b| {
        bad | (b <= b' ') | (b == b'<') | (b == b'>') | (b == b'`') | (b == 0x7f)
    });
    let query_bad = rest.iter().skip(1).fold(false, |bad, &b| {
        bad | (b <= b' ') | (b == b'"') | (b == b'<') | (b == b'>') | (b == 0x7f)
    });
    if path_bad || query_bad {
        return Some(Err(()));
    }
    Some(Ok((fragment, query)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Path, query, path and query, authority.
    type Read = (String, Option<String>, Option<String>, Option<String>);

    /// What `http::Uri` makes of `bytes`, in the terms [`RequestTarget`] answers in.
    fn by_http(bytes: &[u8]) -> Option<Read> {
        let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(bytes)).ok()?;
        Some((
            uri.path().to_owned(),
            uri.query().map(str::to_owned),
            uri.path_and_query().map(|p| p.as_str().to_owned()),
            uri.authority().map(|a| a.as_str().to_owned()),
        ))
    }

    fn by_ours(bytes: &[u8]) -> Option<Read> {
        let target = RequestTarget::parse(Bytes::copy_from_slice(bytes)).ok()?;
        Some((
            target.path().to_owned(),
            target.query().map(str::to_owned),
            target.path_and_query().map(str::to_owned),
            target.authority().map(|a| a.as_str().to_owned()),
        ))
    }

    #[test]
    fn targets_read_as_http_reads_them() {
        for target in [
            "/",
            "/ucwa/oauth/v1/applications/1/me?target=tel:%2B1",
            "/a?",
            "/a?#",
            "/a#?b",
            "/a?b#c<>",
            "/a#<>",
            "/\"{}|^",
            "/a?\"",
            "/a?`{}",
            "/a`",
            "/a<",
            "/a?b>",
            "/a b",
            "/a\x7f",
            "/a?\x7f",
            "/caf\u{e9}?x=\u{e9}",
            "/a?b?c",
            "//host/x",
            "/%zz",
            "http://lync.fabrikam.com/ucwa/x?target=1",
            "lync.fabrikam.com:443",
            "*",
            "a/b",
            "?a",
            "#a",
            "",
        ] {
            assert_eq!(
                by_ours(target.as_bytes()),
                by_http(target.as_bytes()),
                "{target:?}"
            );
        }
        // Not UTF-8 above 0x7F: refused by both.
        for bytes in [&b"/a\xff"[..], b"/a?\xc3", b"/\xc3\x28"] {
            assert_eq!(by_ours(bytes), None, "{bytes:?}");
            assert_eq!(by_http(bytes), None, "{bytes:?}");
        }
        for (target, origin_form, form) in [
            ("/a?b#c", "/a?b", TargetForm::Origin),
            ("lync.fabrikam.com:443", "/", TargetForm::Authority),
            ("*", "*", TargetForm::Asterisk),
            (
                "http://h?/ucwa/x?target=1",
                "/?/ucwa/x?target=1",
                TargetForm::Absolute,
            ),
            ("http://h", "/", TargetForm::Absolute),
            ("http://h/a?", "/a?", TargetForm::Absolute),
            ("HTTP://h/a/b?c=d", "/a/b?c=d", TargetForm::Absolute),
        ] {
            let read = RequestTarget::parse(Bytes::from_static(target.as_bytes())).unwrap();
            assert_eq!(read.origin_form(), origin_form, "{target}");
            assert_eq!(read.form(), form, "{target}");
        }
        // HTTP/2's `:path *` comes with a scheme and an authority (fresh eyes, round 42).
        let h2 = Uri::builder()
            .scheme("http")
            .authority("lyncweb.contoso.com")
            .path_and_query("*")
            .build()
            .unwrap();
        assert_eq!(RequestTarget::from(h2).form(), TargetForm::Asterisk);
        let long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(by_ours(long.as_bytes()), by_http(long.as_bytes()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// Every byte string from a small alphabet of the classes that matter, `/` first or not:
        /// read alike by `http::Uri` and here.
        #[test]
        fn random_targets_read_as_http_reads_them(
            first in prop::sample::select(vec![b'/', b'/', b'/', b'h', b'*', b'?']),
            rest in prop::collection::vec(
                prop::sample::select(vec![
                    b'a', b'/', b'?', b'#', b'%', b'"', b'<', b'>', b'`', b'{', b'}', b'^',
                    b'|', b'\\', b' ', b'\t', 0x00, 0x7f, 0x80, 0xc3, 0xa9, 0xff, b':', b'@',
                    b'=', b'&', b'+', b';', b'[', b']', b'~', b'!', b'\'', b'.',
                ]),
                0..24,
            ),
        ) {
            let mut bytes = vec![first];
            bytes.extend(rest);
            prop_assert_eq!(by_ours(&bytes), by_http(&bytes));
        }

        /// Every single byte, at each place a class is decided.
        #[test]
        fn every_byte_reads_as_http_reads_it(b in any::<u8>(), place in 0usize..4) {
            let bytes = match place {
                0 => vec![b'/', b],
                1 => vec![b'/', b'a', b'?', b],
                2 => vec![b'/', b'a', b'#', b],
                _ => vec![b'/', b'?', b'x', b'#', b, b'?'],
            };
            prop_assert_eq!(by_ours(&bytes), by_http(&bytes));
        }
    }
}
