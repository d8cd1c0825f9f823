//! Refusals: every reason ringfence answers a request itself, each mapped to exactly one status,
//! UCWA error code and metric reason, rendered in UCWA's own error format (JSON, or XML when the
//! client's `Accept` prefers it).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;

/// The UCWA XML namespace, also used for error bodies.
pub const UCWA_NS: &str = "http://schemas.microsoft.com/rtc/2012/03/ucwa";

/// Why ringfence answered a request itself instead of forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    #[error("no allow rule of the organisation matches the target")]
    NotAllowed,
    #[error("a deny rule matches the target")]
    Denied,
    #[error("the request's host belongs to no organisation")]
    NoOrganisation,
    #[error("the target is longer than the limit")]
    TooLong,
    #[error("the target is malformed")]
    Malformed,
    #[error("the request carries no target")]
    Missing,
    #[error("the query and body targets differ")]
    Conflict,
    #[error("the target is given more than once")]
    Duplicate,
    #[error("the body cannot be parsed")]
    BadBody,
    #[error("the batch cannot be parsed")]
    BadBatch,
    #[error("the path cannot be canonicalised")]
    BadPath,
    #[error("the request has no single Host")]
    BadHost,
    #[error("a method-override header was sent to UCWA")]
    MethodOverride,
    #[error("the Host belongs to another organisation than the TLS server name")]
    Misdirected,
    #[error("the body's media type or charset is not understood")]
    UnsupportedMediaType,
    #[error("the body is content-encoded")]
    EncodedBody,
    #[error("the body is larger than the limit")]
    BodyTooLarge,
    #[error("the body did not arrive in time")]
    BodyTimeout,
    #[error("no pool member could be reached")]
    UpstreamUnavailable,
    #[error("the pool member failed")]
    UpstreamFailure,
    #[error("the pool member did not answer in time")]
    UpstreamTimeout,
    #[error("no connection to the pool could be made for want of a local resource")]
    LocalResources,
    #[error("the decision could not be written to the audit trail")]
    AuditUnavailable,
    #[error("over the rate limit on call-forwarding changes")]
    RateLimited,
}

/// The parts of a UCWA error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ucwa {
    pub status: StatusCode,
    pub code: &'static str,
    pub subcode: Option<&'static str>,
    pub message: Message,
    /// `ParameterValidationFailure` names the parameter (`"parameters":{"target":"invalid"}`).
    pub names_parameter: bool,
}

/// A refusal's `message`; those about the target name the guard's own parameter (`number` on
/// `changeNumber`), as the `parameters` object does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Fixed(&'static str),
    /// "The ", the parameter's name, then this.
    AboutParameter(&'static str),
}

impl Message {
    pub fn text(self, parameter: &str) -> Cow<'static, str> {
        match self {
            Message::Fixed(text) => Cow::Borrowed(text),
            Message::AboutParameter(rest) => Cow::Owned(format!("The {parameter}{rest}")),
        }
    }
}

