//! How the pool reads request text: IIS (HTTP.sys) and ASP.NET (System.Web) rules, each written
//! once, each citing the code it mirrors. Every other module asks these functions instead of
//! reading escapes, case, media types or hosts its own way, because two copies that drift apart
//! are a bypass. `docs/backend-model.md` lists every rule with its source and the test that
//! pins it.
//!
//! - [`escape`]: percent and `%uNNNN` escapes.
//! - [`path`]: the path IIS and UCWA act on (decoding, separators, dot segments, cookieless
//!   session segments).
//! - [`media`]: media types, read two ways: RFC 9110's grammar, and ASP.NET's quote-blind
//!   `GetAttributeFromHeader`, which decides the request encoding.
//! - [`host`]: `host[:port]` and domain-name syntax.
//!
//! Where the pool's own reading is looser than ringfence can follow, ringfence reads more
//! (folds more letters, ignores more characters, removes more segments): a reading that finds
//! more can only refuse more.

pub mod escape;
pub mod host;
pub mod media;
pub mod path;

/// Case folding for names the pool compares case-insensitively: ASCII lower case, plus the
/// non-ASCII letters that .NET equates with ASCII ones. `StringComparer.OrdinalIgnoreCase`
/// upper-cases `ſ` (U+017F) to `S` and `ı` (U+0131) to `I`; lower-casing maps `İ` (U+0130) to
/// `i` and the Kelvin sign (U+212A) to `k`. Full-width letters and digits (U+FF10-U+FF5A) fold
/// to ASCII too: IIS once mapped `%uFF53` to `s` ("best fit", OWASP CRS rule 920260), and a
/// comparison that ignores width would.
pub fn fold(c: char) -> char {
    match c {
        '\u{17f}' => 's',
        '\u{131}' | '\u{130}' => 'i',
        '\u{212a}' => 'k',
        '\u{ff10}'..='\u{ff19}' | '\u{ff21}'..='\u{ff3a}' | '\u{ff41}'..='\u{ff5a}' => {
            char::from_u32(u32::from(c) - 0xfee0).map_or(c, |a| a.to_ascii_lowercase())
        }
        _ => c.to_ascii_lowercase(),
    }
}

/// `text` around the first `byte` (ASCII, so both sides are at char boundaries), as
/// `str::split_once` with that char: a byte loop, for the short texts (media types, target
/// schemes) where a `split_once` search costs more to set up than to run.
pub fn split_at_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    debug_assert!(byte.is_ascii());
    let at = text.bytes().position(|b| b == byte)?;
    Some((&text[..at], &text[at + 1..]))
}

/// Whether `candidate`, a name from the request, names `name`: their [`skeleton`]s are equal.
/// A linguistic .NET comparison (`CompareInfo.Compare` without `Ordinal`) gives default-ignorable
/// code points, unassigned ones and (on Windows) control characters no weight, and a comparison
/// that ignores width, kana type or non-spacing marks equates more; erring towards a match fails
/// closed: a false match is judged or refused, a missed one would be forwarded unjudged.
pub fn names_equal(candidate: &str, name: &str) -> bool {
    // The usual case first: the configured name itself, up to ASCII case (~50 instructions where
    // the checks below cost ~250). Equal so to a printable-ASCII name, the candidate is
    // printable ASCII too, and the checks below would say the same.
    if candidate.len() == name.len()
        && candidate.eq_ignore_ascii_case(name)
        && name.bytes().all(|b| matches!(b, b' '..=b'~'))
    {
        return true;
    }
    if candidate.is_ascii() {
        // The usual case, two ASCII names without controls: equal without case, byte for byte
        // (each key of every guarded query and body is compared so).
        if name.is_ascii() && !candidate.bytes().any(|b| b.is_ascii_control()) {
            return candidate.eq_ignore_ascii_case(name);
        }
        return candidate
            .chars()
            .filter(|c| !c.is_ascii_control())
            .map(fold)
            .eq(name.chars().map(fold));
    }
    skeleton(candidate).chars().eq(name.chars().map(fold))
}

/// What is left of a text for a comparison that sees only ASCII letters and signs: each
/// character [`fold`]ed, compatibility-decomposed (NFKD: `ⓢ`, `𝐬` and `ſ` become `s`, `á` becomes
/// `a` and a combining mark), Latin letters without a decomposition transliterated as Windows'
/// "best fit" code-page conversion maps them (`ø`, `ł`, small capitals, IPA `ɡ`: `any_ascii`),
/// then everything but printable ASCII dropped (marks, default-ignorable, unassigned and
/// private-use code points, controls, other scripts) and folded again.
pub fn skeleton(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut keep = |d: char| {
        if matches!(d, ' '..='~') {
            out.push(fold(d));
        } else if is_latin(d) {
            let ascii = any_ascii::any_ascii_char(d);
            out.extend(ascii.chars().filter(|c| matches!(c, ' '..='~')).map(fold));
        }
    };
    // Canonical reordering, the rest of NFKD, only moves the marks dropped here: each character
    // is decomposed on its own, and ASCII is its own decomposition.
    for c in text.chars() {
        match fold(c) {
            a if a.is_ascii() => keep(a),
            other => unicode_normalization::char::decompose_compatible(other, &mut keep),
        }
    }
    out
}

