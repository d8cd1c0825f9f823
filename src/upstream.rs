//! The front-end pool: ringfence's own HTTP/1.1 client ([`h1`] on the wire, [`conn`] for one
//! connection and its exchange, [`idle`] for the kept-alive connections), upstream TLS,
//! balancing, and a retry on another member only when nothing was sent.

mod balance;
mod conn;
mod connections;
pub(crate) mod h1;
mod health;
mod idle;

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use http::header::HeaderValue;
use http::uri::{Authority, Scheme};
use http::{Method, Response};

use crate::request::Headers;
use prometheus::{Histogram, IntCounter, IntGauge};

pub use crate::body::UpstreamBody;
pub use conn::{Error as ExchangeError, MemberBody};
pub use health::Health;
use health::ProbeKind;

use crate::body::BodyError;
use crate::config::{Balance, Upstream};
use crate::deadline;
use crate::forwarding;
use crate::judge::Clearance;
use crate::metrics::{Metrics, StatusCounters};
use crate::tls::{self, TlsError};

/// One front-end server, with its metric handles resolved once.
#[derive(Debug)]
pub struct Member {
    name: Box<str>,
    authority: Authority,
    /// Where to connect, and how.
    target: conn::Target,
    /// The Host header a request without one is sent with (as hyper-util wrote it: the port
    /// only when it is not the scheme's).
    host: HeaderValue,
    /// A [`Health`], as its `u8`.
    health: AtomicU8,
    /// Consecutive failed probes or connection errors, and consecutive good probes.
    failures: AtomicU32,
    successes: AtomicU32,
    outstanding: AtomicUsize,
    /// Its connections and requests in flight, shared with other pools that have it.
    connections: Arc<crate::metrics::ConnectionCounts>,
    healthy_gauge: IntGauge,
    duration: Histogram,
    requests: StatusCounters,
    /// Indexed by [`FailureKind`], but for `Client`.
    errors: [IntCounter; 5],
    /// Indexed by [`ProbeKind`].
    probe_failures: [IntCounter; ProbeKind::ALL.len()],
}

impl Member {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Whether requests may be sent to it: a member not yet probed is tried, so that traffic
    /// does not wait for the first probe (only `/ready` does).
    pub fn takes_traffic(&self) -> bool {
        self.health() != Health::Unhealthy
    }

    /// The gauge says 1 only for a member a probe found healthy.
    fn set_health(&self, health: Health) {
        self.health.store(health as u8, Ordering::Relaxed);
        self.healthy_gauge.set(i64::from(health == Health::Healthy));
    }
}

/// Who failed, so that the status and the retry follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection could be made: nothing was sent, another member may be tried.
    Connect,
    /// The TLS handshake failed: nothing was sent, another member may be tried.
    Tls,
    /// No response head within `response_timeout`.
    Timeout,
    /// The member broke the exchange after the request went out.
    Protocol,
    /// No connection could be made for want of a local resource (descriptors, memory, buffers,
    /// ephemeral ports): nothing was sent, the member is not blamed, another may be tried.
    Local,
    /// The client's own body broke while it was streamed (a malformed chunk, a client gone): no
    /// member is blamed, counted or retried.
    Client,
}

