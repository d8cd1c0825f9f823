//! Open-file descriptors, which every client connection and every upstream connection takes one
//! of: the process limit raised at start ([`raise_limit`]), the warning when
//! `server.max_connections` cannot fit under it ([`shortfall`]), accept errors counted and
//! backed off instead of spun on ([`AcceptErrors`]), and the spare descriptors the admin
//! listener keeps, so that `/metrics` answers while client traffic holds all the others
//! ([`Reserve`]).

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounterVec;

/// Descriptors besides the two of each client connection (the client's socket and its upstream
/// connection's): listeners, the admin endpoint and its [`Reserve`], the audit sink, health
/// probes, the runtime's own (epoll, wakers, signals), the log file.
pub const MARGIN: u64 = 64;

/// Spare descriptors the admin listener holds ([`Reserve`]).
pub const ADMIN_RESERVE: usize = 8;

/// What an admin connection accepted at the limit borrows from the [`Reserve`]: its socket's
/// descriptor. (Lending more, say for the process metrics, which read `/proc/self`, would lose
/// them: the client listeners take whatever is free, and the loan gives back only what it can
/// reopen.)
pub const ADMIN_LOAN: usize = 1;

/// The open-files limit (RLIMIT_NOFILE) before and after [`raise_limit`]; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The soft limit the process started with.
    pub before: Option<u64>,
    /// The soft limit in force now: the one that counts.
    pub now: Option<u64>,
    /// The hard limit, which only a privileged process can raise.
    pub hard: Option<u64>,
}

/// Raises the soft open-files limit to the hard limit (an unlimited hard limit is left alone:
/// the kernel takes no infinite soft limit). A failure leaves the limit as it was; the error
/// says why (e.g. a seccomp filter that forbids `setrlimit`).
#[cfg(unix)]
pub fn raise_limit() -> Result<Limit, (Limit, io::Error)> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let start = getrlimit(Resource::Nofile);
    let limit = Limit {
        before: start.current,
        now: start.current,
        hard: start.maximum,
    };
    match (start.current, start.maximum) {
        (Some(soft), Some(hard)) if soft < hard => {
            let mut raised = start;
            raised.current = Some(hard);
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => Ok(Limit {
                    now: getrlimit(Resource::Nofile).current,
                    ..limit
                }),
                Err(e) => Err((limit, e.into())),
            }
        }
        _ => Ok(limit),
    }
}

/// No open-files limit to raise on this platform.
#[cfg(not(unix))]
pub fn raise_limit() -> Result<Limit, (Limit, io::Error)> {
    Ok(Limit {
        before: None,
        now: None,
        hard: None,
    })
}

/// The limit `run` will serve under, once it has raised the soft limit: the hard limit
/// (`check-config`'s view; under systemd `LimitNOFILE=` sets both).
#[cfg(unix)]
pub fn limit_in_force_after_raise() -> Option<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.maximum.or(limit.current)
}

#[cfg(not(unix))]
pub fn limit_in_force_after_raise() -> Option<u64> {
    None
}

/// Logs what [`raise_limit`] did; the limit in force.
pub fn raise_and_log() -> Option<u64> {
    match raise_limit() {
        Ok(l) if l.now != l.before => {
            tracing::info!(
                from = %shown(l.before),
                to = %shown(l.now),
                "raised the open-files limit (RLIMIT_NOFILE) to its hard limit"
            );
            l.now
        }
        Ok(l) => {
            tracing::info!(
                limit = %shown(l.now),
                hard = %shown(l.hard),
                "open-files limit (RLIMIT_NOFILE)"
            );
            l.now
        }
        Err((l, e)) => {
            tracing::warn!(
                limit = %shown(l.now),
                hard = %shown(l.hard),
                error = %e,
                "cannot raise the open-files limit (RLIMIT_NOFILE) to its hard limit"
            );
            l.now
        }
    }
}

