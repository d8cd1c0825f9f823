//! A request's header lines as spans of the head they were read from: names lower-cased in
//! place, values as sent, in their order. A guarded POST has a handful of lines and the judge
//! asks for a few names: a linear scan over spans costs less than `HeaderMap`'s hashing, its
//! appends, and the reference count each of its values takes on the head (~2,000 instructions
//! a POST, docs/performance.md, session 36). HTTP/2 requests, whose headers come as a
//! `HeaderMap`, are copied into the same form at the door.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue};

/// A request's header lines. Every name is a lower-case token and every value a valid field
/// value (no CR, LF, NUL or other control but HTAB): they are checked when the lines are made,
/// so they can be written to the pool as they are.
#[derive(Clone, Default)]
pub struct Headers {
    /// The bytes the lines point into: the request's head, or a buffer of their own.
    buf: Bytes,
    lines: Vec<Line>,
}

/// Where one line's name and value lie in [`Headers::buf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    name: [u32; 2],
    value: [u32; 2],
}

/// A header line that cannot be made into one: a name that is not a token, or a value with a
/// control character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidLine;

impl Line {
    /// A line of `buf` whose name is at `name` and value at `value`. The name is lower-cased
    /// in place; both are checked as `http::HeaderName::from_bytes` and
    /// `http::HeaderValue::from_bytes` check them.
    pub fn read(
        buf: &mut [u8],
        name: std::ops::Range<usize>,
        value: std::ops::Range<usize>,
    ) -> Result<Line, InvalidLine> {
        // Offsets are kept as u32: a head is at most 64 KiB, an HTTP/2 header list 16 KiB.
        if u32::try_from(buf.len()).is_err() {
            return Err(InvalidLine);
        }
        let n = &mut buf[name.clone()];
        // Lower-cased and checked in one branch-free pass, as `http::HeaderName` does by table.
        let mut token = !n.is_empty();
        for b in n.iter_mut() {
            let lower = NAME_BYTES[usize::from(*b)];
            token &= lower != 0;
            *b = lower;
        }
        if !token || !is_field_value(&buf[value.clone()]) {
            return Err(InvalidLine);
        }
        Ok(Line {
            name: [name.start as u32, name.end as u32],
            value: [value.start as u32, value.end as u32],
        })
    }
}

/// RFC 9110 §5.6.2 `tchar`: the bytes `http::HeaderName` accepts in a name.
const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Each byte of a name as it is kept: a `tchar` lower-cased, anything else 0.
const NAME_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        if is_tchar(b as u8) {
            table[b] = (b as u8).to_ascii_lowercase();
        }
        b += 1;
    }
    table
};

/// The bytes `http::HeaderValue::from_bytes` accepts: HTAB, visible ASCII, space and obs-text.
/// Branch-free over the whole value, which the compiler vectorises.
pub fn is_field_value(value: &[u8]) -> bool {
    value.iter().fold(true, |ok, &b| {
        ok & ((b >= 0x20 && b != 0x7f) | (b == b'\t'))
    })
}

impl Headers {
    /// Lines read from `buf` (by [`Line::read`]), which is kept.
    pub fn new(buf: Bytes, lines: Vec<Line>) -> Headers {
        debug_assert!(u32::try_from(buf.len()).is_ok());
        Headers { buf, lines }
    }

    /// A copy of `map`'s lines, in its order (an HTTP/2 request's, a test's).
    pub fn from_map(map: &HeaderMap) -> Headers {
        copy_of(
            || {
                map.iter()
                    .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
            },
            map.len(),
        )
    }

