use super::*;
use proptest::prelude::*;

/// A `%` that takes `rounds` decoding rounds to appear, before two hex digits.
fn nested_percent(rounds: usize) -> String {
    format!("%{}", "25".repeat(rounds - 1))
}

#[test]
fn canonical_forms() {
    let cases: &[(&str, Result<&str, PathError>)] = &[
        ("/ucwa/v1/me", Ok("/ucwa/v1/me")),
        ("/UCWA/V1/Me/", Ok("/ucwa/v1/me")),
        ("/", Ok("/")),
        ("", Ok("/")),
        ("//", Ok("/")),
        ("/a/../..", Ok("/")),
        ("/a/%2e%2e/b", Ok("/b")),
        ("/a/%252e%252e/b", Ok("/b")),
        ("/a b /c", Ok("/a b/c")),
        ("/caf%C3%A9", Ok("/caf\u{e9}")),
        ("/%u00C9t%C3%89", Ok("/\u{c9}t\u{c9}")),
        ("/%uD83D%uDE00", Ok("/\u{1f600}")),
        ("/a%3Fb", Ok("/a?b")),
        ("/\u{212a}elvin", Ok("/kelvin")),
        ("/%C4%B0D/\u{130}d", Ok("/id/id")),
        ("/x;a/b;c/", Ok("/x/b")),
        ("/a/(S(x))/b/", Ok("/a/b")),
        ("/a/(A(x)S(y(z))/b", Ok("/a/b")),
        ("/a/%28S%28x%29%29/b", Ok("/a/b")),
        ("/a/(S(x))/..", Ok("/a")),
        ("/a/(S(x)/b", Ok("/a/(s(x)/b")),
        ("/x/.../y", Err(PathError::DotSegment)),
        ("/u/x/.. ", Err(PathError::DotSegment)),
        ("/%", Err(PathError::Escape(EscapeError::InvalidEscape))),
        ("/%g0", Err(PathError::Escape(EscapeError::InvalidEscape))),
        ("/%u12", Err(PathError::Escape(EscapeError::InvalidEscape))),
        (
            "/%uDC00",
            Err(PathError::Escape(EscapeError::LoneSurrogate)),
        ),
        (
            "/%uD800x",
            Err(PathError::Escape(EscapeError::LoneSurrogate)),
        ),
        ("/%ff", Err(PathError::InvalidUtf8)),
        ("/a%09b", Err(PathError::ControlCharacter)),
        ("/a%C2%85", Err(PathError::ControlCharacter)),
        ("/a%C2%ADb", Err(PathError::Ignorable)),
        ("/a\u{200b}", Err(PathError::Ignorable)),
        ("/a%uFEFF", Err(PathError::Ignorable)),
    ];
    for &(raw, want) in cases {
        let have = canonical(raw);
        assert_eq!(have.as_deref().map_err(|e| *e), want, "{raw:?}");
    }
}

#[test]
fn cookieless_segments_are_a_letter_and_a_value_in_parentheses() {
    for yes in [
        "(S(x))",
        "(S())",
        "(A(x)S(y))",
        "(s(x))",
        "(S(a(b))",
        "(X(%2F))",
    ] {
        assert!(is_cookieless_segment(yes), "{yes}");
    }
    for no in [
        "()", "(S)", "(S(x)", "S(x)", "((x))", "(1(x))", "(S(x))x", "(S(x)y)", "(S(x)()",
    ] {
        assert!(!is_cookieless_segment(no), "{no}");
    }
}

/// The readings of a path that have a canonical form.
fn read(raw: &str) -> Vec<String> {
    readings(raw)
        .into_iter()
        .flatten()
        .map(Cow::into_owned)
        .collect()
}

