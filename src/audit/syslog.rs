//! The audit trail's syslog sink (SPEC §9): RFC 5424 messages to the local socket, or over TCP
//! with RFC 6587 octet counting to a collector (the SIEM).
//!
//! Blocking, on purpose: it runs on the audit writer's own thread, never on the runtime. A batch
//! goes in, and how many of its lines were handed over comes out, so the caller keeps the rest
//! and retries them later; connecting and reconnecting happen inside [`Syslog::send`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use rustix::io::Errno;

/// How long connecting to a collector, and each write to it, may block the audit writer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Where the messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A local socket such as `/dev/log`: datagrams, or a stream if the socket is one.
    Unix(PathBuf),
    /// A collector's `host:port`, resolved at each connection.
    Tcp(String),
}

impl FromStr for Address {
    type Err = String;

    /// `unix:///dev/log`, `unix:/dev/log` or `tcp://host:port` (`[v6]:port` for IPv6).
    fn from_str(s: &str) -> Result<Address, String> {
        if let Some(rest) = s.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(format!(
                    "{s:?}: a unix address takes an absolute path, as in unix:///dev/log"
                ));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("tcp://") {
            let Some((host, port)) = rest.rsplit_once(':') else {
                return Err(format!(
                    "{s:?}: a tcp address needs a port, as in tcp://host:6514"
                ));
            };
            let bracketed = host.starts_with('[') && host.ends_with(']');
            if host.is_empty() || host.contains('/') || (host.contains(':') && !bracketed) {
                return Err(format!(
                    "{s:?}: expected tcp://host:port (an IPv6 address in brackets)"
                ));
            }
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("{s:?}: the port must be 1 to 65535"));
            }
            return Ok(Address::Tcp(rest.to_owned()));
        }
        Err(format!(
            "{s:?}: expected unix:///path/to/socket or tcp://host:port"
        ))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::Tcp(hostport) => write!(f, "tcp://{hostport}"),
        }
    }
}

/// The facilities a user-space program may log under (RFC 5424 §6.2.1; `kern` is the kernel's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facility {
    User = 1,
    Mail = 2,
    Daemon = 3,
    Auth = 4,
    Syslog = 5,
    Lpr = 6,
    News = 7,
    Uucp = 8,
    Cron = 9,
    Authpriv = 10,
    Ftp = 11,
    Local0 = 16,
    Local1 = 17,
    Local2 = 18,
    Local3 = 19,
    Local4 = 20,
    Local5 = 21,
    Local6 = 22,
    Local7 = 23,
}

const FACILITIES: [(&str, Facility); 19] = [
    ("user", Facility::User),
    ("mail", Facility::Mail),
    ("daemon", Facility::Daemon),
    ("auth", Facility::Auth),
    ("syslog", Facility::Syslog),
    ("lpr", Facility::Lpr),
    ("news", Facility::News),
    ("uucp", Facility::Uucp),
    ("cron", Facility::Cron),
    ("authpriv", Facility::Authpriv),
    ("ftp", Facility::Ftp),
    ("local0", Facility::Local0),
    ("local1", Facility::Local1),
    ("local2", Facility::Local2),
    ("local3", Facility::Local3),
    ("local4", Facility::Local4),
    ("local5", Facility::Local5),
    ("local6", Facility::Local6),
    ("local7", Facility::Local7),
];

impl FromStr for Facility {
    type Err = String;

