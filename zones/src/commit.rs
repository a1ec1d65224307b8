//! The commit pipeline: writers see their changes at once, everyone else only once durable.
//! The [`Committer`] owns what it needs: the store, the changes staged but not yet durable,
//! the published view, the serial followers are told, the writer lock, and the refusal of
//! every change after a failed flush. The directory decides what a change is (its rules);
//! the committer makes it durable, then visible.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::dnssec::SignedDelta;
use crate::identity::CodeKey;
use crate::index::View;
use crate::journal::Delta;
use crate::model::Hot;
use crate::serial::Serial;
use crate::store::{Change, Store, StoreError};

/// Makes changes durable, then publishes them: the one way into the store and the view.
#[derive(Debug)]
pub(crate) struct Committer {
    store: Store,
    /// What queries, transfers and NOTIFY see: durable state only.
    view: RwLock<View>,
    /// Committed, not yet durable. Lock order: `pending`, then `view`.
    pending: Mutex<Pending>,
    /// One writer at a time stages a change (a signed start holds it until its signatures
    /// are in force).
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Set when a flush failed: the store's memory may not match the disk.
    poisoned: AtomicBool,
    /// Set when staged changes were not committed by a cluster (lost leadership): state
    /// kept beside the queue (a signed zone's staging) moved with them.
    lost_staged: AtomicBool,
    /// The newest published serial, for those who follow changes (NOTIFY).
    serial_tx: tokio::sync::watch::Sender<u32>,
}

impl Committer {
    /// Over `store`, with `view` published at `serial` and `next_seq` the journal sequence
    /// the next delta gets.
    pub fn new(store: Store, view: View, serial: Serial, next_seq: u64) -> Self {
        Self {
            store,
            view: RwLock::new(view),
            pending: Mutex::new(Pending::new(serial, next_seq)),
            writer: Arc::new(tokio::sync::Mutex::new(())),
            poisoned: AtomicBool::new(false),
            lost_staged: AtomicBool::new(false),
            serial_tx: tokio::sync::watch::Sender::new(serial.0),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Read access to the durable state. Hold it briefly: publication waits for it.
    pub fn view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Write access, for what moves the view outside the queue (an import's reset, a
    /// signed start). Lock order: [`Committer::pending`] first.
    pub fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer lock itself (a signed start holds it, owned, across threads).
    pub fn writer(&self) -> &Arc<tokio::sync::Mutex<()>> {
        &self.writer
    }

    /// Takes the writer lock, unless an earlier flush failed.
    pub async fn write_lock(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, StoreError> {
        let writer = self.writer.lock().await;
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        Ok(writer)
    }

    /// Stages `change` in the store (not yet durable); returns its change number, for the
    /// [`Publication`] that [`Committer::queue`] then takes. Call with the writer lock held,
    /// then [`Committer::durable`].
    ///
    /// The store's staging and the queueing need not be one critical section: the writer
    /// lock orders them, and a flush that covers the change before it is queued leaves it
    /// queued for this writer's own publication after its flush.
    pub fn stage(&self, change: &Change<'_>) -> Result<u64, StoreError> {
        self.store.stage(change)
    }

    /// Queues what publishing a staged change does; returns the serial after every staged
    /// change.
    pub fn queue(&self, publication: Publication) -> Serial {
        let mut pending = self.pending();
        pending.push(publication);
        pending.serial()
    }

    /// Releases the writer lock, then flushes: everything staged so far, this change's
    /// included, is on disk when this returns, and published to the view. A failed flush
    /// publishes nothing and refuses every later change until a restart.
    pub async fn durable(&self, writer: tokio::sync::MutexGuard<'_, ()>) -> Result<(), StoreError> {
        // Group commit: updates arriving meanwhile stage theirs and share the next flush.
        drop(writer);
        self.flush_or_poison().await?;
        self.publish();
        Ok(())
    }

    /// Flushes; a failure refuses every later change until a restart.
    pub async fn flush_or_poison(&self) -> Result<(), StoreError> {
        let flushed = self.store.flush().await;
        self.poison_on_failure(flushed)
    }

    /// After a flush: a failure refuses every later change until a restart.
    pub fn poison_on_failure(&self, flushed: Result<(), StoreError>) -> Result<(), StoreError> {
        if let Err(e) = flushed {
            if matches!(e, StoreError::NotReplicated(_)) {
                // Not the leader (any more): nothing staged will be published; what the
                // cluster commits reaches the view through `apply_replicated`.
                self.resync();
                self.lost_staged.store(true, Ordering::SeqCst);
                return Err(e);
            }
            self.poison();
            tracing::error!(error = %e, "flush to disk failed; refusing changes until restarted");
            return Err(e);
        }
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        Ok(())
    }

    /// Whether staged changes were lost since the last call (see `lost_staged`).
    pub fn take_lost_staged(&self) -> bool {
        self.lost_staged.swap(false, Ordering::SeqCst)
    }

    /// Refuses every later change until a restart.
    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
    }

    /// Moves the view to everything flushed, then tells followers the new serial. In a
    /// cluster, applying the log has moved the view already: what is flushed is only
    /// taken off the queue.
    pub fn publish(&self) {
        let flushed = self.store.flushed();
        let replicated = self.store.is_replicated();
        let serial = {
            let mut pending = self.pending();
            let mut view = self.view_mut();
            match replicated {
                true => pending.forget(flushed),
                false => pending.publish(flushed, &mut view),
            }
            view.serial()
        };
        self.announce(serial);
    }

    /// Forgets what is queued and starts the next change from the view (a node that is not,
    /// or is no longer, a cluster's leader: its view follows the log).
    pub fn resync(&self) {
        let mut pending = self.pending();
        let view = self.view();
        *pending = Pending::new(Serial(view.serial()), view.journal().next_seq());
    }

    /// Tells followers (NOTIFY) of a published serial; it only moves forward.
    pub fn announce(&self, serial: u32) {
        self.serial_tx.send_if_modified(|current| {
            let newer = Serial(serial).is_newer_than(Serial(*current));
            if newer {
                *current = serial;
            }
            newer
        });
    }

    /// Tells followers `serial` whatever it was (a signed start that kept its serial).
    pub fn announce_exactly(&self, serial: u32) {
        self.serial_tx.send_replace(serial);
    }

    /// A receiver that sees every new durable serial (for NOTIFY).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u32> {
        self.serial_tx.subscribe()
    }
}

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

    /// Whether nothing is queued.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Drops every change the store has flushed (up to commit `flushed`): a cluster's log
    /// applied them to the view already.
    pub fn forget(&mut self, flushed: u64) {
        while self.queue.front().is_some_and(|p| p.commit <= flushed) {
            self.queue.pop_front();
        }
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
