//! The client-facing listeners and the admin endpoint: bind, accept (bounded by
//! `max_connections`), TLS, hyper's HTTP/1.1 + HTTP/2 connection, and a graceful drain.
//! Idle HTTP/1.1 connections park without their HTTP state ([`park`]).

mod bind;
mod park;
mod proxy_protocol;
mod stall;

pub use stall::BodyError;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use prometheus::{IntCounter, IntGauge};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin;
use crate::config::{Config, ServerSettings};
use crate::gateway::{Connection, Gateway, ResponseBody};
use crate::metrics::Metrics;
use crate::notify;
use crate::preflight::{self, Prepared, Unprepared};
use crate::state::Shared;
use crate::tls::TlsError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A file the configuration names (certificate, key, CA, audit file) cannot be used.
    #[error(transparent)]
    Unprepared(#[from] Unprepared),
    #[error("upstream TLS")]
    Tls(#[from] TlsError),
}

/// A running ringfence: its listeners, admin endpoint and shared state.
pub struct Server {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    admin_addr: SocketAddr,
    stop: CancellationToken,
    admin_stop: CancellationToken,
    connections: TaskTracker,
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl Server {
    /// Binds every listener and starts serving. `config_path` is what a reload re-reads.
    pub async fn start(config: Config, config_path: Option<PathBuf>) -> Result<Server, StartError> {
        let server_config = config.server.clone();
        let admin_listen = config.admin.listen;
        let Prepared {
            server_tls,
            audit,
            access,
        } = preflight::prepare(&config)?;
        let certificate = server_tls.as_ref().map(|t| Arc::clone(&t.certificate));
        let shared = Shared::new(
            config,
            config_path,
            Metrics::new(),
            (audit, access),
            certificate,
        )?;
        let acceptor = server_tls.map(|t| TlsAcceptor::from(t.config));
        // An IPv6 wildcard may be skipped on a host without IPv6 (see `bind`).
        let listeners = bind::bind_all(&server_config.listen)?;
        let admin_listener = bind::bind(admin_listen).map_err(|source| StartError::Bind {
            addr: admin_listen,
            source,
        })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: admin_listen,
                source,
            })?;

        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let http = Arc::new(http_builders(&server_config));
        let permits = Arc::new(Semaphore::new(server_config.max_connections));
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for (configured, listener) in listeners {
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                addr: configured,
                source,
            })?;
            addrs.push(addr);
            let label = addr.to_string();
            let proxy_header = server_config.expects_proxy_header(configured).then(|| {
                shared
                    .metrics
                    .proxy_protocol_errors
                    .with_label_values(&[&label])
            });
            let accept = Accept {
                shared: Arc::clone(&shared),
                acceptor: acceptor.clone(),
                http: Arc::clone(&http),
                permits: Arc::clone(&permits),
                handshake_timeout: server_config.header_read_timeout,
                idle_timeout: server_config.idle_timeout,
                body_read_timeout: server_config.body_read_timeout,
                body_deadline: server_config.body_deadline,
                send_timeout: server_config.send_timeout,
                label,
                proxy_header,
                connections: connections.clone(),
            };
            tasks.push(tokio::spawn(accept.run(listener, stop.clone())));
        }
        // The admin listener outlives the drain, so /ready answers 503 and metrics stay scrapable.
        let admin_stop = CancellationToken::new();
        tasks.push(tokio::spawn(admin::serve(
            admin_listener,
            Arc::clone(&shared),
            admin_stop.clone(),
        )));
        tracing::info!(listen = ?addrs, admin = %admin_addr, tls = acceptor.is_some(), "ringfence is serving");
        shared.watch_certificate();
        notify::ready();
        Ok(Server {
            shared,
            addrs,
            admin_addr,
            stop,
            connections,
            tasks,
            admin_stop,
            grace: server_config.shutdown_grace,
        })
    }

    /// The bound client-facing addresses (useful with port 0).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, turns `/ready` to 503, lets in-flight requests finish within the grace
    /// period, then returns what the drain had to cut when the grace period ran out first.
    pub async fn shutdown(self) -> Drain {
        notify::stopping();
        self.shared.start_draining();
        self.stop.cancel();
        self.connections.close();
        let drained = tokio::time::timeout(self.grace, self.connections.wait())
            .await
            .is_ok();
        let drain = if drained {
            Drain::default()
        } else {
            Drain {
                connections: self.connections.len(),
                requests: self.shared.metrics.requests_in_flight.get().max(0) as u64,
            }
        };
        self.admin_stop.cancel();
        for t in self.tasks {
            t.abort();
        }
        flush_trails(&self.shared).await;
        drain
    }
}

