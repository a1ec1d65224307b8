//! The directory: registered terminals and their current addresses; every change goes
//! through it.
//!
//! Each change takes the one writer lock, reads the terminal from the store (which shows
//! every staged change, durable or not), runs its rules, stages its writes and releases the
//! lock; then the group flush makes it durable and the [`crate::commit`]
//! pipeline publishes it to the [`View`] (the lean in-memory index that queries read); only
//! then is it acknowledged.
//!
//! ```text
//!  register / import ─┐
//!  update (RFC 2136) ─┼─▶ rules (update::plan, policy, replay) ─▶ Directory::stage
//!  unregister, rotate ┤        ─▶ Store::stage ─▶ Pending ─▶ Store::flush ─▶ View ─▶ reply
//!  expire (leases)  ──┘
//! ```
//!
//! Journal deltas always describe the zone as secondaries were sent it: the stored
//! addresses at the previous serial, not what a query would answer (a terminal whose lease
//! ran out answers no addresses to queries before the expiry sweep has removed them from
//! the zone).

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};

use crate::commit::{Pending, Publication};
use crate::identity::{CallingCode, CodeKey, Kid, Mid};
use crate::journal::{AddressChange, Delta, Journal};
use crate::key::{Algorithm, KeyError, Secret, TerminalKeyName, TsigKey};
use crate::policy::{self, PolicyError};
use crate::replay;
use crate::serial::Serial;
use crate::store::{Change, Store, StoreError};
use crate::update::{self, UpdateError, UpdateMessage, ZoneContents};
use crate::zone::{NamePlace, Zone};

pub use crate::index::View;
pub use crate::limits::Limits;
pub use crate::model::{AddressSet, Addresses, Entry, Hot, Presence, Terminal};
pub use crate::replay::Freshness;

/// One terminal of a bulk import: its registration and, optionally, its addresses.
#[derive(Clone, Debug)]
pub struct Import {
    pub registration: Registration,
    pub addresses: Addresses,
}

/// What a registration asks for.
#[derive(Clone, Debug)]
pub struct Registration {
    pub code: CallingCode,
    pub kid: Kid,
    pub mid: Mid,
    pub algorithm: Algorithm,
}

/// Why a directory operation was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(
        "calling code {code} is already registered to KID {kid}; use rotate-key to issue a new key"
    )]
    CodeTaken { code: CallingCode, kid: Kid },
    #[error("KID {kid} with MID {mid} is already registered as code {code}; unregister it first")]
    MachineTaken {
        kid: Kid,
        mid: Mid,
        code: CallingCode,
    },
    #[error("calling code {0} is not registered")]
    UnknownCode(CallingCode),
    #[error("calling code {0} is part of an import that is not committed yet")]
    Importing(CallingCode),
    #[error("{0} appears twice in the import")]
    Duplicate(String),
    #[error("addresses of {code}: {reason}")]
    Policy {
        code: CallingCode,
        reason: PolicyError,
    },
    #[error(
        "update for {code} is not fresh (signed at {time_signed}, a replay or older than the last update from this key)"
    )]
    Stale { code: CallingCode, time_signed: u64 },
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the zone file is for {loaded}, but this server serves {served}; a new origin needs a restart"
    )]
    OtherOrigin { loaded: String, served: String },
}

/// The result of an accepted update.
#[derive(Clone, Debug)]
pub struct UpdateOutcome {
    pub code: CallingCode,
    pub addresses: Addresses,
    /// False when the update left the zone as it was (no serial increase).
    pub changed: bool,
    pub serial: u32,
    /// The lease granted, in seconds; `None`: no expiry.
    pub lease: Option<u32>,
}

/// The zone contents as the update engine reads them: static records plus terminals, as
/// committed (the writer's view).
struct Contents<'a> {
    zone: &'a Zone,
    store: &'a Store,
    serial: Serial,
    now: u64,
}

impl Contents<'_> {
    /// A terminal as committed; a store error reads as "not there" (the update then fails
    /// its prerequisites rather than acting on a guess).
    fn terminal(&self, code: &CallingCode) -> Option<Entry> {
        self.store.terminal(code).ok().flatten()
    }
}

impl ZoneContents for Contents<'_> {
    fn rrset(&self, name: &LowerName, rtype: RecordType) -> Vec<RData> {
        match self.zone.place(&Name::from(name.clone())) {
            NamePlace::Terminal(code) => self
                .terminal(&code)
                .map(|e| update::address_rdata(e.presence.live(self.now), rtype))
                .unwrap_or_default(),
            NamePlace::Apex if rtype == RecordType::SOA => {
                vec![self.zone.soa_record(self.serial.0).data]
            }
            _ => self
                .zone
                .rrset(name, rtype)
                .iter()
                .map(|r| r.data.clone())
                .collect(),
        }
    }

    fn name_in_use(&self, name: &LowerName) -> bool {
        match self.zone.place(&Name::from(name.clone())) {
            NamePlace::Terminal(code) => self.terminal(&code).is_some(),
            NamePlace::Apex => true,
            _ => self.zone.static_name_exists(name),
        }
    }
}

/// A change to more terminals than this is not journalled: an IXFR of it would be larger
/// than the zone, so the journal is emptied and secondaries take the whole zone (as BIND and
/// Knot fall back to AXFR when the difference outgrows the zone).
const LARGEST_DELTA: usize = 10_000;

/// How many imported terminals the index takes under one write lock.
const IMPORT_CHUNK: usize = 10_000;

/// One change for [`Directory::commit`]: what the store writes, how the zone changed (a
/// serial increase when not empty), and the terminals' new state.
struct Work<'a> {
    store: Change<'a>,
    zone_changes: Vec<AddressChange>,
    entries: Vec<(CodeKey, Option<Hot>)>,
}

/// The directory handle: cheap to clone, shared by every request.
#[derive(Clone, Debug)]
pub struct Directory {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The static zone; a reload swaps it (see [`Directory::reload_zone`]).
    zone: ArcSwap<Zone>,
    limits: Limits,
    store: Store,
    /// What queries, transfers and NOTIFY see: durable state only.
    view: RwLock<View>,
    /// Committed, not yet durable. Lock order: `pending`, then `view`.
    pending: Mutex<Pending>,
    /// One writer at a time stages a change.
    writer: tokio::sync::Mutex<()>,
    /// One import session at a time.
    importing: Arc<tokio::sync::Mutex<()>>,
    /// Set when a flush failed: the store's memory may not match the disk.
    poisoned: AtomicBool,
    /// The newest published serial, for those who follow changes (NOTIFY).
    serial_tx: tokio::sync::watch::Sender<u32>,
}

