//! Idle HTTP/1.1 connections park without their HTTP state and are taken up again when the
//! client speaks: one client connection, over plain TCP and TLS, across parks; and many at once
//! on a multi-threaded runtime, whose requests end on other workers than their connections.
//!
//! Each test runs on both runtime flavours (`both_flavours!`): the current-thread one on paused
//! time (tokio moves the clock on whenever every task waits, so the park delay and the timeouts
//! cost no real time; loopback sockets deliver within the writing call, so no wait is on the
//! kernel), the multi-threaded one on real time (tokio cannot pause it).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::support::certs::Certs;
use crate::support::{self, metrics::sample, Harness, Options, HOST, TIMEOUT};

const ME: &str = "/ucwa/oauth/v1/applications/192/me";

/// A test on the current-thread runtime, on paused time, and on a multi-threaded one with four
/// workers, on real time: `name::current_thread` and `name::multi_thread`.
macro_rules! both_flavours {
    ($(#[$doc:meta])* async fn $name:ident() $body:block) => {
        $(#[$doc])*
        mod $name {
            use super::*;

            #[tokio::test(start_paused = true)]
            async fn current_thread() $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn multi_thread() $body
        }
    };
}

/// One HTTP/1.1 client connection (ALPN http/1.1 over TLS) and the task driving it, which ends
/// when the server closes the connection.
async fn connect(h: &Harness) -> (SendRequest<Empty<Bytes>>, JoinHandle<()>) {
    let addr = h.server.addrs()[0];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match h.certs() {
        None => drive(TokioIo::new(tcp)).await,
        Some(certs) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(http1_tls(certs)));
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let tls = connector.connect(name, tcp).await.unwrap();
            drive(TokioIo::new(tls)).await
        }
    }
}

/// A TLS client configuration that offers only HTTP/1.1, as the connections that park.
fn http1_tls(certs: &Certs) -> rustls::ClientConfig {
    let mut config = certs.client_config();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A server with its own `[server]` settings (the harness's table is fixed) in front of `member`.
async fn server_before(member: &str, server: &str) -> ringfence::server::Server {
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n{server}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstream]\nmembers = [{member:?}]\n[audit]\nsink = \"off\"\n{}",
        support::POLICY
    );
    support::serve_toml(&toml).await
}

