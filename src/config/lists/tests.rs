use super::*;

fn entries(text: &str, comments: Comments) -> Vec<(u32, String)> {
    let p = parse(text, comments);
    p.lines.into_iter().zip(p.entries).collect()
}

fn e(items: &[(u32, &str)]) -> Vec<(u32, String)> {
    items.iter().map(|&(l, s)| (l, s.to_owned())).collect()
}

#[test]
fn blank_lines_and_whole_line_comments_are_skipped_and_lines_counted() {
    let text = "# exported 2024-05-01\n\n+1425555\n   # indented comment\n\t+44207  \n\n";
    assert_eq!(
        entries(text, Comments::Trailing),
        e(&[(3, "+1425555"), (5, "+44207")])
    );
}

#[test]
fn a_trailing_comment_follows_white_space() {
    let text = "+1425555 # helpdesk\n+44207\t#london\nsip:a@b.com #x # y\n";
    assert_eq!(
        entries(text, Comments::Trailing),
        e(&[(1, "+1425555"), (2, "+44207"), (3, "sip:a@b.com")])
    );
    // Without white space before it, `#` is part of the entry (which policy then refuses).
    assert_eq!(entries("+1#2\n", Comments::Trailing), e(&[(1, "+1#2")]));
}

#[test]
fn a_pattern_may_contain_a_hash() {
    let text = "# patterns\n^\\+1425 #[0-9]+$\n(?x) ^\\+44 # comment in the regex\n";
    assert_eq!(
        entries(text, Comments::WholeLine),
        e(&[
            (2, "^\\+1425 #[0-9]+$"),
            (3, "(?x) ^\\+44 # comment in the regex")
        ])
    );
}

#[test]
fn crlf_and_a_byte_order_mark_are_accepted() {
    let text = "\u{feff}+1425555\r\n# c\r\n\r\n+44207 # x\r\n+353";
    assert_eq!(
        entries(text, Comments::Trailing),
        e(&[(1, "+1425555"), (4, "+44207"), (5, "+353")])
    );
    assert_eq!(
        entries("\u{feff}# only a comment\r\n", Comments::Trailing),
        e(&[])
    );
}

#[test]
fn inner_white_space_stays_for_policy_to_refuse() {
    assert_eq!(
        entries("  +1 425  \n", Comments::Trailing),
        e(&[(1, "+1 425")])
    );
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.txt");
    std::fs::write(&path, b"+1\n+2\n+3\xff\n").unwrap();
    match read(&path) {
        Err(FileError::NotUtf8 { line: 3 }) => {}
        other => panic!("{other:?}"),
    }
}

/// Fresh eyes, issue 14, E: with CR-only line ends the whole file was one line, so a leading
/// comment emptied a deny list; a CR not followed by LF is refused at its line.
#[test]
fn a_carriage_return_without_a_line_feed_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.txt");
    std::fs::write(&path, b"+1\r\n+2\n# premium\r+1900\r+44870\r").unwrap();
    match read(&path) {
        Err(FileError::BareCr { line: 3 }) => {}
        other => panic!("{other:?}"),
    }
    std::fs::write(&path, b"+1\r\n+2\r\n").unwrap();
    assert!(read(&path).is_ok(), "CRLF is fine");
}

#[test]
fn a_file_larger_than_the_bound_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.txt");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(MAX_FILE_BYTES as u64 + 1).unwrap();
    assert!(matches!(read(&path), Err(FileError::TooLarge { .. })));
    f.set_len(MAX_FILE_BYTES as u64).unwrap();
    assert!(read(&path).is_ok(), "16 MiB of NULs is UTF-8 and allowed");
}

// ---- list files in a configuration ----

use crate::config::{Config, ConfigError, Problem};
use crate::target::Target;

/// A configuration file in a directory of its own, with list files beside it.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }

    fn write(&self, name: &str, text: impl AsRef<[u8]>) -> &Dir {
        let path = self.0.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// Loads `ringfence.toml` with `org` and `policy` keys added.
    fn load(&self, policy: &str, org: &str) -> Result<Config, ConfigError> {
        self.write(
            "ringfence.toml",
            format!(
                "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nmembers = [\"http://127.0.0.1:1\"]\n\
                 [policy]\ndefault_organisation = \"c\"\n{policy}\n\
                 [[organisations]]\nname = \"c\"\n{org}\n"
            ),
        );
        Config::load(&self.0.path().join("ringfence.toml"))
    }
}

fn problems(result: Result<Config, ConfigError>) -> Vec<Problem> {
    match result {
        Err(e) => e.problems(),
        Ok(_) => panic!("accepted"),
    }
}

fn reason(config: &Config, target: &str) -> &'static str {
    let policy = config.policy();
    let t = Target::parse(target, 80).unwrap();
    policy.decide(policy.organisation_for("any"), &t).reason()
}

#[test]
fn a_files_entries_follow_the_inline_ones() {
    let dir = Dir::new();
    dir.write(
        "lists/contoso.txt",
        "\u{feff}# directory export\r\n+14255550100\r\n+1206555 # seattle office\r\n",
    )
    .write("deny.txt", "+1425555019\n")
    .write("patterns.txt", "^\\+33[0-9]{9}$\n")
    .write("domains.txt", "*.partner.example\n")
    .write("uris.txt", "sip:ops@10.0.0.1\n");
    let config = dir
        .load(
            "deny_numbers_file = \"deny.txt\"",
            "allow_numbers = [\"+44207\"]\nallow_numbers_file = \"lists/contoso.txt\"\n\
             allow_number_patterns_file = \"patterns.txt\"\nallow_sip_domains_file = \"domains.txt\"\n\
             allow_sip_uris_file = \"uris.txt\"",
        )
        .unwrap();
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert!(
        config.summary().contains(
            "c (enforce): allow 3 number prefixes, 1 patterns, 1 SIP domains, 1 SIP URIs; deny 0 number"
        ),
        "{}",
        config.summary()
    );
    assert_eq!(config.counts().deny_entries, 1);
    for (target, expected) in [
        ("tel:+442071234567", "allowed"),
        ("tel:+14255550100", "allowed"),
        ("tel:+12065550123", "allowed"),
        ("tel:+33123456789", "allowed"),
        ("sip:a@b.partner.example", "allowed"),
        ("sip:ops@10.0.0.1", "allowed"),
        ("tel:+14255550101", "not_allowed"),
        ("tel:+14255550190", "denied"),
    ] {
        assert_eq!(reason(&config, target), expected, "{target}");
    }
}

