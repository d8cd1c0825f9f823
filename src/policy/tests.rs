use crate::config::Config;
use crate::target::Target;

const TOML: &str = r#"
[server]
listen = ["127.0.0.1:0"]
[upstream]
members = ["http://127.0.0.1:1"]
[policy]
default_organisation = "contoso"
deny_numbers = ["+1900"]
deny_number_patterns = ['^\+88']
deny_sip_domains = ["evil.example"]
[[organisations]]
name = "contoso"
hosts = ["lyncweb.contoso.com", "*.contoso.com", "*.emea.contoso.com", "[::1]"]
allow_numbers = ["+1425", "+14255550100"]
allow_number_patterns = ['^\+1206[0-9]{7}$']
deny_numbers = ["+14259"]
allow_sip_domains = ["contoso.com", "*.partner.example"]
allow_sip_uris = ["sip:helpdesk@fabrikam.com", "sips:secure@fabrikam.com", "sip:5550100@pbx.contoso.com", "sip:ops@10.0.0.1", "sip:+33123456789@gw.fabrikam.com"]
deny_sip_uris = ["sip:CEO@contoso.com"]
[[organisations]]
name = "emea"
hosts = ["lync.emea.contoso.com"]
allow_numbers = ["+44"]
"#;

fn judge(host: &str, target: &str) -> (String, &'static str, Option<String>) {
    let config = Config::from_toml(TOML).unwrap();
    let policy = &config.policy;
    let org = policy.organisation_for(host);
    let t = Target::parse(target, 80).unwrap();
    let d = policy.decide(org, &t);
    (
        org.map_or("none", |o| o.name()).to_owned(),
        d.reason(),
        d.rule.map(|r| r.to_string()),
    )
}

