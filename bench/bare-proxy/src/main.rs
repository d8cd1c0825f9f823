//! `bare-proxy [MODE] LISTEN UPSTREAM`: the yardsticks of SPEC §11 ("the policy is free"), three
//! HTTP/1.1 proxies with no policy, no metrics and no audit, and a fourth with the least policy
//! work, on the hyper, hyper-util and tokio versions of ringfence's Cargo.lock. They show what the
//! HTTP path itself costs per request, and what the job adds at the least, so a benchmark can say
//! how much ringfence adds on top. One thread (a current-thread runtime), as
//! ringfence runs with `RINGFENCE_WORKER_THREADS=1`. A request body is read whole before it is
//! sent, as ringfence reads a guarded one.
//!
//! - `hyper` (the default MODE): a hyper server per connection and hyper-util's pooled legacy
//!   client, ringfence's own shape; the answer is streamed back.
//! - `inline`: a hyper server and one `hyper::client::conn::http1` connection to the upstream per
//!   client connection, both polled in the client connection's task: no pool, no task per request.
//! - `relay`: httparse reads the heads and the bytes are copied as they came, over one upstream
//!   connection per client connection, Content-Length bodies only. Not a proxy to deploy: a bound
//!   on what a path that forwards the bytes it parsed could cost.
//! - `policy AUDIT_FILE`: `hyper` plus the least a policy gateway must do per request, written
//!   the plainest fast way: the `target` of the query and of a JSON body found (serde_json) and
//!   read as a `tel:` number, looked up in a deny and an allow set of 10,000 number prefixes each
//!   (digit tries), one JSON decision line per judged request in AUDIT_FILE before the request
//!   goes on (the lines of one scheduler pass written with one write(2) at its end), a 403 for a
//!   denied one, and SPEC §7's four forwarding headers on every forwarded request. AUDIT_FILE
//!   `off` judges without recording, to tell the trail's share. No HTTPS, metrics, routes, batches,
//!   organisations, rate limits or UCWA reading: the smallest thing that does the job, to tell
//!   what the job itself costs (issue 15).
//! - `relay-policy AUDIT_FILE`: `relay` doing `policy`'s work on the bytes it parsed (the
//!   forwarding headers written into the head it forwards): what the job costs on a path that
//!   forwards what it judged, the design issue 15 names beside hyper's.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod policy;

type Pool = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone, Copy)]
enum Mode {
    Hyper,
    Inline,
    Relay,
    Policy,
    RelayPolicy,
}

fn usage() -> ! {
    eprintln!(
        "usage: bare-proxy [hyper|inline|relay] LISTEN_ADDR UPSTREAM_ADDR\n       \
         bare-proxy policy|relay-policy LISTEN_ADDR UPSTREAM_ADDR AUDIT_FILE"
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Two arguments are the original `bare-proxy LISTEN UPSTREAM`: MODE defaults to hyper.
    let mut audit = None;
    let (mode, listen, upstream) = match args.as_slice() {
        [listen, upstream] => (Mode::Hyper, listen, upstream),
        [mode, listen, upstream, file] if mode == "policy" || mode == "relay-policy" => {
            audit = Some(file.clone());
            let mode = if mode == "policy" {
                Mode::Policy
            } else {
                Mode::RelayPolicy
            };
            (mode, listen, upstream)
        }
        [mode, listen, upstream] => {
            let mode = match mode.as_str() {
                "hyper" => Mode::Hyper,
                "inline" => Mode::Inline,
                "relay" => Mode::Relay,
                _ => usage(),
            };
            (mode, listen, upstream)
        }
        _ => usage(),
    };
    let listen: SocketAddr = listen.parse().unwrap_or_else(|_| usage());
    let upstream: SocketAddr = upstream.parse().unwrap_or_else(|_| usage());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let policy = audit.map(|file| Arc::new(policy::Policy::new(&file)));
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind LISTEN_ADDR");
        let pool = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        loop {
            let Ok((stream, client)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            match mode {
                Mode::Hyper => tokio::spawn(serve_pooled(stream, pool.clone(), upstream)),
                Mode::Inline => tokio::spawn(serve_inline(stream, upstream)),
                Mode::Relay => tokio::spawn(serve_relay(stream, upstream)),
                Mode::Policy => {
                    let policy = Arc::clone(policy.as_ref().expect("policy mode has one"));
                    tokio::spawn(policy::serve(
                        stream,
                        client,
                        pool.clone(),
                        upstream,
                        policy,
                    ))
                }
                Mode::RelayPolicy => {
                    let policy = Arc::clone(policy.as_ref().expect("relay-policy mode has one"));
                    tokio::spawn(policy::serve_relay(stream, client, upstream, policy))
                }
            };
        }
    });
}

/// The request with its body read whole. A body that breaks off is sent as far as it came:
/// nothing is judged here.
pub(crate) async fn whole(request: Request<Incoming>) -> Request<Bytes> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Request::from_parts(parts, body)
}

/// Sends `request` through the pooled client to `upstream`, which needs an absolute URI to know
/// where to connect.
pub(crate) async fn send_pooled(
    pool: &Pool,
    upstream: SocketAddr,
    mut request: Request<Bytes>,
) -> io::Result<Response<Incoming>> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = format!("http://{upstream}{path}")
        .parse()
        .map_err(io::Error::other)?;
    pool.request(request.map(Full::new))
        .await
        .map_err(io::Error::other)
}

