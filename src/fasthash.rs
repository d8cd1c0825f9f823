//! The hasher of the lookup tables built from the configuration (guarded resources by segment,
//! organisations by host). Their keys are the operator's and a request only looks them up, so
//! no request can crowd a bucket, which is what std's SipHash is keyed against; it cost ~8
//! instructions a byte of every segment and Host looked up, this one under one.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A [`HashMap`] with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// FxHash's multiply-rotate over 8-byte words (rustc-hash's constant), finished with a rotation
/// so that the bits hashbrown picks a bucket with depend on every word.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

const SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(SEED).rotate_left(23);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.add(u64::from_le_bytes(w));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_and_others_are_not() {
        let mut map: FastMap<Box<str>, usize> = FastMap::default();
        let keys = [
            "simultaneousringtocontact",
            "immediateforwardtocontact",
            "unansweredcalltocontact",
            "me",
            "",
            "lyncweb.contoso.com",
            "contoso.com",
        ];
        for (i, k) in keys.iter().enumerate() {
            map.insert((*k).into(), i);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(map.get(*k), Some(&i));
        }
        for other in [
            "m",
            "me\0",
            "contoso.co",
            "lyncweb.contoso.comm",
            "simultaneousringtocontacT",
        ] {
            assert_eq!(map.get(other), None, "{other:?}");
        }
    }
}