impl FailureKind {
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Tls => "tls",
            FailureKind::Timeout => "timeout",
            FailureKind::Protocol => "protocol",
            FailureKind::Local => "local",
            FailureKind::Client => "client",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The last failure when no member answered.
#[derive(Debug, thiserror::Error)]
#[error("{member}: {} failure: {source}", kind.label())]
pub struct UpstreamError {
    pub kind: FailureKind,
    pub member: Box<str>,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl UpstreamError {
    /// Why a [`FailureKind::Client`] failure happened when the client's body was too slow.
    pub fn client_timeout(&self) -> Option<&BodyError> {
        if self.kind != FailureKind::Client {
            return None;
        }
        find::<BodyError>(&*self.source).filter(|e| !matches!(e, BodyError::Read(_)))
    }
}

/// The pool of one configuration; reused across reloads when `[upstream]` is unchanged.
pub struct Pool {
    members: Vec<Member>,
    /// The kept-alive connections, shared with the answers being read (which give theirs back).
    idle: Arc<idle::Idle>,
    balance: Balance,
    next: AtomicUsize,
    response_timeout: Duration,
    config: Upstream,
    /// Ends the health probes when the pool is replaced by a reload.
    probes: tokio_util::sync::CancellationToken,
}

impl Pool {
    /// Ends the health probes of a pool a reload replaced (its requests in flight go on).
    pub fn stop_probes(&self) {
        self.probes.cancel();
    }
}

impl Drop for Pool {
    /// Its idle connections are closed; those still carrying an answer are closed when it ends.
    fn drop(&mut self) {
        self.probes.cancel();
        self.idle.close();
    }
}

/// A member's answer, with the member that gave it.
pub struct Answer<'p> {
    pub response: Response<MemberBody>,
    pub member: &'p Member,
    /// The member's index in the pool.
    pub index: usize,
}

impl Pool {
    pub fn new(config: &Upstream, metrics: &Metrics) -> Result<Pool, TlsError> {
        // HTTP/1.1 only, whatever the member offers (docs/decisions.md).
        let mut client = tls::client_config(config.tls.as_ref())?;
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let server_name = match config.tls.as_ref().and_then(|t| t.server_name.clone()) {
            Some(name) => Some(rustls_pki_types::ServerName::try_from(name).map_err(|e| {
                TlsError::Rustls(rustls::Error::General(format!("server_name: {e}")))
            })?),
            None => None,
        };
        let members: Vec<Member> = config
            .members
            .iter()
            .map(|uri| {
                let name: Box<str> = uri.to_string().trim_end_matches('/').into();
                let errors = [
                    FailureKind::Connect,
                    FailureKind::Tls,
                    FailureKind::Timeout,
                    FailureKind::Protocol,
                    FailureKind::Local,
                ]
                .map(|k| {
                    metrics
                        .upstream_errors
                        .with_label_values(&[&*name, k.label()])
                });
                let probe_failures = ProbeKind::ALL.map(|k| {
                    metrics
                        .probe_failures
                        .with_label_values(&[&*name, k.label()])
                });
                let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
                let authority = uri.authority().cloned().expect("validated member URL");
                let https = scheme == Scheme::HTTPS;
                let default_port = if https { 443 } else { 80 };
                let port = authority.port_u16().unwrap_or(default_port);
                let host = if port == default_port || authority.port().is_none() {
                    HeaderValue::from_str(authority.host())
                } else {
                    HeaderValue::from_str(&format!("{}:{port}", authority.host()))
                }
                .expect("a validated member's host is a header value");
                let target = conn::Target {
                    host: authority.host().into(),
                    port,
                    tls: https.then(|| (connector.clone(), server_name.clone())),
                };
                // The gauge's series is made at 0 for a new member and left as it is for one a
                // reload keeps, until `carry_health` or a probe sets it.
                Member {
                    authority,
                    target,
                    host,
                    health: AtomicU8::new(Health::Unknown as u8),
                    failures: AtomicU32::new(0),
                    successes: AtomicU32::new(0),
                    outstanding: AtomicUsize::new(0),
                    connections: metrics.upstream_connections.member(&name),
                    healthy_gauge: metrics.member_healthy.with_label_values(&[&*name]),
                    duration: metrics.upstream_duration.with_label_values(&[&*name]),
                    requests: StatusCounters::new(&metrics.upstream_requests, &name),
                    errors,
                    probe_failures,
                    name,
                }
            })
            .collect();
        let idle = Arc::new(idle::Idle::new(
            members.len(),
            config.max_idle_per_member,
            config.idle_timeout,
        ));
        Ok(Pool {
            members,
            idle,
            balance: config.balance,
            next: AtomicUsize::new(0),
            response_timeout: config.response_timeout,
            config: config.clone(),
            probes: tokio_util::sync::CancellationToken::new(),
        })
    }

