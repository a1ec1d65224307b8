//! The commit pipeline: writers see their changes at once, everyone else only once durable.
//!
//! ```text
//!  writer lock held:
//!    read the terminal from the Store (every staged change, durable or not)
//!    plan ─▶ Store::stage (queued, no I/O) ─▶ Pending::push (its change number)
//!  writer lock released (updates arriving now stage theirs and share the next flush):
//!    Store::flush (everything staged: one transaction, one fdatasync)
//!      ─▶ Pending::publish(flushed) ─▶ View ─▶ serial announced
//!  then the caller acknowledges
//! ```
//!
//! The [`View`] (queries, transfers, TSIG key lookups, NOTIFY) therefore never shows a
//! serial, an address, a registration or a journal delta that a crash could still take
//! back: after a restart the serial is never reused with other content, and a secondary never
//! holds a serial the primary lost. A failed flush publishes nothing; the directory then
//! refuses further changes (see [`crate::directory::Directory`]) because what the store holds
//! in memory is no longer known to match the disk.

use std::collections::VecDeque;

use crate::dnssec::SignedDelta;
use crate::identity::CodeKey;
use crate::index::View;
use crate::journal::Delta;
use crate::model::Hot;
use crate::serial::Serial;

/// One staged change, waiting for the flush that makes it durable.
#[derive(Debug)]
pub(crate) struct Publication {
    /// The store's change number; published once the store has flushed up to it.
    pub commit: u64,
    /// The serial after the change, when it increased.
    pub serial: Option<Serial>,
    /// The journal delta describing the increase.
    pub delta: Option<Delta>,
    /// The journal was emptied (a change too large to journal).
    pub reset_journal: bool,
    /// Terminals replaced (`Some`) or removed (`None`).
    pub entries: Vec<(CodeKey, Option<Hot>)>,
    /// The change's signatures (a signed zone).
    pub signed: Option<SignedDelta>,
}

/// Changes committed to the store but not yet known to be durable.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The serial after every staged change.
    serial: Serial,
    /// The journal sequence number the next delta gets.
    next_seq: u64,
    queue: VecDeque<Publication>,
}

impl Pending {
    /// Nothing pending over a view at `serial` whose next journal sequence is `next_seq`.
    pub fn new(serial: Serial, next_seq: u64) -> Self {
        Self {
            serial,
            next_seq,
            queue: VecDeque::new(),
        }
    }

    pub fn serial(&self) -> Serial {
        self.serial
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Moves the staged serial on for a change published outside the queue (an import).
    pub fn advance(&mut self, serial: Serial) {
        self.serial = serial;
    }

    /// Records a committed change, to be published once durable.
    pub fn push(&mut self, publication: Publication) {
        if let Some(serial) = publication.serial {
            self.serial = serial;
        }
        if publication.delta.is_some() {
            self.next_seq += 1;
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
    if let (Some(signed), Some(serial)) = (publication.signed, publication.serial) {
        view.apply_signed(signed, serial.0);
    }
    for (key, hot) in publication.entries {
        match hot {
            Some(hot) => view.insert(key, hot),
            None => view.remove(key),
        }
    }
}
