//! A request's journey, carried in one place: snapshot → [`judge::admit`] → (guarded?) body ≤
//! cap → [`judge::Pending::judge`] → audit + metrics → refuse here | forward → response streamed
//! back. Every decision is the judge's; the gateway only reads, records and carries.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, Response, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::audit::{self, Record};
use crate::forwarding::{self, Forwarded, X_REQUEST_ID};
use crate::judge::{self, Admission, Clearance, Ruling, Traffic};
use crate::listener::{BodyError, ClientBody};
use crate::metrics::Metrics;
use crate::policy::Organisation;
use crate::reject::{prefers_xml, Rejection};
use crate::state::{Shared, Snapshot};
use crate::upstream::{FailureKind, UpstreamBody};

/// The body of every answer: the member's own, streamed, or one ringfence wrote.
pub type ResponseBody = Either<Incoming, Full<Bytes>>;

/// What the gateway knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client: SocketAddr,
    pub tls: bool,
    /// The server name the TLS client asked for (SNI), if any.
    pub sni: Option<Arc<str>>,
}

/// Serves the requests of one connection.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    connection: Connection,
    /// The connection's client address (the peer, or the PROXY header's source), formatted once
    /// per connection for X-Forwarded-For.
    client_ip: HeaderValue,
    /// Guarded bodies this connection may be reading at once ([`BODY_READS_PER_CONNECTION`]).
    reads: Arc<tokio::sync::Semaphore>,
}

/// How many guarded bodies one connection's requests are read at once. An HTTP/2 client could
/// otherwise have every stream's body (up to `max_batch_bytes` each) held in memory together:
/// 256 MiB per connection (fresh-eyes round 4, F3). The others wait, unread, and HTTP/2 flow
/// control (one connection window) bounds what they can send meanwhile.
const BODY_READS_PER_CONNECTION: usize = 4;

/// One request's facts that every stage reads.
struct Ctx<'s> {
    snapshot: &'s Snapshot,
    request_id: HeaderValue,
    version: Version,
    xml: bool,
    /// Who the client is: the connection's address, or behind a trusted proxy the one its
    /// `X-Forwarded-For` names ([`crate::client`]).
    client: IpAddr,
}

impl Ctx<'_> {
    /// The request id as text: log fields take it as a string, never as a `HeaderValue`, whose
    /// Debug form is quoted.
    fn id(&self) -> &str {
        // Always visible ASCII: a client id is kept only when it is, and ours are hex.
        self.request_id.to_str().unwrap_or("")
    }
}

