//! Nothing a real UCWA client sends is refused (issue #10): the request shapes of Microsoft's
//! documentation and samples (the UCWA reference pages, the Batch.js sample library) and of
//! public UCWA clients (.NET, Java, jQuery, Python), each with an allowed target, reach the pool
//! byte for byte over HTTP/1.1, h2c and h2 over TLS, and the pool model finds nothing denied in
//! them. Where a shape was rebuilt from a client's code rather than captured, its comment says so.

use crate::hostile::{forwarded, post, req, send_on, Req, Rig, Transport, ALLOWED, HOST};

const APP: &str = "/ucwa/oauth/v1/applications/10672188129";
const CWT: &str = "Bearer cwt=PHNhbWw6QXNzZXJ0aW9uIHhtbG5...uZm8";

fn forwarding(folder: &str, resource: &str) -> String {
    format!("{APP}/me/callForwardingSettings/{folder}/{resource}")
}

fn simultaneous() -> String {
    forwarding("simultaneousRingSettings", "simultaneousRingToContact")
}

fn immediate() -> String {
    forwarding("immediateForwardSettings", "immediateForwardToContact")
}

fn unanswered() -> String {
    forwarding("unansweredCallSettings", "unansweredCallToContact")
}

/// `Req::body` adds a Content-Type; these shapes set their own headers.
fn with_body(req: Req, body: &str) -> Req {
    req.bare_body(body)
}