impl Directory {
    /// Opens the store in `data_dir` and builds the view from it.
    ///
    /// When the zone file's serial is newer than the stored one, or its static records
    /// changed, the zone gets a new serial (the newer of the file's and the stored one plus
    /// one) and the journal is emptied, so a secondary at an older serial gets the whole
    /// zone instead of deltas with a gap. That change is durable before anything is served.
    pub fn open(data_dir: &Path, zone: Zone, limits: Limits) -> Result<Self, StoreError> {
        let store = Store::open(data_dir, zone.origin())?;
        if store.import_in_progress()? {
            let removed = store.abort_import()?;
            tracing::warn!(
                removed,
                "an import was interrupted before its commit; its terminals were removed"
            );
        }
        let snapshot = store.load()?;
        let mut journal = Journal::new(limits.journal_depth, snapshot.journal);
        let fingerprint = zone.fingerprint();
        let file = Serial(zone.initial_serial());
        let serial = match snapshot.serial.map(Serial) {
            None => file,
            Some(stored) if file.is_newer_than(stored) => file,
            Some(stored) if snapshot.zone_fingerprint.as_deref() != Some(&fingerprint) => {
                stored.next()
            }
            Some(stored) => stored,
        };
        if snapshot.serial != Some(serial.0)
            || snapshot.zone_fingerprint.as_deref() != Some(&fingerprint)
        {
            store.commit_now(&Change {
                serial: Some(serial.0),
                journal_drop: journal.seqs(),
                zone_fingerprint: Some(&fingerprint),
                ..Change::default()
            })?;
            journal.clear();
        }
        let next_seq = journal.next_seq();
        let mut view = View::new(serial, journal, snapshot.terminals);
        store.scan_hot(|key, hot| view.insert(key, hot))?;
        Ok(Self {
            inner: Arc::new(Inner {
                zone: ArcSwap::from_pointee(zone),
                limits,
                store,
                serial_tx: tokio::sync::watch::Sender::new(serial.0),
                view: RwLock::new(view),
                pending: Mutex::new(Pending::new(serial, next_seq)),
                writer: tokio::sync::Mutex::new(()),
                importing: Arc::default(),
                poisoned: AtomicBool::new(false),
            }),
        })
    }