#[test]
fn a_bad_line_is_reported_at_its_file_and_line_with_the_inline_message() {
    let dir = Dir::new();
    dir.write("lists/contoso.txt", "+1425555\n\n# x\n+1 425\n")
        .write("p.txt", "# patterns\n\n(unclosed # not a comment here\n")
        .write("d.txt", "not a domain\n")
        .write("u.txt", "ok # fine\nsip:a@b.com\nmailto:x\n")
        .write("g.txt", "1900\n");
    let found = problems(dir.load(
        "deny_numbers_file = \"g.txt\"",
        "allow_numbers = [\"nonsense\"]\nallow_numbers_file = \"lists/contoso.txt\"\n\
         deny_number_patterns_file = \"p.txt\"\ndeny_sip_domains_file = \"d.txt\"\n\
         allow_sip_uris_file = \"u.txt\"",
    ));
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    for expected in [
        "policy.deny_numbers_file: g.txt:1: `1900` is not `+` followed by 1-15 digits",
        "organisations[0].allow_numbers[0]: `nonsense` is not `+` followed by 1-15 digits",
        "organisations[0].allow_numbers_file: lists/contoso.txt:4: `+1 425` is not `+` followed by 1-15 digits",
        "organisations[0].deny_number_patterns_file: p.txt:3: invalid regex",
        "organisations[0].deny_sip_domains_file: d.txt:1: `not a domain` is not a domain",
        "organisations[0].allow_sip_uris_file: u.txt:1: `ok` is not a SIP URI",
        "organisations[0].allow_sip_uris_file: u.txt:3: `mailto:x` is not a SIP URI",
    ] {
        assert!(
            shown.iter().any(|s| s.starts_with(expected)),
            "`{expected}` in {shown:#?}"
        );
    }
    assert_eq!(shown.len(), 7, "{shown:#?}");
}

#[test]
fn a_file_that_cannot_be_read_is_an_error_at_its_key() {
    let dir = Dir::new();
    dir.write("bad.txt", b"+1425\n\xff\n");
    let found = problems(dir.load(
        "deny_sip_uris_file = \"missing.txt\"",
        "allow_numbers_file = \"bad.txt\"",
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].path, "policy.deny_sip_uris_file");
    assert!(
        found[0].message.starts_with("cannot read ") && found[0].message.contains("missing.txt"),
        "{found:?}"
    );
    assert_eq!(
        found[1].to_string(),
        "organisations[0].allow_numbers_file: bad.txt:2: not UTF-8 text"
    );
}

#[test]
fn a_broad_number_in_a_file_is_warned_of_at_its_line() {
    let dir = Dir::new();
    dir.write("allow.txt", "+1425555\n+44 # all of the UK\n");
    let config = dir
        .load(
            "",
            "allow_numbers = [\"+1\"]\nallow_numbers_file = \"allow.txt\"",
        )
        .unwrap();
    let warnings: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "organisations[0].allow_numbers[0]: allows every number in +1 (as broad as a whole country code)",
            "organisations[0].allow_numbers_file: allow.txt:2: allows every number in +44 (as broad as a whole country code)",
        ]
    );
}

#[test]
fn the_hash_covers_the_list_files() {
    let dir = Dir::new();
    let org = "allow_numbers_file = \"allow.txt\"";
    dir.write("allow.txt", "+1425555\n");
    let first = dir.load("", org).unwrap();
    let again = dir.load("", org).unwrap();
    assert_eq!(first.hash(), again.hash());
    dir.write("allow.txt", "+1425555\n+1206\n");
    let changed = dir.load("", org).unwrap();
    assert_ne!(first.hash(), changed.hash(), "only the list file changed");
    // Without list files the hash is what it was before list files existed: text and variables.
    let plain = dir.load("", "").unwrap();
    let text = std::fs::read_to_string(dir.0.path().join("ringfence.toml")).unwrap();
    assert_eq!(
        plain.hash(),
        &*crate::config::content_hash(&text, &[], std::iter::empty())
    );
}

#[test]
fn an_environment_override_names_a_list_file() {
    let dir = Dir::new();
    dir.write("allow.txt", "+1206\n+1 206\n");
    let path = dir.0.path().join("allow.txt").display().to_string();
    let text =
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nmembers = [\"http://127.0.0.1:1\"]\n\
                [[organisations]]\nname = \"c\"\n";
    let var = "RINGFENCE__ORGANISATIONS__0__ALLOW_NUMBERS_FILE";
    let found = match Config::from_toml_with(text, &[(var, path.clone())]) {
        Err(e) => e.problems(),
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(
        found[0].path,
        format!("organisations[0].allow_numbers_file: {path}:2 (from {var})")
    );
    dir.write("allow.txt", "+1206\n");
    let config = Config::from_toml_with(text, &[(var, path)]).unwrap();
    assert!(
        config
            .summary()
            .contains("c (enforce): allow 1 number prefixes"),
        "{}",
        config.summary()
    );
}
