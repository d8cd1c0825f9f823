use std::time::Duration;

use http_body_util::{BodyExt, Full};

use super::*;
use http::HeaderValue;

const APP: &str = "/ucwa/oauth/v1/applications";

/// Fresh-eyes round 6, F4: the trail names the application of a path the pool reads through
/// escapes, dot segments or cookieless segments, when every reading agrees.
#[test]
fn the_trail_reads_the_application_through_the_pools_readings() {
    let ring = "/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact";
    for (path, expected) in [
        (format!("{APP}/1001{ring}"), Some("1001")),
        (format!("{APP}/./1001{ring}"), Some("1001")),
        (format!("{APP}/x/../1001{ring}"), Some("1001")),
        (format!("{APP}/%31001{ring}"), Some("1001")),
        (format!("{APP}/(S(abc))/1001{ring}"), Some("1001")),
        (
            format!("/ucwa/oauth/v1/%61pplications/1001{ring}"),
            Some("1001"),
        ),
        (format!("{APP}/1001/../1002{ring}"), Some("1002")),
        (format!("{APP}/1%00{ring}"), None),
        (format!("/other/applications/1001{ring}"), None),
    ] {
        assert_eq!(application_read(&path).as_deref(), expected, "{path}");
    }
}

fn identities(max: u64) -> Arc<Identities> {
    Arc::new(Identities::new(Settings {
        max_applications: max,
        idle_expiry: Duration::from_secs(60),
    }))
}

fn headers(content_type: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap(),
    );
    h
}

const JSON: &str = "application/vnd.microsoft.com.ucwa+json; charset=utf-8";
const XML: &str = "application/vnd.microsoft.com.ucwa+xml; charset=utf-8";

fn application_json(app_href: &str, me_href: &str, uri: &str) -> String {
    format!(
        r#"{{"culture":"en-US","userAgent":"x","type":"Browser","_links":{{"self":{{"href":"{app_href}"}},"policies":{{"href":"{app_href}/policies"}}}},"_embedded":{{"me":{{"name":"Jane Doe","uri":"{uri}","_links":{{"self":{{"href":"{me_href}"}}}},"rel":"me"}},"people":{{"_links":{{"self":{{"href":"{app_href}/people"}}}},"rel":"people"}}}},"rel":"application"}}"#
    )
}

fn application_xml(app_href: &str, me_href: &str, uri: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><resource rel="application" href="{app_href}" xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"><link rel="policies" href="{app_href}/policies"/><property name="culture">en-US</property><embedded><resource rel="me" href="{me_href}"><link rel="callForwardingSettings" href="{me_href}/callForwardingSettings"/><property name="name">Jane Doe</property><property name="uri">{uri}</property></resource><resource rel="people" href="{app_href}/people"/></embedded></resource>"#
    )
}

fn me_xml(me_href: &str, uri: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><resource rel="me" href="{me_href}" xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"><property name="name">Jane Doe</property><property name="uri">{uri}</property></resource>"#
    )
}

/// A body of the given frames; `knows_end` says whether it reports its end before the
/// last poll, as hyper's `Incoming` does with a Content-Length.
struct Frames {
    frames: std::collections::VecDeque<Bytes>,
    knows_end: bool,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.frames.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.knows_end && self.frames.is_empty()
    }
}

/// Streams `body` through a [`Learning`] in `chunk`-byte frames, both ways of ending;
/// what the map learnt.
async fn teach(
    method: Method,
    path: &str,
    status: u16,
    content_type: &str,
    body: &str,
    chunk: usize,
) -> Option<(String, String)> {
    let mut learnt = Vec::new();
    for knows_end in [false, true] {
        let map = identities(10);
        let inner = Frames {
            frames: body
                .as_bytes()
                .chunks(chunk.max(1))
                .map(Bytes::copy_from_slice)
                .collect(),
            knows_end,
        };
        let learning = Learning::new(
            inner,
            || Lesson::of(&method, path),
            StatusCode::from_u16(status).unwrap(),
            &headers(content_type),
            &map,
            || Some("contoso"),
        );
        let out = learning.collect().await.unwrap().to_bytes();
        assert_eq!(out, body.as_bytes(), "the answer passes unchanged");
        learnt.push(
            map.map
                .iter()
                .next()
                .map(|(k, v)| (k.to_string(), v.user.to_string())),
        );
    }
    assert_eq!(learnt[0], learnt[1]);
    learnt.pop().flatten()
}

fn pair(app: &str, user: &str) -> Option<(String, String)> {
    Some((app.to_owned(), user.to_owned()))
}

