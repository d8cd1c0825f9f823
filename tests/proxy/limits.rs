//! Connection limits, TLS failures counted, mutual TLS to the pool, promtool on a real scrape.

use std::time::Duration;

use ringfence::server::Server;
use ringfence::sim;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    self, assert_refused, certs::Certs, eventually, metrics::sample, Client, Toml, HOST, SIMRING,
};

async fn server(member: &sim::FrontEnd, server_extra: &str, upstream_extra: &str) -> Server {
    let text = Toml::new(&[member.url()])
        .server(server_extra)
        .upstream(upstream_extra)
        .rest(
            "[policy]\ndefault_organisation = \"contoso\"\n\
             [[organisations]]\nname = \"contoso\"\nallow_numbers = [\"+1425\"]\n",
        )
        .build();
    support::serve_toml(&text).await
}

/// POSTs an allowed number through `s`.
async fn ring_allowed(s: &Server) -> support::Reply {
    let client = Client::new(s.addrs()[0], None, false);
    let path = format!("{SIMRING}?target=tel:%2B14255550100");
    client.request("POST", &path, HOST, &[], b"").await
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_and_the_others_keep_working() {
    let member = sim::FrontEnd::start("fe1").await.unwrap();
    let s = server(&member, "max_connections = 2", "").await;
    let addr = s.addrs()[0];
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let listener = addr.to_string();
    eventually("both connections to hold their slots", async || {
        let m = support::scrape(&s).await;
        sample(&m, "ringfence_connections_open", &[("listener", &listener)]) == Some(2.0)
    })
    .await;
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the third connection is closed"
    );
    let first = &mut held[0];
    first
        .write_all(b"GET /ucwa/v1/applications/1/me HTTP/1.1\r\nHost: lyncweb.contoso.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), first.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn failed_tls_handshakes_are_counted() {
    let certs = Certs::generate();
    let member = sim::FrontEnd::start("fe1").await.unwrap();
    let tls = format!(
        "tls = {{ cert = {:?}, key = {:?} }}",
        certs.server_cert_path(),
        certs.server_key_path()
    );
    let s = server(&member, &tls, "").await;
    let mut stream = tokio::net::TcpStream::connect(s.addrs()[0]).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
    eventually("the failed handshake to be counted", async || {
        let m = support::scrape(&s).await;
        sample(&m, "ringfence_tls_handshake_errors_total", &[]) == Some(1.0)
    })
    .await;
    assert!(member.received().is_empty());
    // A TCP health check connects and closes, or resets as HAProxy's do, without a byte: no
    // handshake failed, none is counted (each check would count one). A client that sent part
    // of a ClientHello and went is counted.
    for reset in [false, true, false, true] {
        let stream = tokio::net::TcpStream::connect(s.addrs()[0]).await.unwrap();
        if reset {
            stream.set_zero_linger().unwrap();
        }
        drop(stream);
    }
    let mut partial = tokio::net::TcpStream::connect(s.addrs()[0]).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    drop(partial);
    eventually("the partial ClientHello to be counted", async || {
        let m = support::scrape(&s).await;
        sample(&m, "ringfence_tls_handshake_errors_total", &[]) == Some(2.0)
    })
    .await;
    // A whole exchange after them: the checks' connections were all seen by now.
    let c = Client::new(s.addrs()[0], Some(&certs), true);
    let reply = c.get("/ucwa/v1/applications/1/me", HOST).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let m = support::scrape(&s).await;
    assert_eq!(
        sample(&m, "ringfence_tls_handshake_errors_total", &[]),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_pool_that_wants_mutual_tls_gets_the_configured_client_certificate() {
    let certs = Certs::generate();
    let member = sim::FrontEnd::start_on(
        "fe1",
        "127.0.0.1:0".parse().unwrap(),
        Some(certs.server_config_requiring_client_certs()),
    )
    .await
    .unwrap();
    let with_cert = format!(
        "tls = {{ ca_file = {:?}, cert = {:?}, key = {:?} }}",
        certs.ca_path(),
        certs.client_cert_path(),
        certs.client_key_path()
    );
    let s = server(&member, "", &with_cert).await;
    let ok = ring_allowed(&s).await;
    assert_eq!(ok.status, 204, "{}", ok.text());

    let without = format!("tls = {{ ca_file = {:?} }}", certs.ca_path());
    let s = server(&member, "", &without).await;
    let refused = ring_allowed(&s).await;
    assert!(matches!(refused.status, 502 | 503), "{}", refused.text());
    assert_eq!(member.received().len(), 1);
}

#[tokio::test]
async fn an_unknown_pool_ca_is_a_tls_failure_not_a_forward() {
    let certs = Certs::generate();
    let other = Certs::generate();
    let member = sim::FrontEnd::start_on(
        "fe1",
        "127.0.0.1:0".parse().unwrap(),
        Some(certs.server_config()),
    )
    .await
    .unwrap();
    let s = server(
        &member,
        "",
        &format!("tls = {{ ca_file = {:?} }}", other.ca_path()),
    )
    .await;
    let reply = ring_allowed(&s).await;
    assert_refused(&reply, 502, "upstream_failure");
    assert!(member.received().is_empty());
    let m = support::scrape(&s).await;
    assert!(
        sample(&m, "ringfence_upstream_errors_total", &[("kind", "tls")]).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
}

/// CI sets RINGFENCE_REQUIRE_PROMTOOL=1 after installing Debian's prometheus package.
#[tokio::test]
async fn a_real_scrape_passes_promtool_check_metrics() {
    let promtool = std::process::Command::new("promtool")
        .arg("--version")
        .output();
    if promtool.is_err() {
        assert!(
            std::env::var_os("RINGFENCE_REQUIRE_PROMTOOL").is_none(),
            "promtool is required here but not installed"
        );
        eprintln!("promtool not installed: skipped");
        return;
    }
    let h = support::start().await;
    h.ring(HOST, "target=tel:%2B14255550100").await;
    h.ring(HOST, "target=tel:%2B19005550100").await;
    let scrape = h.metrics().await;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics:\n{text}");
}
