//! Who is behind a request (SPEC §12 "Who"): the UCWA application its path names, the user that
//! application belongs to, and a fingerprint of its bearer token.
//!
//! The user is learnt only from the pool's own answers, never from what a client sends: the
//! `application` resource a `POST .../applications` creates (its embedded `me`) and the answer
//! to `GET .../applications/{id}/me`, in JSON or XML. Both carry the user's SIP URI in `me`'s
//! `uri` property and the application in `me`'s self href, which is where the application id is
//! read from. What is learnt is kept in [`Identities`], bounded (LRU) and forgotten when idle.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde::Deserialize;

use crate::iis::media::MediaType;
use crate::iis::path;

/// `[identity]`: the bounds of the learnt application → user map ([`Identities`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Applications remembered at most; the least recently used is forgotten first.
    pub max_applications: u64,
    /// An application not seen for this long is forgotten (UCWA itself drops an idle
    /// application after about 15 minutes).
    pub idle_expiry: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_applications: 100_000,
            idle_expiry: Duration::from_secs(30 * 60),
        }
    }
}

/// Longest application id taken from a path. Real ids are short: `101507115166` in the
/// UCWA 2.0 documentation, `BugSBxO22nYVkBrURmbIgLbv95e0=` in MS-OCSMP §4.1.2.
pub const MAX_APPLICATION_ID: usize = 64;

/// Longest user SIP URI kept.
pub const MAX_USER_URI: usize = 256;

/// Largest answer read for a user. A real `application` resource is 4 to 6 KiB (the MS-OCSMP
/// example, with one embedded resource, is 4,317 bytes of XML); `me` is under 2 KiB. Past this,
/// the answer still streams through, and nothing is learnt from it.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The UCWA application id of a request path (no query): the segment after the first
/// `/applications/` (ASCII case-insensitive, as IIS compares paths) of a path under `/ucwa/`.
///
/// Read from the raw path only when the path is plain ([`path::is_plain`]: no escapes, dot
/// segments, `;`, `\` or cookieless segments), where the raw path is the reading the guard
/// makes; a path the pool would read otherwise names no application here, so a client cannot
/// have a request attributed to an application it does not act on (`/applications/1/../2/`).
/// An id must be 1 to [`MAX_APPLICATION_ID`] letters, digits, `-`, `_` or `=`; anything else
/// names none, so the audit trail never carries a client's junk.
pub fn application(path: &str) -> Option<&str> {
    split(path).map(|(id, _)| id)
}

/// The application a request's path names, for the audit trail: a plain path's own
/// ([`application`]), or, for a path the pool reads through escapes, dot segments or cookieless
/// segments, the one every reading of it ([`path::readings`]) agrees on; `None` if any reading
/// fails or names another. Learning never uses this: it takes plain paths only.
pub fn application_read(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    if let Some(id) = application(raw) {
        return Some(std::borrow::Cow::Borrowed(id));
    }
    if path::is_plain(raw) {
        return None;
    }
    let mut agreed: Option<String> = None;
    for reading in path::readings(raw) {
        let reading = reading.ok()?;
        let id = application(&reading)?;
        match &agreed {
            None => agreed = Some(id.to_owned()),
            Some(first) if first == id => {}
            Some(_) => return None,
        }
    }
    agreed.map(std::borrow::Cow::Owned)
}

/// The application id of a plain UCWA path, and what follows it (`""`, `/me`, ...).
fn split(path: &str) -> Option<(&str, &str)> {
    if !path::is_plain(path) || !under_ucwa(path) {
        return None;
    }
    let mut rest = path;
    loop {
        let at = rest.find('/')?;
        rest = &rest[at + 1..];
        let segment = &rest[..rest.find('/').unwrap_or(rest.len())];
        if segment.eq_ignore_ascii_case("applications") {
            let after = rest.get(segment.len() + 1..)?;
            let end = after.find('/').unwrap_or(after.len());
            let (id, tail) = after.split_at(end);
            return is_application_id(id).then_some((id, tail));
        }
    }
}

fn under_ucwa(path: &str) -> bool {
    path::starts_with_ucwa(path.as_bytes()) && path.as_bytes().get(5) == Some(&b'/')
}