#[test]
fn readings_remove_cookieless_groups_raw_decoded_and_inside_segments() {
    assert_eq!(read("/ucwa/v1/me"), ["/ucwa/v1/me"]);
    assert_eq!(read("/a/(b)/c"), ["/a/(b)/c"]);
    // Removed after `..` (FilePath) and before it (RawUrl).
    let dots = read("/a/b/(S(x))/..");
    assert_eq!(dots[0], "/a/b");
    assert!(dots.contains(&"/a".to_string()), "{dots:?}");
    // A value holding an encoded separator: only the raw reading sees one segment.
    let encoded_slash = read("/a/b/(S(x%2Fy))/");
    assert_eq!(encoded_slash[0], "/a/b/(s(x/y))");
    assert!(
        encoded_slash.contains(&"/a/b".to_string()),
        "{encoded_slash:?}"
    );
    // Encoded parentheses appear at the first decoding stage.
    assert!(read("/a/b/%28S%28x%29%29/").iter().all(|r| r == "/a/b"));
    // RemoveAppPathModifier before the 2023 update cut the group out of a segment.
    let spliced = read("/u/simultaneous/(S(x))RingToContact/(S(x))/..");
    assert_eq!(spliced[0], "/u/simultaneous/(s(x))ringtocontact");
    assert!(
        spliced.contains(&"/u/simultaneousringtocontact".to_string()),
        "{spliced:?}"
    );
}

#[test]
fn too_many_or_too_long_cookieless_readings_are_unreadable() {
    let many: String = (0..40).map(|i| format!("/(S(x{i}))")).collect();
    assert!(readings(&format!("/ucwa{many}/me")).contains(&Err(PathError::Ambiguous)));
    // Few groups in a long path: the bytes to read, not the count, are over the limit.
    let long = "x".repeat(MAX_COOKIELESS_BYTES / 4);
    let few = format!("/ucwa/{long}/(S(a))/(S(b))/simultaneousRingToContact");
    assert!(readings(&few).contains(&Err(PathError::Ambiguous)));
    let short = "/ucwa/v1/(S(a))/(S(b))/simultaneousRingToContact";
    assert!(!readings(short).contains(&Err(PathError::Ambiguous)));
}

#[test]
fn hostile_cookieless_paths_are_unreadable_without_being_read_in_full() {
    // Fresh-eyes round 3 (H1): nested groups made the search quadratic, and one group
    // repeated 16,000 times made 32,000 readings of a 112 KB path before any limit was met.
    let nested = format!("/x/{}x{})/", "(S(".repeat(15_000), ")".repeat(15_000));
    assert_eq!(readings(&nested).last(), Some(&Err(PathError::Ambiguous)));
    let repeated = format!("/ucwa/{}x", "(S(x))/".repeat(16_000));
    assert_eq!(readings(&repeated).last(), Some(&Err(PathError::Ambiguous)));
    let chain: String = (0..100).map(|_| "A(B(x)").collect();
    assert!(cookieless_groups(&format!("/({chain})/")).is_ok());
    let opens = format!("/ucwa/{}", "(".repeat(MAX_OPENING_PARENTHESES + 1));
    assert_eq!(cookieless_groups(&opens), Err(PathError::Ambiguous));
}

#[test]
fn cookieless_groups_are_found_anywhere() {
    let groups = cookieless_groups("/a(S(x))b/(A(1)B(2))/(C(/))/(D(e)").unwrap();
    assert_eq!(groups, ["(S(x))", "(A(1)B(2))"]);
}

#[test]
fn decoding_rounds_are_bounded() {
    let ok = format!("/ucwa/{}41", nested_percent(MAX_DECODE_ROUNDS));
    assert_eq!(canonical(&ok).as_deref(), Ok("/ucwa/a"));
    let deep = format!("/ucwa/{}41", nested_percent(MAX_DECODE_ROUNDS + 1));
    assert_eq!(canonical(&deep), Err(PathError::TooDeeplyEncoded));
    let huge = format!("/ucwa/%{}41", "25".repeat(30_000));
    assert_eq!(canonical(&huge), Err(PathError::TooDeeplyEncoded));
}

