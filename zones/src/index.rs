//! The published index: the durable state that queries, transfers and NOTIFY read.
//!
//! Per terminal only what a query needs ([`Hot`]: addresses inline, lease end), keyed by the
//! code as an integer ([`CodeKey`]): no strings, no key material, no per-terminal allocation
//! for the common one or two addresses per family. Everything else is in the store.
//!
//! It moves only when the [`crate::commit`] pipeline publishes changes whose flush has
//! returned, so nothing read from it can be lost by a crash.

use std::collections::BTreeSet;

use indexmap::IndexMap;

use crate::dnssec::{SignedDelta, SignedZone};
use crate::identity::{CallingCode, CodeKey};
use crate::journal::{Delta, Journal};
use crate::model::Hot;
use crate::serial::Serial;

/// The in-memory state that queries read.
#[derive(Debug)]
pub struct View {
    serial: Serial,
    terminals: IndexMap<CodeKey, Hot, foldhash::fast::RandomState>,
    /// Recent deltas, for IXFR.
    journal: Journal,
    /// Lease ends, soonest first, so the expiry sweep touches only what expires.
    leases: BTreeSet<(u64, CodeKey)>,
    /// How many terminals hold at least one address (kept as they change, for metrics).
    online: usize,
    /// Where the zone's signatures stand.
    signing: Signing,
}

/// Where a view's signatures stand: one state, read by every answer.
#[derive(Debug, Default)]
pub enum Signing {
    /// DNSSEC off.
    #[default]
    Unsigned,
    /// A signed start is reading the signatures (see [`crate::directory::SignedStart`]):
    /// transfers wait; answers with DO are not ready, or (`Some`) come from the copy saved at
    /// the last stop, read in place (see [`crate::dnssec::warm_start::preview`]). A start that fails
    /// stops the server, so a view never serves a failed one.
    Loading(Option<SignedZone>),
    /// The published signatures, in force.
    Ready(SignedZone),
}

impl View {
    /// An empty index at `serial` with room for `capacity` terminals, and the journal that
    /// leads to it.
    pub fn new(serial: Serial, journal: Journal, capacity: usize) -> Self {
        Self {
            serial,
            terminals: IndexMap::with_capacity_and_hasher(capacity, Default::default()),
            journal,
            leases: BTreeSet::new(),
            online: 0,
            signing: Signing::Unsigned,
        }
    }

    pub fn serial(&self) -> u32 {
        self.serial.0
    }

    /// The terminal registered under `code`, if its registration is durable.
    pub fn terminal(&self, code: &CallingCode) -> Option<&Hot> {
        self.terminals.get(&CodeKey::from(code))
    }

    /// The same, by the code's integer key.
    pub fn get(&self, key: CodeKey) -> Option<&Hot> {
        self.terminals.get(&key)
    }

    pub fn len(&self) -> usize {
        self.terminals.len()
    }

    /// Terminals that hold at least one address (a lease that ran out a moment ago still
    /// counts until the expiry sweep takes it offline, within a second).
    pub fn online(&self) -> usize {
        self.online
    }

    pub fn is_empty(&self) -> bool {
        self.terminals.is_empty()
    }

    /// Every terminal, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (CodeKey, &Hot)> + Clone {
        self.terminals.iter().map(|(k, h)| (*k, h))
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Codes whose lease ended by `now`.
    pub fn expired_by(&self, now: u64) -> Vec<CodeKey> {
        self.leases
            .iter()
            .take_while(|(end, _)| *end <= now)
            .map(|(_, key)| *key)
            .collect()
    }

    /// Where the zone's signatures stand.
    pub fn signing(&self) -> &Signing {
        &self.signing
    }

    /// The signatures answers with DO read, when the zone is signed.
    pub fn signed(&self) -> Option<&SignedZone> {
        match &self.signing {
            Signing::Ready(signed) | Signing::Loading(Some(signed)) => Some(signed),
            Signing::Unsigned | Signing::Loading(None) => None,
        }
    }

    /// True while a signed zone's signatures are being read at start-up: transfers wait.
    pub fn signatures_pending(&self) -> bool {
        matches!(self.signing, Signing::Loading(_))
    }

    pub(crate) fn set_signatures_pending(&mut self) {
        self.signing = Signing::Loading(None);
    }

    /// True while answers with DO cannot be given: the signatures are being read at
    /// start-up, and are not answered from in place meanwhile.
    pub fn signed_answers_pending(&self) -> bool {
        matches!(self.signing, Signing::Loading(None))
    }

    /// Answers with DO are given from `signed`, the signatures saved at the last stop read
    /// in place, while they are read; transfers still wait.
    pub(crate) fn set_in_place(&mut self, signed: SignedZone) {
        self.signing = Signing::Loading(Some(signed));
    }

    pub(crate) fn set_signed(&mut self, signed: SignedZone) {
        self.signing = Signing::Ready(signed);
    }

    /// Applies the signatures of the change that moved the zone to `serial`.
    pub(crate) fn apply_signed(&mut self, delta: SignedDelta, serial: u32) {
        if let Signing::Ready(signed) | Signing::Loading(Some(signed)) = &mut self.signing {
            signed.apply(delta, serial);
        }
    }

    pub(crate) fn set_serial(&mut self, serial: Serial) {
        self.serial = serial;
    }

    pub(crate) fn push_delta(&mut self, delta: Delta) {
        self.journal.push(delta);
    }

    pub(crate) fn clear_journal(&mut self) {
        self.journal.clear();
    }

    /// Makes room for `additional` terminals at once (a bulk import), so the index does not
    /// grow by doubling while old and new tables both hold memory.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.terminals.reserve_exact(additional);
    }

    /// Adds or replaces a terminal (at start-up and on publication): one lookup in the map,
    /// which at start-up is most of the cost of building it.
    pub fn insert(&mut self, key: CodeKey, hot: Hot) {
        let lease = hot.lease_expires;
        self.online += usize::from(!hot.addresses.is_empty());
        if let Some(old) = self.terminals.insert(key, hot) {
            self.online -= usize::from(!old.addresses.is_empty());
            if let Some(end) = old.lease_expires {
                self.leases.remove(&(end.get(), key));
            }
        }
        if let Some(end) = lease {
            self.leases.insert((end.get(), key));
        }
    }

    pub(crate) fn remove(&mut self, key: CodeKey) {
        self.forget_lease(key);
        if let Some(old) = self.terminals.swap_remove(&key) {
            self.online -= usize::from(!old.addresses.is_empty());
        }
    }

    fn forget_lease(&mut self, key: CodeKey) {
        if let Some(end) = self.terminals.get(&key).and_then(|h| h.lease_expires) {
            self.leases.remove(&(end.get(), key));
        }
    }
}
