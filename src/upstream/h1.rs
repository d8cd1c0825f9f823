//! HTTP/1.1 on the wire to a member: the request head ringfence writes (as hyper's client wrote
//! it), and the response head and body framing it reads. Reading is strict, because a misframed
//! answer on a pooled connection would hand one user's answer to the next user of the connection:
//! anything ambiguous is a [`Malformed`] answer (a 502 to the client) and the connection is
//! closed, never reused.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::forwarding;
use crate::request::decimal;
use crate::request::Headers;

/// The longest response head read (hyper's client allowed ~400 KiB; no UCWA head is near this).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header lines in a response head, as hyper's client.
pub const MAX_HEADERS: usize = 100;
/// The longest chunk-size line, or all trailer lines together.
const MAX_LINE: usize = 4 * 1024;

/// Why an answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed answer: {0}")]
pub struct Malformed(pub &'static str);

/// How a request body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    Length(u64),
    Chunked,
}

/// Decides how the request body goes, adding or removing the headers that say so, as hyper's
/// client did (`Client::set_length`): a body known to be empty sends nothing and no
/// Transfer-Encoding; otherwise a Transfer-Encoding the request has is kept (ending in
/// `chunked`), then a valid Content-Length; then the body's exact size is written as one; an
/// unknown size is chunked, whatever the method: hyper's client sent a GET's or HEAD's without
/// a body and then failed on its first byte, which ringfence counted against the member and
/// answered 502 (fresh eyes, round 46); the client sent that body, and the pool is given it.
pub fn request_framing(headers: &mut Headers, end_stream: bool, exact: Option<u64>) -> Sending {
    if end_stream {
        headers.remove("transfer-encoding");
        return Sending::Length(0);
    }
    let existing = content_length_list(headers);
    let last_coding = headers
        .get_all("transfer-encoding")
        .next_back()
        .map(ends_chunked);
    if let Some(chunked) = last_coding {
        if !chunked {
            append_chunked_to_last(headers);
        }
        headers.remove("content-length");
        return Sending::Chunked;
    }
    if let Some(length) = existing {
        return Sending::Length(length);
    }
    match exact {
        Some(length) => {
            headers.insert(
                "content-length",
                itoa::Buffer::new().format(length).as_bytes(),
            );
            Sending::Length(length)
        }
        None => {
            headers.insert("transfer-encoding", b"chunked");
            headers.remove("content-length");
            Sending::Chunked
        }
    }
}

/// Adds `, chunked` to the last Transfer-Encoding line, keeping the others in order.
fn append_chunked_to_last(headers: &mut Headers) {
    let mut lines: Vec<Vec<u8>> = headers
        .get_all("transfer-encoding")
        .map(<[u8]>::to_vec)
        .collect();
    if let Some(last) = lines.last_mut() {
        last.extend_from_slice(b", chunked");
    }
    headers.remove("transfer-encoding");
    for line in lines {
        headers.append("transfer-encoding", &line);
    }
}