    fn from_str(s: &str) -> Result<Facility, String> {
        FACILITIES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|&(_, f)| f)
            .ok_or_else(|| {
                let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
                format!("{s:?} is not a facility; one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = FACILITIES.iter().find(|(_, x)| x == self).map(|(n, _)| *n);
        f.write_str(name.unwrap_or("?"))
    }
}

/// RFC 5424 §6.2.1 severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Emergency = 0,
    Alert = 1,
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// One line of the trail as a syslog message.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub severity: Severity,
    /// What kind of line (`decision`, `outcome`, `config`): printable ASCII, at most 32 bytes;
    /// anything else is replaced by `_` and cut, so the header always parses.
    pub msgid: &'a str,
    pub ts: SystemTime,
    /// The JSON line, without its newline. Sent as is (UTF-8 without a BOM, see [`Syslog`]).
    pub text: &'a str,
}

/// A batch that was sent only in part: `lines[..sent]` were handed to the collector (the kernel
/// accepted them), `lines[sent..]` were not.
#[derive(Debug, thiserror::Error)]
#[error("{error} ({sent} sent)")]
pub struct Partial {
    pub sent: usize,
    pub error: SendError,
}

/// Why a batch stopped. [`SendError::line_at_fault`] tells whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The collector could not be reached or the connection failed; the connection is dropped
    /// and the next call reconnects. `lines[sent..]` may be retried.
    #[error("syslog {address}: {error}")]
    Transport { address: String, error: io::Error },
    /// `lines[sent]` is larger than the local socket takes in one datagram (`EMSGSIZE`). It can
    /// never be sent there: the caller drops it (counting it) and sends `lines[sent + 1..]`.
    #[error("syslog {address}: a message of {len} bytes is too large for one datagram: {error}")]
    TooLarge {
        address: String,
        len: usize,
        error: io::Error,
    },
    /// `lines[sent]` contains a line feed, which would split it in two on a newline-framed
    /// stream socket. It can never be sent there: the caller drops it and sends the rest.
    #[error(
        "syslog {address}: a message containing a line feed cannot be framed on a stream socket"
    )]
    LineFeed { address: String },
}

impl SendError {
    /// True when `lines[sent]` itself cannot be sent on this transport, so retrying it would
    /// wedge the sink; false when the transport failed and the same lines may be retried.
    pub fn line_at_fault(&self) -> bool {
        match self {
            SendError::Transport { .. } => false,
            SendError::TooLarge { .. } | SendError::LineFeed { .. } => true,
        }
    }
}

/// A blocking RFC 5424 client.
///
/// Framing by transport:
/// - TCP: RFC 6587 octet counting (`LEN SP MSG`), the whole batch in one write, so a message
///   may contain any byte, line feeds included.
/// - A local datagram socket (rsyslog's imuxsock, journald's `/dev/log`): one datagram per
///   message, no framing. A message over the socket's datagram limit fails alone
///   ([`SendError::TooLarge`]).
/// - A local stream socket (a connect as a datagram socket failed with `EPROTOTYPE`, as with
///   syslog-ng's `unix-stream()`): each message ends with a line feed (RFC 6587 §3.4.2), which
///   is what stream `/dev/log` readers expect (syslog-ng's `unix-stream()` does not read octet
///   counts; rsyslog's imptcp reads both). A message containing a line feed is refused
///   ([`SendError::LineFeed`]); the trail's JSON lines never contain one.
///
/// MSG is the text without a byte-order mark: RFC 5424 allows that (MSG-ANY), and collectors
/// keep a BOM as part of the text, which would spoil the JSON for the SIEM.
///
/// A stream connection whose peer has closed is noticed before each batch (a non-blocking
/// read that finds end of stream or an error), and replaced before anything is written into
/// it. What remains is a window: a peer that dies between that check and the write, or whose
/// host vanishes without a FIN or RST, takes the batch into the kernel's buffer and loses it;
/// the write reports success and `send` returns `Ok`. Only the next batch sees the failure.
/// A write that fails midway leaves a cut frame, which the collector may keep, cut; that
/// line is reported unsent and goes again whole. Acknowledged delivery needs RELP, which this
/// client does not speak.
#[derive(Debug)]
pub struct Syslog {
    address: Address,
    header: Header,
    conn: Option<Conn>,
    /// The batch's bytes, and where each message's frame ends in them.
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// One message, while its octet count is not yet known.
    message: Vec<u8>,
}

