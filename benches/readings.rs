//! `route::classify` (every reading of a path: decoding stages, splittings, ASCII skeleton,
//! cookieless cuts) on the paths a client can send, side by side with the plain UCWA path every
//! real client sends, which takes the fast path. The hostile cases sit at the limits that make a
//! path `bad_path` (`MAX_COOKIELESS_READINGS`, `MAX_COOKIELESS_BYTES`), so they are the most work
//! one request line can ask for. Run with `cargo bench --bench readings`; docs/performance.md
//! reports the figures as ratios to the plain path.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ringfence::route::{classify, Guards};

const PLAIN: &str = "/ucwa/oauth/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact";

/// A path near the 4 KiB cookieless budget: `groups` cookieless groups, each followed by a
/// `..;` detour, a `;` and an accented letter so that every splitting and the skeleton are read.
fn at_the_budget(groups: usize) -> String {
    let pad = "x".repeat((4 * 1024 / (2 * groups + 1)).saturating_sub(25 * groups + 60));
    let mut path = format!("/ucwa/{pad}%C3%A1;");
    for i in 0..groups {
        path += &format!("/%28S%28a{i}%29%29/..;/");
    }
    path + "simultaneousRingToContact"
}

fn readings(c: &mut Criterion) {
    let guards = Guards::new(Guards::defaults());
    let mut six = String::from("/ucwa/oauth/v1");
    for i in 0..6 {
        six += &format!("/(S(a{i}))/x%C3%A1;y");
    }
    six += "/simultaneousRingToContact";
    let cases = [
        ("plain", PLAIN.to_string()),
        (
            "encoded",
            PLAIN.replace(
                "/simultaneousRingToContact",
                "/%73imultaneous%52ingToContact",
            ),
        ),
        ("semicolon_and_accent", format!("{PLAIN};x=%C3%A1")),
        (
            "dotdot_semicolon",
            PLAIN.replace("/ucwa/oauth/", "/ucwa/oauth/..;/../oauth/"),
        ),
        ("six_cookieless", six),
        ("budget_4_groups", at_the_budget(4)),
        ("budget_8_groups", at_the_budget(8)),
    ];
    let mut group = c.benchmark_group("classify");
    for (name, path) in &cases {
        group.bench_function(*name, |b| b.iter(|| classify(black_box(path), &guards)));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = readings
}
criterion_main!(benches);
