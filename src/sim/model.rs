//! How the simulated pool reads a request: the front-end server's own reading, modelled on
//! HTTP.sys and System.Web from their code (docs/backend-model.md cites each piece), and written
//! apart from ringfence's parser (`route`, `extract`, `iis`) so that the two can disagree. The
//! differential tests send requests through ringfence and ask this model what the pool acted on.
//!
//! Where the pool's behaviour depends on a version or a setting, the model takes every reading
//! (cookieless removal before and after the 2023 security update); where it cannot tell what the
//! pool would do (an encoding it does not decode, a DTD, a compressed body, a body of no known
//! type), it says so in [`Reading::unknown`] instead of guessing.
//!
//! At over 700 lines its size is earned: it is the pool's whole reading, kept in one file so that
//! it can be checked line by line against docs/backend-model.md, and apart from ringfence's.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};

use super::encoding::{self, Encoding};

/// A request as it reached the member: method, request-target, header lines, body.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Origin form (or absolute form) as on the request line: path and query.
    pub target: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// The guarded resources the model knows, each with the parameter that carries its target.
#[derive(Debug, Clone)]
pub struct Resources(pub Vec<(String, String)>);

impl Default for Resources {
    fn default() -> Resources {
        Resources(
            [
                "simultaneousRingToContact",
                "immediateForwardToContact",
                "unansweredCallToContact",
            ]
            .iter()
            .map(|r| (r.to_string(), "target".to_string()))
            .collect(),
        )
    }
}

/// Where the pool found a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Query,
    Form,
    Json,
    Xml,
    /// A batch part's `Data:` header, read as its JSON body.
    Data,
}

/// One value the pool would act on: a guarded resource and the value of its parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Act {
    /// The batch part (from 0), or `None` for the request itself.
    pub part: Option<usize>,
    pub resource: String,
    pub source: Source,
    /// The value as the pool reads it.
    pub value: String,
    /// A query value that held a literal `+`, which the pool reads as a space.
    pub plus: bool,
}

/// What the pool would do with a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// The guarded resources the path names under some reading, and `batch` for a batch.
    pub named: Vec<String>,
    /// A batch's embedded requests: method, resolved path and the resources it names.
    pub parts: Vec<Part>,
    pub acts: Vec<Act>,
    /// Why the model cannot say what the pool would act on.
    pub unknown: Vec<String>,
}

/// One embedded request of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub method: String,
    pub path: String,
    pub named: Vec<String>,
}

/// The name a batch goes by in [`Reading::named`].
pub const BATCH: &str = "batch";

/// Reads a request as the pool would.
pub fn read(request: &Request<'_>, resources: &Resources) -> Reading {
    let mut reading = Reading::default();
    let (path, query) = split_target(request.target);
    let named = route(
        path,
        header(request.headers, "aspfiltersessionid"),
        resources,
    );
    reading.named = names(&named, resources);
    if named.contains(&Named::Batch) {
        read_batch(request, path, resources, &mut reading);
    }
    for n in named {
        if let Named::Resource(i) = n {
            read_resource(request, query, &resources.0[i], None, &mut reading);
        }
    }
    reading
}

fn names(named: &[Named], resources: &Resources) -> Vec<String> {
    named
        .iter()
        .map(|n| match n {
            Named::Batch => BATCH.to_string(),
            Named::Resource(i) => resources.0[*i].0.clone(),
        })
        .collect()
}

/// What a path names to UCWA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Resource(usize),
    Batch,
}

/// A request line's target: an absolute form names its path (RFC 9112 §3.2.2); an origin form
/// is the path itself, even when it begins `//`.
fn split_target(target: &str) -> (&str, &[u8]) {
    let target = strip_authority(target, false);
    match target.split_once('?') {
        Some((path, query)) => (path, query.as_bytes()),
        None => (target, b""),
    }
}