    /// How many lines there are.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn name_of(&self, line: &Line) -> &[u8] {
        span(&self.buf, line.name)
    }

    fn value_of(&self, line: &Line) -> &[u8] {
        span(&self.buf, line.value)
    }

    /// Every line's name (a lower-case token, as bytes: no UTF-8 check is needed to compare
    /// it) and value, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> + '_ {
        self.lines
            .iter()
            .map(|line| (self.name_of(line), self.value_of(line)))
    }

    /// Every name, once per line.
    pub fn names(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.lines.iter().map(|line| self.name_of(line))
    }

    /// The values of every line named `name` (lower-case, as `http::HeaderName`s are).
    pub fn get_all<'h, 'n>(&'h self, name: &'n str) -> GetAll<'h, 'n> {
        debug_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
        GetAll {
            buf: &self.buf,
            lines: self.lines.iter(),
            name: name.as_bytes(),
        }
    }

    /// The first line named `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name).next()
    }

    #[cfg(test)]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The first line named `name`, sharing this head's bytes.
    pub fn bytes(&self, name: &str) -> Option<Bytes> {
        self.get(name).map(|value| self.shared(value))
    }

    /// `value`, a value these lines gave, as a `HeaderValue` that shares their bytes.
    pub fn header_value(&self, value: &[u8]) -> Option<HeaderValue> {
        // Checked when the line was made.
        HeaderValue::from_maybe_shared(self.shared(value)).ok()
    }

    /// `value`, a slice these lines gave, sharing their bytes.
    fn shared(&self, value: &[u8]) -> Bytes {
        self.buf.slice_ref(value)
    }

    /// Keeps the lines `keep` says yes to, in their order.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        let Headers { buf, lines } = self;
        lines.retain(|line| keep(span(buf, line.name), span(buf, line.value)));
    }

    /// Removes every line named `name`.
    pub fn remove(&mut self, name: &str) {
        self.retain(|n, _| n != name.as_bytes());
    }

    /// Keeps only the first line named `name`.
    pub fn keep_first(&mut self, name: &str) {
        let mut seen = false;
        self.retain(|n, _| {
            if n != name.as_bytes() {
                return true;
            }
            let first = !seen;
            seen = true;
            first
        });
    }

    /// Replaces every line named `name` by one line with `value`, at the end. Not free (a
    /// re-framed body's length, an HTTP/2 request's joined cookie crumbs): the lines are copied
    /// into a buffer of their own with the new one, a few hundred instructions.
    pub fn insert(&mut self, name: &'static str, value: &[u8]) {
        self.remove(name);
        self.append(name, value);
    }

    /// Adds a line at the end (see [`Headers::insert`]). `name` must be a lower-case token and
    /// `value` a field value: both come from ringfence, or from lines checked before.
    pub fn append(&mut self, name: &str, value: &[u8]) {
        debug_assert!(!name.is_empty() && name.bytes().all(|b| NAME_BYTES[usize::from(b)] == b));
        debug_assert!(is_field_value(value));
        *self = self.copied(Some((name.as_bytes(), value)));
    }

    /// The lines copied into a buffer holding only them: what a copy kept for another attempt
    /// holds, rather than the client's read buffer (issue 16).
    pub fn detached(&self) -> Headers {
        self.copied(None)
    }

    /// These lines, and `more` after them, in a buffer of their own.
    fn copied(&self, more: Option<(&[u8], &[u8])>) -> Headers {
        copy_of(|| self.iter().chain(more), self.lines.len() + 1)
    }

    /// The lines as a `HeaderMap`, for tests that compare with one.
    #[cfg(test)]
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.len());
        for (name, value) in self.iter() {
            if let (Ok(name), Some(value)) =
                (http::HeaderName::from_bytes(name), self.header_value(value))
            {
                map.append(name, value);
            }
        }
        map
    }
}

/// The bytes of `buf` a line's `[start, end)` names.
fn span(buf: &[u8], [start, end]: [u32; 2]) -> &[u8] {
    &buf[start as usize..end as usize]
}

/// `lines` (at most `count`), copied into one buffer of their own.
fn copy_of<'a, I: Iterator<Item = (&'a [u8], &'a [u8])>>(
    lines: impl Fn() -> I,
    count: usize,
) -> Headers {
    let size = lines().map(|(n, v)| n.len() + v.len()).sum();
    let mut buf = BytesMut::with_capacity(size);
    let mut kept = Vec::with_capacity(count);
    for (name, value) in lines() {
        let n = buf.len() as u32;
        buf.extend_from_slice(name);
        let v = buf.len() as u32;
        buf.extend_from_slice(value);
        kept.push(Line {
            name: [n, v],
            value: [v, buf.len() as u32],
        });
    }
    Headers {
        buf: buf.freeze(),
        lines: kept,
    }
}

/// The values of the lines of one name, in order ([`Headers::get_all`]).
pub struct GetAll<'h, 'n> {
    buf: &'h [u8],
    lines: std::slice::Iter<'h, Line>,
    name: &'n [u8],
}

impl<'h> GetAll<'h, '_> {
    fn value_if_named(&self, line: &Line) -> Option<&'h [u8]> {
        let buf: &'h [u8] = self.buf;
        (span(buf, line.name) == self.name).then(|| span(buf, line.value))
    }
}

impl<'h> Iterator for GetAll<'h, '_> {
    type Item = &'h [u8];

    fn next(&mut self) -> Option<&'h [u8]> {
        while let Some(line) = self.lines.next() {
            if let Some(value) = self.value_if_named(line) {
                return Some(value);
            }
        }
        None
    }
}

