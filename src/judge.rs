//! The judge: the one place that decides whether a request may reach the pool (SPEC §3-§6).
//!
//! It reads a request as the pool would: its Host and TLS server name, its path under every
//! reading ([`route`]), the headers that change how ASP.NET decodes it ([`request`],
//! [`media`]), and, for a guarded resource, every `target` in the query, the body and a
//! batch part's `Data:` header ([`extract`]), parsed once ([`Target`]) and decided
//! ([`Policy::decide`]). It answers with a [`Clearance`], which owns the request it cleared and
//! is the only thing `upstream` sends, or with the [`Rejection`] to answer; and with the
//! [`Ruling`]s the audit trail and the decision counter record. It does no I/O: the gateway reads
//! the body between [`admit`] and [`Pending::judge`].
//!
//! At over 700 lines its size is earned: admission and judgement are one sequence that must be
//! read in order, since the argument that nothing is forwarded unjudged is that every path through
//! it ends in a [`Clearance`] or a [`Rejection`].

use std::borrow::Cow;

use bytes::Bytes;
use bytestring::ByteString;
use http::header::HeaderValue;
use http::Method;

use crate::audit::{self, Decided};
use crate::body::UpstreamBody;
use crate::config::Config;
use crate::extract::{self, batch, ExtractError};
use crate::forwarding;
use crate::iis::host;
use crate::iis::media::{self, EncodingError};
use crate::policy::{DenyReason, Mode, Organisation, Policy, Rule};
use crate::reject::Rejection;
use crate::request::{self, X_UP_DEVCAP_POST_CHARSET};
use crate::request::{Head, Headers, TargetForm};
use crate::route::{self, Guard, Route, Traffic};
use crate::target::{Target, TargetError};

/// A request the judge let through, owning what was judged: its method, target and headers,
/// and the exact body bytes of a guarded request. `upstream` sends nothing else, so an
/// unjudged request cannot reach the pool and a judged one reaches it as it was judged.
#[derive(Debug)]
#[must_use]
pub struct Clearance {
    head: Head,
    body: UpstreamBody,
}

impl Clearance {
    /// The headers, for what `forwarding` changes (an HTTP/2 request's cookie crumbs joined,
    /// [`forwarding::set_headers`]).
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.head.headers
    }

    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The origin-form target the pool receives: path and query, as judged.
    pub fn target(&self) -> ByteString {
        self.head.target.origin_form()
    }

    /// The origin-form target, kept past [`Clearance::into_parts`] (a reference count).
    pub fn path_and_query(&self) -> ByteString {
        self.head.target.origin_form()
    }

    /// Method, origin-form target, headers and body, for the upstream request.
    pub(crate) fn into_parts(self) -> (Method, ByteString, Headers, UpstreamBody) {
        (
            self.head.method,
            self.head.target.origin_form(),
            self.head.headers,
            self.body,
        )
    }
}

/// What the judge makes of a request head.
pub enum Admission<'c> {
    /// Not guarded: the pool gets the request as it came, its body streamed.
    Pass(Passed),
    /// Guarded: read the body, at most [`Pending::body_limit`] bytes, then [`Pending::judge`].
    Guarded(Pending<'c>),
    /// Refused on its head alone: the body is never read, so an HTTP/1 connection must close.
    Refused(Refused<'c>),
}

/// An unguarded request, cleared once its body is attached.
pub struct Passed {
    head: Head,
    host: HeaderValue,
}

impl Passed {
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Its body is not judged, so any body the client sent goes with it, streamed.
    pub fn with_body(self, body: UpstreamBody) -> Clearance {
        Clearance {
            head: self.head,
            body,
        }
    }
}

/// A refusal: the answer to give, and what to record of it.
pub struct Refused<'c> {
    pub rejection: Rejection,
    /// The guarded parameter the answer names (`target` unless a `[[guard]]` says otherwise).
    pub parameter: &'c str,
    pub traffic: Traffic,
    /// The Host the request was judged by; for a Host that cannot be read, as sent (for the
    /// trail alone: [`request::host_as_sent`]).
    pub host: HeaderValue,
    pub ruling: Option<Ruling<'c>>,
}

/// One judged request or batch part, as the audit trail and the decision counter record it.
#[derive(Debug)]
pub struct Ruling<'c> {
    pub method: Method,
    /// The path as received, or the batch part's.
    pub path: Box<str>,
    /// The guarded resource, or `batch` for a batch refused as a whole.
    pub resource: &'c str,
    pub organisation: Option<&'c Organisation>,
    pub targets: Vec<Target>,
    pub rule: Option<Rule<'c>>,
    /// `None` when allowed.
    pub refusal: Option<Rejection>,
    /// The refusal is only recorded: a target rule's, in an organisation in shadow mode.
    pub shadow: bool,
    /// The target as received, when it was refused because it could not be parsed.
    pub raw_target: Option<Box<str>>,
    /// The refusal is the request's encoding's: a value that cannot be read as text (a control
    /// character, bad UTF-8, `%u`). It stays enforced in shadow mode (SPEC §12), even when its
    /// line can show the value.
    pub unreadable: bool,
    /// The Host this ruling was judged by, when not the request's: a batch part's own, of the
    /// batch's organisation, of another, or one that cannot be read (its line shows it).
    pub host: Option<Box<str>>,
    /// Where in a batch: `Some` for a batch part, or for a batch refused as a whole.
    pub batch: Option<Part>,
}

/// A ruling's place in its batch: the part (1-based) among `parts`; both unknown for a batch
/// refused before its parts were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub part: Option<usize>,
    pub parts: Option<usize>,
}

