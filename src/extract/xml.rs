//! XML bodies (SPEC §4, §10 "XML"): every `property` element naming the parameter counts,
//! wherever it is and whatever its namespace prefix. Parsed with quick-xml, which never expands
//! entities; a DOCTYPE is refused outright, so no entity can be declared.
//!
//! Matching errs towards counting (fails closed): the element local name `property` and the
//! attribute local name `name` are compared case-insensitively, and a `name` attribute in any
//! namespace counts. A `propertyList` (UCWA's list-valued property) naming the parameter counts
//! too, as a value that is not a string.

use std::borrow::Cow;

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{name_matches, ExtractError};

/// The parameter's value in an XML body: the text content of the matching `property`, with
/// character references, predefined entities and CDATA decoded and line ends normalised.
///
/// [`ExtractError::BadBody`] for anything a conforming parser would reject or that makes the
/// value ambiguous: DOCTYPE, unknown entity, not exactly one root, text outside the root,
/// an element, comment or processing instruction inside a matching property, or a matching
/// property whose content is more than one node: text beside a CDATA section, or two CDATA
/// sections. Readers differ on such content (`InnerText` joins the nodes, `FirstChild.Value`
/// takes one), so no one value is what the pool reads.
/// [`ExtractError::UnsupportedMediaType`] when the XML declaration names an encoding other
/// than UTF-8.
pub fn find<'a>(body: &'a [u8], parameter: &str) -> Result<Option<Cow<'a, str>>, ExtractError> {
    use ExtractError::BadBody;

    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|_| BadBody)?;
    let mut reader = Reader::from_str(text);
    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut first = true;
    // Some while inside a matching property: the text gathered so far.
    let mut capture: Option<Option<Cow<'a, str>>> = None;
    // Inside a matching property: whether text (with its references) and how many CDATA
    // sections were seen.
    let mut nodes = (false, 0usize);
    // The matching elements: a `property`'s value, or `None` for a `propertyList`.
    let mut found: Option<Option<Cow<'a, str>>> = None;
    let mut duplicate = false;
    let mut record = |value: Option<Cow<'a, str>>| {
        if found.is_some() {
            duplicate = true;
        } else {
            found = Some(value);
        }
    };

    loop {
        let event = reader.read_event().map_err(|_| BadBody)?;
        let at_start = std::mem::replace(&mut first, false);
        let piece: Cow<'a, str> = match event {
            Event::Eof => break,
            Event::DocType(_) => return Err(BadBody),
            Event::Decl(decl) => {
                if !at_start {
                    return Err(BadBody);
                }
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(|_| BadBody)?;
                    if !encoding.eq_ignore_ascii_case(b"utf-8") {
                        return Err(ExtractError::UnsupportedMediaType);
                    }
                }
                continue;
            }
            Event::Start(_) | Event::Empty(_) if capture.is_some() => return Err(BadBody),
            Event::Start(element) => {
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
                match matching(&element, &reader, parameter)? {
                    Some(Matching::Property) => {
                        capture = Some(None);
                        nodes = (false, 0);
                    }
                    Some(Matching::List) => record(None),
                    None => {}
                }
                if roots > 1 {
                    return Err(BadBody);
                }
                continue;
            }
            Event::Empty(element) => {
                if depth == 0 {
                    roots += 1;
                }
                match matching(&element, &reader, parameter)? {
                    Some(Matching::Property) => record(Some(Cow::Borrowed(""))),
                    Some(Matching::List) => record(None),
                    None => {}
                }
                if roots > 1 {
                    return Err(BadBody);
                }
                continue;
            }
            Event::End(_) => {
                depth = depth.checked_sub(1).ok_or(BadBody)?;
                if let Some(value) = capture.take() {
                    if matches!(nodes, (true, 1..) | (_, 2..)) {
                        return Err(BadBody);
                    }
                    record(Some(value.unwrap_or(Cow::Borrowed(""))));
                }
                continue;
            }
            Event::Comment(_) | Event::PI(_) => {
                if capture.is_some() {
                    return Err(BadBody);
                }
                continue;
            }
            Event::Text(text) => {
                let text = text.xml10_content().map_err(|_| BadBody)?;
                if depth == 0 && !text.trim_matches(is_xml_space).is_empty() {
                    return Err(BadBody);
                }
                nodes.0 = true;
                text
            }
            Event::CData(cdata) => {
                if depth == 0 {
                    return Err(BadBody);
                }
                nodes.1 += 1;
                cdata.xml10_content().map_err(|_| BadBody)?
            }
            Event::GeneralRef(reference) => {
                if depth == 0 {
                    return Err(BadBody);
                }
                nodes.0 = true;
                if reference.is_char_ref() {
                    match reference.resolve_char_ref() {
                        Ok(Some(c)) if is_xml_char(c) => Cow::Owned(c.to_string()),
                        _ => return Err(BadBody),
                    }
                } else {
                    let name = reference.decode().map_err(|_| BadBody)?;
                    Cow::Borrowed(resolve_xml_entity(&name).ok_or(BadBody)?)
                }
            }
        };
        if let Some(value) = capture.as_mut() {
            match value {
                None => *value = Some(piece),
                Some(existing) => existing.to_mut().push_str(&piece),
            }
        }
    }
    if depth != 0 || roots != 1 {
        return Err(BadBody);
    }
    if duplicate {
        return Err(ExtractError::Duplicate);
    }
    // A list named like the parameter is a target that is not a string, as a JSON array is.
    found.map_or(Ok(None), |value| {
        value.map(Some).ok_or(ExtractError::Malformed)
    })
}