fn is_application_id(id: &str) -> bool {
    (1..=MAX_APPLICATION_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
}

/// The first 16 hex digits of the SHA-256 of an `Authorization` value: enough to tell one
/// session's requests from another's, and the token itself is never kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenFingerprint([u8; 16]);

/// The fingerprint of the raw `Authorization` header value.
pub fn token_fingerprint(authorization: &HeaderValue) -> TokenFingerprint {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, authorization.as_bytes());
    let mut hex = [0u8; 16];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.as_ref()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    TokenFingerprint(hex)
}

impl TokenFingerprint {
    pub fn as_str(&self) -> &str {
        // Only ever lowercase hex digits (token_fingerprint).
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for TokenFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TokenFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenFingerprint({})", self.as_str())
    }
}

impl serde::Serialize for TokenFingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The applications whose user the pool has told us: application id → user SIP URI, at most
/// `identity.max_applications` of them (the least recently used is forgotten first), each
/// forgotten after `identity.idle_expiry` without a lookup or a lesson. Lookups and inserts are
/// lock-free reads and sharded writes (moka), cheap enough for every guarded request.
pub struct Identities {
    map: Cache<Box<str>, Arc<str>>,
    settings: Settings,
}

impl Identities {
    pub fn new(settings: Settings) -> Identities {
        Identities {
            map: Cache::builder()
                .max_capacity(settings.max_applications)
                .time_to_idle(settings.idle_expiry)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            settings,
        }
    }

    /// The user of an application, when the pool has told us.
    pub fn user(&self, application: &str) -> Option<Arc<str>> {
        self.map.get(application)
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The map for `settings`: this one when they are unchanged, else a new one holding what
    /// this one knows (up to its new bound), so that a reload forgets no one needlessly.
    pub fn for_settings(self: &Arc<Self>, settings: Settings) -> Arc<Identities> {
        if settings == self.settings {
            return Arc::clone(self);
        }
        let next = Identities::new(settings);
        for (application, user) in self.map.iter() {
            next.map.insert(Box::from(&**application), user);
        }
        Arc::new(next)
    }

    /// Applications known now, after pending evictions are applied: for tests and diagnostics,
    /// never per request.
    pub fn len(&self) -> u64 {
        self.map.run_pending_tasks();
        self.map.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Only [`Learning`] calls this, with what the pool answered.
    fn learn(&self, application: &str, user: Arc<str>) {
        self.map.insert(Box::from(application), user);
    }
}

/// What a forwarded request could teach, known from its method and path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lesson {
    /// `POST .../applications`: the answer is the new application, with `me` embedded.
    Application,
    /// `GET .../applications/{id}/me`: the answer is `me`, which must name this application.
    Me(Box<str>),
}

impl Lesson {
    /// The lesson a request could teach; `None` for almost all traffic, which then pays
    /// nothing. `target` is the origin-form request target (a query is ignored).
    pub fn of(method: &Method, target: &str) -> Option<Lesson> {
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        let path = path::trim_trailing_slash(path);
        let last = path.rsplit('/').next()?;
        if *method == Method::POST {
            let applications = last.eq_ignore_ascii_case("applications")
                && path::is_plain(path)
                && under_ucwa(path);
            return applications.then_some(Lesson::Application);
        }
        if *method == Method::GET && last.eq_ignore_ascii_case("me") {
            let (id, tail) = split(path)?;
            return tail
                .eq_ignore_ascii_case("/me")
                .then(|| Lesson::Me(id.into()));
        }
        None
    }

    /// Whether an answer can teach this lesson: 2xx, JSON or XML, not content-coded, and not
    /// announced larger than [`MAX_ANSWER_BYTES`].
    fn format(&self, status: StatusCode, headers: &HeaderMap) -> Option<Format> {
        if !status.is_success() {
            return None;
        }
        if headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return None;
        }
        if let Some(length) = headers.get(header::CONTENT_LENGTH) {
            let length: usize = length.to_str().ok()?.parse().ok()?;
            if length > MAX_ANSWER_BYTES {
                return None;
            }
        }
        let media = MediaType::parse(headers.get(header::CONTENT_TYPE)?.to_str().ok()?).ok()?;
        let essence = media.essence().to_ascii_lowercase();
        if essence == "application/json" || essence.ends_with("+json") {
            Some(Format::Json)
        } else if essence == "application/xml" || essence == "text/xml" || essence.ends_with("+xml")
        {
            Some(Format::Xml)
        } else {
            None
        }
    }