/// A limit as logged: its number, or `unlimited`.
fn shown(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// The descriptors `max_connections` client connections need at most: two each, and the
/// [`MARGIN`].
pub fn needed(max_connections: usize) -> u64 {
    2 * max_connections as u64 + MARGIN
}

/// The warning when `max_connections` needs more descriptors than `limit` (None: unlimited)
/// allows, naming both numbers and the fix.
pub fn shortfall(max_connections: usize, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    let needed = needed(max_connections);
    (needed > limit).then(|| {
        format!(
            "server.max_connections = {max_connections} needs up to {needed} open files \
             (2 per connection, the client's and its upstream's, and {MARGIN} for listeners, \
             admin, audit and probes), but the open-files limit (RLIMIT_NOFILE) is {limit}: \
             raise it to at least {needed} (LimitNOFILE= in the systemd unit, `ulimit -n`, or \
             the container runtime's nofile limit) or lower server.max_connections to {}",
            limit.saturating_sub(MARGIN) / 2
        )
    })
}

/// The `kind` label of an accept error (`ringfence_accept_errors_total`).
pub fn kind(e: &io::Error) -> &'static str {
    use rustix::io::Errno;
    match e.raw_os_error() {
        Some(n) if n == Errno::MFILE.raw_os_error() => "emfile",
        Some(n) if n == Errno::NFILE.raw_os_error() => "enfile",
        Some(n) if n == Errno::NOBUFS.raw_os_error() => "enobufs",
        Some(n) if n == Errno::NOMEM.raw_os_error() => "enomem",
        _ => "other",
    }
}

/// Whether `e` says that the process (EMFILE) or the system (ENFILE) has no descriptor left.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(kind(e), "emfile" | "enfile")
}

/// One listener's failed accepts: each counted in `ringfence_accept_errors_total{listener,kind}`,
/// logged at most once per [`AcceptErrors::EVERY`] with how many since the last line, and backed
/// off exponentially from [`AcceptErrors::FIRST`] to [`AcceptErrors::MOST`], so that a listener
/// out of descriptors neither spins nor floods the log. A connection the kernel has completed
/// waits in the listen backlog meanwhile; a good accept resets the back-off.
pub struct AcceptErrors {
    counters: IntCounterVec,
    listener: String,
    since_line: u64,
    last_line: Option<tokio::time::Instant>,
    backoff: Duration,
}

impl AcceptErrors {
    pub const EVERY: Duration = Duration::from_secs(10);
    pub const FIRST: Duration = Duration::from_millis(10);
    pub const MOST: Duration = Duration::from_millis(100);

    /// Creates the descriptor series (`emfile`, `enfile`) at 0, so that an alert on their
    /// increase sees the first one.
    pub fn new(counters: &IntCounterVec, listener: &str) -> AcceptErrors {
        for kind in ["emfile", "enfile"] {
            counters.with_label_values(&[listener, kind]);
        }
        AcceptErrors {
            counters: counters.clone(),
            listener: listener.to_owned(),
            since_line: 0,
            last_line: None,
            backoff: Duration::ZERO,
        }
    }

    /// Counts `e` (and logs it when a line is due); how long to wait before the next accept.
    pub fn failed(&mut self, e: &io::Error) -> Duration {
        self.failed_at(e, tokio::time::Instant::now())
    }

    fn failed_at(&mut self, e: &io::Error, now: tokio::time::Instant) -> Duration {
        let kind = kind(e);
        self.counters
            .with_label_values(&[&self.listener, kind])
            .inc();
        self.since_line += 1;
        self.backoff = if self.backoff.is_zero() {
            Self::FIRST
        } else {
            (self.backoff * 2).min(Self::MOST)
        };
        let due = self
            .last_line
            .is_none_or(|last| now.duration_since(last) >= Self::EVERY);
        if due {
            self.last_line = Some(now);
            let failed = std::mem::take(&mut self.since_line);
            if out_of_descriptors(e) {
                tracing::warn!(
                    listener = %self.listener,
                    error = %e,
                    failed,
                    "out of open files: accepting backs off (up to {} ms) until connections close; \
                     see the open-files limit and server.max_connections",
                    Self::MOST.as_millis()
                );
            } else {
                tracing::warn!(listener = %self.listener, error = %e, failed, "accept failed");
            }
        }
        self.backoff
    }

