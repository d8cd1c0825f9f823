//! systemd's service notification protocol (sd_notify(3)), for `Type=notify` and
//! `Type=notify-reload` units: `READY=1` once every listener serves, `RELOADING=1` (with
//! `MONOTONIC_USEC`) then `READY=1` around a reload, `STOPPING=1` when the drain begins, and
//! `STATUS=` lines a `systemctl status` shows. Without `NOTIFY_SOCKET` every call does nothing.

use std::os::unix::net::UnixDatagram;

/// Sends one notification; failures are logged at debug and otherwise ignored, as sd_notify's
/// are: a service must not fail because its supervisor stopped listening.
pub fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&path, state) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

fn send_to(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // A leading '@' names a socket in Linux's abstract namespace.
    #[cfg(target_os = "linux")]
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
        return Ok(());
    }
    socket.send_to(state.as_bytes(), path)?;
    Ok(())
}

pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// Before a reload; systemd (`Type=notify-reload`) waits for the next `READY=1`.
pub fn reloading() {
    send(&format!(
        "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
        monotonic_usec()
    ));
}

pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining");
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares reload requests with.
fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}
