//! Choosing a member: round robin or least outstanding requests, over members not known to be
//! down (a member not probed yet is tried) and not yet tried for this request. Lock-free: one
//! atomic counter and per-member atomics.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Member;
use crate::config::Balance;

/// Members already tried for one request: one bit each, so a pool has at most 128 members
/// (`config::validate::MAX_MEMBERS`, checked at load). Two words, not a `u128`: that one is
/// 16-aligned, and so was every future that held it, with the padding that brings (issue 16).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tried([u64; 2]);

impl Tried {
    pub fn insert(&mut self, index: usize) {
        debug_assert!(index < 128, "a pool has at most 128 members");
        let index = index % 128;
        self.0[index / 64] |= 1 << (index % 64);
    }

    fn contains(&self, index: usize) -> bool {
        let index = index % 128;
        self.0[index / 64] & (1 << (index % 64)) != 0
    }

    pub fn count(&self) -> usize {
        (self.0[0].count_ones() + self.0[1].count_ones()) as usize
    }
}

/// The next member to try, or None when every member that takes traffic was tried.
pub fn pick(
    balance: Balance,
    members: &[Member],
    next: &AtomicUsize,
    tried: &Tried,
) -> Option<usize> {
    let candidate = |i: &usize| !tried.contains(*i) && members[*i].takes_traffic();
    let n = members.len();
    match balance {
        Balance::RoundRobin => {
            let start = next.fetch_add(1, Ordering::Relaxed);
            (0..n).map(|k| (start + k) % n).find(candidate)
        }
        Balance::LeastRequests => {
            // Rotate the starting point so that ties spread over members.
            let start = next.fetch_add(1, Ordering::Relaxed);
            (0..n)
                .map(|k| (start + k) % n)
                .filter(candidate)
                .min_by_key(|&i| members[i].outstanding.load(Ordering::Relaxed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The `u128` the two words replaced.
    #[derive(Default)]
    struct Wide(u128);

    impl Wide {
        fn insert(&mut self, index: usize) {
            self.0 |= 1u128 << (index % 128);
        }

        fn contains(&self, index: usize) -> bool {
            self.0 & (1u128 << (index % 128)) != 0
        }

        fn count(&self) -> usize {
            self.0.count_ones() as usize
        }
    }

    proptest! {
        #[test]
        fn two_words_are_the_u128(inserted in proptest::collection::vec(0usize..128, 0..40)) {
            let (mut tried, mut wide) = (Tried::default(), Wide::default());
            for &index in &inserted {
                tried.insert(index);
                wide.insert(index);
                prop_assert_eq!(tried.count(), wide.count());
            }
            for index in 0..128 {
                prop_assert_eq!(tried.contains(index), wide.contains(index));
            }
        }
    }
}