impl Rejection {
    /// The metric label and `debugInfo.reason`.
    pub fn reason(self) -> &'static str {
        use Rejection::*;
        match self {
            NotAllowed => "not_allowed",
            Denied => "denied",
            NoOrganisation => "no_organisation",
            TooLong => "too_long",
            Malformed => "malformed",
            Missing => "missing",
            Conflict => "conflict",
            Duplicate => "duplicate",
            BadBody => "bad_body",
            BadBatch => "bad_batch",
            BadPath => "bad_path",
            BadHost => "bad_host",
            MethodOverride => "method_override",
            Misdirected => "misdirected",
            UnsupportedMediaType => "unsupported_media_type",
            EncodedBody => "encoded_body",
            BodyTooLarge => "body_too_large",
            BodyTimeout => "body_timeout",
            UpstreamUnavailable => "upstream_unavailable",
            UpstreamFailure => "upstream_failure",
            UpstreamTimeout => "upstream_timeout",
            LocalResources => "local_resources",
            AuditUnavailable => "audit_unavailable",
            RateLimited => "rate_limited",
        }
    }

    /// A refusal by the target rules, which an organisation in shadow mode only records
    /// (SPEC §12). Refusals that protect the reading of the request itself (path, host,
    /// framing, media type, encoding, size, batch syntax, method override) are never shadowed.
    pub fn by_target_rules(self) -> bool {
        use Rejection::*;
        matches!(
            self,
            NotAllowed
                | Denied
                | NoOrganisation
                | TooLong
                | Malformed
                | Missing
                | Conflict
                | Duplicate
        )
    }

    pub fn ucwa(self) -> Ucwa {
        use Rejection::*;
        const FORBIDDEN: Ucwa = Ucwa {
            status: StatusCode::FORBIDDEN,
            code: "Forbidden",
            subcode: Some("NotAllowed"),
            message: Message::AboutParameter(" is not allowed by your organisation's policy."),
            names_parameter: false,
        };
        const PARAMETER: Ucwa = Ucwa {
            status: StatusCode::BAD_REQUEST,
            code: "BadRequest",
            subcode: Some("ParameterValidationFailure"),
            message: Message::AboutParameter(
                " parameter is missing, repeated, too long or not a valid tel or sip URI.",
            ),
            names_parameter: true,
        };
        const DESERIALIZATION: Ucwa = Ucwa {
            status: StatusCode::BAD_REQUEST,
            code: "BadRequest",
            subcode: Some("DeserializationFailure"),
            message: Message::Fixed("The request could not be read."),
            names_parameter: false,
        };
        const MEDIA: Ucwa = Ucwa {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "UnsupportedMediaType",
            subcode: None,
            message: Message::Fixed(
                "The request body's media type or encoding is not supported here.",
            ),
            names_parameter: false,
        };
        match self {
            NotAllowed | Denied | NoOrganisation => FORBIDDEN,
            TooLong | Malformed | Missing | Conflict | Duplicate => PARAMETER,
            BadBody | BadBatch | BadPath | BadHost | MethodOverride => DESERIALIZATION,
            UnsupportedMediaType | EncodedBody => MEDIA,
            Misdirected => Ucwa {
                status: StatusCode::MISDIRECTED_REQUEST,
                code: "MisdirectedRequest",
                subcode: None,
                message: Message::Fixed(
                    "This host is not served on this connection; connect to it by its own name.",
                ),
                names_parameter: false,
            },
            BodyTooLarge => Ucwa {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "EntityTooLarge",
                subcode: None,
                message: Message::Fixed("The request body is too large."),
                names_parameter: false,
            },
            BodyTimeout => Ucwa {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "Timeout",
                subcode: None,
                message: Message::Fixed("The request body did not arrive in time."),
                names_parameter: false,
            },
            UpstreamUnavailable | AuditUnavailable | LocalResources => Ucwa {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "ServiceUnavailable",
                subcode: None,
                message: Message::Fixed("The service is unavailable. Retry later."),
                names_parameter: false,
            },
            UpstreamFailure => Ucwa {
                status: StatusCode::BAD_GATEWAY,
                code: "ServiceFailure",
                subcode: Some("BadGateway"),
                message: Message::Fixed("The front-end server failed to answer."),
                names_parameter: false,
            },
            RateLimited => Ucwa {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "TooManyRequests",
                subcode: None,
                message: Message::Fixed(
                    "Too many call-forwarding changes. Retry after the time Retry-After gives.",
                ),
                names_parameter: false,
            },
            UpstreamTimeout => Ucwa {
                status: StatusCode::GATEWAY_TIMEOUT,
                code: "Timeout",
                subcode: None,
                message: Message::Fixed("The front-end server did not answer in time."),
                names_parameter: false,
            },
        }
    }

    /// The UCWA error body. `parameter` names the guarded parameter; `request_id` is already
    /// validated (`[A-Za-z0-9._-]`), and a parameter name is a configured token, so neither needs
    /// escaping, and client input is never echoed. The XML form puts code, subcode and message in
    /// child elements, as the pool writes its own errors and as UCWA clients read them (SPEC §6).
    pub fn render(self, request_id: &str, parameter: &str, xml: bool) -> Response<Full<Bytes>> {
        let u = self.ucwa();
        let reason = self.reason();
        let body = if xml {
            let mut s = format!(
                r#"<?xml version="1.0" encoding="utf-8"?><reason xmlns="{UCWA_NS}"><code>{}</code>"#,
                u.code
            );
            if let Some(sub) = u.subcode {
                s.push_str(&format!("<subcode>{sub}</subcode>"));
            }
            s.push_str(&format!(
                r#"<message>{}</message><debugInfo><property name="reason">{reason}</property><property name="requestId">{request_id}</property></debugInfo>"#,
                xml_escape(&u.message.text(parameter)),
            ));
            if u.names_parameter {
                s.push_str(&format!(
                    r#"<parameters><property name="{parameter}">invalid</property></parameters>"#
                ));
            } else {
                s.push_str("<parameters />");
            }
            s.push_str("</reason>");
            s
        } else {
            let mut s = format!(r#"{{"code":"{}""#, u.code);
            if let Some(sub) = u.subcode {
                s.push_str(&format!(r#","subcode":"{sub}""#));
            }
            s.push_str(&format!(r#","message":"{}""#, u.message.text(parameter)));
            if u.names_parameter {
                s.push_str(&format!(r#","parameters":{{"{parameter}":"invalid"}}"#));
            }
            s.push_str(&format!(
                r#","debugInfo":{{"reason":"{reason}","requestId":"{request_id}"}}}}"#
            ));
            s
        };
        let content_type = if xml {
            "application/xml; charset=utf-8"
        } else {
            "application/json; charset=utf-8"
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = u.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

/// Escapes element text (the error messages are constants; this keeps them well formed).
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const XML_TYPES: [&str; 3] = [
    "application/xml",
    "text/xml",
    "application/vnd.microsoft.com.ucwa+xml",
];
const JSON_TYPES: [&str; 2] = [
    "application/json",
    "application/vnd.microsoft.com.ucwa+json",
];

/// True when `Accept` ranks an XML type above every JSON type (q-values; ties go to JSON).
pub fn prefers_xml(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let best = |types: &[&str]| {
        types
            .iter()
            .map(|t| quality(accept, t))
            .fold(0.0f32, f32::max)
    };
    best(&XML_TYPES) > best(&JSON_TYPES)
}

/// The q-value `accept` gives a concrete media type: its most specific matching range wins.
fn quality(accept: &str, media: &str) -> f32 {
    let (top, _) = media.split_once('/').unwrap_or((media, ""));
    let mut best: Option<(u8, f32)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        let specificity = if range.eq_ignore_ascii_case(media) {
            3
        } else if range
            .strip_suffix("/*")
            .is_some_and(|t| t.eq_ignore_ascii_case(top))
        {
            2
        } else if range == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Every variant with its status, code, subcode and reason: the contract of SPEC §6.
    const TABLE: [(Rejection, u16, &str, Option<&str>, &str); 24] = [
        (
            Rejection::NotAllowed,
            403,
            "Forbidden",
            Some("NotAllowed"),
            "not_allowed",
        ),
        (
            Rejection::Denied,
            403,
            "Forbidden",
            Some("NotAllowed"),
            "denied",
        ),
        (
            Rejection::NoOrganisation,
            403,
            "Forbidden",
            Some("NotAllowed"),
            "no_organisation",
        ),
        (
            Rejection::TooLong,
            400,
            "BadRequest",
            Some("ParameterValidationFailure"),
            "too_long",
        ),
        (
            Rejection::Malformed,
            400,
            "BadRequest",
            Some("ParameterValidationFailure"),
            "malformed",
        ),
        (
            Rejection::Missing,
            400,
            "BadRequest",
            Some("ParameterValidationFailure"),
            "missing",
        ),
        (
            Rejection::Conflict,
            400,
            "BadRequest",
            Some("ParameterValidationFailure"),
            "conflict",
        ),
        (
            Rejection::Duplicate,
            400,
            "BadRequest",
            Some("ParameterValidationFailure"),
            "duplicate",
        ),
        (
            Rejection::BadBody,
            400,
            "BadRequest",
            Some("DeserializationFailure"),
            "bad_body",
        ),
        (
            Rejection::BadBatch,
            400,
            "BadRequest",
            Some("DeserializationFailure"),
            "bad_batch",
        ),
        (
            Rejection::BadPath,
            400,
            "BadRequest",
            Some("DeserializationFailure"),
            "bad_path",
        ),
        (
            Rejection::BadHost,
            400,
            "BadRequest",
            Some("DeserializationFailure"),
            "bad_host",
        ),
        (
            Rejection::MethodOverride,
            400,
            "BadRequest",
            Some("DeserializationFailure"),
            "method_override",
        ),
        (
            Rejection::Misdirected,
            421,
            "MisdirectedRequest",
            None,
            "misdirected",
        ),
        (
            Rejection::UnsupportedMediaType,
            415,
            "UnsupportedMediaType",
            None,
            "unsupported_media_type",
        ),
        (
            Rejection::EncodedBody,
            415,
            "UnsupportedMediaType",
            None,
            "encoded_body",
        ),
        (
            Rejection::BodyTooLarge,
            413,
            "EntityTooLarge",
            None,
            "body_too_large",
        ),
        (Rejection::BodyTimeout, 408, "Timeout", None, "body_timeout"),
        (
            Rejection::UpstreamUnavailable,
            503,
            "ServiceUnavailable",
            None,
            "upstream_unavailable",
        ),
        (
            Rejection::AuditUnavailable,
            503,
            "ServiceUnavailable",
            None,
            "audit_unavailable",
        ),
        (
            Rejection::UpstreamFailure,
            502,
            "ServiceFailure",
            Some("BadGateway"),
            "upstream_failure",
        ),
        (
            Rejection::UpstreamTimeout,
            504,
            "Timeout",
            None,
            "upstream_timeout",
        ),
        (
            Rejection::LocalResources,
            503,
            "ServiceUnavailable",
            None,
            "local_resources",
        ),
        (
            Rejection::RateLimited,
            429,
            "TooManyRequests",
            None,
            "rate_limited",
        ),
    ];

    async fn json(r: Rejection) -> (u16, serde_json::Value) {
        let response = r.render("req-1", "target", false);
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn every_refusal_renders_its_status_code_subcode_and_reason_as_json() {
        for (r, status, code, subcode, reason) in TABLE {
            let (got, v) = json(r).await;
            assert_eq!(got, status, "{r:?}");
            assert_eq!(v["code"], code, "{r:?}");
            assert_eq!(v["subcode"].as_str(), subcode, "{r:?}");
            assert_eq!(v["debugInfo"]["reason"], reason, "{r:?}");
            assert_eq!(v["debugInfo"]["requestId"], "req-1", "{r:?}");
            assert_eq!(r.reason(), reason);
            let names = subcode == Some("ParameterValidationFailure");
            assert_eq!(
                v["parameters"]["target"].as_str(),
                names.then_some("invalid"),
                "{r:?}"
            );
        }
    }

    /// The UCWA XML error as a client reads it: root `reason` in the UCWA namespace, its child
    /// elements' text, and the `property` children of `debugInfo` and `parameters`.
    #[derive(Debug, Default)]
    struct XmlReason {
        root_attributes: Vec<(String, String)>,
        children: Vec<(String, String)>,
        debug_info: Vec<(String, String)>,
        parameters: Vec<(String, String)>,
    }

    fn read_xml(text: &str) -> XmlReason {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(text);
        let mut out = XmlReason::default();
        let mut path: Vec<String> = Vec::new();
        let mut property: Option<String> = None;
        loop {
            match reader.read_event().unwrap() {
                Event::Eof => break,
                Event::Start(e) | Event::Empty(e) if path.is_empty() => {
                    assert_eq!(e.name().as_ref(), b"reason", "{text}");
                    for a in e.attributes() {
                        let a = a.unwrap();
                        out.root_attributes.push((
                            String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                            a.unescape_value().unwrap().into_owned(),
                        ));
                    }
                    path.push("reason".into());
                }
                Event::Start(e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                    if name == "property" {
                        let a = e.try_get_attribute("name").unwrap().unwrap();
                        property = Some(a.unescape_value().unwrap().into_owned());
                    }
                    path.push(name);
                }
                Event::Empty(e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                    out.children.push((name, String::new()));
                }
                Event::Text(t) => {
                    let t = t.xml10_content().unwrap().into_owned();
                    match (path.len(), path.get(1).map(String::as_str), &property) {
                        (2, Some(child), _) => out.children.push((child.into(), t)),
                        (3, Some("debugInfo"), Some(p)) => out.debug_info.push((p.clone(), t)),
                        (3, Some("parameters"), Some(p)) => out.parameters.push((p.clone(), t)),
                        _ => panic!("text outside a known element: {text}"),
                    }
                }
                Event::End(_) => {
                    if path.pop().as_deref() == Some("property") {
                        property = None;
                    }
                }
                Event::Decl(_) => {}
                other => panic!("unexpected {other:?} in {text}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn every_refusal_renders_the_same_facts_as_xml_child_elements() {
        for (r, status, code, subcode, reason) in TABLE {
            let response = r.render("req-2", "target", true);
            assert_eq!(response.status().as_u16(), status);
            assert!(response.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/xml"));
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let text = std::str::from_utf8(&body).unwrap();
            assert!(text.starts_with(r#"<?xml version="1.0" encoding="utf-8"?>"#));
            let x = read_xml(text);
            assert_eq!(
                x.root_attributes,
                [("xmlns".into(), UCWA_NS.into())],
                "{text}"
            );
            let child = |name: &str| {
                x.children
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(child("code"), Some(code), "{text}");
            assert_eq!(child("subcode"), subcode, "{text}");
            assert_eq!(
                child("message"),
                Some(&*r.ucwa().message.text("target")),
                "{text}"
            );
            assert_eq!(
                x.debug_info,
                [
                    ("reason".to_string(), reason.to_string()),
                    ("requestId".to_string(), "req-2".to_string())
                ],
                "{text}"
            );
            let names = subcode == Some("ParameterValidationFailure");
            if names {
                assert_eq!(
                    x.parameters,
                    [("target".into(), "invalid".into())],
                    "{text}"
                );
            } else {
                assert!(x.parameters.is_empty());
                assert!(text.contains("<parameters />"), "{text}");
            }
        }
    }

    #[tokio::test]
    async fn parameter_failures_name_the_guarded_parameter() {
        let response = Rejection::Missing.render("r", "number", false);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["parameters"]["number"], "invalid");
        assert_eq!(
            v["message"],
            "The number parameter is missing, repeated, too long or not a valid tel or sip URI."
        );
        let response = Rejection::Denied.render("r", "phoneNumber", true);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = std::str::from_utf8(&body).unwrap();
        assert!(
            text.contains(
                "<message>The phoneNumber is not allowed by your organisation's policy.</message>"
            ),
            "{text}"
        );
    }

    #[test]
    fn xml_is_chosen_only_when_accept_ranks_it_above_json() {
        let cases = [
            (None, false),
            (Some("application/json"), false),
            (Some("application/xml"), true),
            (Some("text/xml"), true),
            (Some("application/vnd.microsoft.com.ucwa+xml"), true),
            (Some("*/*"), false),
            (Some("application/xml, application/json"), false),
            (Some("application/xml;q=0.9, application/json;q=0.8"), true),
            (Some("application/json;q=0.5, application/xml"), true),
            (Some("application/xml;q=0.5, application/*"), false),
            (
                Some("application/vnd.microsoft.com.ucwa+xml, */*;q=0.1"),
                true,
            ),
            (Some("application/xml;q=0"), false),
        ];
        for (accept, xml) in cases {
            assert_eq!(prefers_xml(accept), xml, "{accept:?}");
        }
    }
}
