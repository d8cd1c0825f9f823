//! One integration binary: the real server on loopback sockets in front of simulated pool
//! members, driven by a real HTTP client.

mod support;

mod audit;
mod certificates;
mod client_address;
mod clients;
mod differential;
mod extra_guards;
mod guard_body;
mod guard_query;
mod hostile;
mod identity;
mod limits;
mod list_files;
mod local_resources;
mod metrics;
mod operations;
mod organisations;
mod parking;
mod passthrough;
mod pool_reading;
mod probes;
mod response_framing;
mod rollout;
mod slow_bodies;
mod smuggling;
mod syslog;
mod tls;
mod upstream_pool;