/// Whether a Transfer-Encoding line's last coding is `chunked` (hyper's `is_chunked_`, which
/// reads only a value that is visible ASCII: `HeaderValue::to_str`).
pub(crate) fn ends_chunked(value: &[u8]) -> bool {
    if !crate::request::is_visible(value) {
        return false;
    }
    let last = value.rsplit(|&b| b == b',').next().unwrap_or(b"");
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// hyper's reading of the request's own Content-Length lines: comma-separated decimal lists that
/// all agree.
fn content_length_list(headers: &Headers) -> Option<u64> {
    let mut length = None;
    for line in headers.get_all("content-length") {
        for value in line.split(|&b| b == b',') {
            let n = decimal(value.trim_ascii())?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    length
}

/// Writes the request head: request line (origin form), every header line in its order with its
/// lower-case name, and the blank line. A forwarded request's (`forwarded`: ringfence's
/// lines and the member's Host) has its header lines written by [`forwarding::Lines`].
pub fn write_head(
    dst: &mut BytesMut,
    method: &Method,
    target: &str,
    headers: &Headers,
    forwarded: Option<(&forwarding::Lines, &HeaderValue)>,
) {
    let size = 32
        + target.len()
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
        + forwarded.map_or(0, |(lines, host)| lines.room(host));
    dst.reserve(size);
    dst.extend_from_slice(method.as_str().as_bytes());
    dst.extend_from_slice(b" ");
    dst.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    match forwarded {
        Some((lines, host)) => lines.write_headers(dst, headers, host),
        None => {
            for (name, value) in headers.iter() {
                dst.extend_from_slice(name);
                dst.extend_from_slice(b": ");
                dst.extend_from_slice(value);
                dst.extend_from_slice(b"\r\n");
            }
        }
    }
    dst.extend_from_slice(b"\r\n");
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304, or `Content-Length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// Read to the end of the connection, which is then not reused.
    Close,
}

/// A response head read from a member.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    /// The member's reason phrase, when it is not the status code's own.
    pub reason: Option<hyper::ext::ReasonPhrase>,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the member lets the connection be used again (HTTP/1.1 without `Connection:
    /// close`, or HTTP/1.0 with `keep-alive`) and the body's framing allows it.
    pub keep_alive: bool,
}

/// Reads response heads; its span list is kept from one head to the next (a connection's), so
/// that reading a head allocates nothing but the header map.
#[derive(Debug, Default)]
pub struct Reader {
    spans: Vec<Span>,
}

/// What httparse read of a whole status line: code, minor version, the head's length, and the
/// reason phrase as a byte range of the head.
struct Parsed {
    status: u16,
    version: u8,
    len: usize,
    reason: (usize, usize),
}

/// A header's name and value, as byte ranges of the head.
#[derive(Debug, Clone, Copy)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

/// What the framing of an answer is read from, noted as its header lines go by (rather than
/// looked up again in the map).
#[derive(Default)]
struct Lines {
    codings: usize,
    chunked: bool,
    /// The Content-Length, once one line was read; `Err` if a line was bad or they differ.
    length: Option<Result<u64, Malformed>>,
    close: bool,
    keep_alive: bool,
}

impl Lines {
    fn note(&mut self, name: &HeaderName, value: &[u8]) {
        if *name == header::TRANSFER_ENCODING {
            self.codings += 1;
            self.chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if *name == header::CONTENT_LENGTH {
            // Over 2^63 - 1 no reader downstream agrees on (hyper refused u64::MAX - 1 and up;
            // .NET and Java read a signed 64-bit length): fresh eyes, round 16.
            let n = decimal(value)
                .filter(|&n| i64::try_from(n).is_ok())
                .ok_or(Malformed("Content-Length"));
            self.length = Some(match (self.length, n) {
                (None, n) => n,
                (Some(Err(e)), _) | (_, Err(e)) => Err(e),
                (Some(Ok(a)), Ok(b)) if a != b => Err(Malformed("Content-Lengths that differ")),
                (Some(Ok(a)), Ok(_)) => Ok(a),
            });
        } else if *name == header::CONNECTION {
            for token in tokens(value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
}

impl Reader {
    /// Reads one final response head off the front of `buf`, skipping interim (1xx) answers:
    /// `Ok(None)` when more bytes are needed (interim heads already read are gone from `buf`).
    /// The head's headers come without the connection-specific ones.
    pub fn read_head(
        &mut self,
        buf: &mut BytesMut,
        method: &Method,
    ) -> Result<Option<Head>, Malformed> {
        loop {
            let Some(Parsed {
                status,
                version,
                len,
                reason,
            }) = self.parse(buf)?
            else {
                if buf.len() > MAX_HEAD {
                    return Err(Malformed("response head over 64 KiB"));
                }
                return Ok(None);
            };
            if status == 101 {
                return Err(Malformed("101 Switching Protocols"));
            }
            if (100..200).contains(&status) {
                buf.advance(len);
                continue;
            }
            let head = buf.split_to(len).freeze();
            let mut headers = HeaderMap::with_capacity(self.spans.len());
            let mut lines = Lines::default();
            // The connection-specific lines are read for the framing and not kept: an answer
            // goes on to a client without them (RFC 9110 §7.6.1), as `forwarding` strips them.
            // Connection lines that name other headers are kept aside for that (rarely any).
            let mut naming = Vec::new();
            for span in &self.spans {
                let name = HeaderName::from_bytes(&head[span.name.0..span.name.1])
                    .map_err(|_| Malformed("header name"))?;
                let value = head.slice(span.value.0..span.value.1);
                lines.note(&name, &value);
                let value =
                    HeaderValue::from_maybe_shared(value).map_err(|_| Malformed("header value"))?;
                if !forwarding::is_hop_by_hop_name(&name) {
                    headers.append(name, value);
                } else if name == header::CONNECTION
                    && forwarding::line_names_others(value.as_bytes())
                {
                    naming.push(value);
                }
            }
            if !naming.is_empty() {
                headers = forwarding::without_named_by(headers, &naming);
            }
            let status = StatusCode::from_u16(status).map_err(|_| Malformed("status code"))?;
            // A reason of the member's own goes on to the client, as hyper's client kept it.
            let reason = &head[reason.0..reason.1];
            let reason = (Some(reason) != status.canonical_reason().map(str::as_bytes))
                .then(|| hyper::ext::ReasonPhrase::try_from(head.slice_ref(reason)).ok())
                .flatten();
            let version = if version == 1 {
                Version::HTTP_11
            } else {
                Version::HTTP_10
            };
            let framing = framing(status, version, method, &lines)?;
            let persistent = match version {
                Version::HTTP_11 => !lines.close,
                _ => lines.keep_alive && !lines.close,
            };
            let keep_alive = framing != Framing::Close && persistent;
            return Ok(Some(Head {
                status,
                reason,
                version,
                headers,
                framing,
                keep_alive,
            }));
        }
    }

    /// httparse over the buffer, once a whole head is there: status, minor version and head
    /// length, with the header spans in `self.spans`. The header slots are left uninitialised
    /// (no 3 KiB cleared per answer) and live on this call's stack, not in a future.
    fn parse(&mut self, buf: &[u8]) -> Result<Option<Parsed>, Malformed> {
        let mut slots =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Malformed("over 100 header lines")),
            Err(_) => return Err(Malformed("response head")),
        };
        if len > MAX_HEAD {
            return Err(Malformed("response head over 64 KiB"));
        }
        if bare_lf(&buf[..len]) {
            return Err(Malformed("a line ended by a bare LF"));
        }
        let base = buf.as_ptr() as usize;
        self.spans.clear();
        self.spans.extend(response.headers.iter().map(|h| {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            Span {
                name: (name, name + h.name.len()),
                value: (value, value + h.value.len()),
            }
        }));
        let status = response.code.ok_or(Malformed("status code"))?;
        let version = response.version.ok_or(Malformed("version"))?;
        // httparse gives a reason that is not UTF-8, or none, as a `""` of its own, not a slice
        // of the head: that one is read as empty, as hyper's client read it (fresh eyes, round
        // 17: taken for a slice, it panicked).
        let reason = response
            .reason
            .map(|r| (r.as_ptr() as usize).wrapping_sub(base))
            .zip(response.reason.map(str::len))
            .filter(|&(at, n)| n > 0 && at.checked_add(n).is_some_and(|end| end <= len))
            .map_or((0, 0), |(at, n)| (at, at + n));
        Ok(Some(Parsed {
            status,
            version,
            len,
            reason,
        }))
    }
}

/// Whether a LF is not preceded by a CR (httparse accepts bare LF line ends).
fn bare_lf(head: &[u8]) -> bool {
    // memchr finds the few line ends in vector steps; a byte loop was ~4 instructions a byte.
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

/// RFC 9112 §6.3, strictly: see the module's doc and docs/decisions.md.
fn framing(
    status: StatusCode,
    version: Version,
    method: &Method,
    lines: &Lines,
) -> Result<Framing, Malformed> {
    if matches!(status.as_u16(), 204 | 304) || *method == Method::HEAD {
        return Ok(Framing::Empty);
    }
    if *method == Method::CONNECT && status.is_success() {
        return Err(Malformed("a tunnel to a CONNECT"));
    }
    if lines.codings > 0 {
        if lines.length.is_some() {
            return Err(Malformed("Transfer-Encoding and Content-Length"));
        }
        if version != Version::HTTP_11 {
            return Err(Malformed("Transfer-Encoding in HTTP/1.0"));
        }
        if lines.codings > 1 || !lines.chunked {
            return Err(Malformed("a Transfer-Encoding other than chunked"));
        }
        return Ok(Framing::Chunked);
    }
    Ok(match lines.length.transpose()? {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// Whether the request's own headers close the connection after the exchange.
pub fn request_closes(headers: &Headers) -> bool {
    headers
        .get_all("connection")
        .any(|line| has_token(line, b"close"))
}

/// Whether a comma-separated value holds `token`, in any case (hyper's `connection_has`).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// A comma-separated field value's elements, without their surrounding whitespace.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Where a chunked body's reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// The next chunk-size line.
    Size,
    /// Bytes left of the current chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, and the bytes of them seen so far.
    Trailers(usize),
    Done,
}

/// What one step of chunked decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// More bytes are needed.
    More,
    /// The body ended here (its last CRLF taken off `buf`).
    End,
}

impl Chunked {
    /// Decodes what it can off the front of `buf`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Malformed> {
        self.step_with(buf, false)
    }

    /// The same, taking spaces after a chunk size as hyper's server does (a client's request;
    /// a member's answer is read strictly).
    pub fn step_request(&mut self, buf: &mut BytesMut) -> Result<Step, Malformed> {
        self.step_with(buf, true)
    }

    fn step_with(&mut self, buf: &mut BytesMut, trailing_space: bool) -> Result<Step, Malformed> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(line) = line(buf, MAX_LINE)? else {
                        return Ok(Step::More);
                    };
                    let size = chunk_size(&buf[..line], trailing_space)?;
                    buf.advance(line + 2);
                    *self = if size == 0 {
                        Chunked::Trailers(0)
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Step::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Malformed("no CRLF after a chunk"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers(seen) => {
                    let Some(line) = line(buf, MAX_LINE.saturating_sub(seen + 2))? else {
                        return Ok(Step::More);
                    };
                    if line == 0 {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Step::End);
                    }
                    trailer(&buf[..line])?;
                    buf.advance(line + 2);
                    *self = Chunked::Trailers(seen + line + 2);
                }
                Chunked::Done => return Ok(Step::End),
            }
        }
    }
}

/// The length of the line at the front of `buf` (without its CRLF), once it is all there; a bare
/// LF, a CR not before LF, or a line over `max` is malformed.
fn line(buf: &[u8], max: usize) -> Result<Option<usize>, Malformed> {
    for (i, &b) in buf.iter().enumerate().take(max.saturating_add(2)) {
        match b {
            b'\n' => return Err(Malformed("a bare LF in chunked framing")),
            b'\r' if i > max => return Err(Malformed("a chunk line too long")),
            b'\r' => {
                return match buf.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some(i)),
                    Some(_) => Err(Malformed("a bare CR in chunked framing")),
                };
            }
            _ => {}
        }
    }
    if buf.len() > max.saturating_add(1) {
        Err(Malformed("a chunk line too long"))
    } else {
        Ok(None)
    }
}

/// `chunk-size [ BWS ";" chunk-ext ]`: hex digits that fit a `u64`, then extensions, whose text
/// is only checked to hold no control character; with `trailing_space`, also spaces and tabs
/// after the size and nothing else, as hyper's server reads a request's chunks.
fn chunk_size(line: &[u8], trailing_space: bool) -> Result<u64, Malformed> {
    let end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if end == 0 {
        return Err(Malformed("a chunk size"));
    }
    let mut size = 0u64;
    for &b in &line[..end] {
        let digit = (b as char).to_digit(16).unwrap_or(0);
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)))
            .ok_or(Malformed("a chunk size over 64 bits"))?;
    }
    let rest = &line[end..];
    let ext = rest.trim_ascii_start();
    if rest.is_empty() || trailing_space && rest.iter().all(|&b| b == b' ' || b == b'\t') {
        return Ok(size);
    }
    if ext.first() != Some(&b';') || !no_controls(ext) {
        return Err(Malformed("a chunk extension"));
    }
    Ok(size)
}

/// A trailer line: a field name, a colon, and a value without control characters.
fn trailer(line: &[u8]) -> Result<(), Malformed> {
    let colon = line.iter().position(|&b| b == b':');
    match colon {
        Some(c)
            if c > 0 && HeaderName::from_bytes(&line[..c]).is_ok() && no_controls(&line[c..]) =>
        {
            Ok(())
        }
        _ => Err(Malformed("a trailer line")),
    }
}

fn no_controls(text: &[u8]) -> bool {
    text.iter().all(|&b| b == b'\t' || !(b < 0x20 || b == 0x7f))
}

#[cfg(test)]
mod tests;
