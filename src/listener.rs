//! The client-facing listeners: accept (bounded by `max_connections`), TLS ([`tls`]), the HTTP
//! connection, and each connection's own end on shutdown or when abandoned. A connection known to
//! speak HTTP/1.1 is served by ringfence's own server ([`http1`]), whose idle connections park
//! without buffers ([`park`]); HTTP/2, and clients that could be either, by hyper's auto builder.
//! Binding, the admin endpoint and the drain are `server`'s.

mod http1;
mod park;
mod proxy_protocol;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use prometheus::{IntCounter, IntGauge};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::{Activity, ClientBody, InFlight, Limits, Source, Tracked};
use crate::config::ServerSettings;
use crate::descriptors::AcceptErrors;
use crate::gateway::{Connection, Gateway, ResponseBody};
use crate::state::Shared;

/// What every client-facing listener of one server shares: its state, TLS, HTTP settings,
/// the `max_connections` permits and the tracker the drain waits on.
pub(crate) struct Listeners {
    shared: Arc<Shared>,
    tls: Option<Arc<ServerConfig>>,
    http: Arc<Http>,
    permits: Arc<Semaphore>,
    settings: ServerSettings,
    connections: TaskTracker,
}

impl Listeners {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        tls: Option<Arc<ServerConfig>>,
        settings: &ServerSettings,
        connections: TaskTracker,
    ) -> Listeners {
        Listeners {
            shared: Arc::clone(shared),
            tls,
            http: Arc::new(http_builders(settings)),
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            settings: settings.clone(),
            connections,
        }
    }

    /// Accepts on `listener` (bound for the `configured` address) until `stop`; returns the
    /// address it listens on and its task.
    pub(crate) fn spawn(
        &self,
        configured: SocketAddr,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
        let server_config = &self.settings;
        let shared = &self.shared;
        let addr = listener.local_addr()?;
        let label = addr.to_string();
        let proxy_header = server_config.expects_proxy_header(configured).then(|| {
            shared
                .metrics
                .proxy_protocol_errors
                .with_label_values(&[&label])
        });
        let accept = Accept {
            shared: Arc::clone(shared),
            tls: self.tls.clone(),
            http: Arc::clone(&self.http),
            permits: Arc::clone(&self.permits),
            handshake_timeout: server_config.header_read_timeout,
            idle_timeout: server_config.idle_timeout,
            body_read_timeout: server_config.body_read_timeout,
            body_deadline: server_config.body_deadline,
            send_timeout: server_config.send_timeout,
            label,
            proxy_header,
            connections: self.connections.clone(),
        };
        Ok((addr, tokio::spawn(accept.run(listener, stop))))
    }
}

/// The HTTP/1.1 and HTTP/2 connection settings (the auto builder serves h2 and TLS clients that
/// named no ALPN protocol; known HTTP/1.1 connections use `http1` directly, so they can park).
struct Http {
    auto: auto::Builder<TokioExecutor>,
    http2: bool,
}

/// hyper's read buffer cap, for both HTTP/1.1 servers (the auto builder's and the parkable one).
const MAX_HTTP1_BUF: usize = 64 * 1024;