    pub fn config(&self) -> &Upstream {
        &self.config
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Starts the active health probes (SPEC §7); they stop when the pool is dropped.
    pub fn start_probes(self: &Arc<Self>) {
        health::start(self);
    }

    /// Whether a probe has found some member healthy (members not yet probed do not count).
    pub fn any_healthy(&self) -> bool {
        self.members.iter().any(|m| m.health() == Health::Healthy)
    }

    /// Takes over the health of the members `previous` also has, so that a reload that builds a
    /// new pool neither sends traffic to a member known to be down nor turns `/ready` 503 until
    /// the new pool's first probes; members new to the pool start [`Health::Unknown`].
    pub fn carry_health(&self, previous: &Pool) {
        for member in &self.members {
            if let Some(old) = previous.members.iter().find(|m| m.name == member.name) {
                member.set_health(old.health());
                member
                    .failures
                    .store(old.failures.load(Ordering::Relaxed), Ordering::Relaxed);
                member
                    .successes
                    .store(old.successes.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }

    /// Writes a cleared request for the first member to try ([`Pool::send`] sends it). The
    /// target is sliced from the client's read buffer; an exchange drops it once written, but a
    /// copy kept for another attempt, across a long poll's minutes, would keep that 8 KiB buffer
    /// alive as long (issue 16): it is detached, when there can be another.
    pub fn prepare(&self, clearance: Clearance, lines: forwarding::Lines) -> Sending {
        let (method, sliced, headers, body) = clearance.into_parts();
        let target = if self.members.len() > 1 {
            detached(&sliced)
        } else {
            sliced
        };
        let mut sending = Sending {
            method,
            attempt: None,
            retry: None,
            tried: balance::Tried::default(),
        };
        self.next_attempt(&mut sending, target, headers, lines, body);
        sending
    }

    /// Picks the next member and writes the request for it, keeping copies for another attempt
    /// only while one is possible and the body can be sent again; no attempt when every member
    /// that takes traffic was tried.
    fn next_attempt(
        &self,
        sending: &mut Sending,
        target: ByteString,
        headers: Headers,
        lines: forwarding::Lines,
        body: UpstreamBody,
    ) {
        let Some(index) = balance::pick(self.balance, &self.members, &self.next, &sending.tried)
        else {
            return;
        };
        sending.tried.insert(index);
        let can_retry = sending.tried.count() < self.members.len();
        // A body held in memory is copied; a streamed one is taken back from this attempt if
        // its connection cannot be made (`None` here).
        let retry_body = can_retry.then(|| body.try_clone());
        // The copy kept for another attempt lives as long as this one's exchange: detached, so
        // that it does not keep the client's read buffer either.
        sending.retry = retry_body.map(|body| {
            Box::new(Retry {
                target: target.clone(),
                headers: headers.detached(),
                lines: lines.detached(),
                body,
            })
        });
        sending.attempt =
            Some(self.attempt(index, &sending.method, target, headers, Some(&lines), body));
    }

    /// An idle connection to member `index` with the request written into its buffer, or the
    /// request written for a new connection. A forwarded request comes with ringfence's
    /// `lines` (its Host the member's unless the client's is kept); a health probe's headers
    /// are written as they are.
    fn attempt(
        &self,
        index: usize,
        method: &Method,
        target: ByteString,
        headers: Headers,
        lines: Option<&forwarding::Lines>,
        body: UpstreamBody,
    ) -> Attempt {
        let mut conn = self.idle.take(index);
        let forwarded = lines.map(|lines| (lines, &self.members[index].host));
        let out = conn::Outgoing::write(conn.as_mut(), method, target, headers, forwarded, body);
        Attempt { index, conn, out }
    }

    /// Sends a prepared request to a member, trying the next one when the failure happened before
    /// anything was sent (connect or TLS), or when an idempotent request's connection broke before
    /// any answer; in both cases only if the body can be sent again. `sending` is borrowed, not
    /// taken: the caller's future holds the request once across the wait, not each level of it.
    /// A plain function that returns its future: an async one keeps its arguments twice in it,
    /// as they came and as moved into its body (issue 16).
    /// Its warnings go in `log`'s span.
    #[allow(clippy::manual_async_fn)]
    pub fn send<'p, 's>(
        &'p self,
        sending: &'s mut Sending,
        log: &'s dyn RequestSpan,
    ) -> impl Future<Output = Result<Answer<'p>, UpstreamError>> + Send + use<'p, 's> {
        async move {
            let mut last: Option<UpstreamError> = None;
            while let Some(attempt) = sending.attempt.as_mut() {
                let index = attempt.index;
                let started = Instant::now();
                let in_flight = Outstanding::begin(&self.members[index]);
                let result = deadline::within(
                    deadline::Kind::Response,
                    crate::clock::after(started.into(), self.response_timeout),
                    self.exchange(&sending.method, attempt),
                )
                .await;
                // This attempt's connection, if it failed, is closed (below: a streamed body is
                // taken back from it first).
                let failed = sending.attempt.take();
                let member = in_flight.0;
                drop(in_flight);
                let (kind, source) = match result {
                    Ok(Ok(response)) => {
                        member.failures.store(0, Ordering::Relaxed);
                        member.duration.observe(started.elapsed().as_secs_f64());
                        member.requests.inc(response.status());
                        return Ok(Answer {
                            response,
                            member,
                            index,
                        });
                    }
                    Ok(Err(e @ conn::Error::Body(_))) => {
                        return Err(UpstreamError {
                            kind: FailureKind::Client,
                            member: member.name.clone(),
                            source: Box::new(e),
                        });
                    }
                    Ok(Err(e)) => classify(e),
                    Err(elapsed) => (FailureKind::Timeout, Box::new(elapsed) as BoxError),
                };
                let unbegun = failed.and_then(Attempt::unbegun_body);
                member.errors[kind.index()].inc();
                // In the request's span, as every line about it: the member marked unhealthy
                // by this failure too.
                let again = log.span().in_scope(|| {
                    if kind == FailureKind::Local {
                        tracing::warn!(
                            member = member.name(),
                            kind = kind.label(),
                            error = %health::Chain(&*source),
                            "no connection to the pool member for want of a local resource (not held against it)"
                        );
                    } else {
                        tracing::warn!(
                            member = member.name(),
                            kind = kind.label(),
                            error = %health::Chain(&*source),
                            "pool member failed"
                        );
                    }
                    match kind {
                        FailureKind::Connect | FailureKind::Tls => {
                            health::failed(
                                member,
                                self.config.health.unhealthy_after,
                                format_args!(
                                    "a request failed: {} failure: {}",
                                    kind.label(),
                                    health::Chain(&*source)
                                ),
                            );
                            true
                        }
                        // Nothing was sent and the member is not at fault; another member may
                        // still be reached (ephemeral ports run out per destination).
                        FailureKind::Local => true,
                        // The connection broke before any answer (typically a keep-alive
                        // connection the member closed as the request went out): RFC 9110
                        // §9.2.2 lets an idempotent request be sent again.
                        FailureKind::Protocol => idempotent(&sending.method),
                        FailureKind::Timeout | FailureKind::Client => false,
                    }
                });
                last = Some(UpstreamError {
                    kind,
                    member: member.name.clone(),
                    source,
                });
                let retry = sending.retry.take().filter(|_| again).map(|retry| *retry);
                match retry.and_then(|mut retry| Some((retry.body.take().or(unbegun)?, retry))) {
                    Some((body, retry)) => {
                        self.next_attempt(sending, retry.target, retry.headers, retry.lines, body)
                    }
                    // Nothing to send again; the round robin still moves on, as it did when the pick
                    // came with the body.
                    None => {
                        let _ =
                            balance::pick(self.balance, &self.members, &self.next, &sending.tried);
                    }
                }
            }
            Err(last.unwrap_or_else(|| UpstreamError {
                kind: FailureKind::Connect,
                member: "pool".into(),
                source: "no healthy member".into(),
            }))
        }
    }
}

/// A cleared request on its way to the pool ([`Pool::prepare`]): written for the member it
/// tries, with copies for another attempt while one is possible.
pub struct Sending {
    method: Method,
    attempt: Option<Attempt>,
    /// Boxed: most requests have none (one member, or a body that cannot be sent again), and
    /// every request's future, a held long poll's for minutes, would keep room for one.
    retry: Option<Box<Retry>>,
    tried: balance::Tried,
}

/// What another attempt sends: copies of its own, none of them a slice of the client's buffer.
struct Retry {
    target: ByteString,
    headers: Headers,
    lines: forwarding::Lines,
    /// A copy of a body held in memory; `None` for a streamed body, which only an attempt
    /// whose connection was never made gives back ([`Attempt::unbegun_body`]).
    body: Option<UpstreamBody>,
}

/// One attempt on one member: an idle connection with the request in its buffer, or the request
/// written for a new connection.
struct Attempt {
    index: usize,
    conn: Option<conn::Conn>,
    out: conn::Outgoing,
}

impl Attempt {
    /// The streamed body of an attempt that failed without a connection (its connect or TLS
    /// handshake failed, or no local port was left): none of it was sent, so another member
    /// may be sent it whole (SPEC §7; fresh eyes, round 27: a pass-through POST got 503).
    fn unbegun_body(self) -> Option<UpstreamBody> {
        match self.conn {
            None => self.out.into_streamed_body(),
            Some(_) => None,
        }
    }
}

impl Pool {
    /// One exchange with one member: the attempt's idle connection (or a new one), the request
    /// written, the answer's head read. The answer's body gives the connection back when it was
    /// read to its end and both sides let it be reused. A plain function that returns its
    /// future: an async one keeps its arguments twice in it (issue 16).
    #[allow(clippy::manual_async_fn)]
    fn exchange<'a>(
        &'a self,
        method: &'a Method,
        attempt: &'a mut Attempt,
    ) -> impl Future<Output = Result<Response<MemberBody>, conn::Error>> + Send + 'a {
        async move {
            let index = attempt.index;
            let member = &self.members[index];
            let conn = match &mut attempt.conn {
                Some(conn) => conn,
                // Boxed: the connect and TLS handshake's state is large, and every exchange's future
                // (a held long poll's for minutes) would keep room for it, used or not.
                none @ None => none.insert(
                    Box::pin(conn::Conn::connect(
                        &member.target,
                        self.config.connect_timeout,
                        &member.connections,
                    ))
                    .await?,
                ),
            };
            let (head, closes) = conn.exchange(method, &mut attempt.out).await?;
            let Some(conn) = attempt.conn.take() else {
                // It was just used.
                return Err(conn::Error::Closed);
            };
            let home = (head.keep_alive && !closes).then(|| conn::Home {
                idle: Arc::clone(&self.idle),
                member: index,
            });
            let mut response = Response::new(MemberBody::new(conn, head.framing, home));
            *response.status_mut() = head.status;
            if let Some(reason) = head.reason {
                response.extensions_mut().insert(reason);
            }
            *response.version_mut() = head.version;
            *response.headers_mut() = head.headers;
            Ok(response)
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The span a request's log lines go in, made when the first is logged (the gateway's request
/// context: making a span costs more than most requests' other work, and few log a line).
pub trait RequestSpan: Sync {
    fn span(&self) -> &tracing::Span;
}

/// `target` in storage of its own, not a slice of the buffer it was parsed from.
fn detached(target: &ByteString) -> ByteString {
    ByteString::from(&**target)
}

/// Counts a request against its member for `least_requests` until dropped, so a request whose
/// client went away (its future dropped mid-await) is not counted for ever.
struct Outstanding<'m>(&'m Member);

impl<'m> Outstanding<'m> {
    fn begin(member: &'m Member) -> Outstanding<'m> {
        member.outstanding.fetch_add(1, Ordering::Relaxed);
        member.connections.busy().fetch_add(1, Ordering::Relaxed);
        Outstanding(member)
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.0.connections.busy().fetch_sub(1, Ordering::Relaxed);
    }
}

/// RFC 9110 §9.2.2.
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Connect and TLS failures happen before a byte of the request is sent; anything else after.
/// A connect that failed for want of a local resource is [`FailureKind::Local`]; a handshake
/// that failed without a TLS error (the member closed the connection) counts as a connect
/// failure, as it did under hyper-rustls; a broken request body is the client's.
fn classify(e: conn::Error) -> (FailureKind, BoxError) {
    let kind = match &e {
        conn::Error::Connect(io) if local_resource_error(io).is_some() => FailureKind::Local,
        conn::Error::Connect(_) | conn::Error::ConnectTimeout(_) => FailureKind::Connect,
        conn::Error::Tls(io) if caused_by_tls(io) => FailureKind::Tls,
        conn::Error::Tls(_) => FailureKind::Connect,
        conn::Error::Body(_) => FailureKind::Client,
        _ => FailureKind::Protocol,
    };
    (kind, Box::new(e))
}

/// The errno of the first `io::Error` in the chain that has one, when it says this process or host ran out of
/// something, not that the member failed: descriptors (EMFILE, ENFILE), socket buffers (ENOBUFS),
/// memory (ENOMEM), or ephemeral ports (EADDRNOTAVAIL from `connect`).
fn local_resource_error(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    use rustix::io::Errno;
    const LOCAL: [Errno; 5] = [
        Errno::MFILE,
        Errno::NFILE,
        Errno::NOBUFS,
        Errno::NOMEM,
        Errno::ADDRNOTAVAIL,
    ];
    let os_error = |error: &(dyn std::error::Error + 'static)| {
        error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
    };
    first_in_chain(e, &|error| os_error(error).is_some())
        .and_then(os_error)
        .filter(|&code| LOCAL.iter().any(|l| l.raw_os_error() == code))
}

/// Whether a rustls error is anywhere in the chain.
fn caused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    in_chain(e, &|error| error.is::<rustls::Error>())
}

/// The first error of type `T` in the chain (see [`first_in_chain`]).
fn find<'e, T: std::error::Error + 'static>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    first_in_chain(e, &|error| error.is::<T>()).and_then(|error| error.downcast_ref::<T>())
}

/// Whether `found` holds for an error anywhere in the chain (see [`first_in_chain`]).
fn in_chain(
    e: &(dyn std::error::Error + 'static),
    found: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    first_in_chain(e, found).is_some()
}

/// The first error in the chain for which `found` holds, looking inside wrapping `io::Error`s
/// too (whose `source()` skips the error they wrap).
fn first_in_chain<'e>(
    e: &'e (dyn std::error::Error + 'static),
    found: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> Option<&'e (dyn std::error::Error + 'static)> {
    if found(e) {
        return Some(e);
    }
    let wrapped = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| first_in_chain(inner, found));
    wrapped.or_else(|| e.source().and_then(|source| first_in_chain(source, found)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands for hyper-util's `ConnectError`: a message, with the socket's error as its source.
    #[derive(Debug, thiserror::Error)]
    #[error("tcp open error")]
    struct Connect(#[source] std::io::Error);

    #[test]
    fn running_out_of_local_resources_is_told_apart_from_a_failing_member() {
        use rustix::io::Errno;
        for errno in [
            Errno::MFILE,
            Errno::NFILE,
            Errno::NOBUFS,
            Errno::NOMEM,
            Errno::ADDRNOTAVAIL,
        ] {
            let code = errno.raw_os_error();
            let direct = Connect(std::io::Error::from_raw_os_error(code));
            assert_eq!(local_resource_error(&direct), Some(code), "{errno:?}");
            // As hyper-rustls and hyper-util box it: inside an io::Error of their own.
            let wrapped = std::io::Error::other(Connect(std::io::Error::from_raw_os_error(code)));
            assert_eq!(local_resource_error(&wrapped), Some(code), "{errno:?}");
        }
        for errno in [
            Errno::CONNREFUSED,
            Errno::HOSTUNREACH,
            Errno::NETUNREACH,
            Errno::TIMEDOUT,
            Errno::CONNRESET,
        ] {
            let e = Connect(std::io::Error::from_raw_os_error(errno.raw_os_error()));
            assert_eq!(local_resource_error(&e), None, "{errno:?}");
        }
        let plain = Connect(std::io::Error::other("no errno"));
        assert_eq!(local_resource_error(&plain), None);
    }
}

#[cfg(test)]
mod detached_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The detached copy is the same target as the one sliced from a request line, for any
        /// target a request line could carry (the copy replaced `clone()`).
        #[test]
        fn detached_is_the_same_target(target in "[!-~]{0,80}") {
            let line = bytes::Bytes::from(format!("/{target}"));
            if let Ok(read) = crate::request::RequestTarget::parse(line.slice(..)) {
                let sliced = read.origin_form();
                let copy = detached(&sliced);
                prop_assert_eq!(&copy, &sliced);
                // Its storage is its own: the request line's buffer is not shared.
                prop_assert!(!std::ptr::eq(copy.as_ptr(), sliced.as_ptr()));
            }
        }
    }

    #[test]
    fn detached_keeps_the_asterisk_and_the_root() {
        for target in [
            "*",
            "/",
            "/a?b=1",
            "/ucwa/oauth/v1/applications/192/events?ack=1",
        ] {
            let target = ByteString::from_static(target);
            assert_eq!(detached(&target), target);
        }
    }
}
