//! The test harness: the real server on 127.0.0.1 port 0, optional real TLS with certificates
//! made by rcgen for this run, in front of simulated pool members on real sockets.

pub mod certs;
pub mod client;
pub mod haproxy;
pub mod metrics;
pub mod oracle;
pub mod rsyslog;

use std::time::Duration;

use ringfence::config::Config;
use ringfence::server::Server;
use ringfence::sim;

pub use client::{Client, Reply};

/// Every await in a test is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The resource every guarded test posts to.
pub const SIMRING: &str =
    "/ucwa/oauth/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact";

/// The policy most tests run with (SPEC §2 example, trimmed).
pub const POLICY: &str = r#"
[policy]
default_organisation = "contoso"
deny_numbers = ["+1900", "+44870"]
deny_number_patterns = ['^\+88[0-9]']

[[organisations]]
name = "contoso"
hosts = ["lyncweb.contoso.com", "*.contoso.com"]
allow_numbers = ["+1425555", "+14255550100"]
allow_number_patterns = ['^\+1206[0-9]{7}$']
deny_numbers = ["+14255559"]
allow_sip_domains = ["contoso.com", "*.contoso.com"]
allow_sip_uris = ["sip:helpdesk@fabrikam.com"]
deny_sip_uris = ["sip:ceo@contoso.com"]

[[organisations]]
name = "fabrikam"
hosts = ["lync.fabrikam.com", "127.0.0.1"]
allow_numbers = ["+44207"]
allow_sip_domains = ["fabrikam.com"]
"#;

pub struct Options {
    pub policy: String,
    pub members: usize,
    /// Put a member that refuses connections first in the list.
    pub dead_member_first: bool,
    pub tls: bool,
    pub upstream_tls: bool,
    /// The body of the `[audit]` table.
    pub audit: String,
    /// More `[server]` keys, one per line.
    pub server: String,
    pub extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: POLICY.into(),
            members: 2,
            dead_member_first: false,
            tls: false,
            upstream_tls: false,
            audit: "sink = \"off\"".into(),
            server: String::new(),
            extra: String::new(),
        }
    }
}

pub struct Harness {
    pub server: Server,
    pub members: Vec<sim::FrontEnd>,
    pub client: Client,
    /// Held so the certificate files live as long as the server.
    _certs: Option<certs::Certs>,
}

pub async fn start() -> Harness {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> Harness {
    let certs = (options.tls || options.upstream_tls).then(certs::Certs::generate);
    let mut members = Vec::new();
    for i in 0..options.members {
        let tls = if options.upstream_tls {
            Some(certs.as_ref().expect("certs").server_config())
        } else {
            None
        };
        let member =
            sim::FrontEnd::start_on(&format!("fe{}", i + 1), "127.0.0.1:0".parse().unwrap(), tls)
                .await
                .expect("sim member starts");
        members.push(member);
    }
    let mut urls: Vec<String> = members.iter().map(|m| m.url()).collect();
    if options.dead_member_first {
        urls.insert(0, format!("http://{}", dead_address()));
    }
    let member_list = urls
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let server_tls = match (&certs, options.tls) {
        (Some(c), true) => format!(
            "tls = {{ cert = {:?}, key = {:?} }}\n",
            c.server_cert_path(),
            c.server_key_path()
        ),
        _ => String::new(),
    };
    let upstream_tls = match (&certs, options.upstream_tls) {
        (Some(c), true) => format!("tls = {{ ca_file = {:?} }}\n", c.ca_path()),
        _ => String::new(),
    };
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n{server_tls}max_body_bytes = 4096\n{}\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [upstream]\nmembers = [{member_list}]\nconnect_timeout = \"1s\"\nresponse_timeout = \"900s\"\n{upstream_tls}\n\
         [audit]\n{}\n\n{}\n{}",
        options.server, options.audit, options.policy, options.extra
    );
    let config =
        Config::from_toml(&toml).unwrap_or_else(|e| panic!("test config is valid: {e}\n{toml}"));
    let server = tokio::time::timeout(TIMEOUT, Server::start(config, None))
        .await
        .expect("server starts in time")
        .expect("server starts");
    let client = Client::new(server.addrs()[0], certs.as_ref(), options.tls);
    Harness {
        server,
        members,
        client,
        _certs: certs,
    }
}

