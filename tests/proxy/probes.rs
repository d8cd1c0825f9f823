//! Health probes and readiness: `/ready` waits for a probe to find a member healthy, requests do
//! not, a reload keeps what the probes know, and failed probes are counted by kind.

use std::time::Duration;

use ringfence::server::Server;
use ringfence::sim;

use crate::support::{
    self, certs::Certs, eventually, metrics::sample, Client, ConfigFile, Toml, HOST,
};

/// A health path the simulated member answers only after its `event_wait`: a slow first probe.
const SLOW_HEALTH: &str = "/ucwa/v1/applications/192/events";

fn toml(members: &[String], health: &str, tls: &str) -> String {
    Toml::new(members)
        .upstream(&format!(
            "connect_timeout = \"1s\"\n{tls}\nhealth = {{ {health} }}"
        ))
        .rest(&format!(
            "[policy]\ndefault_organisation = \"contoso\"\n\
             [[organisations]]\nname = \"contoso\"\nhosts = [\"{HOST}\"]\nallow_numbers = [\"+1425\"]\n"
        ))
        .build()
}

/// A server started from a file, so that it can be reloaded.
async fn from_file(text: &str) -> (Server, ConfigFile) {
    let file = ConfigFile::new(text);
    (file.serve().await, file)
}

async fn metrics(server: &Server) -> String {
    support::scrape(server).await
}

async fn ready(server: &Server) -> u16 {
    support::admin(server).get("/ready", "admin").await.status
}

/// Polls the metrics until `check` holds for them.
async fn metrics_until(server: &Server, check: impl Fn(&str) -> bool) -> String {
    eventually("the metrics to show it", async || {
        let m = metrics(server).await;
        check(&m).then_some(m)
    })
    .await
}

fn healthy_gauge(m: &str, member: &str) -> Option<f64> {
    sample(
        m,
        "ringfence_upstream_member_healthy",
        &[("member", member)],
    )
}

#[tokio::test]
async fn ready_is_503_from_the_start_when_the_only_member_refuses_connections() {
    let dead = format!("http://{}", support::dead_address());
    let (server, _file) = from_file(&toml(
        std::slice::from_ref(&dead),
        "interval = \"100ms\", timeout = \"1s\"",
        "",
    ))
    .await;
    assert_eq!(ready(&server).await, 503, "not ready before any probe");
    assert_ne!(healthy_gauge(&metrics(&server).await, &dead), Some(1.0));
    let m = metrics_until(&server, |m| {
        sample(
            m,
            "ringfence_upstream_probe_failures_total",
            &[("member", &dead), ("kind", "connect")],
        )
        .unwrap_or(0.0)
            >= 3.0
    })
    .await;
    assert_eq!(healthy_gauge(&m, &dead), Some(0.0), "{m}");
    assert_eq!(ready(&server).await, 503, "nor after failed probes");
}

#[tokio::test]
async fn ready_turns_200_after_the_first_good_probe_and_requests_do_not_wait_for_it() {
    let member = sim::FrontEnd::start("fe1").await.unwrap();
    member.set_event_wait(Duration::from_secs(3));
    let url = member.url();
    let (server, _file) = from_file(&toml(
        std::slice::from_ref(&url),
        &format!("path = \"{SLOW_HEALTH}\", interval = \"60s\", timeout = \"10s\""),
        "",
    ))
    .await;
    // The first probe is under way and takes 3 s.
    assert_eq!(ready(&server).await, 503);
    assert_eq!(healthy_gauge(&metrics(&server).await, &url), Some(0.0));
    let client = Client::new(server.addrs()[0], None, false);
    let reply = client.get("/ucwa/v1/applications/1/me", HOST).await;
    assert_eq!(
        reply.status,
        200,
        "a member not probed yet takes traffic: {}",
        reply.text()
    );
    assert_eq!(member.received().len(), 1);
    assert_eq!(ready(&server).await, 503);

    support::wait_ready(server.admin_addr(), 200).await;
    assert_eq!(healthy_gauge(&metrics(&server).await, &url), Some(1.0));
    assert_eq!(member.probes(), 1, "one probe made it ready");
}