/// `hyper`: what a hyper user writes first, and ringfence's shape.
async fn serve_pooled(stream: TcpStream, pool: Pool, upstream: SocketAddr) {
    let service = service_fn(move |request: Request<Incoming>| {
        let pool = pool.clone();
        async move { send_pooled(&pool, upstream, whole(request).await).await }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// `inline`: the client connection owns its upstream connection; the request goes out in
/// origin form, as it came.
async fn serve_inline(stream: TcpStream, upstream: SocketAddr) {
    let Ok(upstream) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let Ok((sender, connection)) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(upstream)).await
    else {
        return;
    };
    // HTTP/1.1 serves one request at a time, so each takes the sender and gives it back once
    // the request is on its way (the answer's future does not borrow it). The lock is never
    // contended: one thread, one request at a time.
    let sender = Arc::new(Mutex::new(Some(sender)));
    let service = service_fn(move |request: Request<Incoming>| {
        let sender = Arc::clone(&sender);
        async move {
            let request = whole(request).await.map(Full::new);
            let taken = sender.lock().unwrap_or_else(PoisonError::into_inner).take();
            let mut to_upstream =
                taken.ok_or_else(|| io::Error::other("upstream connection lost"))?;
            to_upstream.ready().await.map_err(io::Error::other)?;
            let answer = to_upstream.send_request(request);
            *sender.lock().unwrap_or_else(PoisonError::into_inner) = Some(to_upstream);
            answer.await.map_err(io::Error::other)
        }
    });
    let server = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    // Both halves in this one task: whichever ends, the pair is done.
    tokio::select! {
        _ = server => {}
        _ = connection => {}
    }
}

/// `relay`: one request, then its answer, copied whole each way; anything it cannot frame
/// (see [`message_length`]) closes both connections.
async fn serve_relay(mut client: TcpStream, upstream: SocketAddr) {
    let Some(mut upstream) = relay_upstream(upstream).await else {
        return;
    };
    let mut requests = Vec::with_capacity(READ_SIZE);
    let mut answers = Vec::with_capacity(READ_SIZE);
    loop {
        let Some(n) = read_message(&mut client, &mut requests, Side::Request).await else {
            return;
        };
        if upstream.write_all(&requests[..n]).await.is_err() {
            return;
        }
        requests.drain(..n);
        if relay_answer(&mut upstream, &mut client, &mut answers)
            .await
            .is_none()
        {
            return;
        }
    }
}

/// The relay's own connection to the upstream, with TCP_NODELAY as the client's has.
pub(crate) async fn relay_upstream(upstream: SocketAddr) -> Option<TcpStream> {
    let upstream = TcpStream::connect(upstream).await.ok()?;
    let _ = upstream.set_nodelay(true);
    Some(upstream)
}

/// Copies the next whole answer from `upstream` to `client` (`answers` keeps what was read past
/// it); None when either side fails or the answer cannot be framed.
pub(crate) async fn relay_answer(
    upstream: &mut TcpStream,
    client: &mut TcpStream,
    answers: &mut Vec<u8>,
) -> Option<()> {
    let n = read_message(upstream, answers, Side::Answer).await?;
    client.write_all(&answers[..n]).await.ok()?;
    answers.drain(..n);
    Some(())
}

pub(crate) const READ_SIZE: usize = 8192;
/// A head longer than this is not waited for.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Clone, Copy)]
pub(crate) enum Side {
    Request,
    Answer,
}

/// Reads until `buffer` (which may already hold part of a message, or more than one) starts
/// with one whole message, and returns its length; None when the peer closes or errs, or sends
/// what the relay cannot frame.
pub(crate) async fn read_message(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    side: Side,
) -> Option<usize> {
    let mut length = None;
    loop {
        if length.is_none() {
            length = message_length(buffer, side).ok()?;
            if length.is_none() && buffer.len() > MAX_HEAD {
                return None;
            }
        }
        if let Some(length) = length.filter(|&length| buffer.len() >= length) {
            return Some(length);
        }
        buffer.reserve(READ_SIZE);
        if stream.read_buf(buffer).await.ok()? == 0 {
            return None;
        }
    }
}

/// The relay cannot frame this message: a bad head, a Transfer-Encoding, or an answer
/// delimited by the connection's close.
struct Unframeable;

/// The length of the message at the start of `buffer`, head and body, once its head is whole
/// (None before). Requests without Content-Length have no body, and so have 204 and 304
/// answers; other answers must carry a Content-Length, and 1xx ones are not relayed.
fn message_length(buffer: &[u8], side: Side) -> Result<Option<usize>, Unframeable> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let (status, code, headers) = match side {
        Side::Request => {
            let mut request = httparse::Request::new(&mut headers);
            let status = request.parse(buffer).map_err(|_| Unframeable)?;
            (status, None, request.headers)
        }
        Side::Answer => {
            let mut answer = httparse::Response::new(&mut headers);
            let status = answer.parse(buffer).map_err(|_| Unframeable)?;
            (status, answer.code, answer.headers)
        }
    };
    let httparse::Status::Complete(head) = status else {
        return Ok(None);
    };
    if headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err(Unframeable);
    }
    let content_length = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(Unframeable)
        })
        .transpose()?;
    let body = match (content_length, code) {
        (_, Some(code)) if code < 200 => return Err(Unframeable),
        (Some(length), _) => length,
        (None, None) => 0,
        (None, Some(204 | 304)) => 0,
        (None, Some(_)) => return Err(Unframeable),
    };
    Ok(Some(head + body))
}
