//! The configuration file exactly as written: every field optional, so that validation can
//! report every missing or wrong value at once instead of stopping at the first.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub server: RawServer,
    pub admin: RawAdmin,
    pub upstream: RawUpstream,
    pub policy: RawPolicy,
    pub organisations: Vec<RawOrganisation>,
    pub guard: Vec<RawGuard>,
    pub audit: RawAudit,
    pub access_log: RawAccessLog,
    pub identity: RawIdentity,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawServer {
    pub listen: Option<Vec<String>>,
    pub tls: Option<RawServerTls>,
    pub http2: Option<bool>,
    pub max_connections: Option<u64>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub body_deadline: Option<String>,
    pub send_timeout: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub max_batch_bytes: Option<u64>,
    pub shutdown_grace: Option<String>,
    pub proxy_protocol: Option<RawProxyProtocol>,
    pub trusted_proxies: Option<Vec<String>>,
}

/// `server.proxy_protocol`: `true`/`false` for every listener, or the listen addresses that
/// expect the header. An environment override arrives as text: `"true"`, `"false"`, or
/// comma-separated addresses.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawProxyProtocol {
    All(bool),
    Listeners(Vec<String>),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawServerTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub watch_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAdmin {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawUpstream {
    pub members: Option<Vec<String>>,
    pub balance: Option<String>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub max_idle_per_member: Option<u64>,
    pub idle_timeout: Option<String>,
    pub preserve_host: Option<bool>,
    pub tls: Option<RawUpstreamTls>,
    pub health: Option<RawHealth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawUpstreamTls {
    pub ca_file: Option<String>,
    pub server_name: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawHealth {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub unhealthy_after: Option<u32>,
    pub healthy_after: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawPolicy {
    pub max_target_length: Option<u64>,
    pub default_organisation: Option<String>,
    pub deny_numbers: Vec<String>,
    pub deny_number_patterns: Vec<String>,
    pub deny_sip_domains: Vec<String>,
    pub deny_sip_uris: Vec<String>,
    pub mode: Option<String>,
    pub rate_limit: RawRateLimit,
    // Lists from files (config/lists.rs), added after the inline entries.
    pub deny_numbers_file: Option<String>,
    pub deny_number_patterns_file: Option<String>,
    pub deny_sip_domains_file: Option<String>,
    pub deny_sip_uris_file: Option<String>,
}

/// `[policy.rate_limit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRateLimit {
    pub per_user: Option<String>,
    pub per_organisation: Option<String>,
    pub max_users: Option<u64>,
}

/// `[organisations.rate_limit]`: the rates only; users of every organisation share one map,
/// bounded by `policy.rate_limit.max_users`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawOrganisationRateLimit {
    pub per_user: Option<String>,
    pub per_organisation: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawOrganisation {
    pub name: Option<String>,
    pub mode: Option<String>,
    pub rate_limit: RawOrganisationRateLimit,
    pub hosts: Vec<String>,
    pub allow_numbers: Vec<String>,
    pub allow_number_patterns: Vec<String>,
    pub deny_numbers: Vec<String>,
    pub deny_number_patterns: Vec<String>,
    pub allow_sip_domains: Vec<String>,
    pub deny_sip_domains: Vec<String>,
    pub allow_sip_uris: Vec<String>,
    pub deny_sip_uris: Vec<String>,
    // Lists from files (config/lists.rs), added after the inline entries.
    pub allow_numbers_file: Option<String>,
    pub allow_number_patterns_file: Option<String>,
    pub deny_numbers_file: Option<String>,
    pub deny_number_patterns_file: Option<String>,
    pub allow_sip_domains_file: Option<String>,
    pub deny_sip_domains_file: Option<String>,
    pub allow_sip_uris_file: Option<String>,
    pub deny_sip_uris_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawGuard {
    pub resource: Option<String>,
    pub parameter: Option<String>,
    pub required: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAudit {
    pub sink: Option<String>,
    pub path: Option<String>,
    pub address: Option<String>,
    pub facility: Option<String>,
    pub queue_lines: Option<u64>,
    pub on_full: Option<String>,
    pub write_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAccessLog {
    pub sink: Option<String>,
    pub path: Option<String>,
    pub address: Option<String>,
    pub facility: Option<String>,
    pub queue_lines: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawIdentity {
    pub max_applications: Option<u64>,
    pub idle_expiry: Option<String>,
}
