use super::*;

const SEC: u64 = 1_000_000_000;

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

fn settings(per_user: Option<&str>, per_org: Option<&str>) -> RateLimitSettings {
    RateLimitSettings {
        per_user: per_user.map(rate),
        per_organisation: per_org.map(rate),
        max_users: DEFAULT_MAX_USERS,
    }
}

fn one_org(s: &RateLimitSettings) -> Limiter {
    Limiter::new(s, [("contoso", RateLimitOverrides::default())])
}

const ORG: Option<OrgIndex> = Some(OrgIndex(0));

#[test]
fn rates_parse_and_display() {
    let ok = [
        ("10/min", 10, Per::Minute, "10/min"),
        ("1/s", 1, Per::Second, "1/s"),
        ("5/sec", 5, Per::Second, "5/s"),
        ("600/h", 600, Per::Hour, "600/h"),
        ("7/hour", 7, Per::Hour, "7/h"),
        (" 10 / MIN ", 10, Per::Minute, "10/min"),
        ("4294967295/h", u32::MAX, Per::Hour, "4294967295/h"),
        ("1000000000/s", 1_000_000_000, Per::Second, "1000000000/s"),
    ];
    for (text, count, per, shown) in ok {
        let r = rate(text);
        assert_eq!((r.count(), r.per()), (count, per), "{text}");
        assert_eq!(r.to_string(), shown, "{text}");
        assert_eq!(rate(shown), r, "{text} round trip");
    }
    let bad = [
        ("", RateError::Shape(String::new())),
        ("10", RateError::Shape("10".into())),
        ("10/", RateError::Shape("10/".into())),
        ("/min", RateError::Shape("/min".into())),
        ("0/min", RateError::Zero),
        ("-1/min", RateError::Count("-1".into())),
        ("+1/min", RateError::Count("+1".into())),
        ("1.5/min", RateError::Count("1.5".into())),
        ("ten/min", RateError::Count("ten".into())),
        ("4294967296/min", RateError::Count("4294967296".into())),
        (
            "99999999999999999999/s",
            RateError::Count("99999999999999999999".into()),
        ),
        ("10/day", RateError::Unit("day".into())),
        ("10/m", RateError::Unit("m".into())),
        ("10/min/s", RateError::Unit("min/s".into())),
        ("1000000001/s", RateError::TooFast("1000000001/s".into())),
    ];
    for (text, err) in bad {
        assert_eq!(text.parse::<Rate>(), Err(err), "{text:?}");
    }
    // The message says what to write.
    let msg = "0/min".parse::<Rate>().unwrap_err().to_string();
    assert!(msg.contains("leave the key out"), "{msg}");
    let msg = "10/day".parse::<Rate>().unwrap_err().to_string();
    assert!(msg.contains("s, sec, min, h or hour"), "{msg}");
}

#[test]
fn a_full_bucket_allows_exactly_count_then_refills_one_per_interval() {
    let g = Gcra::of(rate("10/min"));
    let b = Bucket::default();
    let t0 = 1_000 * SEC;
    for i in 0..10 {
        assert_eq!(b.take(g, 1, t0), Ok(()), "token {i}");
    }
    // The 11th: one token comes back 6 s later.
    assert_eq!(b.take(g, 1, t0), Err(Duration::from_secs(6)));
    assert_eq!(b.take(g, 1, t0 + 2 * SEC), Err(Duration::from_secs(4)));
    assert_eq!(b.take(g, 1, t0 + 6 * SEC - 1), Err(Duration::from_nanos(1)));
    assert_eq!(b.take(g, 1, t0 + 6 * SEC), Ok(()));
    assert!(b.take(g, 1, t0 + 6 * SEC).is_err());
    // A minute idle: full again, and no more than full.
    let t1 = t0 + 6 * SEC + 3600 * SEC;
    for _ in 0..10 {
        assert_eq!(b.take(g, 1, t1), Ok(()));
    }
    assert!(b.take(g, 1, t1).is_err());
}

#[test]
fn refused_takes_cost_nothing() {
    let g = Gcra::of(rate("2/s"));
    let b = Bucket::default();
    b.take(g, 2, 0).unwrap();
    for _ in 0..100 {
        assert!(b.take(g, 1, 0).is_err());
    }
    assert_eq!(b.take(g, 1, SEC / 2), Ok(()));
}

