use super::*;
use crate::request::{METHOD_OVERRIDES, PATH_OVERRIDES};
use http::header;
use proptest::prelude::*;

const ME: &str = "/ucwa/oauth/v1/applications/1/me";
const GUARDED: &str = "/ucwa/oauth/v1/applications/1/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact";

/// What `admit` makes of a request to `path` with these header lines.
fn admitted_with(path: &str, lines: &[(&str, &str)]) -> Result<Traffic, (Rejection, Traffic)> {
    let config = Config::from_toml(crate::config::DEMO_TOML).unwrap();
    let mut request = http::Request::post(path).header(header::HOST, "lyncweb.contoso.com");
    for (name, value) in lines {
        request = request.header(*name, *value);
    }
    let head = request.body(()).unwrap().into_parts().0;
    match admit(head.into(), &config, None) {
        Admission::Pass(_) => Ok(Traffic::Passthrough),
        Admission::Guarded(_) => Ok(Traffic::Guarded),
        Admission::Refused(r) => Err((r.rejection, r.traffic)),
    }
}

/// What `admit` forwards of a pass-through request with these header lines.
fn passed_with(method: Method, lines: &[(&str, &str)]) -> Option<Headers> {
    let config = Config::from_toml(crate::config::DEMO_TOML).unwrap();
    let mut request = http::Request::builder()
        .method(method)
        .uri(ME)
        .header(header::HOST, "lyncweb.contoso.com");
    for (name, value) in lines {
        request = request.header(*name, *value);
    }
    match admit(
        request.body(()).unwrap().into_parts().0.into(),
        &config,
        None,
    ) {
        Admission::Pass(passed) => Some(passed.head.headers),
        _ => None,
    }
}

/// Fresh eyes, round 15: CONNECT reached the pool (hyper-util sends it to the member); UCWA
/// has no tunnel to open.
#[test]
fn connect_is_refused() {
    let config = Config::from_toml(crate::config::DEMO_TOML).unwrap();
    let head = http::Request::connect("lyncweb.contoso.com:443")
        .header(header::HOST, "lyncweb.contoso.com")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    match admit(head.into(), &config, None) {
        Admission::Refused(r) => assert_eq!(r.rejection, Rejection::BadPath),
        _ => panic!("CONNECT was admitted"),
    }
    assert!(passed_with(Method::GET, &[]).is_some());
}

/// Fresh eyes, round 15: an HTTP/2 request's repeated, equal Content-Length fields reached the
/// pool as two lines (HTTP.sys may refuse them); one is forwarded.
#[test]
fn repeated_equal_lengths_are_forwarded_as_one() {
    let headers = passed_with(
        Method::POST,
        &[("content-length", "5"), ("content-length", "5")],
    )
    .expect("passed");
    let lengths: Vec<_> = headers.get_all("content-length").collect();
    assert_eq!(lengths, [b"5".as_slice()]);
}

/// What `admit` makes of a request to `path` with these Transfer-Encoding lines.
fn admitted(path: &str, codings: &[&str]) -> Result<Traffic, (Rejection, Traffic)> {
    let lines: Vec<(&str, &str)> = codings.iter().map(|c| ("transfer-encoding", *c)).collect();
    admitted_with(path, &lines)
}

/// Issue 15: hyper unchunks `chunked, chunked` once and leaves `gzip` of `gzip, chunked` on
/// the body, and Transfer-Encoding does not reach the pool: only `chunked` alone is
/// forwarded, on a pass-through path as on a guarded one.
#[test]
fn only_chunked_alone_is_a_transfer_coding_admitted_anywhere() {
    for (path, traffic) in [(ME, Traffic::Passthrough), (GUARDED, Traffic::Guarded)] {
        assert_eq!(admitted(path, &[]), Ok(traffic));
        assert_eq!(admitted(path, &["chunked"]), Ok(traffic));
        assert_eq!(admitted(path, &["Chunked"]), Ok(traffic));
        for codings in [
            &["chunked, chunked"][..],
            &["chunked", "chunked"],
            &["gzip, chunked"],
            &["gzip", "chunked"],
            &[", chunked"],
            &["identity, chunked"],
        ] {
            assert_eq!(
                admitted(path, codings),
                Err((Rejection::EncodedBody, traffic)),
                "{path} with {codings:?}"
            );
        }
    }
}

/// Issue 15: hyper reads `0029` as 29; a pass-through request's Content-Length line reaches
/// the pool as it came, so only a length without a leading zero is admitted.
#[test]
fn a_content_length_with_a_leading_zero_is_refused_on_every_route() {
    for (path, traffic) in [(ME, Traffic::Passthrough), (GUARDED, Traffic::Guarded)] {
        for plain in ["0", "7", "29", "100"] {
            assert_eq!(
                admitted_with(path, &[("content-length", plain)]),
                Ok(traffic),
                "{path} with {plain}"
            );
        }
        assert_eq!(
            admitted_with(path, &[("content-length", "29"), ("content-length", "029")]),
            Err((Rejection::BadBody, traffic)),
            "{path}: a second line with a leading zero (HTTP/2 keeps equal repeats)"
        );
        for odd in ["00", "029", "0000000029"] {
            assert_eq!(
                admitted_with(path, &[("content-length", odd)]),
                Err((Rejection::BadBody, traffic)),
                "{path} with {odd}"
            );
        }
    }
}

