//! A request's journey, composed in one place: snapshot → route → (guarded?) body ≤ cap →
//! extract → parse → decide → audit + metrics → refuse here | forward → response streamed back.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::audit::{self, Record};
use crate::extract::{self, ExtractError};
use crate::listener::ClientBody;
use crate::policy::{Clearance, Decision, Organisation, Refusal};
use crate::reject::{prefers_xml, Rejection};
use crate::route::{self, Guard, Route};
use crate::state::{Shared, Snapshot};
use crate::target::{Target, TargetError};
use crate::upstream::{FailureKind, UpstreamBody};

/// The body of every answer: the member's own, streamed, or one ringfence wrote.
pub type ResponseBody = Either<Incoming, Full<Bytes>>;

/// What the gateway knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub client: SocketAddr,
    pub tls: bool,
}

/// Serves the requests of one connection.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    connection: Connection,
    /// The client's IP address, formatted once per connection (X-Forwarded-For, audit).
    client_ip: HeaderValue,
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];
/// RFC 9110 §7.6.1: the connection-specific headers (besides those the Connection header names).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TRAILER,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// One request's facts that every stage reads.
struct Ctx<'s> {
    snapshot: &'s Snapshot,
    request_id: HeaderValue,
    /// The Host the organisation is resolved from and the pool receives.
    host: HeaderValue,
    version: Version,
    xml: bool,
    /// Set when the body was refused unread: an HTTP/1 connection must then close.
    close: bool,
}

impl Ctx<'_> {
    fn host(&self) -> &str {
        self.host.to_str().unwrap_or("")
    }
}

/// The parts of one request to a guarded resource that the policy reads; a batch part is one too.
struct Inbound<'r> {
    method: &'r Method,
    query: Option<&'r str>,
    content_type: Option<&'r str>,
    content_encoding: Option<&'r str>,
    body: &'r [u8],
    /// A batch part's `Data:` header, judged as a JSON body.
    data: Option<&'r [u8]>,
}

/// What judging one guarded request found, for the metrics and the audit trail.
struct Facts<'p> {
    organisation: Option<&'p Organisation>,
    targets: Vec<Target>,
    decision: Option<Decision<'p>>,
}

/// The facts and the verdict: a clearance to forward, or the refusal.
struct Judgement<'p> {
    facts: Facts<'p>,
    outcome: Result<Clearance, Rejection>,
}