/// `http://host/path` names `/path`; so does a network-path reference `//host/path` when
/// `network` (what `new Uri(base, reference)` gives, backslashes being slashes in http URIs).
fn strip_authority(target: &str, network: bool) -> &str {
    let lower = target
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let after_scheme = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else if network
        && (target.starts_with("//") || target.starts_with("/\\") || target.starts_with("\\\\"))
    {
        &target[2..]
    } else {
        return target;
    };
    match after_scheme.find(['/', '\\']) {
        Some(i) => &after_scheme[i..],
        None => "/",
    }
}

/// Every resource a path could name: the decoded `FilePath`, and for each cookieless-session
/// value the raw path carries (and the `AspFilterSessionId` header's), the path with it removed
/// from `RawUrl` and from `FilePath`, before and after the 2023 update.
fn route(raw_path: &str, filter_header: Option<&str>, resources: &Resources) -> Vec<Named> {
    let mut views = Vec::new();
    for empty in [EmptySegments::Collapse, EmptySegments::Keep] {
        let file_path = http_sys(raw_path, empty);
        views.push(file_path.clone());
        for update in [Update::Before2023, Update::After2023] {
            if let Some((start, end)) = find_cookieless(raw_path, update) {
                let header = &raw_path[start + 2..end];
                let raw_url = format!("{}{}", &raw_path[..start], &raw_path[end + 1..]);
                views.push(http_sys(&raw_url, empty));
                let modifier = format!("({})", filter_header.unwrap_or(header));
                views.extend(remove_app_path_modifier(&file_path, &modifier, update));
            }
        }
    }
    let mut named = Vec::new();
    for view in views {
        if let Some(n) = route_view(&view, resources) {
            if !named.contains(&n) {
                named.push(n);
            }
        }
    }
    named
}

/// The last non-empty segment of a path under `/ucwa/`, compared as
/// `StringComparer.OrdinalIgnoreCase` compares (each character upper-cased on its own).
fn route_view(path: &str, resources: &Resources) -> Option<Named> {
    let under = path
        .get(..6)
        .is_some_and(|p| ordinal_ignore_case(p, "/ucwa/"));
    if !under {
        return None;
    }
    let last = path.split('/').rev().find(|s| !s.is_empty())?;
    if ordinal_ignore_case(last, "batch") {
        return Some(Named::Batch);
    }
    resources
        .0
        .iter()
        .position(|(r, _)| ordinal_ignore_case(last, r))
        .map(Named::Resource)
}

fn ordinal_ignore_case(a: &str, b: &str) -> bool {
    let upper = |c: char| {
        let mut u = c.to_uppercase();
        match (u.next(), u.next()) {
            (Some(one), None) => one,
            _ => c,
        }
    };
    a.chars().map(upper).eq(b.chars().map(upper))
}

/// Whether `//` is one separator or holds an empty segment that `..` removes. Which one HTTP.sys
/// and `VirtualPath` take between them is not in the reference source, so the model reads both.
#[derive(Clone, Copy)]
enum EmptySegments {
    Collapse,
    Keep,
}

