//! UCWA batches: a `multipart/batching` body whose parts are each one embedded HTTP/1.1
//! request. The gateway judges every embedded request as if it were sent alone, so this parser
//! accepts only what it understands completely; anything ambiguous is an error and the whole
//! batch is refused.
//!
//! Beyond RFC 2046, a batch must read the same to every plausible reader upstream (one that
//! splits at the boundary and keeps every piece, a line reader that ends lines at a bare CR, one
//! that knows only CRLF, one that compares culture-sensitively or decodes a part by its
//! charset): a reader must never find a part this one did not judge. So these are errors rather
//! than data: a line that starts with `--boundary` but is not exactly a delimiter, or reads as
//! one in another case, with padding, or once ignorable characters are dropped; `--boundary`
//! inside a line; a delimiter-like or request-like line in the preamble or epilogue; a bare CR;
//! line breaks of a part's structure or of the delimiters that are not all of one kind;
//! transport padding; a byte-order mark; a part charset (docs/backend-model.md §5).

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use std::str;

use crate::iis::media::{self, MediaType};

/// More parts than this is refused, so a hostile batch cannot make us work unboundedly.
const MAX_PARTS: usize = 1_000;
/// The same bound for the header lines of one part and of one embedded request.
const MAX_HEADERS: usize = 100;
/// RFC 2046 §5.1.1.
const MAX_BOUNDARY: usize = 70;
/// UTF-8, UTF-32BE, UTF-16BE, and UTF-16LE (UTF-32LE's begins the same): the marks
/// `StreamReader.DetectEncoding` looks for.
const BYTE_ORDER_MARKS: [&[u8]; 4] = [b"\xEF\xBB\xBF", b"\0\0\xFE\xFF", b"\xFE\xFF", b"\xFF\xFE"];

/// Why a batch was refused; only [`BatchError::NotBatching`] is not a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The content type is not `multipart/batching` (the gateway answers 415).
    #[error("not a multipart/batching body")]
    NotBatching,
    #[error("missing or invalid boundary")]
    Boundary,
    /// No part, no close delimiter, a malformed delimiter line or too many parts.
    #[error("malformed batch framing")]
    Framing,
    /// A part's MIME headers are malformed, not `application/http; msgtype=request`, carry an
    /// encoding we do not decode, or something (part or embedded request) is nested multipart.
    #[error("malformed or unsupported part headers")]
    PartHeaders,
    /// Not `METHOD SP origin-form SP HTTP/1.1`.
    #[error("malformed embedded request line")]
    RequestLine,
    /// Bad header syntax, framing headers we refuse, or a Content-Length the body does not match.
    #[error("malformed embedded request headers")]
    RequestHeaders,
}

/// One embedded request, borrowing from the batch body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    pub method: &'a str,
    /// The origin-form request target exactly as written: path plus optional `?query`.
    pub target: &'a str,
    /// Header lines of the embedded request in order, names as written (compare
    /// case-insensitively), values trimmed of surrounding whitespace.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Exactly `Content-Length` bytes when that header is present.
    pub body: &'a [u8],
}

impl<'a> Part<'a> {
    /// The path part of `target` (before '?').
    pub fn path(&self) -> &'a str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    /// The query part (after the first '?'), if any.
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The values of every header named `name` (ASCII case-insensitive).
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, value)| value)
    }
}

/// Returns the boundary from a Content-Type value, borrowed from it.
///
/// The media type must be `multipart/batching` (else [`BatchError::NotBatching`]); any other
/// problem, including a malformed parameter list, a duplicate boundary or a quoted-pair in a
/// quoted string, is [`BatchError::Boundary`]. Whitespace is tolerated around `;` and `=`.
pub fn boundary(content_type: &str) -> Result<&str, BatchError> {
    let media = MediaType::parse(content_type).map_err(|_| {
        match content_type.split(';').next().map(str::trim) {
            Some(e) if e.eq_ignore_ascii_case("multipart/batching") => BatchError::Boundary,
            _ => BatchError::NotBatching,
        }
    })?;
    if !media.is("multipart/batching") {
        return Err(BatchError::NotBatching);
    }
    let boundary = media
        .parameter("boundary")
        .ok()
        .flatten()
        .filter(|b| is_valid_boundary(b))
        .ok_or(BatchError::Boundary)?;
    // The word `boundary` once but in the boundary itself: a reader that finds the boundary by
    // searching for `boundary=` or by a pattern would take a decoy's (`xboundary=a; boundary=b`,
    // `x="boundary=a"`) and split the body at lines this one reads as data (fresh eyes
    // round 38).
    if decoys(content_type, boundary) {
        return Err(BatchError::Boundary);
    }
    // ASP.NET reads a boundary with `GetAttributeFromHeader`, whose value ends at a space or a
    // comma, not at `;`: `boundary=b;` or `boundary=b;x=y` is `b;` to it, and it would split the
    // body elsewhere (or not at all). Both readings must agree.
    match media::aspnet_attribute(content_type, "boundary") {
        media::AspnetAttribute::Value(b) if b == boundary => Ok(boundary),
        _ => Err(BatchError::Boundary),
    }
}