#[test]
fn plain_paths_are_borrowed() {
    assert!(matches!(
        canonical("/ucwa/v1/applications/192/me"),
        Ok(Cow::Borrowed("/ucwa/v1/applications/192/me"))
    ));
    assert!(matches!(
        canonical("/ucwa/v1/me/"),
        Ok(Cow::Borrowed("/ucwa/v1/me"))
    ));
}

#[test]
fn broken_paths_that_could_reach_ucwa_are_recognised() {
    for yes in [
        "/UCWA/x%",
        "/%75cwa/v1/x%",
        "\\ucwa\\v1\\x%",
        "/x/..%2Fucwa/x%",
        "/u%E2%80%8Bcwa/v1/x",
        "/(S(x))/ucwa/v1/x%ff",
    ] {
        assert!(could_reach_ucwa(yes), "{yes}");
    }
    for no in [
        "/other/%",
        "/other/%ff",
        "/other/%ff/../..",
        "/static/a%E2%80%8B",
    ] {
        assert!(!could_reach_ucwa(no), "{no}");
    }
}

proptest! {
    #[test]
    fn canonical_is_idempotent(raw in path_strategy()) {
        if let Ok(once) = canonical(&raw) {
            prop_assert!(once.starts_with('/'));
            prop_assert!(!once.contains('%'));
            let twice = canonical(&once);
            prop_assert_eq!(twice.as_deref(), Ok(&*once));
        }
    }

    #[test]
    fn canonical_never_panics(raw in any::<String>()) {
        if let Ok(once) = canonical(&raw) {
            let twice = canonical(&once);
            prop_assert_eq!(twice.as_deref(), Ok(&*once));
        }
        let _ = readings(&raw);
        let _ = could_reach_ucwa(&raw);
    }

    #[test]
    fn every_reading_starts_with_the_canonical_one(raw in path_strategy()) {
        let all = readings(&raw);
        prop_assert_eq!(&all[0], &canonical(&raw));
        for reading in all.iter().flatten() {
            prop_assert!(reading.starts_with('/'));
            prop_assert!(!reading.split('/').any(is_cookieless_segment));
        }
    }

    #[test]
    fn the_plain_fast_path_agrees_with_full_canonicalisation(raw in "(/[a-zA-Z0-9._~!$&'()*+,=:@-]{0,6}){0,6}/?") {
        let full = normalise(&raw, Dots::Refuse, CANONICAL);
        let fast = canonical(&raw);
        prop_assert_eq!(fast.as_deref().ok(), full.as_deref().ok());
    }
}

/// [`is_plain`] as first written, deciding at each byte: the definition the vectorised one
/// must keep.
fn is_plain_bytewise(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut previous = b'/';
    for &b in &bytes[1..] {
        let ok = match b {
            b'%' | b'\\' | b';' | b':' | b'(' => false,
            b'/' => previous != b'/' && previous != b'.',
            0x21..=0x7e => true,
            _ => false,
        };
        if !ok {
            return false;
        }
        previous = b;
    }
    previous != b'.'
}

proptest! {
    #[test]
    fn is_plain_keeps_its_bytewise_definition(
        raw in prop_oneof![path_strategy(), "[/./a~%;:(\\\\ \x7f\x01é]{0,12}"]
    ) {
        prop_assert_eq!(is_plain(&raw), is_plain_bytewise(&raw), "{:?}", raw);
    }
}

#[test]
fn plain_paths() {
    for yes in [
        "/",
        "/ucwa/v1/applications/192/me",
        "/a/",
        "/a.b/c",
        "/~x!$&'*+,=@[]^_`{|}",
    ] {
        assert!(is_plain(yes), "{yes}");
    }
    for no in [
        "",
        "a/b",
        "//",
        "/a//b",
        "/a./b",
        "/a/.",
        "/a/..",
        "/a%41",
        "/a;b",
        "/a:b",
        "/a\\b",
        "/(S(x))/a",
        "/a b",
        "/caf\u{e9}",
        "/a\x7f",
    ] {
        assert!(!is_plain(no), "{no:?}");
    }
}
