//! The listening sockets. An IPv6 wildcard is IPv6-only, so that `0.0.0.0:p` and `[::]:p` can
//! both be configured, as operators expect (the container image's default does). Containers often
//! run where the kernel has IPv6 disabled: there an IPv6 wildcard is skipped with a warning, as
//! long as another client listener bound, instead of failing the whole start.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::StartError;

/// EAFNOSUPPORT, what opening an IPv6 socket fails with when the kernel has no IPv6 (std has no
/// `ErrorKind` for it; EADDRNOTAVAIL, the other such error, is `AddrNotAvailable`).
#[cfg(any(target_os = "linux", target_os = "android"))]
const EAFNOSUPPORT: i32 = 97;
#[cfg(windows)]
const EAFNOSUPPORT: i32 = 10047;
#[cfg(not(any(target_os = "linux", target_os = "android", windows)))]
const EAFNOSUPPORT: i32 = 47;

/// Binds every client-facing address, in order. An IPv6 wildcard that fails only because the host
/// has no IPv6 ([`no_ipv6`]) is skipped with a warning when at least one other address bound;
/// with nothing else bound it stays a start-up error, like any other bind failure. Each listener
/// comes with the address it was configured as (port 0 included), which its settings name.
pub(super) fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<(SocketAddr, TcpListener)>, StartError> {
    bind_each(addrs, |addr| bind(addr).map(|listener| (addr, listener)))
}

/// [`bind_all`] with the socket opening passed in, so the decision is testable without a host
/// that lacks IPv6.
fn bind_each<L>(
    addrs: &[SocketAddr],
    mut bind: impl FnMut(SocketAddr) -> io::Result<L>,
) -> Result<Vec<L>, StartError> {
    let mut bound = Vec::with_capacity(addrs.len());
    let mut skipped = Vec::new();
    for &addr in addrs {
        match bind(addr) {
            Ok(listener) => bound.push(listener),
            Err(source) if no_ipv6(addr, &source) => skipped.push((addr, source)),
            Err(source) => return Err(StartError::Bind { addr, source }),
        }
    }
    if bound.is_empty() {
        if let Some((addr, source)) = skipped.into_iter().next() {
            return Err(StartError::Bind { addr, source });
        }
        return Ok(bound);
    }
    for (addr, source) in skipped {
        tracing::warn!(%addr, error = %source, "no IPv6 on this host: not listening on {addr}");
    }
    Ok(bound)
}

/// Whether opening `addr` failed only because the host has no IPv6: the socket cannot be created
/// (EAFNOSUPPORT) or the wildcard cannot be bound (EADDRNOTAVAIL). Only an IPv6 *wildcard* is
/// forgiven: a specific IPv6 address that cannot be bound is a configuration error.
fn no_ipv6(addr: SocketAddr, error: &io::Error) -> bool {
    addr.is_ipv6()
        && addr.ip().is_unspecified()
        && (error.kind() == io::ErrorKind::AddrNotAvailable
            || error.raw_os_error() == Some(EAFNOSUPPORT))
}

/// A listening socket; an IPv6 address is IPv6-only (see the module documentation).
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "0.0.0.0:8443";
    const V6: &str = "[::]:8443";

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    /// Binds IPv4 addresses; every IPv6 address fails with `error`.
    fn without_ipv6(error: fn() -> io::Error) -> impl FnMut(SocketAddr) -> io::Result<SocketAddr> {
        move |addr| {
            if addr.is_ipv6() {
                Err(error())
            } else {
                Ok(addr)
            }
        }
    }

    fn eafnosupport() -> io::Error {
        io::Error::from_raw_os_error(EAFNOSUPPORT)
    }

    fn eaddrnotavail() -> io::Error {
        io::Error::from(io::ErrorKind::AddrNotAvailable)
    }

    fn failed_at(result: Result<Vec<SocketAddr>, StartError>) -> (SocketAddr, io::ErrorKind) {
        match result {
            Err(StartError::Bind { addr, source }) => (addr, source.kind()),
            other => panic!("expected a bind error, got {other:?}"),
        }
    }

    #[test]
    fn an_ipv6_wildcard_is_skipped_without_ipv6_when_another_listener_bound() {
        for error in [eafnosupport as fn() -> io::Error, eaddrnotavail] {
            for order in [[V4, V6], [V6, V4]] {
                let bound = bind_each(&addrs(&order), without_ipv6(error)).expect("starts");
                assert_eq!(bound, addrs(&[V4]), "{order:?}, {:?}", error());
            }
        }
    }

    #[test]
    fn an_ipv6_wildcard_alone_without_ipv6_is_a_start_up_error() {
        for error in [eafnosupport as fn() -> io::Error, eaddrnotavail] {
            let (addr, _) = failed_at(bind_each(&addrs(&[V6]), without_ipv6(error)));
            assert_eq!(addr, V6.parse().unwrap());
            let (addr, _) = failed_at(bind_each(&addrs(&[V6, "[::]:8444"]), without_ipv6(error)));
            assert_eq!(addr, V6.parse().unwrap(), "the first one is named");
        }
    }

    #[test]
    fn only_an_ipv6_wildcard_and_only_a_missing_ipv6_are_forgiven() {
        // A specific IPv6 address that cannot be bound is a configuration error.
        let (addr, _) = failed_at(bind_each(
            &addrs(&[V4, "[::1]:8443"]),
            without_ipv6(eaddrnotavail),
        ));
        assert_eq!(addr, "[::1]:8443".parse().unwrap());
        // Other failures of the wildcard are errors too.
        for kind in [io::ErrorKind::AddrInUse, io::ErrorKind::PermissionDenied] {
            let (addr, got) = failed_at(bind_each(&addrs(&[V4, V6]), |addr: SocketAddr| {
                if addr.is_ipv6() {
                    Err(io::Error::from(kind))
                } else {
                    Ok(addr)
                }
            }));
            assert_eq!((addr, got), (V6.parse().unwrap(), kind));
        }
        // An IPv4 address is never skipped.
        let (addr, _) = failed_at(bind_each(&addrs(&[V6, V4]), |addr: SocketAddr| {
            if addr.is_ipv4() {
                Err(eafnosupport())
            } else {
                Ok(addr)
            }
        }));
        assert_eq!(addr, V4.parse().unwrap());
    }

    #[test]
    fn the_real_ipv6_wildcard_is_ipv6_only() {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            eprintln!("no IPv6 on this machine: skipped");
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let v6 = bind("[::]:0".parse().unwrap()).expect("[::]:0");
            let port = v6.local_addr().unwrap().port();
            // The IPv4 wildcard on the same port is free: the IPv6 socket does not take it.
            bind(SocketAddr::from(([0, 0, 0, 0], port))).expect("0.0.0.0 on the same port");
        });
    }
}