/// HTTP.sys's cooked path: one round of `%XX` and `%uNNNN` decoding, the bytes read as UTF-8 or,
/// failing that, the system code page (Latin-1 here); `\` is `/`; `;` is an ordinary character;
/// then `//` is read as `empty` says and `.` and `..` are resolved.
fn http_sys(raw: &str, empty: EmptySegments) -> String {
    let bytes = raw.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if matches!(bytes.get(i + 1), Some(b'u' | b'U')) {
                if let Some(unit) = hex_at(bytes, i + 2, 4) {
                    let c = char::from_u32(unit).unwrap_or('\u{fffd}');
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    i += 6;
                    continue;
                }
            } else if let Some(b) = hex_at(bytes, i + 1, 2) {
                out.push(b as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    let text = match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    };
    let text = text.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for (i, segment) in text.split('/').enumerate() {
        match segment {
            "" if i > 0 && matches!(empty, EmptySegments::Keep) => segments.push(""),
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let segments: Vec<&str> = segments.into_iter().filter(|s| !s.is_empty()).collect();
    format!("/{}", segments.join("/"))
}

fn hex_at(bytes: &[u8], at: usize, len: usize) -> Option<u32> {
    let digits = bytes.get(at..at + len)?;
    let mut v = 0;
    for &d in digits {
        v = v * 16 + (d as char).to_digit(16)?;
    }
    Some(v)
}

#[derive(Clone, Copy)]
enum Update {
    Before2023,
    After2023,
}

/// `CookielessHelperClass.RemoveCookielessValuesFromPath` on the raw path: where `/(` and `)/`
/// enclose a valid value (the last pair before the update, the first after it).
fn find_cookieless(path: &str, update: Update) -> Option<(usize, usize)> {
    if !path.contains('(') {
        return None;
    }
    let (start, end) = match update {
        Update::Before2023 => {
            let end = path.rfind(")/")?;
            if end <= 2 {
                return None;
            }
            (path[..end].rfind("/(")?, end)
        }
        Update::After2023 => {
            let start = path.find("/(")?;
            let end = start + 2 + path[start + 2..].find(")/")?;
            (start, end)
        }
    };
    is_valid_header(path.as_bytes(), start + 2, end, update).then_some((start, end))
}

/// `IsValidHeader`: `X(value)` groups from `start` to `end`, an upper-case letter each; a value
/// holds no `/` (before the update) or only `[A-Za-z0-9_-]` (after it).
fn is_valid_header(path: &[u8], mut at: usize, end: usize, update: Update) -> bool {
    if end < at + 3 {
        return false;
    }
    while at + 3 <= end {
        if !path[at].is_ascii_uppercase() || path[at + 1] != b'(' {
            return false;
        }
        at += 2;
        let mut found = false;
        while at < end {
            let c = path[at];
            if c == b')' {
                at += 1;
                found = true;
                break;
            }
            let ok = match update {
                Update::Before2023 => c != b'/',
                Update::After2023 => c.is_ascii_alphanumeric() || c == b'-' || c == b'_',
            };
            if !ok {
                return false;
            }
            at += 1;
        }
        if !found {
            return false;
        }
    }
    at >= end
}

/// `HttpResponse.RemoveAppPathModifier`: the first `modifier` preceded by `/` is cut with its
/// `/`; after the update only when a `/` follows it too.
fn remove_app_path_modifier(file_path: &str, modifier: &str, update: Update) -> Option<String> {
    let pos = file_path.find(modifier)?;
    if pos == 0 || file_path.as_bytes()[pos - 1] != b'/' {
        return None;
    }
    let after = pos + modifier.len();
    if matches!(update, Update::After2023) && file_path.as_bytes().get(after) != Some(&b'/') {
        return None;
    }
    Some(format!("{}{}", &file_path[..pos - 1], &file_path[after..]))
}

/// The first line named `name` (case-insensitive); `None` when there is none. Where several
/// lines change the reading, [`all_headers`] reads every one.
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn all_headers<'h>(
    headers: &'h [(String, String)],
    name: &'h str,
) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The encoding a request's query and form are decoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Derived {
    /// `<globalization requestEncoding>`: UTF-8.
    Default,
    Named(Encoding),
}

/// `HttpRequest.GetEncodingFromHeaders`, then `ContentEncoding`'s UTF-7 rule.
fn request_encoding(headers: &[(String, String)], has_body: bool) -> Derived {
    let user_agent = all_headers(headers, "user-agent")
        .collect::<Vec<_>>()
        .join(",");
    if is_prefix_linguistic(&user_agent, "UP") {
        let charset = all_headers(headers, "x-up-devcap-post-charset")
            .collect::<Vec<_>>()
            .join(",");
        if !charset.is_empty() {
            if let Some(e) = encoding::by_name(&charset) {
                return usable(e);
            }
        }
    }
    if !has_body {
        return Derived::Default;
    }
    let content_type = all_headers(headers, "content-type")
        .collect::<Vec<_>>()
        .join(",");
    match get_attribute_from_header(&content_type, "charset").and_then(|c| encoding::by_name(&c)) {
        Some(e) => usable(e),
        None => Derived::Default,
    }
}

/// UTF-7 is refused unless `aspnet:AllowUtf7RequestContentEncoding` (off by default).
fn usable(e: Encoding) -> Derived {
    match e {
        Encoding::Utf7 => Derived::Default,
        e => Derived::Named(e),
    }
}

/// `CompareInfo.IsPrefix` with the invariant culture: characters without sort weight (soft
/// hyphen, zero-width characters, BOM, ...) do not count.
fn is_prefix_linguistic(text: &str, prefix: &str) -> bool {
    let weightless = |c: &char| {
        matches!(
            u32::from(*c),
            0xad | 0x34f | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0xfeff
                | 0xfe00..=0xfe0f
        )
    };
    let mut chars = text.chars().filter(|c| !weightless(c));
    prefix.chars().all(|p| chars.next() == Some(p))
}

/// `HttpRequest.GetAttributeFromHeader`, as in System.Web/HttpRequest.cs.
fn get_attribute_from_header(header_value: &str, attr_name: &str) -> Option<String> {
    let h: Vec<char> = header_value.chars().collect();
    let a: Vec<char> = attr_name.chars().collect();
    let (l, k) = (h.len(), a.len());
    let is_white = |c: char| c.is_whitespace();
    let matches_at = |i: usize| {
        i + k <= l
            && h[i..i + k]
                .iter()
                .zip(&a)
                .all(|(x, y)| x.to_lowercase().eq(y.to_lowercase()))
    };
    let mut i = 1;
    let mut found = None;
    while i < l {
        let Some(at) = (i..l).find(|&j| matches_at(j)) else {
            break;
        };
        if at + k >= l {
            break;
        }
        let (prev, next) = (h[at - 1], h[at + k]);
        if (prev == ';' || prev == ',' || is_white(prev)) && (next == '=' || is_white(next)) {
            found = Some(at);
            break;
        }
        i = at + k;
    }
    let mut i = found? + k;
    while i < l && is_white(h[i]) {
        i += 1;
    }
    if i >= l || h[i] != '=' {
        return None;
    }
    i += 1;
    while i < l && is_white(h[i]) {
        i += 1;
    }
    if i >= l {
        return None;
    }
    let value: String = if h[i] == '"' {
        if i == l - 1 {
            return None;
        }
        let j = (i + 1..l).find(|&j| h[j] == '"')?;
        if j == i + 1 {
            return None;
        }
        h[i + 1..j].iter().collect()
    } else {
        let j = (i..l).find(|&j| h[j] == ' ' || h[j] == ',').unwrap_or(l);
        if j == i {
            return None;
        }
        h[i..j].iter().collect()
    };
    Some(value.trim().to_string())
}

/// Reads the query and the body of a request (or a batch part) to a guarded resource.
fn read_resource(
    request: &Request<'_>,
    query: &[u8],
    (resource, parameter): &(String, String),
    part: Option<usize>,
    reading: &mut Reading,
) {
    let body = request.body;
    let derived = request_encoding(request.headers, !body.is_empty());
    let mut act = |source: Source, value: String, plus: bool| {
        reading.acts.push(Act {
            part,
            resource: resource.clone(),
            source,
            value,
            plus,
        });
    };
    let query_encoding = match derived {
        Derived::Named(Encoding::Utf16Le) | Derived::Default => Encoding::Utf8,
        Derived::Named(e) => e,
    };
    let form_encoding = match derived {
        Derived::Default => Encoding::Utf8,
        Derived::Named(e) => e,
    };
    let mut unknown = Vec::new();
    match collection(query, query_encoding, parameter) {
        Some(values) => values
            .into_iter()
            .for_each(|(v, plus)| act(Source::Query, v, plus)),
        None => unknown.push(format!("a query decoded as {query_encoding:?}")),
    }
    if let Some(data) = header(request.headers, "data") {
        match json_values(data.as_bytes(), parameter) {
            Some(values) => values.into_iter().for_each(|v| act(Source::Data, v, false)),
            None => unknown.push("a Data: header that is not JSON".into()),
        }
    }
    if !body.is_empty() {
        let content_type = all_headers(request.headers, "content-type")
            .collect::<Vec<_>>()
            .join(",");
        let lower = content_type.to_ascii_lowercase();
        let encoded = all_headers(request.headers, "content-encoding")
            .flat_map(|v| v.split(','))
            .any(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity"));
        if encoded {
            unknown.push("a compressed body".into());
        } else if lower.starts_with("application/x-www-form-urlencoded") {
            match collection(body, form_encoding, parameter) {
                Some(values) => values
                    .into_iter()
                    .for_each(|(v, _)| act(Source::Form, v, false)),
                None => unknown.push(format!("a form decoded as {form_encoding:?}")),
            }
        } else if lower.contains("json") {
            match json_values(body, parameter) {
                Some(values) => values.into_iter().for_each(|v| act(Source::Json, v, false)),
                None => unknown.push("a JSON body the model cannot read".into()),
            }
        } else if lower.contains("xml") {
            match xml_values(body, parameter) {
                Some(values) => values.into_iter().for_each(|v| act(Source::Xml, v, false)),
                None => unknown.push("an XML body the model cannot read".into()),
            }
        } else {
            unknown.push(format!("a body of type {content_type:?}"));
        }
    }
    reading.unknown.extend(unknown);
}

/// `HttpValueCollection.FillFromEncodedBytes`, then `Get(parameter)`: the values whose decoded
/// name matches, each with whether its raw bytes held a `+`. `None` when the encoding is one the
/// model cannot decode.
fn collection(bytes: &[u8], encoding: Encoding, parameter: &str) -> Option<Vec<(String, bool)>> {
    let mut values = Vec::new();
    for pair in bytes.split(|&b| b == b'&') {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            // A pair without '=' has a null name.
            continue;
        };
        let name = url_decode(&pair[..eq], encoding)?;
        if ordinal_ignore_case(&name, parameter) {
            let raw = &pair[eq + 1..];
            values.push((url_decode(raw, encoding)?, raw.contains(&b'+')));
        }
    }
    if values.len() > 1 {
        // Get joins repeated values with ','.
        let joined = values
            .iter()
            .map(|(v, _)| v.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let plus = values.iter().any(|(_, p)| *p);
        return Some(vec![(joined, plus)]);
    }
    Some(values)
}

/// `HttpEncoder.UrlDecode(byte[], int, int, Encoding)`: `+` is a space, `%XX` a byte, `%uNNNN`
/// (lower-case `u`) a UTF-16 unit; an escape it cannot read stays; bytes are decoded with the
/// encoding; lone surrogates become U+FFFD (`Utf16StringValidator`).
fn url_decode(bytes: &[u8], encoding: Encoding) -> Option<String> {
    let count = bytes.len();
    let mut units: Vec<u16> = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let flush = |pending: &mut Vec<u8>, units: &mut Vec<u16>| -> Option<()> {
        if !pending.is_empty() {
            units.extend(encoding.decode(pending)?.encode_utf16());
            pending.clear();
        }
        Some(())
    };
    let mut i = 0;
    while i < count {
        let mut b = bytes[i];
        if b == b'+' {
            b = b' ';
        } else if b == b'%' && i + 2 < count {
            if bytes[i + 1] == b'u' && i + 5 < count {
                if let Some(unit) = hex_at(bytes, i + 2, 4) {
                    flush(&mut pending, &mut units)?;
                    units.push(unit as u16);
                    i += 6;
                    continue;
                }
            } else if let Some(v) = hex_at(bytes, i + 1, 2) {
                b = v as u8;
                i += 2;
            }
        }
        pending.push(b);
        i += 1;
    }
    flush(&mut pending, &mut units)?;
    Some(String::from_utf16_lossy(&units))
}

/// The top-level members named like the parameter (compared ignoring case, as Json.NET's
/// default binder falls back to), strings as they are and other values as their JSON text.
/// `None` when the body is not one JSON object.
fn json_values(body: &[u8], parameter: &str) -> Option<Vec<String>> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, serde_json::Value)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut all = Vec::new();
            while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                all.push(entry);
            }
            Ok(all)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let members = de.deserialize_map(Members).ok()?;
    de.end().ok()?;
    Some(
        members
            .into_iter()
            .filter(|(k, _)| ordinal_ignore_case(k, parameter))
            .map(|(_, v)| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
    )
}