/// Latin letters beyond ASCII: Latin-1 Supplement to Latin Extended-B, IPA extensions, phonetic
/// extensions (small capitals), Latin Extended Additional, -C and -D.
fn is_latin(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00c0..=0x02af | 0x1d00..=0x1dbf | 0x1e00..=0x1eff | 0x2c60..=0x2c7f | 0xa720..=0xa7ff
    )
}

/// Unicode's `Default_Ignorable_Code_Point` property (DerivedCoreProperties.txt, Unicode 15):
/// soft hyphen, zero-width characters, bidirectional controls, variation selectors, BOM, tags.
/// Linguistic comparisons and many renderers skip them, so `simultaneous\u{200B}RingToContact`
/// may reach the resource it does not spell.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00ad
            | 0x034f
            | 0x061c
            | 0x115f..=0x1160
            | 0x17b4..=0x17b5
            | 0x180b..=0x180f
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x206f
            | 0x3164
            | 0xfe00..=0xfe0f
            | 0xfeff
            | 0xffa0
            | 0xfff0..=0xfff8
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0000..=0xe0fff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_by_their_ascii_skeleton() {
        assert!(names_equal("TARGET", "target"));
        assert!(names_equal("\u{17f}tatus", "status"));
        assert!(names_equal("\u{131}d", "ID"));
        assert!(names_equal("\u{130}D", "id"));
        assert!(names_equal("phoneNumber\u{212a}", "PHONENUMBERK"));
        assert!(names_equal("tar\u{ad}get", "target"));
        assert!(names_equal("\u{feff}target\u{200b}", "target"));
        assert!(names_equal("t\u{e0041}arget", "target"));
        assert!(names_equal("\u{ff34}\u{ff41}rget", "target"));
        assert!(names_equal("ta\u{ff52}get\u{ff11}", "TARGET1"));
        assert!(names_equal("t\u{e1}rget", "target"));
        assert!(names_equal("ta\u{301}rget", "target"));
        assert!(names_equal("tar\u{378}get", "target"));
        assert!(names_equal("tar\u{640}get", "target"));
        assert!(names_equal("tar\u{e000}get", "target"));
        assert!(names_equal("\u{24e3}arget", "target"));
        assert!(names_equal("\u{1d42d}arget", "target"));
        assert!(names_equal("target\u{0}", "target"));
        assert!(names_equal("tar\u{1}get", "target"));
        assert!(!names_equal("targets", "target"));
        assert!(!names_equal("tar get", "target"));
        assert!(!names_equal("tar-get", "target"));
        assert!(!names_equal("\u{3c4}arget", "target"));
        // Latin letters without a decomposition, as best fit maps them (fresh-eyes round 3, H4).
        assert!(names_equal("targ\u{e9}t", "target"));
        assert!(names_equal("tar\u{261}et", "target"));
        assert!(names_equal("\u{1d1b}arget", "target"));
        assert!(names_equal("\u{167}arget", "target"));
        assert!(skeleton("simultaneousRingT\u{f8}Contact") == "simultaneousringtocontact");
        assert!(skeleton("ca\u{142}l") == "call");
    }

    proptest::proptest! {
        /// The byte-for-byte comparison of two ASCII names is the folded one.
        #[test]
        fn ascii_names_compare_as_their_folded_characters(
            candidate in "[tTaA \x01\x7f\x00]{0,4}",
            name in "[tTaA \x01\u{ff34}\u{17f}]{0,4}",
        ) {
            let folded = candidate
                .chars()
                .filter(|c| !c.is_ascii_control())
                .map(fold)
                .eq(name.chars().map(fold));
            proptest::prop_assert_eq!(names_equal(&candidate, &name), folded);
        }
    }

    #[test]
    fn default_ignorable_code_points_are_unicodes_list() {
        for c in [
            '\u{ad}',
            '\u{34f}',
            '\u{61c}',
            '\u{115f}',
            '\u{17b4}',
            '\u{180e}',
            '\u{200b}',
            '\u{200d}',
            '\u{200f}',
            '\u{202e}',
            '\u{2060}',
            '\u{2064}',
            '\u{206f}',
            '\u{3164}',
            '\u{fe0f}',
            '\u{feff}',
            '\u{ffa0}',
            '\u{fff0}',
            '\u{1bca3}',
            '\u{1d173}',
            '\u{e0001}',
            '\u{e0fff}',
        ] {
            assert!(is_default_ignorable(c), "{:04X}", u32::from(c));
        }
        for c in [
            'a',
            ' ',
            '\u{a0}',
            '\u{2010}',
            '\u{fffd}',
            '\u{1f600}',
            '\u{e1000}',
        ] {
            assert!(!is_default_ignorable(c), "{:04X}", u32::from(c));
        }
    }
}