/// How long shutdown waits for the trails' queues to be written out.
const TRAIL_FLUSH: Duration = Duration::from_secs(5);

/// Writes out what the audit trail and the access log still hold (SPEC §9: shutdown flushes the
/// queue before exit); says how many lines could not be.
async fn flush_trails(shared: &Arc<Shared>) {
    let shared = Arc::clone(shared);
    let left = tokio::task::spawn_blocking(move || {
        (
            shared.audit.flush(TRAIL_FLUSH),
            shared.access.flush(TRAIL_FLUSH),
        )
    })
    .await
    .unwrap_or_default();
    if left != (0, 0) {
        tracing::error!(
            audit_lines = left.0,
            access_lines = left.1,
            "the sink did not take every line before exit; these are lost"
        );
    }
}

/// What a drain left unfinished when `shutdown_grace` ran out: those requests were cut.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    pub connections: usize,
    pub requests: u64,
}

impl Drain {
    /// Whether every connection finished within the grace period.
    pub fn clean(&self) -> bool {
        self.connections == 0
    }
}

/// The HTTP/1.1 and HTTP/2 connection settings (the auto builder serves h2 and TLS clients that
/// named no ALPN protocol; known HTTP/1.1 connections use `http1` directly, so they can park).
struct Http {
    auto: auto::Builder<TokioExecutor>,
    http1: http1::Builder,
    http2: bool,
}

/// hyper's read buffer cap, for both HTTP/1.1 servers (the auto builder's and the parkable one).
const MAX_HTTP1_BUF: usize = 64 * 1024;

fn http_builders(config: &ServerSettings) -> Http {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_HTTP1_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(config.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    let auto = if config.http2 {
        builder
    } else {
        builder.http1_only()
    };
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_HTTP1_BUF);
    Http {
        auto,
        http1,
        http2: config.http2,
    }
}

/// Connections refused at `max_connections` since the last log line: under a flood one line per
/// [`Refusals::EVERY`] says how many, instead of one per connection
/// (`ringfence_connections_refused_total` counts each).
#[derive(Default)]
struct Refusals {
    since_line: u64,
    last_line: Option<tokio::time::Instant>,
}

impl Refusals {
    const EVERY: Duration = Duration::from_secs(10);

    /// Counts one refusal; returns how many to log when a line is due.
    fn note(&mut self, now: tokio::time::Instant) -> Option<u64> {
        self.since_line += 1;
        let due = self
            .last_line
            .is_none_or(|last| now.duration_since(last) >= Self::EVERY);
        due.then(|| {
            self.last_line = Some(now);
            std::mem::take(&mut self.since_line)
        })
    }
}

struct Accept {
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    http: Arc<Http>,
    permits: Arc<Semaphore>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    body_read_timeout: Duration,
    body_deadline: Duration,
    send_timeout: Duration,
    label: String,
    /// On a `server.proxy_protocol` listener: where a connection without a valid header in time
    /// is counted (`ringfence_proxy_protocol_errors_total{listener}`).
    proxy_header: Option<IntCounter>,
    connections: TaskTracker,
}

impl Accept {
    async fn run(self, listener: TcpListener, stop: CancellationToken) {
        let this = Arc::new(self);
        let refused = this
            .shared
            .metrics
            .connections_refused
            .with_label_values(&[&this.label]);
        let mut refusals = Refusals::default();
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&this.permits).try_acquire_owned() else {
                refused.inc();
                if let Some(count) = refusals.note(tokio::time::Instant::now()) {
                    tracing::warn!(
                        listener = %this.label,
                        refused = count,
                        last_client = %peer,
                        "max_connections reached; connections closed at accept"
                    );
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let this = Arc::clone(&this);
            let stop = stop.clone();
            this.connections.clone().spawn(async move {
                this.connection(stream, peer, stop).await;
                drop(permit);
            });
        }
    }