    /// The static zone as it is now (a reload may replace it; hold this briefly).
    pub fn zone(&self) -> Arc<Zone> {
        self.inner.zone.load_full()
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Read access to the durable state. Hold it briefly: publication waits for it.
    pub fn view(&self) -> RwLockReadGuard<'_, View> {
        self.inner.view.read().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A terminal as last committed (durable or not), with its key and replay memory.
    pub fn terminal(&self, code: &CallingCode) -> Result<Option<Entry>, StoreError> {
        self.inner.store.terminal(code)
    }

    /// Every registered terminal, by code, to `each` until it returns false, without
    /// collecting them (blocking: call it from the blocking pool).
    pub fn for_each_entry(&self, each: impl FnMut(Entry) -> bool) -> Result<(), StoreError> {
        self.inner.store.for_each_entry(each)
    }

    /// A consistent snapshot of everything durable, for a backup (blocking: call it from the
    /// blocking pool); see [`Store::snapshot`].
    pub fn snapshot(
        &self,
        each: impl FnMut(crate::store::Snapshotted) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.store.snapshot(each)
    }

    /// The terminal whose TSIG key has this name (lower case, fully qualified), and the key:
    /// the code is parsed from the name, the registration must be published (durable), and
    /// the rest of the name must match the stored KID and MID.
    pub fn terminal_key(&self, key_name: &str) -> Option<(CallingCode, TsigKey)> {
        let parsed = TerminalKeyName::parse(key_name)?;
        self.view().terminal(&parsed.code)?;
        let key = self.inner.store.key(&parsed.code).ok()??;
        (key.name == key_name).then_some((parsed.code, key))
    }

    /// A cheap check before any per-key budget is spent: false for a replay or an
    /// out-of-order message. The writer repeats the check under its lock, which also catches
    /// copies that race each other.
    pub fn is_fresh(&self, code: &CallingCode, freshness: &Freshness) -> bool {
        match self.inner.store.terminal(code) {
            Ok(Some(e)) => replay::check_fresh(&e.presence, freshness).is_ok(),
            _ => true,
        }
    }

    /// Takes the writer lock, unless an earlier flush failed.
    async fn write_lock(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, StoreError> {
        let writer = self.inner.writer.lock().await;
        if self.inner.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        Ok(writer)
    }

    /// Registers a terminal and issues its fresh TSIG key.
    pub async fn register(&self, reg: Registration, now: u64) -> Result<Terminal, DirectoryError> {
        let imported = self
            .import(
                vec![Import {
                    registration: reg,
                    addresses: Addresses::default(),
                }],
                now,
            )
            .await?;
        Ok(imported
            .into_iter()
            .next()
            .expect("one registration, one terminal"))
    }

    /// Registers many terminals at once (each optionally with addresses), in one
    /// transaction: all of them, or none if any is refused. Addresses follow the same
    /// [`policy`] as an UPDATE.
    pub async fn import(
        &self,
        imports: Vec<Import>,
        now: u64,
    ) -> Result<Vec<Terminal>, DirectoryError> {
        let entries = self.new_entries(imports, now)?;
        let writer = self.write_lock().await?;
        let entries = checked_registrations(&self.inner.store, entries)?;
        let zone_changes = entries
            .iter()
            .map(|e| AddressChange {
                code: e.terminal.code.clone(),
                old: Addresses::default(),
                new: e.presence.addresses.clone(),
            })
            .filter(|c| c.new != c.old)
            .collect();
        let store = registrations_change(&entries, false);
        let published = entries
            .iter()
            .map(|e| (CodeKey::from(&e.terminal.code), Some(e.presence.hot())))
            .collect();
        self.stage(Work {
            store,
            zone_changes,
            entries: published,
        })?;
        self.durable(writer).await?;
        Ok(entries.into_iter().map(|e| e.terminal).collect())
    }

    /// The right to run an import session, if no other is running: hold it from the first
    /// staged batch to the commit or abort.
    pub fn try_begin_import(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.inner.importing.clone().try_lock_owned().ok()
    }

    /// Stages one batch of an import: checked like registrations (against the registered,
    /// the staged and the batch itself) and written, but invisible to queries and keys until
    /// [`Directory::commit_import`]; [`Directory::abort_import`] (or a restart) removes it.
    pub async fn stage_import(
        &self,
        imports: Vec<Import>,
        now: u64,
    ) -> Result<Vec<Terminal>, DirectoryError> {
        let entries = self.new_entries(imports, now)?;
        let _writer = self.write_lock().await?;
        let entries = checked_registrations(&self.inner.store, entries)?;
        // Durable per batch, so that a fleet's batches never pile up in the server.
        let written = self
            .inner
            .store
            .write_now(&registrations_change(&entries, true))
            .await;
        self.poison_on_failure(written)?;
        Ok(entries.into_iter().map(|e| e.terminal).collect())
    }

    /// Commits the staged import: one serial increase, the journal emptied (secondaries take
    /// the whole zone), durable before the index takes the terminals; the serial is
    /// announced only once they are all in. Returns how many terminals it added.
    pub async fn commit_import(&self) -> Result<usize, DirectoryError> {
        let _writer = self.write_lock().await?;
        let next_seq = self.pending().next_seq();
        let depth = self.inner.limits.journal_depth.max(1) as u64;
        let to = self.pending().serial().next();
        self.inner.store.stage(&Change {
            serial: Some(to.0),
            journal_drop: every_delta(next_seq, depth),
            finish_import: true,
            ..Change::default()
        })?;
        self.flush_or_poison().await?;
        self.publish();
        let staged = self.inner.store.importing_count()?;
        self.inner
            .view
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .reserve(staged);
        let added = self.inner.store.scan_imported(IMPORT_CHUNK, |chunk| {
            let mut view = self.inner.view.write().unwrap_or_else(|p| p.into_inner());
            for (key, hot) in chunk {
                view.insert(key, hot);
            }
        })?;
        {
            let mut pending = self.pending();
            pending.advance(to);
            let mut view = self.inner.view.write().unwrap_or_else(|p| p.into_inner());
            view.clear_journal();
            view.set_serial(to);
        }
        self.announce(to.0);
        self.inner.store.forget_imported().await?;
        // A large staging leaves much free space in the file: give it back (queries go on
        // from the index; signed requests wait the few tenths of a second it takes).
        if added > LARGEST_DELTA {
            self.inner.store.compact().await?;
        }
        Ok(added)
    }

    /// Replaces the static zone (a reload of the zone file), as a restart with that file
    /// would: when its serial is newer or its records changed, the zone gets a new serial
    /// (the file's, or the current one plus one) and the journal is emptied, so secondaries
    /// take the whole zone once; that is durable before anything is served from it. Returns
    /// the new serial, or `None` when the file changed nothing. Another origin is refused.
    pub async fn reload_zone(&self, zone: Zone) -> Result<Option<u32>, DirectoryError> {
        let current = self.zone();
        if zone.origin() != current.origin() {
            return Err(DirectoryError::OtherOrigin {
                loaded: zone.origin().to_ascii(),
                served: current.origin().to_ascii(),
            });
        }
        let _writer = self.write_lock().await?;
        let serial = self.pending().serial();
        let file = Serial(zone.initial_serial());
        let fingerprint = zone.fingerprint();
        let to = if file.is_newer_than(serial) {
            file
        } else if fingerprint != current.fingerprint() {
            serial.next()
        } else {
            // Same records, no newer serial: keep the zone as it is.
            return Ok(None);
        };
        let next_seq = self.pending().next_seq();
        let depth = self.inner.limits.journal_depth.max(1) as u64;
        self.inner.store.stage(&Change {
            serial: Some(to.0),
            journal_drop: every_delta(next_seq, depth),
            zone_fingerprint: Some(&fingerprint),
            ..Change::default()
        })?;
        self.flush_or_poison().await?;
        self.publish();
        {
            let mut pending = self.pending();
            pending.advance(to);
            let mut view = self.inner.view.write().unwrap_or_else(|p| p.into_inner());
            view.clear_journal();
            view.set_serial(to);
            self.inner.zone.store(Arc::new(zone));
        }
        self.announce(to.0);
        Ok(Some(to.0))
    }

    /// Removes every staged terminal of an import that will not be committed.
    pub async fn abort_import(&self) -> Result<usize, StoreError> {
        let _writer = self.inner.writer.lock().await;
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.abort_import())
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?
    }

    fn refuse_importing(&self, code: &CallingCode) -> Result<(), DirectoryError> {
        if self.inner.store.is_importing(code)? {
            return Err(DirectoryError::Importing(code.clone()));
        }
        Ok(())
    }

    /// Removes a terminal; its name disappears from the zone.
    pub async fn unregister(&self, code: &CallingCode) -> Result<Terminal, DirectoryError> {
        let writer = self.write_lock().await?;
        self.refuse_importing(code)?;
        let entry = self
            .inner
            .store
            .terminal(code)?
            .ok_or_else(|| DirectoryError::UnknownCode(code.clone()))?;
        let terminal = entry.terminal;
        // What secondaries hold, even when the lease has run out and the sweep has not.
        let zone_changes = vec![AddressChange {
            code: code.clone(),
            old: entry.presence.addresses.clone(),
            new: Addresses::default(),
        }]
        .into_iter()
        .filter(|c| c.old != c.new)
        .collect();
        self.stage(Work {
            store: Change {
                remove_terminal: Some(&terminal),
                ..Change::default()
            },
            zone_changes,
            entries: vec![(CodeKey::from(code), None)],
        })?;
        self.durable(writer).await?;
        Ok(terminal)
    }

    /// Issues a new secret for a terminal's key; the old secret stops working once the
    /// new one is durable.
    pub async fn rotate_key(&self, code: &CallingCode) -> Result<Terminal, DirectoryError> {
        let writer = self.write_lock().await?;
        self.refuse_importing(code)?;
        let entry = self
            .inner
            .store
            .terminal(code)?
            .ok_or_else(|| DirectoryError::UnknownCode(code.clone()))?;
        let mut terminal = entry.terminal;
        terminal.key.secret = Secret::generate()?;
        let mut presence = entry.presence;
        replay::forget(&mut presence);
        let rotated = presence.hot();
        self.stage(Work {
            store: Change {
                put_terminals: vec![&terminal],
                put_presence: vec![(code, &presence)],
                ..Change::default()
            },
            zone_changes: Vec::new(),
            entries: vec![(CodeKey::from(code), Some(rotated))],
        })?;
        self.durable(writer).await?;
        Ok(terminal)
    }

    /// Applies an RFC 2136 update signed by the key of `code`, asking for `lease` seconds.
    pub async fn update(
        &self,
        code: &CallingCode,
        message: &UpdateMessage<'_>,
        freshness: &Freshness,
        lease: Option<u32>,
        now: u64,
    ) -> Result<UpdateOutcome, DirectoryError> {
        let writer = self.write_lock().await?;
        let entry = self
            .inner
            .store
            .terminal(code)?
            .ok_or_else(|| DirectoryError::UnknownCode(code.clone()))?;
        replay::check_fresh(&entry.presence, freshness).map_err(|e| DirectoryError::Stale {
            code: code.clone(),
            time_signed: e.time_signed,
        })?;
        let zone = self.inner.zone.load();
        let contents = Contents {
            zone: &zone,
            store: &self.inner.store,
            serial: self.pending().serial(),
            now,
        };
        let planned = update::plan(
            &zone,
            &contents,
            code,
            entry.presence.live(now),
            message,
            &self.inner.limits,
        )?;
        // Secondaries hold the stored addresses, even past a lease the sweep has not ended.
        let stored = entry.presence.addresses.clone();
        let changed = planned != stored;
        let granted = self.inner.limits.leases.grant(lease);
        let mut presence = entry.presence;
        replay::remember_signature(&mut presence, freshness, now, self.inner.limits.fudge);
        presence.addresses = planned.clone();
        presence.lease_expires = granted.map(|g| now + u64::from(g));
        presence.updated_at = Some(now);
        let zone_changes = if changed {
            vec![AddressChange {
                code: code.clone(),
                old: stored,
                new: planned.clone(),
            }]
        } else {
            Vec::new()
        };
        let updated = presence.hot();
        let serial = self.stage(Work {
            store: Change {
                put_presence: vec![(code, &presence)],
                ..Change::default()
            },
            zone_changes,
            entries: vec![(CodeKey::from(code), Some(updated))],
        })?;
        self.durable(writer).await?;
        Ok(UpdateOutcome {
            code: code.clone(),
            addresses: planned,
            changed,
            serial,
            lease: granted,
        })
    }

    /// Takes offline every terminal whose lease ran out by `now`, in one transaction with
    /// one serial increase; returns their codes.
    pub async fn expire(&self, now: u64) -> Result<Vec<CallingCode>, StoreError> {
        if self.view().expired_by(now).is_empty() {
            return Ok(Vec::new());
        }
        let writer = self.write_lock().await?;
        let candidates = self.view().expired_by(now);
        let mut expired = Vec::new();
        for key in candidates {
            // Renewed since publication: its committed lease is what counts.
            if let Some(entry) = self.inner.store.terminal(&key.to_code())? {
                if entry.presence.expired(now) {
                    expired.push(entry);
                }
            }
        }
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let offline: Vec<Entry> = expired
            .iter()
            .map(|e| Entry {
                terminal: e.terminal.clone(),
                presence: Presence {
                    addresses: Addresses::default(),
                    lease_expires: None,
                    ..e.presence.clone()
                },
            })
            .collect();
        let zone_changes = expired
            .iter()
            .filter(|e| e.presence.addresses != Addresses::default())
            .map(|e| AddressChange {
                code: e.terminal.code.clone(),
                old: e.presence.addresses.clone(),
                new: Addresses::default(),
            })
            .collect();
        self.stage(Work {
            store: Change {
                put_presence: offline
                    .iter()
                    .map(|e| (&e.terminal.code, &e.presence))
                    .collect(),
                ..Change::default()
            },
            zone_changes,
            entries: offline
                .iter()
                .map(|e| (CodeKey::from(&e.terminal.code), Some(e.presence.hot())))
                .collect(),
        })?;
        self.durable(writer).await?;
        Ok(expired.into_iter().map(|e| e.terminal.code).collect())
    }

    /// Stages one change in the store (not yet durable) and for publication; when the zone
    /// changed, with a serial increase and its journal delta. Returns the serial after the
    /// change. Call with the writer lock held, then [`Directory::durable`].
    ///
    /// The store's staging and the push to `pending` need not be one critical section: the
    /// writer lock orders them, and a flush that covers the change before the push leaves it
    /// queued for this writer's own publication after its flush.
    fn stage(&self, work: Work<'_>) -> Result<u32, StoreError> {
        let from = self.pending().serial();
        let next_seq = self.pending().next_seq();
        let depth = self.inner.limits.journal_depth.max(1) as u64;
        let reset_journal = work.zone_changes.len() > LARGEST_DELTA;
        let serial = (!work.zone_changes.is_empty()).then(|| from.next());
        let delta = (serial.is_some() && !reset_journal).then(|| Delta {
            seq: next_seq,
            from: from.0,
            to: from.next().0,
            changes: work.zone_changes,
        });
        let journal_drop = if reset_journal {
            every_delta(next_seq, depth)
        } else {
            delta
                .as_ref()
                .and_then(|d| d.seq.checked_sub(depth))
                .filter(|seq| *seq > 0)
                .into_iter()
                .collect()
        };
        let change = Change {
            serial: serial.map(|s| s.0),
            journal: delta.as_ref(),
            journal_drop,
            ..work.store
        };
        let commit = self.inner.store.stage(&change)?;
        let mut pending = self.pending();
        pending.push(Publication {
            commit,
            serial,
            delta,
            reset_journal,
            entries: work.entries,
        });
        Ok(pending.serial().0)
    }

    /// Releases the writer lock, then flushes: everything staged so far, this change's
    /// included, is on disk when this returns, and published to the view. A failed flush
    /// publishes nothing and refuses every later change until a restart.
    async fn durable(&self, writer: tokio::sync::MutexGuard<'_, ()>) -> Result<(), StoreError> {
        // Group commit: updates arriving meanwhile stage theirs and share the next flush.
        drop(writer);
        self.flush_or_poison().await?;
        self.publish();
        Ok(())
    }

    /// Flushes; a failure refuses every later change until a restart.
    async fn flush_or_poison(&self) -> Result<(), StoreError> {
        let flushed = self.inner.store.flush().await;
        self.poison_on_failure(flushed)
    }

    /// After a flush: a failure refuses every later change until a restart.
    fn poison_on_failure(&self, flushed: Result<(), StoreError>) -> Result<(), StoreError> {
        if let Err(e) = flushed {
            self.inner.poisoned.store(true, Ordering::SeqCst);
            tracing::error!(error = %e, "flush to disk failed; refusing changes until restarted");
            return Err(e);
        }
        if self.inner.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        Ok(())
    }

    /// Moves the view to everything flushed, then tells followers the new serial.
    fn publish(&self) {
        let flushed = self.inner.store.flushed();
        let serial = {
            let mut pending = self.pending();
            let mut view = self.inner.view.write().unwrap_or_else(|p| p.into_inner());
            pending.publish(flushed, &mut view);
            view.serial()
        };
        self.announce(serial);
    }

    /// Tells followers (NOTIFY) of a published serial; it only moves forward.
    fn announce(&self, serial: u32) {
        self.inner.serial_tx.send_if_modified(|current| {
            let newer = Serial(serial).is_newer_than(Serial(*current));
            if newer {
                *current = serial;
            }
            newer
        });
    }

    /// A receiver that sees every new durable serial (for NOTIFY).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u32> {
        self.inner.serial_tx.subscribe()
    }

