//! Configuration: the TOML file (plus `RINGFENCE__SECTION__KEY` overrides) read strictly,
//! validated into typed values with every problem reported at once, each with its key path.

mod env;
mod lists;
mod raw;
mod validate;

// Each section a module reads is that module's own; the file composes them.
pub use crate::audit::{AccessLogSettings, AuditSettings, Counts, OnFull, Sink};
pub use crate::identity::Settings as Identity;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::TrustedProxies;
use crate::policy::Policy;
use crate::ratelimit::{Limiter, RateLimitOverrides, RateLimitSettings};
use crate::route::Guards;

/// The embedded demo configuration: used by `ringfence demo` only, never under a real file.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// A validated configuration. Holding one means every value was checked and every rule compiled:
/// outside the crate one comes only from [`Config::load`], [`Config::from_toml`] or
/// [`Config::from_toml_with`], and is read through its accessors.
#[derive(Debug)]
pub struct Config {
    pub(crate) server: ServerSettings,
    pub(crate) admin: Admin,
    pub(crate) upstream: Upstream,
    pub(crate) policy: Policy,
    pub(crate) guards: Guards,
    pub(crate) audit: AuditSettings,
    pub(crate) access_log: AccessLogSettings,
    pub(crate) identity: Identity,
    /// `[policy.rate_limit]`, and each organisation's overrides in `policy.organisations()`
    /// order.
    pub(crate) rate_limit: RateLimitSettings,
    pub(crate) organisation_rate_limits: Vec<RateLimitOverrides>,
    /// Accepted but suspicious settings (e.g. no organisations), for check-config and the log.
    pub(crate) warnings: Vec<Problem>,
    /// What the configuration was built from, hashed: the file's bytes, every `RINGFENCE__`
    /// variable and every list file's bytes (`ringfence_config_info{hash}`, the reload log).
    pub(crate) hash: Box<str>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: Vec<SocketAddr>,
    pub tls: Option<ServerTls>,
    pub http2: bool,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Longest wait for the next bytes of a request body (nginx's `client_body_timeout`).
    pub body_read_timeout: Duration,
    /// Longest a request's body may take in all, from its head to its last byte.
    pub body_deadline: Duration,
    /// Longest an answer may wait for the client to take it (nginx's `send_timeout`).
    pub send_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_batch_bytes: usize,
    pub shutdown_grace: Duration,
    /// The listen addresses whose connections open with a PROXY protocol header (a subset of
    /// `listen`); a connection there without one is closed.
    pub proxy_protocol: Vec<SocketAddr>,
    /// Peers whose `X-Forwarded-For` names the client ([`crate::client`]).
    pub trusted_proxies: TrustedProxies,
}

impl ServerSettings {
    /// Whether connections on the listener configured as `listen` open with a PROXY header.
    pub fn expects_proxy_header(&self, listen: SocketAddr) -> bool {
        self.proxy_protocol.contains(&listen)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How often the two files are checked for a change (cert-manager and ACME clients rotate
    /// them in place); a changed pair is loaded as a reload would.
    pub watch_interval: Duration,
}

impl ServerTls {
    /// `server.tls.watch_interval` when the file does not set it.
    pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(10);

    /// A certificate and key watched at the default interval.
    pub fn new(cert: PathBuf, key: PathBuf) -> ServerTls {
        ServerTls {
            cert,
            key,
            watch_interval: Self::DEFAULT_WATCH_INTERVAL,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub members: Vec<http::Uri>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Idle keep-alive connections kept per member; one more coming back to the pool is closed.
    pub max_idle_per_member: usize,
    /// An idle pooled connection is closed after this long unused.
    pub idle_timeout: Duration,
    pub preserve_host: bool,
    pub tls: Option<UpstreamTls>,
    pub health: Health,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastRequests,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

/// One thing wrong (or suspicious) in a configuration, at a key path such as
/// `organisations[2].allow_numbers[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every error found in a configuration; none of it is used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid configuration ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}\n")).collect()
}

impl ConfigError {
    /// The individual problems, for tests and the reload log.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { path, message } => vec![Problem {
                path: path.clone(),
                message: message.clone(),
            }],
            ConfigError::Invalid(p) => p.clone(),
        }
    }
}

impl Config {
    // Read-only views: a `Config` is never changed once checked.