fn http_builders(config: &ServerSettings) -> Http {
    // No header timer on the auto builder's HTTP/1.1 either: it ran between requests too, so it
    // closed an idle keep-alive connection at header_read_timeout, not idle_timeout (fresh eyes,
    // round 21). The first request is bounded by `serve`'s loop (`Limits::first_request`), a
    // later head by `idle_timeout`, as an idle connection is.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .header_read_timeout(None)
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
    Http {
        auto,
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
    tls: Option<Arc<ServerConfig>>,
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
        let mut errors = AcceptErrors::new(&this.shared.metrics.accept_errors, &this.label);
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: the connections already open keep theirs,
                    // and the new one waits in the backlog while accepting backs off.
                    let wait = errors.failed(&e);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            errors.accepted();
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
                Some(Err(proxy_protocol::HeaderError::NothingSent)) => {
                    tracing::debug!(client = %peer, "closed without sending anything (a TCP check)");
                    return;
                }
                Some(Err(e)) => {
                    errors.inc();
                    tracing::debug!(client = %peer, error = %e, "no PROXY protocol header; closed");
                    return;
                }
            },
        };
        let tls = self.tls.is_some();
        let activity = Arc::new(Activity::new(
            self.shared.metrics.requests_in_flight.clone(),
        ));
        let limits = Limits {
            first_request: self.handshake_timeout,
            head: self.handshake_timeout,
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
            // Shared by the connection's requests: each request's future holds a pointer to it,
            // not a copy (a held long poll's for minutes).
            let handler = Handler {
                gateway: Arc::new(Gateway::new(Arc::clone(&self.shared), connection)),
                activity: Arc::clone(&activity),
                limits,
            };
            Serving {
                service: handler,
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
        let result = match &self.tls {
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
                    Opening::Http1 => Box::pin(http1::serve(stream, serving, &parked)).await,
                    Opening::Unsure => {
                        Box::pin(serve(&http.auto, TokioIo::new(stream), serving.hyper())).await
                    }
                }
            }
            Some(config) => match Box::pin(self.handshake(config, stream, peer)).await {
                None => Ok(()),
                Some(tls) => {
                    let serving = serving(tls.server_name().cloned());
                    // Known HTTP/1.1 parks when idle; h2, and a client that named no protocol
                    // (which the auto builder tells apart), are served as they come.
                    if tls.alpn_protocol() == Some(b"http/1.1") {
                        Box::pin(http1::serve(tls, serving, &parked)).await
                    } else {
                        Box::pin(serve(&http.auto, TokioIo::new(tls), serving.hyper())).await
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
        config: &Arc<ServerConfig>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<Box<tls::TlsStream>> {
        let accept = tls::accept(Arc::clone(config), stream);
        match tokio::time::timeout(self.handshake_timeout, accept).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) if tls::nothing_sent(&e) => {
                tracing::debug!(client = %peer, "closed without sending anything (a TCP check)");
                None
            }
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

/// Serves a connection's requests: the gateway, with the request counted in flight until its
/// answer's body is through.
#[derive(Clone)]
struct Handler {
    gateway: Arc<Gateway>,
    activity: Arc<Activity>,
    limits: Limits,
}

/// A request's answer to come, boxed: the connection moves the request's future into its slot,
/// and ringfence's is ~12 KB (the guarded route's state); a pointer moves for nothing.
type Answering = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<ResponseBody>, std::convert::Infallible>,
            > + Send,
    >,
>;

impl Handler {
    /// Starts a request: its answer to come, and its guard, which the answer's body takes.
    fn start(&self, request: crate::request::Head, body: Source) -> (Answering, InFlight) {
        // One clock reading for the request's guards, its body's deadline and its latency.
        let head = tokio::time::Instant::now();
        let in_flight = InFlight::request_at(Arc::clone(&self.activity), self.activity.at(head));
        let (activity, limits) = (&self.activity, self.limits);
        let answer = Box::pin(Arc::clone(&self.gateway).handle(
            request,
            ClientBody::new(body, activity, limits, head),
            head.into_std(),
        ));
        (answer, in_flight)
    }

    /// A request hyper's server read (HTTP/2, or a connection that could be either): its
    /// target is the `Uri` hyper made.
    fn call(
        &self,
        req: http::Request<Source>,
    ) -> impl std::future::Future<Output = http::Response<Tracked<ResponseBody>>> + Send + 'static
    {
        let (parts, body) = req.into_parts();
        let (answer, in_flight) = self.start(parts.into(), body);
        async move {
            let response = match answer.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            response.map(|body| Tracked::answer(body, in_flight))
        }
    }
}

impl Serving<Handler> {
    /// The same, as a hyper service.
    fn hyper(
        self,
    ) -> Serving<
        impl hyper::service::Service<
                http::Request<Incoming>,
                Response = http::Response<Tracked<ResponseBody>>,
                Error = std::convert::Infallible,
                Future = impl Send,
            > + Send
            + 'static,
    > {
        let handler = self.service;
        let service = service_fn(move |req: http::Request<Incoming>| {
            let answer = handler.call(req.map(Source::Left));
            async move { Ok::<_, std::convert::Infallible>(answer.await) }
        });
        Serving {
            service,
            stop: self.stop,
            activity: self.activity,
            limits: self.limits,
        }
    }
}

/// What serving one connection needs besides its socket.
struct Serving<S> {
    service: S,
    stop: CancellationToken,
    activity: Arc<Activity>,
    limits: Limits,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a connection closed gracefully for being idle has to end before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_millis(200);

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
    // When the connection was found idle and closed gracefully, for an HTTP/2 client to take
    // its GOAWAY.
    let mut idle_closed_at: Option<tokio::time::Instant> = None;
    loop {
        if activity.send_stalled(limits) {
            // Dropping the connection closes the socket: a graceful close would wait for the
            // very answers the client does not take.
            tracing::debug!("answers left untaken for send_timeout; connection closed");
            return Ok(());
        }
        let wait = activity.remaining(limits);
        let wait = if !wait.is_zero() {
            // Never asleep longer than half the send timeout: a request may begin meanwhile,
            // and its answer be left untaken.
            wait.min(limits.send / 2)
        } else if activity.before_first_request() {
            // No request within the limit of the accept: dropped, as the parkable loop drops
            // one. A graceful close would let hyper finish a head it has begun (a client whose
            // first byte could begin HTTP/2's preface, or a TLS client that named no protocol).
            tracing::debug!("no request within header_read_timeout; connection closed");
            return Ok(());
        } else if idle_closed_at.is_some_and(|at| at.elapsed() >= IDLE_CLOSE_GRACE) {
            // Idle, closed gracefully, and still not ended (an HTTP/2 client that does not
            // answer the GOAWAY's ping): dropped.
            tracing::debug!("idle connection not ended after a graceful close; dropped");
            return Ok(());
        } else {
            if idle_closed_at.is_none() {
                idle_closed_at = Some(tokio::time::Instant::now());
                if !closing {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            IDLE_CLOSE_GRACE
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
