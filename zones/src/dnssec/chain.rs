//! The NSEC3 chain: every hash in the zone, in order, each with what owns it.
//!
//! Kept as runs of at most [`MAX_RUN`] entries, in order, with the first hash of each run
//! apart (a B-tree of two levels). At a start a million hashes arrive sorted and are cut
//! into runs as they come: 0.04 s, where a `BTreeMap`, which allocates and fills a node
//! per eleven entries, took 0.06 s (the published zone's copy takes 0.02 s either way). A
//! join or a leave moves at most one run's entries; a lookup searches the first hashes
//! (about 40 KB at a million), then one run.

use super::nsec3::Hash;

/// Entries a run is cut to when the chain is built, and when a full one is split.
const RUN: usize = 512;
/// Entries a run may hold before it is split in two.
const MAX_RUN: usize = 2 * RUN;

/// The chain: hashes in order, each with what owns it.
#[derive(Clone, Debug)]
pub struct Chain<O> {
    /// In order, none empty.
    runs: Vec<Vec<(Hash, O)>>,
    /// The first hash of each run.
    firsts: Vec<Hash>,
    len: usize,
}

impl<O> Default for Chain<O> {
    fn default() -> Self {
        Self {
            runs: Vec::new(),
            firsts: Vec::new(),
            len: 0,
        }
    }
}

/// Built in bulk: cut into runs as they come when sorted (as a start gives them), sorted
/// once otherwise. Of entries with the same hash, the last is kept.
impl<O> FromIterator<(Hash, O)> for Chain<O> {
    fn from_iter<I: IntoIterator<Item = (Hash, O)>>(entries: I) -> Self {
        let mut runs: Vec<Vec<(Hash, O)>> = Vec::new();
        let mut run = Vec::with_capacity(RUN);
        let mut last: Option<Hash> = None;
        let mut sorted = true;
        for (hash, owner) in entries {
            sorted &= last.is_none_or(|last| last < hash);
            last = Some(hash);
            run.push((hash, owner));
            if run.len() == RUN {
                runs.push(std::mem::replace(&mut run, Vec::with_capacity(RUN)));
            }
        }
        if !run.is_empty() {
            runs.push(run);
        }
        if !sorted {
            let mut entries: Vec<(Hash, O)> = runs.into_iter().flatten().collect();
            entries.sort_by_key(|entry| entry.0);
            // The last of each hash: reversed, `dedup_by` keeps the first it sees.
            entries.reverse();
            entries.dedup_by(|a, b| a.0 == b.0);
            entries.reverse();
            return entries.into_iter().collect();
        }
        let len = runs.iter().map(Vec::len).sum();
        let firsts = runs.iter().map(|run| run[0].0).collect();
        Self { runs, firsts, len }
    }
}

impl<O: Copy> Chain<O> {
    /// The run where `hash` is or would go: the last whose first hash is not above it (the
    /// first run for a hash below every run).
    fn run_of(&self, hash: &Hash) -> usize {
        self.firsts
            .partition_point(|first| first <= hash)
            .saturating_sub(1)
    }

    pub fn insert(&mut self, hash: Hash, owner: O) {
        if self.runs.is_empty() {
            self.runs.push(vec![(hash, owner)]);
            self.firsts.push(hash);
            self.len = 1;
            return;
        }
        let r = self.run_of(&hash);
        let run = &mut self.runs[r];
        match run.binary_search_by(|(h, _)| h.cmp(&hash)) {
            Ok(at) => run[at].1 = owner,
            Err(at) => {
                run.insert(at, (hash, owner));
                self.firsts[r] = run[0].0;
                self.len += 1;
                if run.len() > MAX_RUN {
                    let upper = run.split_off(run.len() / 2);
                    self.firsts.insert(r + 1, upper[0].0);
                    self.runs.insert(r + 1, upper);
                }
            }
        }
    }

    pub fn remove(&mut self, hash: &Hash) -> Option<O> {
        if self.runs.is_empty() {
            return None;
        }
        let r = self.run_of(hash);
        let run = &mut self.runs[r];
        let at = run.binary_search_by(|(h, _)| h.cmp(hash)).ok()?;
        let (_, owner) = run.remove(at);
        self.len -= 1;
        match run.first() {
            Some((first, _)) => self.firsts[r] = *first,
            None => {
                self.runs.remove(r);
                self.firsts.remove(r);
            }
        }
        Some(owner)
    }

