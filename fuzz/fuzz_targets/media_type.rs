//! Both readings of a media type on arbitrary text: RFC 9110's `MediaType::parse` and ASP.NET's
//! quote-blind `aspnet_attribute` never panic, and a `charset` the RFC reading finds as a
//! parameter of its own is found by ASP.NET's reading too (the reverse need not hold: that is
//! the point of reading both).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence::iis::media::{aspnet_attribute, request_encoding, AspnetAttribute, MediaType};

fuzz_target!(|header: &str| {
    let aspnet = aspnet_attribute(header, "charset");
    let _ = request_encoding([header], Some(header), true);
    let Ok(media) = MediaType::parse(header) else {
        return;
    };
    let Ok(Some(charset)) = media.parameter("charset") else {
        return;
    };
    // ASP.NET's value ends at a space or comma and is trimmed; compare what both can see.
    let simple = !charset.is_empty()
        && charset.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        && header.is_ascii();
    if simple && !header.contains('"') {
        match aspnet {
            AspnetAttribute::Value(_) => {}
            other => panic!("{header:?}: RFC finds charset {charset:?}, ASP.NET {other:?}"),
        }
    }
});