/// The text of every `property` element whose `name` attribute names the parameter, anywhere.
/// `None` when the document cannot be read, declares a DTD (whose entities the pool's reader may
/// expand) or another encoding than UTF-8.
fn xml_values(body: &[u8], parameter: &str) -> Option<Vec<String>> {
    use quick_xml::events::Event;
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let text = std::str::from_utf8(body).ok()?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut values = Vec::new();
    let mut capture: Option<(usize, String)> = None;
    let mut depth = 0usize;
    let named = |e: &quick_xml::events::BytesStart<'_>| -> Option<bool> {
        if !e.local_name().as_ref().eq_ignore_ascii_case(b"property") {
            return Some(false);
        }
        for a in e.attributes() {
            let a = a.ok()?;
            if a.key.local_name().as_ref().eq_ignore_ascii_case(b"name") {
                let v = a.unescape_value().ok()?;
                if ordinal_ignore_case(v.trim(), parameter) {
                    return Some(true);
                }
            }
        }
        Some(false)
    };
    loop {
        match reader.read_event().ok()? {
            Event::Eof => break,
            Event::DocType(_) => return None,
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    if !enc.ok()?.eq_ignore_ascii_case(b"utf-8") {
                        return None;
                    }
                }
            }
            Event::Start(e) => {
                depth += 1;
                if capture.is_none() && named(&e)? {
                    capture = Some((depth, String::new()));
                }
            }
            Event::Empty(e) => {
                if capture.is_none() && named(&e)? {
                    values.push(String::new());
                }
            }
            Event::End(_) => {
                if capture.as_ref().is_some_and(|(d, _)| *d == depth) {
                    values.push(capture.take()?.1);
                }
                depth = depth.checked_sub(1)?;
            }
            Event::Text(t) => {
                if let Some((_, s)) = capture.as_mut() {
                    s.push_str(&t.xml10_content().ok()?);
                }
            }
            Event::CData(c) => {
                if let Some((_, s)) = capture.as_mut() {
                    s.push_str(&c.xml10_content().ok()?);
                }
            }
            Event::GeneralRef(r) => {
                let piece = if r.is_char_ref() {
                    r.resolve_char_ref().ok()??.to_string()
                } else {
                    let name = r.decode().ok()?;
                    quick_xml::escape::resolve_predefined_entity(&name)?.to_string()
                };
                if let Some((_, s)) = capture.as_mut() {
                    s.push_str(&piece);
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
        }
    }
    Some(values)
}

