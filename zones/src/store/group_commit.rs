//! Group commit: changes staged in memory and numbered, then written many to one redb
//! transaction with one `fdatasync` (see the module documentation of [`super`]).

use super::*;

/// Group commit: what is staged, and how many changes are known to be on disk.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    staged: Mutex<Staged>,
    flushed: AtomicU64,
    /// How many syncs ran (each flush that wrote anything): for tests and metrics.
    pub(super) syncs: AtomicU64,
    /// One flush at a time; those who wait behind it usually find their change covered.
    flushing: tokio::sync::Mutex<()>,
    /// Fault injection for tests: the next flush fails as a failing disk would.
    fail_next_flush: AtomicBool,
    /// A flush failed: what was staged is gone, and no later flush may claim to cover it.
    failed: AtomicBool,
    /// Told the size and time of each group commit (metrics), once set.
    observer: std::sync::OnceLock<Arc<dyn FlushObserver>>,
    /// Where flushes go in a cluster ([`super::replicated`]); unset: written here.
    pub(super) replicator: std::sync::OnceLock<Arc<dyn super::replicated::Replicator>>,
    /// Signs the SOA at the serial a replicated batch leaves the zone at (a signed zone).
    pub(super) soa_sealer: std::sync::OnceLock<super::replicated::SoaSealer>,
    /// Ranges of change numbers (after, up to] whose replication failed: they are gone,
    /// and no later flush may claim to cover them.
    lost: Mutex<Vec<(u64, u64)>>,
}

impl Store {
    /// Stages one change for the next flush (no I/O): point reads see it at once; it is
    /// written, atomically, by [`Store::flush`]. Returns the change's number, which
    /// [`Store::flushed`] reaches once it is on disk.
    pub fn stage(&self, change: &Change<'_>) -> Result<u64, StoreError> {
        let writes = encode_change(change)?;
        Ok(self.staged().push(writes))
    }

    /// Writes a bulk change (an import's batch) durably, with everything staged before it, in
    /// one flush. Its rows are not kept for reads until then: call it holding the writer lock.
    pub async fn write_now(&self, change: &Change<'_>) -> Result<(), StoreError> {
        let writes = encode_change(change)?;
        self.staged().push_unread(writes);
        self.flush().await
    }

    /// Applies one change and makes it durable at once, blocking (at open, before anything
    /// is served and nothing is staged).
    pub fn commit_now(&self, change: &Change<'_>) -> Result<(), StoreError> {
        self.commit_all_now(std::slice::from_ref(change))
    }

    /// Applies changes, in order, in one transaction made durable at once (one sync),
    /// blocking (at open or in a restore, before anything is served and nothing is staged).
    pub fn commit_all_now(&self, changes: &[Change<'_>]) -> Result<(), StoreError> {
        let writes = changes
            .iter()
            .map(encode_change)
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.staged().count_direct();
        self.write(&writes)?;
        self.durability.flushed.fetch_max(n, Ordering::SeqCst);
        Ok(())
    }

    /// Writes changes, oldest first, in one durable transaction (one `fdatasync`).
    pub(super) fn write(&self, writes: &[Writes]) -> Result<(), StoreError> {
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        apply(&tx, writes)?;
        let saved = writes.last().and_then(|w| w.signatures_saved);
        let recorded = self.saved_recorded.load(Ordering::SeqCst);
        if saved.is_some() || recorded {
            let mut meta = tx.open_table(META).map_err(StoreError::io)?;
            match &saved {
                Some(id) => meta.insert(SAVED_KEY, &id[..]),
                None => meta.remove(SAVED_KEY),
            }
            .map_err(StoreError::io)?;
        }
        tx.commit().map_err(StoreError::io)?;
        match saved {
            Some(_) => self.saved_recorded.store(true, Ordering::SeqCst),
            None if recorded => self.saved_forgotten(),
            None => {}
        }
        self.durability.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Gives the file back the space a bulk change freed (a streamed import leaves its
    /// staging behind): waits for every transaction, then rewrites the file compactly.
    pub async fn compact(&self) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = store.db.write().unwrap_or_else(|p| p.into_inner());
            db.compact().map(|_| ()).map_err(StoreError::io)
        })
        .await
        .map_err(StoreError::io)?
    }

    /// The newest commit number known to be on disk.
    pub fn flushed(&self) -> u64 {
        self.durability.flushed.load(Ordering::SeqCst)
    }

    /// How many syncs have run since the store was opened.
    pub fn syncs(&self) -> u64 {
        self.durability.syncs.load(Ordering::SeqCst)
    }

