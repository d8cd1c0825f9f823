//! A raw HTTP/1.x request as a person writes it in a file for `ringfence eval --request`.
//!
//! The head is read by httparse, the parser hyper's server uses, and framed as hyper frames it
//! (a `Transfer-Encoding` must end in `chunked`, and drops any `Content-Length`; differing
//! `Content-Length` lines are refused, equal ones kept once), so a head the gateway could not be
//! sent is refused here too. Hand-written files are met halfway: LF-only line ends are read as
//! CRLF ones, a file may end right after its headers, and a body may be followed by the one
//! line end an editor adds. Without `Content-Length` or chunking the body is the rest of the
//! file (less that line end): the gateway's HTTP/2 needs neither, and nobody counts bytes by hand.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Uri, Version};

/// Header lines a request may have: hyper's own default bound.
const MAX_HEADERS: usize = 100;

/// Why a file is not a request the gateway could be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawError {
    #[error("the request line or a header line cannot be parsed ({0})")]
    Head(httparse::Error),
    #[error("the file ends inside the request line or headers")]
    Unfinished,
    #[error("the request target `{0}` is not a URI")]
    Target(String),
    #[error("the method `{0}` is not valid")]
    Method(String),
    #[error("the header `{0}` has an invalid name or value")]
    Header(String),
    #[error("Content-Length `{0}` is not a number")]
    ContentLengthUnreadable(String),
    #[error("Content-Length lines disagree ({0} and {1})")]
    ContentLengths(u64, u64),
    #[error(
        "Content-Length is {declared} but the body has {present} bytes \
         (only one line end may follow it)"
    )]
    ContentLength { declared: u64, present: usize },
    #[error("HTTP/1.0 has no Transfer-Encoding")]
    TransferEncodingOnHttp10,
    #[error("Transfer-Encoding does not end in `chunked`: nothing says where the body ends")]
    NotChunked,
    #[error("the chunked body is malformed: {0}")]
    Chunked(&'static str),
}

/// Reads a request: its head as the gateway would receive it, and its body, de-chunked.
pub fn parse(file: &[u8]) -> Result<(Parts, Bytes), RawError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let complete = httparse::Request::new(&mut slots)
        .parse(file)
        .map_err(RawError::Head)?
        .is_complete();
    // A file that ends after its last header line, without the blank line: a head, no body.
    let file: std::borrow::Cow<'_, [u8]> = match complete {
        true => file.into(),
        false if file.ends_with(b"\r\n") => [file, b"\r\n"].concat().into(),
        false if file.ends_with(b"\n") => [file, b"\n"].concat().into(),
        false => return Err(RawError::Unfinished),
    };
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let rest = match request.parse(&file).map_err(RawError::Head)? {
        httparse::Status::Complete(n) => file.get(n..).unwrap_or_default(),
        httparse::Status::Partial => return Err(RawError::Unfinished),
    };
    let (parts, framing) = head(&request)?;
    let body = match framing {
        Framing::Chunked => dechunk(rest)?,
        Framing::Length(declared) => {
            let present = without_final_line_end(rest);
            if present.len() as u64 != declared && rest.len() as u64 != declared {
                return Err(RawError::ContentLength {
                    declared,
                    present: rest.len(),
                });
            }
            let n = usize::try_from(declared).unwrap_or(usize::MAX);
            Bytes::copy_from_slice(rest.get(..n).unwrap_or(rest))
        }
        Framing::Rest => Bytes::copy_from_slice(without_final_line_end(rest)),
    };
    Ok((parts, body))
}

/// How the body is delimited.
enum Framing {
    Chunked,
    Length(u64),
    /// Neither: the rest of the file.
    Rest,
}

/// The request's parts, framed as hyper frames a request it receives.
fn head(request: &httparse::Request<'_, '_>) -> Result<(Parts, Framing), RawError> {
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(RawError::Unfinished);
    };
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method =
        Method::from_bytes(method.as_bytes()).map_err(|_| RawError::Method(method.into()))?;
    parts.uri = Uri::try_from(target).map_err(|_| RawError::Target(target.into()))?;
    parts.version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    for h in request.headers.iter() {
        let bad = || RawError::Header(h.name.into());
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad())?;
        if name == header::TRANSFER_ENCODING {
            if parts.version != Version::HTTP_11 {
                return Err(RawError::TransferEncodingOnHttp10);
            }
            let last = value.to_str().ok().and_then(|v| v.rsplit(',').next());
            chunked = Some(last.is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked")));
        } else if name == header::CONTENT_LENGTH {
            if chunked.is_some() {
                continue;
            }
            let text = String::from_utf8_lossy(h.value);
            let n =
                digits(h.value).ok_or_else(|| RawError::ContentLengthUnreadable(text.into()))?;
            match length {
                Some(first) if first != n => return Err(RawError::ContentLengths(first, n)),
                Some(_) => continue,
                None => length = Some(n),
            }
        }
        parts.headers.append(name, value);
    }
    let framing = match chunked {
        Some(false) => return Err(RawError::NotChunked),
        Some(true) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Framing::Chunked
        }
        None => length.map_or(Framing::Rest, Framing::Length),
    };
    Ok((parts, framing))
}

