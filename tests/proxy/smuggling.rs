//! A request-smuggling corpus (issue 15): raw HTTP/1.x requests whose framing is odd or
//! ambiguous, each sent on a plain TCP socket (a few over TLS) with a second request pipelined
//! behind it, once to a pass-through path and once to the guarded simultaneousRingToContact
//! resource. The pool member is a recording upstream that reads what ringfence forwards with a
//! strict parser of its own (exactly one of Content-Length or `Transfer-Encoding: chunked`, CRLF
//! line ends, no controls), so that every forwarded request is shown unambiguously framed and
//! its body intact, and a request hyper or ringfence refuses is shown never to reach it.
//!
//! The table pins today's behaviour (hyper 1.x in front, hyper-util's client re-framing every
//! request behind); any future own HTTP/1 path must pass it unchanged. docs/fuzzing.md ("The
//! request-smuggling corpus") says what each group covers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, certs::Certs, Toml, HOST, POLICY, SIMRING, TIMEOUT};

/// The pass-through path every pass-through case posts to.
const ME: &str = "/ucwa/oauth/v1/applications/192/me";
/// An allowed guarded body: what every forwarded case must deliver, byte for byte.
const BODY: &str = r#"{"target":"tel:+14255550100"}"#;
/// Pipelined behind every case; `Connection: close` ends the exchange once it is answered.
const FOLLOW: &str = "GET /ucwa/oauth/v1/applications/192/me?pipelined HTTP/1.1\r\nHost: lyncweb.contoso.com\r\nConnection: close\r\n\r\n";
/// The pipelined request's target as the pool would receive it.
const FOLLOW_TARGET: &str = "/ucwa/oauth/v1/applications/192/me?pipelined";
/// A request hidden where one reading of a case's framing sees body and another a next
/// request: it must never reach the pool.
const SMUGGLED: &str =
    "GET /ucwa/oauth/v1/applications/192/me?smuggled HTTP/1.1\r\nHost: lyncweb.contoso.com\r\n\r\n";
/// `{X}\r\n{B}\r\n0\r\n\r\n`: [`BODY`] in one chunk and the last chunk.
const CHUNKED_BODY_LEN: usize = 2 + 2 + BODY.len() + 2 + 5;
/// Headers that must not reach the pool: connection-specific ones (RFC 9110 §7.6.1) and those
/// the cases name in Connection.
const CONNECTION_SPECIFIC: &[&str] = &[
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "http2-settings",
];
/// How long a connection may stay open after its last answer before the case fails.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// What must happen to one case on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// hyper refuses the head itself with this status (no UCWA body) and closes; the pool sees
    /// nothing.
    Hyper(u16),
    /// ringfence refuses with this status and `debugInfo.reason`, and closes; the pool sees
    /// nothing.
    Refused(u16, &'static str),
    /// Forwarded once with [`BODY`] intact, then the pipelined request too.
    Forwarded,
    /// Forwarded once with [`BODY`] intact; hyper then closes the connection (RFC 9112 §6.3:
    /// Content-Length beside Transfer-Encoding), so the pipelined request is never read.
    ForwardedThenClosed,
    /// A pass-through request is streamed: when its body turns out broken after a first chunk,
    /// the pool may already have the head and that chunk. It sees at most that one incomplete
    /// request (never a complete one), its connection is dropped, and the client is answered
    /// 400 `bad_body` and closed, as [`Refused`]; nothing after it is read.
    BrokenOff,
}
use Expect::*;

/// One row: name, request template, and what must happen on the pass-through path and on the
/// guarded one. In the template `{P}` is the path, `{H}` the Host and Content-Type lines (no
/// CRLF after the last), `{B}` the body [`BODY`], `{L}` its length in decimal and `{X}` in hex,
/// `{S}` the [`SMUGGLED`] request and `{SL}` the length of `{X}\r\n{B}\r\n0\r\n\r\n{S}`;
/// [`FOLLOW`] is appended.
type Case = (&'static str, &'static str, Expect, Expect);

fn expand(template: &str, path: &str) -> Vec<u8> {
    let mut out = template
        .replace(
            "{H}",
            &format!("Host: {HOST}\r\nContent-Type: application/json"),
        )
        .replace("{P}", path)
        .replace("{B}", BODY)
        .replace("{L}", &BODY.len().to_string())
        .replace("{X}", &format!("{:x}", BODY.len()))
        .replace("{SL}", &(CHUNKED_BODY_LEN + SMUGGLED.len()).to_string())
        .replace("{S}", SMUGGLED)
        .into_bytes();
    out.extend_from_slice(FOLLOW.as_bytes());
    out
}