/// Whether the word `boundary`, in any case, stands in a Content-Type value more often than
/// once besides in the boundary itself (`xboundary=a`, `boundaryx=a`, `x="boundary=a"`).
fn decoys(content_type: &str, boundary: &str) -> bool {
    let count = |text: &str| text.to_ascii_lowercase().matches("boundary").count();
    count(content_type) > count(boundary).saturating_add(1)
}

/// Splits a batch body into its embedded requests.
///
/// The preamble and epilogue are ignored, but neither may hold a line starting with
/// `--boundary` other than the first delimiter, nor one that reads like a request line. Every
/// part must be a complete embedded request.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, BatchError> {
    if !is_valid_boundary(boundary) {
        return Err(BatchError::Boundary);
    }
    let boundary = boundary.as_bytes();
    // A byte-order mark has .NET's `StreamReader` decode the body as UTF-16 or UTF-32 (it looks
    // for one whatever encoding it is given): what it would read is not these bytes (fresh eyes
    // round 36: a UTF-16 batch hidden in the preamble).
    if BYTE_ORDER_MARKS.iter().any(|bom| body.starts_with(bom)) {
        return Err(BatchError::Framing);
    }
    // .NET's line readers (`TextReader.ReadLine`) end a line at a bare CR too: a batch reader
    // built on them would find lines, and delimiters, that this one does not (fresh eyes
    // round 35).
    if has_bare_cr(body) {
        return Err(BatchError::Framing);
    }
    let mut parts = Vec::new();
    let mut open = None;
    let mut at = 0;
    // Where the delimiters stand, and whether their line breaks are CRLF: one kind throughout,
    // or a reader that knows only CRLF sees fewer parts than this one (fresh eyes round 35).
    let mut delimiters = Vec::new();
    let mut crlf = None;
    loop {
        let line = body.get(at..).unwrap_or_default();
        if let Some(delimiter) = delimiter(line, boundary)? {
            let before = (at > 0).then(|| {
                at.checked_sub(2)
                    .and_then(|cr| body.get(cr))
                    .is_some_and(|&b| b == b'\r')
            });
            for kind in [before, delimiter.crlf].into_iter().flatten() {
                if *crlf.get_or_insert(kind) != kind {
                    return Err(BatchError::Framing);
                }
            }
            delimiters.push(at);
            if let Some(start) = open {
                if parts.len() >= MAX_PARTS {
                    return Err(BatchError::Framing);
                }
                // Known here: the delimiter that opened the part set it.
                let crlf = crlf.unwrap_or(true);
                parts.push(parse_part(content(body, start, at), crlf)?);
            } else if delimiter.close {
                return Err(BatchError::Framing);
            }
            let after = at.saturating_add(delimiter.len);
            if delimiter.close {
                check_epilogue(body.get(after..).unwrap_or_default(), boundary)?;
                check_stray_boundaries(body, boundary, &delimiters)?;
                return Ok(parts);
            }
            open = Some(after);
        } else if open.is_none() && reads_like_a_request_line(line) {
            return Err(BatchError::Framing);
        }
        at = next_line(body, at).ok_or(BatchError::Framing)?;
    }
}

/// A delimiter line; `len` includes its line break.
struct Delimiter {
    close: bool,
    len: usize,
    /// Whether its line break is CRLF; `None` for a close delimiter that ends the body.
    crlf: Option<bool>,
}

/// Classifies a line that starts at `line`: not a delimiter, a delimiter, or an error when it
/// starts with `--boundary` yet is neither delimiter nor close delimiter.
fn delimiter(line: &[u8], boundary: &[u8]) -> Result<Option<Delimiter>, BatchError> {
    let Some(rest) = line
        .strip_prefix(b"--")
        .and_then(|rest| rest.strip_prefix(boundary))
    else {
        return if loose_delimiter(line, boundary) {
            Err(BatchError::Framing)
        } else {
            Ok(None)
        };
    };
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    // RFC 2046's transport padding (white space before the line break) is refused: a reader
    // that compares the whole line with the delimiter does not end the part there, and a
    // guarded part's body without a Content-Length would run on, for it, over the next part
    // (or the epilogue) and the targets in it.
    if trim_padding(rest).len() != rest.len() {
        return Err(BatchError::Framing);
    }
    let line_break = if rest.starts_with(b"\r\n") {
        2
    } else if rest.starts_with(b"\n") {
        1
    } else if close && rest.is_empty() {
        0
    } else {
        return Err(BatchError::Framing);
    };
    let len = line
        .len()
        .saturating_sub(rest.len())
        .saturating_add(line_break);
    Ok(Some(Delimiter {
        close,
        len,
        crlf: (line_break > 0).then_some(line_break == 2),
    }))
}