impl Gateway {
    pub fn new(shared: Arc<Shared>, connection: Connection) -> Gateway {
        let client_ip = HeaderValue::from_str(&connection.client.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        Gateway {
            shared,
            connection,
            client_ip,
            reads: Arc::new(tokio::sync::Semaphore::new(BODY_READS_PER_CONNECTION)),
        }
    }

    pub async fn handle(
        self,
        request: Request<ClientBody>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let started = Instant::now();
        let snapshot = self.shared.snapshot();
        let (parts, body) = request.into_parts();
        let request_id = forwarding::request_id(&parts.headers);
        let ctx = Ctx {
            snapshot: &snapshot,
            request_id: request_id.clone(),
            version: parts.version,
            xml: prefers_xml(parts.headers.get(header::ACCEPT)),
            client: snapshot.config.server.trusted_proxies.client(
                self.connection.client.ip(),
                parts.headers.get_all(forwarding::X_FORWARDED_FOR),
            ),
        };
        // Every log line about this request carries its id, as the plain string the audit trail
        // and the X-Request-Id header show, and who the client is.
        let span = tracing::info_span!("request", request_id = ctx.id(), client = %ctx.client);
        let (traffic, mut response) = self.serve(&ctx, parts, body).instrument(span).await;
        response.headers_mut().insert(X_REQUEST_ID, request_id);
        self.shared.metrics.answered(
            traffic.label(),
            response.status(),
            started.elapsed().as_secs_f64(),
        );
        Ok(response)
    }

    async fn serve(
        &self,
        ctx: &Ctx<'_>,
        parts: http::request::Parts,
        body: ClientBody,
    ) -> (Traffic, Response<ResponseBody>) {
        let config = &ctx.snapshot.config;
        let sni = self.connection.sni.as_deref();
        let pending = match judge::admit(parts, config, sni) {
            Admission::Pass(passed) => {
                let host = passed.host().clone();
                let clearance = passed.with_body(UpstreamBody::from_client(body));
                return (
                    Traffic::Passthrough,
                    self.forward(ctx, &host, judge::TARGET, clearance).await,
                );
            }
            Admission::Refused(refused) => {
                if let Some(ruling) = &refused.ruling {
                    self.record(ctx, &refused.host, ruling, None);
                }
                let response = self.refuse(ctx, refused.rejection, refused.parameter, true);
                discard_after_answer(ctx.version, body);
                return (refused.traffic, response);
            }
            Admission::Guarded(pending) => pending,
        };
        let host = pending.host().clone();
        let parameter = pending.parameter();
        let mut body = body;
        let reading = self.reads.acquire().await;
        let read = read_body(&mut body, pending.body_limit(), &self.shared.metrics);
        let (verdict, unread) = match read.await {
            Ok(bytes) => (pending.judge(bytes), false),
            Err(rejection) => {
                discard_after_answer(ctx.version, body);
                (pending.unreadable(rejection), true)
            }
        };
        drop(reading);
        let response = match verdict.outcome {
            Ok(clearance) => {
                let response = self.forward(ctx, &host, parameter, clearance).await;
                let status = Some(response.status().as_u16());
                for ruling in &verdict.rulings {
                    self.record(ctx, &host, ruling, status);
                }
                response
            }
            Err(refused) => {
                for ruling in &verdict.rulings {
                    self.record(ctx, &host, ruling, None);
                }
                self.refuse(ctx, refused.rejection, refused.parameter, unread)
            }
        };
        (Traffic::Guarded, response)
    }

    /// Counts the decision and writes its audit line.
    fn record(
        &self,
        ctx: &Ctx<'_>,
        host: &HeaderValue,
        ruling: &Ruling<'_>,
        upstream_status: Option<u16>,
    ) {
        let organisation = ruling.organisation.map_or("none", Organisation::name);
        let decision = if ruling.allowed() { "allow" } else { "deny" };
        let reason = ruling.reason();
        self.shared
            .metrics
            .decisions
            .with_label_values(&[organisation, ruling.resource, decision, reason])
            .inc();
        self.shared.audit.record(&Record {
            ts: audit::now(),
            request_id: ctx.id(),
            client: &ctx.client.to_string(),
            host: host.to_str().unwrap_or(""),
            method: ruling.method.as_str(),
            path: &ruling.path,
            resource: ruling.resource,
            organisation,
            targets: &ruling.targets,
            decision,
            reason,
            rule: ruling.rule,
            upstream_status,
        });
    }

    /// Sends a cleared request to the pool and streams the answer back unchanged. `parameter`
    /// is what a refusal here would name: the request's guard's, or `target`.
    async fn forward(
        &self,
        ctx: &Ctx<'_>,
        host: &HeaderValue,
        parameter: &str,
        mut clearance: Clearance,
    ) -> Response<ResponseBody> {
        let snapshot = ctx.snapshot;
        forwarding::set_headers(
            clearance.headers_mut(),
            &Forwarded {
                client_ip: &self.client_ip,
                tls: self.connection.tls,
                host,
                request_id: &ctx.request_id,
                preserve_host: snapshot.config.upstream.preserve_host,
                multiplexed: ctx.version >= Version::HTTP_2,
            },
        );
        match snapshot.pool.send(clearance).await {
            Ok(answer) => {
                let (mut parts, body) = answer.response.into_parts();
                forwarding::strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Either::Left(body))
            }
            Err(e) if e.kind == FailureKind::Client => {
                tracing::debug!(request_id = ctx.id(), error = %e, "the request body broke");
                let rejection = match e.client_timeout() {
                    Some(timeout) => timed_out(timeout, &self.shared.metrics),
                    None => Rejection::BadBody,
                };
                self.refuse(ctx, rejection, parameter, true)
            }
            Err(e) => {
                tracing::warn!(request_id = ctx.id(), error = %e, "no answer from the pool");
                let rejection = match e.kind {
                    FailureKind::Connect => Rejection::UpstreamUnavailable,
                    FailureKind::Tls | FailureKind::Protocol | FailureKind::Client => {
                        Rejection::UpstreamFailure
                    }
                    FailureKind::Timeout => Rejection::UpstreamTimeout,
                };
                self.refuse(ctx, rejection, parameter, false)
            }
        }
    }

