//! What every test crate shares (tests/cli.rs, tests/deploy.rs and the proxy binary's support):
//! bounded waiting for what a test can observe, the test host, and scratch directories.

// Each test crate includes this module and uses a part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// How long any wait in a test may take.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The host most tests ask for: contoso's.
pub const HOST: &str = "lyncweb.contoso.com";

/// The polling pace of [`eventually`]: not a wait for anything.
pub const POLL: Duration = Duration::from_millis(20);

/// What a check passed to `eventually` answers: `true`, or `Some` of what was awaited.
pub trait Outcome {
    type Value;
    fn done(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// Runs `check` (on this thread, blocking) until it answers `true` or `Some`, for at most
/// `limit`; panics naming `what` was awaited. Tests wait for what they can observe with this,
/// never for a fixed time.
pub fn eventually<O: Outcome>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> O,
) -> O::Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().done() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// A fresh directory for one test's files, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// An address that refuses connections for as long as the test process runs: a socket bound to
/// it and never listening, kept open, so no other test can be given the port meanwhile (a port
/// released after `bind` could be).
pub fn dead_address() -> std::net::SocketAddr {
    use socket2::{Domain, Socket, Type};
    static HELD: std::sync::Mutex<Vec<Socket>> = std::sync::Mutex::new(Vec::new());
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    HELD.lock().unwrap().push(socket);
    addr
}

/// A child process, killed on drop: a failing test leaves no `ringfence` behind.
pub struct Process(pub std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The lines a child writes to its piped standard error, read on a thread of their own so the
/// child never blocks on a full pipe.
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    lines
}
