//! The audit trail's syslog sink against a real rsyslogd: framing, header fields, and what a
//! collector that goes away and comes back receives.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ringfence::audit::syslog::{Address, Facility, Message, Partial, SendError, Severity, Syslog};

use crate::support::rsyslog::{Received, Rsyslog};

const N: usize = 2000;
const BATCH: usize = 100;
const SENTINEL: &str = "sentinel";

/// The text of line `i`, `{"n":i,...`: JSON lines, and one with a raw line feed and multibyte
/// characters, and one long line.
fn text(i: usize) -> String {
    match i {
        7 => format!("{{\"n\":{i},\"path\":\"two\nlines\",\"who\":\"Zoë 電話 ☎\"}}"),
        11 => format!(r#"{{"n":{i},"long":"{}"}}"#, "x".repeat(100_000)),
        _ => format!(r#"{{"n":{i},"decision":"allow"}}"#),
    }
}

fn kind(i: usize) -> (Severity, &'static str, &'static str) {
    match i % 3 {
        0 => (Severity::Info, "decision", "info"),
        1 => (Severity::Notice, "outcome", "notice"),
        _ => (Severity::Warning, "config", "warning"),
    }
}

fn messages<'a>(texts: &'a [(usize, String)]) -> Vec<Message<'a>> {
    texts
        .iter()
        .map(|(i, text)| Message {
            severity: kind(*i).0,
            msgid: kind(*i).1,
            ts: SystemTime::now(),
            text,
        })
        .collect()
}

fn lines(range: std::ops::Range<usize>) -> Vec<(usize, String)> {
    range.map(|i| (i, text(i))).collect()
}

/// Sends `texts` in batches; every batch must go whole.
fn send_all(sink: &mut Syslog, texts: &[(usize, String)]) {
    for batch in texts.chunks(BATCH) {
        if let Err(e) = sink.send(&messages(batch)) {
            panic!("{e}");
        }
    }
}

fn send_sentinel(sink: &mut Syslog) {
    let sentinel = [(usize::MAX, SENTINEL.to_owned())];
    send_all(sink, &sentinel);
}