impl Harness {
    /// The differential check (SPEC §3-§5 against the pool model): every request any member
    /// received must be readable by the simulator's model of the pool, and every target the
    /// model says the pool acted on must be one the policy allows.
    pub fn assert_pool_acted_only_on_allowed(&self) {
        let snapshot = self.server.shared().snapshot();
        let problems: Vec<String> = self
            .received()
            .iter()
            .filter_map(|r| oracle::check(&snapshot.config, r).err())
            .collect();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// The certificates of a TLS harness.
    pub fn certs(&self) -> Option<&certs::Certs> {
        self._certs.as_ref()
    }
}

/// Waits until the admin listener at `admin` answers `/ready` with `status` (200 once a probe
/// found a member healthy; 503 before that, while draining or with every member down).
pub async fn wait_ready(admin: std::net::SocketAddr, status: u16) {
    let client = Client::new(admin, None, false);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let now = client.get("/ready", "admin").await.status;
        if now == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready stayed {now}, never {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An address on which nothing listens: connections to it are refused.
/// An address that refuses connections for as long as the test process runs: a socket bound to
/// it and never listening, kept open, so no other test can be given the port meanwhile (a port
/// released after `bind` could be).
pub fn dead_address() -> std::net::SocketAddr {
    use socket2::{Domain, Socket, Type};
    static HELD: std::sync::Mutex<Vec<Socket>> = std::sync::Mutex::new(Vec::new());
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    HELD.lock().unwrap().push(socket);
    addr
}

impl Harness {
    /// Every request any member received.
    pub fn received(&self) -> Vec<ringfence::sim::Received> {
        self.members.iter().flat_map(|m| m.received()).collect()
    }

    /// How many requests each member has received so far; see [`Harness::received_since`].
    pub fn received_counts(&self) -> Vec<usize> {
        self.members.iter().map(|m| m.received().len()).collect()
    }

    /// Requests members received after `counts` was taken by [`Harness::received_counts`].
    pub fn received_since(&self, counts: &[usize]) -> Vec<ringfence::sim::Received> {
        self.members
            .iter()
            .zip(counts)
            .flat_map(|(m, &n)| m.received().into_iter().skip(n))
            .collect()
    }

    /// Requests any member received for a guarded resource.
    pub fn received_guarded(&self) -> Vec<ringfence::sim::Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path_and_query.to_ascii_lowercase().contains("tocontact"))
            .collect()
    }

    pub async fn metrics(&self) -> String {
        let admin = Client::new(self.server.admin_addr(), None, false);
        let reply = admin.get("/metrics", "admin").await;
        assert_eq!(reply.status, 200);
        String::from_utf8(reply.body.to_vec()).unwrap()
    }

    /// POSTs to the simultaneous-ring resource with `query` (already encoded) and no body.
    pub async fn ring(&self, host: &str, query: &str) -> Reply {
        self.client
            .request("POST", &format!("{SIMRING}?{query}"), host, &[], b"")
            .await
    }
}

/// Asserts a UCWA error body from ringfence with this status and reason.
pub fn assert_refused(reply: &Reply, status: u16, reason: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.text());
    let v: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|_| panic!("UCWA JSON error body, got {}", reply.text()));
    assert_eq!(v["debugInfo"]["reason"], reason, "body: {}", reply.text());
    let id = reply
        .header("x-request-id")
        .expect("x-request-id on refusals");
    assert_eq!(v["debugInfo"]["requestId"], id);
}
