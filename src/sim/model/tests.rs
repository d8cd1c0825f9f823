use super::*;

fn headers(lines: &[(&str, &str)]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn acts(method: &str, target: &str, lines: &[(&str, &str)], body: &[u8]) -> Reading {
    let headers = headers(lines);
    read(
        &Request {
            method,
            target,
            headers: &headers,
            body,
        },
        &Resources::default(),
    )
}

fn values(reading: &Reading) -> Vec<&str> {
    reading.acts.iter().map(|a| a.value.as_str()).collect()
}

const SIM: &str = "/ucwa/v1/applications/1/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact";

#[test]
fn the_query_is_read_with_url_decode() {
    let r = acts("POST", &format!("{SIM}?Target=tel:%2B1&x=1"), &[], b"");
    assert_eq!(values(&r), ["tel:+1"]);
    let r = acts("POST", &format!("{SIM}?target=tel:+1&target=b"), &[], b"");
    assert_eq!(values(&r), ["tel: 1,b"]);
    assert!(r.acts[0].plus);
    let r = acts("POST", &format!("{SIM}?%u0074arget=x"), &[], b"");
    assert_eq!(values(&r), ["x"]);
    let r = acts("POST", &format!("{SIM}?target"), &[], b"");
    assert!(r.acts.is_empty());
}

#[test]
fn a_charset_the_rfc_does_not_see_decodes_the_query() {
    let lines = [("Content-Type", "application/json; x=\"a;charset=ibm037 \"")];
    let ebcdic = format!("{SIM}?%A3%81%99%87%85%A3=%A3%85%93%7A%4E%F1");
    let r = acts("POST", &ebcdic, &lines, b"{}");
    assert_eq!(values(&r), ["tel:+1"]);
    let up = [
        ("User-Agent", "\u{ad}UPBrowser"),
        ("x-up-devcap-post-charset", "ibm037"),
    ];
    let r = acts("POST", &ebcdic, &up, b"");
    assert_eq!(values(&r), ["tel:+1"]);
    let no_body = acts("POST", &ebcdic, &lines, b"");
    assert!(no_body.acts.is_empty(), "{no_body:?}");
    let unknown = [("Content-Type", "application/json;charset=shift_jis")];
    let r = acts("POST", &format!("{SIM}?target=x"), &unknown, b"{}");
    assert!(!r.unknown.is_empty());
}

#[test]
fn cookieless_segments_are_removed_as_system_web_removes_them() {
    for target in [
        format!("{SIM}/(S(abc))/?target=x"),
        format!(
            "{}/(S(a))RingToContact/(S(a))/..?target=x",
            &SIM[..SIM.len() - "RingToContact".len()]
        ),
        format!("{SIM}/(A(b)S(c))/?target=x"),
    ] {
        assert_eq!(values(&acts("POST", &target, &[], b"")), ["x"], "{target}");
    }
    let lower = format!("{SIM}/(s(abc))/?target=x");
    assert!(acts("POST", &lower, &[], b"").acts.is_empty());
}

#[test]
fn bodies_are_read_by_their_type() {
    let json = [("Content-Type", "application/json")];
    let r = acts("POST", SIM, &json, br#"{"TARGET":"a","x":{"target":"b"}}"#);
    assert_eq!(values(&r), ["a"]);
    let xml = [("Content-Type", "application/xml")];
    let body = br#"<input xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"><property name=" target ">t&#101;l:+1</property></input>"#;
    assert_eq!(values(&acts("POST", SIM, &xml, body)), ["tel:+1"]);
    let form = [("Content-Type", "application/x-www-form-urlencodedX")];
    assert_eq!(values(&acts("POST", SIM, &form, b"target=a+b")), ["a b"]);
    let dtd = b"<!DOCTYPE x><input/>";
    assert!(!acts("POST", SIM, &xml, dtd).unknown.is_empty());
}

#[test]
fn a_request_line_beginning_with_two_slashes_is_a_path() {
    let r = acts("POST", &format!("//evil.example{SIM}?target=x"), &[], b"");
    assert!(r.acts.is_empty(), "{r:?}");
    let r = acts(
        "POST",
        &format!("http://evil.example{SIM}?target=x"),
        &[],
        b"",
    );
    assert_eq!(values(&r), ["x"]);
}

#[test]
fn batch_parts_are_resolved_against_the_batch() {
    let body = format!(
            "--b\r\nContent-Type: application/http; msgtype=request\r\n\r\nPOST //evil{SIM}?target=x HTTP/1.1\r\nHost: h\r\n\r\n\r\n--b\r\nContent-Type: application/http; msgtype=request\r\n\r\nPOST simultaneousRingToContact HTTP/1.1\r\nData: {{\"target\":\"y\"}}\r\n\r\n\r\n--b--\r\n"
        );
    let lines = [("Content-Type", "multipart/batching; boundary=\"b\"")];
    let r = acts(
        "POST",
        "/ucwa/v1/applications/1/me/callForwardingSettings/simultaneousRingSettings/batch",
        &lines,
        body.as_bytes(),
    );
    assert_eq!(values(&r), ["x", "y"], "{r:?}");
    assert_eq!(r.acts[1].part, Some(1));
}
