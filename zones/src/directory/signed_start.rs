//! A signed zone's start in two steps. The open reads the terminals and returns, so that
//! answers without DO are served at once; the stored signatures are read on a second core
//! (after a clean stop, the copy saved then, once the terminals are read, with its chain
//! and index built there too; the store's table otherwise, beside the terminals' read), and
//! [`SignedStart::finish`] builds the signed zone from them (the NSEC3 chain, the index of
//! signatures, what must be signed again), stores what it signed with a new serial (a
//! restart after a stop signs nothing: the static names' signatures are stored, and the
//! SOA's is kept at the stop, so the zone keeps its serial) and puts it all in force at
//! once. Until then:
//! - after a clean stop, answers with DO are given from the saved copy looked up in place
//!   (see [`crate::dnssec::warm_start::preview`]) when it is the zone as that stop left it;
//! - otherwise the view says [`crate::index::View::signed_answers_pending`]: answers with DO are refused
//!   as not ready (a resolver then asks again or elsewhere), never answered unsigned;
//! - transfers wait for the signatures (the server's handler);
//! - the writer lock is held, so every change waits, and nothing is staged that the signed
//!   zone would not cover.
//!
//! A failure (the signatures cannot be read, signed or stored) poisons the directory: the
//! server stops with the error, as it would have at the open.

use crate::store::{DnssecWrites, ZoneWrites};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use super::signing::SignaturesFrom;
use super::{Directory, Serial, signing};
use crate::commit::Pending;
use crate::dnssec::Signer;
use crate::store::{Change, StoreError};

/// Where a directory's signatures are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signatures {
    /// DNSSEC off.
    Unsigned,
    /// Being read at start-up.
    Pending,
    /// In force.
    Ready,
    /// The signed start failed, with this error.
    Failed(String),
}

/// What the open read for the signed zone.
pub(super) struct Parts {
    /// The thread reading every stored signature.
    pub stored: JoinHandle<Result<signing::Stored, StoreError>>,
    pub signer: Arc<Signer>,
    /// The stored signatures followed every change (see [`crate::dnssec::whole`]).
    pub current: bool,
    /// The store's note that the zone was served unsigned since this serial (cleared).
    pub unsigned_since: Option<u32>,
    /// Unix seconds.
    pub now: u64,
    /// The journal sequence the next delta gets.
    pub next_seq: u64,
    /// A cluster node's start: its signatures are the leader's (see
    /// [`SignedStart::following_a_log`]).
    pub follow: bool,
}

/// The second step of a signed open: run [`SignedStart::finish`] once, on any thread.
pub struct SignedStart {
    directory: Directory,
    /// Held from the open until the signed zone is in force.
    writer: tokio::sync::OwnedMutexGuard<()>,
    parts: Parts,
}

impl std::fmt::Debug for SignedStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedStart")
            .field("now", &self.parts.now)
            .finish_non_exhaustive()
    }
}

impl SignedStart {
    pub(super) fn new(
        directory: Directory,
        writer: Arc<tokio::sync::Mutex<()>>,
        parts: Parts,
    ) -> Self {
        let writer = writer
            .try_lock_owned()
            .expect("no one else holds the writer lock of a directory being opened");
        Self {
            directory,
            writer,
            parts,
        }
    }

    /// Starts a cluster node: its store's signatures are those the leader made, replicated
    /// with the changes they sign, so nothing is stored here and the serial stays (every
    /// node serves the same content under the same serial). The SOA's signature is the
    /// one replicated with the last change. What the store lacks (none, unless the
    /// signatures came due while the node was down) is signed and served, not stored,
    /// until the leader's refresh signs it again. A node that has applied nothing from a
    /// log yet (the founding node's first start) starts as a single directory would.
    pub fn following_a_log(mut self) -> Self {
        self.parts.follow = true;
        self
    }

    /// Builds the signed zone (signing what the store lacks: at the first signed start, all
    /// of it), stores what it signed with a new serial (none when it signed nothing and the
    /// last stop kept the SOA's signature), and puts it in force; then changes go on.
    /// Returns where the terminals' signatures came from. Blocking: a few hundredths of a
    /// second at a million terminals after a clean stop, a few tenths after a crash, half a
    /// minute without signatures stored, on every core.
    pub fn finish(self) -> Result<SignaturesFrom, StoreError> {
        let Self {
            directory,
            writer,
            parts,
        } = self;
        let result = Self::build(&directory, parts);
        let inner = &directory.inner;
        match &result {
            Ok(_) => inner.signatures.send_replace(Signatures::Ready),
            Err(e) => {
                inner.commit.poison();
                tracing::error!(error = %e, "cannot put the zone's signatures in force");
                inner
                    .signatures
                    .send_replace(Signatures::Failed(e.to_string()))
            }
        };
        drop(writer);
        result
    }

