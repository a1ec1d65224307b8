//! The directory: registered terminals and their current addresses; every change goes
//! through it.
//!
//! Each change takes the committer's one writer lock, reads the terminal from the store
//! (which shows every staged change, durable or not), runs its rules, stages its writes and
//! releases the lock; then the committer's group flush makes it durable and publishes it to
//! the [`View`] (the lean in-memory index that queries read); only then is it acknowledged.
//!
//! ```text
//!  register / import ─┐
//!  update (RFC 2136) ─┼─▶ rules (update::plan, policy, replay) ─▶ Directory::stage
//!  unregister, rotate ┤   ─▶ Committer: stage ─▶ queue ─▶ durable (flush) ─▶ View ─▶ reply
//!  expire (leases)  ──┘
//! ```
//!
//! Journal deltas always describe the zone as secondaries were sent it: the stored
//! addresses at the previous serial, not what a query would answer (a terminal whose lease
//! ran out answers no addresses to queries before the expiry sweep has removed them from
//! the zone).
//!
//! This file holds the handle, opening, the reads, and the rules every change shares (its
//! serial, journal delta and signatures) before [`crate::commit::Committer`] stages,
//! flushes, publishes and announces it. The changes themselves, each in its own file:
//! - [`registry`]: register, bulk import in one transaction, unregister, rotate a key;
//! - [`import`]: a streamed import, staged in batches, committed or aborted as a whole;
//! - [`presence`]: RFC 2136 updates and lease expiry;
//! - [`zone_reload`]: a new static zone while serving;
//! - [`enrollment`]: tokens, customers, approval, and terminals enrolling themselves;
//! - [`replica`]: a cluster node: committed log entries applied, taking over as leader;
//!
//! and [`signing`] keeps the zone signed through all of them (DNSSEC on), [`rollover`]
//! replaces its zone-signing key, and [`signed_start`] puts a signed zone's stored
//! signatures in force after the open has made its terminals servable.

use crate::store::{DnssecWrites, ZoneWrites};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLockReadGuard};

use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};

use crate::commit::{Committer, Publication};
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
pub use enrollment::{CustomerChange, Enrolled, Enrollment, NewToken, Standing};
pub use rollover::{KeyEvent, RolloverError};
pub use signed_start::{Signatures, SignaturesFrom, SignedStart};

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
    /// Unknown, wrong, expired, revoked or used up: one error, so that none is told apart.
    #[error("the token is not accepted")]
    TokenRefused,
    #[error("no token {0}: `nameserver token list` shows the tokens")]
    UnknownToken(crate::enroll::TokenId),
    #[error("customer {0} is suspended")]
    Suspended(Kid),
    #[error("customer {kid} has reached its limit of {limit} terminals")]
    TerminalLimit { kid: Kid, limit: u32 },
    #[error("machine {mid} is registered under another customer ({kid})")]
    MachineOfAnother { mid: Mid, kid: Kid },
    #[error("calling code {code} is outside the token's range {range}")]
    OutOfRange {
        code: CallingCode,
        range: crate::enroll::CodeRange,
    },
    #[error("no free calling code in {0}")]
    NoFreeCode(crate::enroll::CodeRange),
    #[error("calling code {0} is not waiting for approval")]
    NotAwaiting(CallingCode),
    #[error(transparent)]
    Enroll(crate::enroll::EnrollError),
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

/// A change to more terminals than this is not journalled: an IXFR of it would be larger
/// than the zone, so the journal is emptied and secondaries take the whole zone (as BIND and
/// Knot fall back to AXFR when the difference outgrows the zone).
const LARGEST_DELTA: usize = 10_000;