#[test]
fn rules_apply_in_order_global_deny_org_deny_org_allow_default_deny() {
    let cases = [
        (
            "tel:+14255550199",
            "allowed",
            Some("contoso.allow_numbers +1425"),
        ),
        (
            "tel:+14255550100",
            "allowed",
            Some("contoso.allow_numbers +14255550100"),
        ),
        (
            "tel:+14259999999",
            "denied",
            Some("contoso.deny_numbers +14259"),
        ),
        (
            "tel:+19005550100",
            "denied",
            Some("policy.deny_numbers +1900"),
        ),
        (
            "tel:+8812345",
            "denied",
            Some(r"policy.deny_number_patterns ^\+88"),
        ),
        (
            "tel:+12065550100",
            "allowed",
            Some(r"contoso.allow_number_patterns ^\+1206[0-9]{7}$"),
        ),
        ("tel:+120655501000", "not_allowed", None),
        ("tel:+33123456789", "not_allowed", None),
        (
            "sip:jane@contoso.com",
            "allowed",
            Some("contoso.allow_sip_domains contoso.com"),
        ),
        ("sip:jane@sub.contoso.com", "not_allowed", None),
        (
            "sip:jane@a.partner.example",
            "allowed",
            Some("contoso.allow_sip_domains *.partner.example"),
        ),
        (
            "sip:jane@a.b.partner.example",
            "allowed",
            Some("contoso.allow_sip_domains *.partner.example"),
        ),
        ("sip:jane@partner.example", "not_allowed", None),
        (
            "sip:x@evil.example",
            "denied",
            Some("policy.deny_sip_domains evil.example"),
        ),
        (
            "sip:helpdesk@fabrikam.com",
            "allowed",
            Some("contoso.allow_sip_uris sip:helpdesk@fabrikam.com"),
        ),
        (
            "sips:helpdesk@fabrikam.com",
            "allowed",
            Some("contoso.allow_sip_uris sip:helpdesk@fabrikam.com"),
        ),
        ("sip:Helpdesk@fabrikam.com", "not_allowed", None),
        (
            "sips:secure@fabrikam.com",
            "allowed",
            Some("contoso.allow_sip_uris sips:secure@fabrikam.com"),
        ),
        ("sip:secure@fabrikam.com", "not_allowed", None),
        (
            "sip:CEO@contoso.com",
            "denied",
            Some("contoso.deny_sip_uris sip:CEO@contoso.com"),
        ),
        (
            "sip:ops@10.0.0.1",
            "allowed",
            Some("contoso.allow_sip_uris sip:ops@10.0.0.1"),
        ),
        ("sip:other@10.0.0.1", "not_allowed", None),
        (
            "sip:ceo@contoso.com",
            "denied",
            Some("contoso.deny_sip_uris sip:CEO@contoso.com"),
        ),
        (
            "sip:%43eo@contoso.com",
            "denied",
            Some("contoso.deny_sip_uris sip:CEO@contoso.com"),
        ),
        (
            "sips:cEo@contoso.com",
            "denied",
            Some("contoso.deny_sip_uris sip:CEO@contoso.com"),
        ),
        (
            "sip:+19005550100@contoso.com;user=phone",
            "denied",
            Some("policy.deny_numbers +1900"),
        ),
        (
            "sip:+14255550199@contoso.com",
            "allowed",
            Some("contoso.allow_numbers +1425 and contoso.allow_sip_domains contoso.com"),
        ),
        (
            "sip:+14255550199@a.partner.example;user=phone",
            "allowed",
            Some("contoso.allow_numbers +1425 and contoso.allow_sip_domains *.partner.example"),
        ),
        ("sip:+33123456789@contoso.com", "not_allowed", None),
        // SIP routes on the host: an allowed number at a foreign host is not allowed.
        (
            "sip:+14255550199@evil2.example;user=phone",
            "not_allowed",
            None,
        ),
        ("sip:+14255550199@fabrikam.com", "not_allowed", None),
        ("sip:+14255550199@10.0.0.1;user=phone", "not_allowed", None),
        ("sip:+14255550199@[2001:db8::1]", "not_allowed", None),
        (
            "sip:+14255550199@evil.example;user=phone",
            "denied",
            Some("policy.deny_sip_domains evil.example"),
        ),
        ("sip:+1-425-555-0199@sub.evil.example", "not_allowed", None),
        // An exact URI alone allows, whatever the number lists say.
        (
            "sip:+33123456789@gw.fabrikam.com",
            "allowed",
            Some("contoso.allow_sip_uris sip:+33123456789@gw.fabrikam.com"),
        ),
        (
            "sip:+33123456789@gw.fabrikam.com;user=phone",
            "allowed",
            Some("contoso.allow_sip_uris sip:+33123456789@gw.fabrikam.com"),
        ),
        ("sip:+33123456780@gw.fabrikam.com", "not_allowed", None),
        (
            "sip:5550100@pbx.contoso.com",
            "allowed",
            Some("contoso.allow_sip_uris sip:5550100@pbx.contoso.com"),
        ),
        ("sip:5550101@contoso.com", "malformed", None),
    ];
    for (target, reason, rule) in cases {
        let (_, got, got_rule) = judge("lyncweb.contoso.com", target);
        assert_eq!((got, got_rule.as_deref()), (reason, rule), "{target}");
    }
}

#[test]
fn the_organisation_is_resolved_by_exact_host_then_deepest_wildcard_then_default() {
    let cases = [
        ("lyncweb.contoso.com", "contoso"),
        ("LYNCWEB.contoso.COM:443", "contoso"),
        ("lyncweb.contoso.com.", "contoso"),
        ("lync.emea.contoso.com", "emea"),
        ("a.emea.contoso.com", "contoso"),
        ("a.contoso.com", "contoso"),
        ("contoso.com", "contoso"),
        ("[::1]:8443", "contoso"),
        ("unknown.example", "contoso"),
        ("", "contoso"),
    ];
    for (host, org) in cases {
        assert_eq!(judge(host, "tel:+1425").0, org, "{host}");
    }
}

#[test]
fn without_a_default_an_unknown_host_has_no_organisation_but_global_deny_still_wins() {
    let config =
        Config::from_toml(&TOML.replace("default_organisation = \"contoso\"\n", "")).unwrap();
    let policy = &config.policy;
    assert!(policy.organisation_for("unknown.example").is_none());
    let allowed = Target::parse("tel:+1425", 80).unwrap();
    assert_eq!(policy.decide(None, &allowed).reason(), "no_organisation");
    let denied = Target::parse("tel:+1900", 80).unwrap();
    assert_eq!(policy.decide(None, &denied).reason(), "denied");
}

#[test]
fn the_longest_matching_prefix_is_reported() {
    let (_, _, rule) = judge("lyncweb.contoso.com", "tel:+14255550100");
    assert_eq!(rule.as_deref(), Some("contoso.allow_numbers +14255550100"));
}
