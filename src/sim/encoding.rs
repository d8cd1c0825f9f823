//! The simulated pool's text decoding: the .NET encodings ASP.NET may re-decode a query or a form
//! with, named as `Encoding.GetEncoding(string)` names them (the CLR's `EncodingDataTable`,
//! dotnet/runtime `src/classlibnative/nls/encodingdata.cpp`). Written for the simulator alone,
//! apart from ringfence's own reading.

/// An encoding the model can decode, or one .NET knows that the model cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16Le,
    Utf16Be,
    Utf32Le,
    Utf32Be,
    Ascii,
    Latin1,
    Ibm037,
    Utf7,
    /// A name that could be in .NET's table of 455 names but is not in this model's: the model
    /// cannot say how the pool decodes with it.
    Unknown,
}

/// `Encoding.GetEncoding(name)`: ordinal case-insensitive, untrimmed; `None` when it throws.
pub fn by_name(name: &str) -> Option<Encoding> {
    const NAMES: &[(&str, Encoding)] = &[
        ("utf-8", Encoding::Utf8),
        ("unicode-1-1-utf-8", Encoding::Utf8),
        ("unicode-2-0-utf-8", Encoding::Utf8),
        ("x-unicode-1-1-utf-8", Encoding::Utf8),
        ("x-unicode-2-0-utf-8", Encoding::Utf8),
        ("utf-16", Encoding::Utf16Le),
        ("utf-16le", Encoding::Utf16Le),
        ("unicode", Encoding::Utf16Le),
        ("ucs-2", Encoding::Utf16Le),
        ("iso-10646-ucs-2", Encoding::Utf16Le),
        ("utf-16be", Encoding::Utf16Be),
        ("unicodefffe", Encoding::Utf16Be),
        ("utf-32", Encoding::Utf32Le),
        ("utf-32le", Encoding::Utf32Le),
        ("utf-32be", Encoding::Utf32Be),
        ("us-ascii", Encoding::Ascii),
        ("us", Encoding::Ascii),
        ("ascii", Encoding::Ascii),
        ("ansi_x3.4-1968", Encoding::Ascii),
        ("ansi_x3.4-1986", Encoding::Ascii),
        ("cp367", Encoding::Ascii),
        ("ibm367", Encoding::Ascii),
        ("csascii", Encoding::Ascii),
        ("iso-ir-6", Encoding::Ascii),
        ("iso646-us", Encoding::Ascii),
        ("iso_646.irv:1991", Encoding::Ascii),
        ("iso-8859-1", Encoding::Latin1),
        ("iso8859-1", Encoding::Latin1),
        ("iso_8859-1", Encoding::Latin1),
        ("iso_8859-1:1987", Encoding::Latin1),
        ("latin1", Encoding::Latin1),
        ("l1", Encoding::Latin1),
        ("cp819", Encoding::Latin1),
        ("ibm819", Encoding::Latin1),
        ("csisolatin1", Encoding::Latin1),
        ("iso-ir-100", Encoding::Latin1),
        ("ibm037", Encoding::Ibm037),
        ("cp037", Encoding::Ibm037),
        ("csibm037", Encoding::Ibm037),
        ("ebcdic-cp-us", Encoding::Ibm037),
        ("ebcdic-cp-ca", Encoding::Ibm037),
        ("ebcdic-cp-wt", Encoding::Ibm037),
        ("ebcdic-cp-nl", Encoding::Ibm037),
        ("utf-7", Encoding::Utf7),
        ("csunicode11utf7", Encoding::Utf7),
        ("unicode-1-1-utf-7", Encoding::Utf7),
        ("unicode-2-0-utf-7", Encoding::Utf7),
        ("x-unicode-1-1-utf-7", Encoding::Utf7),
        ("x-unicode-2-0-utf-7", Encoding::Utf7),
    ];
    if let Some(&(_, e)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        return Some(e);
    }
    let plausible = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:$".contains(&b));
    plausible.then_some(Encoding::Unknown)
}

