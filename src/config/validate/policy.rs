//! The `[policy]` and `[[organisations]]` sections: lists (inline and from files), modes and
//! rate limits, each problem at its key path.

use super::*;

pub(super) fn policy(p: &mut Problems, raw: &RawConfig, files: &mut Files<'_>) -> Policy {
    let max_len = match raw.policy.max_target_length {
        None => 80,
        Some(n @ 1..=80) => n as usize,
        Some(n) => {
            p.error(
                "policy.max_target_length",
                format!("{n} is outside 1..=80 (80 is the UCWA limit)"),
            );
            80
        }
    };
    let g = &raw.policy;
    let lists = files.scope(
        p,
        "policy",
        Kind::Deny,
        [
            (
                "deny_numbers",
                &g.deny_numbers,
                g.deny_numbers_file.as_deref(),
            ),
            (
                "deny_number_patterns",
                &g.deny_number_patterns,
                g.deny_number_patterns_file.as_deref(),
            ),
            (
                "deny_sip_domains",
                &g.deny_sip_domains,
                g.deny_sip_domains_file.as_deref(),
            ),
            (
                "deny_sip_uris",
                &g.deny_sip_uris,
                g.deny_sip_uris_file.as_deref(),
            ),
        ],
    );
    let global_deny = RuleSet::build(&mut lists.located(p), "policy", "policy", lists.lists());
    let mut organisations = Vec::with_capacity(raw.organisations.len());
    for (i, o) in raw.organisations.iter().enumerate() {
        let at = format!("organisations[{i}]");
        let name = match o.name.as_deref() {
            None => {
                p.error(format!("{at}.name"), "required");
                String::new()
            }
            Some(n)
                if n.is_empty()
                    || !n
                        .bytes()
                        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')) =>
            {
                p.error(
                    format!("{at}.name"),
                    format!("`{n}` must match [a-z0-9_-]+"),
                );
                n.to_string()
            }
            Some("none") => {
                p.error(
                    format!("{at}.name"),
                    "`none` is reserved for requests without an organisation",
                );
                "none".into()
            }
            Some(n) => n.to_string(),
        };
        let allow_lists = files.scope(
            p,
            &at,
            Kind::Allow,
            [
                (
                    "allow_numbers",
                    &o.allow_numbers,
                    o.allow_numbers_file.as_deref(),
                ),
                (
                    "allow_number_patterns",
                    &o.allow_number_patterns,
                    o.allow_number_patterns_file.as_deref(),
                ),
                (
                    "allow_sip_domains",
                    &o.allow_sip_domains,
                    o.allow_sip_domains_file.as_deref(),
                ),
                (
                    "allow_sip_uris",
                    &o.allow_sip_uris,
                    o.allow_sip_uris_file.as_deref(),
                ),
            ],
        );
        broad_allow_numbers(
            &mut allow_lists.located(p),
            &at,
            allow_lists.numbers().entries(),
        );
        let allow = RuleSet::build(&mut allow_lists.located(p), &at, &name, allow_lists.lists());
        let deny_lists = files.scope(
            p,
            &at,
            Kind::Deny,
            [
                (
                    "deny_numbers",
                    &o.deny_numbers,
                    o.deny_numbers_file.as_deref(),
                ),
                (
                    "deny_number_patterns",
                    &o.deny_number_patterns,
                    o.deny_number_patterns_file.as_deref(),
                ),
                (
                    "deny_sip_domains",
                    &o.deny_sip_domains,
                    o.deny_sip_domains_file.as_deref(),
                ),
                (
                    "deny_sip_uris",
                    &o.deny_sip_uris,
                    o.deny_sip_uris_file.as_deref(),
                ),
            ],
        );
        let deny = RuleSet::build(&mut deny_lists.located(p), &at, &name, deny_lists.lists());
        let own_mode = mode(p, &format!("{at}.mode"), o.mode.as_deref());
        organisations.push(Organisation::new(name, allow, deny, own_mode));
    }
    if raw.organisations.is_empty() {
        p.warn(
            "organisations",
            "none configured: every guarded request will be denied",
        );
    }
    let hosts: Vec<Vec<String>> = raw.organisations.iter().map(|o| o.hosts.clone()).collect();
    let policy_mode = mode(p, "policy.mode", raw.policy.mode.as_deref()).unwrap_or_default();
    Policy::build(
        p,
        max_len,
        global_deny,
        organisations,
        &hosts,
        raw.policy.default_organisation.as_deref(),
        policy_mode,
    )
}

/// An allow-list prefix of a country code's length or shorter (`+1`, `+44`, `+353`) allows a
/// whole country, which is rarely meant.
fn broad_allow_numbers(p: &mut impl Report, at: &str, numbers: &[String]) {
    for (i, n) in numbers.iter().enumerate() {
        let digits = n.strip_prefix('+').unwrap_or("");
        if (1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            p.warn(
                p.entry_path(at, "allow_numbers", i),
                format!("allows every number in {n} (as broad as a whole country code)"),
            );
        }
    }
}

/// `mode`: `enforce` or `shadow`; `None` when unset (or wrong, with the error noted).
fn mode(p: &mut Problems, key: &str, value: Option<&str>) -> Option<Mode> {
    let value = value?;
    match value.parse() {
        Ok(mode) => Some(mode),
        Err(()) => {
            p.error(key, format!("`{value}` is not `enforce` or `shadow`"));
            None
        }
    }
}

/// `[policy.rate_limit]` and each organisation's overrides, in the organisations' order.
pub(super) fn rate_limits(
    p: &mut Problems,
    raw: &RawConfig,
) -> (RateLimitSettings, Vec<RateLimitOverrides>) {
    let rate = |p: &mut Problems, key: String, value: &Option<String>| -> Option<Rate> {
        let value = value.as_deref()?;
        match value.parse() {
            Ok(rate) => Some(rate),
            Err(e) => {
                p.error(key, format!("`{value}`: {e}"));
                None
            }
        }
    };
    let g: &RawRateLimit = &raw.policy.rate_limit;
    let max_users = match g.max_users {
        None => DEFAULT_MAX_USERS,
        Some(0) => {
            p.error("policy.rate_limit.max_users", "must be at least 1");
            DEFAULT_MAX_USERS
        }
        Some(n) => n,
    };
    let settings = RateLimitSettings {
        per_user: rate(p, "policy.rate_limit.per_user".into(), &g.per_user),
        per_organisation: rate(
            p,
            "policy.rate_limit.per_organisation".into(),
            &g.per_organisation,
        ),
        max_users,
    };
    let overrides = raw
        .organisations
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let at = format!("organisations[{i}].rate_limit");
            RateLimitOverrides {
                per_user: rate(p, format!("{at}.per_user"), &o.rate_limit.per_user),
                per_organisation: rate(
                    p,
                    format!("{at}.per_organisation"),
                    &o.rate_limit.per_organisation,
                ),
            }
        })
        .collect();
    (settings, overrides)
}