    pub fn server(&self) -> &ServerSettings {
        &self.server
    }

    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn rate_limit(&self) -> &RateLimitSettings {
        &self.rate_limit
    }

    /// The rate limiter of this configuration; `previous`'s buckets are kept across a reload,
    /// so a reload grants no one a fresh bucket.
    pub fn limiter(&self, previous: Option<&Limiter>) -> Limiter {
        let organisations = self
            .policy
            .organisations()
            .iter()
            .zip(&self.organisation_rate_limits)
            .map(|(o, overrides)| (o.name(), *overrides));
        match previous {
            Some(previous) => previous.reconfigured(&self.rate_limit, organisations),
            None => Limiter::new(&self.rate_limit, organisations),
        }
    }

    pub fn guards(&self) -> &Guards {
        &self.guards
    }

    pub fn audit(&self) -> &AuditSettings {
        &self.audit
    }

    pub fn access_log(&self) -> &AccessLogSettings {
        &self.access_log
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Loads a file and applies `RINGFENCE__SECTION__KEY` environment overrides (see
    /// [`env`](mod@env)): any key, lists comma-separated, array entries by index
    /// (`RINGFENCE__ORGANISATIONS__0__ALLOW_NUMBERS`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut variables: Vec<(String, String)> = std::env::vars()
            .filter(|(name, _)| name.to_ascii_uppercase().starts_with("RINGFENCE__"))
            .collect();
        variables.sort();
        Self::build(
            &text,
            Some(env::Overrides::from_env()),
            path.parent(),
            &variables,
        )
    }

    /// Parses TOML text without environment overrides (the demo and tests).
    /// Relative file paths inside are taken relative to the working directory.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::build(text, None, None, &[])
    }

    /// `text` with settings given as `RINGFENCE__SECTION__KEY` overrides, validated exactly as a
    /// file and its environment are (the demo's members and addresses).
    pub fn from_toml_with(text: &str, overrides: &[(&str, String)]) -> Result<Config, ConfigError> {
        let vars = overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
        let pairs: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        Self::build(text, Some(env::Overrides::from_vars(vars)), None, &pairs)
    }

    /// `variables` are hashed with the text: the overrides as their variables were named.
    fn build(
        text: &str,
        overrides: Option<env::Overrides>,
        base_dir: Option<&Path>,
        variables: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let overrides = overrides.unwrap_or_default();
        let attributed = |mut problems: Vec<Problem>| {
            overrides.attribute(&mut problems);
            problems
        };
        let loaded = ::config::Config::builder()
            .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
            .add_source(overrides.clone())
            .build()
            .map_err(|e| ConfigError::Invalid(attributed(vec![loading_problem(e)])))?;
        let gaps = overrides.gaps(&loaded);
        if !gaps.is_empty() {
            return Err(ConfigError::Invalid(attributed(gaps)));
        }
        let mut unknown = Vec::new();
        let raw: raw::RawConfig = serde_ignored::deserialize(loaded, |path| {
            unknown.push(Problem {
                path: key_path(&path),
                message: "unknown key".into(),
            })
        })
        .map_err(|e| ConfigError::Invalid(attributed(vec![loading_problem(e)])))?;
        let mut files = lists::Files::new(base_dir);
        match validate::validate(raw, unknown, base_dir, &mut files) {
            Ok(mut config) => {
                config.warnings = attributed(config.warnings);
                config.hash = content_hash(text, variables, files.digests());
                Ok(config)
            }
            Err(ConfigError::Invalid(problems)) => Err(ConfigError::Invalid(attributed(problems))),
            Err(e) => Err(e),
        }
    }

