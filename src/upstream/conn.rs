//! One connection to a member and one exchange on it, polled in the request's own task (no task,
//! no channel per connection): connect (TCP_NODELAY, `connect_timeout`, TLS with ALPN
//! `http/1.1`), write the request head and body, read the answer's head, and stream its body
//! ([`MemberBody`]), which gives the connection back to its member's idle list only when the
//! exchange ended exactly and cleanly.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use http::{HeaderValue, Method};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::connections::Open;
use super::h1::{self, Chunked, Framing, Head, Malformed, Sending, Step};
use super::idle::Idle;
use crate::body::{BodyError, UpstreamBody};
use crate::forwarding;
use crate::metrics::ConnectionCounts;
use crate::request::Headers;

/// The buffer a request head is written from and its answer's head read into: small, grown (in
/// `READ` steps) only for a larger head or a body, let go while the answer has not begun (a held
/// long poll keeps none), and given back by a connection going idle with more than twice this.
const HEAD: usize = 1024;
/// What a read of an answer's body reserves when the buffer is (nearly) full.
const READ: usize = 4 * 1024;
/// A buffered body up to this is written with the head, in one write.
const WITH_HEAD: usize = 16 * 1024;

/// Why an exchange failed, so that [`super::classify`] can say who failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("TLS handshake: {0}")]
    Tls(#[source] io::Error),
    /// The client's body broke while it was streamed.
    #[error("request body: {0}")]
    Body(#[source] BodyError),
    #[error("request body of {sent} bytes where {declared} were declared")]
    BodyLength { sent: u64, declared: u64 },
    #[error("sending the request: {0}")]
    Send(#[source] io::Error),
    #[error("reading the answer: {0}")]
    Read(#[source] io::Error),
    #[error("the member closed the connection before a whole answer head")]
    Closed,
    #[error("the member closed the connection inside the answer's body")]
    Truncated,
    #[error(transparent)]
    Malformed(#[from] Malformed),
}

/// TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    /// Boxed: rustls' connection state is ~1 KiB.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Where a member is and how to reach it.
pub struct Target {
    pub host: Box<str>,
    pub port: u16,
    /// For an `https://` member.
    pub tls: Option<(
        tokio_rustls::TlsConnector,
        Option<rustls_pki_types::ServerName<'static>>,
    )>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A connection to a member, counted open until dropped.
pub struct Conn {
    stream: Stream,
    /// Read buffer; between exchanges empty, and the request head is written from it.
    buf: BytesMut,
    reader: h1::Reader,
    /// Whether it served an exchange before (it came from the idle list).
    pub reused: bool,
    /// A request body still being sent.
    pump: Option<Box<Pump>>,
    _open: Open,
}

impl Conn {
    /// Connects within `timeout` (to the first address that takes it), then the TLS handshake.
    pub async fn connect(
        target: &Target,
        timeout: Duration,
        counts: &Arc<ConnectionCounts>,
    ) -> Result<Conn, Error> {
        let host = target.host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::time::timeout(timeout, async {
            let mut last = None;
            for addr in tokio::net::lookup_host((host, target.port))
                .await
                .map_err(Error::Connect)?
            {
                match TcpStream::connect(addr).await {
                    Ok(tcp) => return Ok(tcp),
                    Err(e) => last = Some(e),
                }
            }
            Err(Error::Connect(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "no address for the member")
            })))
        })
        .await
        .map_err(|_| Error::ConnectTimeout(timeout))??;
        tcp.set_nodelay(true).map_err(Error::Connect)?;
        let open = Open::new(counts);
        let stream = match &target.tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => {
                let name = match name {
                    Some(name) => name.clone(),
                    None => rustls_pki_types::ServerName::try_from(host.to_owned())
                        .map_err(|e| Error::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?,
                };
                // The handshake has its own `timeout`, as nginx's `proxy_connect_timeout` bounds
                // its SSL handshake: a member that takes the connection and never answers the
                // ClientHello held a request until `response_timeout` (960 s by default), and
                // it was not retried (fresh eyes, round 28).
                let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| {
                        Error::Tls(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no TLS handshake within {timeout:?}"),
                        ))
                    })?
                    .map_err(Error::Tls)?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
            reader: h1::Reader::default(),
            reused: false,
            pump: None,
            _open: open,
        })
    }

    /// Whether an idle connection may carry an exchange: nothing left in its buffers, and the
    /// socket neither closed by the member nor holding bytes nobody asked for.
    ///
    /// The socket is asked in two steps. First the reactor: the last read of the answer drained
    /// the socket (tokio clears a socket's read readiness after a read that did not fill its
    /// buffer, or one that would block), so while the reactor has had no event for it since,
    /// nothing has arrived, not even the member's FIN, and no system call is needed. This is
    /// what hyper's pooled client knew too, from its connection task's pending read, and it has
    /// the same blind spot: a FIN that reached the kernel but not yet the reactor. Only when the
    /// reactor says readable (or cannot tell) is the socket itself asked, by a zero-timeout peek.
    pub fn is_clean(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        if let Stream::Tls(tls) = &mut self.stream {
            let mut byte = [0u8; 1];
            match io::Read::read(&mut tls.get_mut().1.reader(), &mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => return false,
            }
        }
        let mut quiet = Context::from_waker(std::task::Waker::noop());
        if self.stream.tcp().poll_read_ready(&mut quiet).is_pending() {
            return true;
        }
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        matches!(
            socket2::SockRef::from(self.stream.tcp()).peek(&mut byte),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Sends the request `out` holds and reads the answer's head. A streamed body is sent while
    /// the answer is awaited, and after it if the member answers first, as hyper's client did.
    /// A plain function that returns its future: an async one keeps its arguments twice in it,
    /// as they came and as moved into its body (issue 16).
    #[allow(clippy::manual_async_fn)]
    pub fn exchange<'a>(
        &'a mut self,
        method: &'a Method,
        out: &'a mut Outgoing,
    ) -> impl std::future::Future<Output = Result<(Head, bool), Error>> + Send + 'a {
        async move {
            // A new connection takes the buffer its first request was written into.
            if out.buf.capacity() != 0 {
                self.buf = std::mem::take(&mut out.buf);
            }
            match out.pump.take() {
                None => {
                    self.stream
                        .write_all(&self.buf)
                        .await
                        .map_err(Error::Send)?;
                    self.stream.flush().await.map_err(Error::Send)?;
                    self.buf.clear();
                }
                Some(mut pump) => {
                    // The body's first bytes go with the head, if they are there; if they are
                    // broken, nothing at all is sent (as with hyper, whose head waited in its buffer).
                    let first = std::future::poll_fn(|cx| {
                        Poll::Ready(Pin::new(&mut pump.body).poll_frame(cx))
                    })
                    .await;
                    match first {
                        Poll::Ready(Some(Ok(frame))) => {
                            if let Ok(data) = frame.into_data() {
                                pump.frame(&data)?;
                            }
                        }
                        Poll::Ready(Some(Err(e))) => return Err(Error::Body(e)),
                        Poll::Ready(None) => pump.end()?,
                        Poll::Pending => {}
                    }
                    self.pump = Some(pump);
                }
            }
            loop {
                if let Some(head) = self.reader.read_head(&mut self.buf, method)? {
                    return Ok((head, out.closes));
                }
                let read = std::future::poll_fn(|cx| {
                    if let Err(e) = ready!(self.poll_pump(cx)) {
                        return Poll::Ready(Err(e));
                    }
                    let read = self.poll_fill(cx).map_err(Error::Read);
                    if read.is_pending() && self.buf.is_empty() {
                        // Nothing of the answer yet: while the member thinks (a held long poll's
                        // minutes) the connection keeps no buffer, and `poll_fill` makes room
                        // again once the socket is readable; nginx, too, allocates its upstream
                        // buffer when the answer starts (issue 16).
                        self.buf = BytesMut::new();
                    }
                    read
                })
                .await;
                match read {
                    Ok(0) => return Err(Error::Closed),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Sends what it can of a streamed request body: `Ready(Err)` if that failed, else
    /// `Ready(Ok)` (whether it is all sent or waits for the body or the socket).
    fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let Some(pump) = self.pump.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match pump.poll(&mut self.stream, cx) {
            Poll::Ready(result) => {
                self.pump = None;
                Poll::Ready(result)
            }
            Poll::Pending => Poll::Ready(Ok(())),
        }
    }

    /// Reads what is there into the buffer (0 at the end of the stream).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() == 0 {
            // No room is made before there is something to read (see `exchange`).
            ready!(self.stream.tcp().poll_read_ready(cx))?;
            self.buf.reserve(HEAD);
        } else if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(READ);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }

    /// Ready for the idle list: an over-grown buffer is given back.
    pub fn rest(&mut self) {
        if self.buf.capacity() > 2 * HEAD {
            self.buf = BytesMut::new();
        }
    }
}

/// A request written for one exchange: its head (and a small body held in memory) in the buffer
/// it goes out from, or a streamed body still to pump. Written before the exchange is awaited, so
/// that the futures carrying the request across the wait for the answer (a held long poll's, for
/// minutes) hold this, not the target, headers and body it was written from (issue 16).
pub struct Outgoing {
    /// The head, when it was written for a new connection (an idle one's own buffer has it).
    buf: BytesMut,
    pump: Option<Box<Pump>>,
    /// Either side said the connection closes after this exchange.
    closes: bool,
}

impl Outgoing {
    /// The body, when it is sent after the head (a streamed body, or a large one held in
    /// memory), for a request none of which was written: its connection was never made.
    pub fn into_streamed_body(self) -> Option<UpstreamBody> {
        self.pump.map(|pump| pump.body)
    }

    /// Frames the request and writes its head into the buffer of `conn`, an idle connection, or
    /// into one of its own for a new connection (`None`). `target` and `headers` are dropped
    /// once written, and a body held in memory once copied after the head.
    pub fn write(
        conn: Option<&mut Conn>,
        method: &Method,
        target: ByteString,
        mut headers: Headers,
        forwarded: Option<(&forwarding::Lines, &HeaderValue)>,
        body: UpstreamBody,
    ) -> Outgoing {
        let sending =
            h1::request_framing(&mut headers, body.is_end_stream(), body.size_hint().exact());
        let closes = h1::request_closes(&headers);
        let mut own = BytesMut::new();
        let buf = match conn {
            Some(conn) => &mut conn.buf,
            None => &mut own,
        };
        buf.clear();
        if buf.capacity() < HEAD {
            buf.reserve(HEAD);
        }
        let small = match &body {
            UpstreamBody::Empty => true,
            UpstreamBody::Buffered(Some(bytes)) => {
                bytes.len() <= WITH_HEAD && sending == Sending::Length(bytes.len() as u64)
            }
            _ => false,
        };
        let pump = if small {
            h1::write_head(buf, method, &target, &headers, forwarded);
            if let UpstreamBody::Buffered(Some(bytes)) = &body {
                buf.extend_from_slice(bytes);
            }
            None
        } else {
            let mut pump = Box::new(Pump {
                body,
                sending,
                sent: 0,
                out: BytesMut::new(),
                done: false,
            });
            h1::write_head(&mut pump.out, method, &target, &headers, forwarded);
            Some(pump)
        };
        Outgoing {
            buf: own,
            pump,
            closes,
        }
    }
}

/// A request body being sent, framed as its head said.
struct Pump {
    body: UpstreamBody,
    sending: Sending,
    sent: u64,
    /// Framed bytes not yet written.
    out: BytesMut,
    /// The body ended (its last bytes may still be in `out`).
    done: bool,
}

impl Pump {
    fn frame(&mut self, data: &Bytes) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        self.sent += data.len() as u64;
        match self.sending {
            Sending::Length(declared) if self.sent > declared => Err(Error::BodyLength {
                sent: self.sent,
                declared,
            }),
            Sending::Length(_) => {
                self.out.extend_from_slice(data);
                Ok(())
            }
            Sending::Chunked => {
                use std::fmt::Write;
                let _ = write!(self.out, "{:X}\r\n", data.len());
                self.out.extend_from_slice(data);
                self.out.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }

    fn end(&mut self) -> Result<(), Error> {
        self.done = true;
        match self.sending {
            Sending::Length(declared) if self.sent != declared => Err(Error::BodyLength {
                sent: self.sent,
                declared,
            }),
            Sending::Length(_) => Ok(()),
            Sending::Chunked => {
                self.out.extend_from_slice(b"0\r\n\r\n");
                Ok(())
            }
        }
    }

    /// Writes what is framed, then takes the body's next frame; `Ready(Ok)` once all is sent
    /// and flushed.
    fn poll(&mut self, stream: &mut Stream, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if !self.out.is_empty() {
                let n = ready!(Pin::new(&mut *stream).poll_write(cx, &self.out))
                    .map_err(Error::Send)?;
                if n == 0 {
                    return Poll::Ready(Err(Error::Send(io::ErrorKind::WriteZero.into())));
                }
                bytes::Buf::advance(&mut self.out, n);
                continue;
            }
            // Written out: flushed before the body's next bytes are awaited.
            ready!(Pin::new(&mut *stream).poll_flush(cx)).map_err(Error::Send)?;
            if self.done {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.frame(&data)?;
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(Error::Body(e))),
                None => self.end()?,
            }
        }
    }
}

