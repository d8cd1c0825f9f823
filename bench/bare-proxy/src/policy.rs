//! `policy AUDIT_FILE`: the `hyper` yardstick plus the least a policy gateway must do per
//! request (see the crate's doc), written the plainest fast way. Not ringfence's reading of a
//! request (no UCWA paths, encodings, batches or XML): a floor for what judging and recording one
//! guarded POST costs, measured beside ringfence in one run.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::{
    read_message, relay_answer, relay_upstream, send_pooled, whole, Pool, Side, READ_SIZE,
};

/// Number prefixes as a digit trie: a lookup walks the number's digits once, whatever the
/// list's size.
struct Prefixes {
    /// Each node's child per digit (0: none; the root is node 0, never a child).
    next: Vec<[u32; 10]>,
    /// Whether a listed prefix ends at the node.
    ends: Vec<bool>,
}

impl Prefixes {
    /// Lists `prefix` (`+` then digits).
    fn insert(&mut self, prefix: &str) {
        let mut node = 0;
        for digit in prefix
            .trim_start_matches('+')
            .bytes()
            .map(|b| usize::from(b - b'0'))
        {
            if self.next[node][digit] == 0 {
                self.next.push([0; 10]);
                self.ends.push(false);
                self.next[node][digit] = (self.next.len() - 1) as u32;
            }
            node = self.next[node][digit] as usize;
        }
        self.ends[node] = true;
    }

    /// Whether a listed prefix starts `digits` (ASCII digits).
    fn lists(&self, digits: &str) -> bool {
        let mut node = 0;
        for digit in digits.bytes().map(|b| usize::from(b - b'0')) {
            match self.next[node][digit] {
                0 => return false,
                child => node = child as usize,
            }
            if self.ends[node] {
                return true;
            }
        }
        false
    }
}

impl FromIterator<String> for Prefixes {
    fn from_iter<I: IntoIterator<Item = String>>(prefixes: I) -> Prefixes {
        let mut set = Prefixes {
            next: vec![[0; 10]],
            ends: vec![false],
        };
        for prefix in prefixes {
            set.insert(&prefix);
        }
        set
    }
}

/// How many number prefixes each of the deny and allow sets holds (bench/gen_config.py's
/// policy has 10,000 in each list).
const PREFIXES: u32 = 10_000;

pub struct Policy {
    deny: Prefixes,
    allow: Prefixes,
    /// None with AUDIT_FILE `off`: judged, not recorded (to tell the trail's share).
    audit: Option<Mutex<Trail>>,
    written: Notify,
    ids: AtomicU64,
}

/// The decision lines of one scheduler pass, written together with one write(2) at the pass's
/// end (the cheapest way that still writes a line before its request goes on), and how many such
/// writes were done.
struct Trail {
    file: File,
    lines: Vec<u8>,
    writes: u64,
    flushing: bool,
    failed: bool,
}

impl Policy {
    pub fn new(audit: &str) -> Policy {
        // +1900 denied and +1425555 allowed, as in bench/wrk.lua's and gen_config.py's policy;
        // the rest are prefixes no benchmark number starts with.
        let mut deny: Prefixes = (1..PREFIXES).map(|i| format!("+2{i:05}")).collect();
        deny.insert("+1900");
        let mut allow: Prefixes = (1..PREFIXES).map(|i| format!("+3{i:06}")).collect();
        allow.insert("+1425555");
        let audit = (audit != "off").then(|| {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(audit)
                .expect("open AUDIT_FILE");
            Mutex::new(Trail {
                file,
                lines: Vec::with_capacity(64 * 1024),
                writes: 0,
                flushing: false,
                failed: false,
            })
        });
        Policy {
            deny,
            allow,
            audit,
            written: Notify::new(),
            ids: AtomicU64::new(0),
        }
    }

