//! The reloadable snapshot: one configuration with its compiled policy and its pool, swapped
//! atomically so a request reads exactly one of them from start to finish.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::Audit;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::notify;
use crate::tls::TlsError;
use crate::upstream::Pool;

/// What a request needs from one configuration.
pub struct Snapshot {
    pub config: Config,
    pub pool: Arc<Pool>,
}

/// A configuration read and checked by a reload, not yet in place.
struct Prepared {
    config: Config,
    /// A new pool when `[upstream]` changed.
    pool: Option<Arc<Pool>>,
    restart: Vec<&'static str>,
}

/// State shared by every connection for the life of the process.
pub struct Shared {
    snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    pub audit: Audit,
    draining: AtomicBool,
    /// The file `reload` re-reads; None for the embedded demo configuration.
    config_path: Option<PathBuf>,
    reloading: tokio::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no configuration file to reload (embedded configuration)")]
    NoFile,
    #[error("the reload task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("upstream TLS: {0}")]
    Tls(#[from] TlsError),
}

impl Shared {
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        metrics: Metrics,
        audit: Audit,
    ) -> Result<Arc<Shared>, TlsError> {
        let pool = Arc::new(Pool::new(&config.upstream, &metrics)?);
        pool.start_probes();
        metrics.config_last_reload_success.set(unix_now());
        Ok(Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot { config, pool }),
            metrics,
            audit,
            draining: AtomicBool::new(false),
            config_path,
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    /// The snapshot a request works with from start to finish.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Re-reads the file; on any problem nothing changes and the failure is counted. Reading
    /// files and compiling the policy (seconds for 100,000 patterns) happen on a blocking
    /// thread, so traffic on the runtime's threads never waits for a reload; one reload runs at
    /// a time. Returns the changed keys that take effect only at the next start.
    pub async fn reload(self: &Arc<Self>) -> Result<Vec<&'static str>, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        notify::reloading();
        let shared = Arc::clone(self);
        let result = match tokio::task::spawn_blocking(move || shared.prepare()).await {
            Ok(prepared) => prepared.map(|next| self.swap(next)),
            Err(e) => Err(ReloadError::Task(e.to_string())),
        };
        notify::ready();
        let label = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        if result.is_ok() {
            self.metrics.config_last_reload_success.set(unix_now());
        }
        result
    }

    /// Everything slow about a reload, off the runtime: the file read and validated, the policy
    /// compiled, a new pool's TLS configuration read.
    fn prepare(&self) -> Result<Prepared, ReloadError> {
        let path = self.config_path.as_ref().ok_or(ReloadError::NoFile)?;
        let config = Config::load(path)?;
        let current = self.snapshot();
        let pool = if config.upstream == *current.pool.config() {
            None
        } else {
            Some(Arc::new(Pool::new(&config.upstream, &self.metrics)?))
        };
        let restart = current.config.needs_restart(&config);
        Ok(Prepared {
            config,
            pool,
            restart,
        })
    }

    /// Puts a prepared configuration in place (on the runtime: probes are tasks).
    fn swap(&self, next: Prepared) -> Vec<&'static str> {
        let current = self.snapshot();
        let pool = match next.pool {
            None => Arc::clone(&current.pool),
            Some(pool) => {
                pool.carry_health(&current.pool);
                pool.start_probes();
                // A removed member must not keep reporting its last health.
                for old in current.pool.members() {
                    if !pool.members().iter().any(|m| m.name() == old.name()) {
                        let _ = self
                            .metrics
                            .member_healthy
                            .remove_label_values(&[old.name()]);
                    }
                }
                pool
            }
        };
        self.snapshot.store(Arc::new(Snapshot {
            config: next.config,
            pool,
        }));
        next.restart
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Ready: configuration loaded, not draining, and a probe has found at least one member
    /// healthy. Members not probed yet do not count, so a new process is not ready before its
    /// first probes; a reload keeps the health of the members both pools share (see
    /// [`Pool::carry_health`]), so it does not flap the readiness of a working replica.
    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.snapshot().pool.any_healthy()
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