fn reason(outcome: &Result<Clearance, Rejection>) -> &'static str {
    match outcome {
        Ok(_) => "allowed",
        Err(r) => r.reason(),
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
        }
    }

    pub async fn handle(
        self,
        request: Request<ClientBody>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let started = Instant::now();
        let snapshot = self.shared.snapshot();
        let (parts, body) = request.into_parts();
        let request_id = request_id(&parts.headers);
        let mut ctx = Ctx {
            snapshot: &snapshot,
            request_id: request_id.clone(),
            host: HeaderValue::from_static(""),
            version: parts.version,
            xml: prefers_xml(parts.headers.get(header::ACCEPT)),
            close: false,
        };
        // Every log line about this request carries its id.
        let span = tracing::info_span!("request", id = request_id.to_str().unwrap_or(""));
        let (route_label, mut response) = match host_of(&parts) {
            Ok(host) => {
                ctx.host = host;
                self.route(ctx, parts, body).instrument(span).await
            }
            Err(rejection) => {
                ctx.close = true;
                let _entered = span.enter();
                ("passthrough", self.refuse(&ctx, rejection, "target"))
            }
        };
        response.headers_mut().insert(X_REQUEST_ID, request_id);
        self.shared.metrics.answered(
            route_label,
            response.status(),
            started.elapsed().as_secs_f64(),
        );
        Ok(response)
    }

    async fn route(
        &self,
        ctx: Ctx<'_>,
        parts: Parts,
        body: ClientBody,
    ) -> (&'static str, Response<ResponseBody>) {
        let guards = &ctx.snapshot.config.guards;
        let path = parts.uri.path();
        if has_method_override(&parts.headers) && under_ucwa(path) {
            let mut ctx = ctx;
            ctx.close = true;
            return (
                "guarded",
                self.refuse(&ctx, Rejection::MethodOverride, "target"),
            );
        }
        match route::classify(path, guards) {
            Route::Passthrough(unguarded) => {
                let body = UpstreamBody::from_client(body);
                let clearance = Clearance::unguarded(unguarded);
                (
                    "passthrough",
                    self.forward(&ctx, parts, body, clearance).await,
                )
            }
            Route::BadPath => {
                let mut ctx = ctx;
                ctx.close = true;
                ("guarded", self.refuse(&ctx, Rejection::BadPath, "target"))
            }
            Route::Batch => ("guarded", self.batch(ctx, parts, body).await),
            Route::Guarded(guard) => ("guarded", self.guarded(ctx, parts, body, guard).await),
        }
    }

    /// A guarded resource: every target is found, parsed and judged before anything is sent.
    async fn guarded(
        &self,
        mut ctx: Ctx<'_>,
        parts: Parts,
        body: ClientBody,
        guard: &Guard,
    ) -> Response<ResponseBody> {
        let max = ctx.snapshot.config.server.max_body_bytes;
        let bytes = match read_body(&parts.headers, body, max).await {
            Ok(b) => b,
            Err(r) => {
                ctx.close = true;
                let facts = self.facts(&ctx);
                self.record(
                    &ctx,
                    &parts.method,
                    parts.uri.path(),
                    &guard.resource,
                    &facts,
                    r.reason(),
                    None,
                );
                return self.refuse(&ctx, r, &guard.parameter);
            }
        };
        let content_encoding = content_encoding(&parts.headers);
        let inbound = Inbound {
            method: &parts.method,
            query: parts.uri.query(),
            content_type: content_type(&parts.headers),
            content_encoding: content_encoding.as_deref(),
            body: &bytes,
            data: None,
        };
        let Judgement { facts, outcome } = self.judge(&ctx, &inbound, guard);
        let method = parts.method.clone();
        let path = parts.uri.path().to_owned();
        match outcome {
            Ok(clearance) => {
                let body = UpstreamBody::Buffered(Some(bytes));
                let response = self.forward(&ctx, parts, body, clearance).await;
                if !facts.targets.is_empty() {
                    let status = Some(response.status().as_u16());
                    self.record(
                        &ctx,
                        &method,
                        &path,
                        &guard.resource,
                        &facts,
                        "allowed",
                        status,
                    );
                }
                response
            }
            Err(r) => {
                self.record(
                    &ctx,
                    &method,
                    &path,
                    &guard.resource,
                    &facts,
                    r.reason(),
                    None,
                );
                self.refuse(&ctx, r, &guard.parameter)
            }
        }
    }

    /// A batch: every embedded request to a guarded resource is judged as if sent alone, with
    /// the outer Host; one refusal refuses the whole batch.
    async fn batch(
        &self,
        mut ctx: Ctx<'_>,
        parts: Parts,
        body: ClientBody,
    ) -> Response<ResponseBody> {
        let max = ctx.snapshot.config.server.max_batch_bytes;
        let path = parts.uri.path().to_owned();
        let bytes = match read_body(&parts.headers, body, max).await {
            Ok(b) => b,
            Err(r) => {
                ctx.close = true;
                let facts = self.facts(&ctx);
                self.record(
                    &ctx,
                    &parts.method,
                    &path,
                    "batch",
                    &facts,
                    r.reason(),
                    None,
                );
                return self.refuse(&ctx, r, "target");
            }
        };
        match self.judge_batch(&ctx, &parts, &bytes) {
            Ok(clearance) => {
                let body = UpstreamBody::Buffered(Some(bytes));
                self.forward(&ctx, parts, body, clearance).await
            }
            Err((r, parameter)) => self.refuse(&ctx, r, &parameter),
        }
    }

    fn judge_batch(
        &self,
        ctx: &Ctx<'_>,
        parts: &Parts,
        bytes: &[u8],
    ) -> Result<Clearance, (Rejection, Box<str>)> {
        let whole = |r: Rejection| {
            let facts = self.facts(ctx);
            self.record(
                ctx,
                &parts.method,
                parts.uri.path(),
                "batch",
                &facts,
                r.reason(),
                None,
            );
            (r, Box::from("target"))
        };
        if bytes.is_empty() {
            return Ok(Clearance::untargeted());
        }
        if content_encoding(&parts.headers)
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"))
        {
            return Err(whole(Rejection::EncodedBody));
        }
        let content_type = content_type(&parts.headers).unwrap_or("");
        let boundary =
            extract::batch::boundary(content_type).map_err(|e| whole(batch_rejection(e)))?;
        let embedded =
            extract::batch::parse(bytes, boundary).map_err(|e| whole(batch_rejection(e)))?;
        let guards = &ctx.snapshot.config.guards;
        let mut clearance = None;
        for part in &embedded {
            let path = part.path();
            let overridden = METHOD_OVERRIDES
                .iter()
                .any(|h| part.header_values(h.as_str()).next().is_some());
            if overridden && under_ucwa(path) {
                return Err(whole(Rejection::MethodOverride));
            }
            let guard = match route::classify(path, guards) {
                Route::Passthrough(unguarded) => {
                    clearance.get_or_insert(Clearance::unguarded(unguarded));
                    continue;
                }
                Route::BadPath => return Err(whole(Rejection::BadPath)),
                Route::Batch => return Err(whole(Rejection::BadBatch)),
                Route::Guarded(g) => g,
            };
            let Ok(method) = Method::from_bytes(part.method.as_bytes()) else {
                return Err(whole(Rejection::BadBatch));
            };
            let mut data = part.header_values("data");
            let first_data = data.next();
            if data.next().is_some() {
                return Err(whole(Rejection::Duplicate));
            }
            let inbound = Inbound {
                method: &method,
                query: part.query(),
                content_type: part.header_values("content-type").next(),
                content_encoding: part.header_values("content-encoding").next(),
                body: part.body,
                data: first_data.map(str::as_bytes),
            };
            if part.header_values("content-type").nth(1).is_some()
                || part.header_values("content-encoding").nth(1).is_some()
            {
                return Err(whole(Rejection::BadBatch));
            }
            let Judgement { facts, outcome } = self.judge(ctx, &inbound, guard);
            if !facts.targets.is_empty() || outcome.is_err() {
                self.record(
                    ctx,
                    &method,
                    path,
                    &guard.resource,
                    &facts,
                    reason(&outcome),
                    None,
                );
            }
            match outcome {
                Ok(c) => clearance = Some(c),
                Err(r) => return Err((r, guard.parameter.clone())),
            }
        }
        clearance.ok_or_else(|| whole(Rejection::BadBatch))
    }

    /// Finds every target the back end could act on, requires them to agree, and judges it.
    fn judge<'p>(&self, ctx: &Ctx<'p>, req: &Inbound<'_>, guard: &Guard) -> Judgement<'p> {
        let policy = &ctx.snapshot.config.policy;
        let organisation = policy.organisation_for(ctx.host());
        let mut judgement = Judgement {
            facts: Facts {
                organisation,
                targets: Vec::new(),
                decision: None,
            },
            outcome: Err(Rejection::Missing),
        };
        let param = &*guard.parameter;
        let found = (|| {
            let query = match req.query {
                Some(q) => extract::from_query(q, param)?,
                None => None,
            };
            let body = extract::from_body(req.content_type, req.content_encoding, req.body, param)?;
            let data = match req.data {
                Some(d) => extract::from_body(Some("application/json"), None, d, param)?,
                None => None,
            };
            Ok::<_, ExtractError>([query, body, data])
        })();
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                judgement.outcome = Err(extract_rejection(e));
                return judgement;
            }
        };
        for raw in found.iter().flatten() {
            match Target::parse(raw, policy.max_target_length()) {
                Ok(t) => judgement.facts.targets.push(t),
                Err(e) => {
                    judgement.outcome = Err(match e {
                        TargetError::TooLong { .. } => Rejection::TooLong,
                        TargetError::Malformed(_) => Rejection::Malformed,
                    });
                    return judgement;
                }
            }
        }
        let Some(target) = judgement.facts.targets.first() else {
            judgement.outcome = if req.method == Method::POST {
                Err(Rejection::Missing)
            } else {
                Ok(Clearance::untargeted())
            };
            return judgement;
        };
        if judgement.facts.targets.iter().any(|t| t != target) {
            judgement.outcome = Err(Rejection::Conflict);
            return judgement;
        }
        let decision = policy.decide(organisation, target);
        judgement.outcome = match decision.refusal {
            None => Clearance::permitted(&decision).ok_or(Rejection::NotAllowed),
            Some(Refusal::NotAllowed) => Err(Rejection::NotAllowed),
            Some(Refusal::Denied) => Err(Rejection::Denied),
            Some(Refusal::NoOrganisation) => Err(Rejection::NoOrganisation),
            Some(Refusal::Malformed) => Err(Rejection::Malformed),
        };
        judgement.facts.decision = Some(decision);
        judgement.facts.targets.truncate(1);
        judgement
    }

    /// The facts of a refusal decided before any target was read (body too large, bad batch ...).
    fn facts<'p>(&self, ctx: &Ctx<'p>) -> Facts<'p> {
        Facts {
            organisation: ctx.snapshot.config.policy.organisation_for(ctx.host()),
            targets: Vec::new(),
            decision: None,
        }
    }

    /// Counts the decision and writes its audit line.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        ctx: &Ctx<'_>,
        method: &Method,
        path: &str,
        resource: &str,
        facts: &Facts<'_>,
        reason: &'static str,
        upstream_status: Option<u16>,
    ) {
        let organisation = facts.organisation.map_or("none", Organisation::name);
        let decision = if reason == "allowed" { "allow" } else { "deny" };
        self.shared
            .metrics
            .decisions
            .with_label_values(&[organisation, resource, decision, reason])
            .inc();
        self.shared.audit.record(&Record {
            ts: audit::now(),
            request_id: ctx.request_id.to_str().unwrap_or(""),
            client: self.client_ip.to_str().unwrap_or(""),
            host: ctx.host(),
            method: method.as_str(),
            path,
            resource,
            organisation,
            targets: &facts.targets,
            decision,
            reason,
            rule: facts.decision.and_then(|d| d.rule),
            upstream_status,
        });
    }

    /// Sends a cleared request to the pool and streams the answer back unchanged.
    async fn forward(
        &self,
        ctx: &Ctx<'_>,
        parts: Parts,
        body: UpstreamBody,
        clearance: Clearance,
    ) -> Response<ResponseBody> {
        let Parts {
            method,
            uri,
            mut headers,
            ..
        } = parts;
        strip_hop_by_hop(&mut headers);
        let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) => {
                let client = self.client_ip.to_str().unwrap_or("");
                HeaderValue::from_str(&format!("{prior}, {client}")).ok()
            }
            None => Some(self.client_ip.clone()),
        };
        if let Some(v) = forwarded_for {
            headers.insert(X_FORWARDED_FOR, v);
        }
        let proto = if self.connection.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        headers.insert(X_FORWARDED_HOST, ctx.host.clone());
        headers.insert(X_REQUEST_ID, ctx.request_id.clone());
        let snapshot = ctx.snapshot;
        if snapshot.config.upstream.preserve_host && !ctx.host.is_empty() {
            headers.insert(header::HOST, ctx.host.clone());
        } else {
            headers.remove(header::HOST);
        }
        if let UpstreamBody::Buffered(Some(b)) = &body {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
        }
        let path_and_query = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let result = snapshot
            .pool
            .send(clearance, method, path_and_query, headers, body)
            .await;
        match result {
            Ok(answer) => {
                let (mut parts, body) = answer.response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Either::Left(body))
            }
            Err(e) => {
                tracing::warn!(request_id = ?ctx.request_id, error = %e, "no answer from the pool");
                let rejection = match e.kind {
                    FailureKind::Connect => Rejection::UpstreamUnavailable,
                    FailureKind::Tls | FailureKind::Protocol => Rejection::UpstreamFailure,
                    FailureKind::Timeout => Rejection::UpstreamTimeout,
                };
                self.refuse(ctx, rejection, "target")
            }
        }
    }

    fn refuse(
        &self,
        ctx: &Ctx<'_>,
        rejection: Rejection,
        parameter: &str,
    ) -> Response<ResponseBody> {
        let id = ctx.request_id.to_str().unwrap_or("");
        tracing::debug!(request_id = id, reason = rejection.reason(), "refused");
        let mut response = rejection.render(id, parameter, ctx.xml).map(Either::Right);
        if ctx.close && ctx.version <= Version::HTTP_11 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Reads a guarded body up to `max` bytes, refusing what cannot be trusted to frame the same
/// way at the pool (both Content-Length and Transfer-Encoding).
async fn read_body(headers: &HeaderMap, body: ClientBody, max: usize) -> Result<Bytes, Rejection> {
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(Rejection::BadBody);
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(length) = lengths.next() {
        let n: u64 = length
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(Rejection::BadBody)?;
        if lengths.next().is_some() {
            return Err(Rejection::BadBody);
        }
        if n > max as u64 {
            return Err(Rejection::BodyTooLarge);
        }
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Rejection::BodyTooLarge),
        Err(_) => Err(Rejection::BadBody),
    }
}