    /// Makes everything committed durable (at shutdown; every change is already flushed).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.store.flush().await
    }

    /// Reports every later group commit (its size and time) to `observer`.
    pub fn observe_flushes(&self, observer: Arc<dyn crate::observe::FlushObserver>) {
        self.inner.store.observe(observer);
    }

    /// Makes the next flush fail, as a failing disk would (for fault-injection tests).
    pub fn inject_flush_failure(&self) {
        self.inner.store.inject_flush_failure();
    }

    /// Terminals with fresh keys for `imports`, after the address policy.
    fn new_entries(
        &self,
        imports: Vec<Import>,
        now: u64,
    ) -> Result<Vec<(Registration, Entry)>, DirectoryError> {
        let max = self.inner.limits.max_addresses_per_family;
        let mut entries = Vec::with_capacity(imports.len());
        for Import {
            registration: reg,
            addresses,
        } in imports
        {
            policy::check_addresses(&addresses, max).map_err(|reason| DirectoryError::Policy {
                code: reg.code.clone(),
                reason,
            })?;
            let terminal = Terminal {
                key: self.new_key(&reg.code, &reg.mid, &reg.kid, reg.algorithm)?,
                code: reg.code.clone(),
                kid: reg.kid.clone(),
                mid: reg.mid.clone(),
                registered_at: now,
            };
            let presence = Presence {
                updated_at: (addresses != Addresses::default()).then_some(now),
                addresses,
                ..Presence::default()
            };
            entries.push((reg, Entry { terminal, presence }));
        }
        Ok(entries)
    }

    fn new_key(
        &self,
        code: &CallingCode,
        mid: &Mid,
        kid: &Kid,
        algorithm: Algorithm,
    ) -> Result<TsigKey, KeyError> {
        Ok(TsigKey {
            name: TerminalKeyName::format(code, mid, kid, self.inner.zone.load().origin()),
            algorithm,
            secret: Secret::generate()?,
        })
    }
}

