//! Prometheus metrics in ringfence's own registry. Label values come only from configuration
//! (organisation names, member URLs, listener addresses) and fixed sets, never from request input.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use http::StatusCode;

use crate::route::Traffic;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric ringfence exports (SPEC §9).
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub decisions: IntCounterVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub member_healthy: IntGaugeVec,
    pub connections_open: IntGaugeVec,
    pub connections_parked: IntGaugeVec,
    pub tls_handshake_errors: IntCounter,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_success: Gauge,
    /// Request bodies answered 408: `idle` (no bytes for `body_read_timeout`) or `deadline`
    /// (a guarded body not complete within `body_deadline`).
    pub client_body_timeouts: IntCounterVec,
    /// Client requests in flight (until their answer is handed over in full); what a drain that
    /// runs out of `shutdown_grace` cuts.
    pub requests_in_flight: IntGauge,
    /// When each configured certificate expires: `server` (the listener's), `upstream_client`.
    pub certificate_expiry: GaugeVec,
    /// 1 under the running configuration's content hash (`Config::hash`), so that replicas that
    /// run different configurations can be told apart.
    pub config_info: IntGaugeVec,
    /// Connections closed at accept because `max_connections` were open, by listener.
    pub connections_refused: IntCounterVec,
    /// Failed accepts, by listener (the client listeners' addresses and the admin's) and kind
    /// (`emfile`, `enfile`, `enobufs`, `enomem`, `other`): each backs off
    /// (`crate::descriptors::AcceptErrors`).
    pub accept_errors: IntCounterVec,
    /// Connections closed on a `server.proxy_protocol` listener for want of a valid PROXY
    /// header in time, by listener.
    pub proxy_protocol_errors: IntCounterVec,
    /// Failed health probes, by member and kind (`health::ProbeKind`).
    pub probe_failures: IntCounterVec,
    /// 1 under each organisation's mode (`enforce` or `shadow`), and `none`'s: the mode of
    /// requests in no organisation.
    pub organisation_mode: IntGaugeVec,
    /// Judged guarded requests refused 429, by the bucket that refused them (`user`,
    /// `organisation`).
    pub rate_limited: IntCounterVec,
    /// `ringfence_upstream_connections{member, state}`, computed at each scrape.
    pub upstream_connections: UpstreamConnections,
    passthrough: RouteMetrics,
    guarded: RouteMetrics,
}

/// The request metrics of one route, resolved on first use: the request path does no label
/// lookup, and no series appears before its first request.
struct RouteMetrics {
    requests: StatusCounters,
    duration: OnceLock<Histogram>,
}

/// A counter per status code under fixed leading labels (a route, a pool member), each resolved
/// once, on first use; codes 100-599 are cached, any other is looked up every time.
pub struct StatusCounters {
    vec: IntCounterVec,
    label: Box<str>,
    cached: Box<[OnceLock<IntCounter>]>,
}

impl std::fmt::Debug for StatusCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusCounters")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl StatusCounters {
    pub fn new(vec: &IntCounterVec, label: &str) -> StatusCounters {
        StatusCounters {
            vec: vec.clone(),
            label: label.into(),
            cached: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn inc(&self, status: StatusCode) {
        let resolve = || self.vec.with_label_values(&[&*self.label, status.as_str()]);
        match self
            .cached
            .get(usize::from(status.as_u16()).wrapping_sub(100))
        {
            Some(slot) => slot.get_or_init(resolve).inc(),
            None => resolve().inc(),
        }
    }
}

/// Latency buckets from 0.5 ms to the long-poll range.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 960.0,
];