#[test]
fn the_application_is_the_segment_after_applications() {
    assert_eq!(
        application("/ucwa/oauth/v1/applications/101507115166/me"),
        Some("101507115166")
    );
    assert_eq!(application("/UCWA/v1/APPLICATIONS/192"), Some("192"));
    assert_eq!(
        application("/ucwa/applications/BugSBxO22nYVkBrURmbIgLbv95e0=/photo"),
        Some("BugSBxO22nYVkBrURmbIgLbv95e0=")
    );
    assert_eq!(
        application("/ucwa/v1/applications/192/x/applications/7"),
        Some("192")
    );
    for none in [
        "/ucwa/v1/applications",
        "/ucwa/v1/applications/",
        "/ucwa/v1/applications//me",
        "/other/v1/applications/192/me",
        "/ucwa",
        "/ucwa/v1/applications/1%32/me",
        "/ucwa/v1/applications/1/../2/me",
        "/ucwa/v1/applications/(S(x))/2/me",
        "/ucwa/v1/applications/a;b/me",
        "/ucwa/v1/applications/<script>/me",
        "/ucwa/v1/applications/a.b/me",
        "/ucwa/v1/applicationsx/1/me",
    ] {
        assert_eq!(application(none), None, "{none}");
    }
    let long = format!(
        "/ucwa/v1/applications/{}/me",
        "1".repeat(MAX_APPLICATION_ID + 1)
    );
    assert_eq!(application(&long), None);
    let longest = format!(
        "/ucwa/v1/applications/{}/me",
        "1".repeat(MAX_APPLICATION_ID)
    );
    assert!(application(&longest).is_some());
}

/// [`split`] as first written, with `str::find`: the definition the byte scan must keep.
fn split_by_find(path: &str) -> Option<(&str, &str)> {
    if !path::is_plain(path) || !under_ucwa(path) {
        return None;
    }
    let mut rest = path;
    loop {
        let at = rest.find('/')?;
        rest = &rest[at + 1..];
        let segment = &rest[..rest.find('/').unwrap_or(rest.len())];
        if segment.eq_ignore_ascii_case("applications") {
            let after = rest.get(segment.len() + 1..)?;
            let end = after.find('/').unwrap_or(after.len());
            let (id, tail) = after.split_at(end);
            return is_application_id(id).then_some((id, tail));
        }
    }
}

proptest::proptest! {
    #[test]
    fn split_keeps_its_definition(
        path in "/(ucwa|UCWA|x)(/(applications|Applications|v1|192|a=b|a;b|me|\\.|)){0,5}/?"
    ) {
        proptest::prop_assert_eq!(split(&path), split_by_find(&path), "{:?}", path);
    }

    /// A request whose lesson the gateway does not keep what it needs for has none.
    #[test]
    fn a_request_with_a_lesson_is_one_that_may_have_one(
        path in "/(ucwa|UCWA|x)(/(oauth|applications|Applications|v1|192|me|ME|events|\\.|)){0,5}/?(\\?(x|me))?",
        method in proptest::sample::select(vec![Method::GET, Method::POST, Method::PUT, Method::DELETE]),
    ) {
        if Lesson::of(&method, &path).is_some() {
            proptest::prop_assert!(Lesson::may(&method, &path), "{} {:?}", method, path);
        }
    }
}

#[test]
fn a_token_fingerprint_is_16_hex_digits_of_its_sha256() {
    // Checked with `printf 'Bearer abc' | sha256sum`.
    const EXPECTED_BEARER_ABC: &str = "c355dce96c161288";
    let f = token_fingerprint(b"Bearer abc");
    assert_eq!(f.to_string().len(), 16);
    assert!(f
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(f.as_str(), EXPECTED_BEARER_ABC);
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        format!("\"{EXPECTED_BEARER_ABC}\"")
    );
    assert_ne!(f, token_fingerprint(b"Bearer abd"));
}

#[test]
fn only_posts_to_applications_and_gets_of_me_can_teach() {
    assert_eq!(Lesson::of(&Method::POST, APP), Some(Lesson::Application));
    assert_eq!(
        Lesson::of(&Method::POST, "/ucwa/v1/Applications/?x=1"),
        Some(Lesson::Application)
    );
    assert_eq!(
        Lesson::of(&Method::GET, "/ucwa/v1/applications/192/me?x"),
        Some(Lesson::Me("192".into()))
    );
    for (method, path) in [
        (Method::GET, APP),
        (Method::PUT, APP),
        (Method::POST, "/ucwa/v1/applications/192/me"),
        (Method::PUT, "/ucwa/v1/applications/192/me"),
        (
            Method::GET,
            "/ucwa/v1/applications/192/me/callForwardingSettings",
        ),
        (Method::GET, "/ucwa/v1/applications/192/people/me"),
        (Method::GET, "/ucwa/v1/applications/1/../192/me"),
        (Method::POST, "/ucwa/v1/%61pplications"),
        (Method::POST, "/elsewhere/applications"),
    ] {
        assert_eq!(Lesson::of(&method, path), None, "{method} {path}");
    }
}