/// A CR that is not followed by LF.
fn has_bare_cr(body: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', body)
        .any(|cr| cr.checked_add(1).and_then(|lf| body.get(lf)) != Some(&b'\n'))
}

/// `--boundary`, in any case, anywhere but where a delimiter was read (`delimiters`, in order):
/// inside a line, it is data to this parser, and a part boundary to one that splits the body at
/// the boundary wherever it stands. RFC 2046 §5.1.1 has a boundary never appear inside a part,
/// so no conforming client sends one. Linear in the body (a folded copy searched by memmem, every
/// occurrence, overlapping ones included), whatever the boundary.
fn check_stray_boundaries(
    body: &[u8],
    boundary: &[u8],
    delimiters: &[usize],
) -> Result<(), BatchError> {
    let folded = body.to_ascii_lowercase();
    let mut needle = b"--".to_vec();
    needle.extend(boundary.iter().map(u8::to_ascii_lowercase));
    if positions(&folded, &needle).any(|at| delimiters.binary_search(&at).is_err()) {
        return Err(BatchError::Framing);
    }
    // The same once a comparison that ignores default-ignorable code points, marks and controls
    // and folds case and compatibility forms has read each line that is not printable ASCII
    // (`x--bn\u{212A}`: .NET's culture-sensitive `IndexOf` finds `--bnK` there; fresh eyes
    // round 38): no more occurrences than the bytes hold.
    let lines = |text| <[u8]>::split(text, |&b| b == b'\n');
    for (line, line_folded) in lines(body).zip(lines(&folded)) {
        if line.iter().all(|b| matches!(b, b' '..=b'~' | b'\r')) {
            continue;
        }
        let read = crate::iis::skeleton(&String::from_utf8_lossy(line));
        if positions(read.as_bytes(), &needle).count() > positions(line_folded, &needle).count() {
            return Err(BatchError::Framing);
        }
    }
    Ok(())
}

/// Where `needle` stands in `haystack`, overlapping occurrences included, in order.
fn positions<'h>(haystack: &'h [u8], needle: &'h [u8]) -> impl Iterator<Item = usize> + 'h {
    let finder = memchr::memmem::Finder::new(needle);
    let mut from = 0usize;
    std::iter::from_fn(move || {
        let at = from.saturating_add(finder.find(haystack.get(from..)?)?);
        from = at.saturating_add(1);
        Some(at)
    })
}

/// A line a lax parser could take for a delimiter: `--` and the boundary in another case, or
/// with white space before the dashes or between them and the boundary; and, for a line that is
/// not all printable ASCII, one that reads so to a comparison that gives no weight to
/// default-ignorable code points, marks and controls and folds case and compatibility forms
/// ([`skeleton`](crate::iis::skeleton)): .NET's culture-sensitive `StartsWith` and `Compare`
/// read `--b\u{AD}nd` as `--bnd`, and its case mappings `--bnd\u{17F}` as `--bndS` (fresh eyes
/// rounds 36 and 37).
fn loose_delimiter(line: &[u8], boundary: &[u8]) -> bool {
    let line = split_line(line).map_or(line, |(line, _)| line);
    if let Some(rest) = trim_padding(line).strip_prefix(b"--") {
        let rest = trim_padding(rest);
        if rest
            .get(..boundary.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(boundary))
        {
            return true;
        }
    }
    if line.iter().all(|b| (b' '..=b'~').contains(b)) {
        return false;
    }
    let read = crate::iis::skeleton(&String::from_utf8_lossy(line));
    let Some(rest) = read.trim_start_matches([' ', '\t']).strip_prefix("--") else {
        return false;
    };
    let rest = rest.trim_start_matches([' ', '\t']).as_bytes();
    rest.get(..boundary.len())
        .is_some_and(|b| b.eq_ignore_ascii_case(boundary))
}

fn trim_padding(bytes: &[u8]) -> &[u8] {
    let pad = bytes
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    bytes.get(pad..).unwrap_or_default()
}

