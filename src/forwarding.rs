//! What a proxy changes on the way to the pool, and nothing else: connection-specific headers
//! go (RFC 9110 §7.6.1), `X-Forwarded-*` and `X-Request-Id` are written in place of the client's
//! ([`Lines`]), Host is the one the request was judged by (or the member's), and an HTTP/2
//! request's cookie crumbs are one Cookie line again (RFC 9113 §8.2.3), since the pool is spoken
//! to in HTTP/1.1. Method, target and body are the judged ones
//! and are not touched here. The request id is kept from a client when it is safe to echo, else
//! made here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::request::{self, Headers};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// RFC 9110 §7.6.1: the connection-specific headers (besides those the Connection header names).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TRAILER,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Removes connection-specific headers and every header the Connection header names. A request
/// is stripped *before* it is judged, so that a header a client names in Connection (say
/// `Content-Type`) is judged absent, as the pool will find it.
pub fn strip_hop_by_hop(headers: &mut Headers) {
    // Most requests carry none of them: one pass over the names, noting whether any is
    // hop-by-hop; the Connection tokens are collected (allocated) only when one names another
    // header.
    let mut present = 0u16;
    for name in headers.names() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // HOP_BY_HOP[0] is Connection.
    if present & 1 != 0 && headers.get_all("connection").any(line_names_others) {
        let named: Vec<String> = named_by(headers.get_all("connection"))
            .into_iter()
            .map(str::to_owned)
            .collect();
        headers.retain(|name, _| {
            hop_by_hop_index(name).is_none()
                && !named
                    .iter()
                    .any(|token| token.as_bytes().eq_ignore_ascii_case(name))
        });
        return;
    }
    headers.retain(|name, _| hop_by_hop_index(name).is_none());
}

/// Whether `name` is one of [`HOP_BY_HOP`] (not counting those a Connection line names).
pub(crate) fn is_hop_by_hop_name(name: &HeaderName) -> bool {
    hop_by_hop_index(name.as_str().as_bytes()).is_some()
}

/// Whether a Connection line names a header that is not hop-by-hop already.
pub(crate) fn line_names_others(connection: &[u8]) -> bool {
    request::visible(connection)
        // A single token (the `keep-alive` of every member's answer) is not split: `str::split`
        // sets up a searcher costing ~100 instructions. A visible-ASCII value trims as `trim` would.
        .is_some_and(|v| match memchr::memchr(b',', v.as_bytes()) {
            None => !is_hop_by_hop(v.trim_ascii()),
            Some(_) => v.split(',').any(|token| !is_hop_by_hop(token.trim_ascii())),
        })
}

/// `headers` without every header one of `connection`'s lines names (what [`strip_hop_by_hop`]
/// does when the lines were taken out of the map already), the rest in their order: a map's
/// `remove` moves its last entry into the freed place (fresh eyes, round 27).
pub(crate) fn without_named_by(headers: HeaderMap, connection: &[HeaderValue]) -> HeaderMap {
    let named = named_by(connection.iter().map(HeaderValue::as_bytes));
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in &headers {
        if !named
            .iter()
            .any(|token| token.eq_ignore_ascii_case(name.as_str()))
        {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// The place of a (lower-case) name in [`HOP_BY_HOP`]: one match on the text, not nine
/// comparisons of `HeaderName`s per header.
fn hop_by_hop_index(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"connection" => 0,
        b"te" => 1,
        b"transfer-encoding" => 2,
        b"upgrade" => 3,
        b"proxy-authorization" => 4,
        b"proxy-authenticate" => 5,
        b"trailer" => 6,
        b"keep-alive" => 7,
        b"proxy-connection" => 8,
        _ => return None,
    })
}

/// The headers Connection lines name besides the hop-by-hop ones (lines that are not text
/// name none).
fn named_by<'v>(connection: impl IntoIterator<Item = &'v [u8]>) -> Vec<&'v str> {
    connection
        .into_iter()
        .filter_map(request::visible)
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| !is_hop_by_hop(token))
        .collect()
}

fn is_hop_by_hop(token: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|name| name.as_str().eq_ignore_ascii_case(token))
}