    /// The next request id (24 hex digits).
    fn next_id(&self) -> String {
        format!("{:024x}", self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether a guarded request with these targets goes on: it has one, and each is allowed.
    fn judge(&self, targets: &[&str]) -> bool {
        !targets.is_empty() && targets.iter().all(|t| self.allows(t))
    }

    /// A `tel:` global number that an allowed prefix starts and no denied one does.
    fn allows(&self, target: &str) -> bool {
        let Some(number) = target.strip_prefix("tel:") else {
            return false;
        };
        let Some(digits) = number.strip_prefix('+') else {
            return false;
        };
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        !self.deny.lists(digits) && self.allow.lists(digits)
    }

    /// The trail; only called when there is one ([`Policy::record`] returns first otherwise).
    fn trail(&self) -> std::sync::MutexGuard<'_, Trail> {
        self.audit
            .as_ref()
            .expect("a trail")
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One decision line, written before the request goes on (or is refused). The first line of
    /// a pass waits for the pass's end and writes every line queued by then; the others wait for
    /// that write.
    async fn record(
        self: &Arc<Self>,
        id: &str,
        client: &str,
        (method, host, path): (&str, &str, &str),
        targets: &[&str],
        allowed: bool,
    ) -> io::Result<()> {
        if self.audit.is_none() {
            return Ok(());
        }
        let mut line = Vec::with_capacity(512);
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        write!(
            line,
            r#"{{"v":1,"kind":"decision","ts":{}.{:03},"id":"{id}","client":"{client}","host":"#,
            ts.as_secs(),
            ts.subsec_millis()
        )?;
        serde_json::to_writer(&mut line, host)?;
        line.extend_from_slice(b",\"method\":");
        serde_json::to_writer(&mut line, method)?;
        line.extend_from_slice(b",\"path\":");
        serde_json::to_writer(&mut line, path)?;
        line.extend_from_slice(b",\"targets\":");
        serde_json::to_writer(&mut line, targets)?;
        let decision = if allowed { "allow" } else { "deny" };
        writeln!(line, r#","decision":"{decision}"}}"#)?;
        let (mine, flusher) = {
            let mut trail = self.trail();
            trail.lines.extend_from_slice(&line);
            let flusher = !std::mem::replace(&mut trail.flushing, true);
            (trail.writes + 1, flusher)
        };
        if flusher {
            // In a task of its own, which no client going away can cancel (a dropped flusher
            // would leave every later request waiting).
            let policy = Arc::clone(self);
            tokio::spawn(async move {
                EndOfPass(false).await;
                let mut trail = policy.trail();
                let lines = std::mem::take(&mut trail.lines);
                if let Err(error) = trail.file.write_all(&lines) {
                    eprintln!("bare-proxy: the audit file could not be written: {error}");
                    trail.failed = true;
                }
                trail.lines = lines;
                trail.lines.clear();
                trail.writes += 1;
                trail.flushing = false;
                drop(trail);
                policy.written.notify_waiters();
            });
        }
        loop {
            let notified = self.written.notified();
            {
                let trail = self.trail();
                if trail.failed {
                    return Err(io::Error::other("the audit file could not be written"));
                }
                if trail.writes >= mine {
                    return Ok(());
                }
            }
            notified.await;
        }
    }
}

/// Pending once, with its own task woken: the task goes to the back of the run queue and
/// resumes after the tasks already ready, in the same pass.
struct EndOfPass(bool);

impl Future for EndOfPass {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

type Answer = Response<Either<Incoming, Full<Bytes>>>;

/// The body of the 403 for a denied target.
const REFUSAL: &[u8] = br#"{"code":"Forbidden","subcode":"TargetNotAllowed"}"#;

/// The resource judged: the only one, read the plain way (no UCWA or ASP.NET reading).
fn guarded(path: &str) -> bool {
    path.ends_with("/simultaneousRingToContact")
}

/// The `target` of the query (percent-decoded) and of a JSON body.
fn targets_of(query: Option<&str>, body: &[u8]) -> [Option<String>; 2] {
    let from_query = query.and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("target="))
            .map(|t| percent_decode_str(t).decode_utf8_lossy().into_owned())
    });
    let from_body = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("target")?.as_str().map(str::to_owned));
    [from_query, from_body]
}