fn extract_rejection(e: ExtractError) -> Rejection {
    match e {
        ExtractError::Duplicate => Rejection::Duplicate,
        ExtractError::Malformed => Rejection::Malformed,
        ExtractError::BadBody => Rejection::BadBody,
        ExtractError::UnsupportedMediaType => Rejection::UnsupportedMediaType,
        ExtractError::EncodedBody => Rejection::EncodedBody,
    }
}

fn batch_rejection(e: extract::batch::BatchError) -> Rejection {
    use extract::batch::BatchError;
    match e {
        BatchError::NotBatching => Rejection::UnsupportedMediaType,
        BatchError::Boundary
        | BatchError::Framing
        | BatchError::PartHeaders
        | BatchError::RequestLine
        | BatchError::RequestHeaders => Rejection::BadBatch,
    }
}

/// The host the request names: an absolute-form or HTTP/2 authority, else the one Host header.
///
/// Userinfo (`user@`) is refused (RFC 9110 §4.2.4 says to treat it as an error): the organisation
/// would be chosen by the text after the `@` while the pool receives the whole value.
fn host_of(parts: &Parts) -> Result<HeaderValue, Rejection> {
    let host = if let Some(authority) = parts.uri.authority() {
        HeaderValue::from_str(authority.as_str()).map_err(|_| Rejection::BadHost)?
    } else {
        let mut hosts = parts.headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(h), None) if h.to_str().is_ok() => h.clone(),
            (None, None) if parts.version < Version::HTTP_11 => HeaderValue::from_static(""),
            _ => return Err(Rejection::BadHost),
        }
    };
    if !host.is_empty() && !valid_host(host.as_bytes()) {
        return Err(Rejection::BadHost);
    }
    Ok(host)
}