    /// The keys whose change `next` makes that a reload cannot apply: sockets, connection
    /// limits and timers fixed when the listeners started, and the audit sink. A reload logs
    /// each one; it takes effect at the next start.
    pub fn needs_restart(&self, next: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.server, &next.server);
        let keys: [(&'static str, bool); 14] = [
            ("server.listen", a.listen != b.listen),
            (
                "server.proxy_protocol",
                a.proxy_protocol != b.proxy_protocol,
            ),
            ("server.tls", a.tls.is_some() != b.tls.is_some()),
            ("server.http2", a.http2 != b.http2),
            (
                "server.max_connections",
                a.max_connections != b.max_connections,
            ),
            (
                "server.header_read_timeout",
                a.header_read_timeout != b.header_read_timeout,
            ),
            ("server.idle_timeout", a.idle_timeout != b.idle_timeout),
            (
                "server.body_read_timeout",
                a.body_read_timeout != b.body_read_timeout,
            ),
            ("server.body_deadline", a.body_deadline != b.body_deadline),
            ("server.send_timeout", a.send_timeout != b.send_timeout),
            (
                "server.shutdown_grace",
                a.shutdown_grace != b.shutdown_grace,
            ),
            ("admin.listen", self.admin.listen != next.admin.listen),
            ("audit", self.audit != next.audit),
            ("access_log", self.access_log != next.access_log),
        ];
        keys.iter()
            .filter(|(_, changed)| *changed)
            .map(|(key, _)| *key)
            .collect()
    }

    /// What the configuration holds, in numbers: the `config` audit line's before and after.
    pub fn counts(&self) -> Counts {
        let (organisations, allow_entries, deny_entries) = self.policy.sizes();
        Counts {
            organisations,
            allow_entries,
            deny_entries,
            members: self.upstream.members.len(),
            guards: self.guards.len(),
        }
    }

    /// A one-screen summary for `check-config`.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self
            .server
            .listen
            .iter()
            .map(|&a| match self.server.expects_proxy_header(a) {
                true => format!("{a} with PROXY protocol"),
                false => a.to_string(),
            })
            .collect();
        let members: Vec<String> = self
            .upstream
            .members
            .iter()
            .map(|m| m.to_string())
            .collect();
        let mut s = format!(
            "listeners: {} ({})\nadmin: {}\nmembers: {} ({})\nguarded resources: {}\n",
            listen.join(", "),
            if self.server.tls.is_some() {
                "tls"
            } else {
                "plain http"
            },
            self.admin.listen,
            members.join(", "),
            match self.upstream.balance {
                Balance::RoundRobin => "round_robin",
                Balance::LeastRequests => "least_requests",
            },
            self.guards.len(),
        );
        s.push_str(&self.policy.summary());
        s
    }
}

/// A value of the wrong type, at its key where the `config` crate names it.
/// The first 12 hex digits of the SHA-256 of `text`, the overrides and the list files (by the
/// digest of each, after its key): enough to tell configurations apart, short enough for a label.
fn content_hash<'a>(
    text: &str,
    variables: &[(String, String)],
    list_files: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Box<str> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(text.as_bytes());
    for (name, value) in variables {
        digest.update(format!("\n{name}={value}").as_bytes());
    }
    for (key, file) in list_files {
        digest.update(format!("\n{key} sha256:").as_bytes());
        digest.update(file);
    }
    digest
        .finish()
        .as_ref()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into()
}

/// The config crate writes `guard[0]required` for `guard[0].required`.
fn dotted(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    let mut after_index = false;
    for c in key.chars() {
        if after_index && c != '.' && c != '[' {
            out.push('.');
        }
        after_index = c == ']';
        out.push(c);
    }
    out
}

fn loading_problem(e: ::config::ConfigError) -> Problem {
    use ::config::ConfigError as E;
    match e {
        E::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => Problem {
            path: dotted(&key),
            message: format!("invalid type: {unexpected}, expected {expected}"),
        },
        E::At {
            error,
            key: Some(key),
            ..
        } => Problem {
            path: dotted(&key),
            message: error.to_string(),
        },
        other => Problem {
            path: ".".into(),
            message: other.to_string(),
        },
    }
}

/// `organisations[2].allow_numbers` rather than serde_ignored's `organisations.2.allow_numbers`.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => {
            let parent = key_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

#[cfg(test)]
mod tests;