/// A Content-Length value: ASCII digits only, as hyper reads it.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The text less one final line end (CRLF or LF), the one an editor adds.
fn without_final_line_end(text: &[u8]) -> &[u8] {
    text.strip_suffix(b"\r\n")
        .or_else(|| text.strip_suffix(b"\n"))
        .unwrap_or(text)
}

/// The first line (without its CRLF or LF) and what follows it; the whole text, with nothing
/// after it, when there is no line end.
fn line(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|&b| b == b'\n') {
        Some(at) => {
            let (line, rest) = text.split_at(at);
            (
                line.strip_suffix(b"\r").unwrap_or(line),
                rest.get(1..).unwrap_or_default(),
            )
        }
        None => (text, &[]),
    }
}

/// A chunked body's data (RFC 9112 §7.1): chunk extensions and trailers are read and dropped,
/// as hyper drops them on the way to the judge.
fn dechunk(mut rest: &[u8]) -> Result<Bytes, RawError> {
    let mut body = Vec::new();
    loop {
        if rest.is_empty() {
            return Err(RawError::Chunked("the file ends before the last (0) chunk"));
        }
        let (size_line, after) = line(rest);
        let size = size_line
            .split(|&b| b == b';')
            .next()
            .map(|s| s.trim_ascii())
            .filter(|s| !s.is_empty() && s.len() <= 15 && s.iter().all(u8::is_ascii_hexdigit))
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or(RawError::Chunked(
                "a chunk size is not a hexadecimal number",
            ))?;
        if size == 0 {
            // Trailer lines up to a blank line (or the end of the file), then at most one line
            // end an editor added.
            let mut trailers = after;
            loop {
                let (trailer, next) = line(trailers);
                trailers = next;
                if trailer.is_empty() {
                    break;
                }
            }
            return match trailers {
                b"" | b"\n" | b"\r\n" => Ok(Bytes::from(body)),
                _ => Err(RawError::Chunked("there is more after the last (0) chunk")),
            };
        }
        let data = after
            .get(..size)
            .ok_or(RawError::Chunked("a chunk is shorter than its size"))?;
        body.extend_from_slice(data);
        let after = after.get(size..).unwrap_or_default();
        rest = after
            .strip_prefix(b"\r\n")
            .or_else(|| after.strip_prefix(b"\n"))
            .ok_or(RawError::Chunked("a chunk is longer than its size"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &[u8]) -> RawError {
        match parse(text) {
            Ok(_) => panic!("parsed: {:?}", String::from_utf8_lossy(text)),
            Err(e) => e,
        }
    }

    fn ok(text: &str) -> (Parts, Bytes) {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text:?}"))
    }

    #[test]
    fn lf_only_reads_as_crlf() {
        let crlf = "POST /a?b=c HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi";
        let (a, body_a) = ok(crlf);
        let (b, body_b) = ok(&crlf.replace("\r\n", "\n"));
        assert_eq!(a.method, b.method);
        assert_eq!(a.uri, b.uri);
        assert_eq!(a.headers, b.headers);
        assert_eq!((&body_a[..], &body_b[..]), (&b"hi"[..], &b"hi"[..]));
        assert_eq!(a.uri.query(), Some("b=c"));
    }

    #[test]
    fn absolute_form_keeps_its_authority() {
        let (parts, _) = ok("GET https://lyncweb.contoso.com/ucwa/x HTTP/1.1\nHost: other\n\n");
        assert_eq!(parts.uri.authority().unwrap(), "lyncweb.contoso.com");
        assert_eq!(parts.uri.path(), "/ucwa/x");
    }

    #[test]
    fn a_file_may_end_after_its_headers_and_the_body_may_end_in_one_line_end() {
        let (parts, body) = ok("GET /x HTTP/1.1\nHost: h\n");
        assert_eq!(parts.headers["host"], "h");
        assert!(body.is_empty());
        assert_eq!(&ok("POST /x HTTP/1.1\n\n{}\n").1[..], b"{}");
        assert_eq!(
            &ok("POST /x HTTP/1.1\nContent-Length: 2\n\n{}\r\n").1[..],
            b"{}"
        );
        assert_eq!(
            &ok("POST /x HTTP/1.1\nContent-Length: 3\n\n{}\n").1[..],
            b"{}\n"
        );
        assert_eq!(
            err(b"POST /x HTTP/1.1\nContent-Length: 2\n\n{}\n\n"),
            RawError::ContentLength {
                declared: 2,
                present: 4
            }
        );
        assert_eq!(
            err(b"POST /x HTTP/1.1\nContent-Length: 9\n\n{}"),
            RawError::ContentLength {
                declared: 9,
                present: 2
            }
        );
        assert_eq!(err(b"POST /x HTTP/1.1\nHost: h"), RawError::Unfinished);
    }

    #[test]
    fn content_length_is_framed_as_hyper_frames_it() {
        let (parts, _) = ok("POST /x HTTP/1.1\nContent-Length: 2\nContent-Length: 2\n\nhi");
        assert_eq!(parts.headers.get_all("content-length").iter().count(), 1);
        assert_eq!(
            err(b"POST /x HTTP/1.1\nContent-Length: 2\nContent-Length: 3\n\nhi"),
            RawError::ContentLengths(2, 3)
        );
        assert!(matches!(
            err(b"POST /x HTTP/1.1\nContent-Length: +2\n\nhi"),
            RawError::ContentLengthUnreadable(_)
        ));
    }

    #[test]
    fn chunked_is_dechunked_and_drops_content_length() {
        let text = "POST /x HTTP/1.1\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4;ext=1\r\nabcd\r\n2\r\nef\r\n0\r\nX-Trailer: t\r\n\r\n";
        let (parts, body) = ok(text);
        assert_eq!(&body[..], b"abcdef");
        assert!(parts.headers.get("content-length").is_none());
        assert_eq!(parts.headers["transfer-encoding"], "chunked");
        assert_eq!(&ok(&text.replace("\r\n", "\n")).1[..], b"abcdef");
        let (parts, body) = ok("POST /x HTTP/1.1\nTransfer-Encoding: gzip, chunked\n\n1\nz\n0\n");
        assert_eq!(&body[..], b"z", "the judge refuses the coding left on it");
        assert_eq!(parts.headers["transfer-encoding"], "gzip, chunked");
        for (bad, why) in [
            (
                "POST /x HTTP/1.1\nTransfer-Encoding: gzip\n\nz",
                RawError::NotChunked,
            ),
            (
                "POST /x HTTP/1.0\nTransfer-Encoding: chunked\n\n0\n\n",
                RawError::TransferEncodingOnHttp10,
            ),
            (
                "POST /x HTTP/1.1\nTransfer-Encoding: chunked\n\n5\nab\n",
                RawError::Chunked("a chunk is shorter than its size"),
            ),
            (
                "POST /x HTTP/1.1\nTransfer-Encoding: chunked\n\n1\nab\n0\n\n",
                RawError::Chunked("a chunk is longer than its size"),
            ),
            (
                "POST /x HTTP/1.1\nTransfer-Encoding: chunked\n\nzz\nab\n0\n\n",
                RawError::Chunked("a chunk size is not a hexadecimal number"),
            ),
            (
                "POST /x HTTP/1.1\nTransfer-Encoding: chunked\n\n1\na\n",
                RawError::Chunked("the file ends before the last (0) chunk"),
            ),
            (
                "POST /x HTTP/1.1\nTransfer-Encoding: chunked\n\n0\n\nPOST /y HTTP/1.1\n\n",
                RawError::Chunked("there is more after the last (0) chunk"),
            ),
        ] {
            assert_eq!(err(bad.as_bytes()), why, "{bad:?}");
        }
    }

    #[test]
    fn a_head_hyper_refuses_is_refused() {
        assert!(matches!(
            err(b"POST /x HTTP/1.1\nBad Name: v\n\n"),
            RawError::Head(_)
        ));
        assert!(matches!(err(b"POST /x HTTP/2\n\n"), RawError::Head(_)));
        assert!(matches!(err(b"\x01 /x HTTP/1.1\n\n"), RawError::Head(_)));
    }
}
