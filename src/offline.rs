//! Judging a whole request offline (`ringfence eval --request FILE`): what ringfence would do
//! with it and why, so a policy change can be tried before a reload.
//!
//! The request goes through the gateway's own judge ([`judge::admit`], the body limit, then
//! [`judge::Pending::judge`]), and each ruling is stated in the audit trail's words: the trail's
//! decision record is built from it with [`Ruling::decided`], as the gateway builds it, written
//! as the trail's own line and read back, and the fields that do not depend on a live
//! connection (ids, time, client, user, token) are printed.

pub mod raw;

use std::io::{self, Read, Write};
use std::path::Path;

use bytes::Bytes;
use http::header::HeaderValue;
use http::request::Parts;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::audit;
use crate::config::Config;
use crate::identity;
use crate::judge::{self, Admission, Ruling};
use crate::policy::Organisation;
use crate::reject::Rejection;
use crate::route::Traffic;

pub use raw::RawError;

/// The audit trail's `decision` fields printed per ruling, in this order.
pub const FIELDS: [&str; 13] = [
    "decision",
    "reason",
    "rule",
    "organisation",
    "resource",
    "host",
    "sni",
    "method",
    "path",
    "application",
    "targets",
    "raw_target",
    "batch",
];

/// A request file larger than this is not read: the gateway refuses any body over
/// `server.max_batch_bytes` long before.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why a request file could not be judged.
#[derive(Debug, thiserror::Error)]
pub enum RequestFileError {
    #[error("cannot read it: {0}")]
    Read(#[from] io::Error),
    #[error("it is larger than {} MiB", MAX_FILE_BYTES >> 20)]
    TooLarge,
    #[error(transparent)]
    Raw(#[from] RawError),
}

/// Reads and parses a request file; `-` is standard input.
pub fn read(path: &Path) -> Result<(Parts, Bytes), RequestFileError> {
    let mut file = Vec::new();
    if path == Path::new("-") {
        io::stdin()
            .lock()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut file)?;
    } else {
        std::fs::File::open(path)?
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut file)?;
    }
    if file.len() as u64 > MAX_FILE_BYTES {
        return Err(RequestFileError::TooLarge);
    }
    Ok(raw::parse(&file)?)
}

/// What ringfence would answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'c> {
    /// Not guarded: forwarded as it came, its body unread and unjudged.
    Unjudged,
    /// Guarded, judged and cleared: forwarded to the pool.
    Forwarded,
    /// Answered by ringfence itself, with the rejection's status and UCWA error.
    Refused {
        rejection: Rejection,
        /// The parameter the error names.
        parameter: &'c str,
    },
}

/// A request judged offline.
pub struct Judgement<'c> {
    /// `guarded` or `passthrough`, as the metrics and the access log say.
    pub traffic: Traffic,
    /// The Host it was judged by (empty when it had none that could be read).
    pub host: HeaderValue,
    pub sni: Option<String>,
    /// What the audit trail would record, one `decision` line each.
    pub rulings: Vec<Ruling<'c>>,
    pub answer: Answer<'c>,
}

/// Judges a request exactly as the gateway does, its body already read. `sni` models the TLS
/// server name.
pub fn judge<'c>(
    parts: Parts,
    body: Bytes,
    config: &'c Config,
    sni: Option<&str>,
) -> Judgement<'c> {
    let (traffic, host, rulings, answer) = match judge::admit(parts.into(), config, sni) {
        Admission::Pass(passed) => (
            Traffic::Passthrough,
            passed.host().clone(),
            Vec::new(),
            Answer::Unjudged,
        ),
        Admission::Refused(refused) => (
            refused.traffic,
            refused.host,
            refused.ruling.into_iter().collect(),
            Answer::Refused {
                rejection: refused.rejection,
                parameter: refused.parameter,
            },
        ),
        Admission::Guarded(pending) => {
            let host = pending.host().clone();
            let verdict = if body.len() > pending.body_limit() {
                pending.unreadable(Rejection::BodyTooLarge)
            } else {
                pending.judge(body)
            };
            let answer = match verdict.outcome {
                Ok(_) => Answer::Forwarded,
                Err(refused) => Answer::Refused {
                    rejection: refused.rejection,
                    parameter: refused.parameter,
                },
            };
            // The parts after the one that refused a batch follow it, `not_sent`, as in the
            // trail.
            let mut rulings = verdict.rulings;
            rulings.extend(verdict.unsent);
            (Traffic::Guarded, host, rulings, answer)
        }
    };
    Judgement {
        traffic,
        host,
        sni: sni.map(str::to_owned),
        rulings,
        answer,
    }
}

/// One ruling as the audit trail's `decision` line states it: its [`FIELDS`], in order.
pub struct Statement(Vec<(&'static str, Value)>);

impl Statement {
    pub fn get(&self, field: &str) -> &Value {
        self.0
            .iter()
            .find(|(name, _)| *name == field)
            .map_or(&Value::Null, |(_, value)| value)
    }
}

impl Serialize for Statement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            std::iter::once(("kind", &Value::from("decision")))
                .chain(self.0.iter().map(|(name, value)| (*name, value))),
        )
    }
}