impl Ruling<'_> {
    /// `allowed`, or the rejection's reason: the metric label and the audit reason.
    pub fn reason(&self) -> &'static str {
        self.refusal.map_or("allowed", Rejection::reason)
    }

    pub fn allowed(&self) -> bool {
        self.refusal.is_none()
    }

    /// This ruling as a part of a batch refused by something else states it: read for the
    /// trail alone, with no refusal of its own and nothing only recorded (its line says
    /// `not_sent`).
    fn unsent(mut self) -> Self {
        self.refusal = None;
        self.shadow = false;
        self
    }

    /// How the trail states this ruling of a request that was `refused` as a whole or not: the
    /// decision and its reason. In a refused batch a part allowed on its own was not sent
    /// (`batch_refused`), never `allow`. The gateway's lines and `eval --request` say it through
    /// this one function, so they cannot tell a request differently.
    pub fn decided(&self, refused: bool) -> (Decided, &'static str) {
        match (self.allowed(), self.shadow, refused) {
            (true, _, false) => (Decided::Allow, self.reason()),
            (true, _, true) | (false, true, true) => (Decided::NotSent, audit::BATCH_REFUSED),
            (false, true, false) => (Decided::ShadowDeny, self.reason()),
            (false, false, _) => (Decided::Deny, self.reason()),
        }
    }

    /// Whether this ruling's refusal is only recorded, given the mode its organisation is in.
    /// Only when its line can say what the pool is sent: a refused target that could not even
    /// be decoded (`%u`, bad UTF-8, a NUL: the request's encoding, which stays enforced), or
    /// targets that collide before any was parsed, would go upstream with no target in the
    /// trail (fresh eyes, issue 14, B and F). `missing` has nothing to show and is shadowed.
    fn shadowed(&self, policy: &Policy) -> bool {
        let shown = self.refusal == Some(Rejection::Missing)
            || !self.targets.is_empty()
            || self.raw_target.is_some();
        self.refusal.is_some_and(Rejection::by_target_rules)
            && !self.unreadable
            && shown
            && policy.mode_for(self.organisation) == Mode::Shadow
    }
}

/// The judgement of a guarded request.
pub struct Verdict<'c> {
    pub outcome: Result<Clearance, Refused<'c>>,
    pub rulings: Vec<Ruling<'c>>,
    /// A refused batch's guarded parts after the one that refused it, read for the trail alone
    /// (SPEC §9: each part of a refused batch is marked `not_sent`). Nothing in them changes the
    /// answer: they take no rate-limit token, bind no application, are refused by nothing, and
    /// a part that cannot be judged has no line.
    pub unsent: Vec<Ruling<'c>>,
}

impl<'c> Verdict<'c> {
    /// Refuses the whole request for a reason found after judging (an application bound to
    /// another organisation, a rate limit): every line says so, keeping its targets, and none is
    /// left only recorded (shadow) or credited to a rule.
    pub fn refuse_whole(&mut self, rejection: Rejection, parameter: &'c str, host: &HeaderValue) {
        for ruling in &mut self.rulings {
            ruling.refusal = Some(rejection);
            ruling.shadow = false;
            ruling.rule = None;
        }
        self.outcome = Err(Refused {
            rejection,
            parameter,
            traffic: Traffic::Guarded,
            host: host.clone(),
            ruling: None,
        });
    }
}

/// The Batch.js sample's header for an embedded request's body.
const DATA: &str = "data";

/// Guarded parts one batch may hold; more refuse it whole (`bad_batch`). Each is an audit line:
/// without a bound, a 1 MiB batch of tiny parts made a thousand (fresh-eyes round 6).
pub const MAX_GUARDED_PARTS: usize = 100;

/// The resource `batch`, as metric label and audit resource of a batch refused whole.
const BATCH: &str = "batch";
/// The parameter a refusal names when no guard is involved (SPEC's default guards' own).
pub const TARGET: &str = "target";

