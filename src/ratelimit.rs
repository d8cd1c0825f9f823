//! Rate limits on call-forwarding changes (SPEC §12): a token bucket per user and one per
//! organisation, taken from by every judged guarded request, allowed by the policy or not.
//!
//! Each bucket is GCRA (the generic cell rate algorithm): one `AtomicU64` holding the bucket's
//! theoretical arrival time (TAT), in nanoseconds since the limiter's epoch, advanced by a CAS
//! loop. No lock, no allocation on the way; a user's bucket is found in a bounded LRU map
//! (moka), allocated only the first time the user is seen. State is per process: N replicas
//! allow up to N times each limit (docs/rate-limits.md).

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use tokio::time::Instant;

/// Users tracked when `max_users` is not set.
pub const DEFAULT_MAX_USERS: u64 = 100_000;

/// The time unit of a [`Rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    pub fn window(self) -> Duration {
        Duration::from_secs(match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3_600,
        })
    }

    fn unit(self) -> &'static str {
        match self {
            Per::Second => "s",
            Per::Minute => "min",
            Per::Hour => "h",
        }
    }
}

/// A limit as an operator writes it: `10/min` allows 10 at once from a full bucket, and one
/// more every 6 s after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: NonZeroU32,
    per: Per,
}

/// Why a rate does not read; the messages name what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error(
        "`{0}` is not a rate: write COUNT/UNIT, e.g. \"10/min\" (units: s, sec, min, h, hour)"
    )]
    Shape(String),
    #[error("`{0}` is not a count: write a whole number from 1 to 4294967295 before the `/`")]
    Count(String),
    #[error("a rate of 0 allows nothing: write at least 1 (to have no limit, leave the key out)")]
    Zero,
    #[error("`{0}` is not a time unit: write s, sec, min, h or hour")]
    Unit(String),
    #[error("`{0}` is more than one per nanosecond, which this limiter cannot measure")]
    TooFast(String),
}

impl Rate {
    pub fn new(count: NonZeroU32, per: Per) -> Rate {
        Rate { count, per }
    }

    /// How many a full bucket allows at once.
    pub fn count(self) -> u32 {
        self.count.get()
    }

    pub fn per(self) -> Per {
        self.per
    }

    pub fn window(self) -> Duration {
        self.per.window()
    }
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Rate, RateError> {
        let (count, unit) = s
            .split_once('/')
            .ok_or_else(|| RateError::Shape(s.to_owned()))?;
        let (count, unit) = (count.trim(), unit.trim());
        if count.is_empty() || unit.is_empty() {
            return Err(RateError::Shape(s.to_owned()));
        }
        if !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RateError::Count(count.to_owned()));
        }
        // Only digits: the one failure left is overflow.
        let count: u32 = count
            .parse()
            .map_err(|_| RateError::Count(count.to_owned()))?;
        let count = NonZeroU32::new(count).ok_or(RateError::Zero)?;
        let per = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" => Per::Second,
            "min" => Per::Minute,
            "h" | "hour" => Per::Hour,
            _ => return Err(RateError::Unit(unit.to_owned())),
        };
        let rate = Rate { count, per };
        if Gcra::of(rate).interval == 0 {
            return Err(RateError::TooFast(s.to_owned()));
        }
        Ok(rate)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per.unit())
    }
}

/// A rate in the units the buckets count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gcra {
    /// Nanoseconds one token takes to come back: window / count, rounded down.
    interval: u64,
    /// How far ahead of now the TAT may run: count × interval (≤ the window, so a full bucket
    /// allows exactly `count` whatever the rounding).
    burst: u64,
    count: u32,
    window: Duration,
}

impl Gcra {
    fn of(rate: Rate) -> Gcra {
        let window = rate.window();
        let interval = (window.as_nanos() / u128::from(rate.count())) as u64;
        Gcra {
            interval,
            burst: interval * u64::from(rate.count()),
            count: rate.count(),
            window,
        }
    }
}

/// One token bucket: its theoretical arrival time, in nanoseconds since the limiter's epoch.
/// 0 (or any time already past) is a full bucket.
#[derive(Debug, Default)]
struct Bucket(AtomicU64);

impl Bucket {
    /// Takes `n` tokens at `now`, or says how long until `n` will be there. A bucket never holds
    /// more than `count` tokens, so `n > count` can never pass: it is refused with the full
    /// window as its wait (the caller's request is too big for the limit, not early).
    fn take(&self, g: Gcra, n: u32, now: u64) -> Result<(), Duration> {
        if n == 0 {
            return Ok(());
        }
        if n > g.count {
            return Err(g.window);
        }
        // ≤ burst ≤ one hour in nanoseconds: no overflow.
        let cost = u64::from(n) * g.interval;
        // Relaxed: the TAT is the only datum; no other memory is published through it.
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                let next = tat.max(now) + cost;
                (next - now <= g.burst).then_some(next)
            })
            .map(drop)
            .map_err(|tat| Duration::from_nanos(tat.max(now) + cost - now - g.burst))
    }

    /// Gives back `n` tokens taken by [`Bucket::take`]. Other takes in between only moved the
    /// TAT further, so subtracting the same cost restores exactly what this one took.
    fn give_back(&self, g: Gcra, n: u32) {
        let cost = u64::from(n) * g.interval;
        // fetch_sub could wrap below 0 if the bucket refilled meanwhile; saturate instead.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.saturating_sub(cost))
            });
    }
}

