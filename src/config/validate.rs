//! Turns a [`RawConfig`] into a [`Config`], collecting every problem with its key path: one pass
//! over every section, each key checked where it is read, with the defaults and messages
//! docs/reference.md quotes. The policy's sections (lists, list files, modes, rate limits) are
//! in [`policy`](mod@policy).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lists::Files;
use super::raw::RawRateLimit;
use super::raw::{RawConfig, RawHealth, RawProxyProtocol, RawUpstreamTls};
use super::{
    AccessLogSettings, Admin, AuditSettings, Balance, Config, ConfigError, Health, Identity,
    OnFull, Problem, ServerSettings, ServerTls, Sink,
};
use super::{Upstream, UpstreamTls};
use crate::client::{Cidr, TrustedProxies};
use crate::policy::{Kind, Mode, Organisation, Policy, Report, RuleSet};
use crate::ratelimit::{Rate, RateLimitOverrides, RateLimitSettings, DEFAULT_MAX_USERS};
use crate::route::{Guard, Guards};

mod policy;
use policy::{policy, rate_limits};

/// Collects problems; a configuration with any error is refused whole.
pub(crate) struct Problems {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Report for Problems {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

pub(super) fn validate(
    raw: RawConfig,
    unknown: Vec<Problem>,
    base_dir: Option<&Path>,
    files: &mut Files<'_>,
) -> Result<Config, ConfigError> {
    let mut p = Problems {
        errors: unknown,
        warnings: Vec::new(),
    };
    let file = |s: &str| resolve(base_dir, s);

    let s = &raw.server;
    let listen = match &s.listen {
        None => {
            p.error("server.listen", "required");
            Vec::new()
        }
        Some(l) if l.is_empty() => {
            p.error("server.listen", "at least one address is required");
            Vec::new()
        }
        Some(l) => {
            let mut listen: Vec<SocketAddr> = Vec::with_capacity(l.len());
            for (i, a) in l.iter().enumerate() {
                let key = format!("server.listen[{i}]");
                let Some(addr) = socket(&mut p, &key, a) else {
                    continue;
                };
                match listen.iter().find(|&&other| clash(addr, other)) {
                    // Bound once: a second socket on the same address could not be.
                    Some(&other) if other == addr => {
                        p.warn(key, format!("`{addr}` is listed twice; it is bound once"))
                    }
                    Some(&other) => p.error(
                        key,
                        format!("`{addr}` overlaps `{other}`: both cannot be bound"),
                    ),
                    None => listen.push(addr),
                }
            }
            listen
        }
    };
    let tls = s.tls.as_ref().and_then(|t| {
        let cert = required_file(&mut p, "server.tls.cert", t.cert.as_deref(), &file);
        let key = required_file(&mut p, "server.tls.key", t.key.as_deref(), &file);
        let watch_interval = match &t.watch_interval {
            None => ServerTls::DEFAULT_WATCH_INTERVAL,
            set => duration(&mut p, "server.tls.watch_interval", set, ""),
        };
        Some(ServerTls {
            cert: cert?,
            key: key?,
            watch_interval,
        })
    });
    let proxy_protocol = proxy_protocol(&mut p, s.proxy_protocol.as_ref(), &listen);
    let server = ServerSettings {
        listen,
        tls,
        http2: s.http2.unwrap_or(true),
        max_connections: positive(&mut p, "server.max_connections", s.max_connections, 10_000),
        header_read_timeout: duration(
            &mut p,
            "server.header_read_timeout",
            &s.header_read_timeout,
            "10s",
        ),
        idle_timeout: duration(&mut p, "server.idle_timeout", &s.idle_timeout, "120s"),
        body_read_timeout: duration(
            &mut p,
            "server.body_read_timeout",
            &s.body_read_timeout,
            "10s",
        ),
        body_deadline: duration(&mut p, "server.body_deadline", &s.body_deadline, "30s"),
        send_timeout: duration(&mut p, "server.send_timeout", &s.send_timeout, "60s"),
        max_body_bytes: positive(&mut p, "server.max_body_bytes", s.max_body_bytes, 65_536),
        max_batch_bytes: positive(
            &mut p,
            "server.max_batch_bytes",
            s.max_batch_bytes,
            1_048_576,
        ),
        shutdown_grace: duration(&mut p, "server.shutdown_grace", &s.shutdown_grace, "30s"),
        proxy_protocol,
        trusted_proxies: trusted_proxies(&mut p, s.trusted_proxies.as_deref().unwrap_or(&[])),
    };

    let admin = Admin {
        listen: socket(
            &mut p,
            "admin.listen",
            raw.admin.listen.as_deref().unwrap_or("127.0.0.1:9090"),
        )
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9090))),
    };
    if let Some(other) = server.listen.iter().find(|&&l| clash(admin.listen, l)) {
        p.error(
            "admin.listen",
            format!("must not share an address with server.listen (`{other}`)"),
        );
    }

    let upstream = upstream(&mut p, &raw, &file);
    let policy = policy(&mut p, &raw, files);
    let (rate_limit, organisation_rate_limits) = rate_limits(&mut p, &raw);
    let guards = guards(&mut p, &raw);
    let audit = AuditSettings {
        sink: sink(
            &mut p,
            "audit",
            &raw.audit.sink,
            &raw.audit.path,
            &raw.audit.address,
            &raw.audit.facility,
            "stderr",
            &file,
        ),
        queue_lines: positive(&mut p, "audit.queue_lines", raw.audit.queue_lines, 65_536),
        on_full: match raw.audit.on_full.as_deref() {
            None | Some("refuse") => OnFull::Refuse,
            Some("drop") => OnFull::Drop,
            Some(other) => {
                p.error(
                    "audit.on_full",
                    format!("`{other}` is not one of refuse, drop"),
                );
                OnFull::Refuse
            }
        },
        write_timeout: duration(
            &mut p,
            "audit.write_timeout",
            &raw.audit.write_timeout,
            "2s",
        ),
    };
    let a = &raw.access_log;
    let access_log = AccessLogSettings {
        sink: sink(
            &mut p,
            "access_log",
            &a.sink,
            &a.path,
            &a.address,
            &a.facility,
            "off",
            &file,
        ),
        queue_lines: positive(&mut p, "access_log.queue_lines", a.queue_lines, 65_536),
    };

    let identity = identity(&mut p, &raw);

    if !p.errors.is_empty() {
        return Err(ConfigError::Invalid(p.errors));
    }
    Ok(Config {
        server,
        admin,
        upstream,
        policy,
        rate_limit,
        organisation_rate_limits,
        guards,
        audit,
        access_log,
        identity,
        warnings: p.warnings,
        hash: Box::from(""),
    })
}