impl Encoding {
    /// The bytes as text, invalid sequences replaced by U+FFFD as .NET's default fallback does;
    /// `None` for [`Encoding::Unknown`] and UTF-7, which the model does not decode.
    pub fn decode(self, bytes: &[u8]) -> Option<String> {
        Some(match self {
            Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Encoding::Utf16Le | Encoding::Utf16Be => {
                let units: Vec<u16> = bytes
                    .chunks(2)
                    .map(|c| match (c, self) {
                        ([a, b], Encoding::Utf16Le) => u16::from_le_bytes([*a, *b]),
                        ([a, b], _) => u16::from_be_bytes([*a, *b]),
                        _ => 0xfffd,
                    })
                    .collect();
                String::from_utf16_lossy(&units)
            }
            Encoding::Utf32Le | Encoding::Utf32Be => bytes
                .chunks(4)
                .map(|c| {
                    let v = match (<[u8; 4]>::try_from(c), self) {
                        (Ok(b), Encoding::Utf32Le) => u32::from_le_bytes(b),
                        (Ok(b), _) => u32::from_be_bytes(b),
                        (Err(_), _) => 0xfffd,
                    };
                    char::from_u32(v).unwrap_or('\u{fffd}')
                })
                .collect(),
            Encoding::Ascii => bytes
                .iter()
                .map(|&b| if b < 0x80 { char::from(b) } else { '?' })
                .collect(),
            Encoding::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
            Encoding::Ibm037 => bytes
                .iter()
                .map(|&b| char::from(EBCDIC_037[usize::from(b)]))
                .collect(),
            Encoding::Utf7 | Encoding::Unknown => return None,
        })
    }
}

/// IBM037 (EBCDIC, US/Canada) to Latin-1 code points.
const EBCDIC_037: [u8; 256] = [
    0x00, 0x01, 0x02, 0x03, 0x9c, 0x09, 0x86, 0x7f, 0x97, 0x8d, 0x8e, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x9d, 0x85, 0x08, 0x87, 0x18, 0x19, 0x92, 0x8f, 0x1c, 0x1d, 0x1e, 0x1f,
    0x80, 0x81, 0x82, 0x83, 0x84, 0x0a, 0x17, 0x1b, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x05, 0x06, 0x07,
    0x90, 0x91, 0x16, 0x93, 0x94, 0x95, 0x96, 0x04, 0x98, 0x99, 0x9a, 0x9b, 0x14, 0x15, 0x9e, 0x1a,
    0x20, 0xa0, 0xe2, 0xe4, 0xe0, 0xe1, 0xe3, 0xe5, 0xe7, 0xf1, 0xa2, 0x2e, 0x3c, 0x28, 0x2b, 0x7c,
    0x26, 0xe9, 0xea, 0xeb, 0xe8, 0xed, 0xee, 0xef, 0xec, 0xdf, 0x21, 0x24, 0x2a, 0x29, 0x3b, 0xac,
    0x2d, 0x2f, 0xc2, 0xc4, 0xc0, 0xc1, 0xc3, 0xc5, 0xc7, 0xd1, 0xa6, 0x2c, 0x25, 0x5f, 0x3e, 0x3f,
    0xf8, 0xc9, 0xca, 0xcb, 0xc8, 0xcd, 0xce, 0xcf, 0xcc, 0x60, 0x3a, 0x23, 0x40, 0x27, 0x3d, 0x22,
    0xd8, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0xab, 0xbb, 0xf0, 0xfd, 0xfe, 0xb1,
    0xb0, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0xaa, 0xba, 0xe6, 0xb8, 0xc6, 0xa4,
    0xb5, 0x7e, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0xa1, 0xbf, 0xd0, 0xdd, 0xde, 0xae,
    0x5e, 0xa3, 0xa5, 0xb7, 0xa9, 0xa7, 0xb6, 0xbc, 0xbd, 0xbe, 0x5b, 0x5d, 0xaf, 0xa8, 0xb4, 0xd7,
    0x7b, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0xad, 0xf4, 0xf6, 0xf2, 0xf3, 0xf5,
    0x7d, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f, 0x50, 0x51, 0x52, 0xb9, 0xfb, 0xfc, 0xf9, 0xfa, 0xff,
    0x5c, 0xf7, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0xb2, 0xd4, 0xd6, 0xd2, 0xd3, 0xd5,
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0xb3, 0xdb, 0xdc, 0xd9, 0xda, 0x9f,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_case_insensitively_and_untrimmed() {
        assert_eq!(by_name("UTF-8"), Some(Encoding::Utf8));
        assert_eq!(by_name("IBM037"), Some(Encoding::Ibm037));
        assert_eq!(by_name("unicodeFFFE"), Some(Encoding::Utf16Be));
        assert_eq!(by_name("shift_jis"), Some(Encoding::Unknown));
        assert_eq!(by_name(" utf-8"), None);
        assert_eq!(by_name("utf-8;"), None);
        assert_eq!(by_name(""), None);
    }

    #[test]
    fn ebcdic_spells_target_in_other_bytes() {
        let target = [0xa3, 0x81, 0x99, 0x87, 0x85, 0xa3];
        assert_eq!(Encoding::Ibm037.decode(&target).as_deref(), Some("target"));
        assert_eq!(
            Encoding::Utf16Be.decode(&[0, b't', 0, b'a']).as_deref(),
            Some("ta")
        );
    }
}
