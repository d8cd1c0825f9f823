//! The audit trail (SPEC §9): a `decision` line for every judged guarded request, written before
//! any byte of it goes upstream, an `outcome` line after, and a `config` line per reload; and the
//! optional access log, a line per request. Lines are JSON, schema version [`VERSION`]
//! (docs/audit.md), delivered by [`writer`]: a bounded queue and one writer thread per trail.
//! Never the Authorization header, cookies or tokens.

mod ack;
mod json;
pub mod syslog;
pub mod writer;

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::policy::Rule;
use crate::target::Target;
pub use json::Record;
pub use syslog::Severity;
pub use writer::Counters;
use writer::{Line, Queue, Stream};

/// The schema version every line carries as `v`; raised when a field changes meaning.
pub const VERSION: u8 = 1;

/// Client text is cut in the trail: a path at this many bytes, a host or server name at
/// [`NAME_BYTES`] (a DNS name and a port fit), a method at [`METHOD_BYTES`], a raw target at
/// [`RAW_TARGET_CHARS`]. No line grows with what a client sends.
const PATH_BYTES: usize = 512;
const NAME_BYTES: usize = 260;
const METHOD_BYTES: usize = 32;
const RAW_TARGET_CHARS: usize = 128;

/// `[audit]`: where the decision lines go, and what happens when they cannot go there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub sink: Sink,
    /// Lines waiting for the sink at most; more is [`OnFull`].
    pub queue_lines: usize,
    pub on_full: OnFull,
    /// How long an allowed guarded request waits for its decision line to be written before it
    /// is refused (`refuse`) or forwarded anyway (`drop`).
    pub write_timeout: Duration,
}

/// `[access_log]`: one line per request, guarded or not; never holds a request up (a full
/// queue drops, and counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    pub sink: Sink,
    pub queue_lines: usize,
}

/// A configuration's size, as the `config` audit line records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub organisations: usize,
    pub allow_entries: usize,
    pub deny_entries: usize,
    pub members: usize,
    pub guards: usize,
}

/// Where a trail's lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Off,
    Stdout,
    Stderr,
    File(PathBuf),
    Syslog {
        address: syslog::Address,
        facility: syslog::Facility,
    },
}

/// What a full queue (or a sink that cannot take lines) means for a guarded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Refused 503 `audit_unavailable`: nothing is forwarded without its decision line.
    Refuse,
    /// Forwarded; the line is lost and counted (`result="dropped"`).
    Drop,
}

/// One judged guarded request, or one guarded part of a batch (SPEC §9). Borrowed from the
/// request and written straight into the line ([`json`]).
#[derive(Debug)]
pub struct Decision<'a> {
    pub v: u8,
    pub kind: &'static str,
    /// Written RFC 3339, UTC, with milliseconds.
    pub ts: SystemTime,
    /// ringfence's own id for the request, on every line about it.
    pub id: &'a str,
    /// The client's `X-Request-Id`, when it was valid.
    pub client_request_id: Option<&'a str>,
    pub client: &'a str,
    pub sni: Option<&'a str>,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub resource: &'a str,
    pub organisation: Option<&'a str>,
    pub application: Option<&'a str>,
    pub user: Option<&'a str>,
    pub token_fingerprint: Option<&'a str>,
    pub targets: &'a [Target],
    pub raw_target: Option<&'a str>,
    pub decision: Decided,
    pub reason: &'static str,
    pub rule: Option<Rule<'a>>,
    pub batch: Option<BatchPart<'a>>,
}

/// What was decided for a request or a batch part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize), serde(rename_all = "snake_case"))]
pub enum Decided {
    Allow,
    Deny,
    /// A judged part of a batch that another part got refused: never sent, never `allow`.
    NotSent,
    /// Refused by the target rules of an organisation in shadow mode, and forwarded.
    ShadowDeny,
}

/// The reason the trail gives a [`Decided::NotSent`] part.
pub const BATCH_REFUSED: &str = "batch_refused";

impl Decided {
    /// The `decision` label of `ringfence_policy_decisions_total`; `None` for a part that was
    /// not sent, which is no decision of its own.
    pub fn metric_label(self) -> Option<&'static str> {
        match self {
            Decided::Allow => Some("allow"),
            Decided::Deny => Some("deny"),
            Decided::NotSent => None,
            Decided::ShadowDeny => Some("shadow_deny"),
        }
    }
}