async fn drive<I, B>(io: I) -> (SendRequest<B>, JoinHandle<()>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

async fn get(send: &mut SendRequest<Empty<Bytes>>) -> (u16, Bytes) {
    let request = http::Request::get(ME)
        .header("host", HOST)
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(TIMEOUT, send.send_request(request))
        .await
        .expect("answered in time")
        .expect("answered");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

async fn parked(h: &Harness) -> f64 {
    let text = h.metrics().await;
    sample(&text, "ringfence_connections_parked", &[]).unwrap_or(f64::NAN)
}

/// Waits (bounded) until the parked gauge reads `want`.
async fn wait_parked(h: &Harness, want: f64) {
    support::eventually(&format!("the parked gauge to read {want}"), async || {
        parked(h).await == want
    })
    .await;
}

async fn parks_and_serves_again(tls: bool) {
    let h = support::start_with(Options {
        tls,
        ..Options::default()
    })
    .await;
    let (mut send, task) = connect(&h).await;
    // Before its first request the connection already holds no HTTP state.
    wait_parked(&h, 1.0).await;
    let (status, first) = get(&mut send).await;
    assert_eq!(status, 200);
    // Served, then quiet: parked again, and the same connection serves the next request.
    wait_parked(&h, 1.0).await;
    for _ in 0..3 {
        let (status, again) = get(&mut send).await;
        assert_eq!(status, 200);
        assert_eq!(again, first);
        wait_parked(&h, 1.0).await;
    }
    assert!(!task.is_finished(), "the server kept the connection open");
    let received: usize = h.members.iter().map(|m| m.received().len()).sum();
    assert!(received >= 4, "{received} requests reached the pool");
    // A busy connection is not parked.
    let (status, _) = get(&mut send).await;
    assert_eq!(status, 200);
    drop(send);
    let _ = tokio::time::timeout(TIMEOUT, task).await;
    wait_parked(&h, 0.0).await;
}

both_flavours! {
    async fn an_idle_connection_parks_and_serves_its_next_request() {
        parks_and_serves_again(false).await;
    }
}

both_flavours! {
    async fn an_idle_tls_connection_parks_and_serves_its_next_request() {
        parks_and_serves_again(true).await;
    }
}

both_flavours! {
    async fn a_parked_connection_is_closed_at_the_idle_timeout() {
        parked_closed_at_the_idle_timeout().await;
    }
}

async fn parked_closed_at_the_idle_timeout() {
    let member = ringfence::sim::FrontEnd::start("fe1").await.unwrap();
    let server = server_before(&member.url(), "idle_timeout = \"1s\"").await;
    let tcp = tokio::net::TcpStream::connect(server.addrs()[0])
        .await
        .unwrap();
    let (mut send, task) = drive(TokioIo::new(tcp)).await;
    let (status, _) = get(&mut send).await;
    assert_eq!(status, 200);
    let idle_from = Instant::now();
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
    let idle = idle_from.elapsed();
    // Not before the timeout: timers never fire early, on either clock (the server's idle time
    // began as it sent the answer, a little before `idle_from`).
    assert!(
        idle >= Duration::from_millis(900),
        "closed after {idle:?} idle"
    );
    // On paused time the clock moved only while every task waited, so it reads the timeout
    // itself; real time (multi_thread) is bounded only by the wait's TIMEOUT above.
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread
    {
        assert!(
            idle < Duration::from_millis(1100),
            "closed after {idle:?} idle"
        );
    }
}

both_flavours! {
    /// A TLS client's first request sent in the same write as its handshake's Finished: the
    /// session holds it before the socket is ever waited on, so it must be served, not waited
    /// for. (The client is blocking, on the blocking pool, which holds paused time still.)
    async fn a_request_sent_with_the_tls_finished_is_served() {
        request_sent_with_the_tls_finished().await;
    }
}

async fn request_sent_with_the_tls_finished() {
    let h = support::start_with(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    let config = http1_tls(h.certs().unwrap());
    let addr: SocketAddr = h.server.addrs()[0];
    let answer = tokio::task::spawn_blocking(move || {
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        // Queued before the handshake: rustls sends it right behind the client Finished.
        tls.writer()
            .write_all(
                format!("GET {ME} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut sock).unwrap();
        }
        let mut out = Vec::new();
        let _ = rustls::Stream::new(&mut tls, &mut sock).read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

both_flavours! {
    /// A parked TLS connection keeps no buffer of its own, only the session: the client's next
    /// request, one TLS record sent in two pieces far enough apart for the connection to be taken
    /// up by the first and park again holding it, is served whole.
    async fn a_parked_tls_connection_takes_up_a_record_that_arrives_in_two_pieces() {
        record_in_two_pieces().await;
    }
}

async fn record_in_two_pieces() {
    use tokio::io::AsyncWriteExt;
    let h = support::start_with(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(h.server.addrs()[0])
        .await
        .unwrap();
    // The second piece is not held back for the first one's ACK (Nagle), which paused time
    // would not wait for.
    tcp.set_nodelay(true).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(http1_tls(h.certs().unwrap())));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!("GET {ME} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let first = read_answer(&mut tls).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
    wait_parked(&h, 1.0).await;
    // The same request again, as the record rustls makes of it, written in two pieces.
    let session = tls.get_mut().1;
    session.writer().write_all(request.as_bytes()).unwrap();
    let mut wire = Vec::new();
    while session.wants_write() {
        session.write_tls(&mut wire).unwrap();
    }
    let (head, rest) = wire.split_at(wire.len() / 2);
    tls.get_mut().0.write_all(head).await.unwrap();
    tokio::time::sleep(ringfence::body::PARK_AFTER * 4).await;
    wait_parked(&h, 1.0).await;
    tls.get_mut().0.write_all(rest).await.unwrap();
    let second = read_answer(&mut tls).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second:?}");
    assert_eq!(answer_body(&second), answer_body(&first));
}

both_flavours! {
    /// A request pipelined behind another in one write, its head cut short: the connection
    /// quiets after the first answer with half the second head read, and the rest comes later
    /// than the park delay. The second request is answered (it was closed unanswered before).
    async fn half_a_pipelined_request_read_with_the_last_is_served_when_its_rest_comes() {
        half_a_pipelined_request().await;
    }
}

async fn half_a_pipelined_request() {
    use tokio::io::AsyncWriteExt;
    let h = support::start_with(Options::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(h.server.addrs()[0])
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let request = format!("GET {ME} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let (half, rest) = request.split_at(request.len() / 2);
    tcp.write_all(format!("{request}{half}").as_bytes())
        .await
        .unwrap();
    let first = read_answer(&mut tcp).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
    tokio::time::sleep(ringfence::body::PARK_AFTER * 4).await;
    tcp.write_all(rest.as_bytes()).await.unwrap();
    let second = read_answer(&mut tcp).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second:?}");
    assert_eq!(answer_body(&second), answer_body(&first));
    // Served whole, it parks again like any other.
    wait_parked(&h, 1.0).await;
}

/// One HTTP/1.1 answer with a Content-Length, read from a raw client stream.
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap())
                })
                .expect("a Content-Length");
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut buf))
            .await
            .expect("answered in time")
            .expect("answered");
        assert!(n > 0, "closed after {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

fn answer_body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// A pool member that answers 200 as soon as it has a request head, before reading the body
/// (as a member refusing an upload would), then reads on.
async fn early_answering_member() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

both_flavours! {
    /// The member answered while the client was still sending its body, and the client paused
    /// for longer than the park delay: the rest of the body is still body, never a request of
    /// its own.
    async fn a_body_still_arriving_after_the_answer_is_not_parsed_as_a_new_request() {
        body_still_arriving_after_the_answer().await;
    }
}

async fn body_still_arriving_after_the_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let member = early_answering_member().await;
    let server = server_before(&format!("http://{member}"), "").await;
    let smuggled = format!("GET {ME} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let mut client = tokio::net::TcpStream::connect(server.addrs()[0])
        .await
        .unwrap();
    let head = format!(
        "POST {ME}/reportMyActivity HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        2 + smuggled.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(b"{}").await.unwrap();
    let answer = support::read_answer(&mut client).await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "ok"));
    // The behaviour under test, not a wait for anything: the client's own pause, longer than
    // the park delay (on paused time it costs nothing).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = client.write_all(smuggled.as_bytes()).await;
    // Then the client is done: the server closes the connection at its end, having answered
    // whatever it read as a request before that.
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, client.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection in time");
    assert!(
        !rest.windows(8).any(|w| w == b"HTTP/1.1"),
        "the body's tail was answered as a request: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let admin = support::admin(&server);
    let metrics = admin.get("/metrics", "admin").await.text();
    assert_eq!(
        sample(&metrics, "ringfence_http_requests_total", &[]),
        Some(1.0),
        "{metrics}"
    );
}

/// A client connection to `server` (in front of [`early_answering_member`]) that sent a head of
/// a 10-byte body and 5 of its bytes, and has its answer: the rest of the body is still to come.
async fn answered_early(server: &ringfence::server::Server) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut client = tokio::net::TcpStream::connect(server.addrs()[0])
        .await
        .unwrap();
    let head = format!(
        "POST {ME}/reportMyActivity HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n\
         Content-Length: 10\r\n\r\n"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(br#"{"a":"#).await.unwrap();
    let answer = support::read_answer(&mut client).await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "ok"));
    client
}

/// The member answered before the body was all sent: the client's connection still reads the
/// body to its end and hands it on, then serves the client's next request on the same
/// connection, as hyper's server did (fresh eyes, round 25). On real time: on paused time the
/// runtime, idle between the client's writes, jumps to the pool client's 60 s limit for the rest
/// of the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_goes_on_after_a_body_finished_behind_an_early_answer() {
    use tokio::io::AsyncWriteExt;
    let member = early_answering_member().await;
    let server = server_before(&format!("http://{member}"), "").await;
    let mut client = answered_early(&server).await;
    client.write_all(b" 123}").await.unwrap();
    let next = format!("GET {ME} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    client.write_all(next.as_bytes()).await.unwrap();
    let answer = support::read_answer(&mut client).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "ok"),
        "the next request on the same connection"
    );
}

/// The member answered before the body was all sent, and the client then sent nothing more
/// while keeping its connection open: the body's reader, in the pool client's own task, gives
/// up at `body_read_timeout` and goes, and the client's connection, which was waiting on the
/// socket for the body, is woken by it and closed (the body's rest cannot be skipped). Session
/// 29's review: the connection kept only the socket's wake-up while it read for the body, so a
/// reader that went left it waiting for bytes that never came (here, until the test's limit).
#[tokio::test(start_paused = true)]
async fn a_connection_whose_body_reader_went_is_closed_without_more_bytes() {
    use tokio::io::AsyncReadExt;
    let member = early_answering_member().await;
    let server = server_before(
        &format!("http://{member}"),
        "body_read_timeout = \"2s\"\nidle_timeout = \"600s\"",
    )
    .await;
    let mut client = answered_early(&server).await;
    let began = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), client.read_to_end(&mut rest))
        .await
        .expect("closed once the body's reader went")
        .unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "closed after {waited:?}, not at body_read_timeout"
    );
}

