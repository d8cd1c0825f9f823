//! ringfence's own HTTP/1.1 server, for connections known to speak it (a plaintext client whose
//! first bytes are no HTTP/2 preface, a TLS client that chose `http/1.1`): issue 15 measured
//! hyper's server and its request types as most of what a guarded POST costs beyond the job.
//!
//! It reads requests as hyper 1.x's server does (`proto/h1/role.rs`, `Server::parse`), with the
//! same parser (httparse, default settings) and the same framing rules, so the request-smuggling
//! corpus (`tests/proxy/smuggling.rs`) pins one behaviour for both: a `Transfer-Encoding` must
//! end in `chunked` and only on HTTP/1.1, and wins over `Content-Length` (the connection then
//! closes after the answer); differing or unreadable `Content-Length` lines are refused (400);
//! a head over 64 KiB or 100 lines is refused (431). Chunked bodies are read strictly (CRLF line
//! ends only: `upstream::h1::Chunked`, the reader of the members' answers). Answers are written
//! as hyper's `Server::encode` writes them (framing headers, `Date`, no body for HEAD, 204 and
//! 304), one write per answer when its body is ready with its head.
//!
//! A connection holds no buffer while it is quiet: after [`PARK_AFTER`] it parks, keeping only
//! its socket (and TLS session) until the client speaks again, as `park.rs` parks hyper's.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body::Body;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::park::{parked, Beside, Socket, Wake, CLOSE_WITHIN};
use super::{BoxError, Handler, Serving, MAX_HTTP1_BUF};
use crate::body::Tracked;
use crate::body::{Broken, Feed, InFlight, Source, WireBody, PARK_AFTER};
use crate::gateway::ResponseBody;
use crate::request::{self, RequestTarget};
use crate::upstream::h1::{ends_chunked, has_token, Chunked, Step};

/// Header lines a request may have (hyper's default).
const MAX_HEADERS: usize = 100;
/// The longest request target (hyper's `MAX_URI_LEN`).
const MAX_URI: usize = (u16::MAX - 1) as usize;
/// How much is read at a time.
const READ_SIZE: usize = 8 * 1024;
/// Body bytes gathered behind a head before they are written.
const WRITE_BATCH: usize = 64 * 1024;

/// Serves one HTTP/1.1 connection until the client closes it, it is abandoned, or the server
/// stops (after the request in flight).
pub(super) async fn serve<T: Socket>(
    io: T,
    serving: Serving<Handler>,
    parked_gauge: &IntGauge,
) -> Result<(), BoxError> {
    let Serving {
        service,
        stop,
        activity,
        limits,
    } = serving;
    let mut conn = Conn {
        io,
        buf: BytesMut::new(),
        stop,
        handler: service,
        activity,
        limits,
        taken_up: 0,
        spans: Vec::new(),
    };
    let end = conn.run(parked_gauge).await;
    match end {
        End::Close => {
            let _ = tokio::time::timeout(CLOSE_WITHIN, conn.io.shutdown()).await;
            Ok(())
        }
        End::Drop => Ok(()),
        End::Failed(e) => Err(e.into()),
    }
}

/// How a connection ends.
enum End {
    /// Closed in good order (TLS close_notify, FIN).
    Close,
    /// Dropped: the client is not worth the close (it let a limit pass).
    Drop,
    Failed(io::Error),
}

struct Conn<T> {
    io: T,
    /// Bytes read and not yet parsed; empty, with no allocation, while parked.
    buf: BytesMut,
    stop: tokio_util::sync::CancellationToken,
    handler: Handler,
    activity: Arc<super::Activity>,
    limits: super::Limits,
    /// When the awaited head began to be waited for ([`super::Activity::head_left`]).
    taken_up: u64,
    /// Where a head's header names and values lie in it, kept from one head to the next.
    spans: Vec<Span>,
}

/// A header's name and value, as byte ranges of its head.
type Span = [usize; 4];

/// A request head as read, and what its framing says.
struct Head {
    request: request::Head,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

impl<T: Socket> Conn<T> {
    async fn run(&mut self, parked_gauge: &IntGauge) -> End {
        loop {
            // A new connection waits for its first bytes as a parked one does.
            match self.park(parked_gauge).await {
                Ok(Wake::Readable) => {}
                Ok(Wake::Close) => return End::Close,
                Err(e) => return End::Failed(e),
            }
            // Boxed, once per waking: a parked connection's task keeps no room for a request's
            // state (its head, answer and writer: ~1.7 KB a connection, measured).
            if let Some(end) = Box::pin(self.awake()).await {
                return end;
            }
        }
    }

    /// Serves requests until the connection ends (Some) or has been quiet long enough to park.
    async fn awake(&mut self) -> Option<End> {
        // Made at each waking and dropped at the park: a parked connection keeps no timer.
        let mut sides = Sides::new(&self.stop);
        loop {
            let head = match self.next_head(&mut sides).await {
                Ok(Next::Head(head)) => head,
                Ok(Next::Park) => return None,
                Ok(Next::End(end)) => return Some(end),
                Ok(Next::Refuse(status)) => {
                    self.refuse(status).await;
                    return Some(End::Close);
                }
                Err(e) => return Some(End::Failed(e)),
            };
            let exchange = self.start(head);
            match self.exchange(exchange, &mut sides).await {
                Ok(true) if !sides.stopped && !self.stop.is_cancelled() => {}
                Ok(_) => return Some(End::Close),
                Err(e) => return Some(End::Failed(e)),
            }
        }
    }

