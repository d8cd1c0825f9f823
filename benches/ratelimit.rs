//! `Limiter::check`, the one call a judged guarded request makes to the rate limits
//! (docs/rate-limits.md), against a plain policy decision (`Policy::decide` with the
//! organisation lookup, as benches/decide.rs measures it), so the cost reads as a ratio.
//! Run with `cargo bench --bench ratelimit`.
//!
//! - `hot_user/N`: one user again and again, with N users in the map; the per-check time must
//!   stay flat from 10 to 100,000 users.
//! - `spread/N`: each check another of the N users, round robin (the map's memory, not one hot
//!   entry).
//! - `refused`: a user over the limit (no write, the answer is computed).
//! - `new_user`: a user never seen, into a full map of 100,000 (the one allocation, and an
//!   eviction); includes formatting the key.
//!
//! Rates are set so high (10⁹/s) that the allowed cases stay allowed: both buckets (user and
//! organisation) are taken from on every check, as they are in the gateway.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringfence::config::Config;
use ringfence::ratelimit::{Limiter, OrgIndex, RateLimitOverrides, RateLimitSettings};
use ringfence::target::Target;

const SIZES: [u32; 3] = [10, 1_000, 100_000];
const MAX_USERS: u64 = 100_000;
const HOST: &str = "lyncweb.contoso.com";
const ORG: Option<OrgIndex> = Some(OrgIndex(0));

fn user(i: u32) -> String {
    format!("sip:user{i}@contoso.com")
}

fn limiter(per_user: &str, per_org: &str) -> Limiter {
    let settings = RateLimitSettings {
        per_user: Some(per_user.parse().unwrap()),
        per_organisation: Some(per_org.parse().unwrap()),
        max_users: MAX_USERS,
    };
    Limiter::new(&settings, [("contoso", RateLimitOverrides::default())])
}

/// A limiter holding `n` users.
fn filled(n: u32) -> (Limiter, Vec<String>) {
    let l = limiter("1000000000/s", "1000000000/s");
    let keys: Vec<String> = (0..n).map(user).collect();
    for k in &keys {
        l.check(Some(k), ORG, 1).unwrap();
    }
    assert_eq!(l.users(), u64::from(n));
    (l, keys)
}

fn checks(c: &mut Criterion) {
    let mut hot = c.benchmark_group("ratelimit/hot_user");
    for n in SIZES {
        let (l, keys) = filled(n);
        let key = keys[keys.len() / 2].as_str();
        hot.bench_with_input(BenchmarkId::from_parameter(n), &key, |b, key| {
            b.iter(|| black_box(l.check(black_box(Some(key)), ORG, 1)).unwrap())
        });
    }
    hot.finish();

    let mut spread = c.benchmark_group("ratelimit/spread");
    for n in SIZES {
        let (l, keys) = filled(n);
        let mut i = 0;
        spread.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(l.check(black_box(Some(&keys[i])), ORG, 1)).unwrap()
            })
        });
    }
    spread.finish();

    let l = limiter("10/min", "1000000000/s");
    for _ in 0..10 {
        l.check(Some("app:1"), ORG, 1).unwrap();
    }
    c.bench_function("ratelimit/refused", |b| {
        b.iter(|| black_box(l.check(black_box(Some("app:1")), ORG, 1)).unwrap_err())
    });

    let (l, _) = filled(MAX_USERS as u32);
    let mut next = MAX_USERS as u32;
    let mut key = String::with_capacity(64);
    c.bench_function("ratelimit/new_user", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            key.clear();
            let _ = write!(key, "sip:user{next}@contoso.com");
            black_box(l.check(black_box(Some(&key)), ORG, 1)).unwrap()
        })
    });
    assert!(l.users() <= MAX_USERS);
}

/// The baseline: one decision of a small policy, as the gateway makes it per guarded request.
fn decide(c: &mut Criterion) {
    let config = Config::from_toml(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstream]\nmembers = [\"http://127.0.0.1:1\"]\n[audit]\nsink = \"off\"\n\
         [policy]\ndefault_organisation = \"contoso\"\n\
         deny_numbers = [\"+1900\", \"+1976\", \"+44870\", \"+44871\"]\n\
         [[organisations]]\nname = \"contoso\"\nhosts = [\"lyncweb.contoso.com\"]\n\
         allow_numbers = [\"+1425555\", \"+4420\", \"+3314\"]\n\
         allow_sip_domains = [\"contoso.com\"]\n",
    )
    .expect("a valid policy");
    let policy = config.policy();
    let target = Target::parse("tel:+14255550100", policy.max_target_length()).unwrap();
    assert!(policy
        .decide(policy.organisation_for(HOST), &target)
        .allowed());
    c.bench_function("ratelimit/baseline_decide", |b| {
        b.iter(|| {
            let org = policy.organisation_for(black_box(HOST));
            black_box(policy.decide(org, black_box(&target)))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = decide, checks
}
criterion_main!(benches);