/// One change for [`Directory::commit`]: what the store writes, how the zone changed (a
/// serial increase when not empty), and the terminals' new state.
struct Work<'a> {
    store: Change<'a>,
    zone_changes: Vec<AddressChange>,
    entries: Vec<(CodeKey, Option<Hot>)>,
    /// Unix seconds, for the signatures of a signed zone.
    now: u64,
    /// Signatures made again (a refresh): a change of the zone with no address changes.
    resigned: Option<crate::dnssec::SignedDelta>,
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
    /// The store, the view, what is staged, the writer lock: every change ends there.
    commit: Committer,
    /// One import session at a time.
    importing: Arc<tokio::sync::Mutex<()>>,
    /// The signed zone as staged, once a signed start has put it in force. Lock order:
    /// the writer lock, then this.
    staging: std::sync::OnceLock<Mutex<crate::dnssec::Staging>>,
    /// Where the signed start is.
    signatures: tokio::sync::watch::Sender<Signatures>,
    /// Suspended customers and terminals awaiting approval (see [`enrollment`]).
    gate: std::sync::RwLock<enrollment::Gate>,
}

impl Directory {
    /// Opens the store in `data_dir` and builds the view from it.
    ///
    /// When the zone file's serial is newer than the stored one, or its static records
    /// changed, the zone gets a new serial (the newer of the file's and the stored one plus
    /// one) and the journal is emptied, so a secondary at an older serial gets the whole
    /// zone instead of deltas with a gap. That change is durable before anything is served.
    pub fn open(data_dir: &Path, zone: Zone, limits: Limits) -> Result<Self, StoreError> {
        Self::open_with(data_dir, zone, limits, None).map(|(directory, _)| directory)
    }

    /// Opens as [`Directory::open`] does, with the zone signed (DNSSEC): the key is made
    /// at the first such start, and what the store lacks is signed before this returns
    /// (with a new serial when anything was: see [`SignedStart::finish`]). `now` is Unix
    /// seconds.
    pub fn open_signed(
        data_dir: &Path,
        zone: Zone,
        limits: Limits,
        now: u64,
    ) -> Result<Self, StoreError> {
        let (directory, start) = Self::open_signing(data_dir, zone, limits, now)?;
        start.finish()?;
        Ok(directory)
    }

    /// Opens a signed zone in two steps: this returns once the terminals are read, so that
    /// answers without DO are served at once, and the [`SignedStart`] puts the signed zone in
    /// force when its [`SignedStart::finish`] is run (on another thread). Until then answers
    /// with DO are given from the copy saved at the last clean stop, looked up in place,
    /// when it is current, and refused as not ready otherwise
    /// ([`View::signed_answers_pending`]); transfers wait for
    /// [`Directory::signatures_ready`], and every change waits for the writer lock. The key
    /// is made here, at the first such start.
    pub fn open_signing(
        data_dir: &Path,
        zone: Zone,
        limits: Limits,
        now: u64,
    ) -> Result<(Self, SignedStart), StoreError> {
        let (directory, start) = Self::open_with(data_dir, zone, limits, Some(now))?;
        Ok((directory, start.expect("a signed open has a signed start")))
    }