/// A batch: each embedded request is read as if sent alone, its target resolved against the
/// batch's URI.
fn read_batch(
    request: &Request<'_>,
    batch_path: &str,
    resources: &Resources,
    reading: &mut Reading,
) {
    if request.body.is_empty() {
        return;
    }
    if !matches!(
        request_encoding(request.headers, true),
        Derived::Default | Derived::Named(Encoding::Utf8)
    ) {
        reading
            .unknown
            .push("a batch with a request encoding".into());
        return;
    }
    let content_type = header(request.headers, "content-type").unwrap_or("");
    let Some(boundary) = get_attribute_from_header(content_type, "boundary") else {
        reading.unknown.push("a batch without a boundary".into());
        return;
    };
    let Some(parts) = multipart(request.body, &boundary) else {
        reading
            .unknown
            .push("a batch the model cannot split".into());
        return;
    };
    for (index, part) in parts.iter().enumerate() {
        let Some(embedded) = embedded_request(part) else {
            reading
                .unknown
                .push(format!("batch part {index} is not a request"));
            continue;
        };
        let target = resolve(batch_path, &embedded.target);
        let (path, query) = split_target(&target);
        let inner = Request {
            method: &embedded.method,
            target: &target,
            headers: &embedded.headers,
            body: &embedded.body,
        };
        let filter = header(&embedded.headers, "aspfiltersessionid");
        let named = route(path, filter, resources);
        reading.parts.push(Part {
            method: embedded.method.clone(),
            path: path.to_string(),
            named: names(&named, resources),
        });
        for named in named {
            match named {
                Named::Batch => reading
                    .unknown
                    .push(format!("batch part {index} is a batch")),
                Named::Resource(i) => {
                    read_resource(&inner, query, &resources.0[i], Some(index), reading)
                }
            }
        }
    }
}

