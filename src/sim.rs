//! A simulated Skype for Business front-end pool member (SPEC §8): a real HTTP server on a real
//! socket that answers like the UCWA reference page and records every request it receives,
//! with what the pool would act on in it. It reads requests with its own model of the pool
//! ([`model`], decoding with [`encoding`]), written apart from ringfence's parser, so a
//! disagreement between the two shows up in the differential tests instead of being shared.
//! `ringfence demo` and the tests put it behind the proxy.

pub mod encoding;
pub mod model;
pub mod oracle;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use model::{Reading, Resources};

/// One request as the member received it: the exact bytes the proxy sent.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// Path and query exactly as on the request line.
    pub path_and_query: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the pool would act on in it, by the simulator's own model.
    pub reading: Reading,
}

/// A fault the member plays, to test that the pool's answers come back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// 409 Conflict / AlreadyExists on guarded POSTs.
    AlreadyExists,
    /// 410 Gone / CannotRedirect on guarded POSTs.
    CannotRedirect,
    /// 500 ServiceFailure / CallbackChannelError on guarded POSTs.
    CallbackChannelError,
    /// Every answer is delayed.
    Slow(Duration),
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    /// Health probes are counted apart so that tests can say "the pool saw nothing".
    probes: std::sync::atomic::AtomicUsize,
    fault: Mutex<Fault>,
    /// How long an `events` long poll waits before answering.
    event_wait: Mutex<Duration>,
    resources: Mutex<Resources>,
    /// Connections accepted and not yet closed.
    connections: std::sync::atomic::AtomicUsize,
    /// While true, `events` long polls wait (after their `event_wait`) until it turns false.
    hold: tokio::sync::watch::Sender<bool>,
}

/// A running simulated front-end server (one pool member). Dropping it (or `stop`) closes its
/// socket.
pub struct FrontEnd {
    name: String,
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    stop: CancellationToken,
}

impl FrontEnd {
    /// Starts a plain-HTTP member on `127.0.0.1:0`.
    pub async fn start(name: &str) -> std::io::Result<FrontEnd> {
        Self::start_on(name, "127.0.0.1:0".parse().expect("literal address"), None).await
    }

    /// Starts a member on `addr`, with TLS when a server configuration is given.
    pub async fn start_on(
        name: &str,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<FrontEnd> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            event_wait: Mutex::new(Duration::from_millis(500)),
            resources: Mutex::new(Resources::default()),
            ..State::default()
        });
        let stop = CancellationToken::new();
        let member = FrontEnd {
            name: name.to_owned(),
            addr,
            tls: tls.is_some(),
            state: Arc::clone(&state),
            stop: stop.clone(),
        };
        let name = name.to_owned();
        tokio::spawn(accept(
            listener,
            tls.map(TlsAcceptor::from),
            state,
            stop,
            name,
        ));
        Ok(member)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The member's base URL, as configured in `[upstream] members`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Health probes received so far.
    pub fn probes(&self) -> usize {
        self.state.probes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Everything received so far except health probes, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("sim lock").clone()
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().expect("sim lock") = fault;
    }

    pub fn set_event_wait(&self, wait: Duration) {
        *self.state.event_wait.lock().expect("sim lock") = wait;
    }

    /// The guarded resources the member's model knows (the three call-forwarding resources by
    /// default), each with its parameter.
    pub fn set_resources(&self, resources: Resources) {
        *self.state.resources.lock().expect("sim lock") = resources;
    }

    /// Connections open to the member now (accepted, not yet closed).
    pub fn connections_open(&self) -> usize {
        self.state
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Holds every `events` long poll, those waiting now and those to come, until
    /// `hold_events(false)`: a test can have many requests in flight at once without timing.
    pub fn hold_events(&self, hold: bool) {
        self.state.hold.send_replace(hold);
    }

    /// Closes the listening socket: new connections are refused, as from a dead server.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for FrontEnd {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    stop: CancellationToken,
    name: String,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
        };
        let state = Arc::clone(&state);
        let tls = tls.clone();
        let stop = stop.clone();
        let name = name.clone();
        let open = Open::count(Arc::clone(&state));
        tokio::spawn(async move {
            let _open = open;
            let service = service_fn(move |req| answer(Arc::clone(&state), name.clone(), req));
            let builder = auto::Builder::new(TokioExecutor::new());
            let served = match tls {
                None => {
                    until_stopped(
                        builder.serve_connection(TokioIo::new(stream), service),
                        stop,
                    )
                    .await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => {
                        until_stopped(builder.serve_connection(TokioIo::new(s), service), stop)
                            .await
                    }
                    Err(_) => Ok(()),
                },
            };
            drop(served);
        });
    }
}