    /// Waits, holding only the socket, for the client's next bytes.
    async fn park(&mut self, parked_gauge: &IntGauge) -> io::Result<Wake> {
        // What a quiet connection need not keep: its buffer and the spans kept for the next head.
        self.buf = BytesMut::new();
        self.spans = Vec::new();
        let waiting = super::Counted::new(parked_gauge);
        let wake = parked(&mut self.io, &self.stop, &self.activity, self.limits).await;
        drop(waiting);
        if let Ok(Wake::Readable) = wake {
            self.taken_up = self.activity.woken();
        }
        wake
    }

    /// Reads until a whole head is buffered.
    async fn next_head(&mut self, sides: &mut Sides) -> io::Result<Next> {
        loop {
            if !self.buf.is_empty() {
                match parse(&mut self.buf, &mut self.spans) {
                    Ok(Some(head)) => return Ok(Next::Head(head)),
                    Ok(None) if self.buf.len() >= MAX_HTTP1_BUF => {
                        return Ok(Next::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
                    }
                    Ok(None) => {}
                    Err(status) => return Ok(Next::Refuse(status)),
                }
            }
            match self.read_more(sides).await? {
                Read::Bytes => {}
                // The client closed (inside a head or not): nothing to answer.
                Read::Eof => return Ok(Next::End(End::Close)),
                Read::Stop => return Ok(Next::End(End::Close)),
                Read::Timer => {
                    let head = self
                        .activity
                        .head_left(self.taken_up, self.limits.head)
                        .unwrap_or(Duration::MAX);
                    if head.is_zero() {
                        tracing::debug!(
                            "no request head within header_read_timeout; connection closed"
                        );
                        return Ok(Next::End(End::Drop));
                    }
                    if self.activity.remaining(self.limits).is_zero() {
                        return Ok(Next::End(End::Close));
                    }
                    let park = self.activity.park_in();
                    if self.buf.is_empty() && park == Some(Duration::ZERO) {
                        return Ok(Next::Park);
                    }
                    // Half a head waits for its limit only; an empty buffer for the park too.
                    let wait = if self.buf.is_empty() {
                        head.min(park.unwrap_or(PARK_AFTER))
                    } else {
                        head
                    };
                    sides.arm(wait.max(Duration::from_millis(1)), Purpose::Head);
                }
            }
        }
    }

    /// Reads what the client sent, or waits for it, the stop, or the connection's timer.
    async fn read_more(&mut self, sides: &mut Sides) -> io::Result<Read> {
        let room = MAX_HTTP1_BUF.saturating_sub(self.buf.len()).min(READ_SIZE);
        self.buf.reserve(room);
        if !sides.armed_for(Purpose::Head) {
            let wait = self
                .activity
                .head_left(self.taken_up, self.limits.head)
                .unwrap_or(Duration::MAX)
                .min(PARK_AFTER);
            sides.arm(wait, Purpose::Head);
        }
        let (io, buf) = (&mut self.io, &mut self.buf);
        poll_fn(|cx| {
            let mut limited = buf.limit(room);
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut limited) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Read::Eof)),
                Poll::Ready(Ok(_)) => return Poll::Ready(Ok(Read::Bytes)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            match sides.poll(cx, true) {
                Some(Side::Stop) => Poll::Ready(Ok(Read::Stop)),
                Some(Side::Timer) => Poll::Ready(Ok(Read::Timer)),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Serves one request: its answer from the gateway, its body fed meanwhile, the answer
    /// written. Whether the connection may carry another.
    /// Starts serving a request: its body, whole or fed, and the gateway's answer to come. Not
    /// async, so that the head (and the request made of it) takes no room in the future that
    /// waits for the answer: a held long poll keeps that future for minutes (issue 16).
    fn start(&mut self, head: Head) -> Exchange {
        let Head {
            request,
            framing,
            keep_alive,
            expect_continue,
        } = head;
        let asked = Asked {
            method: request.method.clone(),
            version: request.version,
            keep_alive,
        };
        let (body, feeding) = body(&mut self.buf, framing, expect_continue);
        let (answer, in_flight) = self.handler.start(request, Source::Right(body));
        Exchange {
            answer,
            in_flight: Some(in_flight),
            asked,
            feeding,
            writer: None,
        }
    }

    /// Serves one request: its answer from the gateway, its body fed meanwhile, the answer
    /// written. Whether the connection may carry another. A future written by hand, not an
    /// async block, so that it keeps only [`Exchange`] (an async block kept the answer beside
    /// the writer made of it, and its arguments twice: a held long poll's ~1 KB).
    fn exchange<'a>(
        &'a mut self,
        mut exchange: Exchange,
        sides: &'a mut Sides,
    ) -> impl Future<Output = io::Result<bool>> + 'a {
        let Conn {
            io,
            buf,
            stop,
            limits,
            ..
        } = self;
        let send = limits.send;
        poll_fn(move |cx| exchange.poll(cx, io, buf, stop, sides, send))
    }

    /// Answers a head hyper's server would have refused (its status, no body) before closing.
    async fn refuse(&mut self, status: StatusCode) {
        let mut out = BytesMut::with_capacity(128);
        write_refusal(&mut out, status);
        let write = async {
            self.io.write_all(&out).await?;
            self.io.flush().await
        };
        let _ = tokio::time::timeout(self.limits.send, write).await;
    }
}

/// The answer's writer, its head encoded (a 500 in its place when it cannot be), and whether
/// the connection ends after it. Not async, for the reason `Conn::start` is not.
fn writer(
    response: http::Response<Tracked<ResponseBody>>,
    asked: &Asked,
    send: Duration,
) -> (Writer<Tracked<ResponseBody>>, bool) {
    let (mut parts, answer_body) = response.into_parts();
    let mut out = BytesMut::with_capacity(256);
    let encoded = encode(&mut out, asked, &mut parts, &answer_body);
    let (encoder, last) = match encoded {
        Ok(e) => e,
        Err(()) => {
            out.clear();
            write_refusal(&mut out, StatusCode::INTERNAL_SERVER_ERROR);
            (Encoder::Length(0), true)
        }
    };
    let writer = Writer {
        out,
        encoder,
        body: (!encoder.is_eof()).then_some(answer_body),
        done: false,
        blocked_since: None,
        send,
    };
    (writer, last)
}

/// One request in flight on a connection: its answer to come, then the answer's writer.
struct Exchange {
    answer: super::Answering,
    /// The request's guard, until the answer's body takes it.
    in_flight: Option<InFlight>,
    asked: Asked,
    feeding: Option<Feeding>,
    /// Once the answer came: its writer, and whether the connection ends after it.
    writer: Option<(Writer<Tracked<ResponseBody>>, bool)>,
}

impl Exchange {
    #[allow(clippy::too_many_arguments)]
    fn poll<T: Socket>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut T,
        buf: &mut BytesMut,
        stop: &tokio_util::sync::CancellationToken,
        sides: &mut Sides,
        send: Duration,
    ) -> Poll<io::Result<bool>> {
        if self.writer.is_none() {
            match self.answer.as_mut().poll(cx) {
                Poll::Ready(Ok(response)) => {
                    let Some(in_flight) = self.in_flight.take() else {
                        return Poll::Ready(Ok(false));
                    };
                    let response = response.map(|body| Tracked::answer(body, in_flight));
                    let keep_alive = self.asked.keep_alive;
                    self.asked.keep_alive &= !(sides.stopped || stop.is_cancelled());
                    self.writer = Some(writer(response, &self.asked, send));
                    // No interim answer once the final one has begun (hyper: `Writing::Init`).
                    if let Some(f) = &mut self.feeding {
                        f.continue_left = None;
                    }
                    self.asked.keep_alive = keep_alive;
                }
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => {
                    // A body broken by the client's end of stream (a client that half-closed
                    // inside it) is answered 400 before the close, as hyper's server answers it.
                    let reading = match &mut self.feeding {
                        Some(f) => f.poll(cx, &mut *io, &mut *buf).is_pending() || f.broken,
                        None => false,
                    };
                    // Once the body is read, the socket is watched for the client going away (a
                    // long poll's client that closed): the request is then dropped, and with it
                    // its upstream exchange, as hyper's server drops it. Bytes that come
                    // meanwhile (a pipelined request) are kept for after the answer, up to the
                    // head limit.
                    while !reading && buf.len() < MAX_HTTP1_BUF {
                        if buf_capacity_short(buf) {
                            buf.reserve(READ_SIZE);
                        }
                        let room = MAX_HTTP1_BUF - buf.len();
                        let mut limited = (&mut *buf).limit(room);
                        match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut limited) {
                            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                                tracing::debug!(
                                    "the client went away before its answer; request dropped"
                                );
                                return Poll::Ready(Ok(false));
                            }
                            Poll::Ready(Ok(_)) => {}
                            Poll::Pending => break,
                        }
                    }
                    // The stop lets the request finish; the connection closes after its answer.
                    let _ = sides.poll(cx, false);
                    return Poll::Pending;
                }
            }
        }
        let Some((writer, last)) = &mut self.writer else {
            return Poll::Ready(Ok(false));
        };
        if let Some(f) = &mut self.feeding {
            let _ = f.poll(cx, &mut *io, &mut *buf);
        }
        match writer.poll(cx, &mut *io) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "answer not written; connection closed");
                return Poll::Ready(Ok(false));
            }
            Poll::Pending => {
                if writer.blocked_since.is_some() {
                    if !sides.armed_for(Purpose::Send) {
                        sides.arm(writer.send, Purpose::Send);
                    }
                    if let Some(Side::Timer) = sides.poll(cx, true) {
                        // Set at an earlier block: due `send_timeout` after this one began.
                        match writer.stall_left() {
                            Some(left) if left.is_zero() => {
                                tracing::debug!(
                                    "an answer left untaken for send_timeout; connection closed"
                                );
                                return Poll::Ready(Ok(false));
                            }
                            left => sides.arm(left.unwrap_or(writer.send), Purpose::Send),
                        }
                    }
                } else {
                    let _ = sides.poll(cx, false);
                }
                return Poll::Pending;
            }
        }
        if *last || self.asked.method == Method::CONNECT || !self.asked.keep_alive {
            return Poll::Ready(Ok(false));
        }
        // The member answered before it had the whole body (an early 401): the body is still
        // read and handed on until its reader (the pool connection, which sends it on for at
        // most 60 s after the answer, within the body's own time limits) has it all or goes, as
        // hyper's server did, so that the connection can carry the next request.
        if let Some(f) = &mut self.feeding {
            if f.poll(cx, &mut *io, &mut *buf).is_pending() {
                let _ = sides.poll(cx, false);
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(match self.feeding.take() {
            None => true,
            Some(f) => f.drain(buf),
        }))
    }
}

