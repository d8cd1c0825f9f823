//! What keeping a copy of a request's headers for a retry costs (issue 13: "clone only when a
//! retry is actually taken"). `upstream::Pool::send` clones the forwarded `HeaderMap` when a
//! second member could be tried, since hyper-util's legacy client consumes the request. Measured
//! here on the headers a UCWA client sends (a 1.2 KB bearer token, cookies), next to the cost of
//! building the request's URI for the member, which every request pays. Run with
//! `cargo bench --bench forwarding`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};

/// The headers of a guarded POST from the UCWA JavaScript SDK, as forwarded (hop-by-hop gone,
/// X-Forwarded-* added).
fn ucwa_headers() -> HeaderMap {
    let token = format!("Bearer cwt={}", "A".repeat(1200));
    let lines: [(&str, String); 13] = [
        ("host", "lyncweb.contoso.com".into()),
        (
            "user-agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) UCWA/1.0".into(),
        ),
        ("accept", "application/json".into()),
        ("accept-language", "en-US,en;q=0.9".into()),
        ("authorization", token),
        ("content-type", "application/json".into()),
        ("content-length", "0".into()),
        ("x-ms-requires-min-resource-version", "2".into()),
        (
            "cookie",
            "cwt_ucwa=abc123; MRHSession=0123456789abcdef".into(),
        ),
        ("x-request-id", "4f1c2d3e5a6b7c8d00000001".into()),
        ("x-forwarded-for", "203.0.113.7".into()),
        ("x-forwarded-proto", "https".into()),
        ("x-forwarded-host", "lyncweb.contoso.com".into()),
    ];
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    map
}

fn bench(c: &mut Criterion) {
    let headers = ucwa_headers();
    let authority = Authority::from_static("fe1.contoso.local:4443");
    let path = PathAndQuery::from_static(
        "/ucwa/oauth/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact?target=tel:%2B14255550100",
    );
    let mut group = c.benchmark_group("forwarding");
    group.bench_function("header_map_clone", |b| {
        b.iter(|| black_box(black_box(&headers).clone()))
    });
    group.bench_function("member_uri_build", |b| {
        b.iter(|| {
            black_box(
                Uri::builder()
                    .scheme(Scheme::HTTPS)
                    .authority(black_box(&authority).clone())
                    .path_and_query(black_box(&path).clone())
                    .build()
                    .unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