/// One accepted connection, counted in `State::connections` until dropped.
struct Open(Arc<State>);

impl Open {
    fn count(state: Arc<State>) -> Open {
        state
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Open(state)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Serves until done or stopped; a stopped member finishes the request in flight and closes
/// its idle keep-alive connections, like a front-end server taken out of service.
async fn until_stopped<C>(
    conn: C,
    stop: CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    C: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>
        + GracefulConn,
{
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().shut_down();
            conn.await
        }
    }
}

/// The one method of hyper-util's auto connection the simulator needs.
trait GracefulConn {
    fn shut_down(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E> GracefulConn for auto::Connection<'_, I, S, E>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: http_body::Body + Send + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

async fn answer(
    state: Arc<State>,
    name: String,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let header_lines: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                v.as_bytes().iter().map(|&b| char::from(b)).collect(),
            )
        })
        .collect();
    let resources = state.resources.lock().expect("sim lock").clone();
    let reading = model::read(
        &model::Request {
            method: parts.method.as_str(),
            target: &path_and_query,
            headers: &header_lines,
            body: &body,
        },
        &resources,
    );
    let probe = parts
        .headers
        .get(header::USER_AGENT)
        .is_some_and(|ua| ua == "ringfence-health");
    if probe {
        state
            .probes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    } else {
        state.received.lock().expect("sim lock").push(Received {
            method: parts.method.clone(),
            path_and_query,
            version: parts.version,
            headers: parts.headers.clone(),
            body: body.clone(),
            reading: reading.clone(),
        });
    }
    let fault = *state.fault.lock().expect("sim lock");
    if let Fault::Slow(d) = fault {
        tokio::time::sleep(d).await;
    }
    let path = parts.uri.path();
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let mut response = if last.eq_ignore_ascii_case("events") {
        let wait = *state.event_wait.lock().expect("sim lock");
        tokio::time::sleep(wait).await;
        let mut hold = state.hold.subscribe();
        let _ = hold.wait_for(|held| !held).await;
        json(StatusCode::OK, r#"{"_links":{"self":{"href":"/ucwa/v1/applications/192/events?ack=2"},"next":{"href":"/ucwa/v1/applications/192/events?ack=3"}},"sender":[]}"#.into())
    } else if reading.named.iter().any(|n| n == model::BATCH) && parts.method == Method::POST {
        batch_answer(&reading)
    } else if let Some(r) = application_answer(&parts.method, path, &parts.headers) {
        r
    } else {
        single(&parts.method, path, !reading.named.is_empty(), fault)
    };
    response.headers_mut().insert(
        "x-sim-member",
        header::HeaderValue::from_str(&name).unwrap_or(header::HeaderValue::from_static("sim")),
    );
    Ok(response)
}

/// The answer to one request: `guarded` when the path names a call-forwarding resource.
fn single(method: &Method, path: &str, guarded: bool, fault: Fault) -> Response<Full<Bytes>> {
    if guarded && method == Method::POST {
        return match fault {
            Fault::AlreadyExists => ucwa_error(
                StatusCode::CONFLICT,
                "Conflict",
                Some("AlreadyExists"),
                "The already exists error.",
            ),
            Fault::CannotRedirect => ucwa_error(
                StatusCode::GONE,
                "Gone",
                Some("CannotRedirect"),
                "Cannot redirect since there is no back up pool configured.",
            ),
            Fault::CallbackChannelError => ucwa_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceFailure",
                Some("CallbackChannelError"),
                "The remote event channel is not reachable",
            ),
            Fault::None | Fault::Slow(_) => {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
        };
    }
    if guarded {
        return ucwa_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            None,
            "The method is not allowed on this resource.",
        );
    }
    if path.to_ascii_lowercase().ends_with("/me") && method == Method::GET {
        return json(StatusCode::OK, r#"{"name":"Jane Doe","uri":"sip:jane@contoso.com","_links":{"self":{"href":"/ucwa/v1/applications/192/me"},"callForwardingSettings":{"href":"/ucwa/v1/applications/192/me/callForwardingSettings"}},"rel":"me"}"#.into());
    }
    if path == "/"
        || path.eq_ignore_ascii_case("/ucwa/v1")
        || path.eq_ignore_ascii_case("/ucwa/oauth/v1")
    {
        return json(StatusCode::OK, r#"{"rel":"root"}"#.into());
    }
    ucwa_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        None,
        "The resource was not found.",
    )
}

/// Application ids handed out by every member of this process, so that two members never
/// hand out the same one.
static APPLICATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The answers that say who a user is, as a front end gives them: `POST .../applications` creates
/// an application (201, with `me` embedded) and `GET .../applications/{id}/me` is `me`; in XML
/// when `Accept` asks for XML only. The user is `sip:<name>@contoso.com` for
/// `Authorization: Bearer <name>` (a plain name), else jane.
fn application_answer(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response<Full<Bytes>>> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let at = segments
        .iter()
        .position(|s| s.eq_ignore_ascii_case("applications"))?;
    if !segments.get(1)?.eq_ignore_ascii_case("ucwa") {
        return None;
    }
    let base = segments[..=at].join("/");
    let (id, me) = match (method, &segments[at + 1..]) {
        (&Method::POST, []) => {
            let n = APPLICATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ((101_507_115_166 + n).to_string(), false)
        }
        (&Method::GET, [id, me]) if me.eq_ignore_ascii_case("me") => ((*id).to_owned(), true),
        _ => return None,
    };
    let name = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|n| {
            (1..=64).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .unwrap_or("jane");
    let xml = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            let a = a.to_ascii_lowercase();
            a.contains("xml") && !a.contains("json")
        });
    let app = format!("{base}/{id}");
    let me_json = format!(
        r#"{{"name":"{name}","uri":"sip:{name}@contoso.com","_links":{{"self":{{"href":"{app}/me"}},"callForwardingSettings":{{"href":"{app}/me/callForwardingSettings"}},"makeMeAvailable":{{"href":"{app}/me/makeMeAvailable"}}}},"rel":"me"}}"#
    );
    let me_xml = format!(
        r#"<resource rel="me" href="{app}/me"><link rel="callForwardingSettings" href="{app}/me/callForwardingSettings"/><link rel="makeMeAvailable" href="{app}/me/makeMeAvailable"/><property name="name">{name}</property><property name="uri">sip:{name}@contoso.com</property></resource>"#
    );
    const NS: &str = r#"xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa""#;
    const DECL: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;
    let (status, body) = match (me, xml) {
        (true, false) => (StatusCode::OK, me_json),
        (true, true) => (
            StatusCode::OK,
            format!(
                "{DECL}{}",
                me_xml.replacen("<resource ", &format!("<resource {NS} "), 1)
            ),
        ),
        (false, false) => (
            StatusCode::CREATED,
            format!(
                r#"{{"culture":"en-US","userAgent":"sim/1.0","type":"Browser","_links":{{"self":{{"href":"{app}"}},"policies":{{"href":"{app}/policies"}},"batch":{{"href":"{app}/batch"}},"events":{{"href":"{app}/events?ack=1"}}}},"_embedded":{{"me":{me_json},"people":{{"_links":{{"self":{{"href":"{app}/people"}}}},"rel":"people"}}}},"rel":"application"}}"#
            ),
        ),
        (false, true) => (
            StatusCode::CREATED,
            format!(
                r#"{DECL}<resource rel="application" href="{app}" {NS}><link rel="policies" href="{app}/policies"/><link rel="batch" href="{app}/batch"/><link rel="events" href="{app}/events?ack=1"/><property name="culture">en-US</property><property name="userAgent">sim/1.0</property><property name="type">Browser</property><embedded>{me_xml}<resource rel="people" href="{app}/people"/></embedded></resource>"#
            ),
        ),
    };
    let mut r = if xml {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(
                "application/vnd.microsoft.com.ucwa+xml; charset=utf-8",
            ),
        );
        r
    } else {
        json(status, body)
    };
    *r.status_mut() = status;
    Some(r)
}

/// Answers each embedded request in order, in one multipart/batching response.
fn batch_answer(reading: &Reading) -> Response<Full<Bytes>> {
    if reading.parts.is_empty() {
        return ucwa_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            Some("DeserializationFailure"),
            "The batch could not be read.",
        );
    }
    let boundary = "sim-batch-response";
    let mut out = String::new();
    for part in &reading.parts {
        let method = Method::from_bytes(part.method.as_bytes()).unwrap_or(Method::GET);
        let inner = single(&method, &part.path, !part.named.is_empty(), Fault::None);
        let status = inner.status();
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/http; msgtype=response\r\n\r\nHTTP/1.1 {} {}\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    let mut r = Response::new(Full::new(Bytes::from(out)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("multipart/batching; boundary=sim-batch-response"),
    );
    r
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/vnd.microsoft.com.ucwa+json; charset=utf-8"),
    );
    r
}

fn ucwa_error(
    status: StatusCode,
    code: &str,
    subcode: Option<&str>,
    message: &str,
) -> Response<Full<Bytes>> {
    let subcode = subcode.map_or(String::new(), |s| format!(r#","subcode":"{s}""#));
    json(
        status,
        format!(r#"{{"code":"{code}"{subcode},"message":"{message}"}}"#),
    )
}
