use super::*;
use percent_encoding::percent_encode_byte;
use proptest::prelude::*;

#[derive(Debug)]
enum Want {
    Normal(&'static str),
    Bad,
    Long,
}
use Want::*;

const CASES: &[(&str, Want)] = &[
    // RFC 3966
    ("tel:+1-425-555-0100", Normal("tel:+14255550100")),
    ("tel:+14255550100", Normal("tel:+14255550100")),
    ("TEL:+14255550100;ext=12", Normal("tel:+14255550100")),
    ("tel:+1(425)555.0100", Normal("tel:+14255550100")),
    ("tel:+1425;EXT=1-2;isub=a%20b", Normal("tel:+1425")),
    ("tel:+1", Normal("tel:+1")),
    ("tel:+123456789012345", Normal("tel:+123456789012345")),
    ("tel:+1234567890123456", Bad),
    ("tel:+1425;phone-context=example.com", Bad),
    ("tel:5550100;phone-context=+1425", Bad),
    ("tel:5550100", Bad),
    ("tel:+１４２５", Bad),
    ("tel:＋1425", Bad),
    ("tel:+", Bad),
    ("tel:+-.()", Bad),
    ("tel:", Bad),
    ("tel: +1425", Bad),
    ("tel:+1425 ", Bad),
    ("tel:-+1425", Bad),
    ("tel:+1425a", Bad),
    ("tel:+1425;ext=", Bad),
    ("tel:+1425;ext", Bad),
    ("tel:+1425;ext=1;ext=2", Bad),
    ("tel:+1425;ext=1a", Bad),
    ("tel:+1425;isub=%2", Bad),
    ("tel:+1425;foo=bar", Bad),
    ("tel:+1425;", Bad),
    // RFC 3261
    ("sip:alice@contoso.com", Normal("sip:alice@contoso.com")),
    ("SIPS:Alice@CONTOSO.com", Normal("sips:Alice@contoso.com")),
    ("sip:al%69ce@contoso.com", Normal("sip:alice@contoso.com")),
    ("sip:a%2fb@contoso.com", Bad),
    ("sip:a%20b@contoso.com", Bad),
    ("sip:+1%20900%20555%200100@contoso.com", Bad),
    (
        "sip:o'neil!*&=+$,~_.-()@contoso.com",
        Normal("sip:o'neil!*&=+$,~_.-()@contoso.com"),
    ),
    (
        "sip:+14255550100@contoso.com;user=phone",
        Normal("sip:+14255550100@contoso.com;user=phone"),
    ),
    (
        "sip:+14255550100@contoso.com;USER=Phone",
        Normal("sip:+14255550100@contoso.com;user=phone"),
    ),
    (
        "sip:+1-425-555-0100@contoso.com",
        Normal("sip:+1-425-555-0100@contoso.com"),
    ),
    ("sip:5550100@contoso.com", Normal("sip:5550100@contoso.com")),
    ("sip:alice@10.0.0.1", Normal("sip:alice@10.0.0.1")),
    ("sip:alice@[::1]", Normal("sip:alice@[::1]")),
    (
        "sip:alice@[2001:DB8:0:0::1]",
        Normal("sip:alice@[2001:db8::1]"),
    ),
    (
        "sip:alice@xn--bcher-kva.example",
        Normal("sip:alice@xn--bcher-kva.example"),
    ),
    ("sip:alice@localhost", Normal("sip:alice@localhost")),
    ("sip:alice@bücher.example", Bad),
    ("sip:contoso.com", Bad),
    ("sip:@contoso.com", Bad),
    ("sip:alice@", Bad),
    ("sip:alice:pw@contoso.com", Bad),
    ("sip:alice@contoso.com:5060", Bad),
    ("sip:alice@[::1]:5060", Bad),
    ("sip:alice@contoso.com;transport=tcp", Bad),
    ("sip:alice@contoso.com;maddr=10.0.0.1", Bad),
    ("sip:alice@contoso.com;lr", Bad),
    ("sip:alice@contoso.com;user=phone;user=phone", Bad),
    ("sip:x%40evil.example@contoso.com", Bad),
    ("sip:ceo%40contoso.com@contoso.com", Bad),
    ("sip:x%2540evil.example@contoso.com", Bad),
    ("sip:a%3Bb@contoso.com", Bad),
    ("sip:a%3Ab@contoso.com", Bad),
    ("sip:a%2Fb@contoso.com", Bad),
    ("sip:++19005550100@contoso.com", Bad),
    ("sip:1+9005550100@contoso.com", Bad),
    ("sip:+1-900+555@contoso.com", Bad),
    ("sip:+19005550100x@contoso.com", Bad),
    ("sip:+19005550100p1@contoso.com", Bad),
    ("sip:+1900555O100@contoso.com", Bad),
    ("sip:*19005550100@contoso.com", Bad),
    (
        "sip:19005550100x@contoso.com",
        Normal("sip:19005550100x@contoso.com"),
    ),
    ("sip:alice@contoso.com;", Bad),
    ("sip:alice@contoso.com?subject=x", Bad),
    ("sip:alice@bob@contoso.com", Bad),
    ("sip:alice@contoso.com.", Bad),
    ("sip:alice@contoso..com", Bad),
    ("sip:alice@-contoso.com", Bad),
    ("sip:alice@contoso-.com", Bad),
    ("sip:alice@con_toso.com", Bad),
    ("sip:alice@010.0.0.1", Bad),
    ("sip:alice@10.0.0", Bad),
    ("sip:alice@256.0.0.1", Bad),
    ("sip:alice@1234", Bad),
    ("sip:alice@[::g]", Bad),
    ("sip:alice@[fe80::1%25eth0]", Bad),
    ("sip:a;b@contoso.com", Bad),
    ("sip:a/b@contoso.com", Bad),
    ("sip:a[b]@contoso.com", Bad),
    ("sip:a%zz@contoso.com", Bad),
    ("sip:a%4@contoso.com", Bad),
    ("sip:%00alice@contoso.com", Bad),
    ("sip:%C3%BCser@contoso.com", Bad),
    ("sip:%EF%BC%91%EF%BC%92@contoso.com", Bad),
    ("sip:alice@contoso.com;user=phone", Bad),
    ("sip:5550100@contoso.com;user=phone", Bad),
    ("sip:+1425%3Bphone-context=x@contoso.com;user=phone", Bad),
    ("sip:+1234567890123456@contoso.com", Bad),
    // Length: 80 is the UCWA limit.
    (
        "sip:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@contoso.com",
        Normal("sip:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@contoso.com"),
    ),
    (
        "sip:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@contoso.com",
        Long,
    ),
    (
        "tel:+1425                                                                        ",
        Long,
    ),
    // Neither
    ("mailto:x@y", Bad),
    ("https://contoso.com", Bad),
    ("+14255550100", Bad),
    ("14255550100", Bad),
    ("", Bad),
    (" sip:alice@contoso.com", Bad),
    ("sip:alice@contoso.com\n", Bad),
];

#[test]
fn rfc_3966_and_3261_cases_parse_to_their_normal_form_or_fail_closed() {
    for (raw, want) in CASES {
        let got = Target::parse(raw, 80);
        match (want, &got) {
            (Normal(normal), Ok(t)) if t.to_string() == *normal => {}
            (Bad, Err(TargetError::Malformed(_))) => {}
            (Long, Err(TargetError::TooLong { max: 80 })) => {}
            _ => panic!("{raw:?}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn the_length_limit_counts_scalar_values_and_applies_first() {
    let at = |user_len: usize| format!("sip:{}@contoso.com", "a".repeat(user_len));
    assert_eq!(at(64).chars().count(), 80);
    assert!(Target::parse(&at(64), 80).is_ok());
    assert_eq!(
        Target::parse(&at(65), 80),
        Err(TargetError::TooLong { max: 80 })
    );
    // Too long wins over malformed, and multi-byte characters count once.
    assert_eq!(
        Target::parse(&" ".repeat(81), 80),
        Err(TargetError::TooLong { max: 80 })
    );
    assert_eq!(
        Target::parse(&"ü".repeat(11), 10),
        Err(TargetError::TooLong { max: 10 })
    );
    assert!(matches!(
        Target::parse(&"ü".repeat(10), 10),
        Err(TargetError::Malformed(_))
    ));
    assert!(Target::parse("tel:+1425", 9).is_ok());
    assert_eq!(
        Target::parse("tel:+1425", 8),
        Err(TargetError::TooLong { max: 8 })
    );
}

fn contact(raw: &str) -> Contact {
    match Target::parse(raw, 80) {
        Ok(Target::Contact(c)) => c,
        other => panic!("{raw:?}: {other:?}"),
    }
}

#[test]
fn sip_user_parts_are_read_as_numbers_whatever_the_spelling() {
    let global = Phone::Global(Number::parse_prefix("+14255550100").expect("valid"));
    let cases = [
        ("sip:+14255550100@contoso.com;user=phone", global),
        ("sip:+1-425-555-0100@contoso.com", global),
        ("sip:+1(425)555.0100@contoso.com", global),
        ("sip:%2B14255550100@contoso.com", global),
        ("sip:5550100@contoso.com", Phone::Local),
        ("sip:(425)555-0100@contoso.com", Phone::Local),
        ("sip:alice@contoso.com", Phone::NotPhone),
        ("sip:+alice@contoso.com", Phone::NotPhone),
        ("sip:---@contoso.com", Phone::NotPhone),
        ("sip:a+b@contoso.com", Phone::NotPhone),
    ];
    for (raw, phone) in cases {
        assert_eq!(contact(raw).phone(), phone, "{raw}");
    }
}

#[test]
fn two_spellings_of_one_contact_are_equal_and_share_an_address() {
    let a = contact("sip:Alice@Contoso.COM");
    let b = contact("SIP:%41lice@contoso.com");
    assert_eq!(a, b);
    assert_eq!(a.address(), "Alice@contoso.com");
    assert_eq!(
        contact("sip:al%69ce@contoso.com"),
        contact("sip:alice@contoso.com")
    );
    assert_ne!(
        contact("sip:alice@contoso.com"),
        contact("sip:Alice@contoso.com")
    );
}

#[test]
fn contact_accessors_expose_the_decoded_user_and_the_host_kind() {
    let c = contact("sips:J%2EDoe@Sub.Contoso.com");
    assert!(c.secure());
    assert_eq!(c.user(), "J.Doe");
    assert_eq!(c.address(), "J.Doe@sub.contoso.com");
    assert_eq!(c.domain(), Some("sub.contoso.com"));
    assert_eq!(c.host(), &SipHost::Domain("sub.contoso.com".into()));
    assert_eq!(c.to_string(), "sips:J.Doe@sub.contoso.com");
    let phone = contact("sip:+1425%2D555@contoso.com;user=phone");
    assert_eq!(phone.user(), "+1425-555");
    assert_eq!(phone.to_string(), "sip:+1425-555@contoso.com;user=phone");

    let v4 = contact("sip:alice@10.0.0.1");
    assert_eq!(v4.host(), &SipHost::Ipv4(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(v4.domain(), None);
    let v6 = contact("sip:alice@[::1]");
    assert_eq!(v6.host(), &SipHost::Ipv6(Ipv6Addr::LOCALHOST));
    assert_eq!(v6.address(), "alice@[::1]");

    let phone = contact("sip:+1425@contoso.com;user=phone");
    assert_eq!(phone.address(), "+1425@contoso.com");
    assert_eq!(phone.user(), "+1425");
}

#[test]
fn configured_uris_parse_with_the_target_grammar_and_ignore_sip_versus_sips() {
    let entry = Contact::parse_uri("sip:helpdesk@Fabrikam.com").expect("valid");
    let target = contact("sips:helpdesk@fabrikam.com");
    assert_eq!(entry.address(), target.address());
    assert_ne!(entry, target);
    assert!(Contact::parse_uri("tel:+1425").is_err());
    assert!(Contact::parse_uri("sip:helpdesk@fabrikam.com:5060").is_err());
}

#[test]
fn configured_prefixes_are_plus_and_at_most_fifteen_digits() {
    let p = Number::parse_prefix("+1425").expect("valid");
    assert_eq!(p.digits(), "1425");
    assert_eq!(p.to_string(), "tel:+1425");
    for bad in [
        "",
        "+",
        "1425",
        "+1-425",
        "+1425 ",
        "++1",
        "+1234567890123456",
        "+１",
    ] {
        assert_eq!(Number::parse_prefix(bad), None, "{bad:?}");
    }
    assert!(Number::parse_prefix("+123456789012345").is_some());
}

#[test]
fn numbers_render_with_a_plus_into_a_stack_buffer_and_match_prefixes() {
    let Ok(Target::Number(n)) = Target::parse("tel:+1-425-555-0100", 80) else {
        panic!("valid number");
    };
    let mut buf = [0u8; 16];
    assert_eq!(n.plus_digits(&mut buf), "+14255550100");
    let full = Number::parse_prefix("+123456789012345").expect("valid");
    assert_eq!(full.plus_digits(&mut buf), "+123456789012345");
    assert!(n.starts_with(&Number::parse_prefix("+1425").expect("valid")));
    assert!(n.starts_with(&n));
    assert!(!n.starts_with(&Number::parse_prefix("+1426").expect("valid")));
    assert!(!Number::parse_prefix("+1").expect("valid").starts_with(&n));
}

#[test]
fn errors_explain_themselves_without_echoing_input() {
    assert_eq!(
        Target::parse("tel:+1425;phone-context=example.com", 80),
        Err(TargetError::Malformed(
            "phone-context numbers are not allowed"
        ))
    );
    assert_eq!(
        TargetError::TooLong { max: 80 }.to_string(),
        "target is longer than 80 characters"
    );
}

/// One of `options`, verbatim.
fn pick(options: &'static [&'static str]) -> BoxedStrategy<String> {
    proptest::sample::select(options)
        .prop_map(str::to_string)
        .boxed()
}

/// Pieces of the grammar, mostly valid with some near misses, so that many inputs are
/// accepted and the rest probe the edges.
fn grammar_like() -> impl Strategy<Value = String> {
    let global = "\\+[0-9]{1,3}([-.()]?[0-9]{1,4}){0,4}";
    let number = prop_oneof![4 => global, 1 => "[-.()0-9+]{0,18}"];
    let tel = (
        prop_oneof![4 => pick(&["tel:", "TEL:", "Tel:"]), 1 => pick(&["tel", "tel: ", "sip:", ""])],
        number,
        prop_oneof![
            4 => pick(&["", ";ext=12", ";EXT=1-2;isub=a%20b", ";isub=x/y?z", ";ext=(1)"]),
            1 => pick(&[";phone-context=a.b", ";ext=", ";x=y", ";", ";ext=1;ext=2", ";isub=%4"]),
        ],
    )
        .prop_map(|(s, n, p)| format!("{s}{n}{p}"));
    let user = prop_oneof![
        2 => global,
        1 => "[0-9]{3}-?[0-9]{4}",
        3 => "[A-Za-z0-9._~!*'()&=+$,-]{1,10}",
        3 => "([a-zA-Z0-9+]|%[2-7][0-9A-Fa-f]){1,8}",
        1 => "[a-z:;?/@%\\[\\] ]{0,4}|%[089a-fA-F][0-9a-f]",
    ];
    let host = prop_oneof![
        4 => "[a-z][a-z0-9]{0,6}(\\.[a-zA-Z][a-zA-Z0-9-]{0,5}[a-z]){0,3}",
        1 => "(25[0-5]|1?[0-9]{1,2})(\\.(25[0-5]|1?[0-9]{1,2})){3}",
        1 => pick(&["[::1]", "[fe80::AB:1]", "[2001:DB8:0:0::1]", "[::ffff:10.0.0.1]"]),
        1 => pick(&["xn--bcher-kva.example", "Contoso.COM", "a-b.c-d.example"]),
        1 => "[a-zA-Z0-9-]{1,8}(\\.[a-zA-Z0-9-]{0,8}){0,3}",
        1 => pick(&["contoso.com.", "bücher.example", "", "[1::2::3]", "10.0.0", "[::1"]),
    ];
    let sip = (
            prop_oneof![4 => pick(&["sip:", "SIP:", "sips:", "SiPs:"]), 1 => pick(&["sipx:", "mailto:", ""])],
            user,
            prop_oneof![6 => pick(&["@"]), 1 => pick(&[":pw@", "", "@@"])],
            host,
            prop_oneof![
                6 => pick(&["", "", "", ";user=phone", ";USER=Phone"]),
                1 => pick(&[";transport=tcp", ":5060", "?subject=x", ";lr", ";user=phone;lr"]),
            ],
        )
            .prop_map(|(s, u, a, h, p)| format!("{s}{u}{a}{h}{p}"));
    prop_oneof![2 => tel, 3 => sip, 1 => any::<String>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn parsing_never_panics_on_arbitrary_input(raw in any::<String>(), max in 0usize..100) {
        let _ = Target::parse(&raw, max);
        let _ = Contact::parse_uri(&raw);
    }

    #[test]
    fn every_accepted_target_reparses_from_its_normal_form_to_itself(raw in grammar_like()) {
        if let Ok(t) = Target::parse(&raw, 80) {
            let normal = t.to_string();
            prop_assert_eq!(Target::parse(&normal, usize::MAX), Ok(t.clone()));
            if let Target::Contact(c) = &t {
                let scheme = if c.secure() { "sips:" } else { "sip:" };
                let rest = normal.strip_prefix(scheme).unwrap_or_default();
                prop_assert_eq!(rest.trim_end_matches(USER_PHONE), c.address());
                prop_assert_eq!(Contact::parse_uri(&normal), Ok(c.clone()));
            }
        }
    }

    #[test]
    fn escaping_every_user_character_does_not_change_the_contact(raw in grammar_like()) {
        if let Ok(Target::Contact(c)) = Target::parse(&raw, 80) {
            let escaped: String = c.user().bytes().map(percent_encode_byte).collect();
            let respelled = format!(
                "{}:{escaped}@{}{}",
                if c.secure() { "SIPS" } else { "SIP" },
                c.host().to_string().to_uppercase(),
                if c.to_string().ends_with(USER_PHONE) { ";User=Phone" } else { "" },
            );
            prop_assert_eq!(Contact::parse_uri(&respelled), Ok(c));
        }
    }
}
