//! A request's journey, carried in one place: snapshot → [`judge::admit`] → (guarded?) body ≤
//! cap → [`judge::Pending::judge`] → audit + metrics → refuse here | forward → response streamed
//! back. Every decision is the judge's; the gateway only reads, records and carries.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Response, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Either};
use once_cell::race::OnceBox;
use tracing::Instrument;

use crate::access::{self, Logged};
use crate::audit::writer::{Line, Reservation};
use crate::audit::{self, Audit, Decided, Severity, Source, Unavailable};
use crate::body::{self, BodyError, ClientBody, UpstreamBody};
use crate::forwarding::{self, Forwarded, RequestIds, X_REQUEST_ID};
use crate::identity::{self, Learning, Learnt, Lesson};
use crate::judge::{self, Admission, Clearance, Ruling};
use crate::metrics::Metrics;
use crate::policy::Organisation;
use crate::ratelimit::{Limited, OrgIndex};
use crate::reject::{prefers_xml, Rejection};
use crate::request;
use crate::route::Traffic;
use crate::state::{Shared, Snapshot};
use crate::upstream::{self, FailureKind, MemberBody, RequestSpan as _, UpstreamError};

/// The body of every answer, with the member's body as ringfence's upstream client reads it.
pub type ResponseBody = body::ResponseBody<MemberBody>;
type Answer = body::Answer<MemberBody>;

/// The rate limits' user key of every request whose path names no single application.
const UNIDENTIFIED: &str = "unidentified";

/// An application belongs to the organisation it was learnt under (the Host of the request the
/// pool answered): a guarded request or batch part for it under another organisation's Host is
/// refused whole, 421 `misdirected`, never judged by that organisation's lists or mode. Without
/// it a user could pick a Host whose organisation allows more, or is in shadow mode (fresh eyes,
/// issue 14, A). Applications not learnt yet are judged by the Host alone.
fn bind_applications<'c>(
    host: &HeaderValue,
    parameter: &'c str,
    applications: &Applications,
    verdict: &mut judge::Verdict<'c>,
) {
    let elsewhere = verdict.rulings.iter().enumerate().any(|(i, ruling)| {
        let organisation = ruling.organisation.map(Organisation::name);
        applications
            .of(i)
            .filter_map(|(_, learnt)| learnt)
            .any(|learnt| learnt.organisation.as_deref() != organisation)
    });
    if elsewhere {
        verdict.refuse_whole(Rejection::Misdirected, parameter, host);
    }
}

/// The applications each ruling's request could be run as, read once for the binding, the
/// rate limits and the trail: any application any reading of its path names, and the request's
/// own (a batch part may be run in the batch's application); and what the pool told us of
/// each, looked up once.
struct Applications {
    outer: Known,
    of_ruling: Vec<Known>,
}

/// A path's applications ([`identity::Read`]) and what was learnt of each.
#[derive(Default)]
struct Known {
    read: identity::Read,
    learnt: Vec<Option<Learnt>>,
}

impl Known {
    fn of(ctx: &Ctx, read: identity::Read) -> Known {
        let identities = &ctx.snapshot.identities;
        let learnt = read.all.iter().map(|a| identities.learnt(a)).collect();
        Known { read, learnt }
    }

    /// The application the trail names for `path` (the one read) and its user, if known.
    fn named<'k>(&'k self, path: &'k str) -> (Option<&'k str>, Option<&'k str>) {
        let Some(named) = self.read.named(path) else {
            return (None, None);
        };
        // Every reading named it, so it is the one application read, lower-cased.
        let user = self
            .read
            .all
            .iter()
            .zip(&self.learnt)
            .find(|(a, _)| a.eq_ignore_ascii_case(named))
            .and_then(|(_, learnt)| learnt.as_ref())
            .map(|learnt| &*learnt.user);
        (Some(named), user)
    }
}