    fn build(directory: &Directory, parts: Parts) -> Result<SignaturesFrom, StoreError> {
        let inner = &directory.inner;
        let stored = parts
            .stored
            .join()
            .expect("reading the signatures does not panic")?;
        let zone = directory.zone();
        let stored_statics = inner.commit.store().static_sigs()?;
        // The terminals, from the view (no change is made meanwhile).
        let (mut signed, from) = signing::signing_at_start(
            parts.signer,
            &zone,
            directory
                .view()
                .entries()
                .map(|(key, hot)| (key, &hot.addresses)),
            stored,
            stored_statics,
            parts.current,
            parts.now,
        )?;
        // What the store holds is served as it is, under the same serial, when the SOA
        // signature served at that serial was kept at the last stop too. Anything signed now
        // (terminals whose signatures no longer hold, the static names' when theirs did not
        // fit, the SOA's after a crash) changes the zone's content, so its serial moves and
        // secondaries take the new signatures.
        let stopped_at = directory.view().serial();
        // (Or the one made meanwhile, while answers were given from the copy saved at the
        // stop in place: one signature is served at a serial.)
        let soa = (inner.commit.store().soa_sig()?)
            .filter(|(at, _)| *at == stopped_at)
            .map(|(at, sig)| {
                let made = || directory.view().signed()?.soa_signature_at(at);
                (at, sig.or_else(made))
            });
        let mut changed = !signed.changes.is_empty() || signed.statics.is_some() || soa.is_none();
        // A node that has applied nothing from a log yet follows none: it stores what it
        // signed (the founding node's first start; another node's is replaced by the
        // founding node's snapshot).
        let follow = parts.follow
            && (inner.commit.store())
                .cluster_state(crate::store::replicated::APPLIED_KEY)?
                .is_some();
        if follow {
            if !signed.changes.is_empty() || signed.statics.is_some() {
                tracing::warn!(
                    signed = signed.changes.len(),
                    "signatures made at start-up that the store lacked; served until the leader signs them again"
                );
            }
            changed = false;
        }
        if let Some((at, Some(sig))) = soa.filter(|_| !changed) {
            signed.published.keep_soa_signature(at, sig);
        }
        let (serial, journal) = {
            let view = directory.view();
            match changed {
                true => (Serial(view.serial()).next(), view.journal().seqs()),
                false => (Serial(view.serial()), Vec::new()),
            }
        };
        if !follow && (changed || parts.unsigned_since.is_some()) {
            inner.commit.store().commit_now(&Change {
                zone: ZoneWrites {
                    serial: changed.then_some(serial.0),
                    journal_drop: journal,
                    ..Default::default()
                },
                dnssec: DnssecWrites {
                    signed: &signed.changes,
                    static_sigs: signed.statics.take(),
                    unsigned_since: parts.unsigned_since.map(|_| None),
                    ..Default::default()
                },
                ..Change::default()
            })?;
            // Stored: a whole zone's worth need not stay in memory meanwhile.
            signed.changes = Vec::new();
        }
        {
            let mut pending = directory.commit().pending();
            let mut view = inner.commit.view_mut();
            if changed {
                view.clear_journal();
                view.set_serial(serial);
                *pending = Pending::new(serial, parts.next_seq);
            }
            view.set_signed(signed.published);
        }
        // Answers with DO are given from here on; the refresh's order of expirations is
        // built after, with the writer lock still held.
        let order = directory.view().signed().map(|s| s.expiry_order());
        signed.staging.set_expiring(order.unwrap_or_default());
        if inner
            .staging
            .set(std::sync::Mutex::new(signed.staging))
            .is_err()
        {
            unreachable!("a directory is signed once, at its open");
        }
        if changed {
            inner.commit.announce_exactly(serial.0);
        }
        Ok(from)
    }
}

impl Directory {
    /// Where the signatures are (see [`Signatures`]).
    pub fn signatures(&self) -> Signatures {
        self.inner.signatures.borrow().clone()
    }

    /// Waits until the signed start is over: `Ok` when the zone is unsigned or its
    /// signatures are in force, the start's error when it failed.
    pub async fn signatures_ready(&self) -> Result<(), StoreError> {
        let mut watch = self.inner.signatures.subscribe();
        let state = watch
            .wait_for(|s| *s != Signatures::Pending)
            .await
            .map(|s| s.clone())
            .unwrap_or(Signatures::Pending);
        match state {
            Signatures::Failed(e) => Err(StoreError::Signing(e)),
            _ => Ok(()),
        }
    }
}
