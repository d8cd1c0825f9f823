//! The test harness: the real server on 127.0.0.1 port 0, optional real TLS with certificates
//! made by rcgen for this run, in front of simulated pool members on real sockets.

#[path = "../common/mod.rs"]
pub mod common;

pub mod certs;
pub mod client;
pub mod haproxy;
pub mod metrics;
pub mod oracle;
pub mod rsyslog;

use std::path::PathBuf;

use ringfence::config::Config;
use ringfence::server::{Server, StartError};
use ringfence::sim;

pub use client::{read_answer, Client, Reply};

pub use common::{dead_address, Outcome, HOST, TIMEOUT};

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
    /// Put a member that takes connections and never answers first in the list, over TLS (it
    /// never answers the handshake).
    pub hung_tls_member_first: bool,
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
            hung_tls_member_first: false,
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
    if options.hung_tls_member_first {
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.insert(0, format!("https://{}", hung.local_addr().unwrap()));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = hung.accept().await {
                held.push(socket);
            }
        });
    }
    let mut server_keys = String::from("max_body_bytes = 4096\n");
    if let (Some(c), true) = (&certs, options.tls) {
        server_keys += &format!(
            "tls = {{ cert = {:?}, key = {:?} }}\n",
            c.server_cert_path(),
            c.server_key_path()
        );
    }
    server_keys += &options.server;
    let mut upstream_keys = String::from("connect_timeout = \"1s\"\nresponse_timeout = \"900s\"\n");
    if let (Some(c), true) = (&certs, options.upstream_tls) {
        upstream_keys += &format!("tls = {{ ca_file = {:?} }}\n", c.ca_path());
    }
    let toml = Toml::new(&urls)
        .server(&server_keys)
        .upstream(&upstream_keys)
        .audit(&options.audit)
        .rest(&format!("{}\n{}", options.policy, options.extra))
        .build();
    let server = serve_toml(&toml).await;
    let client = Client::new(server.addrs()[0], certs.as_ref(), options.tls);
    Harness {
        server,
        members,
        client,
        _certs: certs,
    }
}

/// The one configuration skeleton every test builds on: listeners on port 0, the members, audit
/// off unless set; each table's extra keys and the tables after `[audit]` as given.
#[derive(Default)]
pub struct Toml {
    members: Vec<String>,
    server: String,
    upstream: String,
    audit: Option<String>,
    rest: String,
}

impl Toml {
    /// A configuration in front of members at these URLs.
    pub fn new(members: &[String]) -> Toml {
        Toml {
            members: members.to_vec(),
            ..Toml::default()
        }
    }

    /// A configuration in front of these simulated members.
    pub fn of(members: &[sim::FrontEnd]) -> Toml {
        Toml::new(&members.iter().map(|m| m.url()).collect::<Vec<_>>())
    }

    /// More `[server]` keys, one per line.
    pub fn server(mut self, keys: &str) -> Toml {
        self.server = keys.into();
        self
    }

    /// More `[upstream]` keys, one per line.
    pub fn upstream(mut self, keys: &str) -> Toml {
        self.upstream = keys.into();
        self
    }

    /// The body of the `[audit]` table (`sink = "off"` otherwise).
    pub fn audit(mut self, body: &str) -> Toml {
        self.audit = Some(body.into());
        self
    }

    /// Whatever follows: `[policy]`, `[[organisations]]`, other tables.
    pub fn rest(mut self, tables: &str) -> Toml {
        self.rest = tables.into();
        self
    }

    pub fn build(&self) -> String {
        let members = self
            .members
            .iter()
            .map(|u| format!("{u:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n{}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [upstream]\nmembers = [{members}]\n{}\n\
             [audit]\n{}\n\n{}\n",
            self.server,
            self.upstream,
            self.audit.as_deref().unwrap_or("sink = \"off\""),
            self.rest
        )
    }
}

/// Starts a server; the one place tests call `Server::start`.
pub async fn try_serve(config: Config, file: Option<PathBuf>) -> Result<Server, StartError> {
    tokio::time::timeout(TIMEOUT, Server::start(config, file))
        .await
        .expect("server starts in time")
}

pub async fn serve(config: Config, file: Option<PathBuf>) -> Server {
    try_serve(config, file).await.expect("server starts")
}

/// A server on this configuration text, not reloadable.
pub async fn serve_toml(text: &str) -> Server {
    let config =
        Config::from_toml(text).unwrap_or_else(|e| panic!("test config is valid: {e}\n{text}"));
    serve(config, None).await
}

/// A configuration file in a directory of its own, removed when dropped.
pub struct ConfigFile {
    dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("ringfence.toml");
        let file = ConfigFile { dir, path };
        file.write(text);
        file
    }

    /// The file's directory, for the files it names.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Replaces the file's text (for a reload).
    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).expect("config file written");
    }

    /// A server started from this file, so that it can be reloaded.
    pub async fn serve(&self) -> Server {
        let config = Config::load(&self.path).unwrap_or_else(|e| {
            panic!(
                "test config is valid: {e}\n{}",
                std::fs::read_to_string(&self.path).unwrap_or_default()
            )
        });
        serve(config, Some(self.path.clone())).await
    }
}

/// Runs `check` until it answers `true` or `Some`, for at most [`TIMEOUT`]; panics naming `what`
/// was awaited. Tests wait for what they can observe with this, never for a fixed time.
pub async fn eventually<O: Outcome>(what: &str, mut check: impl AsyncFnMut() -> O) -> O::Value {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await.done() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {TIMEOUT:?} waiting for {what}"
        );
        tokio::time::sleep(common::POLL).await;
    }
}

/// Runs a test on paused time (tokio's clock, advanced whenever the test waits), in a thread of
/// its own, and fails it if it has not ended within [`TIMEOUT`] of real time. A server loop that
/// spins on a zero wait never lets paused time advance, so without this bound that regression
/// would hang the suite instead of failing the test.
pub fn on_paused_time<F>(test: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let (done, ended) = std::sync::mpsc::channel();
    // Left behind if it hangs: the test has failed and the process ends with the suite.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(test())));
        let _ = done.send(outcome);
    });
    match ended.recv_timeout(TIMEOUT) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("not ended within {TIMEOUT:?} of real time: hung"),
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
    eventually(&format!("/ready to answer {status}"), async || {
        client.get("/ready", "admin").await.status == status
    })
    .await;
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
        scrape(&self.server).await
    }

    /// POSTs to the simultaneous-ring resource with `query` (already encoded) and no body.
    pub async fn ring(&self, host: &str, query: &str) -> Reply {
        self.client
            .request("POST", &format!("{SIMRING}?{query}"), host, &[], b"")
            .await
    }
}

/// A client of `server`'s admin listener.
pub fn admin(server: &Server) -> Client {
    Client::new(server.admin_addr(), None, false)
}

/// `server`'s metrics, scraped.
pub async fn scrape(server: &Server) -> String {
    let reply = admin(server).get("/metrics", "admin").await;
    assert_eq!(reply.status, 200);
    reply.text()
}

/// `POST /reload` on `server`'s admin listener; the status.
pub async fn reload(server: &Server) -> u16 {
    admin(server)
        .request("POST", "/reload", "admin", &[], b"")
        .await
        .status
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
