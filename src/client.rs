//! Who the client is: the connection's address, or, when that is a trusted proxy
//! (`server.trusted_proxies`), the rightmost `X-Forwarded-For` address that is not one (SPEC §12
//! "Client address"), as nginx's `real_ip_recursive on` reads it.
//!
//! The walk goes right to left over every `X-Forwarded-For` line, lines in order, entries
//! comma-separated: each trusted address hands on to the one before it. It stops at
//! - an address that is not trusted: the client;
//! - an entry that is not an address: the last good address (a trusted proxy that wrote, or
//!   passed on, garbage), as nginx keeps the address it had when an entry does not parse;
//! - the left end, every entry trusted: the leftmost address.
//!
//! Only a trusted proxy's headers are read: anything left of the first untrusted address may be
//! the client's own invention.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::request::Headers;

/// A CIDR block, e.g. `10.0.0.0/8`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR block does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("not an IP address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`)")]
    Syntax,
    #[error("the prefix length must be at most {max}")]
    Prefix { max: u8 },
    #[error("address bits are set past the prefix length: did you mean `{0}`?")]
    HostBits(Cidr),
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (address, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = address.parse().map_err(|_| CidrError::Syntax)?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| CidrError::Prefix { max })?
            }
            Some(_) => return Err(CidrError::Syntax),
        };
        if prefix > max {
            return Err(CidrError::Prefix { max });
        }
        let cidr = Cidr { network, prefix };
        let (first, _) = cidr.range();
        let masked = Cidr {
            network: match network {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(first as u32)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(first)),
            },
            prefix,
        };
        if masked != cidr {
            return Err(CidrError::HostBits(masked));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// The first and last address of the block, as integers of its family.
    fn range(&self) -> (u128, u128) {
        let (value, bits) = match self.network {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        let host_bits = bits - u32::from(self.prefix);
        let span = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let first = value & !span;
        (first, first | span)
    }
}

/// The trusted proxies, as sorted, merged address ranges per family: a lookup is a binary
/// search, whatever the list's length, and an empty list is one length check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl TrustedProxies {
    pub fn new(blocks: impl IntoIterator<Item = Cidr>) -> TrustedProxies {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for block in blocks {
            let family = if block.network.is_ipv4() {
                &mut v4
            } else {
                &mut v6
            };
            family.push(block.range());
        }
        TrustedProxies {
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` is a trusted proxy; an IPv4-mapped IPv6 address is read as its IPv4 one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (ranges, value) = match ip.to_canonical() {
            IpAddr::V4(a) => (&self.v4, u128::from(u32::from(a))),
            IpAddr::V6(a) => (&self.v6, u128::from(a)),
        };
        // The last range starting at or before `value` is the only one that may hold it.
        let after = ranges.partition_point(|&(first, _)| first <= value);
        after > 0 && value <= ranges[after - 1].1
    }

    /// The request's client: `connection` (the peer, or the PROXY protocol's source), unless
    /// it is a trusted proxy, then the walk of the module documentation over every
    /// `X-Forwarded-For` line of `headers` (looked up only then).
    pub fn client(&self, connection: IpAddr, headers: &Headers) -> IpAddr {
        if self.is_empty() || !self.contains(connection) {
            return connection;
        }
        let mut client = connection;
        for line in headers.get_all("x-forwarded-for").rev() {
            let Some(line) = crate::request::visible(line) else {
                return client;
            };
            for entry in line.rsplit(',').map(str::trim).filter(|e| !e.is_empty()) {
                let Some(ip) = address(entry) else {
                    return client;
                };
                client = ip.to_canonical();
                if !self.contains(client) {
                    return client;
                }
            }
        }
        client
    }
}

/// Ranges sorted by their start, overlapping and adjacent ones joined.
fn merged(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
            _ => out.push((first, last)),
        }
    }
    out
}

/// An `X-Forwarded-For` entry: an address, or one with a port (`192.0.2.7:4711`,
/// `[2001:db8::7]:4711`), as some proxies write it.
fn address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(blocks.iter().map(|b| b.parse::<Cidr>().unwrap()))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client_of(proxies: &TrustedProxies, peer: &str, lines: &[&str]) -> IpAddr {
        let mut headers = Headers::default();
        for line in lines {
            headers.append("x-forwarded-for", line.as_bytes());
        }
        proxies.client(ip(peer), &headers)
    }

    #[test]
    fn blocks_parse_strictly() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!("::/0".parse::<Cidr>().unwrap().to_string(), "::/0");
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>(),
            Err(CidrError::HostBits("10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix { max: 32 })
        );
        assert_eq!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::Prefix { max: 128 })
        );
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "lb.local",
            "10.0.0.0/8/8",
        ] {
            assert_eq!(bad.parse::<Cidr>(), Err(CidrError::Syntax), "{bad}");
        }
    }

    #[test]
    fn membership_is_exact_at_block_edges_in_both_families() {
        let t = trusted(&["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "::1"]);
        for inside in [
            "10.0.0.0",
            "10.255.255.255",
            "192.168.1.77",
            "2001:db8:ffff::1",
            "::1",
        ] {
            assert!(t.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "9.255.255.255",
            "11.0.0.0",
            "192.168.2.0",
            "2001:db9::",
            "::2",
            "::",
        ] {
            assert!(!t.contains(ip(outside)), "{outside}");
        }
        assert!(
            t.contains(ip("::ffff:10.1.2.3")),
            "an IPv4-mapped address is its IPv4 one"
        );
        assert!(!TrustedProxies::default().contains(ip("10.0.0.1")));
        let all = trusted(&["0.0.0.0/0", "::/0"]);
        assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("ffff::1")));
    }

    #[test]
    fn overlapping_and_adjacent_blocks_are_merged() {
        let t = trusted(&["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "10.0.3.0/24"]);
        assert_eq!(t.v4.len(), 2, "{:?}", t.v4);
        assert!(t.contains(ip("10.0.1.255")));
        assert!(!t.contains(ip("10.0.2.0")));
        assert!(t.contains(ip("10.0.3.1")));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            client_of(&t, "203.0.113.9", &["198.51.100.1"]),
            ip("203.0.113.9")
        );
        let none = TrustedProxies::default();
        assert_eq!(
            client_of(&none, "10.0.0.1", &["198.51.100.1"]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client_over_every_line() {
        let t = trusted(&["10.0.0.0/8", "::1"]);
        // The leftmost entries are the client's to invent: never read past the first untrusted.
        assert_eq!(
            client_of(
                &t,
                "10.0.0.1",
                &["1.1.1.1, 198.51.100.7", "10.0.0.2 , 10.0.0.3"]
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_of(&t, "::1", &["2001:db8::9", "10.9.9.9"]),
            ip("2001:db8::9")
        );
        assert_eq!(
            client_of(&t, "10.0.0.1", &["[2001:db8::9]:4711"]),
            ip("2001:db8::9")
        );
        assert_eq!(
            client_of(&t, "10.0.0.1", &["192.0.2.1:80"]),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn with_every_entry_trusted_the_leftmost_is_the_client() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            client_of(&t, "10.0.0.1", &["10.0.0.5, 10.0.0.6"]),
            ip("10.0.0.5")
        );
        assert_eq!(client_of(&t, "10.0.0.1", &[]), ip("10.0.0.1"));
        assert_eq!(client_of(&t, "10.0.0.1", &[" , ,"]), ip("10.0.0.1"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_good_address() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            client_of(&t, "10.0.0.1", &["198.51.100.7, unknown, 10.0.0.2"]),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_of(&t, "10.0.0.1", &["198.51.100.7", "_hidden"]),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_of(&t, "10.0.0.1", &["garbage, 198.51.100.7"]),
            ip("198.51.100.7"),
            "garbage left of the client is never read"
        );
        let mut headers = Headers::default();
        headers.append("x-forwarded-for", b"\xff1.2.3.4");
        assert_eq!(t.client(ip("10.0.0.1"), &headers), ip("10.0.0.1"));
    }
}
