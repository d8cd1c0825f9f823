//! The client-facing listeners and the admin endpoint: bind, accept (bounded by
//! `max_connections`), TLS, hyper's HTTP/1.1 + HTTP/2 connection, and a graceful drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use crate::audit::Audit;
use crate::config::{Config, Server as ServerConfig};
use crate::gateway::{Connection, Gateway};
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::tls::{self, TlsError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS")]
    Tls(#[from] TlsError),
    #[error("cannot open the audit trail")]
    Audit(#[source] std::io::Error),
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
        let audit = Audit::start(&config.audit).map_err(StartError::Audit)?;
        let shared = Shared::new(config, config_path, Metrics::new(), audit)?;
        let acceptor = match &server_config.tls {
            Some(t) => Some(TlsAcceptor::from(tls::server_config(
                t,
                server_config.http2,
            )?)),
            None => None,
        };
        let mut listeners = Vec::new();
        for addr in &server_config.listen {
            listeners.push(bind(*addr)?);
        }
        let admin_listener = bind(admin_listen)?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: admin_listen,
                source,
            })?;

        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let builder = Arc::new(http_builder(&server_config));
        let permits = Arc::new(Semaphore::new(server_config.max_connections));
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for listener in listeners {
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                addr: admin_listen,
                source,
            })?;
            addrs.push(addr);
            let accept = Accept {
                shared: Arc::clone(&shared),
                acceptor: acceptor.clone(),
                builder: Arc::clone(&builder),
                permits: Arc::clone(&permits),
                handshake_timeout: server_config.header_read_timeout,
                idle_timeout: server_config.idle_timeout,
                label: addr.to_string(),
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
    /// period, then returns. Returns false when the grace period ran out first.
    pub async fn shutdown(self) -> bool {
        self.shared.start_draining();
        self.stop.cancel();
        self.connections.close();
        let drained = tokio::time::timeout(self.grace, self.connections.wait())
            .await
            .is_ok();
        self.admin_stop.cancel();
        for t in self.tasks {
            t.abort();
        }
        drained
    }
}

/// A listening socket; an IPv6 wildcard is IPv6-only so that `0.0.0.0:p` and `[::]:p` can both
/// be configured, as operators expect.
fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let err = |source| StartError::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

fn http_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(config.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    if config.http2 {
        builder
    } else {
        builder.http1_only()
    }
}

struct Accept {
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    permits: Arc<Semaphore>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    label: String,
    connections: TaskTracker,
}

impl Accept {
    async fn run(self, listener: TcpListener, stop: CancellationToken) {
        let this = Arc::new(self);
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
                tracing::warn!(client = %peer, "max_connections reached; connection closed");
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

    async fn connection(&self, stream: TcpStream, peer: SocketAddr, stop: CancellationToken) {
        let gauge = self
            .shared
            .metrics
            .connections_open
            .with_label_values(&[&self.label]);
        gauge.inc();
        let tls = self.acceptor.is_some();
        let gateway = Gateway::new(Arc::clone(&self.shared), Connection { client: peer, tls });
        let activity = Arc::new(Activity::new());
        let seen = Arc::clone(&activity);
        let service = service_fn(move |req| {
            let in_flight = InFlight::begin(Arc::clone(&seen));
            let answer = gateway.clone().handle(req);
            async move {
                let response = answer.await;
                drop(in_flight);
                response
            }
        });
        let limits = Limits {
            first_request: self.handshake_timeout,
            idle: self.idle_timeout,
        };
        let result = match &self.acceptor {
            None => {
                serve(
                    &self.builder,
                    TokioIo::new(stream),
                    service,
                    stop,
                    activity,
                    limits,
                )
                .await
            }
            Some(acceptor) => {
                match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        let io = TokioIo::new(tls_stream);
                        serve(&self.builder, io, service, stop, activity, limits).await
                    }
                    Ok(Err(e)) => {
                        self.shared.metrics.tls_handshake_errors.inc();
                        tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                        Ok(())
                    }
                    Err(_) => {
                        self.shared.metrics.tls_handshake_errors.inc();
                        tracing::debug!(client = %peer, "TLS handshake timed out");
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(client = %peer, error = %e, "connection ended with an error");
        }
        gauge.dec();
    }
}

/// When a connection counts as abandoned.
#[derive(Clone, Copy)]
struct Limits {
    /// No request began this long after accept (a client that connects and says nothing).
    first_request: Duration,
    /// No request in flight and none for this long (an idle keep-alive connection).
    idle: Duration,
}

/// Requests in flight on one connection and when the last one began or ended. Long polls keep a
/// request in flight, so they are never cut off as idle.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened`; `u64::MAX` until the first request.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(u64::MAX),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// How long until the connection counts as abandoned; zero when it already does.
    fn remaining(&self, limits: Limits) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return limits.idle;
        }
        let (since, limit) = match self.last.load(Ordering::Relaxed) {
            u64::MAX => (0, limits.first_request),
            last => (last, limits.idle),
        };
        let idle = Duration::from_millis(self.now().saturating_sub(since));
        limit.saturating_sub(idle)
    }
}

/// One request in flight on a connection, until dropped: also when its future is dropped
/// unfinished (an HTTP/2 stream reset), so the idle watchdog still sees the connection go idle.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.last.store(activity.now(), Ordering::Relaxed);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last.store(self.0.now(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection; on shutdown, or once abandoned, it finishes the request in flight and
/// closes.
async fn serve<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    stop: CancellationToken,
    activity: Arc<Activity>,
    limits: Limits,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<crate::gateway::ResponseBody>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    loop {
        let wait = activity.remaining(limits);
        if wait.is_zero() {
            conn.as_mut().graceful_shutdown();
            return conn.await;
        }
        tokio::select! {
            r = conn.as_mut() => return r,
            () = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                return conn.await;
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}