/// Judges a request head: its Host (and on TLS, the server name it came by), the headers UCWA
/// must not see, and its path. `sni` is the TLS server name, if any.
pub fn admit<'c>(mut head: Head, config: &'c Config, sni: Option<&str>) -> Admission<'c> {
    // A transfer coding beside `chunked` (`gzip, chunked`) is left on the body by hyper, which
    // undoes only the chunking: the body would be judged still coded, and on any route the pool
    // would get it without its coding (Transfer-Encoding is hop-by-hop). `chunked, chunked`
    // hyper unchunks once where another reader could twice. Either way only `chunked` alone is
    // a framing every reader agrees on; anything else is refused on every route (issue 15).
    let transfer_coded = request::list(request::lines(&head.headers, "transfer-encoding"))
        .is_some_and(|te| !te.trim().eq_ignore_ascii_case("chunked"));
    // What is judged is what will be forwarded: connection-specific headers go first.
    forwarding::strip_hop_by_hop(&mut head.headers);
    let refuse = |rejection, parameter, traffic, host| {
        Admission::Refused(Refused {
            rejection,
            parameter,
            traffic,
            host,
            ruling: None,
        })
    };
    let host = match request::host(&head) {
        Ok(host) => host,
        Err(rejection) => {
            // On a guarded resource or a batch this is a decision, recorded with the Host as
            // sent and no organisation, since none can be told from it (fresh eyes, round 32).
            let view = route::view(head.target.path(), &config.guards);
            let (parameter, ruling) = head_ruling(&view, &head, None, rejection);
            let traffic = match ruling {
                Some(_) => Traffic::Guarded,
                None => Traffic::Passthrough,
            };
            return Admission::Refused(Refused {
                rejection,
                parameter,
                traffic,
                host: request::host_as_sent(&head),
                ruling,
            });
        }
    };
    // CONNECT names an authority, not a resource: nothing the pool serves (UCWA has no
    // tunnel), and hyper-util would send it on to a member (fresh eyes, round 15).
    if head.method == Method::CONNECT {
        return refuse(Rejection::BadPath, TARGET, Traffic::Passthrough, host);
    }
    // The authority form belongs to CONNECT and the asterisk to a server-wide OPTIONS (RFC 9112
    // §3.2.3-4): `POST host:443` names no resource, and `POST *` none the pool serves (fresh
    // eyes, round 41: the first went on as `POST /` with its authority for Host).
    match head.target.form() {
        TargetForm::Authority => {
            return refuse(Rejection::BadPath, TARGET, Traffic::Passthrough, host)
        }
        TargetForm::Asterisk if head.method != Method::OPTIONS => {
            return refuse(Rejection::BadPath, TARGET, Traffic::Passthrough, host)
        }
        _ => {}
    }
    let view = route::view(head.target.path(), &config.guards);
    if view.under_ucwa {
        if let Err(rejection) = ucwa_headers(head.headers.names()) {
            // On a guarded resource or a batch this is a decision like any other, and the trail
            // records it (fresh eyes, issue 14, G); elsewhere there is nothing guarded to record.
            let organisation = config.policy.organisation_for(host.to_str().unwrap_or(""));
            let (parameter, ruling) = head_ruling(&view, &head, organisation, rejection);
            return Admission::Refused(Refused {
                rejection,
                parameter,
                traffic: Traffic::Guarded,
                host,
                ruling,
            });
        }
    }
    let (kind, limit) = match view.route {
        Route::Passthrough if transfer_coded => {
            return refuse(Rejection::EncodedBody, TARGET, Traffic::Passthrough, host)
        }
        Route::Passthrough if !length_is_plain(&head.headers) => {
            return refuse(Rejection::BadBody, TARGET, Traffic::Passthrough, host)
        }
        Route::Passthrough => {
            // HTTP/2 keeps repeated Content-Length fields that agree (checked above, each one);
            // the pool is sent one, as HTTP/1.1 clients are by hyper (fresh eyes, round 15).
            head.headers.keep_first("content-length");
            return Admission::Pass(Passed { head, host });
        }
        Route::BadPath => return refuse(Rejection::BadPath, TARGET, Traffic::Guarded, host),
        Route::Batch => (Kind::Batch, config.server.max_batch_bytes),
        Route::Guarded(guard) => (Kind::Resource(guard), config.server.max_body_bytes),
    };
    let mut pending = Pending {
        head,
        host,
        kind,
        limit,
        config,
        misdirected: false,
    };
    pending.misdirected = pending.misdirected_by(sni);
    let framing = if transfer_coded {
        Err(Rejection::EncodedBody)
    } else {
        pending.framing()
    };
    match framing {
        Ok(()) => Admission::Guarded(pending),
        Err(rejection) => {
            let ruling = pending.whole(rejection);
            Admission::Refused(Refused {
                rejection,
                parameter: pending.kind.parameter(),
                traffic: Traffic::Guarded,
                host: pending.host,
                ruling: Some(ruling),
            })
        }
    }
}

/// The ruling of a request refused on its head alone, on a guarded resource or a batch (the
/// parameter its answer names, and its line's ruling); elsewhere nothing guarded was asked
/// for, and there is no ruling.
fn head_ruling<'c>(
    view: &route::PathView<'c>,
    head: &Head,
    organisation: Option<&'c Organisation>,
    rejection: Rejection,
) -> (&'c str, Option<Ruling<'c>>) {
    let (parameter, resource, batch) = match view.route {
        Route::Guarded(guard) => (&*guard.parameter, Some(&*guard.resource), None),
        Route::Batch => (
            TARGET,
            Some(BATCH),
            Some(Part {
                part: None,
                parts: None,
            }),
        ),
        Route::Passthrough | Route::BadPath => (TARGET, None, None),
    };
    let ruling = resource.map(|resource| Ruling {
        method: head.method.clone(),
        path: head.target.path().into(),
        resource,
        organisation,
        targets: Vec::new(),
        rule: None,
        refusal: Some(rejection),
        shadow: false,
        raw_target: None,
        unreadable: false,
        host: None,
        batch,
    });
    (parameter, ruling)
}

/// Whether the Content-Length, if any, has no leading zero. hyper reads `0029` as 29, and a
/// pass-through request's line reaches the pool as it came, where a reader could take it for
/// octal: a length is forwarded only in the one spelling every reader agrees on (issue 15).
fn length_is_plain(headers: &Headers) -> bool {
    // Every line: HTTP/2 (h2) keeps repeated fields that parse to the same number.
    headers.get_all("content-length").all(is_plain_length)
}

/// A Content-Length line without a leading zero ([`length_is_plain`]).
fn is_plain_length(length: &[u8]) -> bool {
    !matches!(length, [b'0', _, ..])
}

/// What a guarded path names.
#[derive(Clone, Copy)]
enum Kind<'c> {
    Resource(&'c Guard),
    Batch,
}

impl<'c> Kind<'c> {
    fn parameter(self) -> &'c str {
        match self {
            Kind::Resource(guard) => &guard.parameter,
            Kind::Batch => TARGET,
        }
    }

    fn resource(self) -> &'c str {
        match self {
            Kind::Resource(guard) => &guard.resource,
            Kind::Batch => BATCH,
        }
    }
}

/// A guarded request waiting for its body.
pub struct Pending<'c> {
    head: Head,
    host: HeaderValue,
    kind: Kind<'c>,
    limit: usize,
    config: &'c Config,
    /// On TLS, the server name belongs to another organisation than the Host (SPEC §5.3).
    misdirected: bool,
}