/// A part runs from after its delimiter line to the line break before the next delimiter,
/// which belongs to that delimiter.
fn content(body: &[u8], start: usize, delimiter: usize) -> &[u8] {
    let before = body.get(..delimiter).unwrap_or_default();
    let before = before.strip_suffix(b"\n").unwrap_or(before);
    let before = before.strip_suffix(b"\r").unwrap_or(before);
    body.get(start..before.len()).unwrap_or_default()
}

/// Start of the line after the one starting at `at`.
fn next_line(body: &[u8], at: usize) -> Option<usize> {
    let newline = body.get(at..)?.iter().position(|&b| b == b'\n')?;
    at.checked_add(newline)?.checked_add(1)
}

/// The epilogue is ignored, yet may not look like another part to a laxer parser.
fn check_epilogue(mut epilogue: &[u8], boundary: &[u8]) -> Result<(), BatchError> {
    loop {
        if delimiter(epilogue, boundary)?.is_some() || reads_like_a_request_line(epilogue) {
            return Err(BatchError::Framing);
        }
        match split_line(epilogue) {
            Some((_, rest)) => epilogue = rest,
            None => return Ok(()),
        }
    }
}

/// Whether the line starting at `line` could be taken for an embedded request's first line: it
/// names an HTTP version, or it is a method token followed by a path or an absolute URI. Prose
/// such as "This is a multi-part message in MIME format." is neither.
fn reads_like_a_request_line(line: &[u8]) -> bool {
    let line = split_line(line).map_or(line, |(line, _)| line);
    let names_a_version = line.windows(5).any(|w| w.eq_ignore_ascii_case(b"HTTP/"));
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let method_then_target = match (words.next(), words.next()) {
        (Some(method), Some(target)) => {
            method.iter().all(|&b| media::is_tchar(b))
                && (target.starts_with(b"/")
                    || target.starts_with(b"\\")
                    || target.windows(3).any(|w| w == b"://"))
        }
        _ => false,
    };
    names_a_version || method_then_target
}

/// One part: its MIME headers, then the embedded request's line and headers, every one of those
/// lines ended by the batch's own line break (`crlf`, as its delimiters): a header block that a
/// bare LF ends in a CRLF batch runs on, to a reader that knows only CRLF, into a header value
/// and a request line this parser never saw (fresh eyes round 36). The body is data.
fn parse_part(content: &[u8], crlf: bool) -> Result<Part<'_>, BatchError> {
    let (mime, rest) = header_block(content, BatchError::PartHeaders, false, crlf)?;
    check_part_headers(&mime)?;
    let (line, rest) = split_line_as(rest, crlf).ok_or(BatchError::RequestLine)?;
    let (method, target) = request_line(line)?;
    let (headers, body) = header_block(rest, BatchError::RequestHeaders, true, crlf)?;
    check_request_headers(&headers, body)?;
    Ok(Part {
        method,
        target,
        headers,
        body,
    })
}

/// Header lines in order: name as written, value trimmed.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// Header lines up to an empty line, and what follows it. An embedded request's block may also
/// end with the part itself, right after a line break: its empty line was the delimiter's.
fn header_block(
    mut rest: &[u8],
    error: BatchError,
    may_end_part: bool,
    crlf: bool,
) -> Result<(Headers<'_>, &[u8]), BatchError> {
    let mut headers = Vec::new();
    loop {
        if may_end_part && rest.is_empty() {
            return Ok((headers, rest));
        }
        let (line, after) = split_line_as(rest, crlf).ok_or(error)?;
        if line.is_empty() {
            return Ok((headers, after));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(error);
        }
        headers.push(header_line(line).ok_or(error)?);
        rest = after;
    }
}

/// One line without its line break, and what follows; `None` when no line break ends it or it
/// is not CRLF (`crlf`) or a bare LF (not `crlf`).
fn split_line_as(bytes: &[u8], crlf: bool) -> Option<(&[u8], &[u8])> {
    let newline = memchr::memchr(b'\n', bytes)?;
    let (line, rest) = bytes.split_at_checked(newline)?;
    let line = match (line.strip_suffix(b"\r"), crlf) {
        (Some(line), true) => line,
        (None, false) => line,
        _ => return None,
    };
    Some((line, rest.get(1..)?))
}

/// One line without its CRLF or LF, and what follows; `None` when no line break ends it.
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let (line, rest) = bytes.split_at_checked(newline)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, rest.get(1..)?))
}

/// `token ":" OWS value OWS`. Leading whitespace (obs-fold), whitespace before the colon,
/// control characters and obs-text are all refused.
fn header_line(line: &[u8]) -> Option<(&str, &str)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = line.split_at_checked(colon)?;
    let value = value.get(1..)?;
    if !is_token(name)
        || !value
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return None;
    }
    Some((
        str::from_utf8(name).ok()?,
        str::from_utf8(value.trim_ascii()).ok()?,
    ))
}

