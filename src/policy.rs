//! The compiled policy: which organisation a request belongs to, and whether a [`Target`] may be
//! rung. Every lookup costs the same whatever the size of the lists: numbers walk a digit trie,
//! patterns run as one multi-pattern regex, domains and exact URIs are hash lookups.

use std::collections::HashMap;
use std::fmt;

use regex_automata::meta;
use regex_automata::Input;

// Keys are the operator's and requests only look them up, so no request can crowd a bucket
// (what std's keyed SipHash guards against); FxHash costs under an instruction a byte.
use crate::iis::host;
use crate::target::{Contact, Number, Phone, SipHost, Target};
use rustc_hash::FxHashMap as FastMap;

/// Rules compiled from one configuration.
#[derive(Debug)]
pub struct Policy {
    max_target_length: usize,
    global_deny: RuleSet,
    organisations: Vec<Organisation>,
    exact_hosts: FastMap<Box<str>, usize>,
    /// `*.contoso.com` is stored as `contoso.com`.
    wildcard_hosts: FastMap<Box<str>, usize>,
    default_organisation: Option<usize>,
    /// The mode of requests that resolve to no organisation, and of organisations without one.
    mode: Mode,
}

/// Whether the target rules' refusals are enforced, or only recorded (SPEC §12): an
/// organisation is brought in front of a live pool in shadow, and moved to enforce once its
/// `shadow_deny` lines show the lists are right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = ();

    fn from_str(s: &str) -> Result<Mode, ()> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "shadow" => Ok(Mode::Shadow),
            _ => Err(()),
        }
    }
}

/// One tenant: its name (a metric label), its own allow and deny lists, and its mode.
#[derive(Debug)]
pub struct Organisation {
    name: Box<str>,
    allow: RuleSet,
    deny: RuleSet,
    /// Its own; `None` takes the policy's.
    own_mode: Option<Mode>,
    mode: Mode,
    /// Its place in [`Policy::organisations`], which per-organisation state is indexed by.
    index: usize,
}

impl Organisation {
    pub(crate) fn new(
        name: String,
        allow: RuleSet,
        deny: RuleSet,
        own_mode: Option<Mode>,
    ) -> Organisation {
        Organisation {
            name: name.into(),
            allow,
            deny,
            own_mode,
            mode: Mode::Enforce,
            index: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn index(&self) -> usize {
        self.index
    }
}

/// Whether a scope's lists permit or forbid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Allow,
    /// Deny lists compare a SIP user part case-insensitively, so that case cannot dodge them.
    Deny,
}

/// The lists of one scope as written in the configuration, each with its key name.
pub(crate) struct Lists<'a> {
    pub kind: Kind,
    pub numbers: (&'static str, &'a [String]),
    pub number_patterns: (&'static str, &'a [String]),
    pub sip_domains: (&'static str, &'a [String]),
    pub sip_uris: (&'static str, &'a [String]),
}

/// Number prefixes, number patterns, SIP domains and exact SIP URIs of one scope.
#[derive(Debug)]
pub struct RuleSet {
    scope: Box<str>,
    numbers: PrefixTrie,
    numbers_key: &'static str,
    patterns: Option<Patterns>,
    patterns_key: &'static str,
    domains: Domains,
    domains_key: &'static str,
    uris: HashMap<Box<str>, UriEntry>,
    uris_key: &'static str,
    uri_entries: Vec<Box<str>>,
    /// Exact URIs are keyed in lower case (deny lists).
    fold_uris: bool,
}

#[derive(Debug, Clone, Copy)]
struct UriEntry {
    index: usize,
    /// A `sips:` entry matches only `sips:`; a `sip:` entry matches both.
    secure_only: bool,
}

/// Which configured entry decided, for the audit trail and `eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule<'p> {
    /// `policy` for the global lists, else the organisation's name.
    pub scope: &'p str,
    pub list: &'static str,
    pub entry: &'p str,
    /// The second entry of the same scope that had to allow too: a SIP contact whose user part
    /// is a number is allowed by a number rule *and* a SIP-domain rule.
    pub and: Option<(&'static str, &'p str)>,
}

impl fmt::Display for Rule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} {}", self.scope, self.list, self.entry)?;
        if let Some((list, entry)) = self.and {
            write!(f, " and {}.{list} {entry}", self.scope)?;
        }
        Ok(())
    }
}

