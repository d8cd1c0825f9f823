//! The PROXY protocol header (v1 text, v2 binary) that an L4 load balancer sends before the
//! client's bytes, on a listener named in `server.proxy_protocol`: it says who the TCP client is.
//!
//! Exactly the header's bytes are consumed: what follows (a TLS ClientHello, the HTTP/2 preface
//! that [`super::opening`] peeks at) stays in the socket. The bytes are peeked, and only those
//! known to belong to the header are read; the header is bounded (v1: 107 bytes, its
//! specification's limit; v2: [`V2_MAX`]). The `ppp` crate parses it once framed.

use std::io;
use std::net::SocketAddr;

use ppp::{v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature: 12 bytes no HTTP or TLS client begins with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v2 fixed part: signature, version and command, family and protocol, length.
const V2_FIXED: usize = 16;
/// The largest v2 header taken (nginx's bound): addresses and a few TLVs (AWS and GCP add an
/// endpoint id) fit with room; a longer one is refused rather than buffered.
const V2_MAX: usize = 4096;
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The v1 specification's longest line, CRLF included.
const V1_MAX: usize = 107;

/// Why a connection on a PROXY protocol listener was closed before TLS or HTTP.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// Not an error: a TCP health check (an L4 load balancer's or an orchestrator's probe)
    /// connects and closes without a byte.
    #[error("the connection closed without sending anything")]
    NothingSent,
    #[error("the connection closed before a complete PROXY protocol header")]
    Closed,
    #[error("no valid PROXY protocol header")]
    Invalid,
    #[error("no PROXY protocol header within server.header_read_timeout")]
    TimedOut,
    #[error("reading the PROXY protocol header")]
    Read(#[from] io::Error),
}

/// How much of a connection's first bytes a header takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Complete {
        len: usize,
        v2: bool,
    },
    /// Every byte so far may belong to a header that is not complete yet.
    Incomplete,
    Invalid,
}

fn framing(bytes: &[u8]) -> Framing {
    if bytes.starts_with(V2_SIGNATURE) {
        let Some(length) = bytes.get(14..V2_FIXED) else {
            return Framing::Incomplete;
        };
        let len = V2_FIXED + usize::from(u16::from_be_bytes([length[0], length[1]]));
        return match len {
            len if len > V2_MAX => Framing::Invalid,
            len if bytes.len() >= len => Framing::Complete { len, v2: true },
            _ => Framing::Incomplete,
        };
    }
    if bytes.starts_with(V1_PREFIX) {
        let line = &bytes[..bytes.len().min(V1_MAX)];
        return match line.windows(2).position(|w| w == b"\r\n") {
            Some(end) => Framing::Complete {
                len: end + 2,
                v2: false,
            },
            None if bytes.len() >= V1_MAX => Framing::Invalid,
            None => Framing::Incomplete,
        };
    }
    if V2_SIGNATURE.starts_with(bytes) || V1_PREFIX.starts_with(bytes) {
        Framing::Incomplete
    } else {
        Framing::Invalid
    }
}

/// The source address the header gives; None when it names none to use (v1 `UNKNOWN`, v2
/// `LOCAL` such as a load balancer's health check, or a non-IP family): the peer is the client.
fn source(header: &[u8], is_v2: bool) -> Result<Option<SocketAddr>, HeaderError> {
    if is_v2 {
        let header = v2::Header::try_from(header).map_err(|_| HeaderError::Invalid)?;
        Ok(match (header.command, header.addresses) {
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (v2::Command::Local, _)
            | (v2::Command::Proxy, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
        })
    } else {
        let header = v1::Header::try_from(header).map_err(|_| HeaderError::Invalid)?;
        Ok(match header.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Unknown => None,
        })
    }
}