#[tokio::test]
async fn a_reload_that_builds_a_new_pool_keeps_the_health_of_the_members_it_keeps() {
    let kept = sim::FrontEnd::start("fe1").await.unwrap();
    let added = sim::FrontEnd::start("fe2").await.unwrap();
    // Every probe takes 2 s, so a new pool's first probes have not finished when /ready is asked.
    kept.set_event_wait(Duration::from_secs(2));
    added.set_event_wait(Duration::from_secs(2));
    let health = format!("path = \"{SLOW_HEALTH}\", interval = \"60s\", timeout = \"10s\"");
    let (server, file) = from_file(&toml(&[kept.url()], &health, "")).await;
    support::wait_ready(server.admin_addr(), 200).await;

    file.write(&toml(&[kept.url(), added.url()], &health, ""));
    assert_eq!(support::reload(&server).await, 200);
    assert_eq!(
        ready(&server).await,
        200,
        "the member both pools share stays healthy: readiness does not flap"
    );
    let m = metrics(&server).await;
    assert_eq!(healthy_gauge(&m, &kept.url()), Some(1.0), "{m}");
    assert_eq!(
        healthy_gauge(&m, &added.url()),
        Some(0.0),
        "not probed yet: {m}"
    );
    metrics_until(&server, |m| healthy_gauge(m, &added.url()) == Some(1.0)).await;
}

#[tokio::test]
async fn a_member_whose_certificate_another_ca_signed_fails_its_probes_as_tls() {
    let certs = Certs::generate();
    let other = Certs::generate();
    let member = sim::FrontEnd::start_on(
        "fe1",
        "127.0.0.1:0".parse().unwrap(),
        Some(certs.server_config()),
    )
    .await
    .unwrap();
    let url = member.url();
    let (server, _file) = from_file(&toml(
        std::slice::from_ref(&url),
        "interval = \"100ms\", timeout = \"2s\", unhealthy_after = 1",
        &format!("tls = {{ ca_file = {:?} }}", other.ca_path()),
    ))
    .await;
    let m = metrics_until(&server, |m| {
        sample(
            m,
            "ringfence_upstream_probe_failures_total",
            &[("member", &url), ("kind", "tls")],
        )
        .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    for kind in ["connect", "timeout", "protocol", "status"] {
        assert_eq!(
            sample(
                &m,
                "ringfence_upstream_probe_failures_total",
                &[("member", &url), ("kind", kind)],
            ),
            Some(0.0),
            "{kind}: {m}"
        );
    }
    let m = metrics_until(&server, |m| healthy_gauge(m, &url) == Some(0.0)).await;
    assert_eq!(healthy_gauge(&m, &url), Some(0.0));
    assert_eq!(ready(&server).await, 503);
    assert_eq!(member.probes(), 0, "no probe got through the handshake");
}

#[tokio::test]
async fn a_member_answering_5xx_fails_its_probes_as_status() {
    let member = sim::FrontEnd::start("fe1").await.unwrap();
    let url = member.url();
    // The simulator answers 5xx only to guarded POSTs; a probe is a GET, so a raw member that
    // answers everything 503 stands beside it.
    let five_hundred = FiveHundred::start().await;
    let (server, _file) = from_file(&toml(
        &[five_hundred.url(), url.clone()],
        "interval = \"100ms\", timeout = \"2s\", unhealthy_after = 1",
        "",
    ))
    .await;
    let m = metrics_until(&server, |m| {
        sample(
            m,
            "ringfence_upstream_probe_failures_total",
            &[("member", &five_hundred.url()), ("kind", "status")],
        )
        .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    assert_eq!(healthy_gauge(&m, &five_hundred.url()), Some(0.0), "{m}");
    support::wait_ready(server.admin_addr(), 200).await;
}

/// A member that answers every request 503.
struct FiveHundred {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FiveHundred {
    async fn start() -> FiveHundred {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        FiveHundred { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FiveHundred {
    fn drop(&mut self) {
        self.task.abort();
    }
}