impl Applications {
    fn read(ctx: &Ctx, outer: identity::Read, rulings: &[Ruling<'_>]) -> Applications {
        // A ruling outside a batch is the request's own, and its path is the one `outer` was
        // read from: not read again, nor its applications looked up twice.
        let of_ruling = rulings
            .iter()
            .map(|ruling| match ruling.batch {
                None => Known::default(),
                Some(_) => Known::of(ctx, identity::Read::of(&ruling.path)),
            })
            .collect();
        Applications {
            outer: Known::of(ctx, outer),
            of_ruling,
        }
    }

    /// Each application ruling `ruling` could be run as, and what was learnt of it.
    fn of(&self, ruling: usize) -> impl Iterator<Item = (&str, Option<&Learnt>)> {
        let own = &self.of_ruling[ruling];
        [own, &self.outer].into_iter().flat_map(|known| {
            known
                .read
                .all
                .iter()
                .zip(&known.learnt)
                .map(|(application, learnt)| (&**application, learnt.as_ref()))
        })
    }

    /// The application the trail names for a ruling, and its user: a batch part's own path's,
    /// else the request's (whose path the ruling's is).
    fn named<'a>(&'a self, i: usize, ruling: &'a Ruling<'_>) -> (Option<&'a str>, Option<&'a str>) {
        match ruling.batch {
            Some(_) => self.of_ruling[i].named(&ruling.path),
            None => self.outer.named(&ruling.path),
        }
    }
}

/// Whose bucket a request or batch part takes from: the user learnt for its application, else
/// the application (IIS compares paths without case: `ABC` and `abc` are one), else, for a
/// path whose readings name no single application (real clients send plain ones), one bucket
/// shared by all such paths, so spelling cannot buy tokens. A known user costs no allocation.
enum UserKey {
    Known(Arc<str>),
    Application(String),
    Unidentified,
}

impl UserKey {
    /// The key of an application, as [`identity::Read`] names it (lower-cased), and what was
    /// learnt of it.
    fn of(application: &str, learnt: Option<&Learnt>) -> UserKey {
        match learnt {
            Some(learnt) => UserKey::Known(Arc::clone(&learnt.user)),
            None => UserKey::Application(format!("app:{application}")),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            UserKey::Known(user) => user,
            UserKey::Application(key) => key,
            UserKey::Unidentified => UNIDENTIFIED,
        }
    }
}

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

/// One request's facts that every stage reads. It holds the snapshot itself (not a borrow), so
/// that it is made before the request's future and moved into it whole.
struct Ctx {
    snapshot: Arc<Snapshot>,
    ids: RequestIds,
    version: Version,
    xml: bool,
    started: Instant,
    /// The pool member that answered, for the access log: its index in the snapshot's pool
    /// plus one (a pool has at most 128 members), or 0.
    member: AtomicU8,
    /// Who the client is: the connection's address, or behind a trusted proxy the one its
    /// `X-Forwarded-For` names ([`crate::client`]).
    client: IpAddr,
    /// The request's log span ([`Ctx::span`]), once made: boxed, so that every request's
    /// future (a held long poll's for minutes) holds a pointer, not a span.
    span: OnceBox<tracing::Span>,
}

impl Ctx {
    /// ringfence's id for the request as text: the audit trail's `id`, and the logs'.
    fn id(&self) -> &str {
        // Always visible ASCII: ours are hex.
        self.ids.ours.to_str().unwrap_or("")
    }

    /// The X-Request-Id the client and the pool see (the client's, if it gave a valid one).
    fn request_id(&self) -> &str {
        self.ids.header().to_str().unwrap_or("")
    }
}

