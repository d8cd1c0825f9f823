//! The differential oracle: the simulator's model of the pool (`ringfence::sim::model`, written
//! apart from ringfence's parser) says what the pool acted on in a request it received; the
//! policy says whether that was allowed. ringfence must never let through a request the pool
//! would act on for a target the policy denies, nor one the model cannot read.

use ringfence::config::Config;
use ringfence::sim::model::Reading;
use ringfence::sim::Received;
use ringfence::target::Target;

/// `Err` describing what the pool acted on that the policy does not allow.
pub fn check(config: &Config, received: &Received) -> Result<(), String> {
    let host = received
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    judge(config, host, &received.reading)
        .map_err(|e| format!("{} {}: {e}", received.method, received.path_and_query))
}

/// `Err` when the pool, reading a request with Host `host` as `reading` says, would act on a
/// target the policy denies, or when the model cannot tell.
pub fn judge(config: &Config, host: &str, reading: &Reading) -> Result<(), String> {
    if !reading.unknown.is_empty() {
        return Err(format!(
            "the pool model cannot tell what the pool acts on: {:?}",
            reading.unknown
        ));
    }
    let policy = &config.policy;
    let organisation = policy.organisation_for(host);
    for act in &reading.acts {
        // ASP.NET reads a query's `+` as a space; ringfence reads it literally (SPEC §4) and
        // judged the value with its plus: the digits and the host are the same either way
        // (docs/backend-model.md).
        let mut spellings = vec![act.value.clone()];
        if act.plus {
            spellings.push(act.value.replace(' ', "+"));
        }
        let allowed = spellings.iter().any(|value| {
            Target::parse(value, policy.max_target_length())
                .is_ok_and(|t| policy.decide(organisation, &t).allowed())
        });
        if !allowed {
            return Err(format!(
                "the pool acts on {:?} ({:?} of {}, part {:?}), which the policy does not allow",
                act.value, act.source, act.resource, act.part
            ));
        }
    }
    Ok(())
}
