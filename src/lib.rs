//! ringfence: a policy-enforcing reverse proxy for the Skype for Business Server 2015 UCWA
//! call-forwarding resources.
//!
//! A request's journey, one module per stage:
//!
//! ```text
//! accept → TLS → hyper conn → gateway: snapshot → route → (guarded?) body ≤ cap → extract → parse
//! → decide → audit+metrics → refuse here | forward → upstream pick → response streamed back
//! ```
//!
//! - [`listener`] binds, accepts (bounded), terminates TLS ([`tls`]) and serves HTTP/1.1 and HTTP/2.
//! - [`gateway`] composes the journey for each request, reading one [`state`] snapshot.
//! - [`route`] decides, from the path as IIS would canonicalise it, whether a request is guarded.
//! - [`extract`] finds every `target` the back end could act on: query, JSON, XML, form, batches.
//! - [`target`] parses it once into a [`target::Target`] (tel: per RFC 3966, sip: per RFC 3261).
//! - [`policy`] resolves the organisation and decides; only it and `route` make a
//!   [`policy::Clearance`], the one thing [`upstream`] will forward.
//! - [`reject`] renders every refusal in UCWA's error format.
//! - [`audit`] and [`metrics`] record every decision; [`admin`] serves metrics, health and reload.
//! - [`config`] reads and validates the file; [`sim`] is the simulated front-end pool.
//!
//! The pure core (`route`, `extract`, `target`, `policy`, `reject`) does no I/O.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod config;
pub mod demo;
pub mod extract;
pub mod gateway;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod reject;
pub mod route;
pub mod signal;
pub mod sim;
pub mod state;
pub mod target;
pub mod tls;
pub mod upstream;
