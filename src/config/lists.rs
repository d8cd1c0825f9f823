//! Policy lists kept in files beside the configuration (`allow_numbers_file = "lists/contoso.txt"`):
//! operators export thousands of numbers from their directory rather than write them inline.
//! A file's entries follow its key's inline ones, and each remembers its line, so that a problem
//! with one is reported where the operator can fix it:
//! `organisations[0].allow_numbers_file: lists/contoso.txt:12: ...`.
//!
//! Format: UTF-8 text (a leading byte-order mark is skipped, as Excel and AD exports write one),
//! one entry per line, LF or CRLF; white space around an entry is trimmed; blank lines and lines
//! whose first non-blank character is `#` are skipped. Outside pattern lists, white space then
//! `#` after an entry starts a comment too: numbers, domains and SIP URIs hold no white space, so
//! it cannot cut an entry, whereas a regex may contain ` #`.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use crate::policy::{Kind, Lists, Report};

/// Largest list file read: 16 MiB holds about a million numbers, far beyond any directory export,
/// and bounds what a mistaken path (a log, a disk image) makes every load read.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// Which comments a list's file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comments {
    /// Whole-line comments and a trailing ` #...` after an entry.
    Trailing,
    /// Whole-line comments only: a regex may contain ` #`.
    WholeLine,
}

/// A list file that cannot be used; the key it was named by is the problem's path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is larger than {} MiB, the most a list file may hold", MAX_FILE_BYTES >> 20)]
    TooLarge { path: String },
    /// At the line of the first byte that is not UTF-8.
    #[error("not UTF-8 text")]
    NotUtf8 { line: u32 },
    /// A CR not followed by LF: a file with CR-only line ends would read as one line, a comment
    /// swallowing the entries after it (fresh eyes, issue 14, E).
    #[error(
        "a carriage return not followed by a line feed (save the file with LF or CRLF line ends)"
    )]
    BareCr { line: u32 },
}

/// The entries of a list file, each with the line (from 1) it is on.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub entries: Vec<String>,
    pub lines: Vec<u32>,
}

/// The entries of a list file's text; see the module documentation for the format.
pub(crate) fn parse(text: &str, comments: Comments) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parsed = Parsed::default();
    for (n, line) in text.split('\n').enumerate() {
        let mut entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        if comments == Comments::Trailing {
            if let Some(at) = trailing_comment(entry) {
                entry = entry[..at].trim_end();
            }
        }
        parsed.entries.push(entry.to_owned());
        parsed.lines.push(u32::try_from(n + 1).unwrap_or(u32::MAX));
    }
    parsed
}

/// Where a ` #` (any white space before the `#`) starts a comment after an entry.
fn trailing_comment(entry: &str) -> Option<usize> {
    entry
        .char_indices()
        .zip(entry.chars().skip(1))
        .find(|&((_, c), next)| c.is_whitespace() && next == '#')
        .map(|((at, _), _)| at)
}

/// Reads a list file of at most [`MAX_FILE_BYTES`]: its text and its bytes' SHA-256.
fn read(path: &Path) -> Result<(String, ring::digest::Digest), FileError> {
    let shown = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| FileError::Read {
        path: shown(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Read {
            path: shown(),
            source,
        })?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge { path: shown() });
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    match String::from_utf8(bytes) {
        Ok(text) => match text
            .match_indices('\r')
            .find(|&(at, _)| !text[at + 1..].starts_with('\n'))
        {
            Some((at, _)) => Err(FileError::BareCr {
                line: u32::try_from(text[..at].matches('\n').count() + 1).unwrap_or(u32::MAX),
            }),
            None => Ok((text, digest)),
        },
        Err(e) => {
            let before = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            Err(FileError::NotUtf8 {
                line: u32::try_from(line).unwrap_or(u32::MAX),
            })
        }
    }
}

/// Reads the list files one load names, relative to the configuration's directory, and keeps
/// each one's digest for the configuration's hash (a reload that changed only a list file is a
/// change).
#[derive(Debug)]
pub(crate) struct Files<'b> {
    base_dir: Option<&'b Path>,
    /// `(key, SHA-256 of the file's bytes)`, in the order read.
    digests: Vec<(String, ring::digest::Digest)>,
}