/// A [`Pending`] without its borrows of the configuration: the request's future is made
/// before it holds the snapshot the configuration is part of, and takes this instead;
/// [`Detached::attach`] to the same configuration gives the same `Pending` back.
pub struct Detached {
    head: Head,
    host: HeaderValue,
    /// The guard's place in the configuration's table ([`crate::route::Guards::position`]), or
    /// `None` for a batch.
    guard: Option<usize>,
    limit: usize,
    misdirected: bool,
}

impl Detached {
    /// The `Pending` this was detached from; `config` is the configuration it was admitted by.
    pub fn attach(self, config: &Config) -> Pending<'_> {
        let kind = match self.guard {
            Some(position) => Kind::Resource(
                config
                    .guards
                    .at(position)
                    .expect("detached from a guard of this configuration"),
            ),
            None => Kind::Batch,
        };
        Pending {
            head: self.head,
            host: self.host,
            kind,
            limit: self.limit,
            config,
            misdirected: self.misdirected,
        }
    }
}

impl<'c> Pending<'c> {
    /// Its parts without the borrows of the configuration ([`Detached::attach`]).
    pub fn detach(self) -> Detached {
        let guard = match self.kind {
            Kind::Resource(guard) => Some(
                self.config
                    .guards
                    .position(guard)
                    .expect("a guard of its own configuration"),
            ),
            Kind::Batch => None,
        };
        Detached {
            head: self.head,
            host: self.host,
            guard,
            limit: self.limit,
            misdirected: self.misdirected,
        }
    }