    /// The application and user an answer's body teaches, if it teaches this lesson exactly.
    fn read(&self, format: Format, body: &[u8]) -> Option<(Box<str>, Arc<str>)> {
        let taught = match format {
            Format::Json => json(self, body),
            Format::Xml => xml(self, body),
        }?;
        let application = me_href_application(&taught.me_href)?;
        if let Some(href) = &taught.application_href {
            if href_application(href)? != (application, "") {
                return None;
            }
        }
        if let Lesson::Me(asked) = self {
            if **asked != *application {
                return None;
            }
        }
        Some((application.into(), user_uri(&taught.uri)?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Xml,
}

/// What an answer says, before it is checked.
#[derive(Debug, Default)]
struct Taught {
    /// The application resource's own href (POST answers).
    application_href: Option<String>,
    me_href: String,
    uri: String,
}

/// The application id of an href (relative, or absolute with a scheme and authority) and what
/// follows it.
fn href_application(href: &str) -> Option<(&str, &str)> {
    let path = match href.find("://") {
        Some(at) if href[..at].bytes().all(|b| b.is_ascii_alphabetic()) => {
            let after = &href[at + 3..];
            &after[after.find('/')?..]
        }
        _ => href,
    };
    let path = path.split_once(['?', '#']).map_or(path, |(p, _)| p);
    split(path::trim_trailing_slash(path))
}

/// The application of a `me` self href: `.../applications/{id}/me` exactly.
fn me_href_application(href: &str) -> Option<&str> {
    let (id, tail) = href_application(href)?;
    tail.eq_ignore_ascii_case("/me").then_some(id)
}

/// A user URI worth keeping: `sip:` or `sips:`, visible ASCII, at most [`MAX_USER_URI`] bytes.
fn user_uri(uri: &str) -> Option<Arc<str>> {
    let scheme = uri.split_once(':')?.0;
    let sip = scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips");
    let fits = uri.len() > scheme.len() + 1 && uri.len() <= MAX_USER_URI;
    (sip && fits && uri.bytes().all(|b| b.is_ascii_graphic())).then(|| Arc::from(uri))
}

#[derive(Deserialize)]
struct JsonResource {
    rel: Option<String>,
    uri: Option<String>,
    #[serde(rename = "_links")]
    links: Option<JsonLinks>,
    #[serde(rename = "_embedded")]
    embedded: Option<JsonEmbedded>,
}

#[derive(Deserialize)]
struct JsonLinks {
    #[serde(rename = "self")]
    this: Option<JsonLink>,
}

#[derive(Deserialize)]
struct JsonLink {
    href: String,
}

#[derive(Deserialize)]
struct JsonEmbedded {
    me: Option<Box<JsonResource>>,
}

/// UCWA JSON: `me` itself (its `uri` and `_links.self.href`), or the application with `me` in
/// `_embedded.me`. A key given twice makes the answer teach nothing.
fn json(lesson: &Lesson, body: &[u8]) -> Option<Taught> {
    let resource: JsonResource = serde_json::from_slice(body).ok()?;
    let rel_is = |r: &JsonResource, rel: &str| r.rel.as_deref().is_none_or(|r| r == rel);
    let self_href = |r: &JsonResource| Some(r.links.as_ref()?.this.as_ref()?.href.clone());
    let (application_href, me) = match lesson {
        Lesson::Me(_) => (None, resource),
        Lesson::Application => {
            if !rel_is(&resource, "application") {
                return None;
            }
            let href = self_href(&resource);
            (href, *resource.embedded?.me?)
        }
    };
    if !rel_is(&me, "me") {
        return None;
    }
    Some(Taught {
        application_href,
        me_href: self_href(&me)?,
        uri: me.uri.clone()?,
    })
}

/// UCWA XML: `<resource rel="me" href="...">` with `<property name="uri">`, at the root or
/// as `<embedded>` in the root `<resource rel="application" href="...">`. Names are compared by
/// local name; a DOCTYPE, an entity in the URI, or a second `me` or `uri` teaches nothing.
fn xml(lesson: &Lesson, body: &[u8]) -> Option<Taught> {
    let text = std::str::from_utf8(body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body)).ok()?;
    let mut reader = Reader::from_str(text);
    // The local names of the open elements, root first.
    let mut open: Vec<Vec<u8>> = Vec::new();
    let mut taught = Taught::default();
    let (mut me_seen, mut uri_seen) = (false, false);
    // Inside `me`, and inside its `uri` property.
    let (mut in_me, mut in_uri) = (false, false);
    // Depth of `me` itself: the root for GET .../me, root > embedded > resource for a POST.
    let me_depth = match lesson {
        Lesson::Me(_) => 1,
        Lesson::Application => 3,
    };
    loop {
        let event = reader.read_event().ok()?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let name = e.local_name().as_ref().to_vec();
            let depth = open.len() + 1;
            let resource = name == b"resource";
            if depth == 1 && !resource {
                return None;
            }
            if depth == 1 && *lesson == Lesson::Application {
                if attribute(e, b"rel")?.as_deref() != Some("application") {
                    return None;
                }
                taught.application_href = attribute(e, b"href")?;
            }
            let me_here = resource
                && depth == me_depth
                && (depth == 1 || open.get(1).is_some_and(|n| n == b"embedded"))
                && attribute(e, b"rel")?.as_deref() == Some("me");
            if me_here {
                if me_seen {
                    return None;
                }
                me_seen = true;
                in_me = !empty;
                taught.me_href = attribute(e, b"href")??;
            } else if depth == 1 && me_depth == 1 {
                return None; // GET .../me answered with another resource
            }
            let uri_here = in_me
                && depth == me_depth + 1
                && name == b"property"
                && attribute(e, b"name")?.as_deref() == Some("uri");
            if uri_here {
                if uri_seen {
                    return None;
                }
                uri_seen = true;
                in_uri = !empty;
            }
            if !empty {
                open.push(name);
            }
            continue;
        }
        match event {
            Event::End(_) => {
                if open.len() == me_depth {
                    in_me = false;
                }
                open.pop();
                in_uri = false;
            }
            Event::Text(t) if in_uri => taught.uri.push_str(&t.decode().ok()?),
            Event::CData(c) if in_uri => taught.uri.push_str(&c.decode().ok()?),
            Event::GeneralRef(_) if in_uri => return None,
            Event::DocType(_) => return None,
            Event::Eof => break,
            _ => {}
        }
    }
    (me_seen && uri_seen).then_some(taught)
}

/// An attribute's value by local name: `Some(None)` when absent, `None` when unreadable.
fn attribute(e: &BytesStart<'_>, local: &[u8]) -> Option<Option<String>> {
    let mut found = None;
    for a in e.attributes() {
        let a = a.ok()?;
        if a.key.local_name().as_ref() == local {
            if found.is_some() {
                return None;
            }
            found = Some(a.unescape_value().ok()?.into_owned());
        }
    }
    Some(found)
}

/// A pool answer's body on its way back to the client, unchanged and undelayed. An answer that
/// can teach ([`Learning::new`] with a lesson) is copied up to [`MAX_ANSWER_BYTES`] as it
/// passes and read at its end; every other answer is passed through untouched.
pub struct Learning<B> {
    inner: B,
    student: Option<Box<Student>>,
}

struct Student {
    lesson: Lesson,
    format: Format,
    identities: Arc<Identities>,
    copy: Vec<u8>,
}

impl<B> Learning<B> {
    /// Wraps an answer's body; it is read only when `lesson` is one the answer's status and
    /// headers can teach.
    pub fn new(
        inner: B,
        lesson: Option<Lesson>,
        status: StatusCode,
        headers: &HeaderMap,
        identities: &Arc<Identities>,
    ) -> Learning<B> {
        let student = lesson.and_then(|lesson| {
            let format = lesson.format(status, headers)?;
            Some(Box::new(Student {
                lesson,
                format,
                identities: Arc::clone(identities),
                copy: Vec::new(),
            }))
        });
        Learning { inner, student }
    }

