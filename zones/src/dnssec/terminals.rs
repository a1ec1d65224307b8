//! The published terminals' signatures: one slab of compact entries and an index of places
//! by code.
//!
//! At a million terminals the slab is most of what signing adds to memory, so an entry
//! keeps a terminal's hash, next hash, NSEC3 signature and A signature in place (208
//! bytes) and the AAAA signature, which few terminals have, in a side table by place: a
//! [`TerminalSigs`] with both optional signatures inline takes 288. Entries are put
//! together into a [`TerminalSigs`] when read.
//!
//! At start-up the slab is built as the stored signatures are read, and kept where it is;
//! the index holds only a 4-byte place per code. A terminal that leaves frees its place
//! for the next one to join.

use std::collections::{BTreeSet, HashMap};

use super::TerminalSigs;
use super::nsec3::Hash;
use super::sign::Sig;
use crate::identity::CodeKey;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A terminal's signatures as the slab keeps them.
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: CodeKey,
    hash: Hash,
    next: Hash,
    nsec3: Sig,
    /// Meaningful when `has_a`.
    a: Sig,
    has_a: bool,
    /// Its AAAA signature is in [`Slab::aaaa`].
    has_aaaa: bool,
}

/// Terminals' signatures by place, in the order they were put.
#[derive(Debug, Default)]
pub struct Slab {
    entries: Vec<Entry>,
    /// The AAAA signatures, by place.
    aaaa: Map<u32, Sig>,
}

impl Slab {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
            aaaa: Map::default(),
        }
    }

    pub fn push(&mut self, key: CodeKey, sigs: TerminalSigs) {
        let place = self.entries.len() as u32;
        self.entries.push(Entry::of(key, &sigs, sigs.nsec3));
        if let Some(sig) = sigs.aaaa {
            self.aaaa.insert(place, sig);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The code at each place, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = CodeKey> + '_ {
        self.entries.iter().map(|entry| entry.key)
    }

    /// Each entry, by place.
    pub fn entries(&self) -> impl Iterator<Item = (CodeKey, TerminalSigs)> + '_ {
        (self.keys().zip(0..)).map(|(key, place)| (key, self.get(place)))
    }

    /// The signatures at `place`.
    pub fn get(&self, place: u32) -> TerminalSigs {
        let entry = &self.entries[place as usize];
        TerminalSigs {
            hash: entry.hash,
            next: entry.next,
            a: self.address_sig(place, false),
            aaaa: self.address_sig(place, true),
            nsec3: entry.nsec3,
        }
    }

    /// The RRSIG over the A RRset at `place`, or over the AAAA one (`aaaa`), if it has one.
    pub fn address_sig(&self, place: u32, aaaa: bool) -> Option<Sig> {
        let entry = &self.entries[place as usize];
        match aaaa {
            false => entry.has_a.then_some(entry.a),
            true if entry.has_aaaa => self.aaaa.get(&place).copied(),
            true => None,
        }
    }

    /// When the first of the signatures at `place` expires ([`TerminalSigs::expiration`],
    /// without putting the entry together).
    fn expiration(&self, place: u32) -> u32 {
        [false, true]
            .into_iter()
            .filter_map(|aaaa| self.address_sig(place, aaaa))
            .fold(
                self.entries[place as usize].nsec3.expiration,
                |first, sig| first.min(sig.expiration),
            )
    }

    fn set(&mut self, place: u32, key: CodeKey, sigs: TerminalSigs) {
        let entry = &mut self.entries[place as usize];
        let had_aaaa = entry.has_aaaa;
        *entry = Entry::of(key, &sigs, entry.a);
        match sigs.aaaa {
            Some(sig) => {
                self.aaaa.insert(place, sig);
            }
            None if had_aaaa => {
                self.aaaa.remove(&place);
            }
            None => {}
        }
    }

    /// Frees `place`: it holds no AAAA signature from then on.
    fn free(&mut self, place: u32) {
        let entry = &mut self.entries[place as usize];
        if std::mem::take(&mut entry.has_aaaa) {
            self.aaaa.remove(&place);
        }
    }
}

impl Entry {
    /// The entry of `sigs`; `unused` fills the A signature's room when it has none.
    fn of(key: CodeKey, sigs: &TerminalSigs, unused: Sig) -> Self {
        Self {
            key,
            hash: sigs.hash,
            next: sigs.next,
            nsec3: sigs.nsec3,
            a: sigs.a.unwrap_or(unused),
            has_a: sigs.a.is_some(),
            has_aaaa: sigs.aaaa.is_some(),
        }
    }
}

impl FromIterator<(CodeKey, TerminalSigs)> for Slab {
    fn from_iter<I: IntoIterator<Item = (CodeKey, TerminalSigs)>>(entries: I) -> Self {
        let entries = entries.into_iter();
        let mut slab = Slab::with_capacity(entries.size_hint().0);
        for (key, sigs) in entries {
            slab.push(key, sigs);
        }
        slab
    }
}

