//! Decides whether a request path is guarded, judging the path as IIS and UCWA will act on it
//! (SPEC §3 "Canonical path", §10 "Path"; the reading itself is [`crate::iis::path`]). The
//! request itself is always forwarded with its original bytes; the canonical form is only used
//! for classification.

// Keys are the operator's and requests only look them up, so no request can crowd a bucket
// (what std's keyed SipHash guards against); FxHash costs under an instruction a byte.
use crate::iis::{fold, path};
use rustc_hash::FxHashMap as FastMap;

/// One guarded resource: the last path segment name (compared ASCII case-insensitively) and the
/// parameter that carries its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    pub resource: Box<str>,
    pub parameter: Box<str>,
    /// A POST without the parameter is refused (`missing`); when false it is forwarded, since
    /// the resource has uses without it (`makeMeAvailable` signs in without a `phoneNumber`).
    pub required: bool,
}

/// The guarded resources of one configuration, looked up by last segment in O(1).
///
/// Keys are stored case-folded by [`fold`], so a lookup only folds the segment.
#[derive(Clone, Debug, Default)]
pub struct Guards {
    /// Keyed by bytes: a folded segment is looked up without a UTF-8 check.
    by_segment: FastMap<Box<[u8]>, Guard>,
    /// Longest folded key in bytes: longer segments cannot match and are rejected without work.
    longest: usize,
}

/// Segments up to this many bytes are folded on the stack during lookup.
const INLINE_KEY: usize = 64;

impl Guards {
    /// Builds the lookup table. When two guards name the same resource (after case folding) the
    /// first one is kept; configuration validation is expected to report such duplicates.
    pub fn new(guards: impl IntoIterator<Item = Guard>) -> Guards {
        let mut by_segment = FastMap::default();
        let mut longest = 0;
        for guard in guards {
            let key: String = guard.resource.chars().map(fold).collect();
            longest = longest.max(key.len());
            by_segment
                .entry(key.into_bytes().into_boxed_slice())
                .or_insert(guard);
        }
        Guards {
            by_segment,
            longest,
        }
    }

    /// SPEC §3 defaults: the three call-forwarding resources, all taking `target`.
    pub fn defaults() -> Vec<Guard> {
        [
            "simultaneousRingToContact",
            "immediateForwardToContact",
            "unansweredCallToContact",
        ]
        .into_iter()
        .map(|resource| Guard {
            resource: resource.into(),
            parameter: "target".into(),
            required: true,
        })
        .collect()
    }

    /// The guard whose resource is `segment`, in any case. Does not allocate unless a configured
    /// resource name is longer than 64 bytes.
    pub fn get(&self, segment: &str) -> Option<&Guard> {
        if segment.is_empty() || self.by_segment.is_empty() {
            return None;
        }
        let mut buf = [0u8; INLINE_KEY];
        // Real segments are ASCII, which folds to lower case byte for byte: no char decoding.
        if segment.is_ascii() {
            if segment.len() > self.longest {
                return None;
            }
            if let Some(key) = buf.get_mut(..segment.len()) {
                key.copy_from_slice(segment.as_bytes());
                key.make_ascii_lowercase();
                return self.by_segment.get(&*key);
            }
        }
        let mut len = 0;
        for c in segment.chars().map(fold) {
            let mut utf8 = [0u8; 4];
            let encoded = c.encode_utf8(&mut utf8).as_bytes();
            let end = len + encoded.len();
            if end > self.longest {
                return None;
            }
            let Some(slot) = buf.get_mut(len..end) else {
                let key: String = segment.chars().map(fold).collect();
                return self.by_segment.get(key.as_bytes());
            };
            slot.copy_from_slice(encoded);
            len = end;
        }
        self.by_segment.get(buf.get(..len)?)
    }

    /// The place of `guard`, one of this table's, for [`Guards::at`].
    pub fn position(&self, guard: &Guard) -> Option<usize> {
        self.by_segment
            .values()
            .position(|g| std::ptr::eq(g, guard))
    }

    /// The guard at `position` ([`Guards::position`]).
    pub fn at(&self, position: usize) -> Option<&Guard> {
        self.by_segment.values().nth(position)
    }