    /// Bytes of body to read at most; more is [`Rejection::BodyTooLarge`].
    pub fn body_limit(&self) -> usize {
        self.limit
    }

    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// The parameter a refusal of this request names: its guard's, or `target` for a batch.
    pub fn parameter(&self) -> &'c str {
        self.kind.parameter()
    }

    /// The request's path as received (a batch's own, for its parts' application).
    pub fn path(&self) -> &str {
        self.head.target.path()
    }

    /// The refusal when the body could not be read (too large, or broken off).
    pub fn unreadable(self, rejection: Rejection) -> Verdict<'c> {
        let ruling = self.whole(rejection);
        let parameter = self.kind.parameter();
        self.refused(rejection, parameter, vec![ruling])
    }

    /// Judges the request with its body, which is forwarded byte for byte when allowed.
    pub fn judge(self, body: Bytes) -> Verdict<'c> {
        match self.kind {
            Kind::Resource(guard) => self.judge_resource(guard, body),
            Kind::Batch => self.judge_batch(body),
        }
    }

    fn policy(&self) -> &'c Policy {
        &self.config.policy
    }

    fn organisation(&self) -> Option<&'c Organisation> {
        self.policy()
            .organisation_for(self.host.to_str().unwrap_or(""))
    }

    /// SPEC §5.3: a TLS server name that resolves to an organisation binds the connection to it.
    fn misdirected_by(&self, sni: Option<&str>) -> bool {
        let Some(sni) = sni else { return false };
        let Some(by_name) = self.policy().organisation_for(sni) else {
            return false;
        };
        self.organisation()
            .is_none_or(|by_host| !std::ptr::eq(by_name, by_host))
    }

    /// Framing that cannot be trusted to end the body where the pool will (several
    /// Content-Length lines; hyper itself drops a Content-Length beside Transfer-Encoding), and a
    /// declared length over the limit, refused before reading.
    fn framing(&self) -> Result<(), Rejection> {
        let mut lengths = self.head.headers.get_all("content-length");
        if let Some(length) = lengths.next() {
            let n: u64 = request::visible(length)
                .and_then(|s| s.trim().parse().ok())
                .ok_or(Rejection::BadBody)?;
            if lengths.next().is_some() || !is_plain_length(length) {
                return Err(Rejection::BadBody);
            }
            if n > self.limit as u64 {
                return Err(Rejection::BodyTooLarge);
            }
        }
        Ok(())
    }

    /// A ruling about the request as a whole, decided before any target was read.
    fn whole(&self, refusal: Rejection) -> Ruling<'c> {
        Ruling {
            method: self.head.method.clone(),
            path: self.head.target.path().into(),
            resource: self.kind.resource(),
            organisation: self.organisation(),
            targets: Vec::new(),
            rule: None,
            refusal: Some(refusal),
            shadow: false,
            raw_target: None,
            unreadable: false,
            host: None,
            batch: matches!(self.kind, Kind::Batch).then_some(Part {
                part: None,
                parts: None,
            }),
        }
    }

    fn refused(
        self,
        rejection: Rejection,
        parameter: &'c str,
        rulings: Vec<Ruling<'c>>,
    ) -> Verdict<'c> {
        Verdict {
            outcome: Err(Refused {
                rejection,
                parameter,
                traffic: Traffic::Guarded,
                host: self.host,
                ruling: None,
            }),
            rulings,
            unsent: Vec::new(),
        }
    }

    fn cleared(self, body: Bytes, rulings: Vec<Ruling<'c>>) -> Verdict<'c> {
        let mut head = self.head;
        // Sent whole, with its length (Transfer-Encoding went with the hop-by-hop headers). The
        // client's own line, when it is that length written plainly (nearly always), is kept
        // as it came instead of being made again (an allocation per request).
        let mut digits = itoa::Buffer::new();
        let length = digits.format(body.len()).as_bytes();
        let plain = {
            let mut lines = head.headers.get_all("content-length");
            lines.next().is_some_and(|line| line == length) && lines.next().is_none()
        };
        if !plain {
            head.headers.insert("content-length", length);
        }
        Verdict {
            outcome: Ok(Clearance {
                head,
                body: UpstreamBody::Buffered(Some(body)),
            }),
            rulings,
            unsent: Vec::new(),
        }
    }

    fn judge_resource(self, guard: &'c Guard, body: Bytes) -> Verdict<'c> {
        if self.misdirected {
            let ruling = self.whole(Rejection::Misdirected);
            return self.refused(Rejection::Misdirected, &guard.parameter, vec![ruling]);
        }
        // A `Data:` header is a body to the batch handler; on a request of its own it is judged
        // the same way, since nothing says UCWA would not read it there too.
        let headers = &self.head.headers;
        let data = match one_data(request::lines(headers, DATA)) {
            Ok(data) => data,
            Err(rejection) => {
                let ruling = self.whole(rejection);
                return self.refused(rejection, &guard.parameter, vec![ruling]);
            }
        };
        let content_encoding = request::list(request::lines(headers, "content-encoding"));
        let inbound = Inbound {
            method: &self.head.method,
            query: self.head.target.query(),
            content_type: request::single(request::lines(headers, "content-type")),
            content_encoding: content_encoding.as_deref(),
            body: &body,
            data: data.map(str::as_bytes),
            up_devcap_post_charset: request::lines(headers, X_UP_DEVCAP_POST_CHARSET)
                .map(|v| v.unwrap_or(request::UNREADABLE))
                .collect(),
            parameter_cookie: request::has_cookie(request::cookies(headers), &guard.parameter),
        };
        let found = Found::judge(self.policy(), self.organisation(), &inbound, guard);
        let recorded = found.is_decision(&self.head.method, guard);
        let mut ruling = found.ruling(
            self.head.method.clone(),
            self.head.target.path(),
            guard,
            None,
        );
        // In shadow mode a target rule's refusal is recorded, and the request forwarded.
        ruling.shadow = recorded && ruling.shadowed(self.policy());
        let (shadow, refusal) = (ruling.shadow, ruling.refusal);
        let rulings = if recorded { vec![ruling] } else { Vec::new() };
        drop(content_encoding);
        match refusal {
            None => self.cleared(body, rulings),
            Some(_) if shadow => self.cleared(body, rulings),
            Some(rejection) => self.refused(rejection, &guard.parameter, rulings),
        }
    }

    /// Every embedded request to a guarded resource is judged as if sent alone, with the outer
    /// Host; one refusal refuses the batch. A batch that cannot be read completely is refused.
    fn judge_batch(self, body: Bytes) -> Verdict<'c> {
        if body.is_empty() {
            return self.cleared(body, Vec::new());
        }
        // A batch refused before any part could be read is refused as a whole, with no parts.
        let judged = self.batch_parts(&body).unwrap_or_else(|rejection| Judged {
            rulings: Vec::new(),
            stop: Some(Stop::Whole(rejection)),
            unsent: Vec::new(),
        });
        let (rejection, parameter, rulings) = match judged.stop {
            None => return self.cleared(body, judged.rulings),
            Some(Stop::Part(rejection, parameter)) => (rejection, parameter, judged.rulings),
            Some(Stop::Whole(rejection)) => (rejection, TARGET, vec![self.whole(rejection)]),
        };
        Verdict {
            unsent: judged.unsent,
            ..self.refused(rejection, parameter, rulings)
        }
    }

    /// The rulings of a batch's guarded parts up to the first part refused (and not only
    /// recorded, in shadow mode), what refused it, and the parts read for the trail alone;
    /// `Err` when the batch is refused before any part could be read.
    fn batch_parts(&self, body: &[u8]) -> Result<Judged<'c>, Rejection> {
        if self.misdirected {
            return Err(Rejection::Misdirected);
        }
        let headers = &self.head.headers;
        let content_type = request::single(request::lines(headers, "content-type"));
        check_encoding(
            request::lines(headers, X_UP_DEVCAP_POST_CHARSET)
                .map(|v| v.unwrap_or(request::UNREADABLE)),
            content_type,
            true,
        )?;
        let content_encoding = request::list(request::lines(headers, "content-encoding"));
        if content_encoding.is_some_and(|e| !extract::is_identity(&e)) {
            return Err(Rejection::EncodedBody);
        }
        let boundary = batch::boundary(content_type.unwrap_or("")).map_err(batch_rejection)?;
        let parts = batch::parse(body, boundary).map_err(batch_rejection)?;
        if parts.is_empty() {
            return Err(Rejection::BadBatch);
        }
        let organisation = self.organisation();
        let mut rulings: Vec<Ruling<'c>> = Vec::new();
        let mut stop: Option<Stop<'c>> = None;
        let mut unsent = Vec::new();
        for (index, part) in parts.iter().enumerate() {
            let path = part.path();
            let view = route::view(path, &self.config.guards);
            let place = (index, parts.len());
            if stop.is_some() {
                // The batch is refused: what follows is read for the trail, and nothing in it
                // (a bad path, a foreign Host, a part that cannot be read) changes the answer.
                if let Route::Guarded(guard) = view.route {
                    if rulings.len() + unsent.len() == MAX_GUARDED_PARTS {
                        break;
                    }
                    unsent.extend(self.unsent_part(part, path, guard, organisation, place));
                }
                continue;
            }
            match self.decide_part(part, path, &view, organisation, place, rulings.len()) {
                Ok(None) => {}
                Ok(Some((ruling, guard))) => {
                    let enforced = !ruling.shadow;
                    if let Some(rejection) = ruling.refusal.filter(|_| enforced) {
                        stop = Some(Stop::Part(rejection, &guard.parameter));
                    }
                    rulings.push(ruling);
                }
                Err(rejection) => {
                    // Refused as a whole: the parts judged so far, and this one if it is
                    // guarded, are read for the trail like the parts after it.
                    stop = Some(Stop::Whole(rejection));
                    unsent.extend(rulings.drain(..).map(Ruling::unsent));
                    if let Route::Guarded(guard) = view.route {
                        if unsent.len() < MAX_GUARDED_PARTS {
                            unsent.extend(self.unsent_part(part, path, guard, organisation, place));
                        }
                    }
                }
            }
        }
        Ok(Judged {
            rulings,
            stop,
            unsent,
        })
    }

    /// One part of a batch not yet refused: its ruling if it is a guarded request whose targets
    /// the pool would act on (with its guard), `None` if it is none; `Err` when it refuses the
    /// batch as a whole. `judged` rulings came before it.
    fn decide_part(
        &self,
        part: &batch::Part<'_>,
        path: &str,
        view: &route::PathView<'c>,
        organisation: Option<&'c Organisation>,
        (index, parts): (usize, usize),
        judged: usize,
    ) -> Result<Option<(Ruling<'c>, &'c Guard)>, Rejection> {
        if view.under_ucwa {
            ucwa_headers(part.headers.iter().map(|&(name, _)| name.as_bytes()))?;
        }
        let guard = match view.route {
            Route::Passthrough => {
                // A part the pool is sent unjudged still needs a Host that can be read, as a
                // request on any path does (fresh eyes, round 34).
                if let PartHost::Unreadable(_) = self.part_host(part, organisation) {
                    return Err(Rejection::BadBatch);
                }
                return Ok(None);
            }
            Route::BadPath => return Err(Rejection::BadPath),
            Route::Batch => return Err(Rejection::BadBatch),
            Route::Guarded(guard) => guard,
        };
        // Parts are judged with the outer Host; a guarded part whose own Host belongs to
        // another organisation would be judged by the wrong lists (fresh eyes, issue 14, A).
        let own_host = match self.part_host(part, organisation) {
            PartHost::Batch(own) => own,
            PartHost::Other(..) => return Err(Rejection::Misdirected),
            PartHost::Unreadable(_) => return Err(Rejection::BadBatch),
        };
        let method = Method::from_bytes(part.method.as_bytes()).map_err(|_| Rejection::BadBatch)?;
        let found = self.judge_part(part, &method, guard, organisation)?;
        if !found.is_decision(&method, guard) {
            return Ok(None);
        }
        if judged == MAX_GUARDED_PARTS {
            return Err(Rejection::BadBatch);
        }
        let mut ruling = found.ruling(method, path, guard, Some((index, parts)));
        ruling.shadow = ruling.shadowed(self.policy());
        ruling.host = own_host;
        Ok(Some((ruling, guard)))
    }

    /// Whose lists a part's own Host names. A Host the outer request would be refused for
    /// (not `host[:port]`, or sent twice) refuses the batch, `bad_batch`: which organisation it
    /// names cannot be told, and the pool may read it (fresh eyes, round 32).
    fn part_host(
        &self,
        part: &batch::Part<'_>,
        organisation: Option<&'c Organisation>,
    ) -> PartHost<'c> {
        let mut hosts = part.header_values("host");
        let Some(part_host) = hosts.next() else {
            return PartHost::Batch(None);
        };
        if hosts.next().is_some() || host::parse_authority(part_host).is_none() {
            let all: Vec<&str> = part.header_values("host").collect();
            return PartHost::Unreadable(all.join(", ").into());
        }
        let theirs = self.policy().organisation_for(part_host);
        let same = match (theirs, organisation) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            PartHost::Batch(Some(part_host.into()))
        } else {
            PartHost::Other(theirs, part_host.into())
        }
    }

    /// One guarded part's targets, judged as if it were sent alone (with the outer Host, and the
    /// batch's own cookies as well as its own: a part may be run with either).
    fn judge_part(
        &self,
        part: &batch::Part<'_>,
        method: &Method,
        guard: &'c Guard,
        organisation: Option<&'c Organisation>,
    ) -> Result<Found<'c>, Rejection> {
        let values = |name: &'static str| part.header_values(name).map(Some);
        let content_type = request::single(values("content-type"));
        let content_encoding = request::list(values("content-encoding"));
        if content_type == Some(request::UNREADABLE) {
            return Err(Rejection::BadBatch);
        }
        let data = one_data(values("data"))?;
        let inbound = Inbound {
            method,
            query: part.query(),
            content_type,
            content_encoding: content_encoding.as_deref(),
            body: part.body,
            data: data.map(str::as_bytes),
            up_devcap_post_charset: part.header_values(X_UP_DEVCAP_POST_CHARSET).collect(),
            parameter_cookie: request::has_cookie(
                part.header_values("cookie").map(str::as_bytes),
                &guard.parameter,
            ) || request::has_cookie(
                request::cookies(&self.head.headers),
                &guard.parameter,
            ),
        };
        Ok(Found::judge(self.policy(), organisation, &inbound, guard))
    }

    /// A guarded part after the one that refused its batch, as the trail states it: its targets
    /// read as they would have been, and no refusal of its own (its line says `not_sent`
    /// whatever its targets would have met: the batch has one `deny`). A part whose own Host
    /// names another organisation is read by that organisation's lists, and one whose Host
    /// cannot be read by none; either line shows the part's Host (fresh eyes, rounds 31 to 33:
    /// not the batch's organisation, and not left out). `None` for a part that could not be
    /// judged or names no target the pool would act on.
    fn unsent_part(
        &self,
        part: &batch::Part<'_>,
        path: &str,
        guard: &'c Guard,
        organisation: Option<&'c Organisation>,
        (index, parts): (usize, usize),
    ) -> Option<Ruling<'c>> {
        let (organisation, own_host) = match self.part_host(part, organisation) {
            PartHost::Batch(own) => (organisation, own),
            PartHost::Other(theirs, host) => (theirs, Some(host)),
            PartHost::Unreadable(host) => (None, Some(host)),
        };
        let method = Method::from_bytes(part.method.as_bytes()).ok()?;
        let found = self.judge_part(part, &method, guard, organisation).ok()?;
        if !found.is_decision(&method, guard) {
            return None;
        }
        let mut ruling = found.ruling(method, path, guard, Some((index, parts)));
        ruling.host = own_host;
        Some(ruling.unsent())
    }
}