/// Where a batch part's line belongs: the batch request's id, the part's place (1-based) among
/// the batch's parts, and how many parts the batch has (both `null` for a batch refused before
/// its parts could be read).
#[derive(Debug)]
pub struct BatchPart<'a> {
    pub id: &'a str,
    pub part: Option<usize>,
    pub parts: Option<usize>,
}

/// What became of a forwarded guarded request.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub v: u8,
    pub kind: &'static str,
    /// Written RFC 3339, UTC, with milliseconds.
    pub ts: SystemTime,
    pub id: &'a str,
    /// The answer's status; `null` when the client went before it.
    pub status: Option<u16>,
    pub source: Source,
    pub duration_ms: u64,
}

/// Who wrote an outcome's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize), serde(rename_all = "snake_case"))]
pub enum Source {
    /// A pool member answered (its own errors included).
    Pool,
    /// ringfence answered itself after the decision: no member reachable, a member failed or
    /// was too slow (502/503/504), the body broke off, or the trail could not be written.
    Ringfence,
    /// The client went away before an answer.
    ClientGone,
}

/// A configuration reload that took effect: content hashes and counts before and after. Rare,
/// so still serde's.
#[derive(Debug, Serialize)]
pub struct ConfigChange<'a> {
    pub v: u8,
    pub kind: &'static str,
    #[serde(serialize_with = "as_str")]
    pub ts: humantime::Rfc3339Timestamp,
    pub old_hash: &'a str,
    pub new_hash: &'a str,
    pub old: Counts,
    pub new: Counts,
}

/// One request of any kind, for the access log (SPEC §9 "Access log").
#[derive(Debug)]
pub struct Access<'a> {
    pub v: u8,
    pub kind: &'static str,
    /// Written RFC 3339, UTC, with milliseconds.
    pub ts: SystemTime,
    pub id: &'a str,
    pub client: &'a str,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: u64,
    pub member: Option<&'a str>,
    pub route: &'static str,
}

/// The audit trail: cloning shares the queue and its writer.
#[derive(Clone)]
pub struct Audit {
    queue: Option<Arc<Queue>>,
    on_full: OnFull,
    write_timeout: Duration,
    counters: Counters,
}

/// Why a trail could not be started.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{section}.path: cannot open {}: {error}", path.display())]
    Open {
        section: &'static str,
        path: std::path::PathBuf,
        error: io::Error,
    },
    #[error("{section}.sink: cannot start the writer thread: {0}", section = .1)]
    Writer(io::Error, &'static str),
}

/// The decision lines could not be queued, or not written in time, and `on_full = "refuse"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Decision lines queued; [`Pending::written`] waits until the sink took them.
pub struct Pending {
    written: Option<ack::Written>,
    /// The place held for the request's outcome line.
    outcome: Option<writer::Reservation>,
    on_full: OnFull,
    timeout: Duration,
}

impl Pending {
    /// The place held in the queue for the outcome line (when the request is to be forwarded).
    pub fn take_outcome_place(&mut self) -> Option<writer::Reservation> {
        self.outcome.take()
    }

    /// Resolves once the lines are written. With `on_full = "refuse"`, a sink that does not
    /// take them within `write_timeout` is [`Unavailable`]; with `"drop"`, the request goes on.
    pub async fn written(self) -> Result<(), Unavailable> {
        let Some(written) = self.written else {
            return Ok(());
        };
        let deadline = crate::clock::after(tokio::time::Instant::now(), self.timeout);
        match crate::deadline::within(crate::deadline::Kind::Trail, deadline, written.wait()).await
        {
            Ok(true) => Ok(()),
            _ if self.on_full == OnFull::Drop => Ok(()),
            _ => Err(Unavailable),
        }
    }
}

