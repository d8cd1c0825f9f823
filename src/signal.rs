//! Process signals: SIGHUP reloads the configuration; SIGTERM and SIGINT start the drain.

use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::state::Shared;

/// The signal handlers, installed before the server starts so that an early SIGHUP reloads
/// instead of killing the process (the default action).
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT, reloading on every SIGHUP meanwhile.
    pub async fn until_shutdown(mut self, shared: Arc<Shared>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => match shared.reload() {
                    Ok(()) => tracing::info!("configuration reloaded (SIGHUP)"),
                    Err(e) => tracing::error!(error = %e, "reload failed; the previous configuration stays"),
                },
            }
        }
    }
}