    fn open_with(
        data_dir: &Path,
        zone: Zone,
        limits: Limits,
        signed_at: Option<u64>,
    ) -> Result<(Self, Option<SignedStart>), StoreError> {
        let store = Store::open(data_dir, zone.origin())?;
        if store.import_in_progress()? {
            let removed = store.abort_import()?;
            tracing::warn!(
                removed,
                "an import was interrupted before its commit; its terminals were removed"
            );
        } else if store.drop_stale_import_list()? {
            tracing::info!("the list of a committed import's codes was cleared");
        }
        let snapshot = store.load()?;
        let mut journal = Journal::new(limits.journal_depth, snapshot.journal);
        let fingerprint = zone.fingerprint();
        let serial = match snapshot.serial.map(Serial) {
            None => Serial(zone.initial_serial()),
            Some(stored) => serial_for(
                &zone,
                &fingerprint,
                stored,
                snapshot.zone_fingerprint.as_deref(),
            ),
        };
        if snapshot.serial != Some(serial.0)
            || snapshot.zone_fingerprint.as_deref() != Some(&fingerprint)
        {
            store.commit_now(&Change {
                zone: ZoneWrites {
                    serial: Some(serial.0),
                    journal_drop: journal.seqs(),
                    zone_fingerprint: Some(&fingerprint),
                    ..Default::default()
                },
                ..Change::default()
            })?;
            journal.clear();
        }
        let next_seq = journal.next_seq();
        let mut view = View::new(serial, journal, snapshot.terminals);
        // A signed zone's stored signatures are read on a second core: beside the
        // terminals' read, or after it when the copy saved at the last stop is answered
        // from in place meanwhile, so that the terminals' read has the machine to itself.
        let terminals_read = Arc::new(AtomicBool::new(false));
        let in_place = signed_at.and_then(|_| store.saved_in_place());
        let mut read_stored = signed_at.map(|_| {
            let (store, zone, capacity) = (store.clone(), zone.clone(), snapshot.terminals);
            let terminals_read = terminals_read.clone();
            move || {
                std::thread::spawn(move || {
                    signing::stored_signatures(&store, &zone, capacity, &terminals_read)
                })
            }
        });
        let mut stored = match in_place {
            None => read_stored.take().map(|read| read()),
            Some(_) => None,
        };
        // The second core is free unless the signatures are being read on it.
        load::terminals(&store, &mut view, stored.is_none())?;
        terminals_read.store(true, Ordering::Release);
        if let Some(read) = read_stored {
            stored = Some(read());
        }
        // Served unsigned since the signatures were stored, and changed meanwhile: none of
        // them is trusted.
        let unsigned_since = snapshot.unsigned_since;
        let start = match signed_at.zip(stored) {
            None => {
                if unsigned_since.is_none() && !store.zone_keys()?.is_empty() {
                    store.commit_now(&Change {
                        dnssec: DnssecWrites {
                            unsigned_since: Some(Some(serial.0)),
                            ..Default::default()
                        },
                        ..Change::default()
                    })?;
                }
                None
            }
            Some((now, stored)) => {
                let keys = signing::keys_at_open(&store, now)?;
                let signer = signing::signer_of(&keys, zone.origin())?;
                let current = unsigned_since.is_none_or(|since| Some(since) == snapshot.serial);
                view.set_signatures_pending();
                let saved = in_place.filter(|_| current);
                let looked_up = saved.is_some();
                match saved.and_then(|saved| {
                    signing::in_place_at_open(&store, &zone, &signer, saved, serial.0, now)
                }) {
                    Some(signed) => {
                        tracing::info!(
                            "answers with DO are given from the signatures saved at the stop, in place, until they are read"
                        );
                        view.set_in_place(signed);
                    }
                    None if looked_up => tracing::info!(
                        "the signatures saved at the stop are not the zone's as it is now signed; answers with DO wait until they are read"
                    ),
                    None => {}
                }
                Some(signed_start::Parts {
                    stored,
                    signer,
                    current,
                    unsigned_since,
                    now,
                    next_seq,
                    follow: false,
                })
            }
        };
        let gate = enrollment::Gate::load(&store)?;
        let commit = Committer::new(store, view, serial, next_seq);
        let writer = commit.writer().clone();
        let directory = Self {
            inner: Arc::new(Inner {
                zone: ArcSwap::from_pointee(zone),
                limits,
                commit,
                importing: Arc::default(),
                staging: std::sync::OnceLock::new(),
                gate: std::sync::RwLock::new(gate),
                signatures: tokio::sync::watch::Sender::new(match start {
                    Some(_) => Signatures::Pending,
                    None => Signatures::Unsigned,
                }),
            }),
        };
        let start = start.map(|parts| SignedStart::new(directory.clone(), writer, parts));
        Ok((directory, start))
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
        self.inner.commit.view()
    }

    /// Where every change ends: staged, made durable, published.
    fn commit(&self) -> &Committer {
        &self.inner.commit
    }

    /// A terminal as last committed (durable or not), with its key and replay memory.
    pub fn terminal(&self, code: &CallingCode) -> Result<Option<Entry>, StoreError> {
        self.commit().store().terminal(code)
    }

    /// Every registered terminal, by code, to `each` until it returns false, without
    /// collecting them (blocking: call it from the blocking pool).
    pub fn for_each_entry(&self, each: impl FnMut(Entry) -> bool) -> Result<(), StoreError> {
        self.commit().store().for_each_entry(each)
    }