fn shapes() -> Vec<(&'static str, Req)> {
    let batch_js_boundary = "5f0c6c32-4e3b-4a77-9e2c-1f4f8a3b2d10";
    vec![
        // The reference page's example, with the documented query parameter as naive clients
        // append it: `"?target=" + uri`, `+` and `:` raw (kdembeck/WebChat, kenakamu/UCWA2.0-CS).
        ("query with a raw tel: URI", post(format!("{}?target={ALLOWED}", immediate())).header("Authorization", CWT)),
        // The Skype Web SDK encodes query values like encodeURIComponent.
        ("query encoded as the Web SDK does", post(format!("{}?target=tel%3A%2B14255550100", immediate()))
            .header("Authorization", "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.sig")
            .header("Accept", "application/json")
            .header("X-Ms-Origin", "https://outlook.office.com")
            .header("X-Requested-With", "XMLHttpRequest")
            .header("X-MS-RequiresMinResourceVersion", "2")),
        ("query in lower-case hex", post(format!("{}?target=tel%3a%2b14255550100", simultaneous())).header("Authorization", CWT)),
        ("raw SIP URI in the query", post(format!("{}?target=sip:jane@contoso.com", simultaneous())).header("Authorization", CWT)),
        ("encoded SIP URI in the query", post(format!("{}?target=sip%3Ajane%40contoso.com", simultaneous())).header("Authorization", CWT)),
        ("tel: URI with an extension", post(format!("{}?target=tel:+14255550100;ext=54321", immediate())).header("Authorization", CWT)),
        // kdembeck/WebChat: the target in the query and in a JSON body (.NET StringContent).
        ("query and JSON body", with_body(post(format!("{}?target={ALLOWED}", simultaneous()))
            .header("Authorization", "Bearer cwt=AAEBHAEFAAAAAAAFFQAAACd5t5mM")
            .header("Accept", "application/json")
            .header("Content-Type", "application/json; charset=utf-8"), r#"{"target":"tel:+14255550100"}"#)),
        ("JSON body with ringDelay", with_body(post(unanswered())
            .header("Accept", "application/json")
            .header("Content-Type", "application/json; charset=utf-8"), r#"{"ringDelay":10,"target":"tel:+14255550100"}"#)),
        // Apache Commons HttpClient 3 (Openfire ofskype) upper-cases the charset.
        ("JSON with charset=UTF-8", with_body(post(simultaneous()).header("Content-Type", "application/json; charset=UTF-8"), r#"{"target":"sip:jane@contoso.com"}"#)),
        ("UCWA JSON media type", with_body(post(simultaneous())
            .header("Accept", "application/vnd.microsoft.com.ucwa+json")
            .header("Content-Type", "application/vnd.microsoft.com.ucwa+json"), r#"{"target":"tel:+14255550100"}"#)),
        // The documentation's pretty-printed style.
        ("pretty-printed JSON", with_body(post(immediate()).header("Content-Type", "application/json"), "{\r\n  \"target\" : \"tel:+14255550100\"\r\n}")),
        // The documented XML input form.
        ("XML body", with_body(post(unanswered()).header("Content-Type", "application/xml").header("Accept", "application/xml"),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<input xmlns=\"http://schemas.microsoft.com/rtc/2012/03/ucwa\">\r\n  <property name=\"ringDelay\">10</property>\r\n  <property name=\"target\">tel:+14255550100</property>\r\n</input>")),
        ("UCWA XML media type", with_body(post(simultaneous()).header("Content-Type", "application/vnd.microsoft.com.ucwa+xml"),
            "<input xmlns=\"http://schemas.microsoft.com/rtc/2012/03/ucwa\"><property name=\"target\">sip:jane@contoso.com</property></input>")),
        // Transport.js sends an empty Content-Type with an empty body; python-requests sends
        // application/json with none.
        ("empty Content-Type, empty body", post(format!("{}?target={ALLOWED}", immediate())).header("Content-Type", "")),
        ("JSON Content-Type, empty body", post(format!("{}?target=tel%3A%2B14255550100", immediate()))
            .header("Content-Type", "application/json")
            .header("Accept", "*/*")
            .header("User-Agent", "python-requests/2.9.1")),
        // Pass-through shapes around them: settings, bodiless forwarding resources, sign-in.
        ("simultaneous ring to delegates", with_body(post(format!("{}?ringDelay=10", forwarding("simultaneousRingSettings", "simultaneousRingToDelegates")))
            .header("Content-Type", "application/json; charset=utf-8"), r#"{"ringDelay":10}"#)),
        ("turn off call forwarding", post(format!("{APP}/me/callForwardingSettings/turnOffCallForwarding"))),
        ("PUT of the settings with if-match", with_body(req("PUT", format!("{APP}/me/callForwardingSettings"))
            .header("Content-Type", "application/json")
            .header("if-match", "8d93406a-2593-4133-bb42-610984a4d99f"),
            "{\r\n  \"rel\" : \"callForwardingSettings\",\r\n  \"activePeriod\" : \"Workhours\",\r\n  \"activeSetting\" : \"ImmediateForward\",\r\n  \"unansweredCallHandling\" : \"Enabled\"\r\n}")),
        ("makeMeAvailable, PascalCase JSON", with_body(post(format!("{APP}/me/makeMeAvailable")).header("Content-Type", "application/json"),
            r#"{"SupportedModalities": ["Messaging"], "signInAs": "Online"}"#)),
        ("makeMeAvailable without a Content-Type", with_body(post(format!("{APP}/me/makeMeAvailable"))
            .header("X-Ms-Origin", "https://app.contoso.com/")
            .header("X-Requested-With", "XMLHttpRequest"), r#"{"SupportedModalities": ["Messaging"]}"#)),
        ("startPhoneAudio XML", with_body(post(format!("{APP}/communication/startPhoneAudio")).header("Content-Type", "application/xml"),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<input xmlns=\"http://schemas.microsoft.com/rtc/2012/03/ucwa\">\r\n  <property name=\"operationId\">74cb7404e0a247d5a2d4eb0376a47dbf</property>\r\n  <property name=\"phoneNumber\">tel:+14255551234</property>\r\n  <property name=\"to\">sip:john@contoso.com</property>\r\n</input>")),
        // Batch.js, run on a call-forwarding part: leading CRLF, unquoted boundary without a
        // space, the POST body in a Data: header, three CRLFs before each delimiter.
        ("Batch.js batch with a Data: header", with_body(post(format!("{APP}/batch"))
            .header("Accept", "multipart/batching")
            .header("Content-Type", &format!("multipart/batching;boundary={batch_js_boundary}"))
            .header("Authorization", CWT)
            .header("X-Ms-Origin", "http://localhost")
            .header("X-Requested-With", "XMLHttpRequest"),
            &format!("\r\n--{b}\r\nContent-Type: application/http; msgtype=request\r\n\r\nGET {APP}/me HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\n\r\n\r\n--{b}\r\nContent-Type: application/http; msgtype=request\r\n\r\nPOST {imm}?target=tel:+14255550100 HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\nData: {{\"target\":\"tel:+14255550100\"}}\r\n\r\n\r\n--{b}--\r\n", b = batch_js_boundary, imm = immediate()))),
        // The "Batching requests" documentation page's example.
        ("documented batch", with_body(post("/ucwa/oauth/v1/applications/103/batch")
            .header("Accept", "multipart/batching")
            .header("Content-Type", "multipart/batching;boundary=77f2569d-c005-442b-b856-782305305e5f"),
            &format!("--77f2569d-c005-442b-b856-782305305e5f\r\nContent-Type: application/http; msgtype=request\r\n\r\nGET /ucwa/oauth/v1/applications/103/people/contacts HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\n\r\n--77f2569d-c005-442b-b856-782305305e5f\r\nContent-Type: application/http; msgtype=request\r\n\r\nGET /ucwa/oauth/v1/applications/103/me HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\n\r\n--77f2569d-c005-442b-b856-782305305e5f--\r\n"))),
        // batch_ref: quoted boundary, part-level Content-Length, XML media types on GETs.
        ("batch with a quoted boundary and part Content-Length", with_body(post(format!("{APP}/batch"))
            .header("Content-Type", "multipart/batching;boundary=\"EA370946\"")
            .header("Accept", "multipart/batching"),
            &format!("--EA370946\r\nContent-Type: application/http; msgtype=request\r\nContent-Length: 200\r\n\r\nGET {APP}/policies HTTP/1.1\r\nAccept: application/vnd.microsoft.com.ucwa+xml\r\nContent-Type: application/vnd.microsoft.com.ucwa+xml\r\nHost: {HOST}\r\n\r\n\r\n--EA370946\r\nContent-Type: application/http; msgtype=request\r\nContent-Length: 201\r\n\r\nPOST {sim} HTTP/1.1\r\nAccept: application/vnd.microsoft.com.ucwa+xml\r\nContent-Type: application/vnd.microsoft.com.ucwa+xml\r\nHost: {HOST}\r\nContent-Length: 124\r\n\r\n<input xmlns=\"http://schemas.microsoft.com/rtc/2012/03/ucwa\"><property name=\"target\">sip:jane@contoso.com</property></input>\r\n--EA370946--\r\n", sim = simultaneous()))),
        // Openfire ofskype (Commons HttpClient 3): quoted boundary plus a charset, parts with
        // `msgtype=request` and no space.
        ("batch with a charset and no space before msgtype", with_body(post(format!("{APP}/batch"))
            .header("Content-Type", "multipart/batching;boundary=\"9b2e4f5a-1c3d-4e6f-8a7b-0c1d2e3f4a5b\"; charset=UTF-8")
            .header("Accept", "multipart/batching"),
            &format!("--9b2e4f5a-1c3d-4e6f-8a7b-0c1d2e3f4a5b\r\nContent-Type: application/http;msgtype=request\r\n\r\nGET {APP}/people/alice@contoso.com/presence HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\n\r\n\r\n--9b2e4f5a-1c3d-4e6f-8a7b-0c1d2e3f4a5b\r\nContent-Type: application/http;msgtype=request\r\n\r\nPOST {unans}?target=tel%3A%2B14255550100 HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\n\r\n\r\n--9b2e4f5a-1c3d-4e6f-8a7b-0c1d2e3f4a5b--\r\n", unans = unanswered()))),
        // .NET MultipartContent("batching") with HttpMessageContent (rebuilt from the library).
        (".NET MultipartContent batch", with_body(post(format!("{APP}/batch"))
            .header("Content-Type", "multipart/batching; boundary=\"3f2a1c9e-0d4b-4f6a-9c8e-7b5a4d3c2b1a\"")
            .header("Accept", "multipart/batching"),
            &format!("--3f2a1c9e-0d4b-4f6a-9c8e-7b5a4d3c2b1a\r\nContent-Type: application/http; msgtype=request\r\n\r\nGET {APP}/people/alice@contoso.com/presence HTTP/1.1\r\nHost: {HOST}\r\n\r\n\r\n--3f2a1c9e-0d4b-4f6a-9c8e-7b5a4d3c2b1a--\r\n"))),
        // The Unirest test client: lower-case header names, 100 parts (the server's own limit).
        ("hundred-part batch with lower-case headers", with_body(post(format!("{APP}/batch"))
            .header("content-type", "multipart/batching;boundary=u")
            .header("accept", "multipart/batching")
            .header("authorization", "bearer eyJ0eXAiOiJKV1QifQ.e30.sig"),
            &((0..100)
                .map(|i| format!("\r\n--u\r\nContent-Type: application/http; msgtype=request\r\n\r\nGET {APP}/people/p{i}@contoso.com/presence HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\n"))
                .collect::<Vec<_>>()
                .join("\r\n")
                + "\r\n\r\n--u--\r\n"))),
    ]
}

/// Every real client shape reaches the pool as it was sent, over every transport, and the pool
/// model finds nothing denied in it.
#[tokio::test]
async fn nothing_a_real_client_sends_is_refused() {
    let rig = Rig::start().await;
    let mut failures = Vec::new();
    for transport in [Transport::Http1, Transport::H2c, Transport::H2Tls] {
        let h = rig.harness(transport);
        for (name, request) in shapes() {
            if let Err(e) = forwarded(h, transport, &request).await {
                failures.push(format!("{name} over {transport:?}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    rig.check_pool();
}

/// Browsers split a Cookie into crumbs over HTTP/2 (RFC 9113 §8.2.3); the pool is spoken to in
/// HTTP/1.1, so the crumbs reach it as one line joined with `"; "`, as ASP.NET reads cookies. An
/// HTTP/1.1 request's lines are left as they came.
#[tokio::test]
async fn http2_cookie_crumbs_reach_the_pool_as_one_line() {
    let rig = Rig::start().await;
    let request = post(format!("{}?target={ALLOWED}", simultaneous()))
        .header("Cookie", "cwt=abc")
        .header("Cookie", "lang=en-US");
    for (transport, want) in [
        (Transport::H2c, vec!["cwt=abc; lang=en-US"]),
        (Transport::H2Tls, vec!["cwt=abc; lang=en-US"]),
        (Transport::Http1, vec!["cwt=abc", "lang=en-US"]),
    ] {
        let h = rig.harness(transport);
        let before = h.received_counts();
        let reply = send_on(h, transport, &request).await.unwrap();
        assert_eq!(reply.status, 204, "{transport:?}: {}", reply.text());
        let got = h.received_since(&before);
        let [one] = got.as_slice() else {
            panic!("{transport:?}: the pool received {} requests", got.len());
        };
        let lines: Vec<&str> = one
            .headers
            .get_all("cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(lines, want, "{transport:?}");
    }
}