    async fn connection(&self, mut stream: TcpStream, peer: SocketAddr, stop: CancellationToken) {
        let open = self
            .shared
            .metrics
            .connections_open
            .with_label_values(&[&self.label]);
        let _open = Counted::new(&open);
        // Behind an L4 load balancer the header names the client; everything below sees it as
        // the peer (X-Forwarded-For included).
        let peer = match &self.proxy_header {
            None => peer,
            Some(errors) => match Box::pin(self.proxy_header(&mut stream, &stop)).await {
                None => return,
                Some(Ok(source)) => source.unwrap_or(peer),
                Some(Err(e)) => {
                    errors.inc();
                    tracing::debug!(client = %peer, error = %e, "no PROXY protocol header; closed");
                    return;
                }
            },
        };
        let tls = self.acceptor.is_some();
        let activity = Arc::new(Activity::new(
            self.shared.metrics.requests_in_flight.clone(),
        ));
        let limits = Limits {
            first_request: self.handshake_timeout,
            idle: self.idle_timeout,
            body_read: self.body_read_timeout,
            body_deadline: self.body_deadline,
            send: self.send_timeout,
        };
        // The service is made once the TLS server name is known: the judge binds it to an
        // organisation (SPEC §5.3).
        let serving = |sni: Option<Arc<str>>| {
            let connection = Connection {
                client: peer,
                tls,
                sni,
            };
            let gateway = Gateway::new(Arc::clone(&self.shared), connection);
            let seen = Arc::clone(&activity);
            let service = service_fn(move |req: http::Request<Incoming>| {
                let in_flight = InFlight::request(Arc::clone(&seen));
                let answer = gateway
                    .clone()
                    .handle(req.map(|body| ClientBody::new(body, &seen, limits)));
                async move {
                    let response = answer.await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| Tracked::answer(body, in_flight)),
                    )
                }
            });
            Serving {
                service,
                stop: stop.clone(),
                activity: Arc::clone(&activity),
                limits,
            }
        };
        let http = &*self.http;
        let parked = self
            .shared
            .metrics
            .connections_parked
            .with_label_values(&[&self.label]);
        // Every large future is boxed, so that the task keeps only what a parked connection
        // needs, not room for the handshake's or an HTTP connection's state.
        let result = match &self.acceptor {
            None => {
                let serving = serving(None);
                let opening = if http.http2 {
                    // Waiting for the first bytes, the connection holds no HTTP state either.
                    let _waiting = Counted::new(&parked);
                    Box::pin(opening(&stream, &serving.stop, serving.limits)).await
                } else {
                    Opening::Http1
                };
                match opening {
                    Opening::Http1 => {
                        Box::pin(park::serve_http1(&http.http1, stream, serving, &parked)).await
                    }
                    Opening::Unsure => {
                        Box::pin(serve(&http.auto, TokioIo::new(stream), serving)).await
                    }
                }
            }
            Some(acceptor) => match Box::pin(self.handshake(acceptor, stream, peer)).await {
                None => Ok(()),
                Some(tls) => {
                    let sni = tls.get_ref().1.server_name().map(Arc::from);
                    let serving = serving(sni);
                    // Known HTTP/1.1 parks when idle; h2, and a client that named no protocol
                    // (which the auto builder tells apart), are served as they come.
                    if tls.get_ref().1.alpn_protocol() == Some(b"http/1.1") {
                        Box::pin(park::serve_http1(&http.http1, tls, serving, &parked)).await
                    } else {
                        Box::pin(serve(&http.auto, TokioIo::new(tls), serving)).await
                    }
                }
            },
        };
        if let Err(e) = result {
            tracing::debug!(client = %peer, error = %e, "connection ended with an error");
        }
    }

    /// The PROXY protocol header within the header timeout: the source address it names, if
    /// any; None when the server stops meanwhile.
    async fn proxy_header(
        &self,
        stream: &mut TcpStream,
        stop: &CancellationToken,
    ) -> Option<Result<Option<SocketAddr>, proxy_protocol::HeaderError>> {
        let read = tokio::time::timeout(self.handshake_timeout, proxy_protocol::read(stream));
        tokio::select! {
            read = read => Some(read.unwrap_or(Err(proxy_protocol::HeaderError::TimedOut))),
            () = stop.cancelled() => None,
        }
    }

    /// The TLS handshake within the header timeout; failures are counted, not logged above debug.
    async fn handshake(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<Box<tokio_rustls::server::TlsStream<TcpStream>>> {
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) => {
                self.shared.metrics.tls_handshake_errors.inc();
                tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                self.shared.metrics.tls_handshake_errors.inc();
                tracing::debug!(client = %peer, "TLS handshake timed out");
                None
            }
        }
    }
}