/// A trail's `sink` and the keys that go with it (`path` for a file; `address`, `facility` for
/// syslog), each allowed only with its sink.
#[allow(clippy::too_many_arguments)]
fn sink(
    p: &mut Problems,
    section: &str,
    sink: &Option<String>,
    path: &Option<String>,
    address: &Option<String>,
    facility: &Option<String>,
    default: &str,
    file: &dyn Fn(&str) -> PathBuf,
) -> Sink {
    let kind = sink.as_deref().unwrap_or(default);
    let only = |p: &mut Problems, key: &str, set: bool, with: &str| {
        if set && kind != with {
            p.error(
                format!("{section}.{key}"),
                format!("only allowed with {section}.sink = \"{with}\""),
            );
        }
    };
    only(p, "path", path.is_some(), "file");
    only(p, "address", address.is_some(), "syslog");
    only(p, "facility", facility.is_some(), "syslog");
    match kind {
        "off" => Sink::Off,
        "stdout" => Sink::Stdout,
        "stderr" => Sink::Stderr,
        "file" => match path {
            Some(path) => Sink::File(file(path)),
            None => {
                p.error(
                    format!("{section}.path"),
                    format!("required when {section}.sink = \"file\""),
                );
                Sink::Off
            }
        },
        "syslog" => {
            use crate::audit::syslog::{Address, Facility};
            let address = address
                .as_deref()
                .unwrap_or("unix:///dev/log")
                .parse::<Address>()
                .map_err(|e| p.error(format!("{section}.address"), e));
            let facility = facility
                .as_deref()
                .unwrap_or("local0")
                .parse::<Facility>()
                .map_err(|e| p.error(format!("{section}.facility"), e));
            match (address, facility) {
                (Ok(address), Ok(facility)) => Sink::Syslog { address, facility },
                _ => Sink::Off,
            }
        }
        other => {
            p.error(
                format!("{section}.sink"),
                format!("`{other}` is not one of stderr, stdout, file, syslog, off"),
            );
            Sink::Off
        }
    }
}

fn identity(p: &mut Problems, raw: &RawConfig) -> Identity {
    let i = &raw.identity;
    let default = Identity::default();
    let max_applications = match i.max_applications {
        Some(0) => {
            p.error("identity.max_applications", "must be greater than zero");
            default.max_applications
        }
        Some(n) => n,
        None => default.max_applications,
    };
    let idle_expiry = match &i.idle_expiry {
        None => default.idle_expiry,
        set => duration(p, "identity.idle_expiry", set, ""),
    };
    Identity {
        max_applications,
        idle_expiry,
    }
}

/// Members one pool may have: a request's tried set is a 128-bit mask (`upstream::balance`).
pub const MAX_MEMBERS: usize = 128;

/// Idle keep-alive connections kept per member by default (nginx's `keepalive 256`).
pub const DEFAULT_MAX_IDLE_PER_MEMBER: usize = 256;

