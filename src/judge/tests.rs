use super::*;

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
    match admit(head, &config, None) {
        Admission::Pass(_) => Ok(Traffic::Passthrough),
        Admission::Guarded(_) => Ok(Traffic::Guarded),
        Admission::Refused(r) => Err((r.rejection, r.traffic)),
    }
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
        for odd in ["00", "029", "0000000029"] {
            assert_eq!(
                admitted_with(path, &[("content-length", odd)]),
                Err((Rejection::BadBody, traffic)),
                "{path} with {odd}"
            );
        }
    }
}