impl<'h> DoubleEndedIterator for GetAll<'h, '_> {
    fn next_back(&mut self) -> Option<&'h [u8]> {
        while let Some(line) = self.lines.next_back() {
            if let Some(value) = self.value_if_named(line) {
                return Some(value);
            }
        }
        None
    }
}

/// The same lines in the same order, wherever they are kept.
impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(lines: &[(&str, &[u8])]) -> Headers {
        let mut h = Headers::default();
        for (n, v) in lines {
            h.append(n, v);
        }
        h
    }

    #[test]
    fn lines_are_read_in_place_with_names_lower_cased_and_checked() {
        let mut head = b"Content-Type: a\r\nX-Y: b\tc\r\n".to_vec();
        let a = Line::read(&mut head, 0..12, 14..15).unwrap();
        let b = Line::read(&mut head, 17..20, 22..25).unwrap();
        let h = Headers::new(Bytes::from(head), vec![a, b]);
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [
                (&b"content-type"[..], &b"a"[..]),
                (&b"x-y"[..], &b"b\tc"[..])
            ]
        );
        assert_eq!(h.get("content-type"), Some(&b"a"[..]));
        assert_eq!(
            h.get("Content-Type".to_lowercase().as_str()),
            Some(&b"a"[..])
        );
        assert_eq!(h.get("x-z"), None);
        let mut bad = b"a b: c".to_vec();
        assert_eq!(Line::read(&mut bad, 0..3, 5..6), Err(InvalidLine));
        let mut bad = b"a: c\x7f".to_vec();
        assert_eq!(Line::read(&mut bad, 0..1, 3..5), Err(InvalidLine));
        let mut bad = b"a: c\x00".to_vec();
        assert_eq!(Line::read(&mut bad, 0..1, 3..5), Err(InvalidLine));
        let mut bad = b": c".to_vec();
        assert_eq!(Line::read(&mut bad, 0..0, 2..3), Err(InvalidLine));
        let mut ok = b"a: \x80\xff".to_vec();
        assert!(Line::read(&mut ok, 0..1, 3..5).is_ok());
    }

    #[test]
    fn removing_keeps_the_order_of_the_rest() {
        let mut h = headers(&[
            ("a", b"1"),
            ("content-length", b"5"),
            ("b", b"2"),
            ("content-length", b"5"),
            ("c", b"3"),
        ]);
        h.keep_first("content-length");
        let names = |h: &Headers| {
            h.names()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&h), ["a", "content-length", "b", "c"]);
        h.remove("b");
        assert_eq!(names(&h), ["a", "content-length", "c"]);
        h.insert("a", b"9");
        assert_eq!(names(&h), ["content-length", "c", "a"]);
        assert_eq!(h.get("a"), Some(&b"9"[..]));
        assert_eq!(
            h.header_value(h.get("a").unwrap()),
            Some(HeaderValue::from_static("9"))
        );
    }

    #[test]
    fn a_detached_copy_holds_only_its_lines() {
        let mut head = vec![b'x'; 4096];
        head[..8].copy_from_slice(b"host: ab");
        let line = Line::read(&mut head, 0..4, 6..8).unwrap();
        let h = Headers::new(Bytes::from(head), vec![line]);
        let copy = h.detached();
        assert_eq!(copy.buf.len(), 6);
        assert_eq!(copy.get("host"), Some(&b"ab"[..]));
    }

    proptest! {
        /// Every reading agrees with a `HeaderMap` made of the same lines.
        #[test]
        fn reads_as_a_header_map_does(
            lines in proptest::collection::vec(
                (prop::sample::select(vec!["host", "cookie", "content-length", "x-a"]), "[ -~]{0,6}"),
                0..8,
            ),
            gone in prop::sample::select(vec!["host", "cookie", "content-length", "x-a"]),
        ) {
            let mut map = HeaderMap::new();
            for (n, v) in &lines {
                map.append(*n, HeaderValue::from_str(v).unwrap());
            }
            let mut h = Headers::from_map(&map);
            for name in ["host", "cookie", "content-length", "x-a", "x-b"] {
                let ours: Vec<&[u8]> = h.get_all(name).collect();
                let theirs: Vec<&[u8]> = map.get_all(name).iter().map(HeaderValue::as_bytes).collect();
                prop_assert_eq!(ours, theirs);
            }
            prop_assert_eq!(h.len(), map.len());
            h.remove(gone);
            map.remove(gone);
            prop_assert_eq!(h.to_map(), map);
        }
    }
}
