//! A real rsyslogd (Debian's `rsyslog`) run as the current user from its own temp dir: imtcp on
//! a free loopback port, imuxsock on a datagram socket and imptcp on a stream socket in that
//! dir, every message written as one JSON line of its parsed fields, so a test sees what a SIEM
//! behind rsyslog would.
//!
//! CI installs rsyslog and sets RINGFENCE_REQUIRE_RSYSLOG=1; elsewhere, without rsyslogd, the
//! tests that need it print "skip" and pass.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::common::eventually;

/// How long rsyslogd may take to start, stop, or write what it received.
const WAIT: Duration = Duration::from_secs(15);

/// One message as rsyslog parsed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Received {
    pub pri: u8,
    pub facility: String,
    pub severity: String,
    pub host: String,
    pub app: String,
    pub procid: String,
    pub msgid: String,
    pub input: String,
    pub msg: String,
}

pub struct Rsyslog {
    dir: PathBuf,
    /// Holds `dir`, removed on drop.
    _scratch: tempfile::TempDir,
    conf: PathBuf,
    out: PathBuf,
    log: PathBuf,
    binary: PathBuf,
    /// The imtcp port on 127.0.0.1; the same across restarts.
    pub port: u16,
    /// imuxsock's datagram socket.
    pub datagram: PathBuf,
    /// imptcp's stream socket.
    pub stream: PathBuf,
    child: Option<Child>,
}

fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("rsyslogd"))
        .find(|p| p.is_file())
}

impl Rsyslog {
    /// A started rsyslogd, or None (after printing "skip") when it is not installed and not
    /// required.
    pub fn start_new(test: &str) -> Option<Rsyslog> {
        let Some(binary) = binary() else {
            assert!(
                std::env::var_os("RINGFENCE_REQUIRE_RSYSLOG").is_none(),
                "rsyslogd is required here but not installed"
            );
            eprintln!("skip: rsyslogd not installed; {test} not run");
            return None;
        };
        let scratch = super::common::scratch();
        let dir = scratch.path().to_path_buf();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Rsyslog {
            conf: dir.join("rsyslog.conf"),
            out: dir.join("received.jsonl"),
            log: dir.join("rsyslogd.log"),
            datagram: dir.join("dgram.sock"),
            stream: dir.join("stream.sock"),
            dir,
            _scratch: scratch,
            binary,
            port,
            child: None,
        };
        std::fs::write(&r.conf, r.config()).unwrap();
        r.start();
        Some(r)
    }

    fn config(&self) -> String {
        let dir = self.dir.display();
        let out = self.out.display();
        let datagram = self.datagram.display();
        let stream = self.stream.display();
        let port = self.port;
        // Control characters and 8-bit bytes are kept as received, so a test can compare the
        // exact text; the special local-socket parser is off, as for any RFC 5424 sender.
        format!(
            r#"global(workDirectory="{dir}" maxMessageSize="256k"
       parser.escapeControlCharactersOnReceive="off")
module(load="imtcp")
module(load="imptcp")
module(load="imuxsock" SysSock.Use="off")
input(type="imtcp" address="127.0.0.1" port="{port}")
input(type="imptcp" path="{stream}")
input(type="imuxsock" socket="{datagram}" useSpecialParser="off" parseHostname="on"
      rateLimit.interval="0")
template(name="fields" type="list") {{
  constant(value="{{\"pri\":") property(name="pri")
  constant(value=",\"facility\":\"") property(name="syslogfacility-text")
  constant(value="\",\"severity\":\"") property(name="syslogseverity-text")
  constant(value="\",\"host\":\"") property(name="hostname" format="json")
  constant(value="\",\"app\":\"") property(name="app-name" format="json")
  constant(value="\",\"procid\":\"") property(name="procid" format="json")
  constant(value="\",\"msgid\":\"") property(name="msgid" format="json")
  constant(value="\",\"input\":\"") property(name="inputname" format="json")
  constant(value="\",\"msg\":\"") property(name="msg" format="json")
  constant(value="\"}}\n")
}}
action(type="omfile" file="{out}" template="fields")
"#
        )
    }

    /// Starts rsyslogd (again, on the same port and sockets) and waits until it listens on all.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "rsyslogd is already running");
        let _ = std::fs::remove_file(&self.datagram);
        let _ = std::fs::remove_file(&self.stream);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let (datagram, stream, port) = (self.datagram.clone(), self.stream.clone(), self.port);
        let child = self.child.as_mut().unwrap();
        let exited = eventually("rsyslogd to listen", WAIT, || {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(Some(status));
            }
            let listening = datagram.exists()
                && stream.exists()
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            listening.then_some(None)
        });
        if let Some(status) = exited {
            self.child = None;
            panic!("rsyslogd exited at start ({status}): {}", self.log_text());
        }
    }

    /// SIGTERM, and waits for the exit: every connection is closed by then.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("rsyslogd is not running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually("rsyslogd to stop on SIGTERM", WAIT, || {
                child.try_wait().unwrap().is_some()
            })
        }));
        if stopped.is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rsyslogd did not stop on SIGTERM: {}", self.log_text());
        }
    }

    /// Every message written so far.
    pub fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // A line still being written has no newline yet.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits until the messages received satisfy `done`, then returns them.
    pub fn wait_for(&self, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let mut written = 0;
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually("rsyslog to write the awaited message", WAIT, || {
                let got = self.received();
                written = got.len();
                done(&got).then_some(got)
            })
        }));
        got.unwrap_or_else(|_| {
            panic!(
                "rsyslog did not write the awaited message ({written} written): {}",
                self.log_text()
            )
        })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