#[tokio::test]
async fn the_pool_answer_to_a_new_application_teaches_its_user_in_json_and_xml() {
    let app = "/ucwa/oauth/v1/applications/101507115166";
    let me = format!("{app}/me");
    let json = application_json(app, &me, "sip:jane@contoso.com");
    let want = pair("101507115166", "sip:jane@contoso.com");
    for chunk in [1, 7, usize::MAX] {
        assert_eq!(
            teach(Method::POST, APP, 201, JSON, &json, chunk).await,
            want
        );
    }
    let xml = application_xml(app, &me, "sip:jane@contoso.com");
    assert_eq!(teach(Method::POST, APP, 201, XML, &xml, 5).await, want);
    assert_eq!(
        teach(Method::POST, APP, 200, "application/json", &json, 64).await,
        want
    );
    let absolute = application_json(
        &format!("https://lyncweb.contoso.com{app}"),
        &format!("https://lyncweb.contoso.com{me}"),
        "sip:jane@contoso.com",
    );
    assert_eq!(
        teach(Method::POST, APP, 201, JSON, &absolute, 64).await,
        want
    );
}

#[tokio::test]
async fn a_get_of_me_teaches_only_when_its_answer_names_the_same_application() {
    let me = "/ucwa/v1/applications/192/me";
    let json = format!(
        r#"{{"name":"Jane Doe","uri":"sip:jane@contoso.com","_links":{{"self":{{"href":"{me}"}}}},"rel":"me"}}"#
    );
    let want = pair("192", "sip:jane@contoso.com");
    assert_eq!(teach(Method::GET, me, 200, JSON, &json, 3).await, want);
    assert_eq!(
        teach(
            Method::GET,
            me,
            200,
            XML,
            &me_xml(me, "sip:jane@contoso.com"),
            3
        )
        .await,
        want
    );
    // The answer names another application: nothing is learnt, for either.
    let other = "/ucwa/v1/applications/193/me";
    assert_eq!(teach(Method::GET, other, 200, JSON, &json, 64).await, None);
    assert_eq!(
        teach(Method::GET, other, 200, XML, &me_xml(me, "sip:a@b"), 64).await,
        None
    );
}