/// Where each kept entry of a slab is, and which places are free.
#[derive(Debug)]
pub struct SlabIndex {
    places: Map<CodeKey, u32>,
    free: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct Terminals {
    index: Map<CodeKey, u32>,
    slab: Slab,
    free: Vec<u32>,
}

impl Terminals {
    /// The index of a slab whose codes by place are `keys` (the entries whose `kept` is
    /// true; the others' places are free), built apart from the slab so that start-up
    /// builds it on one core while another reads the slab for the chain, or from the codes
    /// alone (8 bytes a place, not an entry's 208).
    pub fn index(keys: impl ExactSizeIterator<Item = CodeKey>, kept: &[bool]) -> SlabIndex {
        let mut places = Map::with_capacity_and_hasher(keys.len(), Default::default());
        let mut free = Vec::new();
        for (place, key) in keys.enumerate() {
            if kept.get(place).copied().unwrap_or(false) {
                places.insert(key, place as u32);
            } else {
                free.push(place as u32);
            }
        }
        SlabIndex { places, free }
    }

    /// `slab` with its index (from [`Terminals::index`] over the same slab).
    pub fn from_parts(slab: Slab, index: SlabIndex) -> Self {
        Self {
            index: index.places,
            slab,
            free: index.free,
        }
    }

    pub fn get(&self, key: &CodeKey) -> Option<TerminalSigs> {
        let place = *self.index.get(key)?;
        Some(self.slab.get(place))
    }

    /// The RRSIG over `key`'s A RRset, or over its AAAA one (`aaaa`), if it has one: what
    /// a positive answer with DO needs, without the rest of its signatures.
    pub fn address_sig(&self, key: &CodeKey, aaaa: bool) -> Option<Sig> {
        let place = *self.index.get(key)?;
        self.slab.address_sig(place, aaaa)
    }

    /// Every entry, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (CodeKey, TerminalSigs)> + '_ {
        self.index
            .iter()
            .map(|(key, &place)| (*key, self.slab.get(place)))
    }