/// Why a target was refused; each maps to one metric reason and one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No allow rule matched (default deny).
    NotAllowed,
    /// A deny rule matched.
    Denied,
    /// The request's host belongs to no organisation and there is no default.
    NoOrganisation,
    /// A SIP user part that is a local number, not permitted by an exact URI.
    Malformed,
}

/// The outcome of judging one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    pub refusal: Option<DenyReason>,
    pub rule: Option<Rule<'p>>,
}

impl Decision<'_> {
    pub fn allowed(&self) -> bool {
        self.refusal.is_none()
    }

    /// The metric and audit reason: `allowed`, `not_allowed`, `denied`, `no_organisation`, `malformed`.
    pub fn reason(&self) -> &'static str {
        match self.refusal {
            None => "allowed",
            Some(DenyReason::NotAllowed) => "not_allowed",
            Some(DenyReason::Denied) => "denied",
            Some(DenyReason::NoOrganisation) => "no_organisation",
            Some(DenyReason::Malformed) => "malformed",
        }
    }
}

/// Where building a policy reports a list entry it refuses or doubts, at the entry's key path
/// (`organisations[2].allow_numbers[0]`); the configuration collects them with its own problems.
pub(crate) trait Report {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>);
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>);

    /// The path of entry `index` of a scope's `list`: `{scope_key}.{list}[{index}]`, unless the
    /// configuration knows better (an entry read from a list file is reported at its line).
    fn entry_path(&self, scope_key: &str, list: &str, index: usize) -> String {
        format!("{scope_key}.{list}[{index}]")
    }
}

impl Policy {
    pub(crate) fn build(
        p: &mut impl Report,
        max_target_length: usize,
        global_deny: RuleSet,
        mut organisations: Vec<Organisation>,
        hosts: &[Vec<String>],
        default_organisation: Option<&str>,
        mode: Mode,
    ) -> Policy {
        for (index, o) in organisations.iter_mut().enumerate() {
            o.index = index;
            o.mode = o.own_mode.unwrap_or(mode);
        }
        let mut exact_hosts = FastMap::default();
        let mut wildcard_hosts = FastMap::default();
        for (i, list) in hosts.iter().enumerate() {
            for (j, h) in list.iter().enumerate() {
                let key = format!("organisations[{i}].hosts[{j}]");
                let (wild, name) = match h.strip_prefix("*.") {
                    Some(rest) => (true, rest),
                    None => (false, h.as_str()),
                };
                let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
                if !valid_host(&name) {
                    p.error(
                        key,
                        format!("`{h}` is not a host name, `*.domain` or IP literal"),
                    );
                    continue;
                }
                let map = if wild {
                    &mut wildcard_hosts
                } else {
                    &mut exact_hosts
                };
                if let Some(other) = map.insert(name.into_boxed_str(), i) {
                    p.error(
                        key,
                        format!("`{h}` is already claimed by organisations[{other}]"),
                    );
                }
            }
        }
        let default_organisation = default_organisation.and_then(|d| {
            let found = organisations.iter().position(|o| &*o.name == d);
            if found.is_none() {
                p.error(
                    "policy.default_organisation",
                    format!("no organisation is named `{d}`"),
                );
            }
            found
        });
        let mut seen = HashMap::new();
        for (i, o) in organisations.iter().enumerate() {
            if let Some(first) = seen.insert(o.name.clone(), i) {
                p.error(
                    format!("organisations[{i}].name"),
                    format!("`{}` is also the name of organisations[{first}]", o.name),
                );
            }
        }
        Policy {
            max_target_length,
            global_deny,
            organisations,
            exact_hosts,
            wildcard_hosts,
            default_organisation,
            mode,
        }
    }

    /// The mode a request of `organisation` (or of none) is judged in.
    pub fn mode_for(&self, organisation: Option<&Organisation>) -> Mode {
        organisation.map_or(self.mode, Organisation::mode)
    }

    pub fn max_target_length(&self) -> usize {
        self.max_target_length
    }

    pub fn organisations(&self) -> &[Organisation] {
        &self.organisations
    }

    pub fn organisation_named(&self, name: &str) -> Option<&Organisation> {
        self.organisations.iter().find(|o| &*o.name == name)
    }