    /// Whether this answer is being read.
    pub fn is_learning(&self) -> bool {
        self.student.is_some()
    }

    /// Reads the copy and remembers what it teaches; once.
    fn finish(&mut self) {
        if let Some(student) = self.student.take() {
            if let Some((application, user)) = student.lesson.read(student.format, &student.copy) {
                student.identities.learn(&application, user);
            }
        }
    }
}

impl<B> Body for Learning<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.student.is_none() {
            return polled;
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(student)) = (frame.data_ref(), &mut this.student) {
                    if student.copy.len() + data.remaining() > MAX_ANSWER_BYTES {
                        this.student = None;
                    } else {
                        student.copy.extend_from_slice(data);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => this.student = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::{BodyExt, Full};

    use super::*;

    const APP: &str = "/ucwa/oauth/v1/applications";

    /// Fresh-eyes round 6, F4: the trail names the application of a path the pool reads through
    /// escapes, dot segments or cookieless segments, when every reading agrees.
    #[test]
    fn the_trail_reads_the_application_through_the_pools_readings() {
        let ring = "/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact";
        for (path, expected) in [
            (format!("{APP}/1001{ring}"), Some("1001")),
            (format!("{APP}/./1001{ring}"), Some("1001")),
            (format!("{APP}/x/../1001{ring}"), Some("1001")),
            (format!("{APP}/%31001{ring}"), Some("1001")),
            (format!("{APP}/(S(abc))/1001{ring}"), Some("1001")),
            (
                format!("/ucwa/oauth/v1/%61pplications/1001{ring}"),
                Some("1001"),
            ),
            (format!("{APP}/1001/../1002{ring}"), Some("1002")),
            (format!("{APP}/1%00{ring}"), None),
            (format!("/other/applications/1001{ring}"), None),
        ] {
            assert_eq!(application_read(&path).as_deref(), expected, "{path}");
        }
    }

    fn identities(max: u64) -> Arc<Identities> {
        Arc::new(Identities::new(Settings {
            max_applications: max,
            idle_expiry: Duration::from_secs(60),
        }))
    }

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        h
    }

    const JSON: &str = "application/vnd.microsoft.com.ucwa+json; charset=utf-8";
    const XML: &str = "application/vnd.microsoft.com.ucwa+xml; charset=utf-8";

    fn application_json(app_href: &str, me_href: &str, uri: &str) -> String {
        format!(
            r#"{{"culture":"en-US","userAgent":"x","type":"Browser","_links":{{"self":{{"href":"{app_href}"}},"policies":{{"href":"{app_href}/policies"}}}},"_embedded":{{"me":{{"name":"Jane Doe","uri":"{uri}","_links":{{"self":{{"href":"{me_href}"}}}},"rel":"me"}},"people":{{"_links":{{"self":{{"href":"{app_href}/people"}}}},"rel":"people"}}}},"rel":"application"}}"#
        )
    }

    fn application_xml(app_href: &str, me_href: &str, uri: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><resource rel="application" href="{app_href}" xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"><link rel="policies" href="{app_href}/policies"/><property name="culture">en-US</property><embedded><resource rel="me" href="{me_href}"><link rel="callForwardingSettings" href="{me_href}/callForwardingSettings"/><property name="name">Jane Doe</property><property name="uri">{uri}</property></resource><resource rel="people" href="{app_href}/people"/></embedded></resource>"#
        )
    }