/// Whose lists a batch part's own Host names.
enum PartHost<'c> {
    /// No Host line, or one of the batch's own organisation: with that Host, which the part's
    /// line shows (fresh eyes round 35: it showed the batch's).
    Batch(Option<Box<str>>),
    /// Another organisation's, or none where the batch has one; with the Host.
    Other(Option<&'c Organisation>, Box<str>),
    /// None that can be told: the Host lines as sent.
    Unreadable(Box<str>),
}

/// A batch's guarded parts as judged.
struct Judged<'c> {
    /// The rulings up to the part that refused the batch; none if it was refused as a whole.
    rulings: Vec<Ruling<'c>>,
    /// What refused the batch, if anything did.
    stop: Option<Stop<'c>>,
    /// The guarded parts read for the trail alone ([`Verdict::unsent`]): those after the one
    /// that refused the batch, and when it was refused as a whole, every part.
    unsent: Vec<Ruling<'c>>,
}

/// What refused a batch.
enum Stop<'c> {
    /// A part's enforced refusal: its rejection and parameter.
    Part(Rejection, &'c str),
    /// The batch as a whole, for a part it could not judge (a bad path, a method override, a
    /// foreign Host, a part that cannot be read, too many guarded parts).
    Whole(Rejection),
}

/// The headers UCWA must not see, on a request or a batch part whose path could reach it: a
/// method override ([`request::METHOD_OVERRIDES`]) or a header that rewrites the path
/// ([`request::PATH_OVERRIDES`]). Names are compared without case, `-` or `_`: IIS hands
/// `X_Original_URL` to the application as the same `HTTP_X_ORIGINAL_URL` server variable as
/// `X-Original-URL`.
fn ucwa_headers<'n>(names: impl Iterator<Item = &'n [u8]>) -> Result<(), Rejection> {
    let mut refusal = Ok(());
    for name in names {
        match override_of(name) {
            Some(Override::Method) => return Err(Rejection::MethodOverride),
            Some(Override::Path) => refusal = Err(Rejection::BadPath),
            None => {}
        }
    }
    refusal
}