/// `[policy.rate_limit]`: no rate, no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub per_user: Option<Rate>,
    pub per_organisation: Option<Rate>,
    /// Users tracked at most; the least recently seen is forgotten first.
    pub max_users: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            per_user: None,
            per_organisation: None,
            max_users: DEFAULT_MAX_USERS,
        }
    }
}

/// `[organisations.rate_limit]`: a rate set here replaces the `[policy.rate_limit]` one for
/// this organisation; `None` keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitOverrides {
    pub per_user: Option<Rate>,
    pub per_organisation: Option<Rate>,
}

/// An organisation as the limiter knows it: its position in the iterator given to
/// [`Limiter::new`]. Build that iterator in `Policy::organisations()` order and an
/// organisation's position there is its index here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrgIndex(pub usize);

/// Which bucket refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Organisation,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Organisation => "organisation",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request over a limit: 429 `rate_limited`, with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("over the {scope} rate limit; enough tokens in {retry_after:?}")]
pub struct Limited {
    pub scope: Scope,
    /// When the tokens this request needs will be there (the full window when it needs more
    /// than the bucket holds).
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds: rounded up, at least 1, so a client that waits that long
    /// finds its tokens.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// One organisation's rates and its own bucket.
#[derive(Debug)]
struct Org {
    name: Box<str>,
    per_user: Option<Gcra>,
    bucket: Option<(Gcra, Bucket)>,
}

/// Every bucket of one configuration. Built once per configuration; one [`Limiter::check`] per
/// judged guarded request.
pub struct Limiter {
    epoch: Instant,
    settings: RateLimitSettings,
    /// `None` when no organisation and no default limits users: nothing to track.
    users: Option<Cache<String, Arc<Bucket>>>,
    /// The per-user rate of requests in no organisation.
    per_user: Option<Gcra>,
    orgs: Vec<Org>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("settings", &self.settings)
            .field("orgs", &self.orgs)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// The limiter of a configuration: `organisations` in `Policy::organisations()` order
    /// (their positions are the [`OrgIndex`]es `check` takes), each with its overrides.
    pub fn new<'a>(
        settings: &RateLimitSettings,
        organisations: impl IntoIterator<Item = (&'a str, RateLimitOverrides)>,
    ) -> Limiter {
        Limiter::build(Instant::now(), settings, organisations)
    }

    fn build<'a>(
        epoch: Instant,
        settings: &RateLimitSettings,
        organisations: impl IntoIterator<Item = (&'a str, RateLimitOverrides)>,
    ) -> Limiter {
        let orgs: Vec<Org> = organisations
            .into_iter()
            .map(|(name, o)| Org {
                name: name.into(),
                per_user: o.per_user.or(settings.per_user).map(Gcra::of),
                bucket: o
                    .per_organisation
                    .or(settings.per_organisation)
                    .map(|r| (Gcra::of(r), Bucket::default())),
            })
            .collect();
        let per_user = settings.per_user.map(Gcra::of);
        // A bucket idle for its window is full again: forgetting it then loses nothing. Users
        // of different organisations share the map, so idle for the longest window.
        let idle = orgs
            .iter()
            .filter_map(|o| o.per_user)
            .chain(per_user)
            .map(|g| g.window)
            .max();
        let users = idle.map(|idle| {
            Cache::builder()
                .max_capacity(settings.max_users)
                .time_to_idle(idle)
                // Not TinyLFU: when full, it may decline to keep a newcomer, who would then get
                // a fresh bucket on every request, unlimited. LRU always tracks the newcomer.
                .eviction_policy(EvictionPolicy::lru())
                .build()
        });
        Limiter {
            epoch,
            settings: *settings,
            users,
            per_user,
            orgs,
        }
    }