/// An element naming the parameter.
enum Matching {
    /// `<property name="target">`: its text is the value.
    Property,
    /// `<propertyList name="target">`, UCWA's list-valued property.
    List,
}

/// Attributes allowed on one element. quick-xml's duplicate-attribute check is quadratic in
/// their number; UCWA elements carry one or two.
const MAX_ATTRIBUTES: usize = 32;

/// Whether an element is a `property` or a `propertyList` naming the parameter. Checks every
/// attribute of every element (syntax, duplicates, entities), so malformed markup is refused
/// wherever it is.
fn matching(
    element: &BytesStart<'_>,
    reader: &Reader<&[u8]>,
    parameter: &str,
) -> Result<Option<Matching>, ExtractError> {
    let local = element.local_name();
    let kind = if local.as_ref().eq_ignore_ascii_case(b"property") {
        Some(Matching::Property)
    } else if local.as_ref().eq_ignore_ascii_case(b"propertyList") {
        Some(Matching::List)
    } else {
        None
    };
    let mut matches = false;
    for (index, attribute) in element.attributes().enumerate() {
        if index == MAX_ATTRIBUTES {
            return Err(ExtractError::BadBody);
        }
        let attribute = attribute.map_err(|_| ExtractError::BadBody)?;
        let value = attribute
            .decode_and_unescape_value_with(reader.decoder(), resolve_xml_entity)
            .map_err(|_| ExtractError::BadBody)?;
        let key = attribute.key;
        if kind.is_some()
            && key.as_namespace_binding().is_none()
            && key.local_name().as_ref().eq_ignore_ascii_case(b"name")
            && name_matches(value.trim(), parameter)
        {
            matches = true;
        }
    }
    Ok(kind.filter(|_| matches))
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// The XML 1.0 `Char` production, which character references must also satisfy.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ExtractError::*;

    const NS: &str = r#"xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa""#;

    fn input(inner: &str) -> String {
        format!("<input {NS}>{inner}</input>")
    }

    #[test]
    fn xml_table() {
        let cases: Vec<(String, crate::extract::Expected)> = vec![
            (input(r#"<property name="target">tel:+14255550100</property>"#), Ok(Some("tel:+14255550100"))),
            (format!(r#"<?xml version="1.0" encoding="utf-8"?>{}"#, input(r#"<property name="target">sip:a@b.c</property>"#)), Ok(Some("sip:a@b.c"))),
            (format!("\u{feff}{}", input(r#"<property name="target">x</property>"#)), Ok(Some("x"))),
            (input(r#"<property name="Target">x</property>"#), Ok(Some("x"))),
            (input(r#"<property name=" target ">x</property>"#), Ok(Some("x"))),
            (input(r#"<property name="&#116;arget">x</property>"#), Ok(Some("x"))),
            (input(r#"<Property NAME="target">x</Property>"#), Ok(Some("x"))),
            (input(r#"<property name="target"><![CDATA[tel:+1<2>]]></property>"#), Ok(Some("tel:+1<2>"))),
            (input(r#"<property name="target">tel:&#43;1&#x34;&amp;</property>"#), Ok(Some("tel:+14&"))),
            (input("<property name=\"target\">a\r\nb</property>"), Ok(Some("a\nb"))),
            (input(r#"<property name="target"> x </property>"#), Ok(Some(" x "))),
            (input(r#"<property name="target"></property>"#), Ok(Some(""))),
            (input(r#"<property name="target"/>"#), Ok(Some(""))),
            (r#"<u:input xmlns:u="http://schemas.microsoft.com/rtc/2012/03/ucwa"><u:property name="target">x</u:property></u:input>"#.to_string(), Ok(Some("x"))),
            (input(r#"<a><b><property name="target">deep</property></b></a>"#), Ok(Some("deep"))),
            (input(r#"<property name="other">x</property><property name="target">y</property>"#), Ok(Some("y"))),
            (input(r#"<property name="other"><b/>x</property>"#), Ok(None)),
            (input(r#"<propertyList name="target"><item>x</item></propertyList>"#), Err(Malformed)),
            (input(r#"<propertyList name="other"><item>x</item></propertyList>"#), Ok(None)),
            (input(r#"<property name="target">a</property><propertyList name="Target"><item>b</item></propertyList>"#), Err(Duplicate)),
            (input(r#"<propertyList name="target"/>"#), Err(Malformed)),
            (input(r#"<target>x</target>"#), Ok(None)),
            (input(r#"<!-- c --><?pi x?>"#), Ok(None)),
            (input(""), Ok(None)),
            (input(r#"<property name="target">a</property><property name="TARGET">b</property>"#), Err(Duplicate)),
            (input(r#"<property name="target">a</property><x><property name="target"/></x>"#), Err(Duplicate)),
            (input(r#"<property name="target">a</property><u:property xmlns:u="urn:x" name="target">a</u:property>"#), Err(Duplicate)),
            (format!(r#"<!DOCTYPE input [<!ENTITY t "tel:+1">]>{}"#, input(r#"<property name="target">&t;</property>"#)), Err(BadBody)),
            (format!("<!DOCTYPE input>{}", input("")), Err(BadBody)),
            (input(r#"<property name="target">&t;</property>"#), Err(BadBody)),
            (input(r#"<property name="target">&nbsp;</property>"#), Err(BadBody)),
            (input(r#"<property name="target">&#0;</property>"#), Err(BadBody)),
            (input(r#"<property name="target">&#1;</property>"#), Err(BadBody)),
            (input(r#"<property name="target">a & b</property>"#), Err(BadBody)),
            (input(r#"<property name="target"><b>x</b></property>"#), Err(BadBody)),
            (input(r#"<property name="target">sip:x@evil.example<![CDATA[.contoso.com]]></property>"#), Err(BadBody)),
            (input(r#"<property name="target"><![CDATA[tel:+1]]>&#50;</property>"#), Err(BadBody)),
            (input(r#"<property name="target"><![CDATA[tel:+1]]><![CDATA[2]]></property>"#), Err(BadBody)),
            (input(r#"<property name="target"> <![CDATA[tel:+1]]></property>"#), Err(BadBody)),
            (input(r#"<property name="other">a<![CDATA[b]]></property>"#), Ok(None)),
            (input(r#"<property name="target">x<!-- c -->y</property>"#), Err(BadBody)),
            (input(r#"<property name="target">x</property"#), Err(BadBody)),
            (input(r#"<property name="target">x</prop>"#), Err(BadBody)),
            (input(r#"<property name="target" name="x">y</property>"#), Err(BadBody)),
            (input(r#"<property name=target>y</property>"#), Err(BadBody)),
            (input(r#"<x a="&bogus;"/>"#), Err(BadBody)),
            (format!("{}{}", input(""), input("")), Err(BadBody)),
            (format!("text{}", input("")), Err(BadBody)),
            (format!("{}&amp;", input("")), Err(BadBody)),
            ("<input>".to_string(), Err(BadBody)),
            ("</input>".to_string(), Err(BadBody)),
            ("   ".to_string(), Err(BadBody)),
            ("{\"target\":\"x\"}".to_string(), Err(BadBody)),
            (format!(r#"{}<?xml version="1.0"?>"#, input("")), Err(BadBody)),
            (format!(r#"<?xml version="1.0" encoding="utf-16"?>{}"#, input("")), Err(UnsupportedMediaType)),
        ];
        for (body, want) in &cases {
            let have = find(body.as_bytes(), "target");
            assert_eq!(crate::extract::view(&have), *want, "{body}");
        }
    }

    #[test]
    fn attribute_count_is_bounded() {
        let attributes: String = (0..MAX_ATTRIBUTES).map(|i| format!(" a{i}=\"\"")).collect();
        let ok = format!("<input{attributes}/>");
        assert_eq!(find(ok.as_bytes(), "target"), Ok(None));
        let too_many = format!("<input{attributes} b=\"\"/>");
        assert_eq!(find(too_many.as_bytes(), "target"), Err(BadBody));
    }

    #[test]
    fn non_utf8_is_refused() {
        assert_eq!(find(b"<input>\xff</input>", "target"), Err(BadBody));
    }

    #[test]
    fn plain_text_is_borrowed() {
        let body = input(r#"<property name="target">tel:+1</property>"#);
        assert!(matches!(
            find(body.as_bytes(), "target"),
            Ok(Some(Cow::Borrowed("tel:+1")))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = find(&body, "target");
        }

        #[test]
        fn never_panics_on_near_xml(body in r#"(<input>|</input>|<property name="target">|</property>|<property/>|<!DOCTYPE x>|<!\[CDATA\[|\]\]>|&#43;|&amp;|&x;|<!--|-->|<\?xml|\?>|[a-z"'=<>/ ]){0,16}"#) {
            let _ = find(body.as_bytes(), "target");
        }
    }
}
