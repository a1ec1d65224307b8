//! The published index: the durable state that queries, transfers and NOTIFY read.
//!
//! It moves only when the [`crate::commit`] pipeline publishes changes whose flush has
//! returned, so nothing read from it can be lost by a crash.

use std::collections::{BTreeSet, HashMap};

use crate::identity::{CallingCode, Kid, Mid};
use crate::journal::{Delta, Journal};
use crate::model::Entry;
use crate::serial::Serial;

/// The in-memory state that queries read.
#[derive(Debug)]
pub struct View {
    serial: Serial,
    terminals: HashMap<CallingCode, Entry>,
    /// Key name (lower case, fully qualified) to code.
    keys: HashMap<String, CallingCode>,
    /// `<kid>/<mid>` to code.
    machines: HashMap<(Kid, Mid), CallingCode>,
    /// Recent deltas, for IXFR.
    journal: Journal,
    /// Lease ends, soonest first, so the expiry sweep touches only what expires.
    leases: BTreeSet<(u64, CallingCode)>,
}

impl View {
    /// An index at `serial` over `entries`, with the journal that leads to it.
    pub fn new(serial: Serial, journal: Journal, entries: impl IntoIterator<Item = Entry>) -> Self {
        let mut view = Self {
            serial,
            terminals: HashMap::new(),
            keys: HashMap::new(),
            machines: HashMap::new(),
            journal,
            leases: BTreeSet::new(),
        };
        for entry in entries {
            view.insert(entry);
        }
        view
    }

    pub fn serial(&self) -> u32 {
        self.serial.0
    }

    pub fn terminal(&self, code: &CallingCode) -> Option<&Entry> {
        self.terminals.get(code)
    }

    /// The terminal whose key has this name (lower case, fully qualified).
    pub fn terminal_by_key(&self, key_name: &str) -> Option<&Entry> {
        self.keys.get(key_name).and_then(|c| self.terminals.get(c))
    }

    /// The code registered for a KID and MID.
    pub fn machine(&self, kid: &Kid, mid: &Mid) -> Option<&CallingCode> {
        self.machines.get(&(kid.clone(), mid.clone()))
    }

    pub fn len(&self) -> usize {
        self.terminals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terminals.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.terminals.values()
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Codes whose lease ended by `now`.
    pub fn expired_by(&self, now: u64) -> Vec<CallingCode> {
        self.leases
            .iter()
            .take_while(|(end, _)| *end <= now)
            .map(|(_, code)| code.clone())
            .collect()
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

    pub(crate) fn insert(&mut self, entry: Entry) {
        let t = &entry.terminal;
        self.forget_lease(&t.code);
        if let Some(end) = entry.presence.lease_expires {
            self.leases.insert((end, t.code.clone()));
        }
        self.keys.insert(t.key.name.clone(), t.code.clone());
        self.machines
            .insert((t.kid.clone(), t.mid.clone()), t.code.clone());
        self.terminals.insert(t.code.clone(), entry);
    }

    pub(crate) fn remove(&mut self, code: &CallingCode) {
        self.forget_lease(code);
        if let Some(entry) = self.terminals.remove(code) {
            let t = &entry.terminal;
            self.keys.remove(&t.key.name);
            self.machines.remove(&(t.kid.clone(), t.mid.clone()));
        }
    }

    fn forget_lease(&mut self, code: &CallingCode) {
        if let Some(end) = self
            .terminals
            .get(code)
            .and_then(|e| e.presence.lease_expires)
        {
            self.leases.remove(&(end, code.clone()));
        }
    }
}
