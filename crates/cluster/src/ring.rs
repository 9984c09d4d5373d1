//! Consistent-hash rings: which shard owns a series, which scraper owns a
//! target. Pure: the same members give the same answers in every process.

use std::hash::Hash;

use hashring::HashRing;
use xxhash_rust::xxh3::Xxh3Builder;

/// Virtual nodes per member, so load spreads evenly and a member joining or
/// leaving moves about 1/N of the keys.
pub const VNODES: u32 = 128;

/// A ring of members of type `T`, each placed at [`VNODES`] points.
pub struct Ring<T> {
    ring: HashRing<(T, u32), Xxh3Builder>,
    members: Vec<T>,
}

impl<T: Hash + Clone + PartialEq> Ring<T> {
    pub fn new(members: impl IntoIterator<Item = T>) -> Self {
        let members: Vec<T> = members.into_iter().collect();
        let mut ring = HashRing::with_hasher(Xxh3Builder::new().with_seed(0x5048_4152_4f53)); // "PHAROS"
        ring.batch_add(members.iter().flat_map(|m| (0..VNODES).map(move |v| (m.clone(), v))).collect());
        Self { ring, members }
    }

    /// The member that owns `key`, or `None` for an empty ring.
    pub fn owner(&self, key: u64) -> Option<&T> {
        self.ring.get(&key).map(|(m, _)| m)
    }

    pub fn members(&self) -> &[T] {
        &self.members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_and_balanced() {
        let r = Ring::new(0..4u32);
        let again = Ring::new(0..4u32);
        let mut counts = [0usize; 4];
        for k in 0..40_000u64 {
            let k = xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes());
            let o = *r.owner(k).unwrap();
            assert_eq!(again.owner(k), Some(&o));
            counts[o as usize] += 1;
        }
        assert!(counts.iter().all(|c| *c > 6_000), "{counts:?}");
    }

    #[test]
    fn adding_a_member_moves_about_one_nth() {
        let before = Ring::new(0..4u32);
        let after = Ring::new(0..5u32);
        let moved = (0..20_000u64)
            .map(|k| xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes()))
            .filter(|k| before.owner(*k) != after.owner(*k))
            .count();
        // ideal is 1/5 = 4000; every moved key must go to the new member
        assert!((2_500..6_000).contains(&moved), "{moved}");
        for k in (0..20_000u64).map(|k| xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes())) {
            if before.owner(k) != after.owner(k) {
                assert_eq!(after.owner(k), Some(&4));
            }
        }
    }

    #[test]
    fn empty_ring_has_no_owner() {
        assert!(Ring::<u32>::new([]).owner(1).is_none());
    }
}
