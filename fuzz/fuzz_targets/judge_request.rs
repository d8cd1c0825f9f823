//! The judge against the pool model, on arbitrary requests: a differential fuzzer. Whatever the
//! judge clears, the simulator's model of the pool (written apart from ringfence's parser) must
//! be able to read, and must find no target in it that the policy does not allow.
//!
//! Input layout: byte 0 picks the method; then the request-target up to `\n`; then header lines
//! `name: value` up to an empty line; the rest is the body. Requests the `http` crate cannot
//! carry are skipped, as hyper would refuse them before the judge.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringfence::config::Config;
use ringfence::judge::{self, Admission};
use ringfence::sim::model::{self, Resources};
use ringfence::sim::oracle;
use ringfence::upstream::UpstreamBody;

const POLICY: &str = r#"
[server]
listen = ["127.0.0.1:0"]
max_body_bytes = 4096
[upstream]
members = ["http://127.0.0.1:1"]
[policy]
default_organisation = "contoso"
deny_numbers = ["+1900"]
deny_sip_domains = ["evil.example"]
[[organisations]]
name = "contoso"
hosts = ["lyncweb.contoso.com"]
allow_numbers = ["+1425555"]
allow_sip_domains = ["contoso.com"]
"#;

const HOST: &str = "lyncweb.contoso.com";
const METHODS: [&str; 4] = ["POST", "GET", "PUT", "PATCH"];

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config::from_toml(POLICY).expect("fuzz policy"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(selector) % METHODS.len()];
    let Some(line_end) = rest.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(target) = std::str::from_utf8(&rest[..line_end]) else {
        return;
    };
    let mut rest = &rest[line_end + 1..];
    let mut builder = http::Request::builder().method(method).uri(target).header("host", HOST);
    let mut lines = Vec::new();
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        builder = builder.header(name, value);
        lines.push((name.to_vec(), value.to_vec()));
    }
    let body = rest;
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let config = config();
    let mut clearance = match judge::admit(parts, config, None) {
        Admission::Refused(_) => return,
        Admission::Pass(passed) => passed.with_body(UpstreamBody::Empty),
        Admission::Guarded(pending) => {
            if body.len() > pending.body_limit() {
                return;
            }
            match pending.judge(Bytes::copy_from_slice(body)).outcome {
                Ok(clearance) => clearance,
                Err(_) => return,
            }
        }
    };
    let headers: Vec<(String, String)> = clearance
        .headers_mut()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().iter().map(|&b| char::from(b)).collect()))
        .collect();
    let reading = model::read(
        &model::Request {
            method,
            target: clearance.target(),
            headers: &headers,
            body,
        },
        &Resources::default(),
    );
    if let Err(e) = oracle::judge(config.policy(), HOST, &reading) {
        panic!("cleared {method} {target:?} {lines:?} body {:?}: {e}", String::from_utf8_lossy(body));
    }
});