    pub fn get(&self, hash: &Hash) -> Option<O> {
        let run = self.runs.get(self.run_of(hash))?;
        let at = run.binary_search_by(|(h, _)| h.cmp(hash)).ok()?;
        Some(run[at].1)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The hash after `hash` in the chain, wrapping to the first.
    pub fn next(&self, hash: &Hash) -> Option<Hash> {
        let r = self.run_of(hash);
        let run = self.runs.get(r)?;
        let at = run.partition_point(|(h, _)| h <= hash);
        let after = match run.get(at) {
            Some(entry) => entry,
            None => match self.runs.get(r + 1) {
                Some(next) => &next[0],
                None => &self.runs[0][0],
            },
        };
        Some(after.0)
    }

    /// The entry before `hash` (which need not be in the chain), wrapping to the last: the
    /// NSEC3 that covers `hash` when `hash` is not in the chain.
    pub fn before(&self, hash: &Hash) -> Option<(Hash, O)> {
        let r = self.run_of(hash);
        let run = self.runs.get(r)?;
        let at = run.partition_point(|(h, _)| h < hash);
        let before = match at.checked_sub(1) {
            Some(at) => &run[at],
            // Below the first run's first hash: the last entry of all.
            None => match r.checked_sub(1) {
                Some(previous) => self.runs[previous].last()?,
                None => self.runs.last()?.last()?,
            },
        };
        Some(*before)
    }

    /// Every entry, in hash order.
    pub fn iter(&self) -> impl Iterator<Item = (&Hash, &O)> {
        self.runs
            .iter()
            .flatten()
            .map(|(hash, owner)| (hash, owner))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::ops::Bound::{Excluded, Unbounded};

    use super::*;

    #[test]
    fn the_chain_wraps_around_for_next_and_cover() {
        let mut chain = Chain::default();
        for b in [10u8, 20, 30] {
            chain.insert([b; 20], b);
        }
        assert_eq!(chain.next(&[30; 20]), Some([10; 20]));
        assert_eq!(chain.next(&[10; 20]), Some([20; 20]));
        assert_eq!(chain.before(&[25; 20]), Some(([20; 20], 20)));
        assert_eq!(chain.before(&[5; 20]), Some(([30; 20], 30)));
        assert_eq!(chain.before(&[20; 20]), Some(([10; 20], 10)));
        let empty: Chain<u8> = Chain::default();
        assert_eq!((empty.next(&[1; 20]), empty.before(&[1; 20])), (None, None));
    }

    /// A hash from a counter, spread as SHA-1's are.
    fn spread(i: u32) -> Hash {
        let mut hash = [0; 20];
        let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D;
        for byte in hash.iter_mut() {
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            *byte = (x >> 56) as u8;
        }
        hash
    }

    /// Checks `chain` against `model` for every operation, at every entry and between.
    fn agrees(chain: &Chain<u32>, model: &BTreeMap<Hash, u32>) {
        assert_eq!(chain.len(), model.len());
        let entries: Vec<_> = chain.iter().map(|(h, o)| (*h, *o)).collect();
        let expected: Vec<_> = model.iter().map(|(h, o)| (*h, *o)).collect();
        assert_eq!(entries, expected);
        for (i, (hash, owner)) in expected.iter().enumerate() {
            let next = expected[(i + 1) % expected.len()].0;
            let previous = expected[(i + expected.len() - 1) % expected.len()];
            assert_eq!(chain.get(hash), Some(*owner));
            assert_eq!(chain.next(hash), Some(next));
            assert_eq!(chain.before(hash), Some(previous));
            // Just above it: not in the chain, covered by it.
            let mut above = *hash;
            above[19] = above[19].wrapping_add(1);
            if !model.contains_key(&above) && above > *hash {
                assert_eq!(chain.get(&above), None);
                assert_eq!(chain.before(&above), Some((*hash, *owner)));
                let after = model.range((Excluded(above), Unbounded)).next();
                let after = after.or(model.iter().next()).map(|(h, _)| *h);
                assert_eq!(chain.next(&above), after);
            }
        }
        for run in &chain.runs {
            assert!(!run.is_empty() && run.len() <= MAX_RUN);
        }
        let firsts: Vec<Hash> = chain.runs.iter().map(|run| run[0].0).collect();
        assert_eq!(chain.firsts, firsts);
    }

    /// Built from sorted or unsorted entries, then through joins and leaves that split runs
    /// and empty them, the chain answers as an ordered map does.
    #[test]
    fn the_chain_answers_as_an_ordered_map_through_joins_and_leaves() {
        let count = 5 * RUN as u32 + 7;
        let mut model: BTreeMap<Hash, u32> = (0..count).map(|i| (spread(i), i)).collect();
        let sorted: Chain<u32> = model.iter().map(|(h, o)| (*h, *o)).collect();
        agrees(&sorted, &model);
        assert_eq!(sorted.runs.len(), (count as usize).div_ceil(RUN));
        let mut chain: Chain<u32> = (0..count).rev().map(|i| (spread(i), i)).collect();
        agrees(&chain, &model);

        // Joins packed into one run split it; a hash already there takes the new owner.
        let low = model.keys().next().copied().unwrap();
        for i in 0..(MAX_RUN as u32 + 3) {
            let mut hash = low;
            hash[18] = (i >> 8) as u8;
            hash[19] = i as u8;
            chain.insert(hash, count + i);
            model.insert(hash, count + i);
        }
        chain.insert(low, 7);
        model.insert(low, 7);
        agrees(&chain, &model);

        // Leaves, including a whole run's, and one of a hash not there.
        let gone: Vec<Hash> = model.keys().copied().step_by(2).take(2 * RUN).collect();
        for hash in &gone {
            assert_eq!(chain.remove(hash), model.remove(hash));
        }
        assert_eq!(chain.remove(&gone[0]), None);
        agrees(&chain, &model);
        let all: Vec<Hash> = model.keys().copied().collect();
        for hash in &all[1..] {
            chain.remove(hash);
            model.remove(hash);
        }
        agrees(&chain, &model);
        chain.remove(&all[0]);
        assert!(chain.is_empty() && chain.runs.is_empty() && chain.firsts.is_empty());
        chain.insert(all[0], 1);
        model.clear();
        model.insert(all[0], 1);
        agrees(&chain, &model);
    }

    #[test]
    fn of_entries_with_the_same_hash_the_last_is_kept() {
        let chain: Chain<u8> = [([2; 20], 1), ([1; 20], 2), ([2; 20], 3)]
            .into_iter()
            .collect();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain.get(&[2; 20]), Some(3));
    }
}