/// One client connection's rounds: a pause around the park delay (under it, at it, over it),
/// then a GET, or a pass-through PUT whose body the pool client's task reads, on any worker.
async fn keep_alive_rounds(
    addr: SocketAddr,
    connection: usize,
    rounds: usize,
) -> (SendRequest<Full<Bytes>>, JoinHandle<()>) {
    const PAUSES_MS: [u64; 7] = [0, 120, 240, 250, 260, 400, 600];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, task) = drive::<_, Full<Bytes>>(TokioIo::new(tcp)).await;
    for round in 0..rounds {
        let pause = PAUSES_MS[(connection * 3 + round) % PAUSES_MS.len()];
        // The client's own pace, the behaviour under test; not a wait for anything.
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let put = (connection + round) % 2 == 1;
        let request = if put {
            http::Request::put(format!("{ME}/note"))
                .header("host", HOST)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(format!(
                    r#"{{"message":"connection {connection}, round {round}"}}"#
                ))))
        } else {
            http::Request::get(ME)
                .header("host", HOST)
                .body(Full::new(Bytes::new()))
        }
        .unwrap();
        let response = tokio::time::timeout(TIMEOUT, send.send_request(request))
            .await
            .unwrap_or_else(|_| panic!("connection {connection}, round {round}: no answer"))
            .unwrap_or_else(|e| panic!("connection {connection}, round {round}: cut: {e}"));
        let status = response.status().as_u16();
        let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
            .await
            .expect("the answer's body in time")
            .unwrap_or_else(|e| panic!("connection {connection}, round {round}: body cut: {e}"))
            .to_bytes();
        let wanted = if put { 404 } else { 200 };
        assert_eq!(
            status,
            wanted,
            "connection {connection}, round {round}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    assert!(
        !task.is_finished(),
        "connection {connection}: the server kept it open"
    );
    (send, task)
}

