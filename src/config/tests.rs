use super::*;

const BASE: &str = r#"
[server]
listen = ["127.0.0.1:8443"]
[upstream]
members = ["http://127.0.0.1:1"]
[[organisations]]
name = "c"
allow_numbers = ["+1425"]
"#;

fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    Config::build(text, Some(env::Overrides::from_vars(vars)), None, &[])
}

fn paths(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

/// A request's tried set is a 128-bit mask: more members would alias (issue 13).
#[test]
fn a_pool_has_at_most_128_members() {
    let members = |n: usize| {
        let list: Vec<String> = (0..n)
            .map(|i| format!("\"http://10.0.{}.{}:80\"", i / 256, i % 256))
            .collect();
        BASE.replace(
            "members = [\"http://127.0.0.1:1\"]",
            &format!("members = [{}]", list.join(", ")),
        )
    };
    assert!(Config::from_toml(&members(128)).is_ok());
    match Config::from_toml(&members(129)) {
        Err(ConfigError::Invalid(problems)) => {
            assert_eq!(paths(&problems), ["upstream.members"], "{problems:?}");
            assert!(problems[0].message.contains("at most 128"), "{problems:?}");
        }
        other => panic!("129 members accepted: {other:?}"),
    }
}

#[test]
fn the_idle_pool_is_bounded_by_default_and_configurable() {
    let config = Config::from_toml(BASE).unwrap();
    assert_eq!(config.upstream().max_idle_per_member, 256);
    assert_eq!(config.upstream().idle_timeout, Duration::from_secs(60));
    let text = BASE.replace(
        "members = [\"http://127.0.0.1:1\"]",
        "members = [\"http://127.0.0.1:1\"]\nmax_idle_per_member = 0\nidle_timeout = \"5s\"",
    );
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(config.upstream().max_idle_per_member, 0);
    assert_eq!(config.upstream().idle_timeout, Duration::from_secs(5));
    let zero = BASE.replace(
        "members = [\"http://127.0.0.1:1\"]",
        "members = [\"http://127.0.0.1:1\"]\nidle_timeout = \"0s\"",
    );
    match Config::from_toml(&zero) {
        Err(ConfigError::Invalid(problems)) => {
            assert_eq!(paths(&problems), ["upstream.idle_timeout"], "{problems:?}");
        }
        other => panic!("a zero idle timeout accepted: {other:?}"),
    }
}

#[test]
fn environment_overrides_set_lists_comma_separated_with_their_plus_kept() {
    let config = with_env(
        BASE,
        &[
            ("RINGFENCE__POLICY__DENY_NUMBERS", "+1900, +44870"),
            ("RINGFENCE__SERVER__LISTEN", "127.0.0.1:1,127.0.0.1:2"),
            ("RINGFENCE__ORGANISATIONS__0__ALLOW_NUMBERS", "+1206"),
            ("RINGFENCE__ORGANISATIONS__0__HOSTS", "a.example"),
            ("RINGFENCE__SERVER__MAX_BODY_BYTES", "1024"),
            ("RINGFENCE__SERVER__HTTP2", "false"),
            ("OTHER__POLICY__DENY_NUMBERS", "x"),
        ],
    )
    .unwrap();
    assert!(config
        .policy
        .summary()
        .contains("global deny: 2 number prefixes"));
    assert_eq!(config.server.listen.len(), 2);
    assert_eq!(config.server.max_body_bytes, 1024);
    assert!(!config.server.http2);
    let org = config.policy.organisation_for("a.example").unwrap();
    assert_eq!(org.name(), "c");
    let one = with_env(BASE, &[("RINGFENCE__POLICY__DENY_NUMBERS", "+1900")]).unwrap();
    assert!(one
        .policy
        .summary()
        .contains("global deny: 1 number prefixes"));
}

#[test]
fn a_problem_from_the_environment_names_its_variable() {
    let e = with_env(
        BASE,
        &[
            ("RINGFENCE__POLICY__DENY_NUMBERS", "1900"),
            ("RINGFENCE__ORGANISATIONS__0__ALLOW_NUMBERS", "+1,x"),
            ("RINGFENCE__POLICY__NOPE", "1"),
        ],
    )
    .unwrap_err();
    let problems = e.problems();
    let found = paths(&problems);
    for wanted in [
        "policy.deny_numbers[0] (from RINGFENCE__POLICY__DENY_NUMBERS)",
        "organisations[0].allow_numbers[1] (from RINGFENCE__ORGANISATIONS__0__ALLOW_NUMBERS)",
        "policy.nope (from RINGFENCE__POLICY__NOPE)",
    ] {
        assert!(found.contains(&wanted), "{wanted} in {found:?}");
    }
    let e = with_env(BASE, &[("RINGFENCE__SERVER__MAX_BODY_BYTES", "lots")]).unwrap_err();
    assert_eq!(
        paths(&e.problems()),
        ["server.max_body_bytes (from RINGFENCE__SERVER__MAX_BODY_BYTES)"]
    );
    let e = with_env(BASE, &[("RINGFENCE__ORGANISATIONS__2__NAME", "x")]).unwrap_err();
    assert_eq!(
        paths(&e.problems()),
        ["organisations[2] (from RINGFENCE__ORGANISATIONS__2__NAME)"]
    );
    // Fresh-eyes round 4 (F6): a type error inside an array entry, and a whole section
    // unknown, name their variables too.
    let with_guard =
        format!("{BASE}\n[[guard]]\nresource = \"changeNumber\"\nparameter = \"number\"\n");
    let e = with_env(&with_guard, &[("RINGFENCE__GUARD__0__REQUIRED", "maybe")]).unwrap_err();
    assert_eq!(
        paths(&e.problems()),
        ["guard[0].required (from RINGFENCE__GUARD__0__REQUIRED)"]
    );
    let e = with_env(BASE, &[("RINGFENCE__BOGUS__X", "1")]).unwrap_err();
    assert_eq!(paths(&e.problems()), ["bogus (from RINGFENCE__BOGUS__X)"]);
}

#[test]
fn an_override_can_add_the_next_array_entry() {
    let config = with_env(
        BASE,
        &[
            ("RINGFENCE__ORGANISATIONS__1__NAME", "f"),
            ("RINGFENCE__ORGANISATIONS__1__HOSTS", "f.example,g.example"),
        ],
    )
    .unwrap();
    assert_eq!(config.policy.organisations().len(), 2);
    assert_eq!(
        config
            .policy
            .organisation_for("g.example")
            .map(|o| o.name()),
        Some("f")
    );
}

fn warnings(text: &str) -> Vec<String> {
    Config::from_toml(text)
        .unwrap()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_listen_address_given_twice_is_bound_once_with_a_warning() {
    let text = BASE.replace(
            r#"listen = ["127.0.0.1:8443"]"#,
            r#"listen = ["127.0.0.1:8443", "[::1]:8443", "127.0.0.1:8443", "127.0.0.1:0", "127.0.0.1:0"]"#,
        );
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(config.server.listen.len(), 4, "{:?}", config.server.listen);
    assert!(warnings(&text)
        .contains(&"server.listen[2]: `127.0.0.1:8443` is listed twice; it is bound once".into()));
}

#[test]
fn proxy_protocol_is_for_every_listener_or_those_named() {
    let two = BASE.replace(
        r#"listen = ["127.0.0.1:8443"]"#,
        r#"listen = ["127.0.0.1:8443", "127.0.0.1:8444"]"#,
    );
    let a: SocketAddr = "127.0.0.1:8443".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:8444".parse().unwrap();
    let expecting = |text: &str, vars: &[(&str, &str)]| {
        let config = with_env(text, vars).unwrap();
        [a, b].map(|l| config.server.expects_proxy_header(l))
    };
    assert_eq!(expecting(&two, &[]), [false, false], "off by default");
    let all = two.replace(
        "[upstream]",
        "proxy_protocol = true
[upstream]",
    );
    assert_eq!(expecting(&all, &[]), [true, true]);
    let one = two.replace(
        "[upstream]",
        "proxy_protocol = [\"127.0.0.1:8444\"]\n[upstream]",
    );
    assert_eq!(expecting(&one, &[]), [false, true]);
    let summary = with_env(&one, &[]).unwrap().summary();
    assert!(
        summary.starts_with("listeners: 127.0.0.1:8443, 127.0.0.1:8444 with PROXY protocol ("),
        "{summary}"
    );
    let env = |value| [("RINGFENCE__SERVER__PROXY_PROTOCOL", value)];
    assert_eq!(expecting(&two, &env("true")), [true, true]);
    assert_eq!(expecting(&all, &env("false")), [false, false]);
    assert_eq!(expecting(&two, &env("127.0.0.1:8443")), [true, false]);
    assert_eq!(
        expecting(&two, &env("127.0.0.1:8443, 127.0.0.1:8444")),
        [true, true]
    );

    let stray = two.replace(
        "[upstream]",
        "proxy_protocol = [\"127.0.0.1:9\", \"yes\"]\n[upstream]",
    );
    let problems = Config::from_toml(&stray).unwrap_err().problems();
    assert_eq!(
        paths(&problems),
        ["server.proxy_protocol[0]", "server.proxy_protocol[1]"]
    );
    assert!(problems[0].message.contains("not one of server.listen"));
    let problems = with_env(&two, &env("yes")).unwrap_err().problems();
    assert_eq!(
        paths(&problems),
        ["server.proxy_protocol[0] (from RINGFENCE__SERVER__PROXY_PROTOCOL)"]
    );
}

#[test]
fn trusted_proxies_are_cidr_blocks_each_checked_with_its_path() {
    let text = BASE.replace(
            "[upstream]",
            "trusted_proxies = [\"10.0.0.0/8\", \"::1\", \"10.1.2.3/8\", \"lb\", \"::/129\"]\n[upstream]",
        );
    let problems = Config::from_toml(&text).unwrap_err().problems();
    assert_eq!(
        paths(&problems),
        [
            "server.trusted_proxies[2]",
            "server.trusted_proxies[3]",
            "server.trusted_proxies[4]"
        ]
    );
    assert!(
        problems[0].message.contains("did you mean `10.0.0.0/8`"),
        "{}",
        problems[0]
    );
    let config = with_env(
        BASE,
        &[("RINGFENCE__SERVER__TRUSTED_PROXIES", "10.0.0.0/8, ::1")],
    )
    .unwrap();
    let trusted = &config.server.trusted_proxies;
    assert!(trusted.contains("10.9.8.7".parse().unwrap()));
    assert!(trusted.contains("::1".parse().unwrap()));
    assert!(!trusted.contains("192.0.2.1".parse().unwrap()));
    assert!(Config::from_toml(BASE)
        .unwrap()
        .server
        .trusted_proxies
        .is_empty());
}

#[test]
fn addresses_that_cannot_both_be_bound_are_errors() {
    let text = BASE.replace(
            r#"listen = ["127.0.0.1:8443"]"#,
            "listen = [\"0.0.0.0:8443\", \"127.0.0.1:8443\", \"[::]:8443\"]\n[admin]\nlisten = \"127.0.0.1:8443\"",
        );
    let problems = Config::from_toml(&text).unwrap_err().problems();
    assert_eq!(paths(&problems), ["server.listen[1]", "admin.listen"]);
}

#[test]
fn an_allow_list_as_broad_as_a_country_code_draws_a_warning() {
    let text = BASE.replace(r#"["+1425"]"#, r#"["+1", "+44", "+353", "+1425"]"#);
    let w = warnings(&text);
    assert!(w.contains(
            &"organisations[0].allow_numbers[0]: allows every number in +1 (as broad as a whole country code)"
                .into()
        ));
    assert!(w
        .iter()
        .any(|w| w.starts_with("organisations[0].allow_numbers[1]:")));
    assert!(w
        .iter()
        .any(|w| w.starts_with("organisations[0].allow_numbers[2]:")));
    assert!(!w
        .iter()
        .any(|w| w.starts_with("organisations[0].allow_numbers[3]:")));
}

#[test]
fn an_allow_pattern_that_matches_every_number_draws_a_warning() {
    let text = BASE.replace(
        r#"allow_numbers = ["+1425"]"#,
        r#"allow_number_patterns = ['.*', '^\+', '^\+[0-9]+$', '^\+1425[0-9]{7}$']
deny_number_patterns = ['.*']"#,
    );
    let w = warnings(&text);
    for i in 0..3 {
        let at = format!("organisations[0].allow_number_patterns[{i}]:");
        assert!(w.iter().any(|w| w.starts_with(&at)), "{at} in {w:?}");
    }
    assert!(!w.iter().any(|w| w.contains("allow_number_patterns[3]")));
    assert!(!w.iter().any(|w| w.contains("deny_number_patterns")));
}

#[test]
fn the_identity_map_bounds_default_and_are_checked() {
    let config = Config::from_toml(BASE).unwrap();
    assert_eq!(config.identity, Identity::default());
    assert_eq!(config.identity.max_applications, 100_000);
    assert_eq!(config.identity.idle_expiry, Duration::from_secs(1800));
    let set = format!("{BASE}[identity]\nmax_applications = 5\nidle_expiry = \"15m\"\n");
    let config = Config::from_toml(&set).unwrap();
    assert_eq!(config.identity.max_applications, 5);
    assert_eq!(config.identity.idle_expiry, Duration::from_secs(900));
    let bad = format!("{BASE}[identity]\nmax_applications = 0\nidle_expiry = \"soon\"\n");
    let problems = Config::from_toml(&bad).unwrap_err().problems();
    assert_eq!(
        paths(&problems),
        ["identity.max_applications", "identity.idle_expiry"]
    );
}

#[test]
fn a_guard_is_required_unless_it_says_otherwise() {
    let text = format!(
            "{BASE}[[guard]]\nresource = \"changeNumber\"\nparameter = \"number\"\n\
             [[guard]]\nresource = \"makeMeAvailable\"\nparameter = \"phoneNumber\"\nrequired = false\n"
        );
    let config = Config::from_toml(&text).unwrap();
    assert!(config.guards.get("changeNumber").unwrap().required);
    assert!(!config.guards.get("makeMeAvailable").unwrap().required);
    assert!(
        config
            .guards
            .get("simultaneousRingToContact")
            .unwrap()
            .required
    );
}