    /// The organisation of a request's Host (port and a trailing dot ignored, case-insensitive):
    /// an exact host, else the most specific `*.domain`, else the default.
    pub fn organisation_for(&self, host: &str) -> Option<&Organisation> {
        let mut buf = [0u8; 255];
        let index = host::match_key(host, &mut buf).and_then(|h| {
            if let Some(&i) = self.exact_hosts.get(h) {
                return Some(i);
            }
            let mut rest = h;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(&i) = self.wildcard_hosts.get(rest) {
                    return Some(i);
                }
            }
            None
        });
        index
            .or(self.default_organisation)
            .map(|i| &self.organisations[i])
    }

    /// Global deny, then organisation deny, then organisation allow, then default deny.
    pub fn decide<'p>(&'p self, org: Option<&'p Organisation>, target: &Target) -> Decision<'p> {
        if let Some(rule) = self.global_deny.denies(target) {
            return refuse(DenyReason::Denied, Some(rule));
        }
        let Some(org) = org else {
            return refuse(DenyReason::NoOrganisation, None);
        };
        if let Some(rule) = org.deny.denies(target) {
            return refuse(DenyReason::Denied, Some(rule));
        }
        if let Some(rule) = org.allow.allows(target) {
            return Decision {
                refusal: None,
                rule: Some(rule),
            };
        }
        let local = matches!(target, Target::Contact(c) if c.phone() == Phone::Local);
        refuse(
            if local {
                DenyReason::Malformed
            } else {
                DenyReason::NotAllowed
            },
            None,
        )
    }

    /// Rule counts for `check-config`.
    /// How many organisations, and allow and deny entries in all (global deny included).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let allow = self.organisations.iter().map(|o| o.allow.len()).sum();
        let deny = self.global_deny.len()
            + self
                .organisations
                .iter()
                .map(|o| o.deny.len())
                .sum::<usize>();
        (self.organisations.len(), allow, deny)
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "max target length: {}\nmode: {}\nglobal deny: {}\norganisations: {}{}\n",
            self.max_target_length,
            self.mode.label(),
            self.global_deny.counts(),
            self.organisations.len(),
            match self.default_organisation {
                Some(i) => format!(" (default: {})", self.organisations[i].name),
                None => " (no default: unknown hosts are denied)".into(),
            }
        );
        for o in &self.organisations {
            s.push_str(&format!(
                "  {} ({}): allow {}; deny {}\n",
                o.name,
                o.mode.label(),
                o.allow.counts(),
                o.deny.counts()
            ));
        }
        s
    }
}