/// RFC 3986 §5.2 reference resolution of a part's target against the batch's path.
fn resolve(base: &str, reference: &str) -> String {
    let reference = reference.replace('\\', "/");
    let stripped = strip_authority(&reference, true);
    if stripped.len() != reference.len() || reference.starts_with('/') {
        return stripped.to_string();
    }
    let dir = base.rfind('/').map_or("/", |i| &base[..=i]);
    format!("{dir}{reference}")
}

struct Embedded {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The bodies between `--boundary` lines (CRLF or LF, transport padding allowed) up to
/// `--boundary--`.
fn multipart(body: &[u8], boundary: &str) -> Option<Vec<Vec<u8>>> {
    let delimiter = format!("--{boundary}");
    let mut lines: Vec<(usize, &[u8])> = Vec::new();
    let mut at = 0;
    for line in body.split_inclusive(|&b| b == b'\n') {
        lines.push((at, line));
        at += line.len();
    }
    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    for &(start, line) in &lines {
        let Some(rest) = line.strip_prefix(delimiter.as_bytes()) else {
            continue;
        };
        let close = rest.starts_with(b"--");
        let rest = if close { &rest[2..] } else { rest };
        if !rest
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            continue;
        }
        if let Some(from) = open {
            let mut end = start;
            if end > from && body[end - 1] == b'\n' {
                end -= 1;
                if end > from && body[end - 1] == b'\r' {
                    end -= 1;
                }
            }
            parts.push(body[from..end.max(from)].to_vec());
        }
        if close {
            return Some(parts);
        }
        open = Some(start + line.len());
    }
    None
}

/// A part: MIME headers, a blank line, then an HTTP request (line, headers, blank line, body).
fn embedded_request(part: &[u8]) -> Option<Embedded> {
    let mut rest = part;
    let line = |rest: &mut &[u8]| -> Option<String> {
        let end = rest.iter().position(|&b| b == b'\n')?;
        let text = String::from_utf8_lossy(&rest[..end])
            .trim_end_matches('\r')
            .to_string();
        *rest = &rest[end + 1..];
        Some(text)
    };
    while !line(&mut rest)?.is_empty() {}
    let request_line = line(&mut rest)?;
    let mut fields = request_line.split_whitespace();
    let method = fields.next()?.to_string();
    let target = fields.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        if rest.is_empty() {
            break;
        }
        let header_line = line(&mut rest)?;
        if header_line.is_empty() {
            break;
        }
        let (name, value) = header_line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body = match length {
        Some(n) => rest.get(..n).unwrap_or(rest).to_vec(),
        None => rest.to_vec(),
    };
    Some(Embedded {
        method,
        target,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests;