/// Whether a buffer has too little room left for a read.
fn buf_capacity_short(buf: &BytesMut) -> bool {
    buf.capacity() - buf.len() < 1024
}

/// What waiting for a head gave.
// Not boxed: returned once per request, and a box would be an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(Head),
    /// Quiet for long enough: the connection parks.
    Park,
    End(End),
    Refuse(StatusCode),
}

/// What one read gave.
enum Read {
    Bytes,
    Eof,
    Stop,
    Timer,
}

/// The waits beside the socket: the server's stop and the connection's one timer. They are
/// polled only when one of them woke the task ([`Beside`]): most wake-ups are the socket's, and
/// polling a cancellation token and a timer at each cost more than the request's own reads.
struct Sides {
    beside: Arc<Beside>,
    waker: Waker,
    task: Waker,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    timer: Pin<Box<Sleep>>,
    /// What the timer is set for, until it fires: set again only once it has, or for another
    /// purpose (a deadline that moved later is found when it fires early, and looked at
    /// again). It is polled only when the sides' waker was woken (the `Beside` flag).
    armed: Option<Purpose>,
    stopped: bool,
}

/// What the connection's one timer is set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The head's limit, the park, the idle limit: a connection waiting for a request.
    Head,
    /// `send_timeout`: an answer the client does not take.
    Send,
}