/// What an override header would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Override {
    Method,
    Path,
}

/// The longest override name without `-` or `_`: `xhttpmethodoverride`.
const LOOSE_MAX: usize = 19;

/// [`request::METHOD_OVERRIDES`] and [`request::PATH_OVERRIDES`] by their names without case,
/// `-` or `_`, folded into a stack buffer and matched at once (by length, then bytes), not
/// compared with each of the six a character at a time; a name starting otherwise than `x` or
/// `a` (most) is told on its first byte. The tests hold the definition by comparison, and this
/// table to the constants.
fn override_of(name: &[u8]) -> Option<Override> {
    let mut loose = [0u8; LOOSE_MAX];
    let mut len = 0;
    for &b in name {
        if matches!(b, b'-' | b'_') {
            continue;
        }
        let b = b.to_ascii_lowercase();
        if (len == 0 && !matches!(b, b'x' | b'a')) || len == LOOSE_MAX {
            return None;
        }
        loose[len] = b;
        len += 1;
    }
    match &loose[..len] {
        b"xhttpmethodoverride" | b"xhttpmethod" | b"xmethodoverride" => Some(Override::Method),
        b"aspfiltersessionid" | b"xoriginalurl" | b"xrewriteurl" => Some(Override::Path),
        _ => None,
    }
}

/// The one `Data:` line of a request or batch part, if any; two are [`Rejection::Duplicate`].
fn one_data<'a>(
    mut lines: impl Iterator<Item = Option<&'a str>>,
) -> Result<Option<&'a str>, Rejection> {
    let first = lines.next();
    if lines.next().is_some() {
        return Err(Rejection::Duplicate);
    }
    Ok(first.map(|line| line.unwrap_or(request::UNREADABLE)))
}

/// One request to a guarded resource, as far as its targets are concerned: a whole request, or
/// a batch part (with its `Data:` header).
struct Inbound<'r> {
    method: &'r Method,
    query: Option<&'r str>,
    content_type: Option<&'r str>,
    content_encoding: Option<&'r str>,
    body: &'r [u8],
    /// A `Data:` header, judged as a JSON body (the Batch.js sample sends a part's body so).
    data: Option<&'r [u8]>,
    up_devcap_post_charset: Vec<&'r str>,
    /// A cookie is named like the parameter: `Request[name]` could read it.
    parameter_cookie: bool,
}

/// What judging one [`Inbound`] found.
struct Found<'c> {
    organisation: Option<&'c Organisation>,
    targets: Vec<Target>,
    rule: Option<Rule<'c>>,
    outcome: Result<(), Rejection>,
    /// The target as received, when it could not be parsed (`too_long`, `malformed`).
    raw_target: Option<Box<str>>,
    /// `raw_target` is a value refused for the request's encoding ([`Ruling::unreadable`]).
    unreadable: bool,
}

