//! The extractors and the batch parser on arbitrary bytes; none of them may panic.
//!
//! Input layout: byte 0 selects a Content-Type and Content-Encoding for one extra `from_body`
//! call; the bytes up to the first NUL are the query string (lossy UTF-8) and the rest is the
//! body. The body is run through every supported media type and through `batch::parse` with a
//! fixed boundary (the UCWA sample's), a boundary taken from the query string through
//! `batch::boundary`, and one taken from the body's first line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence::extract::{batch, from_body, from_query};

const PARAMETER: &str = "target";

/// The sample batch's boundary.
const FIXED_BOUNDARY: &str = "77f2569d-c005-442b-b856-782305305e5f";

/// Every media type the gateway accepts for a guarded body.
const MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/vnd.microsoft.com.ucwa+json",
    "application/xml",
    "application/vnd.microsoft.com.ucwa+xml",
    "text/xml; charset=utf-8",
    "application/x-www-form-urlencoded",
];

/// Chosen by the selector byte: near misses and parameter syntax as well as the plain types.
const SELECTED_TYPES: &[Option<&str>] = &[
    None,
    Some("application/json; charset=UTF-8"),
    Some("application/json; charset=\"utf\\-8\""),
    Some("application/xml; charset=utf-16"),
    Some("Application/X-WWW-Form-Urlencoded ;; a=b"),
    Some("text/plain"),
    Some("application/json; x=\"a;charset=latin1\""),
    Some("multipart/batching; boundary=77f2569d-c005-442b-b856-782305305e5f"),
];

const ENCODINGS: &[Option<&str>] = &[None, Some("identity"), Some(" Identity , "), Some("gzip")];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (&[][..], rest),
    };
    let query = String::from_utf8_lossy(query);

    let _ = from_query(&query, PARAMETER);
    for media_type in MEDIA_TYPES {
        let _ = from_body(Some(media_type), None, body, PARAMETER);
    }
    let content_type = SELECTED_TYPES[usize::from(selector) % SELECTED_TYPES.len()];
    let encoding = ENCODINGS[usize::from(selector >> 3) % ENCODINGS.len()];
    let _ = from_body(content_type, encoding, body, PARAMETER);
    // The query string doubles as a Content-Type parameter list for the boundary parser.
    let _ = ringfence::extract::body_kind(Some(&query));

    run_batch(body, FIXED_BOUNDARY);
    let batch_type = format!("multipart/batching{query}");
    if let Ok(boundary) = batch::boundary(&batch_type) {
        run_batch(body, boundary);
    }
    let _ = batch::boundary(&query);
    if let Some(first) = first_line_boundary(body) {
        if let Ok(boundary) = batch::boundary(&format!("multipart/batching; boundary=\"{first}\""))
        {
            run_batch(body, boundary);
        }
        run_batch(body, first);
    }
});

/// The boundary a body's first line announces: `--boundary` up to the line break.
fn first_line_boundary(body: &[u8]) -> Option<&str> {
    let line = body.strip_prefix(b"--")?;
    let end = line.iter().position(|&b| b == b'\r' || b == b'\n')?;
    std::str::from_utf8(&line[..end]).ok()
}

/// Parses a batch and judges every embedded request as the gateway would.
fn run_batch(body: &[u8], boundary: &str) {
    let Ok(parts) = batch::parse(body, boundary) else {
        return;
    };
    for part in &parts {
        assert!(part.target.starts_with('/'), "{part:?}");
        assert_eq!(
            format!(
                "{}{}",
                part.path(),
                part.query().map_or(String::new(), |q| format!("?{q}"))
            ),
            part.target
        );
        if let Some(query) = part.query() {
            let _ = from_query(query, PARAMETER);
        }
        let content_type = part.header_values("content-type").next();
        let encoding = part.header_values("content-encoding").next();
        let _ = from_body(content_type, encoding, part.body, PARAMETER);
        if let Some(length) = part.header_values("content-length").next() {
            assert_eq!(
                length.parse::<usize>().ok(),
                Some(part.body.len()),
                "{part:?}"
            );
        }
    }
}
