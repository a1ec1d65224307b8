//! The published terminals' signatures: one slab of [`TerminalSigs`] and an index of places
//! by code.
//!
//! At start-up the slab is the vector read from the store, kept where it is: a million
//! terminals' signatures (about 290 MB) are not copied into a map of large values, and the
//! index holds only a 4-byte place per code. A terminal that leaves frees its place for the
//! next one to join.

use std::collections::{BTreeSet, HashMap};

use super::TerminalSigs;
use crate::identity::CodeKey;

/// Where each kept entry of a slab is, and which places are free.
#[derive(Debug)]
pub struct SlabIndex {
    places: HashMap<CodeKey, u32, foldhash::fast::RandomState>,
    free: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct Terminals {
    index: HashMap<CodeKey, u32, foldhash::fast::RandomState>,
    slab: Vec<(CodeKey, TerminalSigs)>,
    free: Vec<u32>,
}

impl Terminals {
    /// The index of `slab` (its entries whose `kept` is true; the others' places are free),
    /// built apart from the slab so that start-up builds it on one core while another reads
    /// the slab for the chain.
    pub fn index(slab: &[(CodeKey, TerminalSigs)], kept: &[bool]) -> SlabIndex {
        let mut places = HashMap::with_capacity_and_hasher(slab.len(), Default::default());
        let mut free = Vec::new();
        for (place, (key, _)) in slab.iter().enumerate() {
            if kept.get(place).copied().unwrap_or(false) {
                places.insert(*key, place as u32);
            } else {
                free.push(place as u32);
            }
        }
        SlabIndex { places, free }
    }

    /// `slab` with its index (from [`Terminals::index`] over the same slab).
    pub fn from_parts(slab: Vec<(CodeKey, TerminalSigs)>, index: SlabIndex) -> Self {
        Self {
            index: index.places,
            slab,
            free: index.free,
        }
    }

    pub fn get(&self, key: &CodeKey) -> Option<&TerminalSigs> {
        let place = *self.index.get(key)?;
        Some(&self.slab[place as usize].1)
    }

    /// Every entry, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (CodeKey, &TerminalSigs)> {
        self.index
            .iter()
            .map(|(key, &place)| (*key, &self.slab[place as usize].1))
    }

    /// Puts `sigs` for `key`; returns what it held before.
    pub fn insert(&mut self, key: CodeKey, sigs: TerminalSigs) -> Option<TerminalSigs> {
        if let Some(&place) = self.index.get(&key) {
            return Some(std::mem::replace(&mut self.slab[place as usize].1, sigs));
        }
        let place = match self.free.pop() {
            Some(place) => {
                self.slab[place as usize] = (key, sigs);
                place
            }
            None => {
                self.slab.push((key, sigs));
                (self.slab.len() - 1) as u32
            }
        };
        self.index.insert(key, place);
        None
    }

    pub fn remove(&mut self, key: &CodeKey) -> Option<TerminalSigs> {
        let place = self.index.remove(key)?;
        self.free.push(place);
        Some(self.slab[place as usize].1)
    }

    /// Every entry, in no order.
    pub fn into_entries(self) -> Vec<(CodeKey, TerminalSigs)> {
        let Self { index, slab, .. } = self;
        index
            .into_values()
            .map(|place| slab[place as usize])
            .collect()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Each terminal by its earliest signature expiration, soonest first: the refresh's
    /// order ([`super::Staging::set_expiring`]).
    pub fn expiry_order(&self) -> BTreeSet<(u32, CodeKey)> {
        self.index
            .iter()
            .map(|(key, &place)| (self.slab[place as usize].1.expiration(), *key))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::Sig;

    fn sigs(byte: u8) -> TerminalSigs {
        let sig = Sig {
            inception: 1,
            expiration: 2,
            key_tag: 3,
            signature: [byte; 64],
        };
        TerminalSigs {
            hash: [byte; 20],
            next: [byte; 20],
            a: Some(sig),
            aaaa: None,
            nsec3: sig,
        }
    }

    #[test]
    fn places_not_kept_and_removed_ones_are_reused() {
        let key = |n: &str| CodeKey::from_digits(n.as_bytes()).unwrap();
        let slab = vec![
            (key("100"), sigs(1)),
            (key("101"), sigs(2)),
            (key("102"), sigs(3)),
        ];
        let index = Terminals::index(&slab, &[true, false, true]);
        let mut terminals = Terminals::from_parts(slab, index);
        assert_eq!(terminals.len(), 2);
        assert_eq!(terminals.get(&key("101")), None);
        assert_eq!(terminals.get(&key("102")), Some(&sigs(3)));
        terminals.insert(key("200"), sigs(4));
        assert_eq!(terminals.slab.len(), 3, "the free place is taken");
        assert_eq!(terminals.remove(&key("100")), Some(sigs(1)));
        assert_eq!(terminals.get(&key("100")), None);
        terminals.insert(key("201"), sigs(5));
        terminals.insert(key("102"), sigs(6));
        assert_eq!(terminals.slab.len(), 3);
        assert_eq!(terminals.get(&key("200")), Some(&sigs(4)));
        assert_eq!(terminals.get(&key("201")), Some(&sigs(5)));
        assert_eq!(terminals.get(&key("102")), Some(&sigs(6)));
        assert_eq!(terminals.len(), 3);
        let mut iterated: Vec<_> = terminals.iter().map(|(k, s)| (k, *s)).collect();
        iterated.sort_by_key(|(k, _)| *k);
        assert_eq!(
            iterated,
            [
                (key("102"), sigs(6)),
                (key("200"), sigs(4)),
                (key("201"), sigs(5))
            ]
        );
    }
}