/// The lines received, by their number, each once; the sentinel left out.
fn by_number(received: &[Received]) -> BTreeMap<usize, &Received> {
    let mut seen = BTreeMap::new();
    for r in received.iter().filter(|r| r.msg != SENTINEL) {
        let n = r
            .msg
            .strip_prefix(r#"{"n":"#)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a line as sent: {:.200}", r.msg));
        assert!(seen.insert(n, r).is_none(), "line {n} arrived twice");
    }
    seen
}

/// Every line of `expected` arrived once, intact, with the header fields it was sent with.
fn assert_arrived(received: &[Received], expected: &[usize], input: &str) {
    let seen = by_number(received);
    let missing: Vec<usize> = expected
        .iter()
        .copied()
        .filter(|n| !seen.contains_key(n))
        .collect();
    assert!(missing.is_empty(), "missing lines: {missing:?}");
    assert_eq!(seen.len(), expected.len(), "lines not sent arrived");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for (&n, r) in &seen {
        let (_, msgid, severity) = kind(n);
        assert_eq!(r.msg, text(n), "line {n}");
        assert_eq!(r.msgid, msgid);
        assert_eq!(r.severity, severity);
        assert_eq!(r.facility, "local4");
        assert_eq!(r.pri, 20 * 8 + kind(n).0 as u8);
        assert_eq!(r.app, "ringfence");
        assert_eq!(r.procid, std::process::id().to_string());
        assert_eq!(r.host, host.trim());
        assert_eq!(r.input, input);
    }
}

fn sink(address: Address) -> Syslog {
    Syslog::new(address, Facility::Local4, "ringfence")
}

fn tcp(r: &Rsyslog) -> Syslog {
    sink(format!("tcp://127.0.0.1:{}", r.port).parse().unwrap())
}

fn unix(path: &std::path::Path) -> Syslog {
    sink(format!("unix://{}", path.display()).parse().unwrap())
}

/// A `wait_for` condition: `n` sentinels arrived, so everything sent before the last did.
fn sentinels(n: usize) -> impl Fn(&[Received]) -> bool {
    move |got| got.iter().filter(|r| r.msg == SENTINEL).count() >= n
}

#[test]
fn every_line_arrives_once_and_intact_over_tcp_with_octet_counting() {
    let Some(r) = Rsyslog::start_new("syslog over tcp") else {
        return;
    };
    let mut s = tcp(&r);
    send_all(&mut s, &lines(0..N));
    send_sentinel(&mut s);
    let got = r.wait_for(sentinels(1));
    assert_arrived(&got, &(0..N).collect::<Vec<_>>(), "imtcp");
}

#[test]
fn every_line_arrives_once_and_intact_as_datagrams_on_the_local_socket() {
    let Some(r) = Rsyslog::start_new("syslog over a unix datagram socket") else {
        return;
    };
    let mut s = unix(&r.datagram);
    send_all(&mut s, &lines(0..N));
    send_sentinel(&mut s);
    let got = r.wait_for(sentinels(1));
    assert_arrived(&got, &(0..N).collect::<Vec<_>>(), "imuxsock");
}

#[test]
fn a_line_too_large_for_a_datagram_is_reported_alone_and_the_rest_go() {
    let Some(r) = Rsyslog::start_new("syslog datagram too large") else {
        return;
    };
    let mut s = unix(&r.datagram);
    let huge = format!(r#"{{"n":1,"long":"{}"}}"#, "x".repeat(4 << 20));
    let texts = vec![(0, text(0)), (1, huge), (2, text(2))];
    let all = messages(&texts);
    let Err(Partial { sent, error }) = s.send(&all) else {
        panic!("a 4 MiB datagram was sent");
    };
    assert_eq!(sent, 1);
    assert!(
        matches!(error, SendError::TooLarge { .. }) && error.line_at_fault(),
        "{error}"
    );
    s.send(&all[sent + 1..]).unwrap();
    send_sentinel(&mut s);
    assert_arrived(&r.wait_for(sentinels(1)), &[0, 2], "imuxsock");
}

#[test]
fn lines_arrive_newline_framed_on_a_local_stream_socket() {
    let Some(r) = Rsyslog::start_new("syslog over a unix stream socket") else {
        return;
    };
    let mut s = unix(&r.stream);
    let texts: Vec<(usize, String)> = lines(0..300).into_iter().filter(|(i, _)| *i != 7).collect();
    send_all(&mut s, &texts);
    let Err(Partial { sent, error }) = s.send(&messages(&lines(7..8))) else {
        panic!("a line feed was sent on a newline-framed stream");
    };
    assert_eq!(sent, 0);
    assert!(matches!(error, SendError::LineFeed { .. }), "{error}");
    send_sentinel(&mut s);
    let expected: Vec<usize> = texts.iter().map(|(i, _)| *i).collect();
    assert_arrived(&r.wait_for(sentinels(1)), &expected, "imptcp");
}

/// Sends `first`, stops rsyslog, checks that the next batch fails without a line reported
/// sent, restarts it, and retries: every line arrives exactly once.
fn survives_a_restart(r: &mut Rsyslog, s: &mut Syslog, input: &str) {
    let first = lines(0..500);
    send_all(s, &first);
    send_sentinel(s);
    r.wait_for(sentinels(1));

    r.stop();
    let second = lines(500..1000);
    for attempt in 0..2 {
        let Err(Partial { sent, error }) = s.send(&messages(&second[..BATCH])) else {
            panic!("attempt {attempt}: a batch was reported sent to a stopped rsyslog");
        };
        assert_eq!(sent, 0, "attempt {attempt}");
        assert!(!error.line_at_fault(), "{error}");
        assert!(matches!(error, SendError::Transport { .. }), "{error}");
    }

    r.start();
    send_all(s, &second);
    send_sentinel(s);
    let got = r.wait_for(sentinels(2));
    assert_arrived(&got, &(0..1000).collect::<Vec<_>>(), input);
}

#[test]
fn a_stopped_collector_fails_the_batch_and_after_its_restart_the_retried_lines_arrive_once_over_tcp(
) {
    let Some(mut r) = Rsyslog::start_new("syslog restart over tcp") else {
        return;
    };
    let mut s = tcp(&r);
    survives_a_restart(&mut r, &mut s, "imtcp");
}

#[test]
fn a_stopped_collector_fails_the_batch_and_after_its_restart_the_retried_lines_arrive_once_on_the_local_socket(
) {
    let Some(mut r) = Rsyslog::start_new("syslog restart over a unix datagram socket") else {
        return;
    };
    let mut s = unix(&r.datagram.clone());
    survives_a_restart(&mut r, &mut s, "imuxsock");
}

#[test]
fn an_unreachable_collector_is_reported_without_blocking_long() {
    let dead = crate::support::dead_address();
    let mut s = sink(format!("tcp://{dead}").parse().unwrap());
    let texts = lines(0..3);
    let e = s.send(&messages(&texts)).unwrap_err();
    assert_eq!(e.sent, 0);
    assert!(!e.error.line_at_fault(), "{e}");
    // The refusal itself is reported: the sink neither waited out its connect timeout (which
    // would read `TimedOut`) nor kept trying.
    assert!(
        matches!(&e.error, SendError::Transport { error, .. }
            if error.kind() == std::io::ErrorKind::ConnectionRefused),
        "{e}"
    );
    let mut s = unix(std::path::Path::new("/nonexistent/ringfence.sock"));
    let e = s.send(&messages(&texts)).unwrap_err();
    assert_eq!(e.sent, 0);
}

/// Stops and restarts rsyslog between two batches: the second goes whole to the new instance.
fn restart_between_batches_costs_nothing(r: &mut Rsyslog, s: &mut Syslog, input: &str) {
    send_all(s, &lines(0..500));
    send_sentinel(s);
    r.wait_for(sentinels(1));
    r.stop();
    r.start();
    send_all(s, &lines(500..1000));
    send_sentinel(s);
    assert_arrived(
        &r.wait_for(sentinels(2)),
        &(0..1000).collect::<Vec<_>>(),
        input,
    );
}

#[test]
fn a_collector_restarted_between_batches_costs_no_lines_over_tcp() {
    let Some(mut r) = Rsyslog::start_new("syslog restart between batches over tcp") else {
        return;
    };
    let mut s = tcp(&r);
    restart_between_batches_costs_nothing(&mut r, &mut s, "imtcp");
}

#[test]
fn a_collector_restarted_between_batches_costs_no_lines_on_the_local_socket() {
    let Some(mut r) = Rsyslog::start_new("syslog restart between batches, datagrams") else {
        return;
    };
    let mut s = unix(&r.datagram.clone());
    restart_between_batches_costs_nothing(&mut r, &mut s, "imuxsock");
}

/// Issue 12, end to end: the proxy's audit trail to a real rsyslogd over TCP. Every line
/// arrives, as its own message with its kind as MSGID; with the collector stopped, allowed
/// requests are refused `audit_unavailable` (nothing is forwarded unrecorded) and the lines wait;
/// started again, every line arrives exactly once and none is counted lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_trail_reaches_rsyslog_and_survives_its_restart() {
    use crate::support::{self, metrics::sample, Options, SIMRING};
    let Some(r) = Rsyslog::start_new("proxy audit to rsyslog") else {
        return;
    };
    let h = support::start_with(Options {
        audit: format!(
            "sink = \"syslog\"\naddress = \"tcp://127.0.0.1:{}\"\nfacility = \"local4\"\n\
             write_timeout = \"300ms\"",
            r.port
        ),
        ..Options::default()
    })
    .await;
    let host = "lyncweb.contoso.com";
    let ring = |target: &'static str, id: String| {
        let h = &h;
        async move {
            h.client
                .request(
                    "POST",
                    &format!("{SIMRING}?target={target}"),
                    host,
                    &[("x-request-id", id.as_str())],
                    b"",
                )
                .await
        }
    };
    const ALLOWED: &str = "tel:%2B14255550100";
    const DENIED: &str = "tel:%2B19005550100";
    for i in 0..100 {
        let (target, status) = if i % 2 == 0 {
            (ALLOWED, 204)
        } else {
            (DENIED, 403)
        };
        assert_eq!(ring(target, format!("before-{i}")).await.status, status);
    }
    // 50 allowed (decision + outcome) and 50 denied (decision).
    let r = tokio::task::spawn_blocking(move || {
        r.wait_for(|got| got.len() >= 150);
        r
    })
    .await
    .unwrap();

    let mut r = tokio::task::spawn_blocking(move || {
        let mut r = r;
        r.stop();
        r
    })
    .await
    .unwrap();
    let refused = ring(ALLOWED, "during-allowed".into()).await;
    support::assert_refused(&refused, 503, "audit_unavailable");
    for i in 0..20 {
        assert_eq!(ring(DENIED, format!("during-{i}")).await.status, 403);
    }
    let m = h.metrics().await;
    assert!(
        sample(&m, "ringfence_audit_queue_lines", &[]).unwrap() >= 20.0,
        "the lines wait: {m}"
    );
    let forwarded = h.members.iter().map(|m| m.received().len()).sum::<usize>();
    assert_eq!(forwarded, 50, "nothing was forwarded unrecorded");

    r = tokio::task::spawn_blocking(move || {
        r.start();
        r
    })
    .await
    .unwrap();
    // Once the collector is back, guarded requests go through again.
    let after = support::eventually("the trail to recover", async || {
        let reply = ring(ALLOWED, "after".into()).await;
        (reply.status == 204).then_some(reply)
    })
    .await;
    assert_eq!(after.status, 204);
    let got = tokio::task::spawn_blocking(move || {
        r.wait_for(|got| {
            got.iter().any(|m| {
                m.msgid == "outcome" && m.msg.contains("\"status\":204") && {
                    // the last `after` request's outcome
                    got.iter()
                        .filter(|m| m.msg.contains("\"client_request_id\":\"after\""))
                        .count()
                        > 0
                }
            }) && got.len() >= 150 + 22
        })
    })
    .await
    .unwrap();
    let m = h.metrics().await;
    let written = sample(&m, "ringfence_audit_lines_total", &[("result", "written")]).unwrap();
    assert_eq!(
        sample(&m, "ringfence_audit_lines_total", &[("result", "dropped")]).unwrap_or(0.0)
            + sample(&m, "ringfence_audit_lines_total", &[("result", "failed")]).unwrap_or(0.0),
        0.0,
        "{m}"
    );
    // Every message is one JSON line whose kind is its MSGID; no decision arrived twice.
    let mut seen = BTreeMap::new();
    for message in &got {
        let v: serde_json::Value =
            serde_json::from_str(&message.msg).unwrap_or_else(|e| panic!("{e}: {}", message.msg));
        assert_eq!(v["kind"], message.msgid.as_str());
        assert_eq!(message.app, "ringfence");
        assert_eq!(message.facility, "local4");
        if v["kind"] == "decision" {
            let expected = if v["decision"] == "allow" {
                "info"
            } else {
                "notice"
            };
            assert_eq!(message.severity, expected, "{}", message.msg);
            let id = v["client_request_id"].as_str().unwrap().to_owned();
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    for i in 0..100 {
        assert_eq!(seen.get(&format!("before-{i}")), Some(&1), "before-{i}");
    }
    for i in 0..20 {
        assert_eq!(seen.get(&format!("during-{i}")), Some(&1), "during-{i}");
    }
    assert_eq!(
        seen.get("during-allowed"),
        Some(&1),
        "the refused request's line arrived too"
    );
    assert!(got.len() as f64 <= written, "{} > {written}", got.len());
}