/// Every log line about a request is logged in its span `request`, which carries ringfence's id
/// (the audit trail's), the X-Request-Id the client and the pool see, and who the client is.
/// The span is made when the first such line is logged: making it has the log layer format its
/// fields, and entering it at each poll costs more: ~8,300 instructions a request together, more
/// than a tenth of a guarded request's whole cost, and at the default level nearly no request
/// logs a line. With debug lines on, it is made at once and the request's future runs in it
/// ([`Gateway::handle`]).
impl upstream::RequestSpan for Ctx {
    fn span(&self) -> &tracing::Span {
        self.span.get_or_init(|| {
            Box::new(tracing::info_span!(
                "request",
                id = self.id(),
                request_id = self.request_id(),
                client = %self.client
            ))
        })
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

    /// Serves one request. What can be done before anything is awaited (the ids, the client,
    /// the judge's admission, the request written for the pool) is done here, in a plain
    /// function: an async function's arguments, and the values it moves on, keep their room in
    /// its future for as long as it lives, a held long poll's for minutes (issue 16).
    /// `started` is when its head was read.
    pub fn handle(
        self: Arc<Self>,
        head: request::Head,
        mut body: ClientBody,
        started: Instant,
    ) -> impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send {
        let snapshot = self.shared.snapshot();
        let ids = forwarding::request_ids(&head.headers);
        let client = snapshot
            .config
            .server
            .trusted_proxies
            .client(self.connection.client.ip(), &head.headers);
        let access = self.shared.access.enabled().then(|| {
            let entry = access::Entry::new(&self.shared.access, started, &ids.ours, client, &head);
            body.count_into(entry.bytes_in());
            Box::new(entry)
        });
        let ctx = Ctx {
            version: head.version,
            xml: prefers_xml(head.headers.get("accept").and_then(request::visible)),
            snapshot,
            ids,
            started,
            member: AtomicU8::new(0),
            client,
            span: OnceBox::new(),
        };
        // The request's span is made now when any debug line may be logged (the log filter's
        // most verbose directive, one for spans such as `[request]=debug` included), so that
        // they run in it; otherwise when a line about the request is first logged.
        let debug = tracing::level_filters::LevelFilter::current()
            >= tracing::level_filters::LevelFilter::DEBUG;
        let span = debug.then(|| ctx.span().clone());
        let mut route = match &span {
            Some(span) => span.in_scope(|| self.route(&ctx, head, body)),
            None => self.route(&ctx, head, body),
        };
        // The route is matched by reference, here rather than in a function of its own: every
        // level of a future keeps room for its arguments, and the route moved out would take
        // its room twice.
        let serving = async move {
            const ONCE: &str = "a request's future is not polled after its end";
            let (traffic, response) = match &mut route {
                Route::Forward(forwarding) => {
                    // The write for the pool waits for the end of the scheduler's pass, as a
                    // request handed to hyper-util's connection task does: the writes of one pass
                    // then reach a member together, and it answers several per wake-up instead of
                    // preempting the proxy at each (on a shared core: preemptions per GET
                    // ~0.7 -> ~0.4, the member's CPU per GET 13-23% lower; docs/performance.md,
                    // "Where the shared core's time goes"). A guarded request needs none: it already
                    // waits for the audit trail's write, which wakes a pass's requests together.
                    EndOfPass(false).await;
                    let sent = ctx.snapshot.pool.send(&mut forwarding.sending, &ctx).await;
                    (Traffic::Passthrough, self.answer(&ctx, forwarding, sent))
                }
                // Boxed: the guarded route's state (the body, the verdict, the trail's wait) is
                // most of a request future's size, and a pass-through request, a held long poll
                // among them, need not carry room for it.
                Route::Guarded(guarded) => {
                    let (authorization, pending, body) = guarded.take().expect(ONCE);
                    let pending = pending.attach(&ctx.snapshot.config);
                    Box::pin(self.guarded(&ctx, authorization, pending, body)).await
                }
                Route::Refused(refused) => refused.take().expect(ONCE),
            };
            Ok(self.answered(&ctx, access, traffic, response))
        };
        // The whole future in the span, not only the route's, so that it holds the span once
        // (`answered` logs nothing); boxed, so that without debug lines a request's future has
        // no room for a span.
        match span {
            None => tokio_util::either::Either::Left(serving),
            Some(span) => tokio_util::either::Either::Right(Box::pin(serving.instrument(span))),
        }
    }

    /// The answer as it leaves: its X-Request-Id, the metrics, the access log's entry.
    fn answered(
        &self,
        ctx: &Ctx,
        mut access: Option<Box<access::Entry>>,
        traffic: Traffic,
        mut response: Response<Answer>,
    ) -> Response<ResponseBody> {
        response
            .headers_mut()
            .insert(X_REQUEST_ID, ctx.ids.header().clone());
        self.shared.metrics.answered(
            traffic,
            response.status(),
            ctx.started.elapsed().as_secs_f64(),
        );
        if let Some(entry) = &mut access {
            let member = match ctx.member.load(Ordering::Relaxed) {
                0 => None,
                i => ctx.snapshot.pool.members().get(usize::from(i) - 1),
            };
            let member = member.map(|m| m.name());
            entry.answered(response.status().as_u16(), traffic, member);
        }
        response.map(|body| Logged::new(body, access))
    }

    /// Admits the request and starts its route: a pass-through request is written for the pool
    /// here, and its future holds that alone across the wait; a refusal is made here.
    fn route(&self, ctx: &Ctx, head: request::Head, body: ClientBody) -> Route {
        let config = &ctx.snapshot.config;
        let sni = self.connection.sni.as_deref();
        // Only the audit trail reads it (its fingerprint), and only on a judged request; a
        // pass-through request does not keep it (a slice of the client's read buffer).
        let authorization = match self.shared.audit.enabled() {
            true => head.headers.bytes("authorization"),
            false => None,
        };
        match judge::admit(head, config, sni) {
            Admission::Pass(passed) => {
                drop(authorization);
                let host = passed.host().clone();
                let clearance = passed.with_body(UpstreamBody::from_client(body));
                Route::Forward(self.forward(ctx, host, judge::TARGET, clearance))
            }
            Admission::Refused(refused) => {
                let rulings = refused.ruling.as_slice();
                // The ruling's path is the request's.
                let own = rulings.first().map(|r| identity::Read::of(&r.path));
                let applications = Applications::read(ctx, own.unwrap_or_default(), rulings);
                let lines = self.decisions(
                    ctx,
                    authorization.as_ref(),
                    &refused.host,
                    &applications,
                    rulings,
                    true,
                );
                let rejection = match self.shared.audit.decided(lines, false) {
                    Ok(_) => refused.rejection,
                    Err(Unavailable) => Rejection::AuditUnavailable,
                };
                let response = self.refuse(ctx, rejection, refused.parameter, true);
                discard_after_answer(ctx.version, body);
                Route::Refused(Some((refused.traffic, response)))
            }
            Admission::Guarded(pending) => {
                Route::Guarded(Some((authorization, pending.detach(), body)))
            }
        }
    }

    /// A guarded request: its body read and judged, its lines in the trail, then forwarded or
    /// refused.
    async fn guarded(
        &self,
        ctx: &Ctx,
        authorization: Option<Bytes>,
        pending: judge::Pending<'_>,
        body: ClientBody,
    ) -> (Traffic, Response<Answer>) {
        let host = pending.host().clone();
        // The applications the request's own path could name (a batch's, for its parts).
        let outer = identity::Read::of(pending.path());
        let parameter = pending.parameter();
        let mut body = body;
        let reading = self.reads.acquire().await;
        let read = read_body(&mut body, pending.body_limit(), &self.shared.metrics);
        let (mut verdict, unread) = match read.await {
            Ok(bytes) => (pending.judge(bytes), false),
            Err(rejection) => {
                discard_after_answer(ctx.version, body);
                (pending.unreadable(rejection), true)
            }
        };
        drop(reading);
        let applications = Applications::read(ctx, outer, &verdict.rulings);
        bind_applications(&host, parameter, &applications, &mut verdict);
        let limited = self.limit(ctx, &host, parameter, &applications, &mut verdict);
        // The decision lines are queued before anything else happens, and an allowed request
        // waits until the sink has them: no byte goes upstream that the trail does not show.
        let refused = verdict.outcome.is_err();
        let lines = self.decisions(
            ctx,
            authorization.as_ref(),
            &host,
            &applications,
            &verdict.rulings,
            refused,
        );
        let unsent = self.unsent_lines(ctx, authorization.as_ref(), &host, &verdict.unsent);
        drop(authorization);
        let mut pending = match self.shared.audit.decided(lines, !refused) {
            Ok(pending) => pending,
            Err(Unavailable) => {
                let response = self.refuse(ctx, Rejection::AuditUnavailable, parameter, unread);
                return (Traffic::Guarded, response);
            }
        };
        // After the lines the answer depends on, as lines it does not: a full queue drops them.
        self.shared.audit.also(unsent);
        let response = match verdict.outcome {
            Ok(clearance) => {
                let place = pending.take_outcome_place();
                let outcome = (!verdict.rulings.is_empty())
                    .then(|| Outcome::new(&self.shared.audit, ctx, place));
                if pending.written().await.is_err() {
                    ctx.span().in_scope(|| {
                        tracing::error!(
                            "the decision could not be written to the audit trail in time"
                        )
                    });
                    let response = self.refuse(ctx, Rejection::AuditUnavailable, parameter, false);
                    if let Some(o) = outcome {
                        o.record(&response);
                    }
                    return (Traffic::Guarded, response);
                }
                let mut forwarding = self.forward(ctx, host, parameter, clearance);
                let sent = ctx.snapshot.pool.send(&mut forwarding.sending, ctx).await;
                let response = self.answer(ctx, &mut forwarding, sent);
                if let Some(o) = outcome {
                    o.record(&response);
                }
                response
            }
            Err(refused) => {
                let mut response = self.refuse(ctx, refused.rejection, refused.parameter, unread);
                if let Some(limited) = limited {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, limited.retry_after_secs().into());
                }
                response
            }
        };
        (Traffic::Guarded, response)
    }

