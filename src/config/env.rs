//! `RINGFENCE__SECTION__KEY` environment overrides, as a `config` source.
//!
//! `config::Environment` cannot do what an operator needs: it parses `+1900` as the integer 1900,
//! splits lists only for keys named one by one, and maps `ORGANISATIONS__0__NAME` to a table key
//! `0` that replaces the organisations array. Here a variable's name is read against the file's
//! shape instead: `__` separates keys, a segment of digits indexes an array (`organisations[0]`),
//! a list-valued key ([`LIST_KEYS`]) takes a comma-separated value, and every other value is a
//! string that the typed fields convert (`"32768"`, `"true"`). Each override remembers its
//! variable, so a problem it causes names it.

use ::config::{Map, Source, Value, ValueKind};

use super::Problem;

/// Every list-valued key; `[]` stands for an array index. `tests` checks it against the example
/// configuration, which shows every key.
pub(super) const LIST_KEYS: &[&str] = &[
    "server.listen",
    "server.trusted_proxies",
    "upstream.members",
    "policy.deny_numbers",
    "policy.deny_number_patterns",
    "policy.deny_sip_domains",
    "policy.deny_sip_uris",
    "organisations[].hosts",
    "organisations[].allow_numbers",
    "organisations[].allow_number_patterns",
    "organisations[].deny_numbers",
    "organisations[].deny_number_patterns",
    "organisations[].allow_sip_domains",
    "organisations[].deny_sip_domains",
    "organisations[].allow_sip_uris",
    "organisations[].deny_sip_uris",
];

/// The variable prefix, compared without case as `config::Environment` does.
const PREFIX: &str = "ringfence__";

/// One variable and the key it sets, e.g. `organisations[0].allow_numbers`.
#[derive(Debug, Clone)]
struct Override {
    key: String,
    var: String,
    value: String,
}

/// The overrides in effect for one load.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides(Vec<Override>);

impl Overrides {
    /// The process environment's `RINGFENCE__*` variables.
    pub(crate) fn from_env() -> Overrides {
        Overrides::from_vars(std::env::vars_os().filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            Some((name, value.to_string_lossy().into_owned()))
        }))
    }

    /// Overrides from `(name, value)` pairs; names without the prefix are ignored.
    pub(crate) fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Overrides {
        let mut overrides: Vec<Override> = vars
            .into_iter()
            .filter_map(|(var, value)| {
                let lower = var.to_ascii_lowercase();
                let rest = lower.strip_prefix(PREFIX)?;
                Some(Override {
                    key: key_path(rest),
                    var,
                    value,
                })
            })
            .collect();
        // Deterministic: a table set after one of its keys would replace it.
        overrides.sort_by(|a, b| a.key.cmp(&b.key));
        Overrides(overrides)
    }

    /// Names the variable behind each problem about a key it set: `policy.deny_numbers[0]`
    /// becomes `policy.deny_numbers[0] (from RINGFENCE__POLICY__DENY_NUMBERS)`.
    pub(super) fn attribute(&self, problems: &mut [Problem]) {
        for problem in problems {
            let from = self.0.iter().find(|o| {
                within(&problem.path, &o.key)
                    || ((problem.path.ends_with(']') || problem.message == "unknown key")
                        && within(&o.key, &problem.path))
            });
            if let Some(o) = from {
                problem.path = format!("{} (from {})", problem.path, o.var);
            }
        }
    }
}