    /// A consistent snapshot of everything durable, for a backup (blocking: call it from the
    /// blocking pool); see [`Store::snapshot`].
    /// With `signatures` (a cluster's snapshot of a signed zone), it carries the terminals',
    /// the static names' and the SOA's signatures: the SOA's served at the serial, made now
    /// if none was yet.
    pub fn snapshot(
        &self,
        signatures: bool,
        mut each: impl FnMut(crate::store::Snapshotted) -> bool,
    ) -> Result<(), StoreError> {
        use crate::store::Snapshotted;
        let soa = signatures
            .then(|| {
                let view = self.view();
                let (serial, signed) = (view.serial(), view.signed()?);
                let zone = self.zone();
                signed.rrsig(&zone, &[zone.soa_record(serial)], crate::unix_now())?;
                Some((serial, signed.soa_signature_at(serial)?))
            })
            .flatten();
        self.commit().store().snapshot(signatures, |mut item| {
            if let (
                Snapshotted::Head {
                    serial: Some(serial),
                    signatures: Some(signatures),
                    ..
                },
                Some((at, sig)),
            ) = (&mut item, soa)
            {
                if *serial == at {
                    signatures.soa_sig = Some((at, Some(sig)));
                }
            }
            each(item)
        })
    }

    /// The terminal whose TSIG key has this name (lower case, fully qualified), and the key:
    /// the code is parsed from the name, the registration must be published (durable), and
    /// the rest of the name must match the stored KID and MID.
    pub fn terminal_key(&self, key_name: &str) -> Option<(CallingCode, TsigKey)> {
        let parsed = TerminalKeyName::parse(key_name)?;
        self.view().terminal(&parsed.code)?;
        let key = self.commit().store().key(&parsed.code).ok()??;
        (key.name == key_name).then_some((parsed.code, key))
    }

    /// A cheap check before any per-key budget is spent: false for a replay or an
    /// out-of-order message. The writer repeats the check under its lock, which also catches
    /// copies that race each other.
    pub fn is_fresh(&self, code: &CallingCode, freshness: &Freshness) -> bool {
        match self.commit().store().terminal(code) {
            Ok(Some(e)) => replay::check_fresh(&e.presence, freshness).is_ok(),
            _ => true,
        }
    }