    fn me_xml(me_href: &str, uri: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><resource rel="me" href="{me_href}" xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"><property name="name">Jane Doe</property><property name="uri">{uri}</property></resource>"#
        )
    }

    /// A body of the given frames; `knows_end` says whether it reports its end before the
    /// last poll, as hyper's `Incoming` does with a Content-Length.
    struct Frames {
        frames: std::collections::VecDeque<Bytes>,
        knows_end: bool,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.frames.pop_front().map(|b| Ok(Frame::data(b))))
        }

        fn is_end_stream(&self) -> bool {
            self.knows_end && self.frames.is_empty()
        }
    }

    /// Streams `body` through a [`Learning`] in `chunk`-byte frames, both ways of ending;
    /// what the map learnt.
    async fn teach(
        method: Method,
        path: &str,
        status: u16,
        content_type: &str,
        body: &str,
        chunk: usize,
    ) -> Option<(String, String)> {
        let mut learnt = Vec::new();
        for knows_end in [false, true] {
            let map = identities(10);
            let inner = Frames {
                frames: body
                    .as_bytes()
                    .chunks(chunk.max(1))
                    .map(Bytes::copy_from_slice)
                    .collect(),
                knows_end,
            };
            let learning = Learning::new(
                inner,
                Lesson::of(&method, path),
                StatusCode::from_u16(status).unwrap(),
                &headers(content_type),
                &map,
            );
            let out = learning.collect().await.unwrap().to_bytes();
            assert_eq!(out, body.as_bytes(), "the answer passes unchanged");
            learnt.push(
                map.map
                    .iter()
                    .next()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
        }
        assert_eq!(learnt[0], learnt[1]);
        learnt.pop().flatten()
    }

    fn pair(app: &str, user: &str) -> Option<(String, String)> {
        Some((app.to_owned(), user.to_owned()))
    }

    #[test]
    fn the_application_is_the_segment_after_applications() {
        assert_eq!(
            application("/ucwa/oauth/v1/applications/101507115166/me"),
            Some("101507115166")
        );
        assert_eq!(application("/UCWA/v1/APPLICATIONS/192"), Some("192"));
        assert_eq!(
            application("/ucwa/applications/BugSBxO22nYVkBrURmbIgLbv95e0=/photo"),
            Some("BugSBxO22nYVkBrURmbIgLbv95e0=")
        );
        assert_eq!(
            application("/ucwa/v1/applications/192/x/applications/7"),
            Some("192")
        );
        for none in [
            "/ucwa/v1/applications",
            "/ucwa/v1/applications/",
            "/ucwa/v1/applications//me",
            "/other/v1/applications/192/me",
            "/ucwa",
            "/ucwa/v1/applications/1%32/me",
            "/ucwa/v1/applications/1/../2/me",
            "/ucwa/v1/applications/(S(x))/2/me",
            "/ucwa/v1/applications/a;b/me",
            "/ucwa/v1/applications/<script>/me",
            "/ucwa/v1/applications/a.b/me",
            "/ucwa/v1/applicationsx/1/me",
        ] {
            assert_eq!(application(none), None, "{none}");
        }
        let long = format!(
            "/ucwa/v1/applications/{}/me",
            "1".repeat(MAX_APPLICATION_ID + 1)
        );
        assert_eq!(application(&long), None);
        let longest = format!(
            "/ucwa/v1/applications/{}/me",
            "1".repeat(MAX_APPLICATION_ID)
        );
        assert!(application(&longest).is_some());
    }

    #[test]
    fn a_token_fingerprint_is_16_hex_digits_of_its_sha256() {
        // Checked with `printf 'Bearer abc' | sha256sum`.
        const EXPECTED_BEARER_ABC: &str = "c355dce96c161288";
        let f = token_fingerprint(&HeaderValue::from_static("Bearer abc"));
        assert_eq!(f.to_string().len(), 16);
        assert!(f
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(f.as_str(), EXPECTED_BEARER_ABC);
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            format!("\"{EXPECTED_BEARER_ABC}\"")
        );
        assert_ne!(
            f,
            token_fingerprint(&HeaderValue::from_static("Bearer abd"))
        );
    }

    #[test]
    fn only_posts_to_applications_and_gets_of_me_can_teach() {
        assert_eq!(Lesson::of(&Method::POST, APP), Some(Lesson::Application));
        assert_eq!(
            Lesson::of(&Method::POST, "/ucwa/v1/Applications/?x=1"),
            Some(Lesson::Application)
        );
        assert_eq!(
            Lesson::of(&Method::GET, "/ucwa/v1/applications/192/me?x"),
            Some(Lesson::Me("192".into()))
        );
        for (method, path) in [
            (Method::GET, APP),
            (Method::PUT, APP),
            (Method::POST, "/ucwa/v1/applications/192/me"),
            (Method::PUT, "/ucwa/v1/applications/192/me"),
            (
                Method::GET,
                "/ucwa/v1/applications/192/me/callForwardingSettings",
            ),
            (Method::GET, "/ucwa/v1/applications/192/people/me"),
            (Method::GET, "/ucwa/v1/applications/1/../192/me"),
            (Method::POST, "/ucwa/v1/%61pplications"),
            (Method::POST, "/elsewhere/applications"),
        ] {
            assert_eq!(Lesson::of(&method, path), None, "{method} {path}");
        }
    }

    #[tokio::test]
    async fn the_pool_answer_to_a_new_application_teaches_its_user_in_json_and_xml() {
        let app = "/ucwa/oauth/v1/applications/101507115166";
        let me = format!("{app}/me");
        let json = application_json(app, &me, "sip:jane@contoso.com");
        let want = pair("101507115166", "sip:jane@contoso.com");
        for chunk in [1, 7, usize::MAX] {
            assert_eq!(
                teach(Method::POST, APP, 201, JSON, &json, chunk).await,
                want
            );
        }
        let xml = application_xml(app, &me, "sip:jane@contoso.com");
        assert_eq!(teach(Method::POST, APP, 201, XML, &xml, 5).await, want);
        assert_eq!(
            teach(Method::POST, APP, 200, "application/json", &json, 64).await,
            want
        );
        let absolute = application_json(
            &format!("https://lyncweb.contoso.com{app}"),
            &format!("https://lyncweb.contoso.com{me}"),
            "sip:jane@contoso.com",
        );
        assert_eq!(
            teach(Method::POST, APP, 201, JSON, &absolute, 64).await,
            want
        );
    }

    #[tokio::test]
    async fn a_get_of_me_teaches_only_when_its_answer_names_the_same_application() {
        let me = "/ucwa/v1/applications/192/me";
        let json = format!(
            r#"{{"name":"Jane Doe","uri":"sip:jane@contoso.com","_links":{{"self":{{"href":"{me}"}}}},"rel":"me"}}"#
        );
        let want = pair("192", "sip:jane@contoso.com");
        assert_eq!(teach(Method::GET, me, 200, JSON, &json, 3).await, want);
        assert_eq!(
            teach(
                Method::GET,
                me,
                200,
                XML,
                &me_xml(me, "sip:jane@contoso.com"),
                3
            )
            .await,
            want
        );
        // The answer names another application: nothing is learnt, for either.
        let other = "/ucwa/v1/applications/193/me";
        assert_eq!(teach(Method::GET, other, 200, JSON, &json, 64).await, None);
        assert_eq!(
            teach(Method::GET, other, 200, XML, &me_xml(me, "sip:a@b"), 64).await,
            None
        );
    }

    #[tokio::test]
    async fn an_answer_that_is_not_exactly_a_lesson_teaches_nothing() {
        let app = "/ucwa/v1/applications/5";
        let me = format!("{app}/me");
        let good = application_json(app, &me, "sip:jane@contoso.com");
        assert!(teach(Method::POST, APP, 201, JSON, &good, 64)
            .await
            .is_some());
        let cases: Vec<(&str, u16, &str, String)> = vec![
            ("not 2xx", 403, JSON, good.clone()),
            ("not JSON or XML", 201, "text/plain", good.clone()),
            ("JSON read as XML", 201, XML, good.clone()),
            ("missing uri", 201, JSON, good.replace(r#""uri":"sip:jane@contoso.com","#, "")),
            ("not a SIP uri", 201, JSON, good.replace("sip:jane@contoso.com", "tel:+1425")),
            ("uri with a space", 201, JSON, good.replace("sip:jane@contoso.com", "sip:ja ne@x")),
            ("me href of another application", 201, JSON, application_json(app, "/ucwa/v1/applications/6/me", "sip:a@b")),
            ("me href not me", 201, JSON, application_json(app, &format!("{app}/people"), "sip:a@b")),
            ("me href unreadable", 201, JSON, application_json(app, "/ucwa/v1/applications/%35/me", "sip:a@b")),
            ("duplicate key", 201, JSON, good.replace(r#""rel":"me""#, r#""rel":"me","uri":"sip:eve@x""#)),
            ("not an application", 201, JSON, good.replace(r#""rel":"application""#, r#""rel":"people""#)),
            ("truncated", 201, JSON, good[..good.len() - 1].to_owned()),
            ("too big", 201, JSON, good.replace("\"culture\":\"en-US\"", &format!("\"culture\":\"{}\"", "x".repeat(MAX_ANSWER_BYTES)))),
            ("XML with a DOCTYPE", 201, XML, application_xml(app, &me, "sip:a@b").replace("<resource rel=\"application\"", "<!DOCTYPE r><resource rel=\"application\"")),
            ("XML with two uris", 201, XML, application_xml(app, &me, "sip:a@b").replace("</resource><resource rel=\"people\"", "<property name=\"uri\">sip:eve@x</property></resource><resource rel=\"people\"")),
            ("XML uri with an entity", 201, XML, application_xml(app, &me, "sip:a&amp;b@c")),
            ("XML uri in a sibling of me", 201, XML, application_xml(app, &me, "sip:a@b").replace("<property name=\"uri\">sip:a@b</property>", "").replace("<resource rel=\"people\" href=\"/ucwa/v1/applications/5/people\"/>", "<resource rel=\"people\" href=\"x\"><property name=\"uri\">sip:eve@x</property></resource>")),
            ("XML me outside embedded", 201, XML, application_xml(app, &me, "sip:a@b").replace("<embedded>", "<other>").replace("</embedded>", "</other>")),
        ];
        for (why, status, content_type, body) in cases {
            assert_eq!(
                teach(Method::POST, APP, status, content_type, &body, 1000).await,
                None,
                "{why}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_the_client_sent_never_teaches() {
        // Identities learns only through a Learning wrapped around a pool answer, for a POST to
        // .../applications or a GET of .../me; a client's own request to /me with a body that
        // looks like an answer is no lesson.
        let me = "/ucwa/v1/applications/192/me";
        let body =
            format!(r#"{{"uri":"sip:ceo@contoso.com","_links":{{"self":{{"href":"{me}"}}}}}}"#);
        for method in [Method::POST, Method::PUT] {
            assert_eq!(teach(method, me, 200, JSON, &body, 64).await, None);
        }
        // An answer too large announced in Content-Length is not even read.
        let mut h = headers(JSON);
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(MAX_ANSWER_BYTES + 1),
        );
        let l = Learning::new(
            Full::new(Bytes::new()),
            Lesson::of(&Method::POST, APP),
            StatusCode::CREATED,
            &h,
            &identities(1),
        );
        assert!(!l.is_learning());
    }

    #[test]
    fn the_map_holds_at_most_max_applications() {
        let map = identities(100);
        for i in 0..1000 {
            map.learn(&i.to_string(), Arc::from(format!("sip:u{i}@contoso.com")));
        }
        assert_eq!(map.len(), 100);
        assert_eq!(map.user("999").as_deref(), Some("sip:u999@contoso.com"));
        assert_eq!(map.user("0"), None, "the least recently used went first");
    }

    #[test]
    fn an_idle_application_is_forgotten() {
        let map = Identities::new(Settings {
            max_applications: 10,
            idle_expiry: Duration::from_millis(1),
        });
        map.learn("1", Arc::from("sip:a@b"));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(map.user("1"), None);
    }

    #[test]
    fn new_settings_keep_what_was_learnt() {
        let map = identities(10);
        map.learn("1", Arc::from("sip:a@b"));
        assert!(Arc::ptr_eq(&map, &map.for_settings(map.settings())));
        let bigger = map.for_settings(Settings {
            max_applications: 20,
            idle_expiry: Duration::from_secs(60),
        });
        assert_eq!(bigger.user("1").as_deref(), Some("sip:a@b"));
    }
}