/// Opens a sink as its section configures it; `None` for `off`.
fn open_sink(
    section: &'static str,
    sink: &Sink,
) -> Result<Option<Box<dyn writer::Sink>>, AuditError> {
    Ok(Some(match sink {
        Sink::Off => return Ok(None),
        Sink::Stdout => Box::new(Stream::stdout()),
        Sink::Stderr => Box::new(Stream::stderr()),
        Sink::File(path) => Box::new(Stream::file(path).map_err(|error| AuditError::Open {
            section,
            path: path.clone(),
            error,
        })?),
        Sink::Syslog { address, facility } => Box::new(writer::ToSyslog(syslog::Syslog::new(
            address.clone(),
            *facility,
            "ringfence",
        ))),
    }))
}

fn start_queue(
    section: &'static str,
    sink: &Sink,
    capacity: usize,
    counters: &Counters,
) -> Result<Option<Arc<Queue>>, AuditError> {
    let Some(sink) = open_sink(section, sink)? else {
        return Ok(None);
    };
    Queue::start(section, sink, capacity, counters.clone())
        .map(Some)
        .map_err(|e| AuditError::Writer(e, section))
}

impl Audit {
    /// Opens the sink (a file is created if absent and appended to) and starts its writer.
    pub fn start(config: &AuditSettings) -> Result<Audit, AuditError> {
        let counters = Counters::new(
            "ringfence_audit_lines_total",
            "Audit lines by result: written to the sink, dropped (queue full), failed (the sink never took them).",
            "ringfence_audit_queue_lines",
            "Audit lines waiting for the sink.",
        );
        Ok(Audit {
            queue: start_queue("audit", &config.sink, config.queue_lines, &counters)?,
            on_full: config.on_full,
            write_timeout: config.write_timeout,
            counters,
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Queues a request's decision lines, all or none. `Err` when they cannot be queued and
    /// `on_full = "refuse"`: the request must then be refused, and nothing of it was recorded.
    /// With `forwarding`, [`Pending::written`] waits for the sink (a request about to be
    /// forwarded), and a place is held for its outcome line, so that a queue filled meanwhile
    /// cannot lose it; with `on_full = "refuse"`, no place left (as many guarded requests in
    /// flight as `queue_lines`) is [`Unavailable`] too.
    pub fn decided(&self, lines: Vec<Line>, forwarding: bool) -> Result<Pending, Unavailable> {
        let spare = match (forwarding, self.on_full) {
            (false, _) => writer::Spare::No,
            (true, OnFull::Drop) => writer::Spare::IfFree,
            (true, OnFull::Refuse) => writer::Spare::Required,
        };
        let pushed = match &self.queue {
            None => writer::Pushed::default(),
            Some(queue) => match queue.push(lines.into_iter(), forwarding, spare) {
                Ok(pushed) => pushed,
                Err(writer::Full) if self.on_full == OnFull::Drop => writer::Pushed::default(),
                Err(writer::Full) => return Err(Unavailable),
            },
        };
        Ok(Pending {
            written: pushed.written,
            outcome: pushed.reservation,
            on_full: self.on_full,
            timeout: self.write_timeout,
        })
    }

    /// Queues lines that follow a request's decision lines and that neither its answer nor its
    /// forwarding waits for (the `not_sent` parts after the one that refused a batch): as a
    /// batch's lines, they may fill only half the queue, and if they do not fit they are
    /// dropped, counted, whatever `on_full` says, since the answer is a refusal either way.
    pub fn also(&self, lines: Vec<Line>) {
        if let (Some(queue), false) = (&self.queue, lines.is_empty()) {
            let _ = queue.push_after(lines.into_iter());
        }
    }

    /// Queues a line nobody waits for (a reload, an outcome without a held place); a full
    /// queue drops it, counted.
    pub fn note(&self, record: &impl Record, kind: &'static str) {
        if let Some(queue) = &self.queue {
            let line = line(record, kind, Severity::Info);
            let _ = queue.push(std::iter::once(line), false, writer::Spare::No);
        }
    }

    /// Queues an outcome line in the place held for it when its request was decided.
    pub fn outcome(&self, record: &Outcome<'_>, place: Option<writer::Reservation>) {
        let (Some(queue), Some(place)) = (&self.queue, place) else {
            return self.note(record, "outcome");
        };
        queue.push_reserved(line(record, "outcome", Severity::Info), place);
    }

    /// Whether lines go anywhere (`sink != "off"`): if not, nothing needs serialising.
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Reopens the audit file by its path (after logrotate moved it away): every line queued
    /// before this call goes to the old file, every line after to the new one.
    pub fn reopen(&self) {
        if let Some(q) = &self.queue {
            q.reopen();
        }
    }

    /// Waits up to `within` for the queue to be written out (shutdown); returns the lines
    /// still waiting when it gave up.
    pub fn flush(&self, within: Duration) -> usize {
        self.queue.as_ref().map_or(0, |q| q.flush(within))
    }
}

/// One line for a trail.
pub fn line(record: &impl Record, kind: &'static str, severity: Severity) -> Line {
    match record.time() {
        Some(made) => Line::made_at(record.line(), kind, severity, made),
        None => Line::new(record.line(), kind, severity),
    }
}

impl Record for ConfigChange<'_> {
    fn line(&self) -> String {
        // Strings, numbers and a time: nothing here can fail to serialise.
        let mut text = serde_json::to_string(self).expect("a config line serialises");
        text.push('\n');
        text
    }
}

/// The access log: like the audit trail, but it never holds a request up (a full queue drops).
#[derive(Clone)]
pub struct AccessLog {
    queue: Option<Arc<Queue>>,
    counters: Counters,
}

impl AccessLog {
    pub fn start(config: &AccessLogSettings) -> Result<AccessLog, AuditError> {
        let counters = Counters::new(
            "ringfence_access_log_lines_total",
            "Access log lines by result: written, dropped (queue full), failed.",
            "ringfence_access_log_queue_lines",
            "Access log lines waiting for the sink.",
        );
        Ok(AccessLog {
            queue: start_queue("access_log", &config.sink, config.queue_lines, &counters)?,
            counters,
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    pub fn record(&self, access: &Access<'_>) {
        if let Some(queue) = &self.queue {
            let line = line(access, "access", Severity::Info);
            let _ = queue.push(std::iter::once(line), false, writer::Spare::No);
        }
    }

    pub fn reopen(&self) {
        if let Some(q) = &self.queue {
            q.reopen();
        }
    }

    pub fn flush(&self, within: Duration) -> usize {
        self.queue.as_ref().map_or(0, |q| q.flush(within))
    }
}

/// The current time as RFC 3339 with milliseconds, UTC: the `config` line's.
pub fn now() -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(std::time::SystemTime::now())
}

/// The `config` line's time, as the JSON string of its `Display` form.
fn as_str<T: std::fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

enum Cut {
    Bytes(usize),
    Chars(usize),
}

/// Client text as the trail shows it: printable ASCII as it is, a backslash as `\\`, and every
/// other character (controls, line separators, every character beyond ASCII) as a visible
/// `\u{..}` escape; then cut at the limit, on a character boundary and never inside an escape,
/// so the value as written is within the limit however many escapes it took (SPEC §9: "control
/// characters escaped, cut at 512 bytes"). Most values need neither and are not copied.
///
/// Left raw, text beyond ASCII lets a client make a value read differently on the compliance
/// officer's screen than it is: a right-to-left override ("Trojan Source", CVE-2021-42574)
/// shows `tel:+1\u{202e}0091` as `tel:+11900`, zero-width and format characters hide inside a
/// number, fullwidth digits and Cyrillic letters look like ASCII ones. A list of invisible
/// characters is never complete (fresh eyes, rounds 29 to 32); nothing the trail's fields hold
/// (paths, host names, methods, targets) needs more than ASCII, and an escape still names the
/// character. The backslash is escaped so that a client's own `\u{202e}` text cannot pass for
/// an escape (round 32).
fn escaped(value: &str, cut: Cut) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'\\';
    // Everything written is ASCII: characters and bytes count alike.
    let (Cut::Bytes(max) | Cut::Chars(max)) = cut;
    // Plain ASCII (nearly every value) is checked a byte at a time, which the compiler
    // vectorises, and is neither copied nor decoded.
    if value.bytes().all(plain) {
        return std::borrow::Cow::Borrowed(&value[..value.len().min(max)]);
    }
    let mut out = String::with_capacity(value.len().min(max) + 8);
    for c in value.chars() {
        // One unit: the character, or its escape.
        let before = out.len();
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii() && plain(c as u8) => out.push(c),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
        if out.len() > max {
            out.truncate(before);
            break;
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests;