    /// SPEC §12: every judged guarded request, allowed or not, takes one token per judged part
    /// from its user's bucket (by application id until the user is known) and its
    /// organisation's. Over either, the whole request is refused 429 `rate_limited`, and each of
    /// its lines says so (with its targets, so the trail still shows what was asked).
    fn limit<'c>(
        &self,
        ctx: &Ctx,
        host: &HeaderValue,
        parameter: &'c str,
        applications: &Applications,
        verdict: &mut judge::Verdict<'c>,
    ) -> Option<Limited> {
        let limiter = &ctx.snapshot.limiter;
        let first = verdict.rulings.first()?;
        // A request refused for how it reads (a bad batch, a body too large) was not judged on
        // its targets, and costs nothing.
        let judged = verdict
            .rulings
            .iter()
            .any(|r| r.refusal.is_none_or(Rejection::by_target_rules));
        if !limiter.enabled() || !judged {
            return None;
        }
        // Each part takes a token from every user it could be run as: any application any
        // reading of its path names, and the batch's own (the pool may run a part in it); once
        // each. A path naming none takes from the one bucket of such paths.
        let mut keys: Vec<(UserKey, u32)> = Vec::with_capacity(1);
        let mut of_part: Vec<UserKey> = Vec::with_capacity(1);
        for i in 0..verdict.rulings.len() {
            of_part.clear();
            for (application, learnt) in applications.of(i) {
                let key = UserKey::of(application, learnt);
                if !of_part.iter().any(|k| k.as_str() == key.as_str()) {
                    of_part.push(key);
                }
            }
            if of_part.is_empty() {
                of_part.push(UserKey::Unidentified);
            }
            for key in of_part.drain(..) {
                match keys.iter_mut().find(|(k, _)| k.as_str() == key.as_str()) {
                    Some((_, n)) => *n = n.saturating_add(1),
                    None => keys.push((key, 1)),
                }
            }
        }
        let users: Vec<(&str, u32)> = keys.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        let organisation = first.organisation.map(|o| OrgIndex(o.index()));
        let limited = limiter.check_many(&users, organisation).err()?;
        self.shared
            .metrics
            .rate_limited
            .with_label_values(&[limited.scope.as_str()])
            .inc();
        verdict.refuse_whole(Rejection::RateLimited, parameter, host);
        Some(limited)
    }

    /// Counts each decision and makes its audit line. In a refused batch, the part that refused
    /// it (or the batch, refused as a whole) is the one `deny`; every other judged part is
    /// `not_sent`, never `allow`, and is not counted as a decision.
    fn decisions(
        &self,
        ctx: &Ctx,
        authorization: Option<&Bytes>,
        host: &HeaderValue,
        applications: &Applications,
        rulings: &[Ruling<'_>],
        refused: bool,
    ) -> Vec<Line> {
        let stated = rulings.iter().enumerate().map(|(i, ruling)| {
            let (decision, reason) = ruling.decided(refused);
            (ruling, decision, reason, applications.named(i, ruling))
        });
        self.lines(ctx, authorization, host, rulings.len(), stated)
    }

    /// The lines of a refused batch's guarded parts after the one that refused it
    /// ([`judge::Verdict::unsent`]): each `not_sent`, named by its own path's application.
    fn unsent_lines(
        &self,
        ctx: &Ctx,
        authorization: Option<&Bytes>,
        host: &HeaderValue,
        unsent: &[Ruling<'_>],
    ) -> Vec<Line> {
        if unsent.is_empty() || !self.shared.audit.enabled() {
            return Vec::new();
        }
        let known: Vec<Known> = unsent
            .iter()
            .map(|ruling| Known::of(ctx, identity::Read::of(&ruling.path)))
            .collect();
        let stated = unsent.iter().zip(&known).map(|(ruling, known)| {
            let named = known.named(&ruling.path);
            (ruling, Decided::NotSent, audit::BATCH_REFUSED, named)
        });
        self.lines(ctx, authorization, host, unsent.len(), stated)
    }

    /// Counts each decision stated (a `not_sent` part is not one) and makes its audit line.
    fn lines<'r, 'c: 'r>(
        &self,
        ctx: &Ctx,
        authorization: Option<&Bytes>,
        host: &HeaderValue,
        count: usize,
        stated: impl Iterator<
            Item = (
                &'r Ruling<'c>,
                Decided,
                &'static str,
                (Option<&'r str>, Option<&'r str>),
            ),
        >,
    ) -> Vec<Line> {
        let audit = self.shared.audit.enabled();
        let mut lines = Vec::with_capacity(if audit { count } else { 0 });
        let token = authorization.map(|a| identity::token_fingerprint(a));
        let client = if audit {
            self.client_text(ctx.client)
        } else {
            Cow::Borrowed("")
        };
        // A Host that is not UTF-8 (only a refused one) shows U+FFFD for what it cannot read.
        let host_text = String::from_utf8_lossy(host.as_bytes());
        for (ruling, decision, reason, (application, user)) in stated {
            let organisation = ruling.organisation.map(Organisation::name);
            if let Some(label) = decision.metric_label() {
                self.shared.metrics.decided(
                    &ctx.snapshot,
                    ruling.organisation.map(|o| (o.index(), o.name())),
                    ruling.resource,
                    label,
                    reason,
                );
            }
            if !audit {
                continue;
            }
            let record = audit::Decision {
                v: audit::VERSION,
                kind: "decision",
                ts: std::time::SystemTime::now(),
                id: ctx.id(),
                client_request_id: ctx.ids.client.as_ref().and_then(|v| v.to_str().ok()),
                client: &client,
                sni: self.connection.sni.as_deref(),
                host: ruling.host.as_deref().unwrap_or(&host_text),
                method: ruling.method.as_str(),
                path: &ruling.path,
                resource: ruling.resource,
                organisation,
                application,
                user,
                token_fingerprint: token.as_ref().map(identity::TokenFingerprint::as_str),
                targets: &ruling.targets,
                raw_target: ruling.raw_target.as_deref(),
                decision,
                reason,
                rule: ruling.rule,
                batch: ruling.batch.map(|b| audit::BatchPart {
                    id: ctx.id(),
                    part: b.part,
                    parts: b.parts,
                }),
            };
            let severity = if decision == Decided::Allow {
                Severity::Info
            } else {
                Severity::Notice
            };
            lines.push(audit::line(&record, "decision", severity));
        }
        lines
    }

    /// `client` as text: the connection's address was formatted once, for X-Forwarded-For;
    /// only a client a trusted proxy names is formatted here.
    fn client_text(&self, client: IpAddr) -> Cow<'_, str> {
        match self.client_ip.to_str() {
            Ok(text) if !text.is_empty() && client == self.connection.client.ip() => {
                Cow::Borrowed(text)
            }
            _ => Cow::Owned(client.to_string()),
        }
    }

    /// Writes a cleared request for the pool ([`Gateway::answer`] sends it). `parameter` is
    /// what a refusal would name: the request's guard's, or `target`. `host` is taken, and
    /// dropped before the pool is awaited unless an answer may need it: it is a slice of the
    /// buffer the client's request head was read into, which a held long poll would otherwise
    /// keep for minutes (issue 16).
    fn forward<'a>(
        &self,
        ctx: &Ctx,
        host: HeaderValue,
        parameter: &'a str,
        mut clearance: Clearance,
    ) -> Forwarding<'a> {
        let snapshot = &*ctx.snapshot;
        let lines = forwarding::set_headers(
            clearance.headers_mut(),
            &Forwarded {
                client_ip: &self.client_ip,
                tls: self.connection.tls,
                host: &host,
                request_id: ctx.ids.header(),
                preserve_host: snapshot.config.upstream.preserve_host,
                multiplexed: ctx.version >= Version::HTTP_2,
            },
        );
        // Only a request that could teach (a GET of `.../me`, a POST of `.../applications`; never
        // a long poll) keeps what a lesson needs across the wait, its path in storage of its own:
        // a slice of the request head would keep hyper's whole read buffer alive. The lesson is
        // read only from an answer that can teach (few can).
        let target = clearance.target();
        let learnable = Lesson::may(clearance.method(), &target)
            .then(|| (clearance.method().clone(), Box::<str>::from(&*target), host));
        Forwarding {
            sending: snapshot.pool.prepare(clearance, lines),
            learnable,
            parameter,
        }
    }

    /// The answer to a request [`Gateway::forward`] wrote, from what [`Pool::send`] gave: the
    /// member's answer streamed back unchanged, or a refusal. Apart from the wait, so that the
    /// future that awaits the pool holds no level of its own around it (issue 16).
    ///
    /// [`Pool::send`]: crate::upstream::Pool::send
    fn answer(
        &self,
        ctx: &Ctx,
        forwarding: &mut Forwarding<'_>,
        sent: Result<crate::upstream::Answer<'_>, UpstreamError>,
    ) -> Response<Answer> {
        let snapshot = &*ctx.snapshot;
        let parameter = forwarding.parameter;
        match sent {
            Ok(answer) => {
                if let Ok(i) = u8::try_from(answer.index + 1) {
                    ctx.member.store(i, Ordering::Relaxed);
                }
                // Its connection-specific headers were left behind as its head was read
                // (`upstream::h1::Reader::read_head`).
                let (parts, body) = answer.response.into_parts();
                let (status, headers) = (parts.status, &parts.headers);
                let (lesson, host) = match forwarding.learnable.take() {
                    Some((method, target, host)) => (Some((method, target)), Some(host)),
                    None => (None, None),
                };
                let lesson = || {
                    let (method, target) = lesson?;
                    Lesson::of(&method, &target)
                };
                let body =
                    Learning::new(body, lesson, status, headers, &snapshot.identities, || {
                        let host = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
                        let policy = snapshot.config.policy();
                        policy.organisation_for(host).map(Organisation::name)
                    });
                Response::from_parts(parts, Either::Left(body))
            }
            Err(e) if e.kind == FailureKind::Client => {
                tracing::debug!(error = %e, "the request body broke");
                let rejection = match e.client_timeout() {
                    Some(timeout) => timed_out(timeout, &self.shared.metrics),
                    None => Rejection::BadBody,
                };
                self.refuse(ctx, rejection, parameter, true)
            }
            Err(e) => {
                ctx.span()
                    .in_scope(|| tracing::warn!(error = %e, "no answer from the pool"));
                let rejection = match e.kind {
                    FailureKind::Connect => Rejection::UpstreamUnavailable,
                    FailureKind::Tls | FailureKind::Protocol | FailureKind::Client => {
                        Rejection::UpstreamFailure
                    }
                    FailureKind::Timeout => Rejection::UpstreamTimeout,
                    FailureKind::Local => Rejection::LocalResources,
                };
                self.refuse(ctx, rejection, parameter, false)
            }
        }
    }

    /// A UCWA error answer; `unread` when the request body was refused unread, so that an
    /// HTTP/1 connection closes rather than read its rest as a next request.
    fn refuse(
        &self,
        ctx: &Ctx,
        rejection: Rejection,
        parameter: &str,
        unread: bool,
    ) -> Response<Answer> {
        tracing::debug!(reason = rejection.reason(), "refused");
        let mut response = rejection
            .render(ctx.request_id(), parameter, ctx.xml)
            .map(Either::Right);
        if unread && ctx.version <= Version::HTTP_11 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A request's route once admitted ([`Gateway::route`]); what is in it is taken once.
enum Route {
    Forward(Forwarding<'static>),
    /// Refused on its head: the answer.
    Refused(Option<(Traffic, Response<Answer>)>),
    /// The request's Authorization (for the trail), its admission and its body.
    Guarded(Option<(Option<Bytes>, judge::Detached, ClientBody)>),
}

/// A cleared request written for the pool, and what its answer needs: the lesson's method,
/// target (in storage of its own) and Host, kept only for a request that could teach.
struct Forwarding<'a> {
    sending: crate::upstream::Sending,
    learnable: Option<(http::Method, Box<str>, HeaderValue)>,
    /// What a refusal here names.
    parameter: &'a str,
}

/// The `outcome` line a forwarded guarded request owes the trail: written with the answer's
/// status, or, if the exchange is dropped first (the client went), as `client_gone`.
struct Outcome<'a> {
    audit: &'a Audit,
    id: &'a str,
    started: Instant,
    /// The place in the audit queue held for this line.
    place: Option<Reservation>,
    done: bool,
}