#[tokio::test]
async fn an_answer_that_is_not_exactly_a_lesson_teaches_nothing() {
    let app = "/ucwa/v1/applications/5";
    let me = format!("{app}/me");
    let good = application_json(app, &me, "sip:jane@contoso.com");
    assert!(teach(Method::POST, APP, 201, JSON, &good, 64)
        .await
        .is_some());
    let cases: Vec<(&str, u16, &str, String)> = vec![
            ("not 2xx", 403, JSON, good.clone()),
            ("not JSON or XML", 201, "text/plain", good.clone()),
            ("JSON read as XML", 201, XML, good.clone()),
            ("missing uri", 201, JSON, good.replace(r#""uri":"sip:jane@contoso.com","#, "")),
            ("not a SIP uri", 201, JSON, good.replace("sip:jane@contoso.com", "tel:+1425")),
            ("uri with a space", 201, JSON, good.replace("sip:jane@contoso.com", "sip:ja ne@x")),
            ("me href of another application", 201, JSON, application_json(app, "/ucwa/v1/applications/6/me", "sip:a@b")),
            ("me href not me", 201, JSON, application_json(app, &format!("{app}/people"), "sip:a@b")),
            ("me href unreadable", 201, JSON, application_json(app, "/ucwa/v1/applications/%35/me", "sip:a@b")),
            ("duplicate key", 201, JSON, good.replace(r#""rel":"me""#, r#""rel":"me","uri":"sip:eve@x""#)),
            ("not an application", 201, JSON, good.replace(r#""rel":"application""#, r#""rel":"people""#)),
            ("truncated", 201, JSON, good[..good.len() - 1].to_owned()),
            ("too big", 201, JSON, good.replace("\"culture\":\"en-US\"", &format!("\"culture\":\"{}\"", "x".repeat(MAX_ANSWER_BYTES)))),
            ("XML with a DOCTYPE", 201, XML, application_xml(app, &me, "sip:a@b").replace("<resource rel=\"application\"", "<!DOCTYPE r><resource rel=\"application\"")),
            ("XML with two uris", 201, XML, application_xml(app, &me, "sip:a@b").replace("</resource><resource rel=\"people\"", "<property name=\"uri\">sip:eve@x</property></resource><resource rel=\"people\"")),
            ("XML uri with an entity", 201, XML, application_xml(app, &me, "sip:a&amp;b@c")),
            ("XML uri in a sibling of me", 201, XML, application_xml(app, &me, "sip:a@b").replace("<property name=\"uri\">sip:a@b</property>", "").replace("<resource rel=\"people\" href=\"/ucwa/v1/applications/5/people\"/>", "<resource rel=\"people\" href=\"x\"><property name=\"uri\">sip:eve@x</property></resource>")),
            ("XML me outside embedded", 201, XML, application_xml(app, &me, "sip:a@b").replace("<embedded>", "<other>").replace("</embedded>", "</other>")),
        ];
    for (why, status, content_type, body) in cases {
        assert_eq!(
            teach(Method::POST, APP, status, content_type, &body, 1000).await,
            None,
            "{why}"
        );
    }
}

#[tokio::test]
async fn a_body_the_client_sent_never_teaches() {
    // Identities learns only through a Learning wrapped around a pool answer, for a POST to
    // .../applications or a GET of .../me; a client's own request to /me with a body that
    // looks like an answer is no lesson.
    let me = "/ucwa/v1/applications/192/me";
    let body = format!(r#"{{"uri":"sip:ceo@contoso.com","_links":{{"self":{{"href":"{me}"}}}}}}"#);
    for method in [Method::POST, Method::PUT] {
        assert_eq!(teach(method, me, 200, JSON, &body, 64).await, None);
    }
    // An answer too large announced in Content-Length is not even read.
    let mut h = headers(JSON);
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(MAX_ANSWER_BYTES + 1),
    );
    let l = Learning::new(
        Full::new(Bytes::new()),
        || Lesson::of(&Method::POST, APP),
        StatusCode::CREATED,
        &h,
        &identities(1),
        || None,
    );
    assert!(!l.is_learning());
}

#[test]
fn the_map_holds_at_most_max_applications() {
    let map = identities(100);
    for i in 0..1000 {
        map.learn(
            &i.to_string(),
            Learnt {
                user: Arc::from(format!("sip:u{i}@contoso.com")),
                organisation: None,
            },
        );
    }
    assert_eq!(map.len(), 100);
    assert_eq!(map.user("999").as_deref(), Some("sip:u999@contoso.com"));
    assert_eq!(map.user("0"), None, "the least recently used went first");
}

#[test]
fn an_idle_application_is_forgotten() {
    let map = Identities::new(Settings {
        max_applications: 10,
        idle_expiry: Duration::from_millis(1),
    });
    map.learn(
        "1",
        Learnt {
            user: Arc::from("sip:a@b"),
            organisation: None,
        },
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(map.user("1"), None);
}

#[test]
fn new_settings_keep_what_was_learnt() {
    let map = identities(10);
    map.learn(
        "1",
        Learnt {
            user: Arc::from("sip:a@b"),
            organisation: None,
        },
    );
    assert!(Arc::ptr_eq(&map, &map.for_settings(map.settings())));
    let bigger = map.for_settings(Settings {
        max_applications: 20,
        idle_expiry: Duration::from_secs(60),
    });
    assert_eq!(bigger.user("1").as_deref(), Some("sip:a@b"));
}

/// Every application any reading of a path names, as [`Read::of`] first read it, apart from the
/// trail's: the definition `Read::all` keeps.
fn applications_read(raw: &str) -> Vec<Box<str>> {
    if let Some(id) = application(raw) {
        return vec![id.to_ascii_lowercase().into()];
    }
    let mut found: Vec<Box<str>> = Vec::new();
    if path::is_plain(raw) {
        return found;
    }
    for reading in path::readings(raw).into_iter().flatten() {
        if let Some(id) = application(&reading) {
            let id = id.to_ascii_lowercase();
            if !found.iter().any(|f| **f == *id) {
                found.push(id.into());
            }
        }
    }
    found
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// One reading of a path gives what the two separate ones gave.
    #[test]
    fn a_path_read_once_names_what_two_readings_named(
        segments in proptest::collection::vec(
            "(ucwa|UCWA|oauth|v1|applications|%61pplications|Applications|1001|1002|AbC|a;x|1%30|\\.|\\.\\.|%2e|\\(S\\(x\\)\\)|me|%2F|[a-zA-Z0-9=_;%.()-]{0,6})",
            0..8,
        ),
        lead in "(/ucwa|/UCWA|/ucwa/oauth/v1/applications|/x|)",
        slash in proptest::bool::ANY,
    ) {
        let path = format!("{lead}/{}{}", segments.join("/"), if slash { "/" } else { "" });
        let read = Read::of(&path);
        proptest::prop_assert_eq!(&read.all, &applications_read(&path), "{}", path);
        let named = application_read(&path);
        proptest::prop_assert_eq!(
            read.named(&path),
            named.as_deref(),
            "{}",
            path
        );
    }
}