#[test]
fn a_cost_takes_that_many_tokens_and_waits_for_all_of_them() {
    let g = Gcra::of(rate("10/min"));
    let b = Bucket::default();
    assert_eq!(b.take(g, 4, 0), Ok(()));
    assert_eq!(b.take(g, 4, 0), Ok(()));
    // 2 left; 4 more needs 2 back: 12 s.
    assert_eq!(b.take(g, 4, 0), Err(Duration::from_secs(12)));
    assert_eq!(b.take(g, 2, 0), Ok(()));
    assert_eq!(b.take(g, 0, 0), Ok(()), "a cost of 0 takes nothing");
    // More than the bucket holds: never, so the full window.
    let fresh = Bucket::default();
    assert_eq!(fresh.take(g, 11, 0), Err(Duration::from_secs(60)));
    assert_eq!(fresh.take(g, u32::MAX, 0), Err(Duration::from_secs(60)));
    assert_eq!(fresh.take(g, 10, 0), Ok(()), "a refusal took nothing");
}

#[test]
fn uneven_windows_still_allow_exactly_count() {
    let g = Gcra::of(rate("7/min"));
    let b = Bucket::default();
    for _ in 0..7 {
        b.take(g, 1, 5).unwrap();
    }
    let wait = b.take(g, 1, 5).unwrap_err();
    assert_eq!(wait, Duration::from_nanos(60 * SEC / 7));
}