enum Side {
    Stop,
    Timer,
}

impl Sides {
    fn new(stop: &tokio_util::sync::CancellationToken) -> Sides {
        let beside = Arc::new(Beside::default());
        // The first look polls the stop, so that it holds the sides' waker.
        beside.woken.store(true, Ordering::Relaxed);
        Sides {
            waker: Waker::from(Arc::clone(&beside)),
            beside,
            task: Waker::noop().clone(),
            stop: Box::pin(stop.clone().cancelled_owned()),
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
            stopped: false,
        }
    }

    /// Whether the timer is set for `purpose`.
    fn armed_for(&self, purpose: Purpose) -> bool {
        self.armed == Some(purpose)
    }

    /// Sets the timer `wait` from now (at most a day: "no limit" is `Duration::MAX`),
    /// registered at once with the sides' waker (so that setting it does not make every later
    /// poll look at the sides).
    fn arm(&mut self, wait: Duration, purpose: Purpose) {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        self.timer.as_mut().reset(Instant::now() + wait.min(DAY));
        self.armed = Some(purpose);
        let mut side_cx = Context::from_waker(&self.waker);
        if self.timer.as_mut().poll(&mut side_cx).is_ready() {
            // Already due: seen at the next look.
            self.beside.woken.store(true, Ordering::Release);
        }
    }

    /// The side that woke the task, if one did. Without `with_timer`, a timer that fired is only
    /// noted as no longer set: the phase that needs it sets it again.
    fn poll(&mut self, cx: &mut Context<'_>, with_timer: bool) -> Option<Side> {
        self.beside.follow(cx.waker(), &mut self.task);
        if !self.beside.woken.swap(false, Ordering::AcqRel) {
            return None;
        }
        let mut side_cx = Context::from_waker(&self.waker);
        if !self.stopped && self.stop.as_mut().poll(&mut side_cx).is_ready() {
            self.stopped = true;
            // The timer may have fired in the same wake: looked at next time.
            self.beside.woken.store(true, Ordering::Release);
            return Some(Side::Stop);
        }
        if self.armed.is_some() && self.timer.as_mut().poll(&mut side_cx).is_ready() {
            self.armed = None;
            if with_timer {
                return Some(Side::Timer);
            }
        }
        None
    }
}

