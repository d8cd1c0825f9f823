//! ringfence: a policy-enforcing reverse proxy for the Skype for Business Server 2015 UCWA
//! call-forwarding resources.
//!
//! A request's journey, one module per stage:
//!
//! ```text
//! accept → TLS → hyper conn → gateway: snapshot → judge: host, route → (guarded?) body ≤ cap
//! → extract → parse → decide (shadow?) → rate limit → audit+metrics → refuse here | forward
//! → upstream pick
//! → response streamed back
//! ```
//!
//! - [`server`] starts a running ringfence, binding the listeners and the [`admin`] endpoint,
//!   and drains it; [`preflight`] first makes what it needs from the configured files, as
//!   `check-config` does.
//! - [`listener`] accepts (bounded), terminates TLS ([`tls`]) and serves HTTP/1.1 and HTTP/2;
//!   a listener named in `server.proxy_protocol` first reads the load balancer's PROXY header.
//! - [`gateway`] carries each request through the journey, reading one [`state`] snapshot;
//!   [`client`] tells who the client is behind trusted proxies.
//! - [`judge`] decides every request, and alone makes the [`judge::Clearance`] that
//!   [`upstream`] forwards; it composes:
//!   - [`request`]: the Host and the headers that change how the pool reads a request;
//!   - [`route`]: whether the path, under every reading the pool could make, is guarded;
//!   - [`extract`]: every `target` the back end could act on (query, JSON, XML, form, batches);
//!   - [`target`]: each parsed once into a [`target::Target`] (tel: per RFC 3966, sip: per
//!     RFC 3261);
//!   - [`policy`]: the organisation, and the decision.
//! - [`clock`] is the coarse clock the pool's idle connections keep time on.
//! - [`ratelimit`] holds the per-user and per-organisation token buckets every judged guarded
//!   request takes from.
//! - [`iis`] holds the pool's own text rules (escapes, paths, media types, hosts), each once.
//! - [`reject`] renders every refusal in UCWA's error format; [`forwarding`] sets what a proxy
//!   adds on the way to the pool.
//! - [`body`] holds the bodies the stages hand on: the client's (bounded in time), the one sent
//!   to a member, and the answer's.
//! - [`audit`] and [`metrics`] record every decision ([`audit::syslog`] carries the trail to a
//!   collector) and [`access`] writes the access log; [`admin`] serves metrics, health and
//!   reload; [`signal`] reloads and reopens files on signals; [`notify`] tells systemd;
//!   [`descriptors`] raises the open-files limit and backs accepts off when it is reached;
//!   [`logfile`] is `--log-file`.
//! - [`offline`] judges a request file as the gateway would (`eval --request`), in the trail's
//!   words.
//! - [`identity`] learns who an application's user is from the pool's own answers.
//! - [`config`] reads and validates the file (and the policy's list files), composing the
//!   sections [`audit`], [`identity`], [`policy`] and [`ratelimit`] own; [`demo`] runs the embedded demo; [`sim`] is the simulated front-end
//!   pool, with its own model of how the pool reads a request.
//!
//! The pure core (`judge`, `request`, `route`, `iis`, `extract`, `target`, `policy`, `reject`)
//! does no I/O. Modules depend on one another one way only (`tests/modules.rs`).
#![forbid(unsafe_code)]
// The docs are the developers': they link private modules and items on purpose
// (`cargo doc --document-private-items`; CI checks that every link resolves).
#![allow(rustdoc::private_intra_doc_links)]

pub mod access;
pub mod admin;
pub mod audit;
pub mod body;
pub mod client;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod demo;
pub mod descriptors;
pub mod extract;
pub mod forwarding;
pub mod gateway;
pub mod identity;
pub mod iis;
pub mod judge;
pub mod listener;
pub mod logfile;
pub mod metrics;
pub mod notify;
pub mod offline;
pub mod policy;
pub mod preflight;
pub mod ratelimit;
pub mod reject;
pub mod request;
pub mod route;
pub mod server;
pub mod signal;
pub mod sim;
pub mod state;
pub mod target;
#[cfg(test)]
mod testkit;
pub mod tls;
pub mod upstream;