impl Metrics {
    /// Registers a trail's counters (`crate::audit::Counters`), made where the trail starts.
    pub fn register_trail(&self, counters: &crate::audit::Counters) {
        let _ = self.registry.register(Box::new(counters.lines.clone()));
        let _ = self.registry.register(Box::new(counters.queued.clone()));
    }

    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        gauge("ringfence_build_info", "Build information.", &["version"])
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let http_requests = counter(
            "ringfence_http_requests_total",
            "Client requests answered, by route and status code.",
            &["route", "code"],
        );
        let route = |label: &str| RouteMetrics {
            requests: StatusCounters::new(&http_requests, label),
            duration: OnceLock::new(),
        };
        let (passthrough, guarded) = (route("passthrough"), route("guarded"));
        let metrics = Metrics {
            http_requests,
            http_duration: histogram(
                "ringfence_http_request_duration_seconds",
                "Time from request head to response head, by route.",
                &["route"],
            ),
            decisions: counter(
                "ringfence_policy_decisions_total",
                "Policy decisions on guarded requests.",
                &["organisation", "resource", "decision", "reason"],
            ),
            upstream_requests: counter(
                "ringfence_upstream_requests_total",
                "Requests answered by pool members, by member and status code.",
                &["member", "code"],
            ),
            upstream_duration: histogram(
                "ringfence_upstream_request_duration_seconds",
                "Time to the pool member's response head.",
                &["member"],
            ),
            upstream_errors: counter(
                "ringfence_upstream_errors_total",
                "Failed attempts to reach a pool member, by kind.",
                &["member", "kind"],
            ),
            member_healthy: gauge(
                "ringfence_upstream_member_healthy",
                "1 when the member takes traffic.",
                &["member"],
            ),
            connections_open: gauge(
                "ringfence_connections_open",
                "Client connections open, by listener.",
                &["listener"],
            ),
            connections_parked: gauge(
                "ringfence_connections_parked",
                "Idle HTTP/1.1 client connections holding no HTTP state (parked), by listener.",
                &["listener"],
            ),
            tls_handshake_errors: {
                let c = IntCounter::new(
                    "ringfence_tls_handshake_errors_total",
                    "Client TLS handshakes that failed.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
            config_reloads: counter(
                "ringfence_config_reloads_total",
                "Configuration reloads, by result.",
                &["result"],
            ),
            config_last_reload_success: {
                let g = Gauge::new(
                    "ringfence_config_last_reload_success_timestamp_seconds",
                    "Unix time of the last configuration that was loaded.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            client_body_timeouts: {
                let c = counter(
                    "ringfence_client_body_timeouts_total",
                    "Request bodies that did not arrive in time (answered 408), by kind.",
                    &["kind"],
                );
                for kind in ["idle", "deadline"] {
                    c.with_label_values(&[kind]);
                }
                c
            },
            requests_in_flight: {
                let g = IntGauge::new(
                    "ringfence_http_requests_in_flight",
                    "Client requests in flight, until their answer is handed over in full.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            certificate_expiry: {
                let g = GaugeVec::new(
                    Opts::new(
                        "ringfence_tls_certificate_expiry_timestamp_seconds",
                        "When the configured certificate expires (notAfter), Unix time.",
                    ),
                    &["certificate"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            config_info: gauge(
                "ringfence_config_info",
                "1 under the content hash of the configuration in use.",
                &["hash"],
            ),
            connections_refused: counter(
                "ringfence_connections_refused_total",
                "Client connections closed at accept at max_connections, by listener.",
                &["listener"],
            ),
            accept_errors: counter(
                "ringfence_accept_errors_total",
                "Failed accepts, by listener and kind (emfile|enfile|enobufs|enomem|other); accepting backs off after each.",
                &["listener", "kind"],
            ),
            proxy_protocol_errors: counter(
                "ringfence_proxy_protocol_errors_total",
                "Connections closed without a valid PROXY protocol header in time, by listener.",
                &["listener"],
            ),
            probe_failures: counter(
                "ringfence_upstream_probe_failures_total",
                "Failed health probes, by member and kind (connect|tls|timeout|protocol|status).",
                &["member", "kind"],
            ),
            organisation_mode: gauge(
                "ringfence_organisation_mode",
                "1 under each organisation's policy mode (enforce|shadow); none: no organisation.",
                &["organisation", "mode"],
            ),
            rate_limited: counter(
                "ringfence_rate_limited_total",
                "Guarded requests refused 429 rate_limited, by the bucket that refused them (user|organisation).",
                &["scope"],
            ),
            upstream_connections: {
                let g = UpstreamConnections::new();
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            registry,
            passthrough,
            guarded,
        };
        // Both results exist from the start, so that a first failed reload is an increase from 0
        // rather than a new series that rate() and increase() cannot see.
        for result in ["success", "failure"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        metrics
    }

    /// Counts a client request answered as `traffic` and observes its duration.
    /// Sets `ringfence_organisation_mode` to the policy in use, dropping the replaced one's.
    pub fn show_modes(&self, policy: &crate::policy::Policy) {
        self.organisation_mode.reset();
        for o in policy.organisations() {
            self.organisation_mode
                .with_label_values(&[o.name(), o.mode().label()])
                .set(1);
        }
        self.organisation_mode
            .with_label_values(&["none", policy.mode_for(None).label()])
            .set(1);
    }

    /// Counts one decision in `ringfence_policy_decisions_total{organisation, resource, decision,
    /// reason}`: `organisation` is its index and name, and `owner` the snapshot both it and
    /// `resource` belong to (one owner, one `Metrics`).
    ///
    /// The vector's own lookup (a read lock, four labels hashed: ~350 instructions) was paid on
    /// every decision (issue 15). Each thread keeps the series it counted into for the owner it
    /// last saw, keyed by what the owner fixes: the organisation's index, and where the
    /// resource's name and the two static labels are, with their lengths (a literal may start
    /// where another does). The owner is held weakly, so no other can take its address while
    /// the cache names it.
    pub fn decided<T: Send + Sync + 'static>(
        &self,
        owner: &Arc<T>,
        organisation: Option<(usize, &str)>,
        resource: &str,
        decision: &'static str,
        reason: &'static str,
    ) {
        type Key = [(usize, usize); 4];
        struct Series {
            owner: Weak<dyn std::any::Any + Send + Sync>,
            series: rustc_hash::FxHashMap<Key, IntCounter>,
        }
        thread_local! {
            static SERIES: std::cell::RefCell<Series> = std::cell::RefCell::new(Series {
                owner: Weak::<()>::new(),
                series: rustc_hash::FxHashMap::default(),
            });
        }
        let at = |s: &str| (s.as_ptr() as usize, s.len());
        let key = [
            (organisation.map_or(usize::MAX, |(index, _)| index), 0),
            at(resource),
            at(decision),
            at(reason),
        ];
        SERIES.with_borrow_mut(|cache| {
            if !std::ptr::addr_eq(cache.owner.as_ptr(), Arc::as_ptr(owner)) {
                let owner: Weak<T> = Arc::downgrade(owner);
                cache.owner = owner;
                cache.series.clear();
            }
            cache
                .series
                .entry(key)
                .or_insert_with(|| {
                    self.decisions.with_label_values(&[
                        organisation.map_or("none", |(_, name)| name),
                        resource,
                        decision,
                        reason,
                    ])
                })
                .inc();
        });
    }

    pub fn answered(&self, traffic: Traffic, status: StatusCode, seconds: f64) {
        let cached = match traffic {
            Traffic::Passthrough => &self.passthrough,
            Traffic::Guarded => &self.guarded,
        };
        cached.requests.inc(status);
        cached
            .duration
            .get_or_init(|| self.http_duration.with_label_values(&[traffic.label()]))
            .observe(seconds);
    }

    /// The text exposition format, version 0.0.4.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        // Writing into a Vec only fails on invalid metric families, which `new` cannot build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// One pool member's upstream connections (`upstream::connections` counts them): open, and
/// busy (requests in flight).
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    open: AtomicI64,
    busy: AtomicI64,
}

impl ConnectionCounts {
    pub fn busy(&self) -> &AtomicI64 {
        &self.busy
    }

    /// A connection to the member was made.
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection to the member was closed.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> (i64, i64) {
        let busy = self.busy.load(Ordering::Relaxed).max(0);
        let open = self.open.load(Ordering::Relaxed).max(0);
        (open.saturating_sub(busy).max(0), busy)
    }
}

/// Every member's counts, by member name, exported as one gauge family at each scrape. A member
/// no pool and no connection refers to any more (a reload removed it, its last connection
/// closed) has its series removed.
#[derive(Clone)]
pub struct UpstreamConnections {
    members: Arc<Mutex<HashMap<Box<str>, Weak<ConnectionCounts>>>>,
    gauge: IntGaugeVec,
}

impl Default for UpstreamConnections {
    fn default() -> Self {
        UpstreamConnections::new()
    }
}

impl UpstreamConnections {
    pub fn new() -> UpstreamConnections {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "ringfence_upstream_connections",
                "Upstream connections per member: idle (open, no request in flight) or busy.",
            ),
            &["member", "state"],
        )
        .expect("valid metric");
        UpstreamConnections {
            members: Arc::default(),
            gauge,
        }
    }

    /// The counts of the member of this name, shared with any other pool that has it.
    pub fn member(&self, name: &str) -> Arc<ConnectionCounts> {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(counts) = members.get(name).and_then(Weak::upgrade) {
            return counts;
        }
        let counts = Arc::new(ConnectionCounts::default());
        members.insert(name.into(), Arc::downgrade(&counts));
        counts
    }
}

impl Collector for UpstreamConnections {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        self.gauge.reset();
        members.retain(|name, counts| match counts.upgrade() {
            Some(counts) => {
                let (idle, busy) = counts.snapshot();
                self.gauge.with_label_values(&[name, "idle"]).set(idle);
                self.gauge.with_label_values(&[name, "busy"]).set(busy);
                true
            }
            None => false,
        });
        self.gauge.collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series kept for one snapshot is never counted into for another, though the
    /// organisation's index and the resource's name are where they were: a reload that renamed
    /// the organisation counts under its new name.
    #[test]
    fn decision_series_are_kept_per_snapshot() {
        let metrics = Metrics::new();
        let count = |organisation: &str| {
            metrics
                .decisions
                .with_label_values(&[organisation, "ring", "allow", "allowed"])
                .get()
        };
        let (old, new) = (Arc::new(1u8), Arc::new(2u8));
        metrics.decided(&old, Some((0, "contoso")), "ring", "allow", "allowed");
        metrics.decided(&old, Some((0, "contoso")), "ring", "allow", "allowed");
        metrics.decided(&new, Some((0, "northwind")), "ring", "allow", "allowed");
        metrics.decided(&new, None, "ring", "allow", "allowed");
        assert_eq!(
            (count("contoso"), count("northwind"), count("none")),
            (2, 1, 1)
        );
        // Another reason at the same place, shorter: its own series.
        metrics.decided(&new, None, "ring", "allow", &"allowed"[..5]);
        assert_eq!(
            metrics
                .decisions
                .with_label_values(&["none", "ring", "allow", "allow"])
                .get(),
            1
        );
        assert_eq!(count("none"), 1);
    }
}
