//! SPEC §12 "Client address": PROXY protocol listeners (raw headers and a real HAProxy), and
//! `X-Forwarded-For` believed from trusted proxies only. The PROXY header says who the TCP
//! client is, so its source is what `X-Forwarded-For` to the pool appends; what
//! `trusted_proxies` reads from `X-Forwarded-For` shows in the audit trail's `client`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::client::{raw_bytes, raw_reply, raw_reply_from, tls_raw_reply_after};
use crate::support::haproxy::{self, Haproxy};
use crate::support::metrics::sample;
use crate::support::{self, Harness, Options, HOST, SIMRING, TIMEOUT};
const ME: &str = "/ucwa/oauth/v1/applications/192/me?x=1";
const ALLOWED: &str = "target=tel:%2B1-425-555-0100";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header for a TCP over IPv4 connection from `source` to 127.0.0.1:443.
fn v2(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&source);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// A v2 LOCAL header, as a load balancer's own health check sends.
fn v2_local() -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0, 0]);
    h
}

fn get(extra: &str) -> Vec<u8> {
    format!("GET {ME} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

fn ring(id: &str) -> Vec<u8> {
    format!(
        "POST {SIMRING}?{ALLOWED} HTTP/1.1\r\nHost: {HOST}\r\nX-Request-Id: {id}\r\n\
         X-Forwarded-For: 203.0.113.5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

async fn proxied(server: &str) -> Harness {
    support::start_with(Options {
        server: format!("proxy_protocol = true\n{server}"),
        ..Options::default()
    })
    .await
}

/// The X-Forwarded-For of the one request the pool received since `counts`.
fn forwarded_for_since(h: &Harness, counts: &[usize]) -> String {
    let received = h.received_since(counts);
    assert_eq!(received.len(), 1, "{received:?}");
    received[0].headers["x-forwarded-for"]
        .to_str()
        .unwrap()
        .to_string()
}

async fn errors(h: &Harness, listener: SocketAddr) -> Option<f64> {
    sample(
        &h.metrics().await,
        "ringfence_proxy_protocol_errors_total",
        &[("listener", &listener.to_string())],
    )
}

#[tokio::test]
async fn a_v2_header_makes_its_source_the_client_the_pool_is_told_of() {
    let h = proxied("").await;
    let addr = h.server.addrs()[0];
    let counts = h.received_counts();
    // Header and request in one write: only the header's bytes may be taken as the header.
    let request = cat(
        &v2([192, 0, 2, 7], 4711),
        &get("X-Forwarded-For: 198.51.100.1\r\n"),
    );
    let reply = raw_reply(addr, &request).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(forwarded_for_since(&h, &counts), "198.51.100.1, 192.0.2.7");
    assert_eq!(errors(&h, addr).await, Some(0.0));
}

#[tokio::test]
async fn a_v1_header_names_an_ipv6_client() {
    let h = proxied("").await;
    let counts = h.received_counts();
    let header = b"PROXY TCP6 2001:db8::7 ::1 4711 443\r\n";
    let reply = raw_reply(h.server.addrs()[0], &cat(header, &get("")))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(forwarded_for_since(&h, &counts), "2001:db8::7");
}

#[tokio::test]
async fn unknown_and_local_headers_leave_the_peer_as_the_client() {
    let h = proxied("").await;
    for header in [b"PROXY UNKNOWN\r\n".to_vec(), v2_local()] {
        let counts = h.received_counts();
        let reply = raw_reply(h.server.addrs()[0], &cat(&header, &get("")))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(forwarded_for_since(&h, &counts), "127.0.0.1");
    }
}

/// On paused time: the client's pauses cost nothing.
#[tokio::test(start_paused = true)]
async fn a_header_sent_in_pieces_is_read_whole() {
    let h = proxied("").await;
    let counts = h.received_counts();
    let mut stream = tokio::net::TcpStream::connect(h.server.addrs()[0])
        .await
        .unwrap();
    let header = v2([192, 0, 2, 8], 4711);
    stream.write_all(&header[..7]).await.unwrap();
    // The client's own pause, the behaviour under test: tokio moves the clock only once every
    // task waits, so the server has read the cut header by then. Nothing waits on it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(&header[7..14]).await.unwrap();
    // The second cut, the same kind of pause.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream
        .write_all(&cat(&header[14..], &get("")))
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(forwarded_for_since(&h, &counts), "192.0.2.8");
}

/// The plaintext listener peeks at a client's first bytes to tell HTTP/2 from HTTP/1.1: after a
/// header, it must peek at the bytes after it.
#[tokio::test]
async fn an_h2c_client_after_the_header_is_served_as_http2() {
    let h = proxied("").await;
    let counts = h.received_counts();
    let mut tcp = tokio::net::TcpStream::connect(h.server.addrs()[0])
        .await
        .unwrap();
    tcp.write_all(&v2([192, 0, 2, 9], 4711)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(format!("http://{HOST}{ME}"))
        .version(http::Version::HTTP_2)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(TIMEOUT, send.send_request(request))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let _ = response.into_body().collect().await;
    assert_eq!(forwarded_for_since(&h, &counts), "192.0.2.9");
}

#[tokio::test]
async fn a_tls_listener_reads_the_header_before_the_handshake() {
    let h = support::start_with(Options {
        tls: true,
        server: "proxy_protocol = true".into(),
        ..Options::default()
    })
    .await;
    let counts = h.received_counts();
    let reply = tls_raw_reply_after(
        h.server.addrs()[0],
        &v2([192, 0, 2, 10], 4711),
        h.certs().unwrap(),
        HOST,
        &get(""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(forwarded_for_since(&h, &counts), "192.0.2.10");
}

#[tokio::test]
async fn a_connection_without_the_header_is_closed_and_counted() {
    let h = proxied("").await;
    let addr = h.server.addrs()[0];
    let answer = raw_bytes(addr, &get("")).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let garbled = raw_bytes(
        addr,
        b"PROXY TCP4 192.0.2.1 nonsense 1 2\r\nGET / HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(garbled.is_empty(), "{}", String::from_utf8_lossy(&garbled));
    assert_eq!(errors(&h, addr).await, Some(2.0));
    assert!(h.received().is_empty(), "nothing reached the pool");
}

/// A TCP health check (an L4 load balancer's or an orchestrator's probe) connects and closes, or
/// resets as HAProxy's checks do, without a byte: not counted as an error, which would grow
/// with every check; a connection that sent part of a header and closed is.
#[tokio::test]
async fn a_connection_that_sends_nothing_is_not_counted() {
    let h = proxied("").await;
    let addr = h.server.addrs()[0];
    for reset in [false, true, false, true] {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        if reset {
            stream.set_zero_linger().unwrap();
        }
        drop(stream);
    }
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"PROXY TCP4").await.unwrap();
    drop(partial);
    support::eventually("the partial header to be counted", async || {
        errors(&h, addr).await == Some(1.0)
    })
    .await;
    // The checks' connections were seen (closed) before the partial one was counted: the
    // listener takes connections in order.
    let reply = raw_reply(addr, &cat(&v2([192, 0, 2, 12], 1), &get("")))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(errors(&h, addr).await, Some(1.0));
}

/// On paused time: the clock is tokio's, so the close is seen at the timeout itself.
#[tokio::test(start_paused = true)]
async fn a_slow_header_times_out_and_is_counted() {
    let h = proxied("header_read_timeout = \"300ms\"").await;
    let addr = h.server.addrs()[0];
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"PROXY TCP4 192.0.2.1").await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(TIMEOUT, stream.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Closed by the header timeout: not at once, and not at the test's own TIMEOUT.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(400),
        "closed after {waited:?}"
    );
    assert_eq!(errors(&h, addr).await, Some(1.0));
}

#[tokio::test]
async fn only_the_listeners_named_expect_the_header() {
    let member = ringfence::sim::FrontEnd::start_on("fe1", "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let toml = support::Toml::new(&[member.url()])
        .rest(support::POLICY)
        .build()
        .replace(
            "listen = [\"127.0.0.1:0\"]\n",
            "listen = [\"127.0.0.1:0\", \"127.0.0.2:0\"]\nproxy_protocol = [\"127.0.0.2:0\"]\n",
        );
    let server = support::serve_toml(&toml).await;
    let (plain, expecting) = (server.addrs()[0], server.addrs()[1]);
    assert_eq!(expecting.ip().to_string(), "127.0.0.2");
    let reply = raw_reply(plain, &get("")).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(raw_bytes(expecting, &get("")).await.is_empty());
    let reply = raw_reply(expecting, &cat(&v2([192, 0, 2, 11], 1), &get("")))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let forwarded: Vec<String> = member
        .received()
        .iter()
        .map(|r| r.headers["x-forwarded-for"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(forwarded, ["127.0.0.1", "192.0.2.11"]);
    let text = support::scrape(&server).await;
    let name = "ringfence_proxy_protocol_errors_total";
    assert_eq!(
        sample(&text, name, &[("listener", &expecting.to_string())]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, name, &[("listener", &plain.to_string())]),
        None
    );
    server.shutdown().await;
}

/// Through a real HAProxy (`mode tcp`, `send-proxy` and `send-proxy-v2`): the client connects
/// from 127.0.0.2, HAProxy from 127.0.0.1, and the pool is told 127.0.0.2.
#[tokio::test]
async fn through_haproxy_the_pool_is_told_the_real_client() {
    let h = proxied("").await;
    for send in [haproxy::Send::V2, haproxy::Send::V1] {
        let Some(haproxy) = Haproxy::start(h.server.addrs()[0], send).await else {
            return;
        };
        let counts = h.received_counts();
        let reply = raw_reply_from([127, 0, 0, 2].into(), haproxy.addr, &get(""))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{send:?}: {}", reply.text());
        assert_eq!(forwarded_for_since(&h, &counts), "127.0.0.2", "{send:?}");
    }
    assert_eq!(errors(&h, h.server.addrs()[0]).await, Some(0.0));
}

/// A harness writing its audit trail to a file of its own.
async fn audited(server: &str) -> (Harness, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let h = support::start_with(Options {
        audit: format!("sink = \"file\"\npath = {path:?}"),
        server: server.into(),
        ..Options::default()
    })
    .await;
    (h, dir, path)
}

/// The audit `client` of the request with this id, waiting (bounded) for its line.
async fn audited_client(path: &PathBuf, id: &str) -> String {
    support::eventually(&format!("the audit line for {id}"), async || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|l| l["kind"] == "decision" && l["client_request_id"] == id)
            .map(|line| line["client"].as_str().unwrap().to_string())
    })
    .await
}

#[tokio::test]
async fn behind_trusted_proxies_the_rightmost_untrusted_forwarded_address_is_the_client() {
    let (h, _dir, path) = audited("trusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]").await;
    let cases: [(&str, &[&str], &str); 4] = [
        // The leftmost entries are the client's own to invent: never believed.
        (
            "spoofed",
            &["203.0.113.66, 198.51.100.7", "10.0.0.2"],
            "198.51.100.7",
        ),
        ("garbage", &["198.51.100.7, unknown, 10.0.0.3"], "10.0.0.3"),
        ("trusted", &["10.0.0.4, 10.0.0.5"], "10.0.0.4"),
        ("none", &[], "127.0.0.1"),
    ];
    for (id, lines, client) in cases {
        let counts = h.received_counts();
        let mut headers = vec![("x-request-id", id)];
        headers.extend(lines.iter().map(|l| ("x-forwarded-for", *l)));
        let reply = h
            .client
            .request("POST", &format!("{SIMRING}?{ALLOWED}"), HOST, &headers, b"")
            .await;
        assert_eq!(reply.status, 204, "{id}: {}", reply.text());
        assert_eq!(audited_client(&path, id).await, client, "{id}");
        // The pool is told the whole chain, every line, and the connection's address.
        let mut chain: Vec<&str> = lines.to_vec();
        chain.push("127.0.0.1");
        assert_eq!(forwarded_for_since(&h, &counts), chain.join(", "), "{id}");
    }
}

#[tokio::test]
async fn from_an_untrusted_peer_x_forwarded_for_is_not_believed() {
    let (h, _dir, path) = audited("trusted_proxies = [\"10.0.0.0/8\"]").await;
    let reply = h
        .client
        .request(
            "POST",
            &format!("{SIMRING}?{ALLOWED}"),
            HOST,
            &[
                ("x-request-id", "untrusted"),
                ("x-forwarded-for", "198.51.100.7"),
            ],
            b"",
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(audited_client(&path, "untrusted").await, "127.0.0.1");
}

#[tokio::test]
async fn a_proxy_header_from_a_trusted_balancer_hands_on_to_x_forwarded_for() {
    let (h, _dir, path) =
        audited("proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]").await;
    let addr = h.server.addrs()[0];
    let counts = h.received_counts();
    let reply = raw_reply(addr, &cat(&v2([10, 1, 1, 1], 4711), &ring("balanced")))
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(audited_client(&path, "balanced").await, "203.0.113.5");
    assert_eq!(forwarded_for_since(&h, &counts), "203.0.113.5, 10.1.1.1");
    // The same X-Forwarded-For from a source that is not trusted names nobody.
    let reply = raw_reply(addr, &cat(&v2([192, 0, 2, 12], 4711), &ring("direct")))
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(audited_client(&path, "direct").await, "192.0.2.12");
}