/// Reads the header at the start of `stream` and nothing after it. The caller bounds the time.
pub(super) async fn read(stream: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    let mut header: Vec<u8> = Vec::with_capacity(V1_MAX);
    let mut window = vec![0u8; V2_MAX];
    loop {
        let peeked = match stream.peek(&mut window[..V2_MAX - header.len()]).await {
            Ok(n) => n,
            // HAProxy ends its checks with a reset (SO_LINGER 0), not a close.
            Err(e) if header.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e.into()),
        };
        if peeked == 0 && header.is_empty() {
            return Err(HeaderError::NothingSent);
        }
        if peeked == 0 {
            return Err(HeaderError::Closed);
        }
        let consumed = header.len();
        header.extend_from_slice(&window[..peeked]);
        match framing(&header) {
            Framing::Complete { len, v2 } => {
                stream.read_exact(&mut window[..len - consumed]).await?;
                header.truncate(len);
                return source(&header, v2);
            }
            // None of these bytes can be past the header's end: take them, wait for more.
            Framing::Incomplete => {
                stream.read_exact(&mut window[..peeked]).await?;
            }
            Framing::Invalid => return Err(HeaderError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        let len = (addresses.len() + tlvs.len()) as u16;
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    const V4_ADDRESSES: [u8; 12] = [192, 0, 2, 7, 10, 0, 0, 1, 0x12, 0x67, 0x01, 0xbb];

    #[test]
    fn framing_finds_the_end_of_each_version_and_nothing_past_it() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 4711 443\r\n";
        let mut stream = line.to_vec();
        stream.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            framing(&stream),
            Framing::Complete {
                len: line.len(),
                v2: false
            }
        );
        let header = v2(1, 0x11, &V4_ADDRESSES, &[0x04, 0x00, 0x01, 0x00]);
        let mut stream = header.clone();
        stream.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            framing(&stream),
            Framing::Complete {
                len: header.len(),
                v2: true
            }
        );
        for cut in 0..header.len() {
            assert_eq!(
                framing(&header[..cut]),
                Framing::Incomplete,
                "v2 cut at {cut}"
            );
        }
        for cut in 0..line.len() {
            assert_eq!(
                framing(&line[..cut]),
                Framing::Incomplete,
                "v1 cut at {cut}"
            );
        }
    }

    #[test]
    fn framing_refuses_other_protocols_and_oversized_headers_early() {
        assert_eq!(framing(b"GET / HTTP/1.1\r\n"), Framing::Invalid);
        assert_eq!(framing(b"PRI * HTTP/2.0"), Framing::Invalid);
        assert_eq!(framing(b"\x16\x03\x01\x02\x00"), Framing::Invalid);
        assert_eq!(framing(b"PROXZ"), Framing::Invalid);
        let long = [b"PROXY ".as_slice(), &[b'x'; 101]].concat();
        assert_eq!(framing(&long), Framing::Invalid, "107 bytes and no CRLF");
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11]);
        huge.extend_from_slice(&((V2_MAX - V2_FIXED + 1) as u16).to_be_bytes());
        assert_eq!(
            framing(&huge),
            Framing::Invalid,
            "the length alone is too much"
        );
    }

    #[test]
    fn the_source_is_the_headers_or_none_for_local_and_unknown() {
        let v1_line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n";
        assert_eq!(
            source(v1_line, false).unwrap(),
            Some("[2001:db8::7]:4711".parse().unwrap())
        );
        assert_eq!(source(b"PROXY UNKNOWN\r\n", false).unwrap(), None);
        let proxy = v2(1, 0x11, &V4_ADDRESSES, &[]);
        assert_eq!(
            source(&proxy, true).unwrap(),
            Some("192.0.2.7:4711".parse().unwrap())
        );
        assert_eq!(source(&v2(0, 0x00, &[], &[]), true).unwrap(), None, "LOCAL");
        assert!(source(b"PROXY TCP4 nonsense 10.0.0.1 1 2\r\n", false).is_err());
        assert!(
            source(&v2(1, 0x11, &V4_ADDRESSES[..8], &[]), true).is_err(),
            "short"
        );
    }
}
