//! The signed zone answered in place from the copy saved at the last clean stop, while a
//! signed start reads that copy whole (see [`crate::directory::SignedStart`]): answers with
//! DO are given as soon as the terminals are read, at the time an unsigned start gives its
//! first answers, instead of after the signed zone is built in memory.
//!
//! The copy is looked up where it lies ([`SavedSigs`], which the store implements), and the
//! static names, a handful, are held here. It is answered from only when it is the signed
//! zone as the last stop left it, whole and current: no commit came after it (the store
//! checks its id), the zone was not served unsigned since, every signature in it is by the
//! active key and holds for at least [`MARGIN`] more, and so do the stored static names'
//! signatures, whose NSEC3s name the next hashes of the chain it makes with them. Anything
//! signed at the start (what comes due within [`crate::dnssec::whole::REFRESH`]) is published with
//! the signed zone in memory, under a new serial, as before.
//!
//! Nothing changes the zone meanwhile (the signed start holds the writer lock), and
//! transfers wait for the signed zone in memory, which holds the whole chain to send.

use crate::dnssec::nsec3::Hash;
use crate::dnssec::statics::Statics;
use crate::dnssec::{Owner, TerminalSigs};
use crate::identity::CodeKey;

/// How long every signature answered from in place must hold past the start: far beyond
/// the seconds the whole read takes.
pub const MARGIN: u32 = 3600;

/// The terminals' signatures as saved, looked up in place.
pub trait SavedSigs: Send + Sync + std::fmt::Debug {
    /// How many terminals.
    fn count(&self) -> u64;
    /// The earliest expiration of all the signatures (`u32::MAX` with none).
    fn expires(&self) -> u32;
    /// The key tag of every signature, when one key made them all.
    fn key_tag(&self) -> Option<u16>;
    /// A terminal's signatures.
    fn terminal(&self, key: CodeKey) -> Option<TerminalSigs>;
    /// In the order of hashes, the place of the first terminal whose hash is not below
    /// `hash` (`count` when there is none).
    fn lower_bound(&self, hash: &Hash) -> Option<u64>;
    /// The hash at a place in the order of hashes.
    fn hash_at(&self, place: u64) -> Option<Hash>;
    /// The terminal at a place in the order of hashes.
    fn owner_at(&self, place: u64) -> Option<CodeKey>;
}

/// The saved terminals and the static names: the chain and the signatures answers read.
#[derive(Debug)]
pub struct Preview {
    saved: Box<dyn SavedSigs>,
    /// The static names' hashes with their places in [`Statics::names`], sorted.
    statics: Vec<(Hash, u32)>,
}

impl Preview {
    /// The saved terminals with the static names of `statics`, when every signature of the
    /// terminals is by `key_tag` and holds until `until`.
    pub fn new(
        saved: Box<dyn SavedSigs>,
        statics: &Statics,
        key_tag: u16,
        until: u32,
    ) -> Option<Self> {
        let by_key = saved.count() == 0 || saved.key_tag() == Some(key_tag);
        if !by_key || saved.expires() < until {
            return None;
        }
        let mut hashes: Vec<(Hash, u32)> = (statics.names.iter().enumerate())
            .map(|(place, name)| (name.hash, place as u32))
            .collect();
        hashes.sort_unstable();
        Some(Self {
            saved,
            statics: hashes,
        })
    }

    pub fn terminal(&self, key: CodeKey) -> Option<TerminalSigs> {
        self.saved.terminal(key)
    }

    /// What owns `hash` in the chain.
    pub fn get(&self, hash: &Hash) -> Option<Owner> {
        if let Ok(at) = self.statics.binary_search_by(|(h, _)| h.cmp(hash)) {
            return Some(Owner::Static(self.statics[at].1));
        }
        let at = self.saved.lower_bound(hash)?;
        if at < self.saved.count() && self.saved.hash_at(at)? == *hash {
            return Some(Owner::Terminal(self.saved.owner_at(at)?));
        }
        None
    }

    /// The entry before `hash` (which need not be in the chain), wrapping to the last: the
    /// NSEC3 that covers `hash` when `hash` is not in the chain.
    pub fn before(&self, hash: &Hash) -> Option<(Hash, Owner)> {
        let at = self.statics.partition_point(|(h, _)| h < hash);
        let static_before = at.checked_sub(1).map(|at| self.statics[at]);
        let saved_at = self.saved.lower_bound(hash)?;
        let saved_before = match saved_at.checked_sub(1) {
            Some(place) => Some(self.saved_entry(place)?),
            None => None,
        };
        let (static_before, saved_before) = match (static_before, saved_before) {
            (None, None) => {
                // Below every hash: the last of all.
                let last = match self.saved.count().checked_sub(1) {
                    Some(place) => Some(self.saved_entry(place)?),
                    None => None,
                };
                (self.statics.last().copied(), last)
            }
            either => either,
        };
        let static_before = static_before.map(|(h, place)| (h, Owner::Static(place)));
        match (static_before, saved_before) {
            (Some(s), Some(t)) => Some(if s.0 > t.0 { s } else { t }),
            (s, t) => s.or(t),
        }
    }

    /// The hash after `hash` in the chain, wrapping to the first.
    pub fn next(&self, hash: &Hash) -> Option<Hash> {
        let at = self.statics.partition_point(|(h, _)| h <= hash);
        let static_after = self.statics.get(at).map(|(h, _)| *h);
        let mut saved_at = self.saved.lower_bound(hash)?;
        if saved_at < self.saved.count() && self.saved.hash_at(saved_at)? == *hash {
            saved_at += 1;
        }
        let saved_after = match saved_at < self.saved.count() {
            true => Some(self.saved.hash_at(saved_at)?),
            false => None,
        };
        let (static_after, saved_after) = match (static_after, saved_after) {
            (None, None) => {
                // Above every hash: the first of all.
                let first = match self.saved.count() {
                    0 => None,
                    _ => Some(self.saved.hash_at(0)?),
                };
                (self.statics.first().map(|(h, _)| *h), first)
            }
            either => either,
        };
        match (static_after, saved_after) {
            (Some(s), Some(t)) => Some(s.min(t)),
            (s, t) => s.or(t),
        }
    }

    fn saved_entry(&self, place: u64) -> Option<(Hash, Owner)> {
        Some((
            self.saved.hash_at(place)?,
            Owner::Terminal(self.saved.owner_at(place)?),
        ))
    }
}
