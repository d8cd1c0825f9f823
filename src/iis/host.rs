//! Host names: the `host[:port]` of a Host header, `:authority` or SNI (RFC 9110 §7.2, as
//! HTTP.sys accepts it), and the domain-name syntax shared by configured hosts, SIP domains and
//! SIP hosts (RFC 1123 LDH labels).

/// A `host[:port]` value, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority<'a> {
    /// A reg-name or IPv4 address as written, or an IPv6 literal with its brackets.
    pub name: &'a str,
    pub port: Option<&'a str>,
}

/// Splits and checks `host[:port]`: a reg-name of letters, digits, `-`, `.` and `_`, or an
/// `[IPv6]` literal, and a port of one to five digits up to 65535. Anything else (userinfo
/// `a@b`, spaces, percent-escapes, a bare IPv6 address) could be read differently by the
/// organisation lookup and by the pool, so it is `None`.
pub fn parse_authority(value: &str) -> Option<Authority<'_>> {
    // memchr's search: `str::rfind` with a `char` costs ~250 instructions on a short host,
    // and every guarded request's host is split twice (checked, then matched).
    let (name, port) = match memchr::memrchr(b':', value.as_bytes()) {
        Some(i) if !value.ends_with(']') => (&value[..i], Some(&value[i + 1..])),
        _ => (value, None),
    };
    // A port is 1*DIGIT that fits 16 bits: HTTP.sys refuses `:99999`, and the organisation
    // lookup must not accept a Host the pool would not (fresh eyes, round 34).
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    let name_ok = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        // No empty label but a single trailing dot's: `a..b`, `.a` and `a..` name no host
        // (HTTP.sys and `System.Uri` refuse them), yet `a.b..` would be matched as `a.b.`, no
        // organisation's, and judged by the default's lists (fresh eyes round 35).
        // One pass over the bytes: a dot must follow a label's byte (`str::split` costs ~300
        // instructions a host, and every guarded request's host is read twice).
        // At most 253 characters and a trailing dot (RFC 1035's longest name): a longer one
        // names no host, and the organisation lookup, which keys on the first 255 bytes, would
        // have judged it by the default organisation's lists (fresh eyes, round 41).
        // Labels of at most 63 (RFC 1035 §2.3.4).
        None => {
            let mut label = 0usize;
            !name.is_empty()
                && name.strip_suffix('.').unwrap_or(name).len() <= 253
                && name.bytes().all(|b| {
                    let ok = match b {
                        b'.' => label > 0,
                        b'-' | b'_' => true,
                        _ => b.is_ascii_alphanumeric(),
                    };
                    label = if b == b'.' { 0 } else { label + 1 };
                    ok && label <= 63
                })
        }
    };
    (port_ok && name_ok).then_some(Authority { name, port })
}

/// The name organisations are matched on: the host of a valid `host[:port]`, lower-cased, a
/// trailing dot dropped, written into `buf` so that a lookup allocates nothing.
pub fn match_key<'b>(value: &str, buf: &'b mut [u8; 255]) -> Option<&'b str> {
    let name = parse_authority(value)?.name;
    let name = name.strip_suffix('.').unwrap_or(name);
    let out = buf.get_mut(..name.len())?;
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

/// Checks a domain name: at most 253 characters of 1-63 character labels of ASCII letters,
/// digits and hyphens, no label starting or ending with a hyphen, no empty label (so no
/// trailing dot). The error says what is wrong, for SIP targets and configuration alike.
pub fn domain_labels(name: &str) -> Result<(), &'static str> {
    if name.len() > 253 {
        return Err("the host name is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("host labels must be 1 to 63 characters (no trailing dot)");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("host names may hold only ASCII letters, digits and hyphens");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("host labels may not start or end with a hyphen");
        }
    }
    Ok(())
}

pub fn is_domain(name: &str) -> bool {
    domain_labels(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass name check reads every short name over a host's alphabet as splitting it
    /// into labels does: no empty label but a single trailing dot's.
    #[test]
    fn names_read_as_their_labels_say() {
        fn by_labels(name: &str) -> bool {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
                && name
                    .strip_suffix('.')
                    .unwrap_or(name)
                    .split('.')
                    .all(|label| !label.is_empty())
        }
        let alphabet = ["a", "7", ".", "-", "_", "@", "\u{e9}"];
        let mut names = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = names
                .iter()
                .filter(|n| n.chars().count() == names.last().unwrap().chars().count())
                .flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}")))
                .collect();
            names.extend(longer);
        }
        assert!(names.len() > 19_000);
        for name in &names {
            assert_eq!(parse_authority(name).is_some(), by_labels(name), "{name:?}");
        }
    }

    #[test]
    fn only_host_and_port_syntax_is_an_authority() {
        for ok in [
            "lyncweb.contoso.com",
            "a.b:443",
            "10.0.0.1:80",
            "[::1]",
            "[::1]:8443",
            "fe_1.local",
            "a:65535",
            "a:0",
            "lync.fabrikam.com.",
            "lync.fabrikam.com.:443",
            format!("{}contoso.com.", "a.".repeat(121)).as_str(),
            format!("{}.contoso.com", "a".repeat(63)).as_str(),
        ] {
            assert!(parse_authority(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "a@b.com",
            "a b",
            "a%2eb",
            "a:",
            "a:99999x",
            "a:99999",
            "a:65536",
            "[::1",
            "[zz]:1",
            ":80",
            "a/b",
            "a:1:2",
            "::1",
            "caf\u{e9}.com",
            "lync.fabrikam.com..",
            "lync.fabrikam.com..:443",
            "lync..fabrikam.com",
            ".lync.fabrikam.com",
            ".",
            format!("{}contoso.com", "a.".repeat(122)).as_str(),
            // 254 without a trailing dot (fresh eyes, round 42), and a label of 64.
            format!("{}contoso.coma", "a.".repeat(121)).as_str(),
            format!("{}.contoso.com", "a".repeat(64)).as_str(),
        ] {
            assert!(parse_authority(bad).is_none(), "{bad}");
        }
        assert_eq!(
            parse_authority("[::1]:8443"),
            Some(Authority {
                name: "[::1]",
                port: Some("8443")
            })
        );
    }

    #[test]
    fn match_keys_drop_port_case_and_trailing_dot() {
        let mut buf = [0u8; 255];
        assert_eq!(
            match_key("LyncWeb.Contoso.COM.:443", &mut buf),
            Some("lyncweb.contoso.com")
        );
        assert_eq!(match_key("[::1]:443", &mut buf), Some("[::1]"));
        assert_eq!(match_key("a@b", &mut buf), None);
        assert_eq!(match_key(&"a".repeat(300), &mut buf), None);
    }

    #[test]
    fn domains_are_ldh_labels() {
        for ok in [
            "contoso.com",
            "a",
            "xn--bcher-kva.example",
            "10.0.0.1",
            "a-b.c",
        ] {
            assert!(is_domain(ok), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "a.",
            "-a.com",
            "a-.com",
            "a_b.com",
            "caf\u{e9}.com",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
        assert!(!is_domain(&format!("{}.com", "a".repeat(64))));
        assert!(!is_domain(&["a"; 128].join(".")));
    }
}