    /// Every entry, in the store's order of codes (as text): what is saved at a stop, in
    /// the order the next start reads the terminals. Only the places are sorted; each
    /// entry is put together as it is taken.
    pub fn in_store_order(&self) -> impl Iterator<Item = (CodeKey, TerminalSigs)> + '_ {
        let mut places: Vec<(CodeKey, u32)> = self
            .index
            .iter()
            .map(|(key, &place)| (*key, place))
            .collect();
        places.sort_unstable_by_key(|(key, _)| key.text_order());
        places
            .into_iter()
            .map(|(key, place)| (key, self.slab.get(place)))
    }

    /// Puts `sigs` for `key`; returns what it held before.
    pub fn insert(&mut self, key: CodeKey, sigs: TerminalSigs) -> Option<TerminalSigs> {
        if let Some(&place) = self.index.get(&key) {
            let old = self.slab.get(place);
            self.slab.set(place, key, sigs);
            return Some(old);
        }
        let place = match self.free.pop() {
            Some(place) => {
                self.slab.set(place, key, sigs);
                place
            }
            None => {
                self.slab.push(key, sigs);
                (self.slab.len() - 1) as u32
            }
        };
        self.index.insert(key, place);
        None
    }

    pub fn remove(&mut self, key: &CodeKey) -> Option<TerminalSigs> {
        let place = self.index.remove(key)?;
        self.free.push(place);
        let old = self.slab.get(place);
        self.slab.free(place);
        Some(old)
    }

    /// Every entry as a slab with no free place, for signing the zone again
    /// ([`super::whole::sign_zone`]): this one when it has none, which is how a start builds
    /// it, or one built from its entries.
    pub fn into_slab(self) -> Slab {
        if self.free.is_empty() && self.index.len() == self.slab.len() {
            return self.slab;
        }
        self.iter().collect()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Each terminal by its earliest signature expiration, soonest first: the refresh's
    /// order ([`super::Staging::set_expiring`]).
    /// The slab is read in place order and only the places are sorted: a million
    /// entries taken in the index's order would each cost a miss.
    pub fn expiry_order(&self) -> BTreeSet<(u32, CodeKey)> {
        let mut free = vec![false; self.slab.len()];
        for &place in &self.free {
            free[place as usize] = true;
        }
        let mut order: Vec<(u32, CodeKey)> = (self.slab.entries.iter().zip(free))
            .enumerate()
            .filter(|(_, (_, free))| !free)
            .map(|(place, (entry, _))| (self.slab.expiration(place as u32), entry.key))
            .collect();
        order.sort_unstable();
        order.into_iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(byte: u8) -> Sig {
        Sig {
            inception: 1,
            expiration: 2 + u32::from(byte),
            key_tag: 3,
            signature: [byte; 64],
        }
    }

    fn sigs(byte: u8) -> TerminalSigs {
        TerminalSigs {
            hash: [byte; 20],
            next: [byte; 20],
            a: Some(sig(byte)),
            aaaa: None,
            nsec3: sig(byte),
        }
    }

    /// An entry with both address families, or IPv6 alone.
    fn with_aaaa(byte: u8, a: bool) -> TerminalSigs {
        TerminalSigs {
            a: a.then_some(sig(byte)),
            aaaa: Some(sig(byte.wrapping_add(100))),
            ..sigs(byte)
        }
    }

    fn key(n: &str) -> CodeKey {
        CodeKey::from_digits(n.as_bytes()).unwrap()
    }

    #[test]
    fn places_not_kept_and_removed_ones_are_reused() {
        let slab: Slab = [
            (key("100"), sigs(1)),
            (key("101"), sigs(2)),
            (key("102"), sigs(3)),
        ]
        .into_iter()
        .collect();
        let index = Terminals::index(slab.keys(), &[true, false, true]);
        let mut terminals = Terminals::from_parts(slab, index);
        assert_eq!(terminals.len(), 2);
        assert_eq!(terminals.get(&key("101")), None);
        assert_eq!(terminals.get(&key("102")), Some(sigs(3)));
        terminals.insert(key("200"), sigs(4));
        assert_eq!(terminals.slab.len(), 3, "the free place is taken");
        assert_eq!(terminals.remove(&key("100")), Some(sigs(1)));
        assert_eq!(terminals.get(&key("100")), None);
        terminals.insert(key("201"), sigs(5));
        terminals.insert(key("102"), sigs(6));
        assert_eq!(terminals.slab.len(), 3);
        assert_eq!(terminals.get(&key("200")), Some(sigs(4)));
        assert_eq!(terminals.get(&key("201")), Some(sigs(5)));
        assert_eq!(terminals.get(&key("102")), Some(sigs(6)));
        assert_eq!(terminals.len(), 3);
        let mut iterated: Vec<_> = terminals.iter().collect();
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

    #[test]
    fn an_aaaa_signature_follows_its_terminal_and_not_its_place() {
        let mut terminals = Terminals::default();
        terminals.insert(key("300"), with_aaaa(1, true));
        terminals.insert(key("301"), with_aaaa(2, false));
        assert_eq!(terminals.get(&key("300")), Some(with_aaaa(1, true)));
        assert_eq!(terminals.get(&key("301")), Some(with_aaaa(2, false)));
        // One address RRset's signature alone, as a positive answer takes it.
        assert_eq!(terminals.address_sig(&key("300"), false), Some(sig(1)));
        assert_eq!(terminals.address_sig(&key("300"), true), Some(sig(101)));
        assert_eq!(terminals.address_sig(&key("301"), false), None);
        assert_eq!(terminals.address_sig(&key("301"), true), Some(sig(102)));
        assert_eq!(terminals.address_sig(&key("399"), false), None);
        // Its place goes to a terminal without IPv6: no AAAA signature comes with it.
        assert_eq!(terminals.remove(&key("300")), Some(with_aaaa(1, true)));
        terminals.insert(key("302"), sigs(3));
        assert_eq!(terminals.slab.len(), 2, "the free place is taken");
        assert_eq!(terminals.get(&key("302")), Some(sigs(3)));
        assert_eq!(terminals.address_sig(&key("302"), true), None);
        // A terminal that loses its IPv6 addresses loses its AAAA signature, and one that
        // gains them has one again.
        terminals.insert(key("301"), sigs(4));
        assert_eq!(terminals.get(&key("301")), Some(sigs(4)));
        terminals.insert(key("301"), with_aaaa(5, true));
        assert_eq!(terminals.get(&key("301")), Some(with_aaaa(5, true)));
        assert_eq!(terminals.slab.aaaa.len(), 1);
        let mut entries: Vec<_> = terminals.iter().collect();
        entries.sort_by_key(|(k, _)| *k);
        assert_eq!(
            entries,
            [(key("301"), with_aaaa(5, true)), (key("302"), sigs(3))]
        );
    }

    #[test]
    fn an_entry_is_smaller_than_the_signatures_it_holds() {
        assert!(std::mem::size_of::<Entry>() <= 208);
        assert!(
            std::mem::size_of::<Entry>() + 80 <= std::mem::size_of::<(CodeKey, TerminalSigs)>()
        );
    }

    #[test]
    fn the_store_order_is_the_codes_as_text() {
        let mut terminals = Terminals::default();
        for code in ["900", "1000", "10000", "1100"] {
            terminals.insert(key(code), sigs(code.len() as u8));
        }
        let order: Vec<String> = terminals
            .in_store_order()
            .map(|(k, _)| k.to_code().as_str().to_owned())
            .collect();
        assert_eq!(order, ["1000", "10000", "1100", "900"]);
        let expiry: Vec<(u32, CodeKey)> = terminals.expiry_order().into_iter().collect();
        assert_eq!(expiry.first(), Some(&(5, key("900"))));
    }
}
