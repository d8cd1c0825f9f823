//! The audit trail: one JSON line per policy decision, written off the request path by a
//! dedicated thread so a slow disk never stalls a request. Tokens and Authorization never appear.

use std::io::{self, Write};
use std::sync::mpsc::{channel, Sender};

use serde::Serialize;

use crate::config;

/// One decision as written to the trail (SPEC §9).
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub ts: String,
    pub request_id: &'a str,
    pub client: String,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub resource: &'a str,
    pub organisation: &'a str,
    pub targets: Vec<String>,
    pub decision: &'static str,
    pub reason: &'static str,
    pub rule: Option<String>,
    pub upstream_status: Option<u16>,
}

/// Where decision records go. Cloning shares the writer.
#[derive(Clone, Debug)]
pub struct Audit {
    tx: Option<Sender<String>>,
}

impl Audit {
    pub fn start(sink: &config::Audit) -> io::Result<Audit> {
        let out: Box<dyn Write + Send> = match sink {
            config::Audit::Off => return Ok(Audit { tx: None }),
            config::Audit::Stderr => Box::new(io::stderr()),
            config::Audit::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = channel::<String>();
        std::thread::Builder::new()
            .name("ringfence-audit".into())
            .spawn(move || {
                let mut out = io::LineWriter::new(out);
                for line in rx {
                    if out.write_all(line.as_bytes()).is_err() {
                        tracing::error!("cannot write the audit trail");
                    }
                }
            })?;
        Ok(Audit { tx: Some(tx) })
    }

    pub fn record(&self, record: &Record<'_>) {
        let Some(tx) = &self.tx else { return };
        match serde_json::to_string(record) {
            Ok(mut line) => {
                line.push('\n');
                let _ = tx.send(line);
            }
            Err(e) => tracing::error!(error = %e, "cannot serialise an audit record"),
        }
    }
}

/// The current time as RFC 3339 with milliseconds, UTC.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
