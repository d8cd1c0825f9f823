use super::*;

use http_body_util::{Empty, Full};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn head(text: &str) -> Result<Option<Head>, StatusCode> {
    let mut buf = BytesMut::from(text.as_bytes());
    parse(&mut buf, &mut Vec::new())
}

fn ok(text: &str) -> Head {
    match head(text) {
        Ok(Some(h)) => h,
        Ok(None) => panic!("partial: {text:?}"),
        Err(s) => panic!("{s}: {text:?}"),
    }
}

#[test]
fn heads_are_framed_as_hypers_server_frames_them() {
    let h = ok("POST /a?b=c HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(5));
    assert_eq!(h.request.headers.get_all("content-length").count(), 1);
    assert_eq!(h.request.target.query(), Some("b=c"));
    assert!(h.keep_alive);

    let h = ok("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(h.framing, Framing::Chunked);
    assert!(
        h.request.headers.get("content-length").is_none(),
        "chunked wins"
    );
    assert!(!h.keep_alive, "closed after the answer (RFC 9112 §6.3)");
    let h = ok("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(h.framing, Framing::Chunked);
    assert!(h.request.headers.get("content-length").is_none());
    assert!(!h.keep_alive);

    assert_eq!(ok("GET / HTTP/1.1\r\n\r\n").framing, Framing::Length(0));
    assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    assert!(
        !ok("GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n").keep_alive
    );
    assert!(ok("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").expect_continue);
    assert!(
        !ok("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue,
        "hyper answers Expect on HTTP/1.1 only"
    );
    assert!(
        ok("GET / HTTP/1.1\nHost: h\n\n")
            .request
            .headers
            .contains("host"),
        "bare LF"
    );

    for refused in [
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: \u{ff}, chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 7,7\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        "POST / HTTP/1.1\r\nHost : h\r\n\r\n",
        "POST / HTTP/1.1\r\n folded: h\r\n\r\n",
        "POST / HTTP/2.0\r\n\r\n",
        "POST /a b HTTP/1.1\r\n\r\n",
        "P\x01ST / HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(
            head(refused).err(),
            Some(StatusCode::BAD_REQUEST),
            "{refused:?}"
        );
    }
    let huge = "POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n";
    assert_eq!(
        head(huge).err(),
        Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    );
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(101));
    assert_eq!(
        head(&many).err(),
        Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    );
    assert!(
        head("GET / HTTP/1.1\r\nHost: h\r\n").unwrap().is_none(),
        "partial"
    );
}

#[test]
fn a_head_is_taken_off_the_buffer_and_what_follows_is_left() {
    let mut buf = BytesMut::from(&b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET"[..]);
    let h = parse(&mut buf, &mut Vec::new()).unwrap().unwrap();
    let (body, feeding) = body(&mut buf, h.framing, false);
    assert!(feeding.is_none(), "a body that came with its head is whole");
    assert!(matches!(body, WireBody::Whole(Some(ref b)) if b == "hi"));
    assert_eq!(&buf[..], b"GET");
}

#[test]
fn a_chunked_body_that_came_whole_is_read_at_once_and_a_broken_one_is_an_error() {
    let mut buf = BytesMut::from(&b"2\r\nhi\r\n3\r\n th\r\n0\r\n\r\nnext"[..]);
    let (whole, feeding) = body(&mut buf, Framing::Chunked, false);
    assert!(feeding.is_none());
    assert!(matches!(whole, WireBody::Unsized { data: Some(ref b), .. } if b == "hi th"));
    assert_eq!(&buf[..], b"next");

    // Spaces after a size, as hyper's server takes them.
    let mut buf = BytesMut::from(&b"2 \t\r\nhi\r\n0\r\n\r\n"[..]);
    let (whole, _) = body(&mut buf, Framing::Chunked, false);
    assert!(matches!(whole, WireBody::Unsized { data: Some(ref b), .. } if b == "hi"));

    let mut buf = BytesMut::from(&b"2\nhi\r\n0\r\n\r\n"[..]);
    let (fed, feeding) = body(&mut buf, Framing::Chunked, false);
    let feeding = feeding.expect("fed");
    assert!(feeding.broken, "a bare LF in chunked framing");
    let WireBody::Fed { feed, .. } = &fed else {
        panic!("fed")
    };
    assert!(matches!(feed.lock().end, Some(Err(_))));
}

/// What hyper's own server writes for `response` to a request `request`, read off a duplex
/// stream: the reference for [`encode`].
async fn hypers_answer<B>(request: &str, response: http::Response<B>) -> Vec<u8>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let cell = std::sync::Mutex::new(Some(response));
    let service = hyper::service::service_fn(move |_req| {
        let response = cell.lock().unwrap().take().expect("one request");
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(server), service);
    let serving = tokio::spawn(conn);
    client.write_all(request.as_bytes()).await.unwrap();
    // The answer is what came until the connection closed or went quiet for 100 ms (a HEAD's
    // or a 304's length names no bytes that follow).
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let quiet = Duration::from_millis(100);
    for _ in 0..100 {
        let wait = if out.is_empty() {
            Duration::from_secs(5)
        } else {
            quiet
        };
        match tokio::time::timeout(wait, client.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    serving.abort();
    assert!(!out.is_empty(), "hyper answers");
    out
}

/// Ours, written the same way: head by [`encode`], body by a [`Writer`].
async fn our_answer<B>(request: &str, response: http::Response<B>) -> Vec<u8>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let h = ok(request);
    let asked = Asked {
        method: h.request.method.clone(),
        version: h.request.version,
        keep_alive: h.keep_alive,
    };
    let (mut parts, body) = response.into_parts();
    let mut out = BytesMut::new();
    let (encoder, _last) = encode(&mut out, &asked, &mut parts, &body).expect("encodable");
    let mut writer = Writer {
        out,
        encoder,
        body: (!encoder.is_eof()).then_some(body),
        done: false,
        blocked_since: None,
        send: Duration::from_secs(5),
    };
    let mut sink = Vec::new();
    poll_fn(|cx| writer.poll(cx, &mut sink)).await.unwrap();
    sink
}

/// The two with their date lines taken out.
fn without_date(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .filter(|l| !l.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A body of several frames whose length is not known ahead.
struct Streamed(std::collections::VecDeque<Bytes>);

impl Body for Streamed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn streamed(parts: &[&'static str]) -> Streamed {
    Streamed(
        parts
            .iter()
            .map(|p| Bytes::from_static(p.as_bytes()))
            .collect(),
    )
}

fn response<B>(status: u16, headers: &[(&str, &str)], body: B) -> http::Response<B> {
    let mut r = http::Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    for (n, v) in headers {
        r.headers_mut().append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    r
}

/// A chunk of 0xAB bytes: its size has hex letters.
const LONG: &str = "01234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789X";

#[tokio::test]
async fn answers_are_written_byte_for_byte_as_hypers_server_writes_them() {
    assert_eq!(LONG.len(), 0xAB);
    const GET11: &str = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    const HEAD11: &str = "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n";
    const GET10: &str = "GET / HTTP/1.0\r\n\r\n";
    const GET10KA: &str = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    const CLOSE: &str = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    let full = |s: &'static str| Full::new(Bytes::from_static(s.as_bytes()));
    let mut cases = 0;
    macro_rules! same {
        ($request:expr, $make:expr) => {{
            let ours = our_answer($request, $make).await;
            let hypers = hypers_answer($request, $make).await;
            // One difference is ours: after a Transfer-Encoding that does not end in chunked,
            // hyper 1.12 also ends the next joined line (here the Connection it adds) with
            // ", chunked" (its `must_write_chunked` is not reset between names).
            let hypers =
                without_date(&hypers).replace("connection: close, chunked", "connection: close");
            assert_eq!(without_date(&ours), hypers, "request {:?}", $request);
            assert!(
                String::from_utf8_lossy(&ours).contains("\r\ndate: "),
                "a date"
            );
            cases += 1;
        }};
    }
    for request in [GET11, HEAD11, GET10, GET10KA, CLOSE] {
        same!(request, response(200, &[], full("hello")));
        same!(
            request,
            response(200, &[("content-type", "text/plain")], full(""))
        );
        same!(request, response(204, &[], Empty::<Bytes>::new()));
        same!(
            request,
            response(304, &[("etag", "\"x\"")], Empty::<Bytes>::new())
        );
        same!(
            request,
            response(403, &[("content-type", "application/json")], full("{}"))
        );
        same!(
            request,
            response(200, &[("content-length", "5")], full("hello"))
        );
        same!(request, response(200, &[], streamed(&["he", "", "llo"])));
        same!(request, response(200, &[], streamed(&[LONG, "y"])));
        same!(
            request,
            response(200, &[("content-length", "5")], streamed(&["he", "llo"]))
        );
        same!(
            request,
            response(200, &[("transfer-encoding", "gzip")], streamed(&["zz"]))
        );
        same!(
            request,
            response(200, &[("connection", "close")], full("bye"))
        );
        same!(
            request,
            response(200, &[("connection", "keep-alive")], full("hi"))
        );
        same!(
            request,
            response(
                500,
                &[("x-a", "1"), ("x-a", "2"), ("set-cookie", "c=1")],
                full("x")
            )
        );
        same!(
            request,
            response(200, &[("date", "Thu, 01 Jan 1970 00:00:00 GMT")], full("x"))
        );
        same!(request, response(599, &[], full("odd")));
        same!(request, {
            let mut r = response(409, &[], full("conflict"));
            r.extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(b"Member Says So"));
            r
        });
        same!(request, {
            let mut r = response(200, &[], full("v10"));
            *r.version_mut() = Version::HTTP_10;
            r
        });
    }
    assert_eq!(cases, 85);
}

#[test]
fn chunk_sizes_are_upper_case_hex_as_hyper_writes_them() {
    let mut b = [0u8; 16];
    assert_eq!(hex(0, &mut b), b"0");
    assert_eq!(hex(255, &mut b), b"FF");
    assert_eq!(hex(4096, &mut b), b"1000");
}

/// "No limit" (`Duration::MAX`) sets the connection's timer a day ahead instead of overflowing
/// the clock (session 29's review).
#[tokio::test(start_paused = true)]
async fn a_wait_without_limit_is_capped_at_a_day() {
    let token = tokio_util::sync::CancellationToken::new();
    let mut sides = Sides::new(&token);
    let before = tokio::time::Instant::now();
    sides.arm(Duration::MAX, Purpose::Head);
    assert!(sides.armed_for(Purpose::Head));
    assert_eq!(
        sides.timer.deadline() - before,
        Duration::from_secs(24 * 3600)
    );
}

/// A stop and a timer that fire in the same wake are both seen: the stop first, the timer at
/// the next look (session 29's review: the stop hid it).
#[tokio::test(start_paused = true)]
async fn a_stop_does_not_hide_a_timer_fired_in_the_same_wake() {
    let token = tokio_util::sync::CancellationToken::new();
    let mut sides = Sides::new(&token);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(sides.poll(&mut cx, true).is_none(), "nothing yet");
    sides.arm(Duration::from_millis(10), Purpose::Head);
    tokio::time::sleep(Duration::from_millis(20)).await;
    token.cancel();
    assert!(matches!(sides.poll(&mut cx, true), Some(Side::Stop)));
    assert!(matches!(sides.poll(&mut cx, true), Some(Side::Timer)));
    assert!(sides.poll(&mut cx, true).is_none());
}

/// A stream that takes every write at once but whose flush waits, as a TLS stream does when its
/// records wait for a full socket; `flushed` lets the flush through.
struct HeldFlush {
    taken: Vec<u8>,
    flushed: bool,
}

impl tokio::io::AsyncWrite for HeldFlush {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.taken.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.flushed {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// An answer written whole into a stream whose flush waits (a TLS stream's records the client
/// does not take) counts as blocked, as a write that waits does: the connection's
/// `send_timeout` is armed from it and closes a client that takes nothing (session 29's review;
/// over real TLS the writes themselves block first, at 64 KiB of records, so a test on the wire
/// does not reach this path). Once the flush goes through, it is no longer blocked.
#[tokio::test(start_paused = true)]
async fn a_flush_that_waits_counts_as_blocked_for_send_timeout() {
    let asked = Asked {
        method: Method::GET,
        version: Version::HTTP_11,
        keep_alive: true,
    };
    let mut parts = response(200, &[], ()).into_parts().0;
    let body = streamed(&["small answer"]);
    let mut out = BytesMut::new();
    let (encoder, _) = encode(&mut out, &asked, &mut parts, &body).expect("encodable");
    let send = Duration::from_secs(5);
    let mut writer = Writer {
        out,
        encoder,
        body: Some(body),
        done: false,
        blocked_since: None,
        send,
    };
    let mut io = HeldFlush {
        taken: Vec::new(),
        flushed: false,
    };
    let mut cx = Context::from_waker(Waker::noop());
    assert!(writer.poll(&mut cx, &mut io).is_pending());
    assert!(
        String::from_utf8_lossy(&io.taken).ends_with("small answer\r\n0\r\n\r\n"),
        "the whole answer was taken: {:?}",
        String::from_utf8_lossy(&io.taken)
    );
    assert_eq!(writer.stall_left(), Some(send), "blocked from the flush on");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(writer.stall_left(), Some(send - Duration::from_secs(2)));
    assert!(writer.poll(&mut cx, &mut io).is_pending());
    assert_eq!(
        writer.stall_left(),
        Some(send - Duration::from_secs(2)),
        "a flush still waiting keeps the time it began"
    );
    io.flushed = true;
    assert!(writer.poll(&mut cx, &mut io).is_ready());
    assert_eq!(writer.stall_left(), None);
}

/// What a server made of some bytes: the request (method, target, version, header lines in
/// order) and its body (`Err` if the body could not be read whole), or nothing (refused, or the
/// head never complete).
type Reading = Option<(
    String,
    String,
    Version,
    Vec<(String, Vec<u8>)>,
    Result<Vec<u8>, ()>,
)>;

/// ringfence's reading of the next request in `buf`: [`parse`], then the body's decoder over
/// what follows the head (taken off `buf`); whether a body that could not be read was malformed
/// (not only cut short by the input's end); and whether the connection goes on after it.
fn our_next(buf: &mut BytesMut) -> (Reading, bool, bool) {
    let Some(head) = parse(buf, &mut Vec::new()).ok().flatten() else {
        return (None, false, false);
    };
    let mut decoder = match head.framing {
        Framing::Length(n) => Decoder::Length(n),
        Framing::Chunked => Decoder::Chunked(Chunked::Size),
    };
    let mut data = Vec::new();
    let mut malformed = false;
    let body = loop {
        match decoder.step(buf) {
            Ok(Step::Data(d)) => data.extend_from_slice(&d),
            Ok(Step::End) => break Ok(data),
            // The input ends here: a body not all there is one the client cut.
            Ok(Step::More) => break Err(()),
            Err(_) => {
                malformed = true;
                break Err(());
            }
        }
    };
    let goes_on = head.keep_alive && body.is_ok();
    let p = head.request;
    let lines = by_name(
        p.headers
            .iter()
            .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
            .collect(),
    );
    (
        Some((
            p.method.to_string(),
            p.target.to_string(),
            p.version,
            lines,
            body,
        )),
        malformed,
        goes_on,
    )
}

/// Header lines ordered by name, each name's lines in their order: ringfence keeps the lines in
/// the order they came, hyper's `HeaderMap` groups them by name (and its `remove` moves its last
/// name into the freed place).
fn by_name(mut lines: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines
}

/// ringfence's reading of every request in `input`, in order, up to the first it refuses or
/// whose body it cannot read, or the one after which the connection ends; and whether the last
/// one's body was malformed.
fn ours(input: &[u8]) -> (Vec<Reading>, bool) {
    let mut buf = BytesMut::from(input);
    let mut read = Vec::new();
    loop {
        let (reading, malformed, goes_on) = our_next(&mut buf);
        if reading.is_none() {
            return (read, false);
        }
        read.push(reading);
        if !goes_on || buf.is_empty() {
            return (read, malformed);
        }
    }
}

/// hyper's server's reading of the same bytes, sent whole and then the client's end: what its
/// service was called with, request after request, each body as the service could collect it.
async fn hypers(input: &[u8]) -> Vec<Reading> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let tx = tx.clone();
        async move {
            let (p, body) = req.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .map(|b| b.to_bytes().to_vec())
                .map_err(|_| ());
            let lines = by_name(
                p.headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect(),
            );
            let _ = tx.send((
                p.method.to_string(),
                p.uri.to_string(),
                p.version,
                lines,
                body,
            ));
            Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new()))
        }
    });
    // Half-closed: the client's end of input comes right after its bytes, and must not cancel
    // the request they hold (hyper's default treats it as the client gone).
    let conn = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(hyper_util::rt::TokioIo::new(server), service);
    let serving = tokio::spawn(conn);
    client.write_all(input).await.unwrap();
    client.shutdown().await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut sink)).await;
    serving.abort();
    let mut read = Vec::new();
    while let Ok(request) = rx.try_recv() {
        read.push(Some(request));
    }
    read
}

/// Request heads and bodies from the parts that decide framing and smuggling, often malformed.
fn requests() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        6 => Just("GET"),
        10 => Just("POST"),
        4 => Just("PUT"),
        2 => Just("HEAD"),
        1 => Just("OPTIONS"),
        1 => Just("P\u{1}ST"),
        1 => Just("get"),
        1 => Just("M-SEARCH"),
        1 => Just(""),
    ];
    let target = prop_oneof![
        10 => Just("/"),
        10 => Just("/a?b=c&d"),
        1 => Just("*"),
        1 => Just("http://h.example/x?y"),
        1 => Just("/a b"),
        1 => Just("/a\u{7f}"),
        1 => Just("/\u{e9}"),
        1 => Just("//x"),
        1 => Just("/a#frag"),
        1 => Just("h.example:443"),
        1 => Just(""),
    ];
    let version = prop_oneof![
        16 => Just("HTTP/1.1"),
        6 => Just("HTTP/1.0"),
        1 => Just("HTTP/2.0"),
        1 => Just("HTTP/1.2"),
        1 => Just("http/1.1"),
        1 => Just("HTTP/1.1 "),
    ];
    let line = prop_oneof![
        12 => Just("Host: h.example"),
        1 => Just("Host:"),
        1 => Just("Host : h"),
        10 => Just("Content-Length: 5"),
        3 => Just("Content-Length: 05"),
        1 => Just("Content-Length: +5"),
        1 => Just("Content-Length: 5,5"),
        1 => Just("Content-Length: 5, 6"),
        1 => Just("Content-Length:  5 "),
        1 => Just("Content-Length: "),
        1 => Just("Content-Length: 0x5"),
        4 => Just("Content-Length: 0"),
        1 => Just("Content-Length: 99999999999999999999"),
        3 => Just("content-length: 3"),
        12 => Just("Transfer-Encoding: chunked"),
        1 => Just("Transfer-Encoding: Chunked"),
        1 => Just("Transfer-Encoding: gzip, chunked"),
        1 => Just("Transfer-Encoding: chunked, gzip"),
        1 => Just("Transfer-Encoding: identity"),
        1 => Just("Transfer-Encoding:  chunked\t"),
        1 => Just("Transfer-Encoding: chunked\u{b}"),
        1 => Just("Transfer-Encoding: \u{ff}chunked"),
        1 => Just("transfer-encoding: gzip"),
        3 => Just("Connection: close"),
        1 => Just("Connection: keep-alive, Upgrade"),
        2 => Just("Expect: 100-continue"),
        6 => Just("X-A: b"),
        3 => Just("X-A:b\tc"),
        1 => Just(" folded: x"),
        1 => Just("\tcontinued"),
        1 => Just("X\u{1}: y"),
        1 => Just("X-Y: \u{7f}"),
        1 => Just(": empty"),
        1 => Just("NoColon"),
    ];
    let body = prop_oneof![
        1 => Just(""),
        1 => Just("hello"),
        1 => Just("abc"),
        1 => Just("5\r\nhello\r\n0\r\n\r\n"),
        1 => Just("5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n"),
        1 => Just("5\r\nhello\r\n0\r\n"),
        1 => Just("5\nhello\r\n0\r\n\r\n"),
        1 => Just("05\r\nhello\r\n0\r\n\r\n"),
        1 => Just("5 \r\nhello\r\n0\r\n\r\n"),
        1 => Just("+5\r\nhello\r\n0\r\n\r\n"),
        1 => Just("5\r\nhelloXX\r\n0\r\n\r\n"),
        1 => Just("0\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
        2 => Just("helloGET /second HTTP/1.1\r\nHost: h\r\n\r\n"),
        1 => Just("5\r\nhello\r\n0\r\n\r\nPOST /third HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
        1 => Just("0\r\n\r\nGET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ];
    (
        method,
        target,
        version,
        prop::collection::vec(line, 0..6),
        prop_oneof![6 => Just("\r\n"), 1 => Just("\n")],
        body,
        prop::option::weighted(0.25, (any::<prop::sample::Index>(), 0u8..3, any::<u8>())),
    )
        .prop_map(|(m, t, v, lines, eol, body, damage)| {
            let mut text = crate::testkit::message(&format!("{m} {t} {v}"), lines, eol, body);
            if let Some(damage) = damage {
                crate::testkit::damage(&mut text, damage);
            }
            text
        })
}

proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(8192))]
    /// ringfence's own HTTP/1.1 server reads a request as hyper's server does (docs/decisions.md,
    /// "own HTTP/1.1 server"): the same bytes are refused by both or read by both into the same
    /// method, target, version, header lines and body, or the same broken body. A generated
    /// differential against hyper itself, beside the table above and the smuggling corpus.
    #[test]
    fn requests_are_read_as_hypers_server_reads_them(input in requests()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let theirs = runtime.block_on(hypers(&input));
        let (mine, malformed) = ours(&input);
        let text = String::from_utf8_lossy(&input);
        // Request by request, as long as ringfence reads them.
        for (i, ours) in mine.iter().enumerate() {
            let theirs = theirs.get(i).cloned().flatten();
            match (ours, &theirs) {
                // A chunked body ringfence finds malformed and hyper takes: ringfence is stricter
                // there (docs/decisions.md: any control character in an extension, every line of
                // the body ended by CRLF, trailers read as header lines), never the other way
                // round; the head must be read alike all the same, and ringfence reads no further.
                // A body ringfence still waits the rest of where hyper found its end would be
                // framing read otherwise: that fails.
                (Some((m, t, v, h, Err(()))), Some((m2, t2, v2, h2, Ok(_))))
                    if malformed && i + 1 == mine.len() =>
                {
                    prop_assert_eq!((m, t, v, h), (m2, t2, v2, h2), "request {}: {:?}", i, text);
                }
                _ => prop_assert_eq!(ours, &theirs, "request {}: {:?}", i, text),
            }
        }
        // hyper served no request ringfence did not read, unless ringfence stopped at a body it
        // found malformed.
        if !malformed {
            prop_assert!(
                theirs.len() <= mine.len(),
                "hyper served {} requests, ringfence read {}: {:?}",
                theirs.len(),
                mine.len(),
                text
            );
        }
    }
}
