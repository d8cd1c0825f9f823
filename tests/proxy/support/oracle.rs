//! The differential oracle ([`ringfence::sim::oracle`]) on what a member received.

use ringfence::config::Config;
use ringfence::sim::Received;

/// `Err` describing what the pool acted on in `received` that the policy does not allow.
pub fn check(config: &Config, received: &Received) -> Result<(), String> {
    let host = received
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    ringfence::sim::oracle::judge(config.policy(), host, &received.reading)
        .map_err(|e| format!("{} {}: {e}", received.method, received.path_and_query))
}
