//! Configuration: the TOML file (plus `RINGFENCE__SECTION__KEY` overrides) read strictly,
//! validated into typed values with every problem reported at once, each with its key path.

mod raw;
mod validate;

pub(crate) use validate::Problems;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::policy::Policy;
use crate::route::Guards;

/// The embedded demo configuration: used by `ringfence demo` only, never under a real file.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// A validated configuration. Holding one means every value was checked and every rule compiled.
#[derive(Debug)]
pub struct Config {
    pub server: Server,
    pub admin: Admin,
    pub upstream: Upstream,
    pub policy: Policy,
    pub guards: Guards,
    pub audit: Audit,
    /// Accepted but suspicious settings (e.g. no organisations), for check-config and the log.
    pub warnings: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub tls: Option<ServerTls>,
    pub http2: bool,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Longest wait for the next bytes of a request body (nginx's `client_body_timeout`).
    pub body_read_timeout: Duration,
    /// Longest a guarded request's body may take in all, from its head to its last byte.
    pub body_deadline: Duration,
    pub max_body_bytes: usize,
    pub max_batch_bytes: usize,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audit {
    Off,
    Stderr,
    File(PathBuf),
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
    /// Loads a file and applies `RINGFENCE__SECTION__KEY` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let env = ::config::Environment::with_prefix("RINGFENCE")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("server.listen")
            .with_list_parse_key("upstream.members")
            .try_parsing(true);
        Self::build(&text, Some(env), path.parent())
    }

    /// Parses TOML text without environment overrides (the demo and tests).
    /// Relative file paths inside are taken relative to the working directory.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::build(text, None, None)
    }

    fn build(
        text: &str,
        env: Option<::config::Environment>,
        base_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let mut builder = ::config::Config::builder()
            .add_source(::config::File::from_str(text, ::config::FileFormat::Toml));
        if let Some(env) = env {
            builder = builder.add_source(env);
        }
        let loaded = builder.build().map_err(|e| invalid(".", e))?;
        let mut unknown = Vec::new();
        let raw: raw::RawConfig = serde_ignored::deserialize(loaded, |path| {
            unknown.push(Problem {
                path: key_path(&path),
                message: "unknown key".into(),
            })
        })
        .map_err(|e| invalid(".", e))?;
        validate::validate(raw, unknown, base_dir)
    }

    /// The keys whose change `next` makes that a reload cannot apply: sockets, connection
    /// limits and timers fixed when the listeners started, and the audit sink. A reload logs
    /// each one; it takes effect at the next start.
    pub fn needs_restart(&self, next: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.server, &next.server);
        let keys: [(&'static str, bool); 10] = [
            ("server.listen", a.listen != b.listen),
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
            (
                "server.shutdown_grace",
                a.shutdown_grace != b.shutdown_grace,
            ),
            ("admin.listen", self.admin.listen != next.admin.listen),
            ("audit", self.audit != next.audit),
        ];
        keys.iter()
            .filter(|(_, changed)| *changed)
            .map(|(key, _)| *key)
            .collect()
    }

    /// A one-screen summary for `check-config`.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self.server.listen.iter().map(|a| a.to_string()).collect();
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

fn invalid(path: &str, e: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid(vec![Problem {
        path: path.into(),
        message: e.to_string(),
    }])
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
