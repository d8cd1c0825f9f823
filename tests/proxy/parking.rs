//! Idle HTTP/1.1 connections park without their HTTP state and are taken up again when the
//! client speaks: one client connection, over plain TCP and TLS, across parks.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use crate::support::{self, metrics::sample, Harness, Options, TIMEOUT};

const ME: &str = "/ucwa/oauth/v1/applications/192/me";
const HOST: &str = "lyncweb.contoso.com";

/// One HTTP/1.1 client connection (ALPN http/1.1 over TLS) and the task driving it, which ends
/// when the server closes the connection.
async fn connect(h: &Harness) -> (SendRequest<Empty<Bytes>>, JoinHandle<()>) {
    let addr = h.server.addrs()[0];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match h.certs() {
        None => drive(TokioIo::new(tcp)).await,
        Some(certs) => {
            let mut config = certs.client_config();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let tls = connector.connect(name, tcp).await.unwrap();
            drive(TokioIo::new(tls)).await
        }
    }
}

async fn drive<I>(io: I) -> (SendRequest<Empty<Bytes>>, JoinHandle<()>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
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

/// Polls the parked gauge until it reads `want` (bounded).
async fn wait_parked(h: &Harness, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = parked(h).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "parked gauge {now}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

#[tokio::test]
async fn an_idle_connection_parks_and_serves_its_next_request() {
    parks_and_serves_again(false).await;
}

#[tokio::test]
async fn an_idle_tls_connection_parks_and_serves_its_next_request() {
    parks_and_serves_again(true).await;
}

#[tokio::test]
async fn a_parked_connection_is_closed_at_the_idle_timeout() {
    let h = support::start_with(Options {
        members: 1,
        ..Options::default()
    })
    .await;
    // The harness's [server] table is fixed; an idle limit needs its own server.
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nidle_timeout = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstream]\nmembers = [{:?}]\n[audit]\nsink = \"off\"\n{}",
        h.members[0].url(),
        support::POLICY
    );
    let config = ringfence::config::Config::from_toml(&toml).unwrap();
    let server = ringfence::listener::Server::start(config, None)
        .await
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(server.addrs()[0])
        .await
        .unwrap();
    let (mut send, task) = drive(TokioIo::new(tcp)).await;
    let (status, _) = get(&mut send).await;
    assert_eq!(status, 200);
    let idle_from = Instant::now();
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(4),
        "closed after {idle:?} idle"
    );
}

/// A TLS client's first request sent in the same write as its handshake's Finished: the session
/// holds it before the socket is ever waited on, so it must be served, not waited for.
#[tokio::test]
async fn a_request_sent_with_the_tls_finished_is_served() {
    let h = support::start_with(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    let mut config = h.certs().unwrap().client_config();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
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