/// `host[:port]` (RFC 9110 §7.2): a reg-name or IPv4 address, or an `[IPv6]` literal. Anything
/// else (userinfo `a@b`, spaces, percent-escapes) could be read differently by the pool than by
/// the organisation lookup, so it is refused.
fn valid_host(host: &[u8]) -> bool {
    let (name, port) = match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host.ends_with(b"]") => (&host[..i], Some(&host[i + 1..])),
        _ => (host, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    let name_ok = match name.strip_prefix(b"[").and_then(|n| n.strip_suffix(b"]")) {
        Some(v6) => std::str::from_utf8(v6).is_ok_and(|v| v.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            !name.is_empty()
                && name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        }
    };
    port_ok && name_ok
}

/// What a header reads as when it cannot be read unambiguously: no media type, coding or
/// grammar accepts it, so a non-empty body is refused.
const UNREADABLE: &str = "\u{fffd}";

/// The request's one Content-Type. Content-Type is a singleton field (RFC 9110 §8.3): when it
/// is sent twice, the pool may act on another line than the first, so several lines (and a value
/// that is not UTF-8) read as [`UNREADABLE`].
fn content_type(headers: &HeaderMap) -> Option<&str> {
    let mut lines = headers.get_all(header::CONTENT_TYPE).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return Some(UNREADABLE);
    }
    Some(first.to_str().unwrap_or(UNREADABLE))
}

