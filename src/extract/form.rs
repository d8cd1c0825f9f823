//! `application/x-www-form-urlencoded` bodies: the query grammar with `+` meaning space
//! (SPEC §10 "Form bodies"), so a number must be sent as `%2B`.

use std::borrow::Cow;

use super::query::{find_pair, Grammar};
use super::ExtractError;
use crate::iis;

/// The parameter's value in a form body. A leading UTF-8 BOM is skipped, so a key behind it is
/// still seen (a stricter reading than .NET's, which keeps it in the key). Every key and value
/// must be UTF-8 without control characters, as in the query.
///
/// A form that begins like a JSON or XML document (`{`, `[`, `"` or `<` after any Unicode white
/// space or default-ignorable code point, which .NET's readers skip) is [`ExtractError::BadBody`]:
/// `{"target":"denied","x":"&target=allowed"}` is an allowed form to `Request.Form` and a denied
/// JSON body to a reader that sniffs the body instead of trusting Content-Type.
pub fn find<'a>(body: &'a [u8], parameter: &str) -> Result<Option<Cow<'a, str>>, ExtractError> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let first = String::from_utf8_lossy(body)
        .chars()
        .find(|&c| !c.is_whitespace() && !iis::is_default_ignorable(c));
    if matches!(first, Some('{' | '[' | '"' | '<')) {
        return Err(ExtractError::BadBody);
    }
    find_pair(body, parameter, Grammar::FORM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ExtractError::*;

    #[test]
    fn form_table() {
        let cases: &[(&[u8], crate::extract::Expected)] = &[
            (b"target=tel%3A%2B14255550100", Ok(Some("tel:+14255550100"))),
            (b"target=tel:+14255550100", Ok(Some("tel: 14255550100"))),
            (b"target=a+b+c", Ok(Some("a b c"))),
            (b"tar+get=x", Ok(None)),
            (b"TARGET=x&y=1", Ok(Some("x"))),
            (b"%74arget=x", Ok(Some("x"))),
            (b"target=", Ok(Some(""))),
            (b"other=\xff&target=x", Err(Malformed)),
            (b"other=a+b&target=x", Ok(Some("x"))),
            (b"target=\xff", Err(Malformed)),
            (b"target=%e9", Err(Malformed)),
            (b"target=a&target=b", Err(Duplicate)),
            (b"target=a&Target=a", Err(Duplicate)),
            (b"target=%u002B1", Err(Malformed)),
            (b"target=%", Err(Malformed)),
            (b"x=1", Ok(None)),
            (b"\xef\xbb\xbftarget=x", Ok(Some("x"))),
            (
                br#"{"target":"sip:x@evil.example","x":"&target=tel%3A%2B1425&"}"#,
                Err(BadBody),
            ),
            (b" \r\n[1]&target=x", Err(BadBody)),
            (b"<input>&target=x&</input>", Err(BadBody)),
            (b"\xef\xbb\xbf\"a\"&target=x", Err(BadBody)),
            (b"a={&target=x", Ok(Some("x"))),
            (
                "\u{a0}\u{3000}\u{2028}{\"target\":1,\"x\":\"&target=y\"}".as_bytes(),
                Err(BadBody),
            ),
            ("\u{200b}<input/>&target=y".as_bytes(), Err(BadBody)),
        ];
        for &(body, want) in cases {
            let have = find(body, "target");
            assert_eq!(crate::extract::view(&have), want, "{body:?}");
        }
    }

    #[test]
    fn plain_values_are_borrowed() {
        assert!(matches!(
            find(b"target=sip:a@b.c", "target"),
            Ok(Some(Cow::Borrowed("sip:a@b.c")))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(body in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = find(&body, "target");
        }
    }
}