/// How long a request body the member no longer waits for (it answered first) may take to be
/// sent after the answer was read; the connection is not reused after it.
const AFTER_ANSWER: Duration = Duration::from_secs(60);

/// Where a connection goes back to.
pub struct Home {
    pub idle: Arc<Idle>,
    pub member: usize,
}

/// A member's answer body, read off its connection as the client takes it.
pub struct MemberBody {
    conn: Option<Conn>,
    reading: Reading,
    /// `None` when the connection must not be reused (either side said close, or the body is
    /// close-delimited).
    home: Option<Home>,
    /// Something was handed on (the head, or data) since the body last waited: hyper holds it
    /// unsent, and drops it if the body fails now.
    gave: bool,
    /// A failure found right after something was handed on, kept for the next poll.
    failed: Option<Error>,
}

enum Reading {
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
}

impl MemberBody {
    /// The body after `head`; a body that is already over gives the connection back at once.
    pub fn new(conn: Conn, framing: Framing, home: Option<Home>) -> MemberBody {
        let reading = match framing {
            Framing::Empty => Reading::Done,
            Framing::Length(n) => Reading::Length(n),
            Framing::Chunked => Reading::Chunked(Chunked::Size),
            Framing::Close => Reading::Close,
        };
        let mut body = MemberBody {
            conn: Some(conn),
            reading,
            home,
            gave: true,
            failed: None,
        };
        if matches!(body.reading, Reading::Done) {
            body.finish();
        }
        body
    }

