//! Member health: active probes (`GET health.path` with the member's Host; any status below 500
//! is alive, 401 included) and passive marking on connection failures. A member goes down after
//! `unhealthy_after` failures in a row and comes back after `healthy_after` good probes.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use http::{header, Request, Uri};

use super::{Member, Pool, UpstreamBody};

pub(super) fn start(pool: &Arc<Pool>) {
    for index in 0..pool.members.len() {
        let weak = Arc::downgrade(pool);
        let stop = pool.probes.clone();
        tokio::spawn(async move {
            let interval = match weak.upgrade() {
                Some(p) => p.config.health.interval,
                None => return,
            };
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
    let uri = Uri::builder()
        .scheme(member.scheme.clone())
        .authority(member.authority.clone())
        .path_and_query(health.path.as_str())
        .build();
    let Ok(uri) = uri else { return true };
    let mut request = Request::new(UpstreamBody::Empty);
    *request.uri_mut() = uri;
    if let Ok(host) = header::HeaderValue::from_str(member.authority.as_str()) {
        request.headers_mut().insert(header::HOST, host);
    }
    request.headers_mut().insert(
        header::USER_AGENT,
        header::HeaderValue::from_static("ringfence-health"),
    );
    let alive = match tokio::time::timeout(health.timeout, pool.client.request(request)).await {
        Ok(Ok(response)) => response.status().as_u16() < 500,
        _ => false,
    };
    if alive {
        succeeded(member, health.healthy_after);
    } else {
        failed(member, health.unhealthy_after);
    }
    true
}

fn succeeded(member: &Member, healthy_after: u32) {
    member.failures.store(0, Ordering::Relaxed);
    if member.is_healthy() {
        return;
    }
    if member.successes.fetch_add(1, Ordering::Relaxed) + 1 >= healthy_after {
        member.successes.store(0, Ordering::Relaxed);
        member.set_healthy(true);
        tracing::info!(member = member.name(), "pool member is healthy again");
    }
}

/// Counts a failed probe or a failed connection.
pub(super) fn failed(member: &Member, unhealthy_after: u32) {
    member.successes.store(0, Ordering::Relaxed);
    if member.failures.fetch_add(1, Ordering::Relaxed) + 1 >= unhealthy_after && member.is_healthy()
    {
        member.set_healthy(false);
        tracing::warn!(member = member.name(), "pool member marked unhealthy");
    }
}