fn upstream(p: &mut Problems, raw: &RawConfig, file: &dyn Fn(&str) -> PathBuf) -> Upstream {
    let u = &raw.upstream;
    let members = match &u.members {
        None => {
            p.error("upstream.members", "required");
            Vec::new()
        }
        Some(m) if m.is_empty() => {
            p.error("upstream.members", "at least one member is required");
            Vec::new()
        }
        Some(m) if m.len() > MAX_MEMBERS => {
            p.error(
                "upstream.members",
                format!("at most {MAX_MEMBERS} members (found {})", m.len()),
            );
            Vec::new()
        }
        Some(m) => m
            .iter()
            .enumerate()
            .filter_map(|(i, url)| member(p, &format!("upstream.members[{i}]"), url))
            .collect(),
    };
    let mut seen = std::collections::HashSet::new();
    for (i, m) in members.iter().enumerate() {
        if !seen.insert(m.authority().map(|a| a.as_str().to_ascii_lowercase())) {
            p.error(format!("upstream.members[{i}]"), "duplicate member");
        }
    }
    let balance = match u.balance.as_deref() {
        None | Some("round_robin") => Balance::RoundRobin,
        Some("least_requests") => Balance::LeastRequests,
        Some(other) => {
            p.error(
                "upstream.balance",
                format!("`{other}` is not one of round_robin, least_requests"),
            );
            Balance::RoundRobin
        }
    };
    let response_timeout = duration(p, "upstream.response_timeout", &u.response_timeout, "960s");
    if response_timeout < Duration::from_secs(900) {
        p.warn(
            "upstream.response_timeout",
            "under 900s: UCWA event-channel long polls may be cut off",
        );
    }
    let tls = u.tls.as_ref().map(|t| upstream_tls(p, t, file));
    let https = members.iter().any(|m| m.scheme_str() == Some("https"));
    if https && u.tls.as_ref().and_then(|t| t.ca_file.as_ref()).is_none() {
        p.error(
            "upstream.tls.ca_file",
            "required when a member uses https (the pool's CA; public roots are not trusted)",
        );
    }
    if tls.is_some() && !https {
        p.warn("upstream.tls", "set, but no member uses https");
    }
    Upstream {
        members,
        balance,
        connect_timeout: duration(p, "upstream.connect_timeout", &u.connect_timeout, "3s"),
        response_timeout,
        max_idle_per_member: u
            .max_idle_per_member
            .map_or(DEFAULT_MAX_IDLE_PER_MEMBER, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
        idle_timeout: duration(p, "upstream.idle_timeout", &u.idle_timeout, "60s"),
        preserve_host: u.preserve_host.unwrap_or(true),
        tls,
        health: health(p, u.health.as_ref()),
    }
}

fn upstream_tls(
    p: &mut Problems,
    t: &RawUpstreamTls,
    file: &dyn Fn(&str) -> PathBuf,
) -> UpstreamTls {
    let check = |p: &mut Problems, key: &str, v: &Option<String>| {
        v.as_deref().and_then(|v| readable(p, key, file(v)))
    };
    let tls = UpstreamTls {
        ca_file: check(p, "upstream.tls.ca_file", &t.ca_file),
        server_name: t.server_name.clone(),
        cert: check(p, "upstream.tls.cert", &t.cert),
        key: check(p, "upstream.tls.key", &t.key),
    };
    if t.cert.is_some() != t.key.is_some() {
        p.error("upstream.tls", "cert and key must be given together");
    }
    if let Some(name) = &t.server_name {
        if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
            p.error(
                "upstream.tls.server_name",
                format!("`{name}` is not a DNS name or IP address"),
            );
        }
    }
    tls
}

fn health(p: &mut Problems, h: Option<&RawHealth>) -> Health {
    let none = RawHealth::default();
    let h = h.unwrap_or(&none);
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        p.error("upstream.health.path", "must start with /");
    }
    let count = |p: &mut Problems, key: &str, v: Option<u32>, default: u32| match v {
        Some(0) => {
            p.error(key, "must be at least 1");
            default
        }
        v => v.unwrap_or(default),
    };
    Health {
        path,
        interval: duration(p, "upstream.health.interval", &h.interval, "5s"),
        timeout: duration(p, "upstream.health.timeout", &h.timeout, "2s"),
        unhealthy_after: count(p, "upstream.health.unhealthy_after", h.unhealthy_after, 3),
        healthy_after: count(p, "upstream.health.healthy_after", h.healthy_after, 2),
    }
}

