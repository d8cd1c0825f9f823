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
use http::header::{self, HeaderMap};
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

/// A request path's applications, its readings ([`path::readings`]) made once: the one the
/// trail names ([`application_read`]'s), and every application any reading could name,
/// lower-cased (ids are compared without case, as IIS compares paths) and without repeats: what
/// the binding of applications to organisations and the rate limits hold a request to, so that
/// a spelling whose readings disagree (`A;x`: `;` read as a parameter or as a character) is held
/// to each. (The trail's application was a second reading, ~900 instructions per request.)
#[derive(Debug, Default)]
pub struct Read {
    pub all: Vec<Box<str>>,
    named: Named,
}

/// [`application_read`]'s answer, kept without copying a plain path's.
#[derive(Debug, Default)]
enum Named {
    #[default]
    None,
    /// Where in the (plain) path it is.
    At(std::ops::Range<usize>),
    /// The one every reading agreed on.
    Read(Box<str>),
}

impl Read {
    pub fn of(raw: &str) -> Read {
        if let Some(id) = application(raw) {
            let at = id.as_ptr() as usize - raw.as_ptr() as usize;
            return Read {
                all: vec![id.to_ascii_lowercase().into()],
                named: Named::At(at..at + id.len()),
            };
        }
        let mut read = Read::default();
        if path::is_plain(raw) {
            return read;
        }
        let mut agreed: Option<&str> = None;
        let mut agree = true;
        let readings = path::readings(raw);
        for reading in &readings {
            let id = reading.as_deref().ok().and_then(application);
            match (id, agreed) {
                (None, _) => agree = false,
                (Some(id), None) => agreed = Some(id),
                (Some(id), Some(first)) => agree &= first == id,
            }
            if let Some(id) = id {
                let id = id.to_ascii_lowercase();
                if !read.all.iter().any(|f| **f == *id) {
                    read.all.push(id.into());
                }
            }
        }
        if let (true, Some(id)) = (agree, agreed) {
            read.named = Named::Read(id.into());
        }
        read
    }

    /// The application the trail names; `path` is the one this was read from.
    pub fn named<'a>(&'a self, path: &'a str) -> Option<&'a str> {
        match &self.named {
            Named::None => None,
            Named::At(at) => path.get(at.clone()),
            Named::Read(id) => Some(id),
        }
    }
}

/// `application` as the map keys it: lower-cased, borrowed when it already is.
fn key(application: &str) -> std::borrow::Cow<'_, str> {
    if application.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(application.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(application)
    }
}

/// The application id of a plain UCWA path, and what follows it (`""`, `/me`, ...).
fn split(path: &str) -> Option<(&str, &str)> {
    if !under_ucwa(path) || !path::is_plain(path) {
        return None;
    }
    // Segment by segment, with memchr: a path is read so on every guarded request.
    let bytes = path.as_bytes();
    let end_of =
        |start: usize| memchr::memchr(b'/', &bytes[start..]).map_or(bytes.len(), |at| start + at);
    let mut slash = 0;
    loop {
        let end = end_of(slash + 1);
        if bytes[slash + 1..end].eq_ignore_ascii_case(b"applications") {
            if end == bytes.len() {
                return None;
            }
            let id_end = end_of(end + 1);
            let (id, tail) = (&path[end + 1..id_end], &path[id_end..]);
            return is_application_id(id).then_some((id, tail));
        }
        if end == bytes.len() {
            return None;
        }
        slash = end;
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
pub fn token_fingerprint(authorization: &[u8]) -> TokenFingerprint {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, authorization);
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
    map: Cache<Box<str>, Learnt>,
    settings: Settings,
}

/// What the pool told us of an application: its user, and the organisation (by the Host of the
/// request it answered; `None` for a Host in no organisation) it was learnt under.
#[derive(Debug, Clone)]
pub struct Learnt {
    pub user: Arc<str>,
    pub organisation: Option<Arc<str>>,
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
        self.learnt(application).map(|learnt| learnt.user)
    }

    /// The user and the organisation an application was learnt under (ids compared without
    /// case).
    pub fn learnt(&self, application: &str) -> Option<Learnt> {
        self.map.get(&*key(application))
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
    /// An application keeps the organisation it was first learnt under: a user who asks for
    /// their application again under another organisation's Host does not move it there.
    fn learn(&self, application: &str, mut learnt: Learnt) {
        let application = key(application);
        if let Some(known) = self.map.get(&*application) {
            learnt.organisation = known.organisation;
        }
        self.map.insert(Box::from(&*application), learnt);
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
    /// Whether [`Lesson::of`] could find a lesson in a request: its method and its path's last
    /// segment, no more (a request keeps what a lesson needs only when it could).
    pub fn may(method: &Method, target: &str) -> bool {
        let (_, last) = Lesson::last_segment(target);
        match *method {
            Method::POST => last.eq_ignore_ascii_case("applications"),
            Method::GET => last.eq_ignore_ascii_case("me"),
            _ => false,
        }
    }

    /// The path of an origin-form target (without its query or a trailing slash), and its last
    /// segment.
    fn last_segment(target: &str) -> (&str, &str) {
        // memchr's searches: `str`'s with a `char` cost ~250 instructions each on a ~130-byte
        // target, and every forwarded request is asked.
        let path = memchr::memchr(b'?', target.as_bytes()).map_or(target, |at| &target[..at]);
        let path = path::trim_trailing_slash(path);
        let last = memchr::memrchr(b'/', path.as_bytes()).map_or(path, |at| &path[at + 1..]);
        (path, last)
    }

    /// The lesson a request could teach; `None` for almost all traffic, which then pays
    /// nothing. `target` is the origin-form request target (a query is ignored).
    pub fn of(method: &Method, target: &str) -> Option<Lesson> {
        let (path, last) = Lesson::last_segment(target);
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

    /// Whether an answer can teach a lesson: 2xx, JSON or XML, not content-coded, and not
    /// announced larger than [`MAX_ANSWER_BYTES`]. Content-Type is looked up first: an answer
    /// without one (a 204) is refused on one lookup.
    fn format(status: StatusCode, headers: &HeaderMap) -> Option<Format> {
        if !status.is_success() {
            return None;
        }
        let content_type = headers.get(header::CONTENT_TYPE)?;
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
        let media = MediaType::parse(content_type.to_str().ok()?).ok()?;
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
    organisation: Option<Arc<str>>,
    copy: Vec<u8>,
}

impl<B> Learning<B> {
    /// Wraps an answer's body; it is read only when the answer's status and headers can teach
    /// and `lesson` (asked only then: [`Lesson::of`] splits the request's path) is one, about a
    /// request of `organisation`, which is asked only then too (finding it reads the request's
    /// Host again).
    pub fn new<'o>(
        inner: B,
        lesson: impl FnOnce() -> Option<Lesson>,
        status: StatusCode,
        headers: &HeaderMap,
        identities: &Arc<Identities>,
        organisation: impl FnOnce() -> Option<&'o str>,
    ) -> Learning<B> {
        let student = Lesson::format(status, headers).and_then(|format| {
            let lesson = lesson()?;
            Some(Box::new(Student {
                lesson,
                format,
                identities: Arc::clone(identities),
                organisation: organisation().map(Arc::from),
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
                let organisation = student.organisation;
                student
                    .identities
                    .learn(&application, Learnt { user, organisation });
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
mod tests;