/// What every message's header shares.
#[derive(Debug)]
struct Header {
    facility: Facility,
    /// ` HOSTNAME APP-NAME PROCID `, sanitised once.
    fields: String,
}

#[derive(Debug)]
enum Conn {
    Tcp(TcpStream),
    Datagram(UnixDatagram),
    Stream(UnixStream),
}

impl Syslog {
    /// Does not connect yet: the first [`Syslog::send`] does. HOSTNAME is the kernel's host
    /// name, PROCID this process's id.
    pub fn new(address: Address, facility: Facility, app_name: &str) -> Syslog {
        let fields = format!(
            " {} {} {} ",
            field(&hostname(), 255),
            field(app_name, 48),
            std::process::id()
        );
        Syslog {
            address,
            header: Header { facility, fields },
            conn: None,
            buf: Vec::new(),
            ends: Vec::new(),
            message: Vec::new(),
        }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Sends each line as one message; see [`Syslog`] for framing and what "sent" can promise.
    pub fn send(&mut self, lines: &[Message<'_>]) -> Result<(), Partial> {
        if lines.is_empty() {
            return Ok(());
        }
        if self.conn.as_mut().is_some_and(|c| !c.alive()) {
            self.conn = None;
        }
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.connect().map_err(|error| self.transport(0, error))?,
        };
        match conn {
            Conn::Datagram(socket) => self.send_datagrams(socket, lines),
            Conn::Tcp(_) | Conn::Stream(_) => self.send_stream(conn, lines),
        }
    }

    fn send_datagrams(
        &mut self,
        mut socket: UnixDatagram,
        lines: &[Message<'_>],
    ) -> Result<(), Partial> {
        for (i, line) in lines.iter().enumerate() {
            self.buf.clear();
            self.header.write(&mut self.buf, line);
            let mut retried = false;
            loop {
                match socket.send(&self.buf) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.raw_os_error() == Some(Errno::MSGSIZE.raw_os_error()) => {
                        let len = self.buf.len();
                        self.conn = Some(Conn::Datagram(socket));
                        return Err(Partial {
                            sent: i,
                            error: SendError::TooLarge {
                                address: self.address.to_string(),
                                len,
                                error: e,
                            },
                        });
                    }
                    // The reader went away (rsyslog restarted and made a new socket); a
                    // datagram goes whole or not at all, so sending it again cannot duplicate it.
                    Err(e) if !retried && peer_gone(&e) => {
                        retried = true;
                        socket = match self.connect() {
                            Ok(Conn::Datagram(s)) => s,
                            Ok(other) => {
                                self.conn = Some(other);
                                return self.send(&lines[i..]).map_err(|p| Partial {
                                    sent: i + p.sent,
                                    error: p.error,
                                });
                            }
                            Err(error) => return Err(self.transport(i, error)),
                        };
                    }
                    Err(e) => return Err(self.transport(i, e)),
                }
            }
        }
        self.conn = Some(Conn::Datagram(socket));
        Ok(())
    }

    fn send_stream(&mut self, mut conn: Conn, lines: &[Message<'_>]) -> Result<(), Partial> {
        self.buf.clear();
        self.ends.clear();
        let mut refused = None;
        for (i, line) in lines.iter().enumerate() {
            match conn {
                Conn::Tcp(_) => {
                    self.message.clear();
                    self.header.write(&mut self.message, line);
                    let _ = write!(self.buf, "{} ", self.message.len());
                    self.buf.extend_from_slice(&self.message);
                }
                _ => {
                    if line.text.contains('\n') {
                        refused = Some(i);
                        break;
                    }
                    self.header.write(&mut self.buf, line);
                    self.buf.push(b'\n');
                }
            }
            self.ends.push(self.buf.len());
        }
        let mut written = 0;
        while written < self.buf.len() {
            let out: &mut dyn Write = match &mut conn {
                Conn::Tcp(s) => s,
                Conn::Stream(s) => s,
                Conn::Datagram(_) => unreachable!("datagrams are sent one by one"),
            };
            match out.write(&self.buf[written..]) {
                Ok(0) => {
                    let sent = self.ends.partition_point(|&end| end <= written);
                    return Err(self.transport(sent, io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let sent = self.ends.partition_point(|&end| end <= written);
                    return Err(self.transport(sent, e));
                }
            }
        }
        self.conn = Some(conn);
        match refused {
            None => Ok(()),
            Some(sent) => Err(Partial {
                sent,
                error: SendError::LineFeed {
                    address: self.address.to_string(),
                },
            }),
        }
    }

    fn connect(&self) -> io::Result<Conn> {
        match &self.address {
            Address::Tcp(hostport) => {
                let mut last = None;
                for addr in hostport.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, TIMEOUT) {
                        Ok(s) => {
                            s.set_nodelay(true)?;
                            s.set_write_timeout(Some(TIMEOUT))?;
                            return Ok(Conn::Tcp(s));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "the host name has no address")
                }))
            }
            Address::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                match socket.connect(path) {
                    Ok(()) => {
                        socket.set_write_timeout(Some(TIMEOUT))?;
                        Ok(Conn::Datagram(socket))
                    }
                    Err(e) if e.raw_os_error() == Some(Errno::PROTOTYPE.raw_os_error()) => {
                        let s = UnixStream::connect(path)?;
                        s.set_write_timeout(Some(TIMEOUT))?;
                        Ok(Conn::Stream(s))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn transport(&mut self, sent: usize, error: io::Error) -> Partial {
        self.conn = None;
        Partial {
            sent,
            error: SendError::Transport {
                address: self.address.to_string(),
                error,
            },
        }
    }
}

impl Header {
    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`, appended to `out`.
    fn write(&self, out: &mut Vec<u8>, line: &Message<'_>) {
        let pri = (self.facility as u8) * 8 + line.severity as u8;
        let ts = humantime::format_rfc3339_micros(line.ts);
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "<{pri}>1 {ts}{}{} - {}",
            self.fields,
            field(line.msgid, 32),
            line.text
        );
    }
}

impl Conn {
    /// False when a stream's peer has closed it or it failed: a syslog collector never writes,
    /// so a non-blocking read finds nothing (alive), end of stream or an error (gone). Bytes it
    /// did send would mean nothing to us, and are dropped. Datagram sockets have no such state.
    fn alive(&mut self) -> bool {
        fn probe(
            nonblocking: impl Fn(bool) -> io::Result<()>,
            read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
        ) -> bool {
            if nonblocking(true).is_err() {
                return false;
            }
            let alive = match read(&mut [0u8; 256]) {
                Ok(n) => n > 0,
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            };
            nonblocking(false).is_ok() && alive
        }
        match self {
            Conn::Datagram(_) => true,
            Conn::Tcp(s) => {
                let s = &*s;
                probe(|b| s.set_nonblocking(b), |buf| s.peek(buf))
            }
            Conn::Stream(s) => {
                let mut r = &*s;
                probe(|b| s.set_nonblocking(b), |buf| r.read(buf))
            }
        }
    }
}

fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected | io::ErrorKind::NotFound
    ) || e.raw_os_error() == Some(Errno::NOTCONN.raw_os_error())
}

/// A header field as RFC 5424 allows it: printable ASCII without spaces, 1 to `max` bytes, or
/// the NILVALUE `-` when nothing is left.
fn field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

/// The kernel's host name (the UTS namespace's, so a container's own), else `$HOSTNAME`,
/// else the NILVALUE.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(s: &Syslog, line: &Message<'_>) -> String {
        let mut out = Vec::new();
        s.header.write(&mut out, line);
        String::from_utf8(out).unwrap()
    }

    fn at(secs: u64, micros: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[test]
    fn a_message_has_the_rfc5424_header_with_pri_from_facility_and_severity() {
        let mut s = Syslog::new(Address::Tcp("h:1".into()), Facility::Local4, "ringfence");
        s.header.fields = " host ringfence 42 ".into();
        let line = Message {
            severity: Severity::Notice,
            msgid: "decision",
            ts: at(1_764_668_400, 123_456),
            text: r#"{"a":1}"#,
        };
        assert_eq!(
            formatted(&s, &line),
            r#"<165>1 2025-12-02T09:40:00.123456Z host ringfence 42 decision - {"a":1}"#
        );
    }

    #[test]
    fn header_fields_are_sanitised_so_the_header_always_parses() {
        assert_eq!(field("a b\u{e9}", 48), "a_b_");
        assert_eq!(field("", 48), "-");
        assert_eq!(field(&"x".repeat(40), 32).len(), 32);
        let s = Syslog::new(Address::Tcp("h:1".into()), Facility::User, "ring fence");
        assert!(
            s.header.fields.contains(" ring_fence "),
            "{}",
            s.header.fields
        );
        let line = Message {
            severity: Severity::Debug,
            msgid: "",
            ts: at(0, 0),
            text: "",
        };
        assert!(formatted(&s, &line).starts_with("<15>1 1970-01-01T00:00:00.000000Z "));
        assert!(formatted(&s, &line).ends_with(" - - "));
    }

    #[test]
    fn addresses_parse_from_their_urls() {
        assert_eq!(
            "unix:///dev/log".parse(),
            Ok(Address::Unix("/dev/log".into()))
        );
        assert_eq!(
            "unix:/run/x.sock".parse(),
            Ok(Address::Unix("/run/x.sock".into()))
        );
        assert_eq!(
            "tcp://siem.example:6514".parse(),
            Ok(Address::Tcp("siem.example:6514".into()))
        );
        assert_eq!(
            "tcp://[::1]:514".parse(),
            Ok(Address::Tcp("[::1]:514".into()))
        );
        for bad in [
            "unix:dev/log",
            "unix://",
            "tcp://host",
            "tcp://host:0",
            "tcp://host:65536",
            "tcp://:514",
            "tcp://::1:514",
            "tcp://host/x:514",
            "udp://host:514",
            "/dev/log",
        ] {
            let e = bad.parse::<Address>().unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        assert_eq!(
            Address::Unix("/dev/log".into()).to_string(),
            "unix:///dev/log"
        );
    }

    #[test]
    fn facilities_parse_by_name_and_kern_is_refused() {
        assert_eq!("local0".parse(), Ok(Facility::Local0));
        assert_eq!("local7".parse(), Ok(Facility::Local7));
        assert_eq!("authpriv".parse(), Ok(Facility::Authpriv));
        assert_eq!(Facility::Local3 as u8, 19);
        for (name, f) in FACILITIES {
            assert_eq!(name.parse(), Ok(f));
            assert_eq!(f.to_string(), name);
        }
        let e = "kern".parse::<Facility>().unwrap_err();
        assert!(e.contains("local7"), "{e}");
        assert!("LOCAL0".parse::<Facility>().is_err());
    }

    #[test]
    fn a_line_feed_is_refused_on_a_newline_framed_stream_and_the_rest_still_goes() {
        let dir = std::env::temp_dir().join(format!("ringfence-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stream.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut s = Syslog::new(Address::Unix(path.clone()), Facility::User, "r");
        let msg = |text| Message {
            severity: Severity::Info,
            msgid: "m",
            ts: at(0, 0),
            text,
        };
        let e = s
            .send(&[msg("one"), msg("two\nlines"), msg("three")])
            .unwrap_err();
        assert_eq!(e.sent, 1);
        assert!(e.error.line_at_fault(), "{e}");
        s.send(&[msg("three")]).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        drop(s);
        let mut got = String::new();
        peer.read_to_string(&mut got).unwrap();
        let texts: Vec<&str> = got
            .lines()
            .map(|l| l.rsplit(" - ").next().unwrap())
            .collect();
        assert_eq!(texts, ["one", "three"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