/// The forwarding facts of one request.
pub struct Forwarded<'a> {
    /// The client's address, formatted once per connection.
    pub client_ip: &'a HeaderValue,
    pub tls: bool,
    /// The Host the request was judged by.
    pub host: &'a HeaderValue,
    pub request_id: &'a HeaderValue,
    pub preserve_host: bool,
    /// The request came over HTTP/2 or later, where a Cookie may be split into crumbs.
    pub multiplexed: bool,
}

/// Joins an HTTP/2 request's cookie crumbs, and returns the lines ringfence sets on the request
/// ([`Lines`]), which are written with its head.
#[must_use]
pub fn set_headers(headers: &mut Headers, f: &Forwarded<'_>) -> Lines {
    if f.multiplexed {
        join_cookie_crumbs(headers);
    }
    Lines {
        client_ip: f.client_ip.clone(),
        proto: if f.tls { "https" } else { "http" },
        host: f.host.clone(),
        request_id: f.request_id.clone(),
        preserve_host: f.preserve_host && !f.host.is_empty(),
    }
}

/// The lines ringfence sets on a request for the pool: `Host` (the judged one with
/// `preserve_host`, else the member's), `X-Forwarded-For` (the client appended to every line of
/// the chain it came with, RFC 9110 §5.3: the pool, and `trusted_proxies` of a next ringfence,
/// read the whole chain), `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Request-Id`. They are
/// written after the client's own lines, which lose those of the same names
/// ([`Lines::write_headers`]), rather than added to the request's lines: adding a line copies
/// them all ([`Headers::insert`]).
#[derive(Debug)]
pub struct Lines {
    client_ip: HeaderValue,
    proto: &'static str,
    /// The host the request was judged by: `X-Forwarded-Host`, and Host with `preserve_host`.
    host: HeaderValue,
    request_id: HeaderValue,
    preserve_host: bool,
}

/// A client's line that a line of [`Lines`] replaces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replaced {
    Host,
    ForwardedFor,
    Other,
}