/// Reads a request head off the front of `buf`, as hyper's server reads it: None until it is
/// all there, or the status hyper refuses it with. Its header lines stay where they are
/// (`request::Headers`), names lower-cased in place and checked as `http`'s types check them.
fn parse(buf: &mut BytesMut, spans: &mut Vec<Span>) -> Result<Option<Head>, StatusCode> {
    let bad = StatusCode::BAD_REQUEST;
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let (len, path, minor, method) = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut request, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => {
            let path = request.path.unwrap_or_default();
            if path.len() > MAX_URI {
                return Err(StatusCode::URI_TOO_LONG);
            }
            let start = path.as_ptr() as usize - buf.as_ptr() as usize;
            let method = Method::from_bytes(request.method.unwrap_or_default().as_bytes())
                .map_err(|_| bad)?;
            (
                len,
                start..start + path.len(),
                request.version.unwrap_or(1),
                method,
            )
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        Err(_) => return Err(bad),
    };
    // Where each header's name and value lie in the head.
    let base = buf.as_ptr() as usize;
    spans.clear();
    spans.extend(request.headers.iter().map(|h| {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        [name, name + h.name.len(), value, value + h.value.len()]
    }));
    let mut lines = Vec::with_capacity(spans.len());
    for &[n0, n1, v0, v1] in spans.iter() {
        lines.push(request::Line::read(&mut buf[..len], n0..n1, v0..v1).map_err(|_| bad)?);
    }
    let head = buf.split_to(len).freeze();
    let target = RequestTarget::parse(head.slice(path)).map_err(|_| bad)?;
    let mut headers = request::Headers::new(head, lines);
    let http11 = minor == 1;
    let version = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut keep_alive = http11;
    let mut saw_close = false;
    let mut expect_continue = false;
    let mut length: Option<u64> = None;
    let (mut lengths, mut is_te, mut chunked) = (0usize, false, false);
    for (name, value) in headers.iter() {
        match name {
            b"transfer-encoding" => {
                if !http11 {
                    return Err(bad);
                }
                is_te = true;
                chunked = ends_chunked(value);
            }
            b"content-length" => {
                lengths += 1;
                if is_te {
                    continue;
                }
                let n = content_length(value).ok_or(bad)?;
                if n > MAX_LENGTH {
                    return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                }
                match length {
                    Some(first) if first != n => return Err(bad),
                    _ => length = Some(n),
                }
            }
            // hyper reads its tokens only from a value that is visible ASCII (`to_str`): one
            // with obs-text names neither `close` nor `keep-alive` to it (found by the
            // differential proptest below).
            b"connection" if request::is_visible(value) => {
                if saw_close || has_token(value, b"close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(value, b"keep-alive");
                }
            }
            b"expect" => {
                expect_continue = value.eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }
    if is_te && !chunked {
        return Err(bad);
    }
    // With a Transfer-Encoding no Content-Length line goes on, and of equal ones only the
    // first, as hyper keeps them.
    if is_te && lengths > 0 {
        keep_alive = false;
        headers.remove("content-length");
    } else if lengths > 1 {
        headers.keep_first("content-length");
    }
    // hyper answers `Expect: 100-continue` on HTTP/1.1 only (`Conn::read_head`).
    expect_continue &= http11;
    let framing = if chunked {
        Framing::Chunked
    } else {
        Framing::Length(length.unwrap_or(0))
    };
    Ok(Some(Head {
        request: request::Head {
            method,
            target,
            version,
            headers,
        },
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// hyper's `content_length_parse` for a request's line: decimal digits only, the whole value.
fn content_length(value: &[u8]) -> Option<u64> {
    crate::request::decimal(value)
}

/// The longest body length hyper takes (`DecodedLength::MAX_LEN`); a longer one is refused as
/// too large (431).
const MAX_LENGTH: u64 = u64::MAX - 2;

/// The request's body: whole when it is already read (no sharing, no lock), otherwise fed by
/// the connection.
fn body(buf: &mut BytesMut, framing: Framing, expect: bool) -> (WireBody, Option<Feeding>) {
    match framing {
        Framing::Length(0) => (WireBody::empty(), None),
        Framing::Length(n) if buf.len() as u64 >= n => {
            (WireBody::whole(buf.split_to(n as usize).freeze()), None)
        }
        Framing::Length(n) => {
            let (body, feeding) = fed(Decoder::Length(n), Some(n), expect);
            (body, Some(feeding))
        }
        Framing::Chunked => {
            let mut decoder = Decoder::Chunked(Chunked::Size);
            let mut read = Vec::new();
            let end = loop {
                match decoder.step(buf) {
                    Ok(Step::Data(data)) => read.push(data),
                    Ok(Step::End) => break Some(Ok(())),
                    Ok(Step::More) => break None,
                    Err(broken) => break Some(Err(broken)),
                }
            };
            if end == Some(Ok(())) {
                let whole = match read.len() {
                    0 => Bytes::new(),
                    1 => read.pop().unwrap_or_default(),
                    _ => read.concat().into(),
                };
                return (WireBody::chunked_whole(whole), None);
            }
            let (body, mut feeding) = fed(decoder, None, expect);
            {
                let mut state = feeding.feed.lock();
                state.queue.extend(read);
                if let Some(end) = end {
                    state.finish(end);
                }
            }
            feeding.done = end.is_some();
            feeding.broken = matches!(end, Some(Err(_)));
            (body, Some(feeding))
        }
    }
}

/// A body the connection feeds, read on by `decoder`; `left` is its declared length, if any.
fn fed(decoder: Decoder, left: Option<u64>, expect: bool) -> (WireBody, Feeding) {
    let feed = Arc::new(Feed::default());
    let body = WireBody::Fed {
        feed: Arc::clone(&feed),
        left,
    };
    (body, Feeding::new(feed, decoder, expect))
}

/// How the rest of a fed body is delimited.
#[derive(Debug)]
enum Decoder {
    /// Bytes left.
    Length(u64),
    Chunked(Chunked),
}

impl Decoder {
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Broken> {
        match self {
            Decoder::Length(0) => Ok(Step::End),
            Decoder::Length(_) if buf.is_empty() => Ok(Step::More),
            Decoder::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= n as u64;
                Ok(Step::Data(buf.split_to(n).freeze()))
            }
            Decoder::Chunked(c) => c.step_request(buf).map_err(|e| Broken(e.0)),
        }
    }
}

/// The connection's side of a body that did not come whole with its head.
struct Feeding {
    feed: Arc<Feed>,
    decoder: Decoder,
    /// `Expect: 100-continue` and the interim answer not yet written: written when the body is
    /// first wanted, as hyper writes it.
    continue_left: Option<&'static [u8]>,
    /// The interim answer was written and is not yet flushed.
    continue_flush: bool,
    /// Nothing more to read: the body ended, broke, or its reader went.
    done: bool,
    /// The body's framing broke, or the client went inside it.
    broken: bool,
}

impl Drop for Feeding {
    /// A body the connection stops feeding (it closes, or failed) ends for its reader at once,
    /// as an error, rather than at the reader's own time limit.
    fn drop(&mut self) {
        if !self.done {
            self.feed
                .lock()
                .finish(Err(Broken("the connection closed inside the body")));
        }
    }
}

impl Feeding {
    fn new(feed: Arc<Feed>, decoder: Decoder, expect: bool) -> Feeding {
        Feeding {
            feed,
            decoder,
            continue_left: expect.then_some(b"HTTP/1.1 100 Continue\r\n\r\n".as_slice()),
            continue_flush: false,
            done: false,
            broken: false,
        }
    }

    /// Hands the reader what it wants, reading the socket for it; ready once nothing more will be.
    fn poll<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut T,
        buf: &mut BytesMut,
    ) -> Poll<()> {
        loop {
            if self.done {
                return Poll::Ready(());
            }
            let mut state = self.feed.lock();
            if state.dropped {
                self.done = true;
                return Poll::Ready(());
            }
            if !state.wanted || !state.queue.is_empty() {
                state.park_connection(cx.waker());
                return Poll::Pending;
            }
            match self.decoder.step(buf) {
                Ok(Step::Data(data)) => {
                    state.push(data);
                    continue;
                }
                Ok(Step::End) => {
                    state.finish(Ok(()));
                    self.done = true;
                    return Poll::Ready(());
                }
                Err(broken) => {
                    state.finish(Err(broken));
                    self.done = true;
                    self.broken = true;
                    return Poll::Ready(());
                }
                Ok(Step::More) => {}
            }
            // Woken too if the reader goes while the socket is waited for.
            state.park_connection(cx.waker());
            drop(state);
            while let Some(left) = self.continue_left {
                match Pin::new(&mut *io).poll_write(cx, left) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.continue_left = left.get(n..).filter(|l| !l.is_empty());
                        self.continue_flush = self.continue_left.is_none();
                    }
                    Poll::Ready(_) => return self.fail("the connection failed"),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.continue_flush {
                // A TLS stream keeps the records it could not send yet.
                match Pin::new(&mut *io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.continue_flush = false,
                    Poll::Ready(Err(_)) => return self.fail("the connection failed"),
                    Poll::Pending => return Poll::Pending,
                }
            }
            buf.reserve(READ_SIZE);
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf) {
                Poll::Ready(Ok(0)) => return self.fail("the client closed inside the body"),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(_)) => return self.fail("the connection failed inside the body"),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn fail(&mut self, why: &'static str) -> Poll<()> {
        self.feed.lock().finish(Err(Broken(why)));
        self.done = true;
        self.broken = true;
        Poll::Ready(())
    }

    /// After the answer: whether the body was read to its end, or its rest is already here (and
    /// is skipped), so that the next bytes begin a request.
    fn drain(mut self, buf: &mut BytesMut) -> bool {
        if self.broken {
            return false;
        }
        if self.done && self.feed.lock().end == Some(Ok(())) {
            return true;
        }
        // The reader went before the end: the rest is skipped if it is all here.
        loop {
            match self.decoder.step(buf) {
                Ok(Step::Data(_)) => {}
                Ok(Step::End) => return true,
                Ok(Step::More) | Err(_) => return false,
            }
        }
    }
}

/// What of the request its answer's framing, and the connection after it, depend on.
struct Asked {
    method: Method,
    version: Version,
    keep_alive: bool,
}

/// How an answer's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoder {
    Length(u64),
    Chunked,
    /// Written to the connection's end, which then closes (an HTTP/1.0 client, unknown length).
    Close,
}

impl Encoder {
    fn is_eof(self) -> bool {
        self == Encoder::Length(0)
    }
}

/// Whether an answer to `method` with `status` may carry a body (hyper's `can_chunked`): one that
/// may have a length, and not to HEAD.
fn can_have_body(method: &Method, status: StatusCode) -> bool {
    *method != Method::HEAD && can_have_content_length(method, status)
}

/// Whether such an answer may say its length (hyper's `can_have_content_length`).
fn can_have_content_length(method: &Method, status: StatusCode) -> bool {
    !(status.is_informational()
        || *method == Method::CONNECT && status.is_success()
        || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED))
}

/// Writes the answer's head as hyper's `Server::encode` does; the body's encoder and whether the
/// connection ends after it. Err for an answer hyper would not write (a 1xx status, disagreeing
/// lengths): a 500 and the close instead.
fn encode<B: Body>(
    dst: &mut BytesMut,
    asked: &Asked,
    parts: &mut http::response::Parts,
    body: &B,
) -> Result<(Encoder, bool), ()> {
    #[derive(Clone, Copy, PartialEq)]
    enum Length {
        None,
        Known(u64),
        Unknown,
    }
    let length = if body.is_end_stream() {
        Length::None
    } else {
        body.size_hint()
            .exact()
            .map_or(Length::Unknown, Length::Known)
    };
    let status = parts.status;
    if status.is_informational() {
        return Err(());
    }
    let mut keep_alive = asked.keep_alive;
    let mut version = parts.version;
    // hyper's `enforce_version` and `fix_keep_alive`: an HTTP/1.0 client is answered in
    // HTTP/1.0, told `keep-alive` when the connection stays; an HTTP/1.1 one is told `close`
    // when it does not.
    if asked.version == Version::HTTP_10 {
        let says_keep_alive = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"keep-alive"));
        if !says_keep_alive {
            if version == Version::HTTP_10 {
                keep_alive = false;
            } else if keep_alive {
                parts
                    .headers
                    .append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
            }
        }
        version = Version::HTTP_10;
    } else if !keep_alive {
        let says_close = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"close"));
        if !says_close {
            parts
                .headers
                .append(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    let http10 = version == Version::HTTP_10;
    let mut last = !keep_alive;
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    dst.reserve(64 + parts.headers.len() * 32);
    if !http10 && status == StatusCode::OK && reason.is_none() {
        dst.put_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.put_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
        dst.put_slice(status.as_str().as_bytes());
        dst.put_u8(b' ');
        match reason {
            Some(r) => dst.put_slice(r.as_bytes()),
            None => dst.put_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        dst.put_slice(b"\r\n");
    }
    let chunkable = !http10 && can_have_body(&asked.method, status);
    let mut encoder = Encoder::Length(0);
    let mut wrote_len = false;
    let mut wrote_date = false;
    let mut prev_len: Option<u64> = None;
    let mut current: Option<HeaderName> = None;
    // The name whose line is open (values joined with ", "), and whether it needs ", chunked".
    let mut open = false;
    let mut add_chunked = false;
    let close_line = |dst: &mut BytesMut, open: &mut bool, add_chunked: bool| {
        if *open {
            dst.put_slice(if add_chunked {
                b", chunked\r\n"
            } else {
                b"\r\n"
            });
            *open = false;
        }
    };
    for (name, value) in parts.headers.drain() {
        if let Some(n) = name {
            close_line(dst, &mut open, add_chunked);
            add_chunked = false;
            current = Some(n);
        }
        let Some(name) = current.as_ref() else {
            continue;
        };
        match *name {
            header::CONTENT_LENGTH => {
                if wrote_len && !open {
                    return Err(());
                }
                match length {
                    Length::Known(n) => {
                        if !open {
                            encoder = Encoder::Length(n);
                            dst.put_slice(b"content-length: ");
                            dst.put_slice(value.as_bytes());
                            wrote_len = true;
                            open = true;
                        }
                        continue;
                    }
                    Length::Unknown => {
                        let n = content_length(value.as_bytes()).ok_or(())?;
                        if let Some(prev) = prev_len {
                            if prev != n {
                                return Err(());
                            }
                            continue;
                        }
                        encoder = Encoder::Length(n);
                        dst.put_slice(b"content-length: ");
                        dst.put_slice(value.as_bytes());
                        wrote_len = true;
                        open = true;
                        prev_len = Some(n);
                        continue;
                    }
                    Length::None => {
                        if asked.method != Method::HEAD {
                            continue;
                        }
                    }
                }
                wrote_len = true;
            }
            header::TRANSFER_ENCODING => {
                if wrote_len && !open {
                    return Err(());
                }
                if !chunkable {
                    continue;
                }
                wrote_len = true;
                add_chunked = !ends_chunked(value.as_bytes());
                if open {
                    dst.put_slice(b", ");
                } else {
                    encoder = Encoder::Chunked;
                    open = true;
                    dst.put_slice(b"transfer-encoding: ");
                }
                dst.put_slice(value.as_bytes());
                continue;
            }
            header::CONNECTION => {
                if !last && has_token(value.as_bytes(), b"close") {
                    last = true;
                }
                if open {
                    dst.put_slice(b", ");
                } else {
                    open = true;
                    dst.put_slice(b"connection: ");
                }
                dst.put_slice(value.as_bytes());
                continue;
            }
            header::DATE => wrote_date = true,
            header::TRAILER => {
                if !chunkable {
                    continue;
                }
                if open {
                    dst.put_slice(b", ");
                } else {
                    open = true;
                    dst.put_slice(b"trailer: ");
                }
                dst.put_slice(value.as_bytes());
                continue;
            }
            _ => {}
        }
        dst.put_slice(name.as_str().as_bytes());
        dst.put_slice(b": ");
        dst.put_slice(value.as_bytes());
        dst.put_slice(b"\r\n");
    }
    close_line(dst, &mut open, add_chunked);
    if !wrote_len {
        encoder = match length {
            Length::Unknown if !chunkable => Encoder::Close,
            Length::Unknown => {
                dst.put_slice(b"transfer-encoding: chunked\r\n");
                Encoder::Chunked
            }
            Length::None | Length::Known(0) => {
                if can_have_content_length(&asked.method, status) && asked.method != Method::HEAD {
                    dst.put_slice(b"content-length: 0\r\n");
                }
                Encoder::Length(0)
            }
            Length::Known(n) if !can_have_content_length(&asked.method, status) => {
                let _ = n;
                Encoder::Length(0)
            }
            Length::Known(n) => {
                dst.put_slice(b"content-length: ");
                dst.put_slice(itoa::Buffer::new().format(n).as_bytes());
                dst.put_slice(b"\r\n");
                Encoder::Length(n)
            }
        };
    }
    if !can_have_body(&asked.method, status) {
        encoder = Encoder::Length(0);
    }
    if !wrote_date {
        dst.put_slice(b"date: ");
        date(dst);
        dst.put_slice(b"\r\n");
    }
    dst.put_slice(b"\r\n");
    if encoder == Encoder::Close {
        last = true;
    }
    Ok((encoder, last))
}

/// hyper's answer to a head it cannot read: the status, `Connection: close` (its keep-alive is
/// off), an empty body, the date; then the close.
fn write_refusal(dst: &mut BytesMut, status: StatusCode) {
    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    dst.put_slice(b"\r\nconnection: close\r\ncontent-length: 0\r\ndate: ");
    date(dst);
    dst.put_slice(b"\r\n\r\n");
}

/// The current date as an HTTP-date, formatted once a second per thread (as hyper caches it).
fn date(dst: &mut BytesMut) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == text.len() {
                text.copy_from_slice(formatted.as_bytes());
                *at = secs;
            }
        }
        dst.put_slice(&text[..]);
    });
}