impl<'b> Files<'b> {
    pub(crate) fn new(base_dir: Option<&'b Path>) -> Files<'b> {
        Files {
            base_dir,
            digests: Vec::new(),
        }
    }

    /// What the files read contribute to the configuration's hash.
    pub(crate) fn digests(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.digests.iter().map(|(k, d)| (k.as_str(), d.as_ref()))
    }

    /// One scope's four lists, each its inline entries then those of its `_file`, if named.
    /// `lists` are `(key, inline entries, file)` for numbers, number patterns, SIP domains
    /// and SIP URIs, in that order.
    pub(crate) fn scope<'a>(
        &mut self,
        p: &mut impl Report,
        scope_key: &str,
        kind: Kind,
        lists: [(&'static str, &'a [String], Option<&'a str>); 4],
    ) -> Scope<'a> {
        let [numbers, patterns, domains, uris] = lists.map(|(key, inline, file)| {
            let comments = if key.ends_with("_patterns") {
                Comments::WholeLine
            } else {
                Comments::Trailing
            };
            self.list(p, scope_key, key, inline, file, comments)
        });
        Scope {
            kind,
            lists: [numbers, patterns, domains, uris],
        }
    }

    fn list<'a>(
        &mut self,
        p: &mut impl Report,
        scope_key: &str,
        key: &'static str,
        inline: &'a [String],
        file: Option<&'a str>,
        comments: Comments,
    ) -> List<'a> {
        let mut list = List {
            key,
            entries: Cow::Borrowed(inline),
            inline: inline.len(),
            file: None,
        };
        let Some(shown) = file else {
            return list;
        };
        let file_key = format!("{scope_key}.{key}_file");
        let path = match self.base_dir {
            Some(b) if Path::new(shown).is_relative() => b.join(shown),
            _ => Path::new(shown).to_path_buf(),
        };
        match read(&path) {
            Ok((text, digest)) => {
                let parsed = parse(&text, comments);
                list.entries.to_mut().extend(parsed.entries);
                list.file = Some(Origin {
                    key: file_key.clone(),
                    shown,
                    lines: parsed.lines,
                });
                self.digests.push((file_key, digest));
            }
            Err(e @ (FileError::NotUtf8 { line } | FileError::BareCr { line })) => {
                p.error(format!("{file_key}: {shown}:{line}"), e.to_string())
            }
            Err(e) => p.error(file_key, e.to_string()),
        }
        list
    }
}

/// One list of a scope: its inline entries, then its file's.
#[derive(Debug)]
pub(crate) struct List<'a> {
    key: &'static str,
    entries: Cow<'a, [String]>,
    /// How many of `entries` are inline; the rest are the file's.
    inline: usize,
    file: Option<Origin<'a>>,
}

/// The file a list's later entries came from, as the configuration names it.
#[derive(Debug)]
struct Origin<'a> {
    key: String,
    shown: &'a str,
    /// The line of each of the file's entries.
    lines: Vec<u32>,
}

impl List<'_> {
    pub(crate) fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Where entry `index` was written: `{scope_key}.{key}[{index}]` inline, else the file
    /// key and `file:line`.
    fn path(&self, scope_key: &str, index: usize) -> String {
        match (index.checked_sub(self.inline), &self.file) {
            (Some(i), Some(o)) if i < o.lines.len() => {
                format!("{}: {}:{}", o.key, o.shown, o.lines[i])
            }
            _ => format!("{scope_key}.{}[{index}]", self.key),
        }
    }
}

/// One scope's lists (numbers, number patterns, SIP domains, SIP URIs), files included.
#[derive(Debug)]
pub(crate) struct Scope<'a> {
    kind: Kind,
    lists: [List<'a>; 4],
}

impl Scope<'_> {
    /// The lists as the policy compiles them.
    pub(crate) fn lists(&self) -> Lists<'_> {
        let [n, p, d, u] = &self.lists;
        Lists {
            kind: self.kind,
            numbers: (n.key, n.entries()),
            number_patterns: (p.key, p.entries()),
            sip_domains: (d.key, d.entries()),
            sip_uris: (u.key, u.entries()),
        }
    }

    pub(crate) fn numbers(&self) -> &List<'_> {
        &self.lists[0]
    }

    /// `p`, with problems about this scope's entries reported where each was written.
    pub(crate) fn located<'r, R: Report>(&'r self, p: &'r mut R) -> Located<'r, R> {
        Located {
            inner: p,
            scope: self,
        }
    }
}

/// A [`Report`] that renders an entry's path from its scope's origins.
pub(crate) struct Located<'r, R> {
    inner: &'r mut R,
    scope: &'r Scope<'r>,
}

impl<R: Report> Report for Located<'_, R> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.inner.error(path, message);
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.inner.warn(path, message);
    }

    fn entry_path(&self, scope_key: &str, list: &str, index: usize) -> String {
        match self.scope.lists.iter().find(|l| l.key == list) {
            Some(l) => l.path(scope_key, index),
            None => format!("{scope_key}.{list}[{index}]"),
        }
    }
}

#[cfg(test)]
mod tests;
