//! The published index: the durable state that queries, transfers and NOTIFY read.
//!
//! Per terminal only what a query needs ([`Hot`]: addresses inline, lease end), keyed by the
//! code as an integer ([`CodeKey`]): no strings, no key material, no per-terminal allocation
//! for the common one or two addresses per family. Everything else is in the store.
//!
//! It moves only when the [`crate::commit`] pipeline publishes changes whose flush has
//! returned, so nothing read from it can be lost by a crash.

use std::collections::{BTreeSet, HashMap};

use crate::identity::{CallingCode, CodeKey};
use crate::journal::{Delta, Journal};
use crate::model::Hot;
use crate::serial::Serial;

/// The in-memory state that queries read.
#[derive(Debug)]
pub struct View {
    serial: Serial,
    terminals: HashMap<CodeKey, Hot>,
    /// Recent deltas, for IXFR.
    journal: Journal,
    /// Lease ends, soonest first, so the expiry sweep touches only what expires.
    leases: BTreeSet<(u64, CodeKey)>,
}

impl View {
    /// An index at `serial` over `entries`, with the journal that leads to it.
    pub fn new(
        serial: Serial,
        journal: Journal,
        entries: impl IntoIterator<Item = (CodeKey, Hot)>,
    ) -> Self {
        let entries = entries.into_iter();
        let mut view = Self {
            serial,
            terminals: HashMap::with_capacity(entries.size_hint().0),
            journal,
            leases: BTreeSet::new(),
        };
        for (key, hot) in entries {
            view.insert(key, hot);
        }
        view
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

    pub fn is_empty(&self) -> bool {
        self.terminals.is_empty()
    }

    /// Every terminal, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (CodeKey, &Hot)> {
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

    pub(crate) fn set_serial(&mut self, serial: Serial) {
        self.serial = serial;
    }

    pub(crate) fn push_delta(&mut self, delta: Delta) {
        self.journal.push(delta);
    }

    pub(crate) fn insert(&mut self, key: CodeKey, hot: Hot) {
        self.forget_lease(key);
        if let Some(end) = hot.lease_expires {
            self.leases.insert((end, key));
        }
        self.terminals.insert(key, hot);
    }

    pub(crate) fn remove(&mut self, key: CodeKey) {
        self.forget_lease(key);
        self.terminals.remove(&key);
    }

    fn forget_lease(&mut self, key: CodeKey) {
        if let Some(end) = self.terminals.get(&key).and_then(|h| h.lease_expires) {
            self.leases.remove(&(end, key));
        }
    }
}
