//! The commit pipeline: writers see their changes at once, everyone else only once durable.
//!
//! ```text
//!  writer lock held:
//!    plan against Staged (= published View + Pending)
//!    Store::commit (one transaction, not yet synced) ─▶ Pending::push (tagged with its commit)
//!  writer lock released (updates arriving now stage theirs and share the next sync):
//!    Store::flush (group commit) ─▶ Pending::publish(flushed) ─▶ View ─▶ serial announced
//!  then the caller acknowledges
//! ```
//!
//! The [`View`] (queries, transfers, TSIG key lookups, NOTIFY) therefore never shows a
//! serial, an address, a key or a journal delta that a crash could still take back: after a
//! restart the serial is never reused with other content, and a secondary never holds a
//! serial the primary lost. A failed flush publishes nothing; the directory then refuses
//! further changes (see [`crate::directory::Directory`]) because what the store holds in
//! memory is no longer known to match the disk.

use std::collections::{HashMap, VecDeque};

use crate::identity::{CallingCode, Kid, Mid};
use crate::index::View;
use crate::journal::Delta;
use crate::model::Entry;
use crate::serial::Serial;

/// One committed change, waiting for the flush that makes it durable.
#[derive(Debug)]
pub(crate) struct Publication {
    /// The store's commit number; published once the store has flushed up to it.
    pub commit: u64,
    /// The serial after the change, when it increased.
    pub serial: Option<Serial>,
    /// The journal delta describing the increase.
    pub delta: Option<Delta>,
    /// The journal was emptied first (the static zone changed).
    pub reset_journal: bool,
    /// Terminals replaced (`Some`) or removed (`None`).
    pub entries: Vec<(CallingCode, Option<Entry>)>,
}

/// Changes committed to the store but not yet known to be durable.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The serial after every staged change.
    serial: Serial,
    /// The journal sequence number the next delta gets.
    next_seq: u64,
    /// The staged state of each terminal changed since the last publication, with the
    /// commit that last changed it.
    entries: HashMap<CallingCode, (u64, Option<Entry>)>,
    queue: VecDeque<Publication>,
}

impl Pending {
    /// Nothing pending over a view at `serial` whose next journal sequence is `next_seq`.
    pub fn new(serial: Serial, next_seq: u64) -> Self {
        Self {
            serial,
            next_seq,
            entries: HashMap::new(),
            queue: VecDeque::new(),
        }
    }

    pub fn serial(&self) -> Serial {
        self.serial
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records a committed change; writers see it from now on.
    pub fn push(&mut self, publication: Publication) {
        if let Some(serial) = publication.serial {
            self.serial = serial;
        }
        if publication.delta.is_some() {
            self.next_seq += 1;
        }
        for (code, entry) in &publication.entries {
            self.entries
                .insert(code.clone(), (publication.commit, entry.clone()));
        }
        self.queue.push_back(publication);
    }

    /// Applies, in commit order, every change the store has flushed (up to commit
    /// `flushed`) to `view`.
    pub fn publish(&mut self, flushed: u64, view: &mut View) {
        while self.queue.front().is_some_and(|p| p.commit <= flushed) {
            let Some(publication) = self.queue.pop_front() else {
                break;
            };
            apply(view, publication);
        }
        self.entries.retain(|_, (commit, _)| *commit > flushed);
    }
}

fn apply(view: &mut View, publication: Publication) {
    if publication.reset_journal {
        view.clear_journal();
    }
    if let Some(serial) = publication.serial {
        view.set_serial(serial);
    }
    if let Some(delta) = publication.delta {
        view.push_delta(delta);
    }
    for (code, entry) in publication.entries {
        match entry {
            Some(entry) => view.insert(entry),
            None => view.remove(&code),
        }
    }
}

/// What a writer reads: the published view with the pending changes on top.
#[derive(Debug)]
pub(crate) struct Staged<'a> {
    pub view: &'a View,
    pub pending: &'a Pending,
}

impl Staged<'_> {
    pub fn terminal(&self, code: &CallingCode) -> Option<&Entry> {
        match self.pending.entries.get(code) {
            Some((_, entry)) => entry.as_ref(),
            None => self.view.terminal(code),
        }
    }

    pub fn serial(&self) -> Serial {
        self.pending.serial
    }

    /// The code registered for a KID and MID, pending registrations and removals included.
    pub fn machine(&self, kid: &Kid, mid: &Mid) -> Option<CallingCode> {
        let pending = self.pending.entries.values().find_map(|(_, e)| {
            e.as_ref()
                .filter(|e| e.terminal.kid == *kid && e.terminal.mid == *mid)
                .map(|e| e.terminal.code.clone())
        });
        if pending.is_some() {
            return pending;
        }
        let code = self.view.machine(kid, mid)?;
        // Changed since publication: the scan above found it unless it was removed.
        (!self.pending.entries.contains_key(code)).then(|| code.clone())
    }
}