fn refuse(refusal: DenyReason, rule: Option<Rule<'_>>) -> Decision<'_> {
    Decision {
        refusal: Some(refusal),
        rule,
    }
}

/// Numbers as unlike as numbers get: an allow pattern that matches them all (`.*`, `^\+`)
/// matches every number, which is worth a warning.
const ANY_NUMBERS: [&str; 5] = [
    "+1",
    "+12025550100",
    "+442071234567",
    "+8613800138000",
    "+999999999999999",
];

impl RuleSet {
    pub(crate) fn build(
        p: &mut impl Report,
        scope_key: &str,
        scope_name: &str,
        lists: Lists<'_>,
    ) -> RuleSet {
        let (numbers_key, numbers) = lists.numbers;
        let mut trie = PrefixTrie::default();
        for (i, n) in numbers.iter().enumerate() {
            match Number::parse_prefix(n) {
                Some(prefix) => trie.insert(&prefix, n),
                None => p.error(
                    p.entry_path(scope_key, numbers_key, i),
                    format!("`{n}` is not `+` followed by 1-15 digits"),
                ),
            }
        }
        let (patterns_key, patterns) = lists.number_patterns;
        let mut valid = true;
        for (i, pat) in patterns.iter().enumerate() {
            match regex::Regex::new(pat) {
                Ok(re)
                    if lists.kind == Kind::Allow && ANY_NUMBERS.iter().all(|n| re.is_match(n)) =>
                {
                    p.warn(
                        p.entry_path(scope_key, patterns_key, i),
                        format!("`{pat}` matches every number: it allows them all"),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    p.error(
                        p.entry_path(scope_key, patterns_key, i),
                        format!("invalid regex: {}", one_line(&e.to_string())),
                    );
                    valid = false;
                }
            }
        }
        let patterns = if valid && !patterns.is_empty() {
            // A lazy-DFA cache too small for the set makes every search fall back to the slow
            // engine: 16-80 ms per number at 100,000 patterns with the default, ~0.2-2 µs with
            // this limit (benches/decide.rs). The cache grows only as far as a set needs.
            let config = meta::Regex::config()
                .nfa_size_limit(Some(1 << 28))
                .hybrid_cache_capacity(1 << 28);
            match meta::Builder::new().configure(config).build_many(patterns) {
                Ok(regex) => Some(Patterns {
                    regex,
                    texts: patterns.iter().map(|p| p.as_str().into()).collect(),
                }),
                Err(e) => {
                    p.error(
                        format!("{scope_key}.{patterns_key}"),
                        format!("cannot compile: {e}"),
                    );
                    None
                }
            }
        } else {
            None
        };
        let (domains_key, domain_list) = lists.sip_domains;
        let mut domains = Domains::default();
        for (i, d) in domain_list.iter().enumerate() {
            if !domains.insert(d) {
                p.error(
                    p.entry_path(scope_key, domains_key, i),
                    format!("`{d}` is not a domain or `*.domain`"),
                );
            }
        }
        let (uris_key, uri_list) = lists.sip_uris;
        let fold_uris = lists.kind == Kind::Deny;
        let mut uris = HashMap::new();
        for (i, u) in uri_list.iter().enumerate() {
            match Contact::parse_uri(u) {
                Ok(c) => {
                    let entry = UriEntry {
                        index: i,
                        secure_only: c.secure(),
                    };
                    let address = if fold_uris {
                        c.address().to_ascii_lowercase()
                    } else {
                        c.address().to_owned()
                    };
                    uris.entry(address.into_boxed_str())
                        .and_modify(|e: &mut UriEntry| e.secure_only &= entry.secure_only)
                        .or_insert(entry);
                }
                Err(e) => p.error(
                    p.entry_path(scope_key, uris_key, i),
                    format!("`{u}` is not a SIP URI: {e}"),
                ),
            }
        }
        RuleSet {
            scope: scope_name.into(),
            numbers: trie,
            numbers_key,
            patterns,
            patterns_key,
            domains,
            domains_key,
            uris,
            uris_key,
            uri_entries: uri_list.iter().map(|u| u.as_str().into()).collect(),
            fold_uris,
        }
    }

    /// How many entries the set's lists hold in all.
    fn len(&self) -> usize {
        self.numbers.entries.len()
            + self.patterns.as_ref().map_or(0, |p| p.texts.len())
            + self.domains.entries.len()
            + self.uri_entries.len()
    }

    fn counts(&self) -> String {
        format!(
            "{} number prefixes, {} patterns, {} SIP domains, {} SIP URIs",
            self.numbers.entries.len(),
            self.patterns.as_ref().map_or(0, |p| p.texts.len()),
            self.domains.entries.len(),
            self.uri_entries.len()
        )
    }

    fn rule<'p>(&'p self, list: &'static str, entry: &'p str) -> Rule<'p> {
        Rule {
            scope: &self.scope,
            list,
            entry,
            and: None,
        }
    }

    /// A deny rule that matches any part of the target: for a contact, its exact URI, its host's
    /// domain, or the number its user part is (so neither can be dodged with the other).
    fn denies(&self, target: &Target) -> Option<Rule<'_>> {
        match target {
            Target::Number(n) => self.number(n),
            Target::Contact(c) => self
                .uri(c)
                .or_else(|| match c.phone() {
                    Phone::Global(n) => self.number(&n),
                    Phone::Local | Phone::NotPhone => None,
                })
                .or_else(|| self.domain(c)),
        }
    }

    /// Allow rules that cover the whole target: an exact URI alone; else a contact whose user
    /// part is a number needs a number rule and a domain rule, since SIP routes on the host; a
    /// local number (digits without `+`) needs its exact URI; other contacts need their domain.
    fn allows(&self, target: &Target) -> Option<Rule<'_>> {
        let c = match target {
            Target::Number(n) => return self.number(n),
            Target::Contact(c) => c,
        };
        if let Some(rule) = self.uri(c) {
            return Some(rule);
        }
        match c.phone() {
            Phone::Global(n) => {
                let number = self.number(&n)?;
                let domain = self.domain(c)?;
                Some(Rule {
                    and: Some((domain.list, domain.entry)),
                    ..number
                })
            }
            Phone::Local => None,
            Phone::NotPhone => self.domain(c),
        }
    }

    fn number(&self, n: &Number) -> Option<Rule<'_>> {
        if let Some(entry) = self.numbers.longest_prefix(n) {
            return Some(self.rule(self.numbers_key, entry));
        }
        let patterns = self.patterns.as_ref()?;
        let mut buf = [0u8; 16];
        let text = n.plus_digit_bytes(&mut buf);
        // One search answers both "does any pattern match" and "which one", so a hit costs the
        // same as a miss whatever the number of patterns.
        let hit = patterns.regex.search(&Input::new(text))?;
        let entry = patterns.texts.get(hit.pattern().as_usize())?;
        Some(self.rule(self.patterns_key, entry))
    }

    /// The exact-URI entry for a contact; a `sips:` entry matches only `sips:`.
    fn uri(&self, c: &Contact) -> Option<Rule<'_>> {
        if self.uris.is_empty() {
            return None;
        }
        let folded;
        let address = if self.fold_uris {
            folded = c.address().to_ascii_lowercase();
            folded.as_str()
        } else {
            c.address()
        };
        let e = self.uris.get(address)?;
        (c.secure() || !e.secure_only).then(|| self.rule(self.uris_key, &self.uri_entries[e.index]))
    }

    /// The SIP-domain entry for a contact's host; an IP-literal host has none.
    fn domain(&self, c: &Contact) -> Option<Rule<'_>> {
        match c.host() {
            SipHost::Domain(d) => self
                .domains
                .find(d)
                .map(|entry| self.rule(self.domains_key, entry)),
            SipHost::Ipv4(_) | SipHost::Ipv6(_) => None,
        }
    }
}