    /// Number of distinct guarded resources.
    pub fn len(&self) -> usize {
        self.by_segment.len()
    }

    /// True when nothing is guarded.
    pub fn is_empty(&self) -> bool {
        self.by_segment.is_empty()
    }
}

/// How a request is handled, by path alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'g> {
    /// Not guarded: forward untouched and streamed.
    Passthrough,
    /// Canonical path is under /ucwa/ and its last non-empty segment is a guarded resource.
    Guarded(&'g Guard),
    /// Canonical path is under /ucwa/ and ends in /batch (SPEC §3 Batches).
    Batch,
    /// The path could be a UCWA path but cannot be canonicalised: refuse 400 `bad_path`.
    BadPath,
}

/// What the path of a request is to the pool, from one pass over its readings.
#[derive(Debug, PartialEq, Eq)]
pub struct PathView<'g> {
    pub route: Route<'g>,
    /// IIS could route the path into UCWA under some reading (a path that cannot be read
    /// counts): the headers UCWA must not see are refused there.
    pub under_ucwa: bool,
}

/// Classifies a request path (no query, as sent on the request line); see [`view`].
pub fn classify<'g>(raw_path: &str, guards: &'g Guards) -> Route<'g> {
    view(raw_path, guards).route
}

/// Reads a request path (no query, as sent on the request line) under every reading the pool
/// could make of it ([`path::readings`]), once: guarded when any reading is.
///
/// A reading that cannot be canonicalised makes the path `BadPath` when it could reach UCWA
/// ([`path::could_reach_ucwa`]), and is ignored otherwise. Readings that name different guarded
/// resources, or a resource and a batch, are `BadPath` too: there is no one thing to judge.
///
/// A path outside `/ucwa/` is `BadPath` when a UCWA path inside it is guarded: wherever `ucwa`
/// follows a character that is not a letter or digit, as written or after rounds of folding
/// and decoding ([`path::ucwa_suffixes`]), the path from there is classified too. HTTP.sys
/// reads a request line's target as a path, and `//host/ucwa/...` collapsed names no UCWA
/// resource; but a reader that resolves the path as a URI reference, after any normalisation of
/// its own, would take what comes before for an authority or drop it, and act on the guarded
/// path behind (fresh eyes, rounds 40 to 45: each narrower form of this rule let another prefix
/// or suffix through). No client sends such a path.
pub fn view<'g>(raw_path: &str, guards: &'g Guards) -> PathView<'g> {
    let plain = path::is_plain(raw_path);
    let mut view = read(raw_path, plain, guards);
    if view.route == Route::Passthrough {
        let guarded = match path::ucwa_suffixes(raw_path, plain) {
            Some(suffixes) => suffixes.iter().any(|suffix| {
                read(suffix, path::is_plain(suffix), guards).route != Route::Passthrough
            }),
            // More `ucwa` segments than are worth reading: no client sends such a path.
            None => true,
        };
        if guarded {
            view.route = Route::BadPath;
            view.under_ucwa = true;
        }
    }
    view
}

/// [`view`] of the path as it reads, with no search inside it.
fn read<'g>(raw_path: &str, plain: bool, guards: &'g Guards) -> PathView<'g> {
    let is_ucwa = |p: &str| {
        path::starts_with_ucwa(p.as_bytes()) && matches!(p.as_bytes().get(5), None | Some(b'/'))
    };
    if plain {
        let canonical = path::trim_trailing_slash(raw_path);
        return PathView {
            route: route_of(canonical, guards),
            under_ucwa: is_ucwa(canonical),
        };
    }
    let readings = path::readings(raw_path);
    let under_ucwa = readings
        .iter()
        .any(|reading| reading.as_deref().map_or(true, is_ucwa));
    let mut reachable = None;
    let mut route = Route::Passthrough;
    for reading in &readings {
        let this = match reading {
            Ok(canonical) => route_of(canonical, guards),
            Err(_) if *reachable.get_or_insert_with(|| path::could_reach_ucwa(raw_path)) => {
                Route::BadPath
            }
            Err(_) => Route::Passthrough,
        };
        route = match (route, this) {
            (Route::BadPath, _) | (_, Route::BadPath) => Route::BadPath,
            (Route::Passthrough, other) | (other, Route::Passthrough) => other,
            (Route::Batch, Route::Batch) => Route::Batch,
            (Route::Guarded(a), Route::Guarded(b)) if std::ptr::eq(a, b) => Route::Guarded(a),
            _ => Route::BadPath,
        };
        if route == Route::BadPath {
            break;
        }
    }
    PathView { route, under_ucwa }
}