fn guards(p: &mut Problems, raw: &RawConfig) -> Guards {
    let mut list = Guards::defaults();
    for (i, g) in raw.guard.iter().enumerate() {
        let at = format!("guard[{i}]");
        let resource = g.resource.as_deref().unwrap_or_default();
        let parameter = g.parameter.as_deref().unwrap_or("target");
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token(resource) {
            p.error(
                format!("{at}.resource"),
                "required: a path segment name such as changeNumber",
            );
            continue;
        }
        if !token(parameter) {
            p.error(
                format!("{at}.parameter"),
                "must be a parameter name such as number",
            );
            continue;
        }
        if list
            .iter()
            .any(|x| x.resource.eq_ignore_ascii_case(resource))
        {
            p.error(
                format!("{at}.resource"),
                format!("`{resource}` is already guarded"),
            );
            continue;
        }
        list.push(Guard {
            resource: resource.into(),
            parameter: parameter.into(),
            required: g.required.unwrap_or(true),
        });
    }
    Guards::new(list)
}

/// Two addresses that cannot both be bound: the same port (not 0, which picks a free one) on
/// the same address, or on one address and its family's wildcard. An IPv6 wildcard does not
/// clash with IPv4 addresses: it is bound IPv6-only.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The listeners that expect a PROXY protocol header: all, none, or those named, each of which
/// must be one of `server.listen`.
fn proxy_protocol(
    p: &mut Problems,
    raw: Option<&RawProxyProtocol>,
    listen: &[SocketAddr],
) -> Vec<SocketAddr> {
    const KEY: &str = "server.proxy_protocol";
    let named: Vec<&str> = match raw {
        None | Some(RawProxyProtocol::All(false)) => return Vec::new(),
        Some(RawProxyProtocol::All(true)) => return listen.to_vec(),
        Some(RawProxyProtocol::Text(t)) => match t.trim() {
            "false" => return Vec::new(),
            "true" => return listen.to_vec(),
            t => t.split(',').map(str::trim).collect(),
        },
        Some(RawProxyProtocol::Listeners(l)) => l.iter().map(String::as_str).collect(),
    };
    let mut expecting = Vec::with_capacity(named.len());
    for (i, a) in named.into_iter().enumerate() {
        let key = format!("{KEY}[{i}]");
        let Some(addr) = socket(p, &key, a) else {
            continue;
        };
        if !listen.contains(&addr) {
            p.error(key, format!("`{addr}` is not one of server.listen"));
        } else if !expecting.contains(&addr) {
            expecting.push(addr);
        }
    }
    expecting
}

fn trusted_proxies(p: &mut Problems, blocks: &[String]) -> TrustedProxies {
    let mut parsed = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        match b.trim().parse::<Cidr>() {
            Ok(cidr) => parsed.push(cidr),
            Err(e) => p.error(
                format!("server.trusted_proxies[{i}]"),
                format!("`{b}`: {e}"),
            ),
        }
    }
    TrustedProxies::new(parsed)
}

fn socket(p: &mut Problems, key: &str, s: &str) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            p.error(
                key,
                format!("`{s}` is not an address:port such as 0.0.0.0:443 or [::]:443"),
            );
            None
        }
    }
}

fn member(p: &mut Problems, key: &str, url: &str) -> Option<http::Uri> {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            p.error(key, format!("`{url}` is not a URL: {e}"));
            return None;
        }
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        p.error(key, format!("`{url}` must be an http:// or https:// URL"));
        return None;
    }
    if uri.host().is_none_or(str::is_empty) {
        p.error(key, format!("`{url}` has no host"));
        return None;
    }
    if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        p.error(
            key,
            format!("`{url}` must not have a path or query: requests keep their own"),
        );
        return None;
    }
    Some(uri)
}

fn duration(p: &mut Problems, key: &str, v: &Option<String>, default: &str) -> Duration {
    let text = v.as_deref().unwrap_or(default);
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            p.error(key, "must be greater than zero");
            Duration::from_secs(1)
        }
        Err(e) => {
            p.error(
                key,
                format!("`{text}` is not a duration such as \"30s\" ({e})"),
            );
            Duration::from_secs(1)
        }
    }
}

fn positive(p: &mut Problems, key: &str, v: Option<u64>, default: usize) -> usize {
    match v {
        Some(0) => {
            p.error(key, "must be greater than zero");
            default
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => default,
    }
}

fn required_file(
    p: &mut Problems,
    key: &str,
    v: Option<&str>,
    file: &dyn Fn(&str) -> PathBuf,
) -> Option<PathBuf> {
    match v {
        None => {
            p.error(key, "required");
            None
        }
        Some(v) => readable(p, key, file(v)),
    }
}

fn readable(p: &mut Problems, key: &str, path: PathBuf) -> Option<PathBuf> {
    match std::fs::File::open(&path) {
        Ok(_) => Some(path),
        Err(e) => {
            p.error(key, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

fn resolve(base: Option<&Path>, s: &str) -> PathBuf {
    match base {
        Some(b) if Path::new(s).is_relative() => b.join(s),
        _ => PathBuf::from(s),
    }
}