    /// Reports every later group commit to `observer` (only the first one set counts).
    pub fn observe(&self, observer: Arc<dyn FlushObserver>) {
        let _ = self.durability.observer.set(observer);
    }

    /// Makes the next flush fail (fault injection for tests of the commit pipeline).
    pub fn inject_flush_failure(&self) {
        self.durability
            .fail_next_flush
            .store(true, Ordering::SeqCst);
    }

    /// Makes every change staged so far durable: one transaction and one `fdatasync` for
    /// all of them (group commit). Callers queue for one flush at a time, and one whose
    /// change a flush already covered returns at once.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let d = &self.durability;
        let wanted = self.staged().newest();
        let _turn = d.flushing.lock().await;
        if d.failed.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        if let Some(lost) = self.lost(wanted) {
            return Err(lost);
        }
        if d.flushed.load(Ordering::SeqCst) >= wanted {
            return Ok(());
        }
        if d.fail_next_flush.swap(false, Ordering::SeqCst) {
            d.failed.store(true, Ordering::SeqCst);
            self.staged().discard();
            return Err(StoreError::Io("injected flush failure".into()));
        }
        let (batch, covered) = self.staged().take();
        let (changes, started) = (batch.len(), std::time::Instant::now());
        if let Some(replicator) = d.replicator.get() {
            self.replicate(replicator.as_ref(), &batch, covered).await?;
            if let Some(observer) = d.observer.get() {
                observer.flushed(started.elapsed(), changes);
            }
            return Ok(());
        }
        let store = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let written = store.write(&batch);
            // Readers take their redb snapshot under this lock: they see the rows here or,
            // once retired, in redb (written), or what redb held before (failed).
            let mut staged = store.staged();
            match written {
                Ok(()) => staged.landed(),
                Err(_) => staged.discard(),
            }
            written
        })
        .await
        .map_err(StoreError::io)
        .and_then(|written| written);
        if written.is_err() {
            d.failed.store(true, Ordering::SeqCst);
            // Also when the write itself panicked and never reached its own discard.
            self.staged().discard();
        }
        written?;
        d.flushed.fetch_max(covered, Ordering::SeqCst);
        if let Some(observer) = d.observer.get() {
            observer.flushed(started.elapsed(), changes);
        }
        Ok(())
    }

    /// A cluster's flush: the batch goes to the log; once committed and applied here (which
    /// writes its rows), its changes count as flushed. A failure (no longer the leader)
    /// discards everything staged, without refusing later changes: the log, not this
    /// node's memory, decides what the store holds.
    async fn replicate(
        &self,
        replicator: &dyn super::replicated::Replicator,
        batch: &[Writes],
        covered: u64,
    ) -> Result<(), StoreError> {
        let d = &self.durability;
        let seal = d
            .soa_sealer
            .get()
            .map(|sealer| super::replicated::seal(sealer, batch))
            .transpose()?
            .flatten();
        let replicated = match super::replicated::Replicated::encode(batch.iter().chain(&seal)) {
            Ok(entry) => replicator
                .replicate(entry)
                .await
                .map_err(StoreError::NotReplicated),
            Err(e) => Err(e),
        };
        let mut staged = self.staged();
        match &replicated {
            Ok(()) => staged.landed(),
            Err(_) => {
                let after = d.flushed.load(Ordering::SeqCst);
                let newest = staged.newest();
                staged.discard();
                self.durability
                    .lost
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((after, newest));
            }
        }
        drop(staged);
        replicated?;
        d.flushed.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }

    /// The error of change `wanted` when its replication failed.
    fn lost(&self, wanted: u64) -> Option<StoreError> {
        let lost = self
            .durability
            .lost
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        lost.iter()
            .any(|(after, upto)| *after < wanted && wanted <= *upto)
            .then(|| {
                StoreError::NotReplicated("the change was not committed by the cluster".into())
            })
    }

    pub(super) fn staged(&self) -> MutexGuard<'_, Staged> {
        self.durability
            .staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes encoded changes, oldest first, inside `tx`.
pub(super) fn apply(tx: &WriteTransaction, batch: &[Writes]) -> Result<(), StoreError> {
    apply_rows(tx, batch)?;
    for w in batch {
        import_machines::stage(tx, w.import_machines.clone())?;
    }
    if batch.iter().any(|w| w.finish_import) {
        // The committed import's KID/MID pairs go into `machines` in key order, and its
        // list of codes goes, in the commit's own transaction: a list that outlived its
        // commit would be taken for the next import's, and removed with it.
        import_machines::merge_into_machines(tx)?;
        tx.delete_table(IMPORTING).map_err(StoreError::io)?;
        tx.open_table(IMPORTING).map_err(StoreError::io)?;
    }
    Ok(())
}
