//! Hostile answer framing from a member (the answer side of `smuggling.rs`): a raw member answers
//! a first client's request with each misframed answer, with a whole answer of its own smuggled
//! behind it, then a second client asks. The first client gets the exact body, a 502, or a cut
//! answer (when the misframing is found inside a body already being streamed); the second
//! always gets its own answer, never a byte of the first one's: a misframed connection is never
//! reused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, HOST, TIMEOUT};

const PATH: &str = "/ucwa/oauth/v1/applications/192/people/first";
const SECOND: &str = "/ucwa/oauth/v1/applications/192/people/second";
/// A whole answer behind the first one: a reused connection would hand it to the second client.
const SMUGGLED: &str = "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nFIRST-SMUGGLED";

/// What the first client may get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status and exactly this body.
    Exactly(u16, &'static str),
    /// A 502 from ringfence.
    BadGateway,
    /// A 200 head whose body is cut (or, if ringfence read nothing of it yet, a 502).
    Cut,
    /// A 200 head and then a cut body, never nothing at all (fresh eyes, round 16: hyper's
    /// server dropped the head it held when the body failed right after it).
    CutAfterHead,
}

struct Case {
    name: &'static str,
    method: &'static str,
    answer: String,
    /// The member closes the connection after this answer.
    close: bool,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    let case = |name, method, answer: &str, close, expect| Case {
        name,
        method,
        answer: answer.to_owned(),
        close,
        expect,
    };
    let big_head = format!(
        "HTTP/1.1 200 OK\r\n{}Content-Length: 5\r\n\r\nFIRST{SMUGGLED}",
        format!("X-Big: {}\r\n", "y".repeat(1_400)).repeat(50)
    );
    vec![
        case("CL and TE", "GET", &format!("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nFIRST\r\n0\r\n\r\n{SMUGGLED}"), false, Expect::BadGateway),
        case("two Content-Lengths", "GET", &format!("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nFIRST{SMUGGLED}"), false, Expect::BadGateway),
        case("signed Content-Length", "GET", &format!("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nFIRST{SMUGGLED}"), false, Expect::BadGateway),
        case("Content-Length list", "GET", &format!("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nFIRST{SMUGGLED}"), false, Expect::BadGateway),
        case("TE gzip", "GET", &format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nFIRST{SMUGGLED}"), false, Expect::BadGateway),
        case("TE gzip, chunked", "GET", &format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nFIRST\r\n0\r\n\r\n{SMUGGLED}"), false, Expect::BadGateway),
        case("bad chunk size", "GET", &format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nFIRST\r\n0\r\n\r\n{SMUGGLED}"), false, Expect::Cut),
        case("chunk size overflow", "GET", &format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nFIRST\r\n0\r\n\r\n{SMUGGLED}"), false, Expect::Cut),
        case("missing CRLF after a chunk", "GET", &format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nFIRSTX\r\n0\r\n\r\n{SMUGGLED}"), false, Expect::Cut),
        case("bare LF head", "GET", &format!("HTTP/1.1 200 OK\nContent-Length: 5\n\nFIRST{SMUGGLED}"), false, Expect::BadGateway),
        case("101", "GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nFIRST", false, Expect::BadGateway),
        case("1xx then 200", "GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nFIRST", false, Expect::Exactly(200, "FIRST")),
        case("HEAD with a body", "HEAD", &format!("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nFIRST{SMUGGLED}"), false, Expect::Exactly(200, "")),
        case("204 with a body", "GET", &format!("HTTP/1.1 204 No Content\r\n\r\n{SMUGGLED}"), false, Expect::Exactly(204, "")),
        case("304 with a body", "GET", &format!("HTTP/1.1 304 Not Modified\r\nContent-Length: 14\r\n\r\n{SMUGGLED}"), false, Expect::Exactly(304, "")),
        case("bytes after the body", "GET", &format!("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nFIRST{SMUGGLED}"), false, Expect::Exactly(200, "FIRST")),
        case("bytes after a chunked body", "GET", &format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nFIRST\r\n0\r\nX-Trailer: 1\r\n\r\n{SMUGGLED}"), false, Expect::Exactly(200, "FIRST")),
        case("close-delimited body", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nFIRST-CLOSE", true, Expect::Exactly(200, "FIRST-CLOSE")),
        case("head over the limit", "GET", &big_head, false, Expect::BadGateway),
        case("HTTP/1.0 without keep-alive", "GET", &format!("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nFIRST{SMUGGLED}"), false, Expect::Exactly(200, "FIRST")),
        case("Content-Length over 2^63", "GET", &format!("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nFIRST{SMUGGLED}"), false, Expect::BadGateway),
        case("Content-Length 2^63", "GET", &format!("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\nFIRST{SMUGGLED}"), false, Expect::BadGateway),
        case("body short of its length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello", true, Expect::CutAfterHead),
        case("chunked body without its end", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", true, Expect::CutAfterHead),
        case("Connection: close", "GET", &format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nFIRST{SMUGGLED}"), false, Expect::Exactly(200, "FIRST")),
    ]
}

/// A member that answers a request for [`PATH`] with `answer`, anything else with `second`, on
/// any connection, as many requests as come (ignoring request bodies: the tests send none); and
/// the number of requests it read and of connections it accepted.
async fn member(answer: String, close: bool) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let connections = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            // What is smuggled must leave at once: with Nagle it would wait for ringfence's
            // delayed ACK, that is, for the next request, and come as its answer (no client can
            // tell bytes sent after its check from the answer; see docs/decisions.md).
            stream.set_nodelay(true).unwrap();
            let answer = answer.clone();
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = seen.drain(..end + 4).collect();
                        counted.fetch_add(1, Ordering::SeqCst);
                        let first = String::from_utf8_lossy(&head).contains(PATH);
                        let reply = if first {
                            answer.clone()
                        } else {
                            "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond".to_owned()
                        };
                        // What is smuggled comes a little later, as its own segment: after
                        // ringfence has read the answer before it.
                        let (answer, smuggled) = match reply.find(SMUGGLED) {
                            Some(at) => reply.split_at(at),
                            None => (reply.as_str(), ""),
                        };
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        if !smuggled.is_empty() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            if stream.write_all(smuggled.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        if first && close {
                            return;
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, requests, accepted)
}

/// A server in front of `member`, once its first health probe (which would otherwise take a
/// connection the test means for a client) was answered.
async fn serve(member: SocketAddr, requests: &AtomicUsize) -> ringfence::server::Server {
    serve_probed(member, requests, "1h").await
}

async fn serve_probed(
    member: SocketAddr,
    requests: &AtomicUsize,
    interval: &str,
) -> ringfence::server::Server {
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstream]\nmembers = [\"http://{member}\"]\n[upstream.health]\ninterval = \"{interval}\"\n\
         [audit]\nsink = \"off\"\n{}",
        support::POLICY
    );
    let server = support::serve_toml(&toml).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while requests.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no health probe");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Its answer read and its connection closed or parked.
    tokio::time::sleep(Duration::from_millis(20)).await;
    server
}

/// An answer as a client read it: status and body, or `None` for the body if it was cut.
#[derive(Debug)]
struct Got {
    status: u16,
    body: Option<Vec<u8>>,
}

/// One request on a connection of its own (`Connection: close`), read to the end.
async fn ask(proxy: SocketAddr, method: &str, path: &str) -> Option<Got> {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .expect("ringfence answers and closes in time");
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let rest = &raw[end + 4..];
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = if method == "HEAD" || status == 204 || status == 304 {
        Some(Vec::new())
    } else if let Some(length) = length {
        (rest.len() == length).then(|| rest.to_vec())
    } else if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        Some(rest.to_vec())
    };
    Some(Got { status, body })
}

/// A whole chunked body's data, or `None` if it is cut.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n")?;
        let text = String::from_utf8_lossy(&rest[..line]);
        let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line + 2..];
        if size == 0 {
            return rest.ends_with(b"\r\n").then_some(data);
        }
        data.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[tokio::test]
async fn a_misframed_answer_never_reaches_another_client() {
    let mut failures = Vec::new();
    for case in cases() {
        let (member, requests, _) = member(case.answer.clone(), case.close).await;
        let server = serve(member, &requests).await;
        let proxy = server.addrs()[0];
        let first = ask(proxy, case.method, PATH).await;
        let first_ok = match (&first, case.expect) {
            (Some(g), Expect::Exactly(status, body)) => {
                g.status == status && g.body.as_deref() == Some(body.as_bytes())
            }
            (Some(g), Expect::BadGateway) => g.status == 502,
            (Some(g), Expect::Cut) => g.status == 502 || (g.status == 200 && g.body.is_none()),
            (Some(g), Expect::CutAfterHead) => g.status == 200 && g.body.is_none(),
            (None, Expect::Cut) => true,
            (None, _) => false,
        };
        if !first_ok {
            failures.push(format!("{}: first client got {first:?}", case.name));
        }
        // The member had time to send everything it had; a reused connection would now hold it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for round in 0..2 {
            let second = ask(proxy, "GET", SECOND).await;
            let own = matches!(&second, Some(Got { status: 200, body: Some(b) }) if b == b"second");
            if !own {
                failures.push(format!(
                    "{}: second client (round {round}) got {second:?}",
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A chunked answer, framed well, is passed on whole and its connection serves the next
/// request: the strict reading does not cost the pool its keep-alive connections.
#[tokio::test]
async fn well_framed_answers_keep_their_connection() {
    let (member, requests, _) = member(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nFIRST\r\n0\r\n\r\n".to_owned(),
        false,
    )
    .await;
    let server = serve(member, &requests).await;
    let proxy = server.addrs()[0];
    for _ in 0..3 {
        let got = ask(proxy, "GET", PATH).await.unwrap();
        assert_eq!(
            (got.status, got.body.as_deref()),
            (200, Some(&b"FIRST"[..]))
        );
        let got = ask(proxy, "GET", SECOND).await.unwrap();
        assert_eq!(
            (got.status, got.body.as_deref()),
            (200, Some(&b"second"[..]))
        );
    }
    let metrics = support::scrape(&server).await;
    let open = support::metrics::sample(
        &metrics,
        "ringfence_upstream_connections",
        &[("member", &format!("http://{member}")), ("state", "idle")],
    );
    assert_eq!(open, Some(1.0), "one connection served all six: {metrics}");
}

/// Health probes read their answer (here all in the buffer with its head) to its end, so one
/// connection serves them all, as with hyper's client.
#[tokio::test]
async fn probes_reuse_their_connection() {
    let (member, requests, accepted) = member(String::new(), false).await;
    let _server = serve_probed(member, &requests, "50ms").await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while requests.load(Ordering::SeqCst) < 6 {
        assert!(tokio::time::Instant::now() < deadline, "probes in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A member's own reason phrase reaches the client, as with hyper's client (fresh eyes, round
/// 16: `999 X` came out as `999 <none>`).
#[tokio::test]
async fn a_members_own_reason_phrase_reaches_the_client() {
    for (answer, line) in [
        (
            "HTTP/1.1 404 Nothing Here\r\nContent-Length: 2\r\n\r\nno",
            "HTTP/1.1 404 Nothing Here\r\n",
        ),
        (
            "HTTP/1.1 999 X\r\nContent-Length: 2\r\n\r\nno",
            "HTTP/1.1 999 X\r\n",
        ),
        (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
            "HTTP/1.1 404 Not Found\r\n",
        ),
        // No reason, and one that is not UTF-8: an empty one, as hyper's client passed it on
        // (fresh eyes, round 17: both panicked the exchange).
        (
            "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nno",
            "HTTP/1.1 200 \r\n",
        ),
        (
            "HTTP/1.1 200 \u{e9}\r\nContent-Length: 2\r\n\r\nno",
            "HTTP/1.1 200 \r\n",
        ),
    ] {
        let (member, requests, _) = member(answer.to_owned(), false).await;
        let server = serve(member, &requests).await;
        let request = format!("GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let got = support::client::raw(server.addrs()[0], request.as_bytes()).await;
        assert!(got.starts_with(line), "{answer:?} came out as {got:?}");
        assert!(
            got.ends_with("\r\n\r\nno"),
            "{answer:?} came out as {got:?}"
        );
    }
}

/// A member's connection-specific headers, and those its Connection line names, do not reach
/// the client; the rest arrive in the member's order (RFC 9110 §7.6.1).
#[tokio::test]
async fn a_members_connection_specific_headers_stay_behind() {
    let answer = "HTTP/1.1 200 OK\r\nX-Secret: 1\r\nConnection: keep-alive, X-Secret\r\n\
                  Keep-Alive: timeout=5\r\nX-First: a\r\nProxy-Connection: x\r\nUpgrade: h2c\r\n\
                  X-Second: b\r\nx-secret: 2\r\nX-Third: c\r\nX-Fourth: d\r\n\
                  Content-Length: 2\r\n\r\nok";
    let (member, requests, _) = member(answer.to_owned(), false).await;
    let server = serve(member, &requests).await;
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let got = support::client::raw(server.addrs()[0], request.as_bytes()).await;
    let lower = got.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200 ok\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nok"), "{got}");
    for gone in ["x-secret", "keep-alive:", "proxy-connection", "upgrade"] {
        assert!(!lower.contains(gone), "{gone} reached the client: {got}");
    }
    // In the member's order (fresh eyes, round 27: removing the named header reordered them).
    let at: Vec<usize> = ["x-first: a", "x-second: b", "x-third: c", "x-fourth: d"]
        .iter()
        .map(|line| lower.find(&format!("{line}\r\n")).expect(line))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{got}");
    // ringfence's own close, for a client that asked for it, and nothing of the member's.
    assert_eq!(lower.matches("connection:").count(), 1, "{got}");
}