#[test]
fn many_threads_on_one_key_get_exactly_count() {
    let limiter = one_org(&settings(Some("1000/h"), None));
    let oks = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..1_000 {
                    if limiter
                        .check_at(Some("sip:alice@contoso.com"), ORG, 1, 42)
                        .is_ok()
                    {
                        oks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(oks.into_inner(), 1_000);
    assert_eq!(limiter.users(), 1);
}

#[test]
fn on_the_real_clock_a_burst_gets_count() {
    // One token comes back every 6 s: the burst's few microseconds cannot see one.
    let limiter = one_org(&settings(Some("10/min"), None));
    let oks = (0..50)
        .filter(|_| limiter.check(Some("app:1"), ORG, 1).is_ok())
        .count();
    assert_eq!(oks, 10);
    let limited = limiter.check(Some("app:1"), ORG, 1).unwrap_err();
    assert_eq!(limited.scope, Scope::User);
    // Up to 6 s, less what the burst took (a loaded machine may pause it a while).
    assert!(limited.retry_after <= Duration::from_secs(6));
    assert!(limited.retry_after > Duration::from_secs(2));
    assert!((3..=6).contains(&limited.retry_after_secs()));
    // Another user has their own bucket.
    assert_eq!(limiter.check(Some("app:2"), ORG, 1), Ok(()));
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    let l = |ms| Limited {
        scope: Scope::User,
        retry_after: Duration::from_millis(ms),
    };
    assert_eq!(l(0).retry_after_secs(), 1);
    assert_eq!(l(1).retry_after_secs(), 1);
    assert_eq!(l(1000).retry_after_secs(), 1);
    assert_eq!(l(1001).retry_after_secs(), 2);
    assert_eq!(l(60_000).retry_after_secs(), 60);
}

#[test]
fn an_organisation_refusal_gives_the_users_tokens_back() {
    let limiter = one_org(&settings(Some("3/min"), Some("4/min")));
    for user in ["app:a", "app:a", "app:b", "app:b"] {
        limiter.check_at(Some(user), ORG, 1, 0).unwrap();
    }
    // The organisation is out; app:c's try costs app:c nothing.
    for _ in 0..5 {
        let e = limiter.check_at(Some("app:c"), ORG, 1, 0).unwrap_err();
        assert_eq!(e.scope, Scope::Organisation);
        assert_eq!(e.retry_after, Duration::from_secs(15));
    }
    // 45 s on, the organisation has 3 back, and app:c its full 3.
    for _ in 0..3 {
        limiter.check_at(Some("app:c"), ORG, 1, 45 * SEC).unwrap();
    }
    let e = limiter
        .check_at(Some("app:c"), ORG, 1, 45 * SEC)
        .unwrap_err();
    assert_eq!(e.scope, Scope::User);
}

#[test]
fn a_user_refusal_spends_none_of_the_organisations_tokens() {
    let limiter = one_org(&settings(Some("1/min"), Some("3/min")));
    limiter.check_at(Some("app:a"), ORG, 1, 0).unwrap();
    for _ in 0..10 {
        let e = limiter.check_at(Some("app:a"), ORG, 1, 0).unwrap_err();
        assert_eq!(e.scope, Scope::User);
    }
    limiter.check_at(Some("app:b"), ORG, 1, 0).unwrap();
    limiter.check_at(None, ORG, 1, 0).unwrap();
    let e = limiter.check_at(None, ORG, 1, 0).unwrap_err();
    assert_eq!(e.scope, Scope::Organisation);
}

#[test]
fn organisations_override_the_defaults() {
    let s = settings(Some("1/min"), Some("100/min"));
    let limiter = Limiter::new(
        &s,
        [
            ("contoso", RateLimitOverrides::default()),
            (
                "fabrikam",
                RateLimitOverrides {
                    per_user: Some(rate("3/min")),
                    per_organisation: Some(rate("2/min")),
                },
            ),
        ],
    );
    let fabrikam = limiter.organisation("fabrikam");
    assert_eq!(fabrikam, Some(OrgIndex(1)));
    assert_eq!(limiter.organisation("nobody"), None);
    // contoso: 1 per user.
    limiter.check_at(Some("u1"), ORG, 1, 0).unwrap();
    assert!(limiter.check_at(Some("u1"), ORG, 1, 0).is_err());
    // fabrikam: 3 per user, but 2 for the whole organisation.
    limiter.check_at(Some("u2"), fabrikam, 2, 0).unwrap();
    let e = limiter.check_at(Some("u2"), fabrikam, 1, 0).unwrap_err();
    assert_eq!(e.scope, Scope::Organisation);
    // No organisation: the default per-user rate, no organisation bucket.
    limiter.check_at(Some("u3"), None, 1, 0).unwrap();
    assert_eq!(
        limiter.check_at(Some("u3"), None, 1, 0).unwrap_err().scope,
        Scope::User
    );
}

#[test]
fn no_rates_no_limits_and_no_map() {
    let limiter = one_org(&RateLimitSettings::default());
    for _ in 0..1_000 {
        limiter.check_at(Some("app:1"), ORG, 100, 0).unwrap();
    }
    assert_eq!(limiter.users(), 0);
}

#[test]
fn the_user_map_stays_within_max_users() {
    let s = RateLimitSettings {
        max_users: 1_000,
        ..settings(Some("10/min"), None)
    };
    let limiter = one_org(&s);
    let mut key = String::new();
    for i in 0..200_000u32 {
        use std::fmt::Write as _;
        key.clear();
        let _ = write!(key, "app:{i}");
        limiter.check_at(Some(&key), ORG, 1, 0).unwrap();
    }
    let n = limiter.users();
    assert!(n <= 1_000, "{n} users tracked");
    assert!(n > 0);
}

#[test]
fn a_reload_keeps_what_was_counted() {
    let s = settings(Some("2/min"), Some("3/min"));
    let old = one_org(&s);
    old.check_at(Some("app:1"), ORG, 2, 0).unwrap();
    old.check_at(None, ORG, 1, 0).unwrap();
    // Same bounds: the map is shared.
    let next = old.reconfigured(&s, [("contoso", RateLimitOverrides::default())]);
    assert_eq!(
        next.check_at(Some("app:1"), ORG, 1, 0).unwrap_err().scope,
        Scope::User
    );
    assert_eq!(
        next.check_at(None, ORG, 1, 0).unwrap_err().scope,
        Scope::Organisation
    );
    // Other bounds: copied. Organisations follow their name, not their position.
    let bigger = RateLimitSettings { max_users: 10, ..s };
    let moved = old.reconfigured(
        &bigger,
        [
            ("fabrikam", RateLimitOverrides::default()),
            ("contoso", RateLimitOverrides::default()),
        ],
    );
    let contoso = moved.organisation("contoso");
    assert!(moved.check_at(Some("app:1"), contoso, 1, 0).is_err());
    assert_eq!(
        moved.check_at(None, contoso, 1, 0).unwrap_err().scope,
        Scope::Organisation
    );
    moved
        .check_at(None, moved.organisation("fabrikam"), 3, 0)
        .unwrap();
}