/// Writes one answer: its head, then its body as the encoder frames it, gathering what is ready
/// into one write.
struct Writer<B> {
    out: BytesMut,
    encoder: Encoder,
    body: Option<B>,
    done: bool,
    /// When the client last stopped taking bytes, if it has not taken any since.
    blocked_since: Option<Instant>,
    send: Duration,
}

impl<B> Writer<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Flushes, counting a flush the client does not take (a TLS stream's queued records) as
    /// blocked, as a write is.
    fn flush<T: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut T,
    ) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut *io).poll_flush(cx);
        if flushed.is_pending() {
            self.blocked_since.get_or_insert_with(Instant::now);
        } else {
            self.blocked_since = None;
        }
        flushed
    }

    /// How long the client has left to take bytes before `send_timeout` closes the connection;
    /// None while it takes them.
    fn stall_left(&self) -> Option<Duration> {
        self.blocked_since
            .map(|at| self.send.saturating_sub(at.elapsed()))
    }

    fn poll<T: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut T,
    ) -> Poll<io::Result<()>> {
        loop {
            while !self.out.is_empty() {
                match Pin::new(&mut *io).poll_write(cx, &self.out) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.out.advance(n);
                        self.blocked_since = None;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        self.blocked_since.get_or_insert_with(Instant::now);
                        return Poll::Pending;
                    }
                }
            }
            if self.done {
                return self.flush(cx, io);
            }
            // Gathers what the body has ready.
            let Some(mut body) = self.body.take() else {
                self.done = true;
                continue;
            };
            let gathered = loop {
                match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        let Ok(data) = frame.into_data() else {
                            continue; // trailers are not written
                        };
                        put(&mut self.out, &mut self.encoder, &data)?;
                        if self.out.len() >= WRITE_BATCH {
                            break true;
                        }
                    }
                    Poll::Ready(None) => {
                        finish(&mut self.out, self.encoder)?;
                        self.done = true;
                        break true;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        let e: BoxError = e.into();
                        return Poll::Ready(Err(io::Error::other(e)));
                    }
                    Poll::Pending => break !self.out.is_empty(),
                }
            };
            if !self.done {
                self.body = Some(body);
            }
            if !gathered {
                // Flushes what was written (a TLS stream's records), then waits for the body.
                return match self.flush(cx, io) {
                    Poll::Ready(Ok(())) => Poll::Pending,
                    other => other,
                };
            }
        }
    }
}