both_flavours! {
    /// A pass-through body of known length is sent on by hyper's client without a read past its
    /// last frame: it counts as read to its end, and its connection parks again.
    async fn a_connection_parks_again_after_a_pass_through_body() {
        let h = support::start().await;
        let (send, task) = keep_alive_rounds(h.server.addrs()[0], 1, 1).await;
        wait_parked(&h, 1.0).await;
        drop(send);
        let _ = tokio::time::timeout(TIMEOUT, task).await;
        wait_parked(&h, 0.0).await;
    }
}

/// Many keep-alive connections on four workers, each pausing under, at and over the park delay
/// between requests whose bodies end on other workers than their connections: every request is
/// answered on its own connection, connections park and are taken up again, and at the end every
/// one of them is parked ("Orderings" in src/listener/park.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_connections_park_and_wake_across_workers_without_losing_a_request() {
    const CONNECTIONS: usize = 24;
    const ROUNDS: usize = 8;
    let h = support::start().await;
    let addr = h.server.addrs()[0];
    let before: usize = h.received_counts().iter().sum();
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|c| tokio::spawn(keep_alive_rounds(addr, c, ROUNDS)))
        .collect();
    let mut most_parked = 0.0f64;
    while !clients.iter().all(JoinHandle::is_finished) {
        most_parked = most_parked.max(parked(&h).await);
        // The sampling pace while the clients run; not a wait for anything.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut connections = Vec::new();
    for client in clients {
        connections.push(client.await.expect("no client failed"));
    }
    let received: usize = h.received_counts().iter().sum::<usize>() - before;
    assert_eq!(
        received,
        CONNECTIONS * ROUNDS,
        "every request reached the pool once"
    );
    assert!(
        most_parked >= 1.0,
        "connections parked between their requests (at most {most_parked} at once)"
    );
    // Quiet now: every connection parks; closed by their clients, none is left.
    wait_parked(&h, CONNECTIONS as f64).await;
    for (send, task) in connections {
        drop(send);
        let _ = tokio::time::timeout(TIMEOUT, task).await;
    }
    wait_parked(&h, 0.0).await;
}