/// The closing line of `--json`: what the client would get.
#[derive(Serialize)]
struct AnswerLine<'a> {
    kind: &'static str,
    route: &'static str,
    forward: bool,
    judged: bool,
    status: Option<u16>,
    reason: Option<&'static str>,
    code: Option<&'static str>,
    subcode: Option<&'static str>,
    parameter: Option<&'a str>,
}

impl<'c> Judgement<'c> {
    pub fn refused(&self) -> bool {
        matches!(self.answer, Answer::Refused { .. })
    }

    /// Each ruling in the audit trail's words.
    pub fn statements(&self) -> impl Iterator<Item = Statement> + '_ {
        let refused = self.refused();
        self.rulings.iter().map(move |r| self.statement(r, refused))
    }

    fn statement(&self, ruling: &Ruling<'_>, refused: bool) -> Statement {
        let mut line = self.trail_line(ruling, refused);
        if let Some(Value::Object(batch)) = line.get_mut("batch") {
            batch.remove("id");
        }
        Statement(
            FIELDS
                .iter()
                .map(|&field| (field, line.remove(field).unwrap_or(Value::Null)))
                .collect(),
        )
    }

    /// The whole `decision` line the gateway would write for the ruling, bar the connection's
    /// facts (empty or null here).
    fn trail_line(&self, ruling: &Ruling<'_>, refused: bool) -> serde_json::Map<String, Value> {
        let (decision, reason) = ruling.decided(refused);
        let application = identity::application_read(&ruling.path);
        let host = String::from_utf8_lossy(self.host.as_bytes());
        // The trail's own record and serialisers; the connection's fields are left out below.
        let record = audit::Decision {
            v: audit::VERSION,
            kind: "decision",
            ts: std::time::SystemTime::now(),
            id: "",
            client_request_id: None,
            client: "",
            sni: self.sni.as_deref(),
            host: ruling.host.as_deref().unwrap_or(&host),
            method: ruling.method.as_str(),
            path: &ruling.path,
            resource: ruling.resource,
            organisation: ruling.organisation.map(Organisation::name),
            application: application.as_deref(),
            user: None,
            token_fingerprint: None,
            targets: &ruling.targets,
            raw_target: ruling.raw_target.as_deref(),
            decision,
            reason,
            rule: ruling.rule,
            batch: ruling.batch.map(|b| audit::BatchPart {
                id: "",
                part: b.part,
                parts: b.parts,
            }),
        };
        match serde_json::from_str(&audit::Record::line(&record)) {
            Ok(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }

    /// One JSON object per ruling (`"kind": "decision"`), then one for the answer
    /// (`"kind": "answer"`).
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        for statement in self.statements() {
            serde_json::to_writer(&mut *out, &statement)?;
            writeln!(out)?;
        }
        let (status, reason, code, subcode, parameter) = match self.answer {
            Answer::Refused {
                rejection,
                parameter,
            } => {
                let ucwa = rejection.ucwa();
                (
                    Some(ucwa.status.as_u16()),
                    Some(rejection.reason()),
                    Some(ucwa.code),
                    ucwa.subcode,
                    Some(parameter),
                )
            }
            Answer::Forwarded | Answer::Unjudged => (None, None, None, None, None),
        };
        serde_json::to_writer(
            &mut *out,
            &AnswerLine {
                kind: "answer",
                route: self.traffic.label(),
                forward: !self.refused(),
                judged: self.answer != Answer::Unjudged,
                status,
                reason,
                code,
                subcode,
                parameter,
            },
        )?;
        writeln!(out)
    }

    /// A line per ruling: decision, reason, targets (or the raw target), rule, and where;
    /// then what the client would get.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        for s in self.statements() {
            let text = |field: &str| s.get(field).as_str().unwrap_or("-").to_owned();
            let targets = match s.get("targets").as_array() {
                Some(t) if !t.is_empty() => t
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => match s.get("raw_target").as_str() {
                    Some(raw) => format!("raw {raw:?}"),
                    None => "-".into(),
                },
            };
            let batch = s.get("batch");
            let place = match (batch["part"].as_u64(), batch["parts"].as_u64()) {
                (Some(part), Some(parts)) => format!(", batch part {part} of {parts}"),
                _ if batch.is_object() => ", the batch as a whole".into(),
                _ => String::new(),
            };
            writeln!(
                out,
                "{}\t{}\t{targets}\t{}\t(organisation {}, resource {}, {} {}{place})",
                text("decision"),
                text("reason"),
                text("rule"),
                s.get("organisation").as_str().unwrap_or("none"),
                text("resource"),
                text("method"),
                text("path"),
            )?;
        }
        let host = self.host.to_str().unwrap_or("");
        match self.answer {
            Answer::Unjudged => writeln!(
                out,
                "not guarded: forward to the pool unjudged (host {host})"
            ),
            Answer::Forwarded if self.rulings.is_empty() => writeln!(
                out,
                "forward to the pool (guarded, but no target to decide: no decision line)"
            ),
            Answer::Forwarded => writeln!(out, "forward to the pool"),
            Answer::Refused {
                rejection,
                parameter,
            } => {
                let ucwa = rejection.ucwa();
                let code = match ucwa.subcode {
                    Some(sub) => format!("{}/{sub}", ucwa.code),
                    None => ucwa.code.to_owned(),
                };
                let unrecorded = if self.rulings.is_empty() {
                    "; the trail writes no decision line for it"
                } else {
                    ""
                };
                // Only a refusal whose answer names the parameter is about it.
                let about = matches!(ucwa.message, crate::reject::Message::AboutParameter(_));
                let named = if about || ucwa.names_parameter {
                    format!(", parameter {parameter}")
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "refuse: {} {}{named} (UCWA {code} {:?}){unrecorded}",
                    ucwa.status.as_u16(),
                    rejection.reason(),
                    ucwa.message.text(parameter),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Config {
        Config::from_toml(crate::config::DEMO_TOML).expect("the demo configuration is valid")
    }

    fn judged<'c>(config: &'c Config, file: &[u8], sni: Option<&str>) -> Judgement<'c> {
        let (parts, body) = raw::parse(file).expect("a request");
        judge(parts, body, config, sni)
    }

    /// Read when the test runs: the release build's context (`.dockerignore`) has no tests/.
    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/requests/{name}.http",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn every_printed_field_is_a_field_of_the_trails_decision_line() {
        let config = demo();
        let batch = judged(&config, &fixture("batch"), Some("lyncweb.contoso.com"));
        assert_eq!(batch.rulings.len(), 2);
        for ruling in &batch.rulings {
            let line = batch.trail_line(ruling, true);
            for field in FIELDS {
                assert!(line.contains_key(field), "{field} in {line:?}");
            }
            assert_eq!(line["kind"], "decision");
        }
        let said: Vec<(Value, Value)> = batch
            .statements()
            .map(|s| (s.get("decision").clone(), s.get("reason").clone()))
            .collect();
        assert_eq!(
            said,
            [
                ("not_sent".into(), "batch_refused".into()),
                ("deny".into(), "denied".into())
            ]
        );
        assert_eq!(
            batch.answer,
            Answer::Refused {
                rejection: Rejection::Denied,
                parameter: "target"
            }
        );
    }

    #[test]
    fn a_body_over_the_limit_is_refused_as_the_gateway_refuses_it() {
        let small =
            crate::config::DEMO_TOML.replace("[server]\n", "[server]\nmax_body_bytes = 8\n");
        let config = Config::from_toml(&small).expect("valid");
        let request = judged(&config, &fixture("lf-only"), None);
        assert_eq!(request.traffic, Traffic::Guarded);
        assert!(matches!(
            request.answer,
            Answer::Refused {
                rejection: Rejection::BodyTooLarge,
                ..
            }
        ));
        let said: Vec<Value> = request
            .statements()
            .map(|s| s.get("reason").clone())
            .collect();
        assert_eq!(said, ["body_too_large"]);
    }

    /// The parts after the one that refused a batch are stated too, `not_sent` (SPEC §9), one
    /// that would have been denied on its own included, after the refusing part's `deny`.
    #[test]
    fn the_parts_after_a_batchs_refusal_are_stated_not_sent() {
        let config = demo();
        let ring = |number: &str| {
            format!(
                "--b\r\nContent-Type: application/http; msgtype=request\r\n\r\n\
                 POST /ucwa/oauth/v1/applications/192/me/callForwardingSettings/\
                 simultaneousRingSettings/simultaneousRingToContact?target=tel:%2B{number} \
                 HTTP/1.1\r\nHost: lyncweb.contoso.com\r\n\r\n\r\n"
            )
        };
        let body = format!(
            "{}{}{}--b--\r\n",
            ring("19005550100"),
            ring("14255550100"),
            ring("19005550199")
        );
        let file = format!(
            "POST /ucwa/oauth/v1/applications/192/batch HTTP/1.1\r\nHost: lyncweb.contoso.com\r\n\
             Content-Type: multipart/batching; boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let batch = judged(&config, file.as_bytes(), None);
        let said: Vec<(Value, Value, Value)> = batch
            .statements()
            .map(|s| {
                let part = s.get("batch")["part"].clone();
                (part, s.get("decision").clone(), s.get("targets").clone())
            })
            .collect();
        assert_eq!(
            said,
            [
                (
                    1.into(),
                    "deny".into(),
                    serde_json::json!(["tel:+19005550100"])
                ),
                (
                    2.into(),
                    "not_sent".into(),
                    serde_json::json!(["tel:+14255550100"])
                ),
                (
                    3.into(),
                    "not_sent".into(),
                    serde_json::json!(["tel:+19005550199"])
                ),
            ]
        );
        assert_eq!(
            batch.answer,
            Answer::Refused {
                rejection: Rejection::Denied,
                parameter: "target"
            }
        );
    }
}