    /// A connection was accepted: the next failure backs off from the start again.
    pub fn accepted(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

/// Spare descriptors (`/dev/null` opened read-only) that one listener keeps for when all the
/// others are taken: at the limit it closes some ([`Reserve::lend`]) and accepts into the room,
/// and takes them back ([`Reserve::top_up`]) once the connection that borrowed them is gone.
pub struct Reserve {
    spare: Mutex<Vec<std::fs::File>>,
    size: usize,
}

impl Reserve {
    /// Opens `size` spare descriptors (fewer if the process cannot).
    pub fn new(size: usize) -> Arc<Reserve> {
        let reserve = Arc::new(Reserve {
            spare: Mutex::new(Vec::with_capacity(size)),
            size,
        });
        reserve.top_up();
        reserve
    }

    /// How many spare descriptors it holds now.
    pub fn held(&self) -> usize {
        self.spare.lock().map_or(0, |s| s.len())
    }

    /// Opens spare descriptors until it holds its size again, or none can be opened.
    pub fn top_up(&self) {
        let Ok(mut spare) = self.spare.lock() else {
            return;
        };
        while spare.len() < self.size {
            match open_spare() {
                Ok(file) => spare.push(file),
                Err(_) => break,
            }
        }
    }

    /// Closes up to `n` spare descriptors, for the caller to take their place; None when it
    /// holds none. The loan tops the reserve up when dropped.
    pub fn lend(self: &Arc<Self>, n: usize) -> Option<Loan> {
        self.close(n).then(|| Loan {
            reserve: Arc::clone(self),
        })
    }

    /// Closes up to `n` spare descriptors; false when it held none.
    fn close(&self, n: usize) -> bool {
        let Ok(mut spare) = self.spare.lock() else {
            return false;
        };
        if spare.is_empty() {
            return false;
        }
        let keep = spare.len().saturating_sub(n);
        spare.truncate(keep);
        true
    }
}

#[cfg(unix)]
fn open_spare() -> io::Result<std::fs::File> {
    std::fs::File::open("/dev/null")
}

#[cfg(not(unix))]
fn open_spare() -> io::Result<std::fs::File> {
    std::fs::File::open("NUL")
}

/// Descriptors lent by a [`Reserve`]: dropping the loan takes them back (as many as can be
/// opened; the rest at the next [`Reserve::top_up`]).
pub struct Loan {
    reserve: Arc<Reserve>,
}

impl Loan {
    /// Closes up to `n` more spare descriptors; false when the reserve held none.
    pub fn extend(&mut self, n: usize) -> bool {
        self.reserve.close(n)
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        self.reserve.top_up();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_names_both_numbers_and_the_fix() {
        assert_eq!(needed(10_000), 20_064);
        assert_eq!(shortfall(10_000, Some(20_064)), None);
        assert_eq!(shortfall(10_000, None), None);
        let w = shortfall(10_000, Some(20_000)).unwrap();
        for part in ["10000", "20064", "20000", "LimitNOFILE=", "9968"] {
            assert!(w.contains(part), "{part} in {w}");
        }
    }

    #[test]
    fn accept_errors_back_off_exponentially_and_log_once_per_period() {
        let vec =
            IntCounterVec::new(prometheus::Opts::new("t", "t"), &["listener", "kind"]).unwrap();
        let mut errors = AcceptErrors::new(&vec, "l");
        assert_eq!(vec.with_label_values(&["l", "emfile"]).get(), 0);
        let emfile = io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let start = tokio::time::Instant::now();
        let waits: Vec<u128> = (0..6)
            .map(|i| {
                errors
                    .failed_at(&emfile, start + Duration::from_secs(i))
                    .as_millis()
            })
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 100, 100]);
        assert_eq!(vec.with_label_values(&["l", "emfile"]).get(), 6);
        assert_eq!(errors.since_line, 5, "one line at the first, none since");
        errors.failed_at(&emfile, start + Duration::from_secs(10));
        assert_eq!(errors.since_line, 0, "a line is due after the period");
        errors.accepted();
        assert_eq!(errors.failed_at(&emfile, start).as_millis(), 10);
        let other = io::Error::other("x");
        errors.failed(&other);
        assert_eq!(vec.with_label_values(&["l", "other"]).get(), 1);
    }

    #[test]
    fn a_reserve_lends_and_takes_its_descriptors_back() {
        let reserve = Reserve::new(4);
        assert_eq!(reserve.held(), 4);
        let loan = reserve.lend(3).unwrap();
        assert_eq!(reserve.held(), 1);
        let mut more = reserve.lend(3).unwrap();
        assert_eq!(reserve.held(), 0);
        assert!(reserve.lend(1).is_none(), "nothing left to lend");
        assert!(!more.extend(1), "nothing left to lend");
        drop(loan);
        assert_eq!(reserve.held(), 4);
        assert!(more.extend(2));
        assert_eq!(reserve.held(), 2);
        drop(more);
        assert_eq!(reserve.held(), 4);
    }
}