/// The definition [`override_of`] replaced: each name compared with the six, loosely.
fn ucwa_headers_by_comparison<'n>(names: impl Iterator<Item = &'n str>) -> Result<(), Rejection> {
    fn loose(name: &str) -> impl Iterator<Item = u8> + '_ {
        name.bytes()
            .filter(|b| !matches!(b, b'-' | b'_'))
            .map(|b| b.to_ascii_lowercase())
    }
    let among = |name: &str, set: &[http::HeaderName]| {
        set.iter().any(|h| loose(name).eq(loose(h.as_str())))
    };
    let mut refusal = Ok(());
    for name in names {
        if among(name, &METHOD_OVERRIDES) {
            return Err(Rejection::MethodOverride);
        }
        if among(name, &PATH_OVERRIDES) {
            refusal = Err(Rejection::BadPath);
        }
    }
    refusal
}

#[test]
fn the_loose_table_is_the_override_constants() {
    for (set, kind) in [
        (&METHOD_OVERRIDES, Override::Method),
        (&PATH_OVERRIDES, Override::Path),
    ] {
        for name in set {
            assert_eq!(override_of(name.as_str().as_bytes()), Some(kind), "{name}");
            assert!(name.as_str().replace('-', "").len() <= LOOSE_MAX);
        }
    }
    assert_eq!(
        override_of("X_Original-URL".as_bytes()),
        Some(Override::Path)
    );
    assert_eq!(
        override_of("-_x-HTTP-Method_".as_bytes()),
        Some(Override::Method)
    );
    assert_eq!(override_of("x-http-method-overrides".as_bytes()), None);
    assert_eq!(override_of("x-http-metho".as_bytes()), None);
    assert_eq!(override_of("".as_bytes()), None);
}

/// Override names and near misses, in any case, with `-` and `_` anywhere.
fn header_name() -> impl Strategy<Value = String> {
    let base = prop_oneof![
        Just("x-http-method-override".to_string()),
        Just("x-http-method".to_string()),
        Just("x-method-override".to_string()),
        Just("aspfiltersessionid".to_string()),
        Just("x-original-url".to_string()),
        Just("x-rewrite-url".to_string()),
        Just("content-type".to_string()),
        "[a-zA-Z_-]{0,24}",
        any::<String>(),
    ];
    (
        base,
        prop::collection::vec((any::<u8>(), 0usize..4), 0..4),
        any::<u64>(),
    )
        .prop_map(|(name, insertions, cases)| {
            let mut chars: Vec<char> = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if cases >> (i % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            for (at, what) in insertions {
                let at = usize::from(at) % (chars.len() + 1);
                let c = ['-', '_', 'x', 'a'][what];
                chars.insert(at, c);
            }
            chars.into_iter().collect()
        })
}

proptest! {
    #[test]
    fn override_names_are_matched_as_by_comparison(
        names in prop::collection::vec(header_name(), 0..5)
    ) {
        prop_assert_eq!(
            ucwa_headers(names.iter().map(String::as_bytes)),
            ucwa_headers_by_comparison(names.iter().map(String::as_str))
        );
    }
}

/// Issue 16: a guarded request's admission detached from the configuration and attached to it
/// again is the same: each of the configuration's guards (and a batch) comes back as itself,
/// with the same head, Host, limit and binding.
#[test]
fn a_detached_admission_attaches_as_it_was() {
    let mut toml = crate::config::DEMO_TOML.to_string();
    toml.push_str(
        "\n[[guard]]\nresource = \"makeMeAvailable\"\nparameter = \"phoneNumber\"\nrequired = false\n",
    );
    let config = Config::from_toml(&toml).unwrap();
    assert!(config.guards.len() > 3);
    let base = "/ucwa/oauth/v1/applications/1/me/";
    let mut paths: Vec<String> = crate::route::Guards::defaults()
        .iter()
        .map(|g| format!("{base}{}", g.resource))
        .collect();
    paths.push(format!("{base}makeMeAvailable"));
    paths.push("/ucwa/oauth/v1/applications/1/batch".to_string());
    for path in paths {
        for sni in [None, Some("lyncweb.contoso.com"), Some("elsewhere.example")] {
            let head = http::Request::post(&path)
                .header(header::HOST, "lyncweb.contoso.com")
                .header("x-kept", "1")
                .body(())
                .unwrap()
                .into_parts()
                .0;
            let Admission::Guarded(pending) = admit(head.into(), &config, sni) else {
                panic!("{path} is not guarded");
            };
            let kind = |p: &Pending<'_>| match p.kind {
                Kind::Resource(guard) => Some(guard as *const Guard),
                Kind::Batch => None,
            };
            let (was_kind, was_limit, was_misdirected) =
                (kind(&pending), pending.limit, pending.misdirected);
            let (was_head, was_host) = (pending.head.target.clone(), pending.host.clone());
            let was_headers = pending.head.headers.clone();
            let again = pending.detach().attach(&config);
            assert_eq!(kind(&again), was_kind, "{path}");
            assert_eq!(again.parameter(), again.kind.parameter());
            assert_eq!(again.limit, was_limit);
            assert_eq!(again.misdirected, was_misdirected);
            assert_eq!(again.head.target, was_head);
            assert_eq!(again.head.headers, was_headers);
            assert_eq!(again.host, was_host);
            assert!(std::ptr::eq(again.config, &config));
        }
    }
}