/// Number patterns compiled into one multi-pattern regex, with their text for the audit trail.
#[derive(Debug)]
struct Patterns {
    regex: meta::Regex,
    texts: Vec<Box<str>>,
}

/// E.164 prefixes as a digit trie: a lookup walks at most 15 nodes.
#[derive(Debug, Default)]
struct PrefixTrie {
    /// Node 0 is the root; a child index of 0 means "none".
    nodes: Vec<([u32; 10], Option<u32>)>,
    entries: Vec<Box<str>>,
}

impl PrefixTrie {
    fn insert(&mut self, prefix: &Number, entry: &str) {
        if self.nodes.is_empty() {
            self.nodes.push(([0; 10], None));
        }
        let mut node = 0usize;
        for d in prefix.digits().bytes() {
            let slot = usize::from(d - b'0');
            let next = self.nodes[node].0[slot];
            node = if next == 0 {
                let fresh = self.nodes.len();
                self.nodes.push(([0; 10], None));
                self.nodes[node].0[slot] = fresh as u32;
                fresh
            } else {
                next as usize
            };
        }
        if self.nodes[node].1.is_none() {
            self.nodes[node].1 = Some(self.entries.len() as u32);
        }
        self.entries.push(entry.into());
    }

    fn longest_prefix(&self, n: &Number) -> Option<&str> {
        let mut node = self.nodes.first()?;
        let mut best = None;
        for &d in n.digit_bytes() {
            let next = node.0[usize::from(d - b'0')];
            if next == 0 {
                break;
            }
            node = &self.nodes[next as usize];
            best = node.1.or(best);
        }
        best.map(|i| &*self.entries[i as usize])
    }
}

/// SIP domains: `contoso.com` exactly, `*.contoso.com` any subdomain (not the domain itself).
#[derive(Debug, Default)]
struct Domains {
    exact: HashMap<Box<str>, usize>,
    wildcard: HashMap<Box<str>, usize>,
    entries: Vec<Box<str>>,
}

impl Domains {
    fn insert(&mut self, entry: &str) -> bool {
        let (wild, name) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        let name = name.to_ascii_lowercase();
        if !host::is_domain(&name) {
            return false;
        }
        let map = if wild {
            &mut self.wildcard
        } else {
            &mut self.exact
        };
        map.entry(name.into_boxed_str())
            .or_insert(self.entries.len());
        self.entries.push(entry.into());
        true
    }

    fn find(&self, domain: &str) -> Option<&str> {
        if let Some(&i) = self.exact.get(domain) {
            return Some(&self.entries[i]);
        }
        let mut rest = domain;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(&i) = self.wildcard.get(rest) {
                return Some(&self.entries[i]);
            }
        }
        None
    }
}

fn valid_host(name: &str) -> bool {
    host::is_domain(name)
        || name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Regex errors span lines with a caret diagram; a problem list wants one line each.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
