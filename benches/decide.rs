//! `Policy::decide` (with the organisation lookup) at 10, 1,000 and 100,000 entries in each of
//! the organisation's allow lists: number prefixes, number patterns and SIP domains (plus a tenth
//! as many exact SIP URIs). SPEC §11 wants it flat; the README's rule order and
//! docs/performance.md give the figures. Run with `cargo bench --bench decide`.
//!
//! Each case is one lookup path: a prefix hit in the trie, a number that only a pattern allows
//! (the whole `RegexSet` runs), a number nothing allows (trie and `RegexSet` both miss), an exact
//! SIP domain and a `*.domain` one. The global deny lists are the same small ones at every size,
//! so the growth measured is the allow lists'.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringfence::config::Config;
use ringfence::target::Target;

const SIZES: [usize; 3] = [10, 1_000, 100_000];
const HOST: &str = "lyncweb.contoso.com";
const CASES: [(&str, &str); 5] = [
    ("tel_prefix_allowed", "tel:+14255550100"),
    ("tel_pattern_allowed", "tel:+12065550100"),
    ("tel_not_allowed", "tel:+99123456789"),
    ("sip_domain_allowed", "sip:alice@contoso.com"),
    ("sip_wildcard_allowed", "sip:bob@eu.contoso.com"),
];

/// A small deterministic generator, so every run judges against the same lists.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }

    fn digits(&mut self, n: u64) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.next(10) as u8))
            .collect()
    }

    fn letters(&mut self, n: u64) -> String {
        (0..n)
            .map(|_| char::from(b'a' + self.next(26) as u8))
            .collect()
    }
}

fn toml_list(out: &mut String, key: &str, values: &[String]) {
    let _ = write!(out, "{key} = [");
    for v in values {
        let _ = write!(out, "'{v}',");
    }
    out.push_str("]\n");
}

/// The TOML of a policy whose allow lists have `n` entries each (the fixed ones included).
fn policy_toml(n: usize) -> String {
    let mut rng = Lcg(n as u64);
    // None of the generated numbers starts with +99, so tel:+99123456789 matches nothing.
    let codes = ["1", "44", "33", "49", "31", "46", "61", "81"];
    let mut numbers = vec!["+1425555".to_string()];
    while numbers.len() < n {
        let cc = codes[rng.next(codes.len() as u64) as usize];
        let len = 3 + rng.next(6);
        let prefix = format!("+{cc}{}", rng.digits(len));
        if !prefix.starts_with("+1206") {
            numbers.push(prefix);
        }
    }
    let mut patterns = vec![r"^\+1206[0-9]{7}$".to_string()];
    while patterns.len() < n {
        let (cc, area, rest) = (20 + rng.next(79), 100 + rng.next(900), 4 + rng.next(5));
        patterns.push(format!(r"^\+{cc}{area}[0-9]{{{rest}}}$"));
    }
    let tlds = ["com", "net", "org", "co.uk", "de", "fr"];
    let mut domains = vec!["contoso.com".to_string(), "*.contoso.com".to_string()];
    while domains.len() < n {
        let wild = if rng.next(10) < 3 { "*." } else { "" };
        let len = 4 + rng.next(9);
        let label = rng.letters(len);
        let tld = tlds[rng.next(tlds.len() as u64) as usize];
        domains.push(format!("{wild}{label}{}.{tld}", domains.len()));
    }
    let uris: Vec<String> = (0..n.div_ceil(10))
        .map(|i| format!("sip:user{i}@partner{}.example", i % 97))
        .collect();
    let mut toml = String::from(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstream]\nmembers = [\"http://127.0.0.1:1\"]\n[audit]\nsink = \"off\"\n\
         [policy]\ndefault_organisation = \"contoso\"\n\
         deny_numbers = [\"+1900\", \"+1976\", \"+44870\", \"+44871\"]\n\
         deny_number_patterns = ['^\\+88[0-9]', '^\\+979']\n\
         [[organisations]]\nname = \"contoso\"\nhosts = [\"lyncweb.contoso.com\", \"*.contoso.com\"]\n",
    );
    toml_list(&mut toml, "allow_numbers", &numbers);
    toml_list(&mut toml, "allow_number_patterns", &patterns);
    toml_list(&mut toml, "allow_sip_domains", &domains);
    toml_list(&mut toml, "allow_sip_uris", &uris);
    toml
}

fn decide(c: &mut Criterion) {
    let configs: Vec<(usize, Config)> = SIZES
        .iter()
        .map(|&n| {
            let config = Config::from_toml(&policy_toml(n))
                .unwrap_or_else(|e| panic!("the generated {n}-entry policy is valid: {e}"));
            (n, config)
        })
        .collect();
    for (name, raw) in CASES {
        let mut group = c.benchmark_group(format!("decide/{name}"));
        for (n, config) in &configs {
            let policy = config.policy();
            let target = Target::parse(raw, policy.max_target_length()).expect("a valid target");
            let expected_allowed = name != "tel_not_allowed";
            let org = policy.organisation_for(HOST);
            assert_eq!(
                policy.decide(org, &target).allowed(),
                expected_allowed,
                "{name} at {n} entries"
            );
            group.bench_with_input(BenchmarkId::from_parameter(n), &target, |b, target| {
                b.iter(|| {
                    let org = policy.organisation_for(black_box(HOST));
                    black_box(policy.decide(org, black_box(target)))
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = decide
}
criterion_main!(benches);
