//! `Target::parse` on arbitrary UTF-8: never panics, and every accepted target's normal form
//! (its Display) parses back to an equal Target; contacts also agree with `Contact::parse_uri`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence::target::{Contact, Target};

fuzz_target!(|raw: &str| {
    let Ok(target) = Target::parse(raw, 80) else {
        // Rejected input must also be handled without panicking by the configuration parser.
        let _ = Contact::parse_uri(raw);
        return;
    };
    let normal = target.to_string();
    let reparsed = Target::parse(&normal, usize::MAX);
    assert_eq!(
        reparsed.as_ref(),
        Ok(&target),
        "{raw:?} -> {normal:?} does not re-parse to itself"
    );
    // The normal form is a fixed point.
    assert_eq!(
        reparsed.map(|t| t.to_string()).as_deref(),
        Ok(normal.as_str())
    );
    match &target {
        Target::Contact(contact) => {
            // The configured-URI grammar is the target grammar without the length limit.
            assert_eq!(
                Contact::parse_uri(raw).as_ref(),
                Ok(contact),
                "{raw:?}: parse_uri disagrees"
            );
            assert_eq!(
                Contact::parse_uri(&normal).as_ref(),
                Ok(contact),
                "{normal:?}: parse_uri disagrees on the normal form"
            );
            // The exact-URI key is the normal form without scheme and user=phone.
            let scheme = if contact.secure() { "sips:" } else { "sip:" };
            let rest = normal
                .strip_prefix(scheme)
                .expect("normal form has its scheme");
            assert_eq!(rest.trim_end_matches(";user=phone"), contact.address());
        }
        Target::Number(number) => {
            assert!(
                Contact::parse_uri(raw).is_err(),
                "{raw:?}: tel: accepted as a contact"
            );
            assert!(!number.digits().is_empty() && number.digits().len() <= 15);
            assert!(number.digits().bytes().all(|b| b.is_ascii_digit()));
        }
    }
});
