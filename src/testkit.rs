//! Inputs shared by the HTTP/1 readers' generated tests: the chunked model's, and the request
//! and answer differentials against hyper.

use proptest::sample::Index;

/// An HTTP/1 message as written: its first line, its header lines and the empty line, each
/// ended by `eol`, then `body`.
pub fn message<'a>(
    first: &str,
    lines: impl IntoIterator<Item = &'a str>,
    eol: &str,
    body: &str,
) -> Vec<u8> {
    let mut text = format!("{first}{eol}").into_bytes();
    for line in lines {
        text.extend_from_slice(line.as_bytes());
        text.extend_from_slice(eol.as_bytes());
    }
    text.extend_from_slice(eol.as_bytes());
    text.extend_from_slice(body.as_bytes());
    text
}

/// Damages `text` at `at`: `how` 0 changes a byte to `byte`, 1 drops one, 2 inserts `byte`,
/// 3 cuts the text there.
pub fn damage(text: &mut Vec<u8>, (at, how, byte): (Index, u8, u8)) {
    let i = at.index(text.len());
    match how {
        0 => text[i] = byte,
        1 => {
            text.remove(i);
        }
        2 => text.insert(i, byte),
        _ => text.truncate(i),
    }
}