    /// A UCWA error answer; `unread` when the request body was refused unread, so that an
    /// HTTP/1 connection closes rather than read its rest as a next request.
    fn refuse(
        &self,
        ctx: &Ctx<'_>,
        rejection: Rejection,
        parameter: &str,
        unread: bool,
    ) -> Response<ResponseBody> {
        let id = ctx.id();
        tracing::debug!(request_id = id, reason = rejection.reason(), "refused");
        let mut response = rejection.render(id, parameter, ctx.xml).map(Either::Right);
        if unread && ctx.version <= Version::HTTP_11 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Reads a guarded body, at most `max` bytes. The body's own clocks (`body_read_timeout`
/// between reads, `body_deadline` in all) end a slow one; a timeout is counted by kind. The body
/// is borrowed so that what is left of a refused one can be discarded.
async fn read_body(
    body: &mut ClientBody,
    max: usize,
    metrics: &Metrics,
) -> Result<Bytes, Rejection> {
    // Most bodies are one frame, kept without a copy; more are joined.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(BodyError::Read(_)) => return Err(Rejection::BadBody),
            Err(timeout) => return Err(timed_out(&timeout, metrics)),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing the pool reads as a target
        };
        let read = first.as_ref().map_or(0, Bytes::len) + joined.len() + data.len();
        if read > max {
            return Err(Rejection::BodyTooLarge);
        }
        match &first {
            None if joined.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    joined.extend_from_slice(&f);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// Counts a body that did not arrive in time (`ringfence_client_body_timeouts_total{kind}`).
fn timed_out(error: &BodyError, metrics: &Metrics) -> Rejection {
    let kind = match error {
        BodyError::Late(_) => "deadline",
        BodyError::Stalled(_) | BodyError::Read(_) => "idle",
    };
    metrics
        .client_body_timeouts
        .with_label_values(&[kind])
        .inc();
    Rejection::BodyTimeout
}

/// How much of a refused HTTP/2 request body is read and thrown away after the answer.
const DISCARD_BYTES: usize = 1 << 20;
const DISCARD_TIME: Duration = Duration::from_secs(10);

/// After answering an HTTP/2 request whose body was refused unread, reads the rest of it (at most
/// [`DISCARD_BYTES`] within [`DISCARD_TIME`]) and throws it away, as nginx discards a request
/// body. Dropped at once, the stream would be reset while the client is still uploading, and
/// clients such as curl 7.88 report that reset (RST_STREAM NO_ERROR, RFC 9113 §8.1) as a stream
/// error instead of the answer. HTTP/1.1 closes the connection instead (`Connection: close`).
fn discard_after_answer(version: Version, mut body: ClientBody) {
    if version != Version::HTTP_2 || body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut left = DISCARD_BYTES;
        let _ = tokio::time::timeout(DISCARD_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                let n = frame.data_ref().map_or(0, Bytes::len);
                match left.checked_sub(n) {
                    Some(l) => left = l,
                    None => return,
                }
            }
        })
        .await;
    });
}