/// How a plaintext connection opens.
enum Opening {
    /// With bytes that are not the HTTP/2 preface: an HTTP/1.1 client (or nothing at all).
    Http1,
    /// With the HTTP/2 preface, or a part of it: the auto builder reads on and decides.
    Unsure,
}

/// Looks at a plaintext client's first bytes without consuming them. HTTP/1.1 methods differ from
/// the HTTP/2 preface (prior knowledge, RFC 9113 §3.3) at their first or second byte, so one look
/// decides; a client that says nothing before the first-request limit, or the server stopping,
/// reads as HTTP/1.1, whose loop then closes the connection.
async fn opening(stream: &TcpStream, stop: &CancellationToken, limits: Limits) -> Opening {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut seen = [0u8; 24];
    tokio::select! {
        n = stream.peek(&mut seen) => match n {
            Ok(n) if n > 0 && seen[..n] == PREFACE[..n] => Opening::Unsure,
            _ => Opening::Http1,
        },
        () = stop.cancelled() => Opening::Http1,
        () = tokio::time::sleep(limits.first_request) => Opening::Http1,
    }
}

/// A gauge raised for as long as this lives (also when its future is dropped midway).
struct Counted<'g>(&'g IntGauge);

impl<'g> Counted<'g> {
    fn new(gauge: &'g IntGauge) -> Counted<'g> {
        gauge.inc();
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What serving one connection needs besides its socket.
struct Serving<S> {
    service: S,
    stop: CancellationToken,
    activity: Arc<Activity>,
    limits: Limits,
}

/// A body that keeps its connection counted as busy until its last frame was handed on, so an
/// idle connection is never parked in the middle of one.
///
/// As a response body, it is released when dropped too (hyper drops the body of a HEAD or 204
/// answer unread). As the client's request body ([`ClientBody`]), it must be read to its end:
/// hyper may still be reading it after the answer went out (a member that answered an upload
/// early), and a body dropped unfinished keeps its connection from ever parking, since hyper
/// drains or closes it and no byte of it may be read as a new request.
#[derive(Debug)]
pub struct Tracked<B> {
    body: B,
    in_flight: Option<InFlight>,
    must_finish: bool,
    /// An answer's body that gave hyper something (or nothing yet) and waits for it to come
    /// back: hyper polls again only once the client took what it had. Counted in
    /// [`Activity::awaiting`]; a connection whose answers wait longer than `send_timeout` is
    /// closed.
    awaits_client: bool,
}

/// The client's request body as the gateway reads it.
pub type ClientBody = Tracked<stall::Timed<Incoming>>;

impl ClientBody {
    fn new(body: Incoming, activity: &Arc<Activity>, limits: Limits) -> ClientBody {
        let in_flight = (!body.is_end_stream()).then(|| InFlight::begin(Arc::clone(activity)));
        Tracked {
            body: stall::Timed::new(body, limits.body_read, limits.body_deadline),
            in_flight,
            must_finish: true,
            awaits_client: false,
        }
    }
}

impl ClientBody {
    /// Adds the length of every data frame read from now on to `counter` (the access log).
    pub fn count_into(&mut self, counter: Arc<std::sync::atomic::AtomicU64>) {
        self.body.count_into(counter);
    }
}

impl<B> Tracked<B> {
    /// An answer handed to hyper: it waits for the client to take it until its body is polled.
    fn answer(body: B, in_flight: InFlight) -> Tracked<B> {
        // The time first: an answer seen waiting is seen with it (park.rs, "Orderings").
        in_flight
            .0
            .progress
            .store(in_flight.0.now(), Ordering::Relaxed);
        in_flight.0.awaiting.fetch_add(1, Ordering::Release);
        Tracked {
            body,
            in_flight: Some(in_flight),
            must_finish: false,
            awaits_client: true,
        }
    }

    /// The answer no longer waits for the client (its body is being polled, or is done).
    fn taken(&mut self) {
        if std::mem::take(&mut self.awaits_client) {
            if let Some(in_flight) = &self.in_flight {
                in_flight.0.awaiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let answer = !this.must_finish;
        if answer {
            this.taken();
            if let Some(in_flight) = &this.in_flight {
                in_flight
                    .0
                    .progress
                    .store(in_flight.0.now(), Ordering::Relaxed);
            }
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.in_flight = None,
            // Read to its end: hyper's client asks for nothing past the last frame of a body
            // whose length it knows, and drops it.
            Poll::Ready(Some(Ok(_))) if this.must_finish && this.body.is_end_stream() => {
                this.in_flight = None;
            }
            Poll::Ready(Some(Ok(_))) if answer => {
                if let Some(in_flight) = &this.in_flight {
                    in_flight.0.awaiting.fetch_add(1, Ordering::Release);
                    this.awaits_client = true;
                }
            }
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.taken();
        if let Some(in_flight) = self.in_flight.take() {
            if self.must_finish {
                // Before the guard's end, which publishes it (park.rs, "Orderings").
                in_flight.0.never_park.store(true, Ordering::Relaxed);
            }
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// When a connection counts as abandoned.
#[derive(Clone, Copy)]
struct Limits {
    /// No request began this long after accept (a client that connects and says nothing).
    first_request: Duration,
    /// No request in flight and none for this long (an idle keep-alive connection).
    idle: Duration,
    /// No bytes of a request body for this long while it is read (a client that stalls).
    body_read: Duration,
    /// A request body not complete this long after its head (a client that trickles).
    body_deadline: Duration,
    /// An answer the client does not take for this long (it reads nothing, or gives an HTTP/2
    /// stream no flow-control window): the connection is closed (nginx's `send_timeout`).
    send: Duration,
}

/// Requests in flight on one connection and when the last one began or ended. Long polls keep a
/// request in flight, so they are never cut off as idle.
///
/// Its clock is tokio's, so tests can pause it. Which task touches which field, and why the
/// orderings suffice: park.rs, "Orderings".
#[derive(Debug)]
struct Activity {
    opened: tokio::time::Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened`; `u64::MAX` until the first request.
    last: AtomicU64,
    /// Requests whose answer was handed over in full (or dropped).
    ended: AtomicU64,
    /// The connection should park at its next quiet read ([`park`]).
    park: AtomicBool,
    /// A request body was dropped unread: the connection must not park.
    never_park: AtomicBool,
    /// The connection's loop waits for the end of the requests in flight; `idle` wakes it.
    wake_when_idle: AtomicBool,
    idle: tokio::sync::Notify,
    /// Requests in flight in the whole process (`ringfence_http_requests_in_flight`).
    requests: IntGauge,
    /// Answers handed to hyper that wait for the client to take them ([`Tracked::answer`]).
    awaiting: AtomicUsize,
    /// Milliseconds after `opened` when an answer's body was last polled.
    progress: AtomicU64,
}

impl Activity {
    fn new(requests: IntGauge) -> Activity {
        Activity {
            requests,
            awaiting: AtomicUsize::new(0),
            progress: AtomicU64::new(0),
            opened: tokio::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(u64::MAX),
            ended: AtomicU64::new(0),
            park: AtomicBool::new(false),
            never_park: AtomicBool::new(false),
            wake_when_idle: AtomicBool::new(false),
            idle: tokio::sync::Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// Whether a request or request body is in flight. Read before any field its end writes:
    /// a guard seen ended is seen with all it wrote (park.rs, "Orderings").
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// How long until the connection counts as abandoned; zero when it already does.
    fn remaining(&self, limits: Limits) -> Duration {
        if self.busy() {
            // Not abandoned while busy; looked at again in time to see an answer left untaken.
            return limits.idle.min(limits.send / 2);
        }
        let (since, limit) = match self.last.load(Ordering::Relaxed) {
            u64::MAX => (0, limits.first_request),
            last => (last, limits.idle),
        };
        let idle = Duration::from_millis(self.now().saturating_sub(since));
        limit.saturating_sub(idle)
    }

    /// Whether an answer has waited longer than `send_timeout` for the client to take it, with
    /// no answer making progress meanwhile: the client reads nothing (or an HTTP/2 client gives
    /// no window), and the connection only holds a slot.
    fn send_stalled(&self, limits: Limits) -> bool {
        self.awaiting.load(Ordering::Acquire) > 0
            && Duration::from_millis(
                self.now()
                    .saturating_sub(self.progress.load(Ordering::Relaxed)),
            ) > limits.send
    }

    /// Asks the end of the requests in flight to notify `idle`. False when [`Activity::park_in`]
    /// no longer says None: the last one ended before the ask, and will not notify.
    fn wait_for_idle(&self) -> bool {
        // The flag, then `in_flight`; a guard's end does the reverse. All SeqCst, one of the two
        // sees the other (park.rs, "Orderings").
        self.wake_when_idle.store(true, Ordering::SeqCst);
        self.park_in().is_none()
    }

    /// How long until a served connection has been quiet for [`park::PARK_AFTER`]; None while a
    /// request is in flight, before the first one, and once it must never park.
    fn park_in(&self) -> Option<Duration> {
        if self.busy() || self.never_park.load(Ordering::Relaxed) {
            return None;
        }
        match self.last.load(Ordering::Relaxed) {
            u64::MAX => None,
            last => {
                let quiet = Duration::from_millis(self.now().saturating_sub(last));
                Some(park::PARK_AFTER.saturating_sub(quiet))
            }
        }
    }
}

/// One request (or its body) in flight on a connection, until dropped: also when its future is
/// dropped unfinished (an HTTP/2 stream reset), so the idle watchdog still sees the connection go
/// idle. Only the request's own guard counts in the process-wide gauge.
#[derive(Debug)]
struct InFlight(Arc<Activity>, bool);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.last.store(activity.now(), Ordering::Relaxed);
        activity.park.store(false, Ordering::Relaxed);
        InFlight(activity, false)
    }

    fn request(activity: Arc<Activity>) -> InFlight {
        activity.requests.inc();
        let mut guard = InFlight::begin(activity);
        guard.1 = true;
        guard
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.1 {
            self.0.requests.dec();
        }
        self.0.last.store(self.0.now(), Ordering::Relaxed);
        self.0.ended.fetch_add(1, Ordering::Relaxed);
        // Last: it publishes the writes above, and pairs with the loop's wait for the end
        // (park.rs, "Orderings").
        let before = self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        if before == 1
            && self.0.wake_when_idle.load(Ordering::SeqCst)
            && self.0.wake_when_idle.swap(false, Ordering::SeqCst)
        {
            self.0.idle.notify_one();
        }
    }
}

/// Serves one connection; on shutdown, or once abandoned, it finishes the request in flight and
/// closes.
async fn serve<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    serving: Serving<S>,
) -> Result<(), BoxError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<Tracked<ResponseBody>>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let Serving {
        service,
        stop,
        activity,
        limits,
    } = serving;
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        if activity.send_stalled(limits) {
            // Dropping the connection closes the socket: a graceful close would wait for the
            // very answers the client does not take.
            tracing::debug!("answers left untaken for send_timeout; connection closed");
            return Ok(());
        }
        let wait = activity.remaining(limits);
        if wait.is_zero() && !closing {
            conn.as_mut().graceful_shutdown();
            closing = true;
        }
        // Never asleep longer than half the send timeout: a request may begin meanwhile, and
        // its answer be left untaken.
        let wait = if wait.is_zero() {
            limits.send / 2
        } else {
            wait.min(limits.send / 2)
        };
        tokio::select! {
            r = conn.as_mut() => return r,
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::Waker;

    const LIMITS: Limits = Limits {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        body_read: Duration::from_secs(5),
        body_deadline: Duration::from_secs(30),
        send: Duration::from_secs(20),
    };

    fn activity() -> Arc<Activity> {
        Arc::new(Activity::new(
            IntGauge::new("requests", "requests").unwrap(),
        ))
    }

    async fn advance(ms: u64) {
        tokio::time::advance(Duration::from_millis(ms)).await;
    }

    /// An answer's body that has nothing yet.
    struct Waiting;

    impl Body for Waiting {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, std::convert::Infallible>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_abandoned_at_the_first_request_limit_then_at_the_idle_limit() {
        let a = activity();
        assert_eq!(a.remaining(LIMITS), Duration::from_secs(10));
        advance(4_000).await;
        assert_eq!(a.remaining(LIMITS), Duration::from_secs(6));
        let request = InFlight::request(Arc::clone(&a));
        advance(100_000).await;
        assert_eq!(
            a.remaining(LIMITS),
            Duration::from_secs(10),
            "never abandoned while busy; looked at again within half the send timeout"
        );
        drop(request);
        assert_eq!(a.remaining(LIMITS), Duration::from_secs(60));
        advance(59_999).await;
        assert_eq!(a.remaining(LIMITS), Duration::from_millis(1));
        advance(1).await;
        assert_eq!(a.remaining(LIMITS), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_may_park_after_its_requests_and_park_after_of_quiet() {
        let a = activity();
        assert_eq!(a.park_in(), None, "not before the first request");
        let request = InFlight::request(Arc::clone(&a));
        a.park.store(true, Ordering::Relaxed);
        let body = InFlight::begin(Arc::clone(&a));
        assert!(!a.park.load(Ordering::Relaxed), "a start clears it");
        advance(1_000).await;
        drop(request);
        assert_eq!(a.park_in(), None, "not while a body is read");
        advance(100).await;
        drop(body);
        assert_eq!(a.ended.load(Ordering::Relaxed), 2);
        assert_eq!(a.park_in(), Some(park::PARK_AFTER));
        advance(park::PARK_AFTER.as_millis() as u64 - 1).await;
        assert_eq!(a.park_in(), Some(Duration::from_millis(1)));
        advance(1).await;
        assert_eq!(a.park_in(), Some(Duration::ZERO));
        a.never_park.store(true, Ordering::Relaxed);
        assert_eq!(a.park_in(), None, "never once a body was dropped unread");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_left_untaken_for_the_send_timeout_stalls_its_connection() {
        let a = activity();
        advance(60_000).await;
        let mut answer = Tracked::answer(Waiting, InFlight::request(Arc::clone(&a)));
        assert!(
            !a.send_stalled(LIMITS),
            "a fresh answer is timed from now, not from the connection's start"
        );
        advance(20_000).await;
        assert!(!a.send_stalled(LIMITS));
        advance(1).await;
        assert!(a.send_stalled(LIMITS));
        // hyper polls it: taken, and waiting for nothing from the client.
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut answer).poll_frame(&mut cx).is_pending());
        assert!(!a.send_stalled(LIMITS));
        advance(60_000).await;
        assert!(
            !a.send_stalled(LIMITS),
            "a pool's slow answer is not the client's"
        );
        drop(answer);
        assert_eq!(a.awaiting.load(Ordering::Relaxed), 0);
        assert_eq!(a.in_flight.load(Ordering::Relaxed), 0);
    }

    /// The loop asks to be woken at the end of the last request while, on another thread, that
    /// request ends: either the end notifies, or the loop sees it ended (park.rs, "Orderings").
    #[test]
    fn the_end_of_the_last_request_on_another_thread_is_never_missed() {
        for _ in 0..2_000 {
            let a = activity();
            let request = InFlight::request(Arc::clone(&a));
            let start = Arc::new(std::sync::Barrier::new(2));
            let ender = {
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    drop(request);
                })
            };
            start.wait();
            let waits = a.wait_for_idle();
            ender.join().unwrap();
            if waits {
                let notified = std::pin::pin!(a.idle.notified());
                let mut cx = Context::from_waker(Waker::noop());
                assert!(
                    notified.poll(&mut cx).is_ready(),
                    "the loop waits, and the end did not notify"
                );
            } else {
                assert!(!a.busy());
            }
        }
    }

    /// A request body dropped unread on another thread: once the connection's task sees its
    /// guard gone, it sees `never_park` too (park.rs, "Orderings").
    #[test]
    fn a_body_dropped_unread_on_another_thread_is_seen_with_its_end() {
        for _ in 0..500 {
            let a = activity();
            let body = Tracked {
                body: Waiting,
                in_flight: Some(InFlight::begin(Arc::clone(&a))),
                must_finish: true,
                awaits_client: false,
            };
            let ender = std::thread::spawn(move || drop(body));
            let mut spins = 0u64;
            while a.busy() {
                spins += 1;
                assert!(spins < 1 << 32, "the body's end never showed");
                std::hint::spin_loop();
            }
            assert!(a.never_park.load(Ordering::Relaxed));
            assert_eq!(a.park_in(), None);
            ender.join().unwrap();
        }
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_period_with_their_count() {
        let start = tokio::time::Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut refusals = Refusals::default();
        assert_eq!(
            refusals.note(at(0)),
            Some(1),
            "the first refusal is logged at once"
        );
        assert_eq!(refusals.note(at(1)), None);
        assert_eq!(refusals.note(at(9)), None);
        assert_eq!(
            refusals.note(at(10)),
            Some(3),
            "the next line sums what it skipped"
        );
        assert_eq!(refusals.note(at(15)), None);
        assert_eq!(refusals.note(at(30)), Some(2));
    }
}