impl Overrides {
    /// Array entries an override skipped to: `RINGFENCE__ORGANISATIONS__3__NAME` over a file
    /// with one organisation would leave two empty ones.
    pub(super) fn gaps(&self, loaded: &::config::Config) -> Vec<Problem> {
        let mut problems = Vec::new();
        for o in &self.0 {
            for (at, _) in o.key.match_indices('[') {
                let array = &o.key[..at];
                let Ok(value) = loaded.get::<Value>(array) else {
                    continue;
                };
                let ValueKind::Array(items) = value.kind else {
                    continue;
                };
                if let Some(first) = items.iter().position(|v| matches!(v.kind, ValueKind::Nil)) {
                    let end = o.key[at..].find(']').map_or(o.key.len(), |i| at + i + 1);
                    problems.push(Problem {
                        path: o.key[..end].to_owned(),
                        message: format!(
                            "no such entry: an override can change the file's entries or add \
                             the next one ({array}[{first}])"
                        ),
                    });
                    break;
                }
            }
        }
        problems.dedup();
        problems
    }
}

/// `key` is `parent` or lies inside it (`parent[0]`, `parent.x`, a list file's line
/// `parent: lists/a.txt:3`).
fn within(key: &str, parent: &str) -> bool {
    key.strip_prefix(parent).is_some_and(|rest| {
        rest.is_empty() || rest.starts_with('[') || rest.starts_with('.') || rest.starts_with(": ")
    })
}

/// `organisations__0__allow_numbers` → `organisations[0].allow_numbers`.
fn key_path(rest: &str) -> String {
    let mut key = String::with_capacity(rest.len());
    for segment in rest.split("__") {
        if !key.is_empty() && !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            key.push('[');
            key.push_str(segment);
            key.push(']');
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

/// A key's shape with its indexes left out: `organisations[0].hosts` → `organisations[].hosts`.
fn shape(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

impl Source for Overrides {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, ::config::ConfigError> {
        Ok(self
            .0
            .iter()
            .map(|o| {
                let origin = Some(&o.var);
                let kind = if LIST_KEYS.contains(&shape(&o.key).as_str()) {
                    ValueKind::Array(
                        o.value
                            .split(',')
                            .map(str::trim)
                            .filter(|item| !item.is_empty())
                            .map(|item| Value::new(origin, ValueKind::String(item.into())))
                            .collect(),
                    )
                } else {
                    ValueKind::String(o.value.clone())
                };
                (o.key.clone(), Value::new(origin, kind))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_become_key_paths_with_indexes() {
        assert_eq!(key_path("policy__deny_numbers"), "policy.deny_numbers");
        assert_eq!(
            key_path("organisations__0__allow_numbers"),
            "organisations[0].allow_numbers"
        );
        assert_eq!(key_path("guard__1__required"), "guard[1].required");
        assert_eq!(key_path("server__tls__cert"), "server.tls.cert");
        assert_eq!(shape("organisations[12].hosts"), "organisations[].hosts");
    }

    /// Every list in the example configuration (which shows every key) is in [`LIST_KEYS`],
    /// and every entry of [`LIST_KEYS`] is a list there.
    #[test]
    fn list_keys_are_the_lists_of_the_example_configuration() {
        fn walk(prefix: &str, value: &Value, lists: &mut Vec<String>) {
            match &value.kind {
                ValueKind::Table(map) => {
                    for (k, v) in map {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&key, v, lists);
                    }
                }
                ValueKind::Array(items) => match items.first().map(|v| &v.kind) {
                    Some(ValueKind::Table(_)) => {
                        for item in items {
                            walk(&format!("{prefix}[]"), item, lists);
                        }
                    }
                    _ => lists.push(prefix.to_owned()),
                },
                _ => {}
            }
        }
        let example = include_str!("../../config/ringfence.example.toml");
        let loaded = ::config::Config::builder()
            .add_source(::config::File::from_str(
                example,
                ::config::FileFormat::Toml,
            ))
            .build()
            .unwrap();
        let mut lists = Vec::new();
        for (k, v) in loaded.collect().unwrap() {
            walk(&k, &v, &mut lists);
        }
        lists.sort();
        lists.dedup();
        let mut expected: Vec<String> = LIST_KEYS.iter().map(|k| (*k).to_owned()).collect();
        expected.sort();
        assert_eq!(lists, expected);
    }
}
