//! Process signals: SIGHUP reloads the configuration; SIGTERM and SIGINT start the drain.

use std::sync::Arc;

use crate::state::Shared;

/// Waits for SIGTERM or SIGINT, reloading on every SIGHUP meanwhile.
pub async fn until_shutdown(shared: Arc<Shared>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => match shared.reload() {
                Ok(()) => tracing::info!("configuration reloaded (SIGHUP)"),
                Err(e) => tracing::error!(error = %e, "reload failed; the previous configuration stays"),
            },
        }
    }
}