    /// The answer was read to its exact end: the connection goes back to the idle list if it
    /// may, and nothing is left over in its buffer.
    fn finish(&mut self) {
        self.reading = Reading::Done;
        if let Some(mut conn) = self.conn.take_if(|c| c.pump.is_some()) {
            // The member answered before the request body was all sent: it is sent still (the
            // client's body is read to its end, as hyper did), then the connection closed.
            self.home = None;
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            runtime.spawn(async move {
                let sent = std::future::poll_fn(|cx| match conn.poll_pump(cx) {
                    Poll::Ready(Ok(())) if conn.pump.is_some() => Poll::Pending,
                    other => other,
                });
                let _ = tokio::time::timeout(AFTER_ANSWER, sent).await;
            });
            return;
        }
        if let (Some(mut conn), Some(home)) = (self.conn.take(), self.home.take()) {
            if conn.buf.is_empty() {
                conn.rest();
                home.idle.put(home.member, conn);
            }
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.reading = Reading::Done;
        self.conn = None;
        self.home = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Drop for MemberBody {
    /// An answer dropped unread whose rest is already in the buffer (a health probe's, or one
    /// whose client went just before its last bytes) is read off, so that its connection serves
    /// again, as hyper's client drained one; anything less is closed.
    fn drop(&mut self) {
        let (Some(conn), Some(_)) = (self.conn.as_mut(), self.home.as_ref()) else {
            return;
        };
        let ended = match &mut self.reading {
            Reading::Length(left) if conn.buf.len() as u64 == *left => {
                conn.buf.clear();
                true
            }
            Reading::Chunked(state) => loop {
                match state.step(&mut conn.buf) {
                    Ok(Step::Data(_)) => {}
                    Ok(Step::End) => break true,
                    Ok(Step::More) | Err(_) => break false,
                }
            },
            _ => false,
        };
        if ended {
            self.finish();
        }
    }
}

impl Body for MemberBody {
    type Data = Bytes;
    type Error = Error;

    /// A member that cuts its answer short (a Content-Length not reached, a chunked body
    /// without its end): the client gets the head and the bytes that came, then the connection's
    /// end, as with hyper's client. hyper's server drops what it holds unsent when a body fails,
    /// so a failure right after something was handed on waits for one poll: hyper writes what
    /// it has while the body is pending.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match this.poll_next(cx) {
            Poll::Ready(Some(Err(error))) if this.gave => {
                this.gave = false;
                this.failed = Some(error);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => {
                this.gave = false;
                Poll::Pending
            }
            polled => {
                this.gave = true;
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && matches!(self.reading, Reading::Done | Reading::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Done if self.failed.is_none() => SizeHint::with_exact(0),
            Reading::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl MemberBody {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if let Poll::Ready(Err(_)) = conn.poll_pump(cx) {
                // The rest of the request body could not be sent: the answer is read on, but
                // the connection is not reused.
                this.home = None;
            }
            match &mut this.reading {
                Reading::Done => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Reading::Length(left) => {
                    if !conn.buf.is_empty() {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        let data = conn.buf.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Reading::Chunked(state) => match state.step(&mut conn.buf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::More) => {}
                    Err(e) => return this.fail(e.into()),
                },
                Reading::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.reading, Reading::Close) => {
                    this.reading = Reading::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(Error::Truncated),
                Ok(_) => {}
                Err(e) => return this.fail(Error::Read(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;

    /// A TLS member on loopback (rustls, TLS 1.3 with its session tickets) that answers every
    /// request head with `answer`; and the target that reaches it.
    async fn tls_member(answer: &'static [u8]) -> Target {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if tls.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Target {
            host: "127.0.0.1".into(),
            port,
            tls: Some((
                tokio_rustls::TlsConnector::from(Arc::new(client)),
                Some(rustls_pki_types::ServerName::try_from("localhost").unwrap()),
            )),
        }
    }

    /// A body-less GET of `path` written for `conn`, an idle connection.
    fn get(conn: &mut Conn, path: &'static str) -> Outgoing {
        Outgoing::write(
            Some(conn),
            &Method::GET,
            ByteString::from_static(path),
            Headers::default(),
            None,
            UpstreamBody::Empty,
        )
    }

    /// While the member has not begun its answer (a held long poll), the connection keeps no
    /// buffer; the answer is read once it comes.
    #[tokio::test]
    async fn no_buffer_is_kept_while_the_answer_has_not_begun() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target {
            host: "127.0.0.1".into(),
            port: listener.local_addr().unwrap().port(),
            tls: None,
        };
        let counts = Arc::new(ConnectionCounts::default());
        let mut conn = Conn::connect(&target, Duration::from_secs(5), &counts)
            .await
            .unwrap();
        let (mut member, _) = listener.accept().await.unwrap();
        let mut out = get(&mut conn, "/events");
        let mut exchange = Box::pin(conn.exchange(&Method::GET, &mut out));
        // The request goes out, then the exchange waits.
        let mut head = [0u8; 256];
        tokio::select! {
            _ = &mut exchange => panic!("no answer was sent"),
            n = member.read(&mut head) => assert!(n.unwrap() > 0),
        }
        tokio::select! {
            _ = &mut exchange => panic!("no answer was sent"),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        drop(exchange);
        assert_eq!(conn.buf.capacity(), 0, "a waiting exchange keeps no buffer");
        let mut exchange = Box::pin(conn.exchange(&Method::GET, &mut out));
        tokio::select! {
            _ = &mut exchange => panic!("no answer was sent"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        member
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .expect("the answer is read once it comes")
            .unwrap();
        assert_eq!(head.status, 200);
    }

    /// Over TLS, an answer read to its end leaves nothing behind (session tickets are read with
    /// the answer), so the connection is clean and serves the next exchange.
    #[tokio::test]
    async fn a_tls_connection_is_reused() {
        let target = tls_member(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let counts = Arc::new(ConnectionCounts::default());
        let idle = Arc::new(Idle::new(1, 4, Duration::from_secs(60)));
        let mut conn = Conn::connect(&target, Duration::from_secs(5), &counts)
            .await
            .unwrap();
        for round in 0..3 {
            let mut out = get(&mut conn, "/a");
            let (head, closes) = conn.exchange(&Method::GET, &mut out).await.unwrap();
            assert!(head.keep_alive && !closes);
            let home = Home {
                idle: Arc::clone(&idle),
                member: 0,
            };
            let body = MemberBody::new(conn, head.framing, Some(home));
            let bytes = body.collect().await.unwrap().to_bytes();
            assert_eq!(&bytes[..], b"ok");
            // Time for anything the member sends unasked to arrive.
            tokio::time::sleep(Duration::from_millis(20)).await;
            conn = idle
                .take(0)
                .unwrap_or_else(|| panic!("round {round}: not reused"));
            assert!(conn.reused);
        }
        assert_eq!(counts.snapshot().0, 1);
    }
}
