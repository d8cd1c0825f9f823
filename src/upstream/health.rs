//! Member health: active probes (`GET health.path` with the member's Host; any status below 500
//! is alive, 401 included) and passive marking on connection failures. A member starts
//! [`Health::Unknown`]: it is sent traffic but does not make the process ready. Its first good
//! probe makes it healthy; `unhealthy_after` failures in a row make it unhealthy, and
//! `healthy_after` good probes bring it back. Every change is logged with its cause, and every
//! failed probe is counted by [`ProbeKind`].

use std::error::Error;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytestring::ByteString;
use http::uri::PathAndQuery;
use http::{Method, StatusCode};

use crate::request::Headers;

use super::{classify, BoxError, FailureKind, Member, Pool, UpstreamBody};

/// What the probes know of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Not probed yet (a new process, or a member a reload added).
    Unknown = 0,
    Healthy = 1,
    Unhealthy = 2,
}

impl Health {
    pub(super) fn from_u8(value: u8) -> Health {
        match value {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// Why a probe failed, as `ringfence_upstream_probe_failures_total{kind}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Connect,
    Tls,
    Timeout,
    Protocol,
    /// The member answered 5xx.
    Status,
    /// No connection for want of a local resource: not held against the member.
    Local,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 6] = [
        ProbeKind::Connect,
        ProbeKind::Tls,
        ProbeKind::Timeout,
        ProbeKind::Protocol,
        ProbeKind::Status,
        ProbeKind::Local,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Connect => "connect",
            ProbeKind::Tls => "tls",
            ProbeKind::Timeout => "timeout",
            ProbeKind::Protocol => "protocol",
            ProbeKind::Status => "status",
            ProbeKind::Local => "local",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A failed probe, with the cause an operator needs (the whole error chain: a TLS failure names
/// rustls' reason, such as `UnknownIssuer`).
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("{} failure: {}", .kind.label(), Chain(.cause.as_ref()))]
    Request { kind: FailureKind, cause: BoxError },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered {0}")]
    Status(StatusCode),
}

impl ProbeError {
    fn kind(&self) -> ProbeKind {
        match self {
            ProbeError::Request { kind, .. } => match kind {
                FailureKind::Connect => ProbeKind::Connect,
                FailureKind::Tls => ProbeKind::Tls,
                FailureKind::Timeout => ProbeKind::Timeout,
                FailureKind::Local => ProbeKind::Local,
                // A probe has no request body to break: anything else is the member's doing.
                FailureKind::Protocol | FailureKind::Client => ProbeKind::Protocol,
            },
            ProbeError::Timeout(_) => ProbeKind::Timeout,
            ProbeError::Status(_) => ProbeKind::Status,
        }
    }
}

/// An error and its sources, `: `-separated; a source whose text its wrapper already shows is
/// not repeated.
pub(super) struct Chain<'e>(pub &'e (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(error) = next {
            let text = error.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            next = error.source();
        }
        Ok(())
    }
}

pub(super) fn start(pool: &Arc<Pool>) {
    for index in 0..pool.members.len() {
        let weak = Arc::downgrade(pool);
        let stop = pool.probes.clone();
        tokio::spawn(async move {
            let interval = match weak.upgrade() {
                Some(p) => p.config.health.interval,
                None => return,
            };
            // The first tick is immediate: a new pool is probed at once.
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                if !probe_once(&weak, index).await {
                    return;
                }
            }
        });
    }
}

/// One probe; false once the pool is gone.
async fn probe_once(pool: &Weak<Pool>, index: usize) -> bool {
    let Some(pool) = pool.upgrade() else {
        return false;
    };
    let member = &pool.members[index];
    let health = &pool.config.health;
    let Ok(target) = PathAndQuery::try_from(health.path.as_str()) else {
        return true;
    };
    let target = ByteString::from(target.as_str());
    let mut headers = Headers::default();
    if crate::request::is_field_value(member.authority.as_str().as_bytes()) {
        headers.append("host", member.authority.as_str().as_bytes());
    }
    headers.append("user-agent", b"ringfence-health");
    let mut attempt = pool.attempt(
        index,
        &Method::GET,
        target,
        headers,
        None,
        UpstreamBody::Empty,
    );
    let exchange = pool.exchange(&Method::GET, &mut attempt);
    let outcome = match tokio::time::timeout(health.timeout, exchange).await {
        Ok(Ok(response)) if response.status().is_server_error() => {
            Err(ProbeError::Status(response.status()))
        }
        Ok(Ok(response)) => Ok(response.status()),
        Ok(Err(e)) => {
            let (kind, cause) = classify(e);
            Err(ProbeError::Request { kind, cause })
        }
        Err(_) => Err(ProbeError::Timeout(health.timeout)),
    };
    match outcome {
        Ok(status) => succeeded(member, health.healthy_after, status),
        Err(error) => {
            member.probe_failures[error.kind().index()].inc();
            tracing::debug!(
                member = member.name(),
                kind = error.kind().label(),
                cause = %error,
                "health probe failed"
            );
            if error.kind() == ProbeKind::Local {
                // This process ran out of something: the member's health is not known either way.
                return true;
            }
            failed(
                member,
                health.unhealthy_after,
                format_args!("health probe: {error}"),
            );
        }
    }
    true
}

fn succeeded(member: &Member, healthy_after: u32, status: StatusCode) {
    member.failures.store(0, Ordering::Relaxed);
    match member.health() {
        Health::Healthy => {}
        Health::Unknown => {
            member.successes.store(0, Ordering::Relaxed);
            member.set_health(Health::Healthy);
            tracing::info!(
                member = member.name(),
                from = Health::Unknown.label(),
                status = status.as_u16(),
                "pool member is healthy: its first probe was answered"
            );
        }
        Health::Unhealthy => {
            if member.successes.fetch_add(1, Ordering::Relaxed) + 1 >= healthy_after {
                member.successes.store(0, Ordering::Relaxed);
                member.set_health(Health::Healthy);
                tracing::info!(
                    member = member.name(),
                    from = Health::Unhealthy.label(),
                    status = status.as_u16(),
                    good_probes = healthy_after,
                    "pool member is healthy again"
                );
            }
        }
    }
}

/// Counts a failed probe or a failed connection; `cause` is logged when the member turns
/// unhealthy.
pub(super) fn failed(member: &Member, unhealthy_after: u32, cause: fmt::Arguments<'_>) {
    member.successes.store(0, Ordering::Relaxed);
    let failures = member.failures.fetch_add(1, Ordering::Relaxed) + 1;
    let from = member.health();
    if failures >= unhealthy_after && from != Health::Unhealthy {
        member.set_health(Health::Unhealthy);
        tracing::warn!(
            member = member.name(),
            from = from.label(),
            failures,
            cause = %cause,
            "pool member marked unhealthy"
        );
    }
}
