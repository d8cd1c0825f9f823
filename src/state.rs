//! The reloadable snapshot: one configuration with its compiled policy and its pool, swapped
//! atomically so a request reads exactly one of them from start to finish.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::{self, AccessLog, Audit};
use crate::config::ServerTls;
use crate::config::{Config, ConfigError};
use crate::identity::Identities;
use crate::metrics::Metrics;
use crate::notify;
use crate::ratelimit::Limiter;
use crate::tls::{self, ServerCertificate, TlsError};
use crate::upstream::Pool;
use rustls::sign::CertifiedKey;
use std::time::{Duration, SystemTime};

/// What a request needs from one configuration.
pub struct Snapshot {
    pub config: Config,
    pub pool: Arc<Pool>,
    /// Who is behind each application: learnt state, carried across reloads (rebuilt with what
    /// it knows when `[identity]` changes).
    pub identities: Arc<Identities>,
    /// The rate limits' buckets, carried across reloads.
    pub limiter: Limiter,
}

/// A configuration read and checked by a reload, not yet in place.
struct Prepared {
    config: Config,
    /// A new pool when `[upstream]` changed.
    pool: Option<Arc<Pool>>,
    /// The listener's certificate and key, read again (the files may have new contents).
    key: Option<CertifiedKey>,
    /// The upstream client certificate's expiry, read with the rest.
    client_not_after: Option<i64>,
    restart: Vec<&'static str>,
}

