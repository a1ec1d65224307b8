//! The zone's recent history, for incremental transfers (IXFR, RFC 1995).
//!
//! Every change that increases the SOA serial records a [`Delta`]: the serials before and
//! after, and each terminal whose addresses changed (old and new). Deltas are committed in
//! the same transaction as the change they describe, and the most recent `depth` are kept.
//! A secondary whose serial is older than the oldest delta gets a full transfer instead.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::identity::CallingCode;
use crate::model::Addresses;

/// One terminal's addresses before and after a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressChange {
    pub code: CallingCode,
    pub old: Addresses,
    pub new: Addresses,
}

/// One serial increase and what it changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// Position in the journal (increasing; the store's key).
    pub seq: u64,
    pub from: u32,
    pub to: u32,
    pub changes: Vec<AddressChange>,
}

/// The most recent deltas, oldest first.
#[derive(Clone, Debug)]
pub struct Journal {
    deltas: VecDeque<Delta>,
    depth: usize,
}

impl Journal {
    pub fn new(depth: usize, deltas: Vec<Delta>) -> Self {
        let mut journal = Self {
            deltas: deltas.into(),
            depth: depth.max(1),
        };
        journal.trim();
        journal
    }

    /// The sequence number the next delta gets.
    pub fn next_seq(&self) -> u64 {
        self.deltas.back().map_or(1, |d| d.seq + 1)
    }

    /// The deltas that must leave when `delta` is added (their `seq`s), oldest first.
    pub fn overflow_after_push(&self) -> Vec<u64> {
        let excess = (self.deltas.len() + 1).saturating_sub(self.depth);
        self.deltas.iter().take(excess).map(|d| d.seq).collect()
    }

    /// Adds a committed delta, forgetting the oldest beyond the depth.
    pub fn push(&mut self, delta: Delta) {
        self.deltas.push_back(delta);
        self.trim();
    }

    fn trim(&mut self) {
        while self.deltas.len() > self.depth {
            self.deltas.pop_front();
        }
    }

    /// The deltas that lead from `serial` to the newest, or `None` when `serial` is not in
    /// the history (too old, or never ours) or the chain from it has a gap: the caller then
    /// sends the whole zone.
    pub fn since(&self, serial: u32) -> Option<Vec<&Delta>> {
        let start = self.deltas.iter().position(|d| d.from == serial)?;
        let chain: Vec<&Delta> = self.deltas.iter().skip(start).collect();
        let contiguous = chain.windows(2).all(|w| w[0].to == w[1].from);
        contiguous.then_some(chain)
    }

    /// Every delta's sequence number, oldest first (to delete them all from the store).
    pub fn seqs(&self) -> Vec<u64> {
        self.deltas.iter().map(|d| d.seq).collect()
    }

    /// Forgets every delta: the zone changed in a way deltas cannot describe.
    pub fn clear(&mut self) {
        self.deltas.clear();
    }

    pub fn len(&self) -> usize {
        self.deltas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(seq: u64, from: u32) -> Delta {
        Delta {
            seq,
            from,
            to: from.wrapping_add(1),
            changes: Vec::new(),
        }
    }

    #[test]
    fn since_returns_the_chain_from_a_known_serial() {
        let j = Journal::new(10, (1..=5).map(|i| delta(i, 100 + i as u32)).collect());
        let chain = j.since(103).unwrap();
        assert_eq!(
            chain.iter().map(|d| d.from).collect::<Vec<_>>(),
            vec![103, 104, 105]
        );
        assert!(j.since(99).is_none(), "older than the history");
        // The current serial starts no delta: the caller answers "up to date" before asking.
        assert!(j.since(106).is_none());
    }

    #[test]
    fn depth_bounds_the_history() {
        let mut j = Journal::new(3, Vec::new());
        for i in 1..=3 {
            assert!(j.overflow_after_push().is_empty() || i > 3);
            j.push(delta(j.next_seq(), i));
        }
        assert_eq!(j.overflow_after_push(), vec![1]);
        j.push(delta(j.next_seq(), 4));
        assert_eq!(j.len(), 3);
        assert!(j.since(1).is_none());
        assert!(j.since(2).is_some());
    }

    #[test]
    fn a_gap_in_the_chain_means_a_full_transfer() {
        let j = Journal::new(10, vec![delta(1, 2), delta(2, 1000)]);
        assert!(j.since(2).is_none());
        assert_eq!(j.since(1000).unwrap().len(), 1);
    }

    #[test]
    fn serials_wrap() {
        let j = Journal::new(10, vec![delta(1, u32::MAX), delta(2, 0)]);
        assert_eq!(j.since(u32::MAX).unwrap().len(), 2);
    }
}
