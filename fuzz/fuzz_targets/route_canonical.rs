//! `canonical_path` and `classify` on arbitrary UTF-8: canonicalisation is idempotent when it
//! succeeds, classification never panics, and a path classified `Guarded` is still `Guarded`
//! (the same guard) once canonicalised.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringfence::route::{canonical_path, classify, Guards, Route};

fn guards() -> &'static Guards {
    static GUARDS: OnceLock<Guards> = OnceLock::new();
    GUARDS.get_or_init(|| Guards::new(Guards::defaults()))
}

fuzz_target!(|raw: &str| {
    let guards = guards();
    let route = classify(raw, guards);
    let canonical = match canonical_path(raw) {
        Ok(canonical) => canonical,
        Err(_) => {
            // Undecodable paths are refused or passed through, never routed to a guard.
            assert!(
                matches!(route, Route::BadPath | Route::Passthrough(_)),
                "{raw:?}: not canonicalisable yet routed as {route:?}"
            );
            return;
        }
    };
    assert!(canonical.starts_with('/'), "{raw:?} -> {canonical:?}");
    assert!(!canonical.contains('%'), "{raw:?} -> {canonical:?}");
    let twice = canonical_path(&canonical);
    assert_eq!(
        twice.as_deref(),
        Ok(&*canonical),
        "{raw:?}: canonical form {canonical:?} is not a fixed point"
    );
    // Classification depends only on the canonical form.
    let again = classify(&canonical, guards);
    match (&route, &again) {
        (Route::Guarded(a), Route::Guarded(b)) => assert_eq!(a, b, "{raw:?}"),
        (Route::Guarded(_), _) => {
            panic!("{raw:?} is {route:?} but its canonical form {canonical:?} is {again:?}")
        }
        _ => assert_eq!(route, again, "{raw:?} vs canonical {canonical:?}"),
    }
    assert_ne!(
        route,
        Route::BadPath,
        "{raw:?}: canonicalisable yet BadPath"
    );
});