/// Frames one piece of an answer's body.
fn put(out: &mut BytesMut, encoder: &mut Encoder, data: &Bytes) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    match encoder {
        Encoder::Length(left) => {
            let n = data.len() as u64;
            if n > *left {
                return Err(io::Error::other("an answer longer than its length"));
            }
            *left -= n;
            out.put_slice(data);
        }
        Encoder::Chunked => {
            let mut size = [0u8; 16];
            let hex = hex(data.len(), &mut size);
            out.reserve(hex.len() + data.len() + 4);
            out.put_slice(hex);
            out.put_slice(b"\r\n");
            out.put_slice(data);
            out.put_slice(b"\r\n");
        }
        Encoder::Close => out.put_slice(data),
    }
    Ok(())
}

/// An answer's body's end.
fn finish(out: &mut BytesMut, encoder: Encoder) -> io::Result<()> {
    match encoder {
        Encoder::Length(0) | Encoder::Close => Ok(()),
        Encoder::Length(_) => Err(io::Error::other("an answer shorter than its length")),
        Encoder::Chunked => {
            out.put_slice(b"0\r\n\r\n");
            Ok(())
        }
    }
}

fn hex(mut n: usize, out: &mut [u8; 16]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b"0123456789ABCDEF"[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &out[i..];
        }
    }
}

#[cfg(test)]
mod tests;