    /// The limiter of a reloaded configuration, keeping what this one counted: the same user
    /// buckets (shared when the map's bounds are unchanged, copied otherwise) and each
    /// organisation's bucket by name, so a reload grants no one a fresh bucket.
    pub fn reconfigured<'a>(
        &self,
        settings: &RateLimitSettings,
        organisations: impl IntoIterator<Item = (&'a str, RateLimitOverrides)>,
    ) -> Limiter {
        let mut next = Limiter::build(self.epoch, settings, organisations);
        let old: HashMap<&str, &Bucket> = self
            .orgs
            .iter()
            .filter_map(|o| Some((&*o.name, &o.bucket.as_ref()?.1)))
            .collect();
        for org in &mut next.orgs {
            if let (Some((_, bucket)), Some(old)) = (&org.bucket, old.get(&*org.name)) {
                bucket
                    .0
                    .store(old.0.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        if let (Some(old), Some(new)) = (&self.users, &mut next.users) {
            let same = settings.max_users == self.settings.max_users
                && old.policy().time_to_idle() == new.policy().time_to_idle();
            if same {
                *new = old.clone();
            } else {
                for (key, bucket) in old.iter() {
                    new.insert(String::clone(&key), bucket);
                }
            }
        }
        next
    }

    /// The organisation `name`'s index, for building a table once per configuration; never
    /// per request.
    pub fn organisation(&self, name: &str) -> Option<OrgIndex> {
        self.orgs
            .iter()
            .position(|o| &*o.name == name)
            .map(OrgIndex)
    }

    /// Takes `cost` tokens (1 per request, 1 per guarded part of a batch) from the user's bucket
    /// and the organisation's. `user` is the user's SIP URI when known, else `app:<application
    /// id>`; `None` (no application in the path) takes from the organisation's alone.
    ///
    /// The user's bucket is tried first, so one user over their limit spends none of their
    /// organisation's tokens. When the organisation's bucket then refuses, the user's tokens are
    /// given back: a refused request costs nothing. In between, another request of the same user
    /// may see those tokens gone and be refused; never the reverse, so the limit holds.
    pub fn check(
        &self,
        user: Option<&str>,
        organisation: Option<OrgIndex>,
        cost: u32,
    ) -> Result<(), Limited> {
        let now = Instant::now().saturating_duration_since(self.epoch);
        self.check_at(user, organisation, cost, now.as_nanos() as u64)
    }

    fn check_at(
        &self,
        user: Option<&str>,
        organisation: Option<OrgIndex>,
        cost: u32,
        now: u64,
    ) -> Result<(), Limited> {
        let users: &[(&str, u32)] = match &user {
            Some(user) => &[(user, cost)],
            None => &[],
        };
        self.check_many_at(users, organisation, cost, now)
    }

    /// [`Limiter::check`] for a request made of parts of several users (a batch): each user's
    /// bucket takes that user's parts, the organisation's takes them all. All or nothing: a
    /// bucket that refuses gives back what the ones before it took.
    pub fn check_many(
        &self,
        users: &[(&str, u32)],
        organisation: Option<OrgIndex>,
    ) -> Result<(), Limited> {
        let now = Instant::now().saturating_duration_since(self.epoch);
        let total = users.iter().map(|&(_, cost)| cost).sum::<u32>();
        self.check_many_at(users, organisation, total, now.as_nanos() as u64)
    }

    fn check_many_at(
        &self,
        users: &[(&str, u32)],
        organisation: Option<OrgIndex>,
        total: u32,
        now: u64,
    ) -> Result<(), Limited> {
        // An index from another configuration: limit by the defaults rather than panic.
        let org = organisation.and_then(|OrgIndex(i)| {
            let org = self.orgs.get(i);
            debug_assert!(org.is_some(), "OrgIndex({i}) of another configuration");
            org
        });
        let per_user = org.map_or(self.per_user, |o| o.per_user);
        let mut taken: Vec<(Arc<Bucket>, Gcra, u32)> = Vec::new();
        let give_back = |taken: &[(Arc<Bucket>, Gcra, u32)]| {
            for (bucket, g, cost) in taken {
                bucket.give_back(*g, *cost);
            }
        };
        if let (Some(g), Some(map)) = (per_user, &self.users) {
            for &(key, cost) in users {
                let bucket = map.get_with_by_ref(key, Arc::default);
                if let Err(retry_after) = bucket.take(g, cost, now) {
                    give_back(&taken);
                    return Err(Limited {
                        scope: Scope::User,
                        retry_after,
                    });
                }
                taken.push((bucket, g, cost));
            }
        }
        if let Some((g, bucket)) = org.and_then(|o| o.bucket.as_ref()) {
            if let Err(retry_after) = bucket.take(*g, total, now) {
                give_back(&taken);
                return Err(Limited {
                    scope: Scope::Organisation,
                    retry_after,
                });
            }
        }
        Ok(())
    }

    /// Whether any rate is set: when none is, the gateway skips the check.
    pub fn enabled(&self) -> bool {
        self.users.is_some() || self.orgs.iter().any(|o| o.bucket.is_some())
    }

    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    /// Users tracked now, after pending evictions are applied: for tests and diagnostics,
    /// never per request.
    pub fn users(&self) -> u64 {
        self.users.as_ref().map_or(0, |u| {
            u.run_pending_tasks();
            u.entry_count()
        })
    }
}

#[cfg(test)]
mod tests;