#[rustfmt::skip]
const FRAMING: &[Case] = &[
    // Baselines: each framing alone.
    ("Content-Length", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Forwarded, Forwarded),
    ("chunked", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Forwarded, Forwarded),
    ("chunked in three chunks", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"t\r\n1\r\na\r\n19\r\nrget\":\"tel:+14255550100\"}\r\n0\r\n\r\n", Forwarded, Forwarded),
    // Content-Length and Transfer-Encoding together: hyper reads the chunks, drops the length and
    // closes after the answer, so the bytes a length reading would leave are never a request.
    ("Content-Length then Transfer-Encoding", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", ForwardedThenClosed, ForwardedThenClosed),
    ("Transfer-Encoding then Content-Length", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", ForwardedThenClosed, ForwardedThenClosed),
    ("Content-Length covering a request after the last chunk", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: {SL}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n{S}", ForwardedThenClosed, ForwardedThenClosed),
    ("Content-Length covering a request, Transfer-Encoding behind a bare LF", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: {SL}\r\nX-A: 1\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n{S}", ForwardedThenClosed, ForwardedThenClosed),
    ("Content-Length 0 hiding a request in a chunked body", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", ForwardedThenClosed, ForwardedThenClosed),
    // Transfer-Encoding lists: only `chunked` alone is a framing both readers agree on.
    ("chunked not last", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked, identity\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Hyper(400), Hyper(400)),
    ("chunked line before a gzip line", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Hyper(400), Hyper(400)),
    ("chunked, chunked", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked, chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Refused(415, "encoded_body"), Refused(415, "encoded_body")),
    ("two chunked lines", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Refused(415, "encoded_body"), Refused(415, "encoded_body")),
    ("gzip, chunked", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Refused(415, "encoded_body"), Refused(415, "encoded_body")),
    ("gzip line then chunked line", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Refused(415, "encoded_body"), Refused(415, "encoded_body")),
    ("empty coding before chunked", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: , chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Refused(415, "encoded_body"), Refused(415, "encoded_body")),
    ("xchunked", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: xchunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Hyper(400), Hyper(400)),
    ("identity", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: identity\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("empty Transfer-Encoding", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding:\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("Chunked in another case", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: CHUNKED\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Forwarded, Forwarded),
    ("spaces around chunked", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding:   chunked  \r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Forwarded, Forwarded),
    ("tab before chunked", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding:\tchunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Forwarded, Forwarded),
    ("vertical tab before chunked", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: \x0bchunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Hyper(400), Hyper(400)),
    ("chunked folded onto a continuation line", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding:\r\n chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Hyper(400), Hyper(400)),
    ("space before the colon of Transfer-Encoding", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding : chunked\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("Transfer-Encoding on HTTP/1.0", "POST {P} HTTP/1.0\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Hyper(400), Hyper(400)),
    // Content-Length spellings: hyper takes 1*DIGIT only, and several lines only when equal.
    ("two equal Content-Length lines", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: {L}\r\nContent-Length: {L}\r\n\r\n{B}", Forwarded, Forwarded),
    ("two different Content-Length lines", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: {L}\r\nContent-Length: 4\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("Content-Length +29", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: +{L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("Content-Length -1", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: -1\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("Content-Length in hex", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: 0x{X}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("Content-Length `29 29`", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: {L} {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("Content-Length `29,29`", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: {L},{L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("Content-Length with leading zeros", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: 000{L}\r\n\r\n{B}", Refused(400, "bad_body"), Refused(400, "bad_body")),
    ("empty Content-Length", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length:\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("Content-Length over u64", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: 99999999999999999999999\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("Content-Length u64::MAX", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length: 18446744073709551615\r\n\r\n{B}", Hyper(431), Hyper(431)),
    ("Content-Length folded onto a continuation line", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length:\r\n {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
];

#[rustfmt::skip]
const CHUNKS: &[Case] = &[
    ("chunk extension", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X};name=\"va;lue\"\r\n{B}\r\n0;last\r\n\r\n", Forwarded, Forwarded),
    ("chunk extension with a bare CR", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X};a=\rb\r\n{B}\r\n0\r\n\r\n", Refused(400, "bad_body"), Refused(400, "bad_body")),
    ("chunk extension with a bare LF", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X};a=\nb\r\n{B}\r\n0\r\n\r\n", Refused(400, "bad_body"), Refused(400, "bad_body")),
    ("chunk size overflow", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\n{B}\r\n0\r\n\r\n", Refused(400, "bad_body"), Refused(400, "bad_body")),
    ("chunk size 0x-prefixed", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n0x{X}\r\n{B}\r\n0\r\n\r\n", Refused(400, "bad_body"), Refused(400, "bad_body")),
    ("chunk size with a leading space", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n {X}\r\n{B}\r\n0\r\n\r\n", Refused(400, "bad_body"), Refused(400, "bad_body")),
    ("chunk size with a trailing space", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X} \r\n{B}\r\n0\r\n\r\n", Forwarded, Forwarded),
    ("no CRLF after the chunk data", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}0\r\n\r\n", BrokenOff, Refused(400, "bad_body")),
    ("chunk data longer than its size", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{B}\r\n0\r\n\r\n", BrokenOff, Refused(400, "bad_body")),
    ("bare LF after the chunk data", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\n0\r\n\r\n", BrokenOff, Refused(400, "bad_body")),
    ("bare LF after the chunk size", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\n{B}\r\n0\r\n\r\n", Refused(400, "bad_body"), Refused(400, "bad_body")),
    ("bare LF ending the chunked body", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\n\n", BrokenOff, Refused(400, "bad_body")),
    ("bare CR in the chunk size line", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\r\n{B}\r\n0\r\n\r\n", Refused(400, "bad_body"), Refused(400, "bad_body")),
    ("trailer field", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\nX-Checksum: none\r\n\r\n", Forwarded, Forwarded),
    ("Content-Length in the trailer", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\nContent-Length: 4\r\n\r\n", Forwarded, Forwarded),
    ("Transfer-Encoding in the trailer", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\nTransfer-Encoding: gzip\r\n\r\n", Forwarded, Forwarded),
    ("Host in a declared trailer", "POST {P} HTTP/1.1\r\n{H}\r\nTrailer: Host, Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\nHost: lync.fabrikam.com\r\nContent-Length: 4\r\n\r\n", Forwarded, Forwarded),
    ("trailer folded onto a continuation line", "POST {P} HTTP/1.1\r\n{H}\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\nX-A: 1\r\n Content-Length: 4\r\n\r\n", BrokenOff, Refused(400, "bad_body")),
];

#[rustfmt::skip]
const HEADS: &[Case] = &[
    ("bare LF line ends", "POST {P} HTTP/1.1\nHost: lyncweb.contoso.com\nContent-Type: application/json\nContent-Length: {L}\n\n{B}", Forwarded, Forwarded),
    ("bare LF before Transfer-Encoding in a CRLF head", "POST {P} HTTP/1.1\r\n{H}\r\nX-A: 1\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Forwarded, Forwarded),
    ("bare CR inside the head", "POST {P} HTTP/1.1\r\n{H}\r\nX-A: 1\rContent-Length: 4\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("bare CR ending a header line", "POST {P} HTTP/1.1\r\n{H}\rContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("space before a colon", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length : {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("tab before a colon", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length\t: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("header name with a slash", "POST {P} HTTP/1.1\r\n{H}\r\nContent/Length: 4\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("header name with a NUL", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length\0: 4\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("header name with a non-ASCII byte", "POST {P} HTTP/1.1\r\n{H}\r\nContent-L\u{e9}ngth: 4\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("empty header name", "POST {P} HTTP/1.1\r\n{H}\r\n: 4\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("NUL in a value", "POST {P} HTTP/1.1\r\n{H}\r\nX-A: a\0b\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("control character in a value", "POST {P} HTTP/1.1\r\n{H}\r\nX-A: a\x01b\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("DEL in a value", "POST {P} HTTP/1.1\r\n{H}\r\nX-A: a\x7fb\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("escape character in the Host", "POST {P} HTTP/1.1\r\nHost: lyncweb.contoso.com\x1b\r\nContent-Type: application/json\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("obs-fold continuation line", "POST {P} HTTP/1.1\r\n{H}\r\nX-A: 1\r\n  continued\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("header line without a colon", "POST {P} HTTP/1.1\r\n{H}\r\nContent-Length {L}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("whitespace before the first header", "POST {P} HTTP/1.1\r\n Content-Length: 4\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
];

#[rustfmt::skip]
const LINES: &[Case] = &[
    ("two spaces after the method", "POST  {P} HTTP/1.1\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("two spaces before the version", "POST {P}  HTTP/1.1\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("tab after the method", "POST\t{P} HTTP/1.1\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("space inside the target", "POST {P} x HTTP/1.1\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("absolute-form target", "POST http://lyncweb.contoso.com{P} HTTP/1.1\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Forwarded, Forwarded),
    ("HTTP/1.2", "POST {P} HTTP/1.2\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("HTTP/2.0 on an HTTP/1 connection", "POST {P} HTTP/2.0\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("lower-case version", "POST {P} http/1.1\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("HTTP/0.9 request line", "GET {P}\r\n\r\n", Hyper(400), Hyper(400)),
    ("bare CR ending the request line", "POST {P} HTTP/1.1\r{H}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("NUL in the target", "POST {P}\0 HTTP/1.1\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", Hyper(400), Hyper(400)),
    ("HTTP/1.0 with Content-Length", "POST {P} HTTP/1.0\r\n{H}\r\nContent-Length: {L}\r\n\r\n{B}", ForwardedThenClosed, ForwardedThenClosed),
    ("Expect: 100-continue with the body sent at once", "POST {P} HTTP/1.1\r\n{H}\r\nExpect: 100-continue\r\nContent-Length: {L}\r\n\r\n{B}", Forwarded, Forwarded),
    ("Expect: 100-continue, chunked", "POST {P} HTTP/1.1\r\n{H}\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n{X}\r\n{B}\r\n0\r\n\r\n", Forwarded, Forwarded),
    ("Upgrade: websocket", "POST {P} HTTP/1.1\r\n{H}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: {L}\r\n\r\n{B}", Forwarded, Forwarded),
    ("Upgrade: h2c", "POST {P} HTTP/1.1\r\n{H}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: {L}\r\n\r\n{B}", Forwarded, Forwarded),
    ("Upgrade without Connection: upgrade", "POST {P} HTTP/1.1\r\n{H}\r\nUpgrade: websocket\r\nContent-Length: {L}\r\n\r\n{B}", Forwarded, Forwarded),
];

/// Runs a group on both paths and reports every failing case by name.
async fn run(group: &str, cases: &[Case]) {
    let rig = Rig::start(false).await;
    let mut failures = Vec::new();
    for &(name, template, pass, guarded) in cases {
        for (path, expect) in [(ME, pass), (SIMRING, guarded)] {
            let wire = expand(template, path);
            if let Err(e) = rig.check(&wire, path, expect).await {
                let on = if path == ME {
                    "pass-through"
                } else {
                    "guarded"
                };
                failures.push(format!("{name} ({on}, expected {expect:?}): {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{group}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
}

#[tokio::test]
async fn content_length_and_transfer_encoding_are_read_one_way_or_refused() {
    run("framing", FRAMING).await;
}

#[tokio::test]
async fn broken_chunks_never_reach_the_pool_as_a_request() {
    run("chunks", CHUNKS).await;
}

#[tokio::test]
async fn malformed_header_lines_are_refused_by_the_http_layer() {
    run("heads", HEADS).await;
}

#[tokio::test]
async fn odd_request_lines_expectations_and_upgrades_are_refused_or_forwarded_plainly() {
    run("lines", LINES).await;
}

/// A head over hyper's 64 KiB read buffer, or with more header lines than it parses, is answered
/// 431 and nothing of it reaches the pool.
#[tokio::test]
async fn oversized_heads_are_refused() {
    let rig = Rig::start(false).await;
    let long_value = format!(
        "POST {{P}} HTTP/1.1\r\n{{H}}\r\nX-Pad: {}\r\nContent-Length: {{L}}\r\n\r\n{{B}}",
        "a".repeat(256 * 1024)
    );
    let many_lines = format!(
        "POST {{P}} HTTP/1.1\r\n{{H}}\r\n{}Content-Length: {{L}}\r\n\r\n{{B}}",
        (0..120)
            .map(|i| format!("X-{i}: {i}\r\n"))
            .collect::<String>()
    );
    for path in [ME, SIMRING] {
        for template in [&long_value, &many_lines] {
            rig.check(&expand(template, path), path, Hyper(431))
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }
}

/// The same exchanges over TLS (ALPN http/1.1): TLS changes nothing in how a request is framed.
#[tokio::test]
async fn framing_over_tls_is_read_as_in_the_clear() {
    let rig = Rig::start(true).await;
    let picked = [
        "Content-Length",
        "chunked",
        "Transfer-Encoding then Content-Length",
        "chunked, chunked",
        "two different Content-Length lines",
        "chunk size overflow",
        "obs-fold continuation line",
    ];
    let mut failures = Vec::new();
    for &(name, template, pass, guarded) in FRAMING.iter().chain(CHUNKS).chain(HEADS) {
        if !picked.contains(&name) {
            continue;
        }
        for (path, expect) in [(ME, pass), (SIMRING, guarded)] {
            if let Err(e) = rig.check(&expand(template, path), path, expect).await {
                failures.push(format!("{name} on {path} over TLS: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Two well-framed requests pipelined in one write, then an ambiguous one: the first two are
/// answered in order, the third is refused and the connection closed; nothing after it is read.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order_until_an_ambiguous_one() {
    let rig = Rig::start(false).await;
    let ok = format!(
        "POST {SIMRING} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let chunked = format!(
        "POST {ME} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{BODY}\r\n0\r\n\r\n",
        BODY.len()
    );
    let ambiguous = format!(
        "POST {ME} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked, chunked\r\n\r\n{:x}\r\n{BODY}\r\n0\r\n\r\n",
        BODY.len()
    );
    let wire = format!("{ok}{chunked}{ambiguous}{FOLLOW}");
    let before = rig.upstream.requests().len();
    let (bytes, closed) = rig.exchange(wire.as_bytes()).await;
    let answers = responses(&bytes).unwrap();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [200, 200, 415],
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(closed, "the connection stays open after the refusal");
    let seen = rig.upstream.requests_since(before).await;
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, [SIMRING, ME]);
    for s in &seen {
        assert_eq!(s.problem, None);
        assert_eq!(s.body, BODY.as_bytes());
    }
}

/// ringfence in front of the recording upstream, optionally with TLS towards clients.
struct Rig {
    upstream: Upstream,
    server: ringfence::server::Server,
    certs: Option<Certs>,
}

impl Rig {
    async fn start(tls: bool) -> Rig {
        let upstream = Upstream::start().await;
        let certs = tls.then(Certs::generate);
        let mut server = String::from("max_body_bytes = 4096\n");
        if let Some(c) = &certs {
            server += &format!(
                "tls = {{ cert = {:?}, key = {:?} }}\n",
                c.server_cert_path(),
                c.server_key_path()
            );
        }
        let toml = Toml::new(&[format!("http://{}", upstream.addr)])
            .server(&server)
            .upstream("connect_timeout = \"1s\"\nresponse_timeout = \"5s\"\n")
            .rest(POLICY)
            .build();
        let server = support::serve_toml(&toml).await;
        Rig {
            upstream,
            server,
            certs,
        }
    }

    /// Writes `wire` on a fresh connection and reads until the server closes it (or
    /// [`CLOSE_WITHIN`] passes without a byte); whether it closed.
    async fn exchange(&self, wire: &[u8]) -> (Vec<u8>, bool) {
        let addr = self.server.addrs()[0];
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connects");
        match &self.certs {
            None => talk(tcp, wire).await,
            Some(certs) => {
                let mut config = certs.client_config();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let name = rustls_pki_types::ServerName::try_from(HOST.to_string()).unwrap();
                let tls = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
                    .await
                    .expect("handshake in time")
                    .expect("handshake");
                talk(tls, wire).await
            }
        }
    }

    /// Sends one case to `path` and checks `expect`.
    async fn check(&self, wire: &[u8], path: &str, expect: Expect) -> Result<(), String> {
        let before = self.upstream.requests().len();
        let (bytes, closed) = self.exchange(wire).await;
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        if !closed {
            return Err(format!("the connection stayed open; read {:?}", text()));
        }
        let answers = responses(&bytes).map_err(|e| format!("{e}: {:?}", text()))?;
        let seen = self.upstream.requests_since(before).await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        let seen_text = || {
            seen.iter()
                .map(|s| format!("{} {} {:?}", s.method, s.target, s.problem))
                .collect::<Vec<_>>()
        };
        // A refusal: its status, the UCWA reason if ringfence answered, and whether the pool may
        // have got the head of the refused request before its body broke.
        let refusal = match expect {
            Hyper(status) => Some((status, None, false)),
            Refused(status, reason) => Some((status, Some(reason), false)),
            BrokenOff => Some((400, Some("bad_body"), true)),
            Forwarded | ForwardedThenClosed => None,
        };
        match refusal {
            Some((status, reason, may_cut)) => {
                if statuses != [status] {
                    return Err(format!("answers {statuses:?}: {:?}", text()));
                }
                let leaked = match seen.as_slice() {
                    [] => false,
                    [one] if may_cut => one.target != path || one.problem.is_none(),
                    _ => true,
                };
                if leaked {
                    return Err(format!("the pool received {:?}", seen_text()));
                }
                let body = &answers[0].body;
                match reason {
                    Some(reason) => {
                        let v: serde_json::Value = serde_json::from_slice(body)
                            .map_err(|_| format!("no UCWA error body: {:?}", text()))?;
                        if v["debugInfo"]["reason"] != reason {
                            return Err(format!("refused as {}", v["debugInfo"]["reason"]));
                        }
                    }
                    None if !body.is_empty() => {
                        return Err(format!("answered with a body: {:?}", text()));
                    }
                    None => {}
                }
            }
            None => {
                let (want, targets): (&[u16], &[&str]) = if expect == Forwarded {
                    (&[200, 200], &[path, FOLLOW_TARGET])
                } else {
                    (&[200], &[path])
                };
                if statuses != want {
                    return Err(format!("answers {statuses:?}: {:?}", text()));
                }
                let got: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
                if got != targets {
                    return Err(format!("the pool received {:?}", seen_text()));
                }
                for (s, body) in seen.iter().zip([BODY, ""]) {
                    if let Some((name, _)) = s
                        .headers
                        .iter()
                        .find(|(n, _)| CONNECTION_SPECIFIC.contains(&n.as_str()))
                    {
                        return Err(format!("{} carried {name}", s.target));
                    }
                    if let Some(problem) = &s.problem {
                        return Err(format!("{} framed badly: {problem}", s.target));
                    }
                    if s.body != body.as_bytes() {
                        return Err(format!(
                            "{} body became {:?}",
                            s.target,
                            String::from_utf8_lossy(&s.body)
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes `wire`, then reads until end of stream; `false` if the server kept the connection
/// open [`CLOSE_WITHIN`] after its last byte.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, wire: &[u8]) -> (Vec<u8>, bool) {
    // The server may close before it has read everything (a refused head): a failed write is
    // then part of the outcome, not an error of the test.
    let _ = tokio::time::timeout(TIMEOUT, stream.write_all(wire)).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(CLOSE_WITHIN, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// A final answer read from the client connection.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Every final answer in `bytes` (1xx interim answers are skipped), each framed by
/// Content-Length or chunked.
fn responses(mut bytes: &[u8]) -> Result<Vec<Answer>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let message = Message::parse(bytes).ok_or("an answer that cannot be read")?;
        let status = message
            .start
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or("no status")?;
        bytes = &bytes[message.len..];
        if !(100..200).contains(&status) {
            out.push(Answer {
                status,
                body: message.body,
            });
        }
    }
    Ok(out)
}

/// One HTTP/1.1 message read strictly: CRLF line ends, no controls, header names that are
/// tokens, and exactly one of Content-Length (1*DIGIT) or `Transfer-Encoding: chunked` (or
/// neither, no body). What the pool must be able to read without any leniency.
#[derive(Debug)]
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<String>,
    /// Bytes the message took.
    len: usize,
}

impl Message {
    /// `None` while incomplete; a framing fault is `Some(Err)` through [`Message::read`].
    fn parse(bytes: &[u8]) -> Option<Message> {
        Message::read(bytes).ok().flatten()
    }

    fn read(bytes: &[u8]) -> Result<Option<Message>, String> {
        let Some(end) = find(bytes, b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "head is not UTF-8")?;
        if head
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n') || b == 0x7f)
        {
            return Err("control character in the head".into());
        }
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        for line in lines {
            if line.contains(['\r', '\n']) {
                return Err(format!("bare CR or LF in {line:?}"));
            }
            let (name, value) = line.split_once(':').ok_or(format!("no colon: {line:?}"))?;
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(format!("header name {name:?}"));
            }
            headers.push((
                name.to_ascii_lowercase(),
                value.trim_matches([' ', '\t']).to_string(),
            ));
        }
        let of = |n: &'static str| -> Vec<&str> {
            headers
                .iter()
                .filter(|(h, _)| h == n)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let lengths = of("content-length");
        let codings = of("transfer-encoding");
        let mut at = end + 4;
        let (body, trailers) = match (lengths.as_slice(), codings.as_slice()) {
            ([], []) => (Vec::new(), Vec::new()),
            ([n], []) => {
                if n.is_empty()
                    || !n.bytes().all(|b| b.is_ascii_digit())
                    || (n.len() > 1 && n.starts_with('0'))
                {
                    return Err(format!("Content-Length {n:?}"));
                }
                let n: usize = n.parse().map_err(|_| "Content-Length overflow")?;
                let Some(body) = bytes.get(at..at + n) else {
                    return Ok(None);
                };
                at += n;
                (body.to_vec(), Vec::new())
            }
            ([], ["chunked"]) => {
                let mut body = Vec::new();
                loop {
                    let Some(line_end) = find(&bytes[at..], b"\r\n") else {
                        return Ok(None);
                    };
                    let size = std::str::from_utf8(&bytes[at..at + line_end]).unwrap_or("?");
                    let size = usize::from_str_radix(size, 16)
                        .map_err(|_| format!("chunk size line {size:?}"))?;
                    at += line_end + 2;
                    if size == 0 {
                        break;
                    }
                    let Some(chunk) = bytes.get(at..at + size + 2) else {
                        return Ok(None);
                    };
                    if !chunk.ends_with(b"\r\n") {
                        return Err("no CRLF after a chunk".into());
                    }
                    body.extend_from_slice(&chunk[..size]);
                    at += size + 2;
                }
                let mut trailers = Vec::new();
                loop {
                    let Some(line_end) = find(&bytes[at..], b"\r\n") else {
                        return Ok(None);
                    };
                    let line = String::from_utf8_lossy(&bytes[at..at + line_end]).into_owned();
                    at += line_end + 2;
                    if line.is_empty() {
                        break;
                    }
                    trailers.push(line);
                }
                (body, trailers)
            }
            _ => return Err(format!("framed by {lengths:?} and {codings:?}")),
        };
        Ok(Some(Message {
            start,
            headers,
            body,
            trailers,
            len: at,
        }))
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the recording upstream read: a request, or the bytes of one it could not read.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    /// Header lines, names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Why the request is not one the pool could read unambiguously (bad framing, a trailer
    /// field, or cut short), if it is not.
    problem: Option<String>,
}

/// A pool member on a real socket that records every request strictly read (health probes of
/// `/` left out) and answers each `200` with a two-byte body.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&record)));
            }
        });
        Upstream { addr, seen, accept }
    }

    fn requests(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.target != "/").cloned().collect()
    }

    /// The requests after the first `before`, once a broken-off one (recorded when its
    /// connection drops) has had a moment to land.
    async fn requests_since(&self, before: usize) -> Vec<Seen> {
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.requests().into_iter().skip(before).collect()
    }
}

/// Reads requests off one upstream connection until it ends or a request cannot be read.
async fn serve(mut stream: TcpStream, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match Message::read(&buf) {
            Ok(Some(m)) => {
                let mut parts = m.start.splitn(3, ' ');
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let problem = if parts.next() != Some("HTTP/1.1") {
                    Some(format!("request line {:?}", m.start))
                } else if !m.trailers.is_empty() {
                    Some(format!("trailer fields {:?}", m.trailers))
                } else {
                    None
                };
                seen.lock().unwrap().push(Seen {
                    method: method.into(),
                    target: target.into(),
                    headers: m.headers,
                    body: m.body,
                    problem,
                });
                buf.drain(..m.len);
                let answer =
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
                if stream.write_all(answer).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(problem) => {
                seen.lock().unwrap().push(unreadable(&buf, problem));
                return;
            }
        }
        match tokio::time::timeout(TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => {
                if !buf.is_empty() {
                    seen.lock()
                        .unwrap()
                        .push(unreadable(&buf, "cut short".into()));
                }
                return;
            }
        }
    }
}

/// A request the upstream could not read, named by its request line.
fn unreadable(buf: &[u8], problem: String) -> Seen {
    let line =
        String::from_utf8_lossy(&buf[..find(buf, b"\r\n").unwrap_or(buf.len())]).into_owned();
    let mut parts = line.split(' ');
    Seen {
        method: parts.next().unwrap_or("").into(),
        target: parts.next().unwrap_or("").into(),
        headers: Vec::new(),
        body: Vec::new(),
        problem: Some(problem),
    }
}
