//! Process signals: SIGHUP reloads the configuration; SIGUSR1 reopens the audit and log files
//! (logrotate's `postrotate`); SIGTERM and SIGINT start the drain.

use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::logfile::LogFile;
use crate::state::{ReloadError, Shared};

/// The signal handlers, installed before the server starts so that an early SIGHUP or SIGUSR1
/// is handled instead of killing the process (both signals' default action).
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// Waits for SIGTERM or SIGINT, reloading on every SIGHUP and reopening files on every
    /// SIGUSR1 meanwhile.
    pub async fn until_shutdown(mut self, shared: Arc<Shared>, log: Option<LogFile>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => log_reload("SIGHUP", shared.reload().await),
                _ = self.usr1.recv() => {
                    shared.audit.reopen();
                    shared.access.reopen();
                    if let Some(log) = &log {
                        match log.reopen() {
                            Ok(()) => tracing::info!(path = %log.path().display(), "log file reopened (SIGUSR1)"),
                            Err(e) => tracing::error!(path = %log.path().display(), error = %e, "cannot reopen the log file; writing on to the file already open"),
                        }
                    }
                }
            }
        }
    }
}

/// Logs a reload's result, and each changed key that only a restart applies.
pub fn log_reload(by: &str, result: Result<Vec<&'static str>, ReloadError>) {
    match result {
        Ok(restart) => {
            tracing::info!(by, "configuration reloaded");
            for key in restart {
                tracing::warn!(
                    key,
                    "{key} changed, but a reload cannot apply it: it takes effect at the next restart"
                );
            }
        }
        Err(e) => {
            tracing::error!(by, error = %e, "reload failed; the previous configuration stays")
        }
    }
}