/// State shared by every connection for the life of the process.
pub struct Shared {
    snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    pub audit: Audit,
    pub access: AccessLog,
    draining: AtomicBool,
    /// The file `reload` re-reads; None for the embedded demo configuration.
    config_path: Option<PathBuf>,
    /// Held by a reload (of the file or of the certificate) from its start to its swap.
    reloading: tokio::sync::Mutex<()>,
    /// The listener's certificate when it serves TLS: a reload, or a change of its files,
    /// swaps it in place.
    certificate: Option<Arc<ServerCertificate>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no configuration file to reload (embedded configuration)")]
    NoFile,
    #[error("the reload task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl Shared {
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        metrics: Metrics,
        (audit, access): (Audit, AccessLog),
        certificate: Option<Arc<ServerCertificate>>,
    ) -> Result<Arc<Shared>, TlsError> {
        metrics.register_trail(audit.counters());
        metrics.register_trail(access.counters());
        let pool = Arc::new(Pool::new(&config.upstream, &metrics)?);
        pool.start_probes();
        metrics.config_last_reload_success.set(unix_now());
        metrics
            .config_info
            .with_label_values(&[&config.hash])
            .set(1);
        metrics.show_modes(&config.policy);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot {
                identities: Arc::new(Identities::new(config.identity)),
                limiter: config.limiter(None),
                config,
                pool,
            }),
            metrics,
            audit,
            access,
            draining: AtomicBool::new(false),
            config_path,
            reloading: tokio::sync::Mutex::new(()),
            certificate,
        });
        shared.show_server_certificate();
        shared.show_client_certificate(client_not_after(&shared.snapshot().config));
        Ok(shared)
    }

    /// Sets `ringfence_tls_certificate_expiry_timestamp_seconds{certificate="server"}` for the
    /// certificate presented now.
    fn show_server_certificate(&self) {
        if let Some(at) = self.certificate.as_ref().and_then(|c| c.not_after()) {
            let expiry = &self.metrics.certificate_expiry;
            expiry.with_label_values(&["server"]).set(at as f64);
        }
    }

    /// Sets the upstream client certificate's expiry, read from its file by the caller (off
    /// the runtime for a reload).
    fn show_client_certificate(&self, not_after: Option<i64>) {
        let expiry = &self.metrics.certificate_expiry;
        match not_after {
            Some(at) => expiry
                .with_label_values(&["upstream_client"])
                .set(at as f64),
            None => {
                let _ = expiry.remove_label_values(&["upstream_client"]);
            }
        }
    }

    /// Watches the listener's certificate and key files (the paths of the configuration in
    /// use, every `server.tls.watch_interval`) and loads them again when they change, as a
    /// reload would: cert-manager and ACME clients rotate them in place. A pair that cannot be
    /// used keeps the one in use and counts as a failed reload.
    pub fn watch_certificate(self: &Arc<Self>) {
        if self.certificate.is_none() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            // What the files looked like at the last look (None before the first). Files that
            // went missing are a state too: their return is a change (fresh-eyes round 4, F4).
            let mut seen = None;
            loop {
                let Some(tls) = weak
                    .upgrade()
                    .and_then(|s| s.snapshot().config.server.tls.clone())
                else {
                    return;
                };
                let now = files(&tls);
                match &seen {
                    Some(before) if *before != now => {
                        // Give a writer that replaces the two files one by one time to finish.
                        tokio::time::sleep(SETTLE).await;
                        seen = Some(files(&tls));
                        match weak.upgrade() {
                            Some(shared) => shared.reload_certificate().await,
                            None => return,
                        }
                    }
                    _ => seen = Some(now),
                }
                tokio::time::sleep(tls.watch_interval).await;
            }
        });
    }

    /// Loads the listener's certificate and key again from the configured paths.
    async fn reload_certificate(self: &Arc<Self>) {
        let _one_at_a_time = self.reloading.lock().await;
        let Some(tls) = self.snapshot().config.server.tls.clone() else {
            return;
        };
        let result = match tokio::task::spawn_blocking(move || tls::server_key(&tls)).await {
            Ok(Ok(key)) => {
                if let Some(certificate) = &self.certificate {
                    certificate.replace(key);
                }
                self.show_server_certificate();
                Ok(())
            }
            Ok(Err(e)) => Err(ReloadError::Tls(e)),
            Err(e) => Err(ReloadError::Task(e.to_string())),
        };
        self.count_reload(result.is_ok());
        match result {
            Ok(()) => tracing::info!("server certificate reloaded: its files changed"),
            Err(e) => tracing::error!(
                error = %e,
                "the server certificate's files changed but cannot be used; the certificate in use stays"
            ),
        }
    }

    fn count_reload(&self, success: bool) {
        let label = if success { "success" } else { "failure" };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        if success {
            self.metrics.config_last_reload_success.set(unix_now());
        }
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
        self.count_reload(result.is_ok());
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
        // The listener keeps serving TLS or plain as it started; a pair it cannot use fails the
        // reload and keeps the one in use.
        let key = match (&self.certificate, &config.server.tls) {
            (Some(_), Some(tls)) => Some(tls::server_key(tls)?),
            _ => None,
        };
        Ok(Prepared {
            client_not_after: client_not_after(&config),
            config,
            pool,
            key,
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
                // The old pool lives on while its requests finish; its probes end now.
                current.pool.stop_probes();
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
        if let (Some(certificate), Some(key)) = (&self.certificate, next.key) {
            certificate.replace(key);
        }
        if self.audit.enabled() {
            self.audit.note(
                &audit::ConfigChange {
                    v: audit::VERSION,
                    kind: "config",
                    ts: audit::now(),
                    old_hash: &current.config.hash,
                    new_hash: &next.config.hash,
                    old: current.config.counts(),
                    new: next.config.counts(),
                },
                "config",
            );
        }
        if current.config.hash != next.config.hash {
            let info = &self.metrics.config_info;
            let _ = info.remove_label_values(&[&current.config.hash]);
            info.with_label_values(&[&next.config.hash]).set(1);
        }
        let identities = current.identities.for_settings(next.config.identity);
        self.metrics.show_modes(&next.config.policy);
        let limiter = next.config.limiter(Some(&current.limiter));
        let old = self.snapshot.swap(Arc::new(Snapshot {
            config: next.config,
            pool,
            identities,
            limiter,
        }));
        drop(current);
        retire(old);
        self.show_server_certificate();
        self.show_client_certificate(next.client_not_after);
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

/// Drops a replaced snapshot off the runtime: freeing a compiled policy of 100,000 patterns takes
/// long enough to stall every request on a runtime thread. Requests that started on it (a long
/// poll can take minutes) keep it alive; it is dropped on a blocking thread once they are done.
fn retire(old: Arc<Snapshot>) {
    tokio::spawn(async move {
        while Arc::strong_count(&old) > 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::task::spawn_blocking(move || drop(old));
    });
}

/// The `notAfter` of the upstream client certificate a configuration names (file I/O).
fn client_not_after(config: &Config) -> Option<i64> {
    let tls = config.upstream.tls.as_ref()?;
    tls::file_not_after(tls.cert.as_deref()?)
}

/// How long a change of the certificate files is left to settle before they are read.
const SETTLE: Duration = Duration::from_secs(1);

/// What identifies the certificate and key files' contents without reading them: their
/// modification times, sizes and inodes (following symlinks, as Kubernetes secret volumes swap
/// a `..data` link). None while either cannot be read.
fn files(tls: &ServerTls) -> Option<[(SystemTime, u64, u64); 2]> {
    use std::os::unix::fs::MetadataExt;
    let one = |path: &std::path::Path| {
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    };
    Some([one(&tls.cert)?, one(&tls.key)?])
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
