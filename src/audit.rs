//! The audit trail: one JSON line per policy decision, written off the request path by a
//! dedicated thread so a slow disk never stalls a request. Tokens and Authorization never appear.

use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::time::Duration;

use std::fmt;

use serde::{Serialize, Serializer};

use crate::config;
use crate::policy::Rule;
use crate::target::Target;

/// One decision as written to the trail (SPEC §9). Borrowed and formatted straight into the
/// line: the request path allocates nothing but the line itself.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    #[serde(serialize_with = "as_str")]
    pub ts: humantime::Rfc3339Timestamp,
    pub request_id: &'a str,
    pub client: &'a str,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub resource: &'a str,
    pub organisation: &'a str,
    #[serde(serialize_with = "each_as_str")]
    pub targets: &'a [Target],
    pub decision: &'static str,
    pub reason: &'static str,
    #[serde(serialize_with = "option_as_str")]
    pub rule: Option<Rule<'a>>,
    pub upstream_status: Option<u16>,
}

/// Where decision records go. Cloning shares the writer.
#[derive(Clone, Debug)]
pub struct Audit {
    tx: Option<Sender<Entry>>,
}

/// What the writer thread is sent: a line, or "reopen the file" (logrotate's `postrotate`).
#[derive(Debug)]
enum Entry {
    Line(String),
    Reopen,
}

fn open(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Why the audit trail could not be started.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit.path: cannot open {}: {error}", path.display())]
    Open {
        path: std::path::PathBuf,
        error: io::Error,
    },
    #[error("audit.sink: cannot start the audit writer thread: {0}")]
    Writer(io::Error),
}

impl Audit {
    /// Opens the sink (a file is created if absent and appended to) and starts its writer.
    pub fn start(sink: &config::Audit) -> Result<Audit, AuditError> {
        let (out, path): (Box<dyn Write + Send>, _) = match sink {
            config::Audit::Off => return Ok(Audit { tx: None }),
            config::Audit::Stderr => (Box::new(io::stderr()), None),
            config::Audit::File(path) => (
                Box::new(open(path).map_err(|error| AuditError::Open {
                    path: path.clone(),
                    error,
                })?),
                Some(path.clone()),
            ),
        };
        let (tx, rx) = channel::<Entry>();
        std::thread::Builder::new()
            .name("ringfence-audit".into())
            .spawn(move || write_lines(&rx, out, path.as_deref()))
            .map_err(AuditError::Writer)?;
        Ok(Audit { tx: Some(tx) })
    }

    pub fn record(&self, record: &Record<'_>) {
        let Some(tx) = &self.tx else { return };
        match serde_json::to_string(record) {
            Ok(mut line) => {
                line.push('\n');
                let _ = tx.send(Entry::Line(line));
            }
            Err(e) => tracing::error!(error = %e, "cannot serialise an audit record"),
        }
    }

    /// Reopens the audit file by its path (after logrotate moved it away): every line sent
    /// before this call goes to the old file, every line after to the new one.
    pub fn reopen(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Entry::Reopen);
        }
    }
}

/// How long the writer waits for more lines once one arrived, so that a busy proxy pays one
/// write for many lines and its request path never wakes the writer: a sender only wakes a
/// receiver that blocks, and under load the writer is asleep here instead.
const GATHER: Duration = Duration::from_millis(2);

/// Writes lines as they come: blocks while the trail is quiet; while lines keep coming, gathers
/// them for [`GATHER`] and writes them together. Every line is written within a few ms.
fn write_lines(rx: &Receiver<Entry>, out: Box<dyn Write + Send>, path: Option<&Path>) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(first) = rx.recv() {
        let mut entry = Some(first);
        while let Some(e) = entry.take() {
            take(&mut out, e, path);
            loop {
                match rx.try_recv() {
                    Ok(e) => take(&mut out, e, path),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        flush(&mut out);
                        return;
                    }
                }
            }
            flush(&mut out);
            std::thread::sleep(GATHER);
            entry = rx.try_recv().ok();
        }
    }
    flush(&mut out);
}

fn take(out: &mut io::BufWriter<Box<dyn Write + Send>>, entry: Entry, path: Option<&Path>) {
    match entry {
        Entry::Line(l) => {
            let _ = out.write_all(l.as_bytes());
        }
        Entry::Reopen => {
            let Some(path) = path else { return };
            flush(out);
            match open(path) {
                Ok(file) => {
                    *out.get_mut() = Box::new(file);
                    tracing::info!(path = %path.display(), "audit trail reopened");
                }
                Err(e) => tracing::error!(
                    path = %path.display(), error = %e,
                    "cannot reopen the audit trail; writing on to the file already open"
                ),
            }
        }
    }
}

fn flush(out: &mut impl Write) {
    if out.flush().is_err() {
        tracing::error!("cannot write the audit trail");
    }
}

/// The current time as RFC 3339 with milliseconds, UTC.
pub fn now() -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(std::time::SystemTime::now())
}

/// A value serialised as the JSON string of its `Display` form.
struct AsStr<'v, T>(&'v T);

impl<T: fmt::Display> Serialize for AsStr<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

fn as_str<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn each_as_str<T: fmt::Display, S: Serializer>(values: &&[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(AsStr))
}

fn option_as_str<T: fmt::Display, S: Serializer>(
    value: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&AsStr(v)),
        None => s.serialize_none(),
    }
}