/// Every delta the store may hold before sequence `next_seq`: the last `depth` of them.
fn every_delta(next_seq: u64, depth: u64) -> Vec<u64> {
    (next_seq.saturating_sub(depth).max(1)..next_seq).collect()
}

/// The new terminals, once [`check_new_registrations`] passes. Call with the writer lock.
fn checked_registrations(
    store: &Store,
    entries: Vec<(Registration, Entry)>,
) -> Result<Vec<Entry>, DirectoryError> {
    let registrations: Vec<&Registration> = entries.iter().map(|(r, _)| r).collect();
    check_new_registrations(store, &registrations)?;
    Ok(entries.into_iter().map(|(_, e)| e).collect())
}

/// The store change that writes new terminals (staged as `importing`, or not).
fn registrations_change(entries: &[Entry], importing: bool) -> Change<'_> {
    Change {
        put_terminals: entries.iter().map(|e| &e.terminal).collect(),
        put_presence: entries
            .iter()
            .map(|e| (&e.terminal.code, &e.presence))
            .collect(),
        importing,
        ..Change::default()
    }
}

/// Refuses codes or KID/MID pairs that are taken, or repeated within `imports`.
fn check_new_registrations(store: &Store, imports: &[&Registration]) -> Result<(), DirectoryError> {
    let mut codes = HashSet::new();
    let mut machines = HashSet::new();
    for reg in imports {
        if let Some(e) = store.terminal(&reg.code)? {
            return Err(DirectoryError::CodeTaken {
                code: reg.code.clone(),
                kid: e.terminal.kid,
            });
        }
        if let Some(code) = store.machine(&reg.kid, &reg.mid)? {
            return Err(DirectoryError::MachineTaken {
                kid: reg.kid.clone(),
                mid: reg.mid.clone(),
                code,
            });
        }
        if !codes.insert(reg.code.clone()) {
            return Err(DirectoryError::Duplicate(format!(
                "calling code {}",
                reg.code
            )));
        }
        if !machines.insert((reg.kid.clone(), reg.mid.clone())) {
            return Err(DirectoryError::Duplicate(format!(
                "KID {} with MID {}",
                reg.kid, reg.mid
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{DNSClass, Record};

    use super::*;
    use crate::update::ZoneSection;

    fn registration(code: &str, kid: &str, mid: &str) -> Registration {
        Registration {
            code: code.parse().unwrap(),
            kid: kid.parse().unwrap(),
            mid: mid.parse().unwrap(),
            algorithm: Algorithm::HmacSha256,
        }
    }

    fn open(dir: &Path) -> Directory {
        Directory::open(dir, Zone::embedded_default(), Limits::default()).unwrap()
    }

    fn set_a(code: &str, ip: [u8; 4]) -> (Vec<ZoneSection>, Vec<Record>) {
        let zone = vec![ZoneSection {
            name: Name::from_ascii("dial.example.").unwrap(),
            rtype: RecordType::SOA,
            class: DNSClass::IN,
        }];
        let owner = Name::from_ascii(format!("{code}.dial.example.")).unwrap();
        let mut delete = Record::update0(owner.clone(), 0, RecordType::A);
        delete.dns_class = DNSClass::ANY;
        let add = Record::from_rdata(owner, 30, RData::A(A::from(Ipv4Addr::from(ip))));
        (zone, vec![delete, add])
    }

    async fn update_a(
        dir: &Directory,
        code: &str,
        ip: [u8; 4],
        time: u64,
        mac: u8,
    ) -> Result<UpdateOutcome, DirectoryError> {
        set_a_signed(dir, code, ip, signed(time, mac), None, time).await
    }

    /// A signature's facts: signed at `time` with a MAC of 32 bytes `mac`.
    fn signed(time: u64, mac: u8) -> Freshness {
        Freshness {
            time_signed: time,
            mac: vec![mac; 32],
        }
    }

    /// `code`'s key replaces its A RRset with `ip`, signed as `freshness`, asking for
    /// `lease`, at server time `now`.
    async fn set_a_signed(
        dir: &Directory,
        code: &str,
        ip: [u8; 4],
        freshness: Freshness,
        lease: Option<u32>,
        now: u64,
    ) -> Result<UpdateOutcome, DirectoryError> {
        let (zone, updates) = set_a(code, ip);
        let message = UpdateMessage {
            zone: &zone,
            prerequisites: &[],
            updates: &updates,
        };
        dir.update(&code.parse().unwrap(), &message, &freshness, lease, now)
            .await
    }

    #[tokio::test]
    async fn registration_survives_reopen_and_refuses_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let t = dir
            .register(registration("5551234", "acme-0042", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        assert_eq!(
            t.key.name,
            "5551234.3f9a0c1d22e4b7a8.acme-0042.key.dial.example."
        );
        let again = dir
            .register(registration("5551234", "other", "3f9a0c1d22e4b7a9"), 2)
            .await;
        assert!(matches!(again, Err(DirectoryError::CodeTaken { .. })));
        let same_machine = dir
            .register(registration("5559999", "acme-0042", "3f9a0c1d22e4b7a8"), 2)
            .await;
        assert!(matches!(
            same_machine,
            Err(DirectoryError::MachineTaken { .. })
        ));
        let serial = dir.view().serial();
        drop(dir);
        let dir = open(tmp.path());
        assert_eq!(dir.view().serial(), serial);
        let (code, key) = dir.terminal_key(&t.key.name).unwrap();
        assert_eq!(code, t.code);
        assert_eq!(key, t.key);
        assert_eq!(dir.terminal(&t.code).unwrap().unwrap().terminal, t);
    }

    #[tokio::test]
    async fn updates_bump_the_serial_only_when_something_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        let s0 = dir.view().serial();
        let first = update_a(&dir, "5551234", [192, 0, 2, 1], 100, 1)
            .await
            .unwrap();
        assert!(first.changed);
        assert_eq!(first.serial, s0 + 1);
        let same = update_a(&dir, "5551234", [192, 0, 2, 1], 101, 2)
            .await
            .unwrap();
        assert!(!same.changed);
        assert_eq!(same.serial, s0 + 1);
        drop(dir);
        let dir = open(tmp.path());
        let entry = dir.terminal(&"5551234".parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            entry.presence.addresses.v4.addrs.as_slice(),
            [Ipv4Addr::new(192, 0, 2, 1)]
        );
        assert_eq!(entry.presence.updated_at, Some(101));
    }

    #[tokio::test]
    async fn replays_and_older_signatures_are_refused_even_after_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        update_a_registered(&dir).await;
        let replay = update_a(&dir, "5551234", [192, 0, 2, 1], 100, 1).await;
        assert!(matches!(replay, Err(DirectoryError::Stale { .. })));
        let older = update_a(&dir, "5551234", [192, 0, 2, 9], 99, 3).await;
        assert!(matches!(older, Err(DirectoryError::Stale { .. })));
        drop(dir);
        let dir = open(tmp.path());
        let replay = update_a(&dir, "5551234", [192, 0, 2, 1], 100, 1).await;
        assert!(matches!(replay, Err(DirectoryError::Stale { .. })));
        // Same second, different message: accepted.
        assert!(
            update_a(&dir, "5551234", [192, 0, 2, 2], 100, 4)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn refused_updates_change_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        dir.register(registration("5559999", "acme", "3f9a0c1d22e4b7a9"), 1)
            .await
            .unwrap();
        update_a(&dir, "5551234", [192, 0, 2, 1], 100, 1)
            .await
            .unwrap();
        let serial = dir.view().serial();
        // The key of 5551234 tries to write 5559999's name.
        let (zone, updates) = set_a("5559999", [192, 0, 2, 66]);
        let message = UpdateMessage {
            zone: &zone,
            prerequisites: &[],
            updates: &updates,
        };
        let freshness = Freshness {
            time_signed: 101,
            mac: vec![9; 32],
        };
        let err = dir
            .update(&"5551234".parse().unwrap(), &message, &freshness, None, 101)
            .await;
        assert!(matches!(
            err,
            Err(DirectoryError::Update(UpdateError::Refused(_)))
        ));
        let view = dir.view();
        assert_eq!(view.serial(), serial);
        assert!(
            view.terminal(&"5559999".parse().unwrap())
                .unwrap()
                .addresses
                .v4
                .addrs
                .is_empty()
        );
    }

    #[tokio::test]
    async fn leases_expire_to_offline_and_refreshes_keep_the_serial() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let code: CallingCode = "5551234".parse().unwrap();
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        let ip = [192, 0, 2, 1];
        let first = set_a_signed(&dir, "5551234", ip, signed(1000, 1), Some(5), 1000)
            .await
            .unwrap();
        assert_eq!(first.lease, Some(60), "raised to the minimum");
        // A refresh that changes nothing extends the lease without a serial increase.
        let refresh = set_a_signed(&dir, "5551234", ip, signed(1050, 2), Some(60), 1050)
            .await
            .unwrap();
        assert!(!refresh.changed);
        assert_eq!(refresh.serial, first.serial);
        assert!(!dir.view().terminal(&code).unwrap().expired(1100));
        assert!(dir.expire(1100).await.unwrap().is_empty());
        // Past the lease: offline, one serial increase, addresses gone from the store too.
        assert!(dir.view().terminal(&code).unwrap().expired(1110));
        assert_eq!(dir.expire(1110).await.unwrap(), vec![code.clone()]);
        assert_eq!(dir.view().serial(), first.serial + 1);
        drop(dir);
        let dir = open(tmp.path());
        let entry = dir.terminal(&code).unwrap().unwrap();
        assert!(entry.presence.addresses.v4.addrs.is_empty());
        assert_eq!(entry.presence.lease_expires, None);
    }

    #[tokio::test]
    async fn unregister_and_rotate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let t = dir
            .register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        let rotated = dir.rotate_key(&t.code).await.unwrap();
        assert_eq!(rotated.key.name, t.key.name);
        assert_ne!(rotated.key.secret, t.key.secret);
        dir.unregister(&t.code).await.unwrap();
        assert!(dir.view().terminal(&t.code).is_none());
        assert!(dir.terminal_key(&t.key.name).is_none());
        assert!(matches!(
            dir.unregister(&t.code).await,
            Err(DirectoryError::UnknownCode(_))
        ));
        // The machine can register again once unregistered.
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 2)
            .await
            .unwrap();
    }

    fn two_addresses_plus(ip: std::net::IpAddr) -> Addresses {
        let mut a = Addresses::default();
        a.v4.ttl = 30;
        a.v6.ttl = 30;
        match ip {
            std::net::IpAddr::V4(v4) => a.v4.addrs.push(v4),
            std::net::IpAddr::V6(v6) => a.v6.addrs.push(v6),
        }
        a
    }

    /// What an IXFR-following secondary holds: the records it was sent, delta by delta.
    fn follow_journal(
        copy: &mut HashMap<CallingCode, Addresses>,
        serial: &mut u32,
        dir: &Directory,
    ) {
        let view = dir.view();
        if *serial == view.serial() {
            return;
        }
        let chain = view
            .journal()
            .since(*serial)
            .expect("the follower's serial is in the journal");
        for delta in chain {
            assert_eq!(delta.from, *serial, "the IXFR chain has a gap");
            for change in &delta.changes {
                let held = copy.get(&change.code).cloned().unwrap_or_default();
                assert_eq!(
                    held, change.old,
                    "delta {}→{} removes what the secondary does not hold for {}",
                    delta.from, delta.to, change.code
                );
                copy.insert(change.code.clone(), change.new.clone());
            }
            *serial = delta.to;
        }
        assert_eq!(*serial, view.serial());
    }

    /// The zone's content at its serial, as a full transfer sends it.
    fn full_zone(dir: &Directory) -> HashMap<CallingCode, Addresses> {
        let view = dir.view();
        view.entries()
            .map(|(key, hot)| (key.to_code(), hot.addresses.clone()))
            .filter(|(_, a)| *a != Addresses::default())
            .collect()
    }

    fn without_empty(copy: &HashMap<CallingCode, Addresses>) -> HashMap<CallingCode, Addresses> {
        copy.iter()
            .filter(|(_, a)| **a != Addresses::default())
            .map(|(c, a)| (c.clone(), a.clone()))
            .collect()
    }

    /// Regression (visible only after durable): the view moved before the flush, so a
    /// failed flush left queries answering a serial and addresses that were never durable.
    #[tokio::test]
    async fn flush_failure_leaves_queries_on_the_old_state() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        update_a_registered(&dir).await;
        let serial = dir.view().serial();
        dir.inject_flush_failure();
        let failed = update_a(&dir, "5551234", [192, 0, 2, 2], 101, 2).await;
        assert!(failed.is_err(), "a failed flush is not acknowledged");
        let view = dir.view();
        assert_eq!(view.serial(), serial, "the serial did not move");
        let entry = view.terminal(&"5551234".parse().unwrap()).unwrap();
        assert_eq!(
            entry.addresses.v4.addrs.as_slice(),
            [Ipv4Addr::new(192, 0, 2, 1)],
            "queries still answer the durable address"
        );
    }

    /// Regression: after a failed flush, reads of the store (a signed request's key, `list`,
    /// a backup) still showed the change that never reached the disk.
    #[tokio::test]
    async fn a_failed_flush_leaves_store_reads_on_the_durable_state() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        update_a_registered(&dir).await;
        dir.inject_flush_failure();
        let failed = update_a(&dir, "5551234", [192, 0, 2, 2], 101, 2).await;
        assert!(failed.is_err(), "a failed flush is not acknowledged");
        let stored = dir.terminal(&"5551234".parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            stored.presence.addresses.v4.addrs.as_slice(),
            [Ipv4Addr::new(192, 0, 2, 1)],
            "the store answers the durable address, not the change that never reached the disk"
        );
    }

    /// Regression (lease expiry races): an update or unregister after the lease ended but
    /// before the sweep journalled an empty "old" side, so IXFR secondaries kept the stale
    /// address, or the unregistered code, for good.
    #[tokio::test]
    async fn deltas_after_lease_end_before_the_sweep_remove_what_secondaries_hold() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        for (code, mid) in [
            ("5551234", "3f9a0c1d22e4b7a8"),
            ("5557777", "3f9a0c1d22e4b7a9"),
        ] {
            dir.register(registration(code, "acme", mid), 1)
                .await
                .unwrap();
        }
        let mut copy = HashMap::new();
        let mut serial = dir.view().serial();
        set_a_signed(
            &dir,
            "5551234",
            [192, 0, 2, 1],
            signed(1000, 1),
            Some(60),
            1000,
        )
        .await
        .unwrap();
        follow_journal(&mut copy, &mut serial, &dir);
        // The lease ended at 1060; the sweep has not run. A new address arrives.
        update_a(&dir, "5551234", [192, 0, 2, 2], 1070, 2)
            .await
            .unwrap();
        follow_journal(&mut copy, &mut serial, &dir);
        assert_eq!(without_empty(&copy), full_zone(&dir));
        // The same race with an unregister.
        let other: CallingCode = "5557777".parse().unwrap();
        set_a_signed(
            &dir,
            "5557777",
            [192, 0, 2, 7],
            signed(2000, 3),
            Some(60),
            2000,
        )
        .await
        .unwrap();
        follow_journal(&mut copy, &mut serial, &dir);
        assert!(dir.view().terminal(&other).unwrap().expired(2070));
        dir.unregister(&other).await.unwrap();
        follow_journal(&mut copy, &mut serial, &dir);
        assert_eq!(without_empty(&copy), full_zone(&dir));
    }

    /// Regression (zone-file serial changes): restarting with a zone file whose serial
    /// jumped left a gap in the IXFR chain (deltas 2→3, then 1000→1001).
    #[tokio::test]
    async fn zone_file_serial_jump_leaves_no_gap_in_the_ixfr_chain() {
        let tmp = tempfile::tempdir().unwrap();
        let zone_text = |serial: u32, extra: &str| {
            format!(
                "$ORIGIN dial.example.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\n{extra}"
            )
        };
        let zone1 = Zone::parse(&zone_text(1, ""), "zone", None).unwrap();
        let dir = Directory::open(tmp.path(), zone1, Limits::default()).unwrap();
        update_a_registered(&dir).await;
        let old_serials: Vec<u32> = {
            let view = dir.view();
            let first = view.journal().since(1).unwrap();
            first.iter().map(|d| d.from).collect()
        };
        drop(dir);
        let zone2 = Zone::parse(&zone_text(1000, "www TXT \"new\"\n"), "zone", None).unwrap();
        let dir = Directory::open(tmp.path(), zone2, Limits::default()).unwrap();
        update_a(&dir, "5551234", [192, 0, 2, 2], 200, 2)
            .await
            .unwrap();
        let view = dir.view();
        assert!(view.serial() > 1000);
        for from in old_serials {
            if let Some(chain) = view.journal().since(from) {
                let mut at = from;
                for delta in &chain {
                    assert_eq!(delta.from, at, "gap in the IXFR chain from {from}");
                    at = delta.to;
                }
                assert_eq!(at, view.serial(), "the chain from {from} ends early");
            }
        }
    }

    /// Regression (import policy): import accepted addresses an UPDATE refuses.
    #[tokio::test]
    async fn import_refuses_addresses_an_update_would_refuse() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let max = Limits::default().max_addresses_per_family;
        let mut too_many = Addresses::default();
        too_many.v4.ttl = 30;
        too_many.v4.addrs = (0..=max as u8)
            .map(|i| Ipv4Addr::new(192, 0, 2, i + 1))
            .collect();
        let unusable = [
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "ff02::1",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
        ];
        let mut cases: Vec<Addresses> = unusable
            .iter()
            .map(|ip| two_addresses_plus(ip.parse().unwrap()))
            .collect();
        cases.push(too_many);
        for addresses in cases {
            let shown = addresses.describe();
            let result = dir
                .import(
                    vec![Import {
                        registration: registration("5551234", "acme", "3f9a0c1d22e4b7a8"),
                        addresses,
                    }],
                    1,
                )
                .await;
            assert!(result.is_err(), "import accepted {shown}");
            assert!(dir.view().is_empty(), "a refused import changed nothing");
        }
    }

    /// Regression: an update signed 120 s in the future was accepted, and then every
    /// correctly timed update was refused as stale for 120 s.
    #[tokio::test]
    async fn future_dated_update_does_not_lock_out_correctly_timed_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        let ip = [192, 0, 2, 1];
        set_a_signed(&dir, "5551234", ip, signed(1120, 1), None, 1000)
            .await
            .unwrap();
        update_a(&dir, "5551234", [192, 0, 2, 2], 1001, 2)
            .await
            .expect("a correctly timed update after a future-dated one");
        let replay = set_a_signed(&dir, "5551234", ip, signed(1120, 1), None, 1002).await;
        assert!(matches!(replay, Err(DirectoryError::Stale { .. })));
    }

    /// Regression: with the per-key limit off, the 257th update of one second evicted the
    /// first MAC from the replay memory, and a replay of it was accepted.
    #[tokio::test]
    async fn replays_are_refused_however_many_updates_share_a_second() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        let send = |i: u16| {
            let freshness = Freshness {
                time_signed: 500,
                mac: i.to_be_bytes().repeat(16),
            };
            let ip = [192, 0, 2, (i % 200) as u8 + 1];
            let dir = dir.clone();
            async move { set_a_signed(&dir, "5551234", ip, freshness, None, 500).await }
        };
        for i in 0..300 {
            send(i).await.unwrap();
        }
        for i in [0, 1, 43, 255, 299] {
            assert!(
                matches!(send(i).await, Err(DirectoryError::Stale { .. })),
                "replay of update {i} accepted"
            );
        }
    }

    /// An import too large to journal empties the journal: a secondary at an older serial
    /// gets the whole zone, and the index does not carry a delta the size of the fleet.
    #[tokio::test]
    async fn a_change_too_large_to_journal_empties_the_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        update_a_registered(&dir).await;
        let before = dir.view().serial();
        assert!(dir.view().journal().since(before - 1).is_some());
        dir.import(fleet(0, LARGEST_DELTA + 1), 2).await.unwrap();
        let view = dir.view();
        assert_eq!(view.serial(), before + 1);
        assert!(view.journal().is_empty());
        assert!(view.journal().since(before).is_none(), "a full transfer");
        drop(view);
        drop(dir);
        let dir = open(tmp.path());
        assert!(dir.view().journal().is_empty(), "and so after a restart");
        assert_eq!(dir.view().len(), LARGEST_DELTA + 2);
    }

    async fn update_a_registered(dir: &Directory) {
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        update_a(dir, "5551234", [192, 0, 2, 1], 100, 1)
            .await
            .unwrap();
    }

    fn fleet(from: usize, count: usize) -> Vec<Import> {
        (from..from + count)
            .map(|i| Import {
                registration: registration(
                    &format!("{}", 7_000_000 + i),
                    "fleet",
                    &format!("{i:016x}"),
                ),
                addresses: two_addresses_plus(std::net::IpAddr::V4(Ipv4Addr::new(
                    127,
                    1,
                    (i >> 8) as u8,
                    i as u8,
                ))),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_staged_import_is_invisible_until_committed_then_all_there() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let session = dir.try_begin_import().unwrap();
        assert!(dir.try_begin_import().is_none(), "one import at a time");
        let serial = dir.view().serial();
        dir.stage_import(fleet(0, 100), 1).await.unwrap();
        dir.stage_import(fleet(100, 100), 1).await.unwrap();
        assert!(dir.view().is_empty(), "not in the index before the commit");
        let taken = dir.stage_import(fleet(150, 1), 1).await;
        assert!(
            matches!(taken, Err(DirectoryError::CodeTaken { .. })),
            "staged codes are taken"
        );
        let staged: CallingCode = "7000005".parse().unwrap();
        assert!(matches!(
            dir.unregister(&staged).await,
            Err(DirectoryError::Importing(_))
        ));
        assert_eq!(dir.commit_import().await.unwrap(), 200);
        drop(session);
        assert_eq!(dir.view().len(), 200);
        assert_eq!(dir.view().serial(), serial + 1);
        dir.unregister(&staged).await.unwrap();
        drop(dir);
        assert_eq!(open(tmp.path()).view().len(), 199);
    }

    #[tokio::test]
    async fn an_import_aborted_or_interrupted_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        dir.stage_import(fleet(0, 50), 1).await.unwrap();
        assert_eq!(dir.abort_import().await.unwrap(), 50);
        assert!(dir.terminal(&"7000001".parse().unwrap()).unwrap().is_none());
        // The same codes and machines can come again; then the server stops mid-import.
        dir.stage_import(fleet(0, 50), 1).await.unwrap();
        dir.flush().await.unwrap();
        drop(dir);
        let dir = open(tmp.path());
        assert!(dir.view().is_empty());
        assert!(dir.terminal(&"7000001".parse().unwrap()).unwrap().is_none());
        dir.stage_import(fleet(0, 50), 1).await.unwrap();
        assert_eq!(dir.commit_import().await.unwrap(), 50);
        assert_eq!(dir.view().len(), 50);
    }
}