/// Serves one client connection: guarded POSTs judged and recorded, everything forwarded with
/// the forwarding headers.
pub async fn serve(
    stream: TcpStream,
    client: SocketAddr,
    pool: Pool,
    upstream: SocketAddr,
    policy: Arc<Policy>,
) {
    let client: Arc<str> = client.ip().to_string().into();
    let service = service_fn(move |request: Request<Incoming>| {
        let (pool, policy, client) = (pool.clone(), Arc::clone(&policy), Arc::clone(&client));
        async move { handle(request, &pool, upstream, &policy, &client).await }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(
    request: Request<Incoming>,
    pool: &Pool,
    upstream: SocketAddr,
    policy: &Arc<Policy>,
    client: &str,
) -> io::Result<Answer> {
    let mut request = whole(request).await;
    let id = policy.next_id();
    if request.method() == Method::POST && guarded(request.uri().path()) {
        let found = targets_of(request.uri().query(), request.body());
        let targets: Vec<&str> = found.iter().flatten().map(String::as_str).collect();
        let allowed = policy.judge(&targets);
        let host = request
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let seen = (request.method().as_str(), host, request.uri().path());
        policy.record(&id, client, seen, &targets, allowed).await?;
        if !allowed {
            let mut refused = Response::new(Either::Right(Full::new(Bytes::from_static(REFUSAL))));
            *refused.status_mut() = StatusCode::FORBIDDEN;
            refused
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Ok(refused);
        }
    }
    let host = request.headers().get(HOST).cloned();
    let headers = request.headers_mut();
    headers.insert(
        HeaderName::from_static("x-forwarded-for"),
        HeaderValue::from_str(client).map_err(io::Error::other)?,
    );
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Some(host) = host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    headers.insert(
        HeaderName::from_static("x-request-id"),
        HeaderValue::from_str(&id).map_err(io::Error::other)?,
    );
    let answer = send_pooled(pool, upstream, request).await?;
    Ok(answer.map(Either::Left))
}

/// `relay-policy AUDIT_FILE`: the `relay` yardstick (httparse heads, bytes copied as they came,
/// one upstream connection per client connection, Content-Length bodies only) doing the same
/// policy work as `policy`: the request's bytes are judged, and forwarded with the forwarding
/// headers added to its head. A bound on what the job costs on a path that forwards the bytes it
/// parsed, as `relay` is on what such a path costs without it.
pub async fn serve_relay(
    mut client: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
    policy: Arc<Policy>,
) {
    let Some(mut upstream) = relay_upstream(upstream).await else {
        return;
    };
    let peer = peer.ip().to_string();
    let mut requests = Vec::with_capacity(READ_SIZE);
    let mut answers = Vec::with_capacity(READ_SIZE);
    let mut out = Vec::with_capacity(READ_SIZE);
    loop {
        let Some(n) = read_message(&mut client, &mut requests, Side::Request).await else {
            return;
        };
        out.clear();
        let Ok(forward) = relay_one(&policy, &peer, &requests[..n], &mut out).await else {
            return;
        };
        requests.drain(..n);
        if !forward {
            if client.write_all(&out).await.is_err() {
                return;
            }
            continue;
        }
        if upstream.write_all(&out).await.is_err() {
            return;
        }
        if relay_answer(&mut upstream, &mut client, &mut answers)
            .await
            .is_none()
        {
            return;
        }
    }
}

/// Judges one whole request (`message`: head and body) and writes into `out` what goes to the
/// pool: the request with the forwarding headers (true), or the 403 for the client (false).
async fn relay_one(
    policy: &Arc<Policy>,
    peer: &str,
    message: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_length) = head.parse(message).map_err(io::Error::other)?
    else {
        return Err(io::Error::other("read_message returned half a head"));
    };
    let (method, uri) = (head.method.unwrap_or(""), head.path.unwrap_or(""));
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    };
    let host = head
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok());
    let id = policy.next_id();
    if method == "POST" && guarded(path) {
        let found = targets_of(query, &message[head_length..]);
        let targets: Vec<&str> = found.iter().flatten().map(String::as_str).collect();
        let allowed = policy.judge(&targets);
        let seen = (method, host.unwrap_or(""), path);
        policy.record(&id, peer, seen, &targets, allowed).await?;
        if !allowed {
            write!(
                out,
                "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                REFUSAL.len()
            )?;
            out.extend_from_slice(REFUSAL);
            return Ok(false);
        }
    }
    // The head without its empty line, the four headers, then the empty line and the body.
    out.extend_from_slice(&message[..head_length - 2]);
    write!(
        out,
        "x-forwarded-for: {peer}\r\nx-forwarded-proto: http\r\n"
    )?;
    if let Some(host) = host {
        write!(out, "x-forwarded-host: {host}\r\n")?;
    }
    write!(out, "x-request-id: {id}\r\n\r\n")?;
    out.extend_from_slice(&message[head_length..]);
    Ok(true)
}