fn replaced(name: &[u8]) -> Option<Replaced> {
    Some(match name {
        b"host" => Replaced::Host,
        b"x-forwarded-for" => Replaced::ForwardedFor,
        b"x-forwarded-proto" | b"x-forwarded-host" | b"x-request-id" => Replaced::Other,
        // IIS hands `X_Forwarded_Host` to the application as the same server variable
        // (`HTTP_X_FORWARDED_HOST`) as ringfence's `X-Forwarded-Host`: such a line goes too, not
        // beside ringfence's (fresh eyes, round 46). It is not read into the chain either, as
        // `trusted_proxies` does not read it.
        [b'x', ..] if name.len() <= LONGEST_REPLACED && name.contains(&b'_') => {
            let mut folded = [0u8; LONGEST_REPLACED];
            for (f, &b) in folded.iter_mut().zip(name) {
                *f = if b == b'_' { b'-' } else { b };
            }
            match &folded[..name.len()] {
                b"x-forwarded-for" | b"x-forwarded-proto" | b"x-forwarded-host"
                | b"x-request-id" => Replaced::Other,
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// `x-forwarded-proto`'s length, the longest name [`replaced`] matches.
const LONGEST_REPLACED: usize = 17;

impl Lines {
    /// Copies whose values are not slices of the client's read buffer (for another attempt,
    /// which may wait across a long poll: issue 16).
    pub fn detached(&self) -> Lines {
        let own = |v: &HeaderValue| {
            let mut copy = HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone());
            copy.set_sensitive(v.is_sensitive());
            copy
        };
        Lines {
            client_ip: self.client_ip.clone(),
            proto: self.proto,
            host: own(&self.host),
            request_id: own(&self.request_id),
            preserve_host: self.preserve_host,
        }
    }

    /// At most how many bytes [`Lines::write_headers`] writes besides the client's lines as they
    /// are (their `X-Forwarded-For` values, joined into the chain, take no more room than their
    /// lines did).
    pub fn room(&self, member_host: &HeaderValue) -> usize {
        160 + member_host.len() + 2 * self.host.len() + self.client_ip.len() + self.request_id.len()
    }

    /// Writes a request's header lines for the pool: Host first, the client's lines in their
    /// order but for those these replace, then the forwarding lines.
    pub fn write_headers(&self, dst: &mut BytesMut, headers: &Headers, member_host: &HeaderValue) {
        let line = |dst: &mut BytesMut, name: &[u8], value: &[u8]| {
            dst.extend_from_slice(name);
            dst.extend_from_slice(b": ");
            dst.extend_from_slice(value);
            dst.extend_from_slice(b"\r\n");
        };
        let host = if self.preserve_host {
            &self.host
        } else {
            member_host
        };
        line(dst, b"host", host.as_bytes());
        let mut chained = false;
        for (name, value) in headers.iter() {
            match replaced(name) {
                None => line(dst, name, value),
                Some(Replaced::ForwardedFor) => chained = true,
                Some(Replaced::Host | Replaced::Other) => {}
            }
        }
        dst.extend_from_slice(b"x-forwarded-for: ");
        if chained {
            for prior in headers.get_all("x-forwarded-for") {
                match request::visible(prior).map(str::trim) {
                    Some(prior) if !prior.is_empty() => {
                        dst.extend_from_slice(prior.as_bytes());
                        dst.extend_from_slice(b", ");
                    }
                    _ => {}
                }
            }
        }
        dst.extend_from_slice(self.client_ip.as_bytes());
        dst.extend_from_slice(b"\r\n");
        line(dst, b"x-forwarded-proto", self.proto.as_bytes());
        // None for a request that named no host (HTTP/1.0 without Host): an empty value would
        // name one (fresh eyes, round 27). The client's own line is never sent either way.
        if !self.host.is_empty() {
            line(dst, b"x-forwarded-host", self.host.as_bytes());
        }
        line(dst, b"x-request-id", self.request_id.as_bytes());
    }
}

/// RFC 9113 §8.2.3: crumbs are joined with `"; "` before the request goes to an HTTP/1.1 server,
/// which may otherwise join them with `", "` (one cookie to ASP.NET, whose parser splits at `;`).
fn join_cookie_crumbs(headers: &mut Headers) {
    if headers.get_all("cookie").nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for (i, crumb) in headers.get_all("cookie").enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb);
    }
    headers.insert("cookie", &joined);
}

/// A request's ids: ringfence's own (`id` in the audit trail, always made here) and the client's
/// X-Request-Id when it is safe to echo.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub ours: HeaderValue,
    pub client: Option<HeaderValue>,
}

impl RequestIds {
    /// The X-Request-Id sent to the pool and echoed to the client (SPEC §7): the client's when
    /// it gave a valid one, else ours.
    pub fn header(&self) -> &HeaderValue {
        self.client.as_ref().unwrap_or(&self.ours)
    }
}

/// A fresh id for the request, and the client's X-Request-Id when it is safe to echo.
pub fn request_ids(headers: &Headers) -> RequestIds {
    let client = headers.get("x-request-id").filter(|b| {
        (1..=128).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    });
    RequestIds {
        ours: fresh_id(),
        // Copied out of the request's head, whose buffer a held long poll would otherwise keep
        // alive through this id (issue 16); only its checked characters, so it stays valid.
        client: client.and_then(|v| HeaderValue::from_bytes(v).ok()),
    }
}

/// 24 hex digits: 16 from a seeded mix of a counter, 8 of the counter itself, so ids are unique
/// within a process and unlike across processes.
fn fresh_id() -> HeaderValue {
    static SEED: LazyLock<u64> = LazyLock::new(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 24];
    let (mixed, count) = id.split_at_mut(16);
    hex(mixed, splitmix(*SEED ^ n));
    hex(count, u64::from(n as u32));
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `value` as lower-case hex filling `out`, zero-padded (as `{:0width$x}` without allocating).
fn hex(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition [`strip_hop_by_hop`] replaced (the Connection tokens always collected),
    /// on a `HeaderMap`.
    pub(crate) fn strip_hop_by_hop_collected(headers: &mut HeaderMap) {
        if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
            return;
        }
        strip_named(headers);
    }

    /// Every hop-by-hop header and every one a Connection line names, removed.
    fn strip_named(headers: &mut HeaderMap) {
        let named = named_by(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .map(HeaderValue::as_bytes),
        );
        let named = |name: &HeaderName| {
            named
                .iter()
                .any(|token| token.eq_ignore_ascii_case(name.as_str()))
        };
        let present: Vec<HeaderName> = headers
            .keys()
            .filter(|name| HOP_BY_HOP.contains(name) || named(name))
            .cloned()
            .collect();
        for name in present {
            headers.remove(name);
        }
    }

    /// Header lines drawn from the hop-by-hop names, Connection lines naming them or others in
    /// any case, and ordinary headers.
    fn header_lines() -> impl Strategy<Value = Vec<(String, String)>> {
        let name = prop_oneof![
            Just("connection".to_string()),
            Just("keep-alive".to_string()),
            Just("te".to_string()),
            Just("transfer-encoding".to_string()),
            Just("proxy-connection".to_string()),
            Just("upgrade".to_string()),
            Just("content-type".to_string()),
            Just("x-private".to_string()),
            "[a-z]{1,3}",
        ];
        let value = prop_oneof![
            Just("keep-alive".to_string()),
            Just("close".to_string()),
            Just("Keep-Alive, TE".to_string()),
            Just(" X-Private ,close".to_string()),
            Just("content-TYPE".to_string()),
            Just("a,,b".to_string()),
            "[a-zA-Z, -]{0,12}",
        ];
        prop::collection::vec((name, value), 0..8)
    }

    #[test]
    fn the_hop_by_hop_match_is_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(
                hop_by_hop_index(name.as_str().as_bytes()),
                Some(i),
                "{name}"
            );
        }
        assert_eq!(hop_by_hop_index(b"content-type"), None);
        assert_eq!(hop_by_hop_index(b"t"), None);
    }

    proptest! {
        #[test]
        fn stripping_is_as_when_the_tokens_were_always_collected(lines in header_lines()) {
            let mut headers = HeaderMap::new();
            for (name, value) in &lines {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            let mut expected = headers.clone();
            strip_hop_by_hop_collected(&mut expected);
            let mut ours = Headers::from_map(&headers);
            strip_hop_by_hop(&mut ours);
            prop_assert_eq!(ours.to_map(), expected);
        }
    }

    #[test]
    fn connection_named_headers_are_stripped_with_the_hop_by_hop_ones() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, Content-Type"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        let mut headers = Headers::from_map(&headers);
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains("x-kept"));
    }

    #[test]
    fn every_connection_line_names_headers_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static(" X-Private ,close"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.append("x-private", HeaderValue::from_static("1"));
        headers.append("x-private", HeaderValue::from_static("2"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        headers.insert(header::DATE, HeaderValue::from_static("now"));
        let mut headers = Headers::from_map(&headers);
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<_> = headers.names().collect();
        let (date, kept): (&[u8], &[u8]) = (b"date", b"x-kept");
        left.sort_unstable();
        assert_eq!(left, [date, kept]);
    }

    #[test]
    fn http2_cookie_crumbs_are_one_line_for_the_pool() {
        let crumbs = |multiplexed: bool| {
            let mut headers = Headers::default();
            for crumb in ["a=1", "b=2", "c=3"] {
                headers.append("cookie", crumb.as_bytes());
            }
            let unset = HeaderValue::from_static("");
            let _ = set_headers(
                &mut headers,
                &Forwarded {
                    client_ip: &unset,
                    tls: false,
                    host: &unset,
                    request_id: &unset,
                    preserve_host: false,
                    multiplexed,
                },
            );
            let lines: Vec<_> = headers.get_all("cookie").map(<[u8]>::to_vec).collect();
            lines
        };
        assert_eq!(crumbs(true), [b"a=1; b=2; c=3".to_vec()]);
        assert_eq!(
            crumbs(false),
            [b"a=1".to_vec(), b"b=2".to_vec(), b"c=3".to_vec()]
        );
    }

    /// The header lines a request is written with for the pool: `set_headers`, then
    /// `Lines::write_headers` (the member's Host is `fe1.example:443`).
    fn written(headers: &mut Headers, f: &Forwarded<'_>) -> Vec<(String, String)> {
        let lines = set_headers(headers, f);
        let member = HeaderValue::from_static("fe1.example:443");
        let mut out = BytesMut::new();
        lines.write_headers(&mut out, headers, &member);
        // What `write_head` reserves: the client's lines as they are, and the room.
        let client: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        assert!(
            out.len() <= client + lines.room(&member),
            "the room reserved"
        );
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.ends_with("\r\n"), "{text:?}");
        text.split_terminator("\r\n")
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }

    fn forwarded<'a>(
        client_ip: &'a HeaderValue,
        host: &'a HeaderValue,
        id: &'a HeaderValue,
    ) -> Forwarded<'a> {
        Forwarded {
            client_ip,
            tls: true,
            host,
            request_id: id,
            preserve_host: false,
            multiplexed: false,
        }
    }

    #[test]
    fn x_forwarded_for_appends_the_client_to_every_line_joined() {
        let forwarded_for = |lines: &[&'static str]| {
            let mut headers = Headers::default();
            for line in lines {
                headers.append("x-forwarded-for", line.as_bytes());
            }
            let (ip, unset) = (
                HeaderValue::from_static("192.0.2.9"),
                HeaderValue::from_static(""),
            );
            let got: Vec<String> = written(&mut headers, &forwarded(&ip, &unset, &unset))
                .into_iter()
                .filter(|(name, _)| name == "x-forwarded-for")
                .map(|(_, value)| value)
                .collect();
            got
        };
        assert_eq!(forwarded_for(&[]), ["192.0.2.9"]);
        assert_eq!(
            forwarded_for(&["10.0.0.1, 10.0.0.2", " ", "10.0.0.3"]),
            ["10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.9"]
        );
    }

    /// The client's own lines of the names ringfence sets are replaced, not sent beside its
    /// own; Host comes first, the client's other lines follow in their order.
    #[test]
    fn the_lines_ringfence_sets_replace_the_clients() {
        let mut headers = Headers::default();
        for (name, value) in [
            ("host", "evil.example"),
            ("x-a", "1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-request-id", "theirs"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-b", "2"),
            ("x_forwarded_host", "evil.example"),
            ("x_forwarded_for", "10.6.6.6"),
            ("x_request_id", "theirs"),
            ("x-a", "3"),
        ] {
            headers.append(name, value.as_bytes());
        }
        let (ip, host, id) = (
            HeaderValue::from_static("192.0.2.9"),
            HeaderValue::from_static("lyncweb.contoso.com"),
            HeaderValue::from_static("ours"),
        );
        let mut f = forwarded(&ip, &host, &id);
        f.tls = false;
        let lines = written(&mut headers.clone(), &f);
        let pairs: Vec<(&str, &str)> = lines
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("host", "fe1.example:443"),
                ("x-a", "1"),
                ("x-b", "2"),
                ("x-a", "3"),
                ("x-forwarded-for", "10.0.0.1, 192.0.2.9"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "lyncweb.contoso.com"),
                ("x-request-id", "ours"),
            ]
        );
        // Host as judged with `preserve_host`; the member's when there is none to keep (an
        // HTTP/1.0 request without one).
        f.preserve_host = true;
        let kept = written(&mut headers.clone(), &f);
        assert_eq!(kept[0], ("host".into(), "lyncweb.contoso.com".into()));
        assert_eq!(kept.iter().filter(|(n, _)| n == "host").count(), 1);
        let none = HeaderValue::from_static("");
        f.host = &none;
        let member = written(&mut headers.clone(), &f);
        assert_eq!(member[0], ("host".into(), "fe1.example:443".into()));
        assert!(
            !member.iter().any(|(n, _)| n == "x-forwarded-host"),
            "no host was named, so none is forwarded (nor the client's): {member:?}"
        );
        f.tls = true;
        let proto = written(&mut headers, &f);
        assert!(proto.contains(&("x-forwarded-proto".into(), "https".into())));
    }

    /// Another attempt's lines are copies: none is a slice of the buffer the client's head was
    /// read into (issue 16), and they write the same bytes.
    #[test]
    fn detached_lines_write_the_same_and_own_their_bytes() {
        let head = bytes::Bytes::from_static(b"lyncweb.contoso.com abc123");
        let host = HeaderValue::from_maybe_shared(head.slice(0..19)).unwrap();
        let id = HeaderValue::from_maybe_shared(head.slice(20..)).unwrap();
        let ip = HeaderValue::from_static("192.0.2.9");
        let headers = Headers::default();
        let lines = set_headers(&mut headers.clone(), &forwarded(&ip, &host, &id));
        let copy = lines.detached();
        let member = HeaderValue::from_static("fe1.example:443");
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        lines.write_headers(&mut a, &headers, &member);
        copy.write_headers(&mut b, &headers, &member);
        assert_eq!(a, b);
        let within = |v: &HeaderValue| {
            let range = head.as_ptr() as usize..head.as_ptr() as usize + head.len();
            range.contains(&(v.as_bytes().as_ptr() as usize))
        };
        assert!(within(&lines.host) && within(&lines.request_id));
        assert!(!within(&copy.host) && !within(&copy.request_id));
    }
}