impl<'c> Found<'c> {
    /// The ruling these findings make of a request (or of a batch's part `index` of `parts`)
    /// to `guard`: its refusal, if any; not yet shadowed.
    fn ruling(
        self,
        method: Method,
        path: &str,
        guard: &'c Guard,
        part: Option<(usize, usize)>,
    ) -> Ruling<'c> {
        Ruling {
            method,
            path: path.into(),
            resource: &guard.resource,
            organisation: self.organisation,
            targets: self.targets,
            rule: self.rule,
            refusal: self.outcome.err(),
            shadow: false,
            raw_target: self.raw_target,
            unreadable: self.unreadable,
            host: None,
            batch: part.map(|(index, parts)| Part {
                part: Some(index + 1),
                parts: Some(parts),
            }),
        }
    }

    /// Finds every target the pool could act on, requires them to agree, and decides.
    fn judge(
        policy: &'c Policy,
        organisation: Option<&'c Organisation>,
        req: &Inbound<'_>,
        guard: &Guard,
    ) -> Found<'c> {
        let mut found = Found {
            organisation,
            targets: Vec::new(),
            rule: None,
            outcome: Ok(()),
            raw_target: None,
            unreadable: false,
        };
        if let Err(rejection) = found.read(policy, req, guard) {
            found.outcome = Err(rejection);
        }
        found
    }

    /// Whether this is a decision to record: a target was judged or refused, or a POST to a
    /// guard whose parameter is optional went without it (an allow with no targets). A request
    /// without a target otherwise (a GET the pool answers 405) is not a decision.
    fn is_decision(&self, method: &Method, guard: &Guard) -> bool {
        !self.targets.is_empty()
            || self.outcome.is_err()
            || (*method == Method::POST && !guard.required)
    }

    fn read(
        &mut self,
        policy: &'c Policy,
        req: &Inbound<'_>,
        guard: &Guard,
    ) -> Result<(), Rejection> {
        check_encoding(
            req.up_devcap_post_charset.iter().copied(),
            req.content_type,
            !req.body.is_empty(),
        )?;
        if req.parameter_cookie {
            return Err(Rejection::Duplicate);
        }
        let param = &*guard.parameter;
        let query = match req.query {
            Some(q) => extract::from_query(q, param),
            None => Ok(None),
        };
        let body = extract::from_body(req.content_type, req.content_encoding, req.body, param);
        let data = match req.data {
            Some(d) => extract::from_body(Some("application/json"), None, d, param),
            None => Ok(None),
        };
        let raws: [Option<Cow<'_, str>>; 3] = match (query, body, data) {
            (Ok(query), Ok(body), Ok(data)) => [query, body, data],
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                if e == ExtractError::Malformed {
                    // What the client named, for the trail: a value refused for a control
                    // character still names a number (fresh eyes, round 32). Refused for the
                    // request's encoding, it stays so in shadow mode (round 33).
                    self.unreadable = true;
                    let attempted =
                        extract::attempted(req.query, req.content_type, req.body, param);
                    self.raw_target = attempted.map(String::into_boxed_str);
                }
                return Err(extract_rejection(e));
            }
        };
        // A nested JSON key alone is no target (SPEC §4), but beside one it is a second.
        let [_, from_body, from_data] = &raws;
        let nested = || {
            let in_body = || extract::nests(req.content_type, req.body, param);
            let in_data = || {
                req.data
                    .is_some_and(|d| extract::nests(Some("application/json"), d, param))
            };
            (from_body.is_none() && in_body()) || (from_data.is_none() && in_data())
        };
        if raws.iter().any(Option::is_some) && nested() {
            return Err(Rejection::Duplicate);
        }
        let mut parsed: Option<&str> = None;
        for raw in raws.iter().flatten() {
            // The same text parses to the same target: a client that names its target in the
            // query and the body alike (the usual way) has it parsed once.
            if parsed == Some(raw.as_ref()) {
                continue;
            }
            parsed = Some(raw);
            let target = Target::parse(raw, policy.max_target_length()).map_err(|e| {
                self.raw_target = Some(raw.as_ref().into());
                match e {
                    TargetError::TooLong { .. } => Rejection::TooLong,
                    TargetError::Malformed(_) => Rejection::Malformed,
                }
            })?;
            if self.targets.first().is_some_and(|first| *first != target) {
                self.targets.push(target);
                return Err(Rejection::Conflict);
            }
            if self.targets.is_empty() {
                self.targets.push(target);
            }
        }
        // An optional parameter that is absent is forwarded, but not one named only where it
        // cannot be judged (a nested JSON key): that is `missing`, as for a required one.
        let Some(target) = self.targets.first() else {
            return if *req.method == Method::POST && (guard.required || nested()) {
                Err(Rejection::Missing)
            } else {
                Ok(())
            };
        };
        let decision = policy.decide(self.organisation, target);
        self.rule = decision.rule;
        match decision.refusal {
            None => Ok(()),
            Some(DenyReason::NotAllowed) => Err(Rejection::NotAllowed),
            Some(DenyReason::Denied) => Err(Rejection::Denied),
            Some(DenyReason::NoOrganisation) => Err(Rejection::NoOrganisation),
            Some(DenyReason::Malformed) => Err(Rejection::Malformed),
        }
    }
}

/// SPEC §4 "Request encoding": whatever ASP.NET would re-decode the query and the form with must
/// be UTF-8 ([`media::request_encoding`]).
fn check_encoding<'a>(
    up_devcap_post_charset: impl IntoIterator<Item = &'a str>,
    content_type: Option<&'a str>,
    has_body: bool,
) -> Result<(), Rejection> {
    media::request_encoding(up_devcap_post_charset, content_type, has_body).map_err(|e| match e {
        EncodingError::UpDevcapPostCharset | EncodingError::Charset => {
            Rejection::UnsupportedMediaType
        }
    })
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

fn batch_rejection(e: batch::BatchError) -> Rejection {
    use batch::BatchError;
    match e {
        BatchError::NotBatching => Rejection::UnsupportedMediaType,
        BatchError::Boundary
        | BatchError::Framing
        | BatchError::PartHeaders
        | BatchError::RequestLine
        | BatchError::RequestHeaders => Rejection::BadBatch,
    }
}

#[cfg(test)]
mod tests;