/// The request's Content-Encoding list. Several field lines are one comma-separated list (RFC
/// 9110 §5.3), so `identity` on one line cannot hide `gzip` on the next.
fn content_encoding(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    let lines: Vec<&str> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|v| v.to_str().unwrap_or(UNREADABLE))
        .collect();
    match lines.as_slice() {
        [] => None,
        [one] => Some(Cow::Borrowed(one)),
        _ => Some(Cow::Owned(lines.join(", "))),
    }
}

fn has_method_override(headers: &HeaderMap) -> bool {
    METHOD_OVERRIDES.iter().any(|h| headers.contains_key(h))
}

/// Whether IIS would route the path into UCWA (method-override headers are refused there).
fn under_ucwa(path: &str) -> bool {
    let starts = |p: &str| {
        p.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("/ucwa"))
            && matches!(p.as_bytes().get(5), None | Some(b'/'))
    };
    match route::canonical_path(path) {
        Ok(canonical) => starts(&canonical),
        Err(_) => true,
    }
}

/// RFC 9110 §7.6.1: connection-specific headers, and every header the Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names they have, instead of a lookup
    // per hop-by-hop name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// A client's X-Request-Id when it is safe to echo, else a fresh one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if (1..=128).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return v.clone();
        }
    }
    static SEED: LazyLock<u64> = LazyLock::new(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 24];
    let (mixed, count) = id.split_at_mut(16);
    hex(mixed, splitmix(*SEED ^ n));
    hex(count, u64::from(n as u32));
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `value` as lower-case hex filling `out`, zero-padded (as `{:0width$x}` without allocating).
fn hex(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_and_port_syntax_is_accepted_as_a_host() {
        for ok in [
            "lyncweb.contoso.com",
            "a.b:443",
            "10.0.0.1:80",
            "[::1]",
            "[::1]:8443",
            "fe_1.local",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a@b.com", "a b", "a%2eb", "a:", "a:99999x", "[::1", "[zz]:1", ":80", "a/b", "a:1:2",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    fn headers(lines: &[(&'static str, &'static [u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in lines {
            map.append(name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    fn host(uri: &str, hosts: &[&str]) -> Result<HeaderValue, Rejection> {
        let mut request = Request::builder().uri(uri);
        for h in hosts {
            request = request.header(header::HOST, *h);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        host_of(&parts)
    }

    #[test]
    fn the_host_is_the_authority_or_the_one_host_header_without_userinfo() {
        let contoso = HeaderValue::from_static("lyncweb.contoso.com");
        assert_eq!(host("/ucwa", &["lyncweb.contoso.com"]), Ok(contoso.clone()));
        assert_eq!(
            host("http://lyncweb.contoso.com/ucwa", &["other.example"]),
            Ok(contoso)
        );
        assert_eq!(host("/ucwa", &[]), Err(Rejection::BadHost));
        assert_eq!(
            host("/ucwa", &["a.example", "b.example"]),
            Err(Rejection::BadHost)
        );
        assert_eq!(
            host("http://lync.fabrikam.com@lyncweb.contoso.com/ucwa", &[]),
            Err(Rejection::BadHost)
        );
        assert_eq!(
            host("/ucwa", &["lync.fabrikam.com@lyncweb.contoso.com"]),
            Err(Rejection::BadHost)
        );
    }

    #[test]
    fn a_repeated_or_unreadable_content_type_reads_as_no_media_type() {
        let ct = "content-type";
        assert_eq!(content_type(&headers(&[])), None);
        assert_eq!(
            content_type(&headers(&[(ct, b"application/json")])),
            Some("application/json")
        );
        let twice = headers(&[
            (ct, b"application/x-www-form-urlencoded"),
            (ct, b"application/json"),
        ]);
        assert_eq!(content_type(&twice), Some(UNREADABLE));
        let same_twice = headers(&[(ct, b"application/json"), (ct, b"application/json")]);
        assert_eq!(content_type(&same_twice), Some(UNREADABLE));
        assert_eq!(
            content_type(&headers(&[(ct, b"application/json\xff")])),
            Some(UNREADABLE)
        );
        assert_eq!(
            extract::body_kind(content_type(&twice)),
            Err(ExtractError::UnsupportedMediaType)
        );
    }

    #[test]
    fn content_encoding_lines_are_read_as_one_list() {
        let ce = "content-encoding";
        assert_eq!(content_encoding(&headers(&[])), None);
        assert_eq!(
            content_encoding(&headers(&[(ce, b"identity")])).as_deref(),
            Some("identity")
        );
        let hidden = headers(&[(ce, b"identity"), (ce, b"gzip")]);
        assert_eq!(content_encoding(&hidden).as_deref(), Some("identity, gzip"));
        assert_eq!(
            extract::from_body(
                Some("application/json"),
                content_encoding(&hidden).as_deref(),
                br#"{"target":"tel:+1"}"#,
                "target"
            ),
            Err(ExtractError::EncodedBody)
        );
        let identities = headers(&[(ce, b"identity"), (ce, b"Identity")]);
        assert_eq!(
            extract::from_body(
                Some("application/json"),
                content_encoding(&identities).as_deref(),
                br#"{"target":"tel:+1"}"#,
                "target"
            )
            .map(|t| t.map(Cow::into_owned)),
            Ok(Some("tel:+1".to_owned()))
        );
    }
}