/// A part's own `Content-Length` is not read: real clients send one that is not the part's
/// (the UCWA reference batch sample's `200` and `201`), so no reader the pool runs can size
/// parts by it.
fn check_part_headers(headers: &[(&str, &str)]) -> Result<(), BatchError> {
    let mut content_type = None;
    let mut encoding = None;
    for &(name, value) in headers {
        let slot = if name.eq_ignore_ascii_case("content-type") {
            &mut content_type
        } else if name.eq_ignore_ascii_case("content-transfer-encoding") {
            &mut encoding
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return Err(BatchError::PartHeaders);
        }
    }
    let identity = ["7bit", "8bit", "binary"];
    if encoding.is_some_and(|e| !identity.iter().any(|i| e.eq_ignore_ascii_case(i))) {
        return Err(BatchError::PartHeaders);
    }
    let media = MediaType::parse(content_type.ok_or(BatchError::PartHeaders)?)
        .map_err(|_| BatchError::PartHeaders)?;
    // `msgtype` alone: a `charset` (`utf-7`) has a reader that decodes the part as text read
    // another path and target than these bytes spell (fresh eyes round 37).
    if !media.is("application/http") || !media.has_only(&["msgtype"]) {
        return Err(BatchError::PartHeaders);
    }
    match media.parameter("msgtype") {
        Ok(None) => Ok(()),
        Ok(Some(m)) if m.eq_ignore_ascii_case("request") => Ok(()),
        Ok(Some(_)) | Err(_) => Err(BatchError::PartHeaders),
    }
}

/// `METHOD SP origin-form SP HTTP/1.1`, single spaces. The target is visible ASCII without a
/// fragment, since what we judge must be what the server acts on, and it starts with exactly
/// one `/`, decoded or not: resolved against the batch's URI, `//host/ucwa/...` or `/\host/...`
/// (a network-path reference, RFC 3986 §4.2) names another path than the one it spells.
fn request_line(line: &[u8]) -> Result<(&str, &str), BatchError> {
    let mut fields = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(b"HTTP/1.1"), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(BatchError::RequestLine);
    };
    let origin_form =
        target.starts_with(b"/") && target.iter().all(|&b| b.is_ascii_graphic() && b != b'#');
    if !is_token(method) || !origin_form || crate::iis::path::is_network_path(target) {
        return Err(BatchError::RequestLine);
    }
    let text = |bytes| str::from_utf8(bytes).map_err(|_| BatchError::RequestLine);
    Ok((text(method)?, text(target)?))
}

/// Framing inside the part must be unambiguous: no Transfer-Encoding, at most one
/// Content-Length and it must match, at most one Content-Type and Host, nothing multipart.
fn check_request_headers(headers: &[(&str, &str)], body: &[u8]) -> Result<(), BatchError> {
    let mut length = None;
    let mut content_type = false;
    let mut host = false;
    for &(name, value) in headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(BatchError::RequestHeaders);
        } else if name.eq_ignore_ascii_case("content-length") {
            let parsed = content_length(value).ok_or(BatchError::RequestHeaders)?;
            if length.replace(parsed).is_some() {
                return Err(BatchError::RequestHeaders);
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            if is_multipart(value) {
                return Err(BatchError::PartHeaders);
            }
            if std::mem::replace(&mut content_type, true) {
                return Err(BatchError::RequestHeaders);
            }
        } else if name.eq_ignore_ascii_case("host") && std::mem::replace(&mut host, true) {
            return Err(BatchError::RequestHeaders);
        }
    }
    match length {
        Some(n) if n != body.len() => Err(BatchError::RequestHeaders),
        _ => Ok(()),
    }
}

fn content_length(value: &str) -> Option<usize> {
    crate::request::decimal(value.as_bytes()).and_then(|n| usize::try_from(n).ok())
}

/// A media type whose essence begins `multipart/`, however its parameters read.
fn is_multipart(content_type: &str) -> bool {
    content_type
        .trim_start_matches([' ', '\t'])
        .as_bytes()
        .get(..10)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"multipart/"))
}

/// RFC 2046: 1 to 70 bchars, not ending in a space.
fn is_valid_boundary(boundary: &str) -> bool {
    let bchar = |b: u8| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b);
    (1..=MAX_BOUNDARY).contains(&boundary.len())
        && boundary.bytes().all(bchar)
        && !boundary.ends_with(' ')
}

fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| media::is_tchar(b))
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]
mod tests;
