//! What `run` needs from the files a configuration names, made by the one function both
//! `Server::start` and `check-config` call, so that
//! check-config cannot call valid a file that run would refuse.
//!
//! It builds the listener's TLS configuration (reading the certificate and key and checking
//! that they belong together), builds the pool's TLS client configuration, and opens the audit
//! sink; every problem is reported, each with its configuration key. Binding the listeners is
//! left to `run`: a running instance already holds them.

use std::fmt;

use crate::audit::{AccessLog, Audit, AuditError};
use crate::config::Config;
use crate::tls::{self, TlsError};

/// What [`prepare`] made, for the server to use.
pub struct Prepared {
    pub server_tls: Option<tls::ServerTlsSetup>,
    pub audit: Audit,
    pub access: AccessLog,
}

/// One file the configuration names that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Every [`PrepareError`] of a configuration.
#[derive(Debug, thiserror::Error)]
pub struct Unprepared(pub Vec<PrepareError>);

impl fmt::Display for Unprepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "unusable configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Builds the listener's and the pool's TLS configurations and opens the audit sink, exactly as
/// `run` does before it binds.
pub fn prepare(config: &Config) -> Result<Prepared, Unprepared> {
    let mut errors = Vec::new();
    let server_tls = match &config.server.tls {
        Some(t) => tls::server_setup(t, config.server.http2)
            .map_err(|e| errors.push(e.into()))
            .ok(),
        None => None,
    };
    // The pool builds its own from the same function on every (re)load; this is the check.
    if let Err(e) = tls::client_config(config.upstream.tls.as_ref()) {
        errors.push(e.into());
    }
    let audit = Audit::start(&config.audit)
        .map_err(|e| errors.push(e.into()))
        .ok();
    let access = AccessLog::start(&config.access_log)
        .map_err(|e| errors.push(e.into()))
        .ok();
    match (audit, access) {
        (Some(audit), Some(access)) if errors.is_empty() => Ok(Prepared {
            server_tls,
            audit,
            access,
        }),
        _ => Err(Unprepared(errors)),
    }
}