/// Routes a path that is canonical up to ASCII case.
fn route_of<'g>(path: &str, guards: &'g Guards) -> Route<'g> {
    const PREFIX: &[u8] = b"/ucwa/";
    let under_ucwa = path.len() > PREFIX.len()
        && path
            .as_bytes()
            .get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX));
    if !under_ucwa {
        return Route::Passthrough;
    }
    // Only an escape (`%3F`, `%23`) puts these in a path; a back end that re-reads the decoded
    // path as a URL would cut the segment there, so such a UCWA path cannot be classified.
    // memchr's searches, 16 or 32 bytes a step: a guarded path is ~100 bytes, and a fold the
    // compiler was meant to vectorise here stayed a byte loop (~7 instructions a byte).
    if memchr::memchr2(b'?', b'#', path.as_bytes()).is_some() {
        return Route::BadPath;
    }
    let last = memchr::memrchr(b'/', path.as_bytes()).map_or(path, |at| &path[at + 1..]);
    if last.eq_ignore_ascii_case("batch") {
        Route::Batch
    } else {
        guards.get(last).map_or(Route::Passthrough, Route::Guarded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SIM: &str = "/ucwa/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact";

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Want {
        Guarded(&'static str),
        Batch,
        Pass,
        Bad,
    }
    use Want::*;

    fn guards() -> Guards {
        let mut all = Guards::defaults();
        all.push(Guard {
            resource: "changeNumber".into(),
            parameter: "number".into(),
            required: true,
        });
        Guards::new(all)
    }

    fn got(route: Route<'_>) -> Want {
        match route {
            Route::Passthrough => Pass,
            Route::Batch => Batch,
            Route::BadPath => Bad,
            Route::Guarded(g) => Guarded(match &*g.resource {
                "simultaneousRingToContact" => "sim",
                "immediateForwardToContact" => "imm",
                "unansweredCallToContact" => "una",
                "changeNumber" => "chg",
                _ => "?",
            }),
        }
    }

    #[test]
    fn classification_table() {
        let deep_ucwa = format!("/ucwa/v1/{}73imultaneousRingToContact", nested_percent(17));
        let deep_other = format!("/other/{}41", nested_percent(17));
        let cases: &[(&str, Want)] = &[
            (SIM, Guarded("sim")),
            ("/UCWA/V1/APPLICATIONS/192/ME/CALLFORWARDINGSETTINGS/SIMULTANEOUSRINGSETTINGS/SIMULTANEOUSRINGTOCONTACT", Guarded("sim")),
            ("/ucwa/oauth/v1/applications/1/me/callForwardingSettings/immediateForwardSettings/immediateForwardToContact", Guarded("imm")),
            ("/ucwa/v7/anything/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/unansweredCallToContact", Guarded("una")),
            ("/ucwa/v1/me/changeNumber", Guarded("chg")),
            ("/ucwa/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/%2573imultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/%252573imultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/%73imultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/%u0073imultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/%U0073imultaneousRingToContact", Guarded("sim")),
            ("/%75cwa/v1/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/..%2FsimultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x%5CsimultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x%255CsimultaneousRingToContact", Guarded("sim")),
            ("\\ucwa\\v1\\applications\\192\\simultaneousRingToContact", Guarded("sim")),
            ("//ucwa//v1//applications//simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/a/./b/../simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact/", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact//", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact/.", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact;x", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact;a=b/", Guarded("sim")),
            ("/ucwa/v1/x;jsessionid=1/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact.", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact...", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact%20", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact%20.%20.", Guarded("sim")),
            ("/ucwa/v1/%C5%BFimultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact/x/..", Guarded("sim")),
            ("/../ucwa/v1/simultaneousRingToContact", Guarded("sim")),
            ("/../../ucwa/simultaneousRingToContact", Guarded("sim")),
            ("/static/..%2Fucwa/v1/simultaneousRingToContact", Guarded("sim")),
            ("ucwa/v1/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/simultaneousRingToContact%00", Bad),
            ("/ucwa/v1/simultaneousRingToContact%0a", Bad),
            ("/ucwa/v1/x%7f", Bad),
            ("/ucwa/%", Bad),
            ("/ucwa/v1/%ff", Bad),
            ("/ucwa/v1/%C0%AFsimultaneousRingToContact", Bad),
            ("/ucwa/v1/%zz", Bad),
            ("/ucwa/v1/%2", Bad),
            ("/ucwa/v1/%25", Bad),
            ("/ucwa/v1/%uD83D", Bad),
            ("/ucwa/v1/%uDE00%uD83D", Bad),
            ("/ucwa/v1/%u00", Bad),
            (deep_ucwa.as_str(), Bad),
            (deep_other.as_str(), Pass),
            ("/UCWA/x%", Bad),
            ("/ucwax/%", Bad),
            ("/%75cwa/v1/simultaneousRingToContact%", Bad),
            ("/%2575cwa/v1/simultaneousRingToContact%", Bad),
            ("\\ucwa\\v1\\x%", Bad),
            ("/other/%", Pass),
            ("/other/%ff", Pass),
            ("/other/%00/ucwa", Pass),
            ("/ucwa/v1/%uD83D%uDE00", Pass),
            ("/ucwa/v1/applications/192/me", Pass),
            ("/ucwa/v1/applications/192/me/", Pass),
            ("/ucwa/v1/simultaneousRingToContactX", Pass),
            ("/ucwa/v1/XsimultaneousRingToContact", Pass),
            ("/ucwa/v1/simultaneousRingToContact/events", Pass),
            ("/ucwa/v1/simultaneousRingToContact/..", Pass),
            ("/static/simultaneousRingToContact", Pass),
            ("/ucwax/simultaneousRingToContact", Pass),
            ("/simultaneousRingToContact", Pass),
            ("/ucwa/", Pass),
            ("/ucwa", Pass),
            ("/ucwa/simultaneousRingToContact/../..", Pass),
            ("/", Pass),
            ("", Pass),
            ("/autodiscover/autodiscoverservice.svc/root", Pass),
            ("/ucwa/v1/applications/192/batch", Batch),
            ("/ucwa/v1/applications/192/BATCH/", Batch),
            ("/ucwa/v1/applications/192/batch;x", Batch),
            ("/ucwa/v1/applications/192/%62atch", Batch),
            ("/ucwa/batch", Batch),
            ("/ucwa/v1/x/simultaneousRingToContact%3Fa", Bad),
            ("/ucwa/v1/x/simultaneousRingToContact%23a", Bad),
            ("/ucwa/v1/x%3F/simultaneousRingToContact", Bad),
            ("/other/x%3Fy", Pass),
            ("/ucwa/v1/simultaneousRingToContact/x/..%20", Bad),
            ("/ucwa/v1/simultaneousRingToContact/x/...", Bad),
            ("/x/.../y", Pass),
            ("/x/...%20/ucwa/v1/simultaneousRingToContact", Bad),
            ("/batch", Pass),
            ("/other/batch", Pass),
            // Cookieless session segments (CookielessHelper), raw, encoded, anywhere.
            ("/ucwa/v1/x/simultaneousRingToContact/(S(abc))/", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact/(S(abc))", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact/(A(x)S(y)F(z))/", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact/(S(a))/(F(b))/", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact/%28S%28abc%29%29/", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact/%2528S%2528abc%2529%2529/", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact%2F(S(abc))%2F", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact/(S(a%2Fb))/", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact\\(S(abc))\\", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact/(S(abc)).", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact/(S(abc))/x/..", Guarded("sim")),
            ("/ucwa/(S(abc))/v1/x/simultaneousRingToContact", Guarded("sim")),
            ("/(S(abc))/ucwa/v1/x/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/simultaneous/(S(a))RingToContact/(S(a))/..", Guarded("sim")),
            ("/ucwa/v1/applications/192/batch/(S(abc))/", Batch),
            ("/ucwa/v1/applications/192/(S(abc))/batch", Batch),
            ("/ucwa/v1/batch/simultaneousRingToContact/(S(x))/..", Bad),
            ("/ucwa/v1/x/(S(abc))/", Pass),
            ("/ucwa/v1/x/simultaneousRingToContact/(S)/", Pass),
            ("/ucwa/v1/x/simultaneousRingToContact/(x)/", Pass),
            // Default-ignorable code points in a path that could reach UCWA.
            ("/ucwa/v1/x/simultaneousRingToContact%C2%AD", Bad),
            ("/ucwa/v1/x/simultaneous%E2%80%8BRingToContact", Bad),
            ("/ucwa/v1/x/simultaneousRingToContact%EF%BB%BF", Bad),
            ("/ucwa/v1/x/simultaneousRingToContact%uFEFF", Bad),
            ("/ucwa/v1/x/simultaneousRingToContact\u{200d}", Bad),
            ("/ucwa/v1/x/simultaneousRingToContact%EF%B8%8F", Bad),
            ("/ucwa/v1/x/simultaneousRingToContact%F3%A0%80%81", Bad),
            ("/u%E2%80%8Bcwa/v1/x/simultaneousRingToContact", Bad),
            ("/ucwa/v1/x%E2%80%8B/me", Bad),
            ("/static/font%E2%80%8B.woff", Pass),
            // Full-width letters (IIS "best fit", OWASP CRS 920260).
            ("/ucwa/v1/x/%uFF53imultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/%EF%BD%93imultaneousRingToContact", Guarded("sim")),
            ("/%uFF55cwa/v1/x/simultaneousRingToContact", Guarded("sim")),
            // A comparison that gives unassigned or non-ASCII code points no weight would not
            // see them: the path without them is read too (stricter than IIS, never looser).
            ("/ucwa/v1/x/simultaneousRingToContact%uFF0E", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact%CD%B8", Guarded("sim")),
            ("/ucwa/v1/x/simultaneous%CD%B8RingToContact", Guarded("sim")),
            ("/ucwa/v1/x/caf%C3%A9", Pass),
            ("/ucwa/v1/x/simult%C3%A1neousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/simulta%CC%81neousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/%E2%93%A2imultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/%F0%9D%90%ACimultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/applications/1/b%C3%A0tch", Batch),
            ("/ucwa/v1/x%EF%BC%8FsimultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingT%C3%B8Contact", Guarded("sim")),
            ("/ucwa/v1/x/%EA%9C%B1imultaneousRingToContact", Guarded("sim")),
            // `;` is ordinary to HTTP.sys: `..;` is a segment that a following `..` removes.
            ("/ucwa/v1/..;/../v1/x/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/;/../v1/x/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/a;b/../simultaneousRingToContact", Guarded("sim")),
            // ... and a router that then ignores `;params` names the resource where neither the
            // servlet reading (out of /ucwa) nor HTTP.sys's (`...Contact;x`) does (session 28).
            ("/ucwa/oauth/..;/../v1/x/simultaneousRingToContact;x", Guarded("sim")),
            ("/ucwa/oauth/..;/../v1/x/simultaneousRingToContact.;x", Guarded("sim")),
            // ... and file mapping reads an NTFS stream as its file (fresh eyes, round 20).
            ("/ucwa/v1/x/simultaneousRingToContact::$DATA", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact:x", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact%3A%3A$DATA", Guarded("sim")),
            ("/ucwa/v1/applications/1/people/jane:x/presence", Pass),
            // Either cut with either resolution of dot segments (fresh eyes, round 23).
            ("/x/..;/ucwa/v1/x/simultaneousRingToContact:x", Guarded("sim")),
            ("/x/..:y/ucwa/v1/x/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact:x/y/..;", Guarded("sim")),
            // An empty segment is one `..` removes, in an RFC 3986 reading.
            ("/ucwa//../v1/x/simultaneousRingToContact", Guarded("sim")),
            ("/ucwa/v1/x/simultaneousRingToContact//..", Guarded("sim")),
            ("/ucwa/v1/x%2F%2F..%2FsimultaneousRingToContact", Guarded("sim")),
        ];
        let guards = guards();
        let mut failures = Vec::new();
        for &(path, want) in cases {
            let have = got(classify(path, &guards));
            if have != want {
                failures.push(format!("{path:?}: want {want:?}, got {have:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// A `%` that takes `rounds` decoding rounds to appear, before two hex digits.
    fn nested_percent(rounds: usize) -> String {
        format!("%{}", "25".repeat(rounds - 1))
    }

    /// A path outside `/ucwa/` with a guarded UCWA path inside it, however spelled, is refused:
    /// a URI-reference reader could take what comes before for an authority (fresh eyes,
    /// rounds 40 to 45).
    #[test]
    fn a_network_path_shaped_target_is_read_behind_its_authority() {
        let guards = guards();
        for (path, want) in [
            (format!("//lyncweb.contoso.com{SIM}"), Bad),
            (format!("///lyncweb.contoso.com{SIM}"), Bad),
            (format!("/\\lyncweb.contoso.com{SIM}"), Bad),
            (format!("/%2Flyncweb.contoso.com{SIM}"), Bad),
            (format!("/%5clyncweb.contoso.com{SIM}"), Bad),
            (format!("/%252Fevil.example:443{SIM}"), Bad),
            ("//host/ucwa/v1/applications/192/batch".to_string(), Bad),
            ("//host/ucwa/v1/applications/192/events".to_string(), Pass),
            ("//cdn.example/scripts/app.js".to_string(), Pass),
            ("/%2Fhost".to_string(), Pass),
            // Round 42: the shape reached through a decoding round or a normalisation.
            (format!("/%2F/lyncweb.contoso.com{SIM}"), Bad),
            (format!("/%25%32%46/h{SIM}"), Bad),
            (format!("/(S(x))//h{SIM}"), Bad),
            (format!("/(S(x))%2Fh{SIM}"), Bad),
            (format!("/.//h{SIM}"), Bad),
            (format!("/%2e//h{SIM}"), Bad),
            (format!("/;x//h{SIM}"), Bad),
            (format!("/%20//h{SIM}"), Bad),
            (format!("/a/..//h{SIM}"), Bad),
            (format!("/x//y{SIM}"), Bad),
            ("/.//h/ucwa/v1/applications/192/batch".to_string(), Bad),
            // Round 43: a segment emptied after the resource, a prefix another reader drops or
            // maps to a separator, cookieless with dots, decoding deeper than the rounds.
            (format!("//h{SIM}/%20"), Bad),
            (format!("/%2F/h{SIM}/..."), Bad),
            ("//h/ucwa/v1/applications/192/batch/%20".to_string(), Bad),
            (format!("/%E2%80%8B/h{SIM}"), Bad),
            (format!("/%09/h{SIM}"), Bad),
            (format!("/%EF%BC%8Fh{SIM}"), Bad),
            (format!("/%c0%af/h{SIM}"), Bad),
            (format!("/(S(x)).%20/h{SIM}"), Bad),
            (format!("/{}2F/h{SIM}", "%25".repeat(16)), Bad),
            (
                format!("/x{}", SIM.replacen("ucwa", "u%E2%80%8Bcwa", 1)),
                Bad,
            ),
            // Round 44: a plain inner path, an undecodable escape before it, decoding past 16
            // rounds, a round only folding opens, bare-looking `%`s.
            (format!("/x{SIM}"), Bad),
            (format!("/X{}", SIM.to_uppercase()), Bad),
            (format!("/x{SIM}/"), Bad),
            ("/x/ucwa/oauth/v1/applications/123/batch".to_string(), Bad),
            (format!("/x%zz{}", SIM.replacen("ucwa", "%75cwa", 1)), Bad),
            (
                format!("/x/%FF{}", SIM.replacen("ucwa", "%2575cwa", 1)),
                Bad,
            ),
            (format!("/{}75cwa{}", "%25".repeat(16), &SIM[5..]), Bad),
            (format!("/x/%EF%BC%8575cwa{}", &SIM[5..]), Bad),
            (format!("/x/%7%E2%80%8B5cwa{}", &SIM[5..]), Bad),
            (format!("/x/%%37%35cwa{}", &SIM[5..]), Bad),
            (format!("/x%2%46ucwa{}", &SIM[5..]), Bad),
            (format!("/{}2F{SIM}", "%25".repeat(40)), Bad),
            // Rounds 44 and 45: slash look-alikes the skeleton drops, overlong UTF-8.
            (format!("/x{}", SIM.replace('/', "%E2%88%95")), Bad),
            (format!("/x{}", SIM.replace('/', "%C0%AF")), Bad),
            (
                SIM.replacen(
                    "/simultaneousRingToContact",
                    "%u2215simultaneousRingToContact",
                    1,
                ),
                Bad,
            ),
            ("/x/ucwa/readme.txt".to_string(), Pass),
            ("/static/simultaneousRingToContact".to_string(), Pass),
            (
                "/ucwa/oauth/v1/applications/123/people/sip:jane@contoso.com/presence".to_string(),
                Pass,
            ),
            (
                "/(S(x))//h/ucwa/v1/applications/192/events".to_string(),
                Pass,
            ),
            // Not network-path shaped: the collapsed reading is guarded, as before.
            (format!("/{SIM}"), Guarded("sim")),
            (SIM.to_string(), Guarded("sim")),
        ] {
            assert_eq!(got(classify(&path, &guards)), want, "{path}");
        }
    }

    #[test]
    fn a_deeply_encoded_path_that_could_reach_ucwa_is_bad() {
        let hidden = format!(
            "/{}75cwa/v1/x%",
            nested_percent(path::MAX_DECODE_ROUNDS - 1)
        );
        assert_eq!(classify(&hidden, &guards()), Route::BadPath);
    }

    #[test]
    fn guard_lookup_folds_case() {
        let guards = guards();
        assert_eq!(guards.len(), 4);
        assert!(guards.get("SIMULTANEOUSRINGTOCONTACT").is_some());
        assert!(guards.get("\u{17f}imultaneousRingToContact").is_some());
        assert!(guards.get("s\u{130}multaneousRingToContact").is_some());
        assert!(guards.get("s\u{131}multaneousRingToContact").is_some());
        assert!(guards.get("changenumber").is_some());
        assert!(guards.get("").is_none());
        assert!(guards.get(&"x".repeat(1000)).is_none());
        let long = "r".repeat(100);
        let custom = Guards::new([Guard {
            resource: long.clone().into(),
            parameter: "p".into(),
            required: true,
        }]);
        assert!(custom.get(&long.to_uppercase()).is_some());
        assert!(custom.get("r").is_none());
    }

    #[test]
    fn first_duplicate_guard_wins() {
        let guards = Guards::new([
            Guard {
                resource: "thing".into(),
                parameter: "a".into(),
                required: true,
            },
            Guard {
                resource: "THING".into(),
                parameter: "b".into(),
                required: true,
            },
        ]);
        assert_eq!(guards.len(), 1);
        assert_eq!(guards.get("thing").map(|g| &*g.parameter), Some("a"));
    }

    proptest! {
        #[test]
        fn classify_never_panics(raw in path::path_strategy(), other in any::<String>()) {
            let guards = guards();
            let _ = classify(&raw, &guards);
            let _ = classify(&other, &guards);
        }

        #[test]
        fn the_plain_fast_path_agrees_with_every_reading(raw in "(/[a-zA-Z0-9._~!$&'()*+,=:@-]{0,6}){0,6}/?") {
            let guards = guards();
            let fast = classify(&raw, &guards);
            let slow = match path::canonical(&raw) {
                Ok(c) if !raw.contains('(') => route_of(&c, &guards),
                _ => return Ok(()),
            };
            prop_assert_eq!(fast, slow);
        }
    }
}

/// Which traffic a request is, for `ringfence_http_requests_total{route}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    Guarded,
    Passthrough,
}

impl Traffic {
    pub fn label(self) -> &'static str {
        match self {
            Traffic::Guarded => "guarded",
            Traffic::Passthrough => "passthrough",
        }
    }
}
