//! A running ringfence's lifetime: [`Server::start`] makes what the configuration's files give
//! ([`preflight`]), binds every listener and the admin endpoint, and serves;
//! [`Server::shutdown`] drains within the grace period and writes out the trails.

mod bind;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin;
use crate::config::Config;
use crate::listener::Listeners;
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
        let tls = server_tls.map(|t| t.config);
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
        let serving = Listeners::new(&shared, tls.clone(), &server_config, connections.clone());
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for (configured, listener) in listeners {
            let (addr, task) =
                serving
                    .spawn(configured, listener, stop.clone())
                    .map_err(|source| StartError::Bind {
                        addr: configured,
                        source,
                    })?;
            addrs.push(addr);
            tasks.push(task);
        }
        // The admin listener outlives the drain, so /ready answers 503 and metrics stay scrapable.
        let admin_stop = CancellationToken::new();
        tasks.push(tokio::spawn(admin::serve(
            admin_listener,
            Arc::clone(&shared),
            admin_stop.clone(),
        )));
        tracing::info!(listen = ?addrs, admin = %admin_addr, tls = tls.is_some(), "ringfence is serving");
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