    /// Stages one change through the committer (not yet durable): when the zone changed,
    /// with a serial increase, its journal delta and its signatures. Returns the serial
    /// after the change. Call with the writer lock held, then [`Committer::durable`].
    fn stage(&self, mut work: Work<'_>) -> Result<u32, StoreError> {
        let from = self.commit().pending().serial();
        let next_seq = self.commit().pending().next_seq();
        let depth = self.inner.limits.journal_depth.max(1) as u64;
        let reset_journal = work.zone_changes.len() > LARGEST_DELTA;
        let serial =
            (!work.zone_changes.is_empty() || work.resigned.is_some()).then(|| from.next());
        let delta = (serial.is_some() && !reset_journal).then(|| Delta {
            seq: next_seq,
            from: from.0,
            to: from.next().0,
            changes: std::mem::take(&mut work.zone_changes),
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
        let signed = match (serial, work.resigned.take()) {
            (Some(_), Some(resigned)) => Some(resigned),
            (Some(_), None) => self.sign_change(zone_changes_of(&delta, &work), work.now)?,
            (None, _) => None,
        };
        let statics_changed = signed
            .as_ref()
            .is_some_and(|s| !s.statics.is_empty() || s.all_statics.is_some());
        let change = Change {
            zone: ZoneWrites {
                serial: serial.map(|s| s.0),
                journal: delta.as_ref(),
                journal_drop,
                ..work.store.zone
            },
            dnssec: DnssecWrites {
                signed: signed.as_ref().map_or(&[], |s| s.terminals.as_slice()),
                static_sigs: if statics_changed {
                    self.staged_statics()?
                } else {
                    None
                },
                ..work.store.dnssec
            },
            ..work.store
        };
        let commit = self.commit().stage(&change)?;
        let staged = self.commit().queue(Publication {
            commit,
            serial,
            delta,
            reset_journal,
            entries: work.entries,
            signed,
        });
        Ok(staged.0)
    }

    /// The first half of a move to serial `to` with the journal emptied (an import's
    /// commit, a new static zone), so that secondaries take the whole zone: `change`, with
    /// that serial and the journal's removal added, is made durable and what was flushed
    /// before it is published. [`Directory::finish_reset`] completes the move.
    ///
    /// A signed zone is signed again as a whole for `zone` (the one served from `to` on), in
    /// the same transaction; the signatures are returned for `finish_reset`.
    async fn begin_reset(
        &self,
        to: Serial,
        change: Change<'_>,
        zone: &Zone,
        now: u64,
    ) -> Result<Option<signing::Signing>, StoreError> {
        let next_seq = self.commit().pending().next_seq();
        let depth = self.inner.limits.journal_depth.max(1) as u64;
        let mut signed = self.sign_whole(zone, now)?;
        let static_sigs = signed.as_mut().and_then(|s| s.statics.take());
        self.commit().store().stage(&Change {
            zone: ZoneWrites {
                serial: Some(to.0),
                journal_drop: every_delta(next_seq, depth),
                ..change.zone
            },
            dnssec: DnssecWrites {
                signed: signed.as_ref().map_or(&[], |s| s.changes.as_slice()),
                static_sigs,
                ..change.dnssec
            },
            ..change
        })?;
        if let Some(signed) = signed.as_mut() {
            // Staged: a whole zone's worth need not stay in memory meanwhile.
            signed.changes = Vec::new();
        }
        self.commit().flush_or_poison().await?;
        self.commit().publish();
        Ok(signed)
    }

    /// The second half: the index moves to `to` with an empty journal, `swap` runs while
    /// queries are held off, and followers are told.
    fn finish_reset(&self, to: Serial, signed: Option<signing::Signing>, swap: impl FnOnce()) {
        {
            let mut pending = self.commit().pending();
            pending.advance(to);
            let mut view = self.commit().view_mut();
            view.clear_journal();
            view.set_serial(to);
            if let Some(signed) = signed {
                self.install(signed, &mut view);
            }
            swap();
        }
        self.commit().announce(to.0);
    }

    /// A receiver that sees every new durable serial (for NOTIFY).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u32> {
        self.commit().subscribe()
    }

    /// Makes everything committed durable (at shutdown; every change is already flushed).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.commit().store().flush().await
    }

    /// Reports every later group commit (its size and time) to `observer`.
    pub fn observe_flushes(&self, observer: Arc<dyn crate::observe::FlushObserver>) {
        self.commit().store().observe(observer);
    }

    /// Makes the next flush fail, as a failing disk would (for fault-injection tests).
    pub fn inject_flush_failure(&self) {
        self.commit().store().inject_flush_failure();
    }
}

/// The serial of `zone` (whose fingerprint is `fingerprint`) replacing a zone served at
/// `serial` with the fingerprint `served`: the file's serial when it is newer, else the next
/// one when the static records changed, else `serial` itself (nothing changed).
fn serial_for(zone: &Zone, fingerprint: &str, serial: Serial, served: Option<&str>) -> Serial {
    let file = Serial(zone.initial_serial());
    if file.is_newer_than(serial) {
        file
    } else if served != Some(fingerprint) {
        serial.next()
    } else {
        serial
    }
}

/// The zone changes of a change being staged: in its journal delta, or (too large to
/// journal) still in the work.
fn zone_changes_of<'w>(delta: &'w Option<Delta>, work: &'w Work<'_>) -> &'w [AddressChange] {
    delta.as_ref().map_or(&work.zone_changes, |d| &d.changes)
}

/// Every delta the store may hold before sequence `next_seq`: the last `depth` of them.
fn every_delta(next_seq: u64, depth: u64) -> Vec<u64> {
    (next_seq.saturating_sub(depth).max(1)..next_seq).collect()
}

mod enrollment;
mod import;
mod load;
mod presence;
mod registry;
mod replica;
mod rollover;
mod signed_start;
mod signing;
#[cfg(test)]
mod signing_tests;
#[cfg(test)]
mod tests;
mod zone_reload;
