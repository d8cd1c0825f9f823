//! The differential oracle: the pool model ([`super::model`]) says what the pool acts on in a
//! request; ringfence's policy says whether that is allowed. A request ringfence forwards must
//! hold no target the policy denies, and nothing the model cannot read. Used by the tests and the
//! `judge_request` fuzz target.

use crate::policy::Policy;
use crate::target::Target;

use super::model::Reading;

/// `Err` when the pool, reading a request with Host `host` as `reading` says, would act on a
/// target the policy does not allow, or when the model cannot tell what it would act on.
pub fn judge(policy: &Policy, host: &str, reading: &Reading) -> Result<(), String> {
    if !reading.unknown.is_empty() {
        return Err(format!(
            "the pool model cannot tell what the pool acts on: {:?}",
            reading.unknown
        ));
    }
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
