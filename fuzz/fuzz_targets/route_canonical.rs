//! The path readings and `classify` on arbitrary UTF-8: every reading has no `%` and no
//! cookieless segment left and is read again as itself (a fixed point of canonicalisation unless
//! it keeps a `;`); a path that cannot be canonicalised is never routed to a guard; and a path
//! `classify` passes through has no reading that is itself guarded or a batch.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringfence::iis::path::{canonical, is_cookieless_segment, readings};
use ringfence::route::{classify, Guards, Route};

fn guards() -> &'static Guards {
    static GUARDS: OnceLock<Guards> = OnceLock::new();
    GUARDS.get_or_init(|| Guards::new(Guards::defaults()))
}

fuzz_target!(|raw: &str| {
    let guards = guards();
    let route = classify(raw, guards);
    if canonical(raw).is_err() {
        // Undecodable paths are refused or passed through, never routed to a guard.
        assert!(
            matches!(route, Route::BadPath | Route::Passthrough),
            "{raw:?}: not canonicalisable yet routed as {route:?}"
        );
    }
    for reading in readings(raw).into_iter().flatten() {
        assert!(reading.starts_with('/'), "{raw:?} -> {reading:?}");
        assert!(!reading.contains('%'), "{raw:?} -> {reading:?}");
        assert!(
            !reading.split('/').any(is_cookieless_segment),
            "{raw:?} -> {reading:?} keeps a cookieless segment"
        );
        // A reading is read again as itself: the canonical splitting's readings are fixed
        // points of `canonical`, the others (`;` kept) are among their own readings.
        let again = readings(&reading);
        assert!(
            again.iter().flatten().any(|r| *r == *reading),
            "{raw:?}: reading {reading:?} is not among its own readings {again:?}"
        );
        if !reading.contains(';') {
            assert_eq!(
                canonical(&reading).as_deref(),
                Ok(&*reading),
                "{raw:?}: reading {reading:?} is not a fixed point"
            );
        }
        if route == Route::Passthrough {
            let again = classify(&reading, guards);
            assert!(
                matches!(again, Route::Passthrough | Route::BadPath),
                "{raw:?} passes through, yet its reading {reading:?} is {again:?}"
            );
        }
    }
});