impl<'a> Outcome<'a> {
    fn new(audit: &'a Audit, ctx: &'a Ctx, place: Option<Reservation>) -> Outcome<'a> {
        Outcome {
            audit,
            id: ctx.id(),
            started: ctx.started,
            place,
            done: false,
        }
    }

    /// The pool's answer streams its own body; any other is one ringfence wrote.
    fn record(mut self, response: &Response<Answer>) {
        let source = match response.body() {
            Either::Left(_) => Source::Pool,
            Either::Right(_) => Source::Ringfence,
        };
        self.write(Some(response.status().as_u16()), source);
    }

    fn write(&mut self, status: Option<u16>, source: Source) {
        self.done = true;
        if !self.audit.enabled() {
            return;
        }
        self.audit.outcome(
            &audit::Outcome {
                v: audit::VERSION,
                kind: "outcome",
                ts: std::time::SystemTime::now(),
                id: self.id,
                status,
                source,
                duration_ms: access::millis(self.started),
            },
            self.place.take(),
        );
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.write(None, Source::ClientGone);
        }
    }
}

/// Pending once, with its task woken at once: the task goes to the back of the scheduler's run
/// queue and runs again in the same pass, after the tasks already ready. Unlike
/// `tokio::task::yield_now`, it does not wait for the I/O driver's next poll, and with it for
/// the requests that poll brings.
struct EndOfPass(bool);

impl Future for EndOfPass {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
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

#[cfg(test)]
mod end_of_pass {
    use super::EndOfPass;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A request's task lets the tasks already ready run first, then resumes in the same pass
    /// (woken by itself: nothing else will wake it).
    #[test]
    fn the_tasks_already_ready_run_first_and_the_request_resumes() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        runtime.block_on(async {
            let log = |name: &'static str| {
                let order = order.clone();
                move || order.lock().unwrap().push(name)
            };
            let (before, after, other) = (log("request"), log("request resumed"), log("other"));
            let request = tokio::spawn(async move {
                before();
                EndOfPass(false).await;
                after();
            });
            let other = tokio::spawn(async move { other() });
            tokio::time::timeout(Duration::from_secs(5), async {
                request.await.unwrap();
                other.await.unwrap();
            })
            .await
            .expect("the request resumes without any other wake");
        });
        assert_eq!(
            *order.lock().unwrap(),
            ["request", "other", "request resumed"]
        );
    }
}
