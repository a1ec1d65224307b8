//! Keeping the zone signed (DNSSEC on; see [`crate::dnssec`]): the key and the whole
//! zone's signatures at open, each staged change's signatures, and the whole zone again when
//! a reset (an import's commit, a new static zone) changes much at once.

use super::*;
use crate::dnssec::staging::terminal_hash;
use crate::dnssec::statics::{self, Statics, StoredStatics};
use crate::dnssec::terminals::Slab;
use crate::dnssec::warm_start::preview::{self, Preview};
use crate::dnssec::warm_start::resume::{self, Resumed};
use crate::dnssec::whole::{self, Whole};
use crate::dnssec::{SignedDelta, SignedZone, Signer, Staging, ZoneKey};
use crate::store::DnssecWrites;
use crate::store::InPlace;
use crate::store::replicated::ViewChange;

/// The writer's signing state, and the published one built with it.
pub(super) struct Signing {
    pub staging: Staging,
    pub published: SignedZone,
    /// Signatures to store (made again or forgotten).
    pub changes: Vec<(CodeKey, Option<crate::dnssec::TerminalSigs>)>,
    /// The static names' signatures to store, when they were made afresh.
    pub statics: Option<StoredStatics>,
}

impl Directory {
    /// The zone's DNSSEC keys (none before DNSSEC was first turned on).
    pub fn zone_keys(&self) -> Result<Vec<ZoneKey>, StoreError> {
        self.commit().store().zone_keys()
    }

    /// True when the zone is signed (DNSSEC on).
    pub fn is_signed(&self) -> bool {
        *self.inner.signatures.borrow() != super::Signatures::Unsigned
    }

    /// The signed zone as staged, for a change made with the writer lock held; `None` with
    /// DNSSEC off. (A signed start holds that lock until the staging exists.)
    fn staged(&self) -> Result<Option<&Mutex<Staging>>, StoreError> {
        match (self.is_signed(), self.inner.staging.get()) {
            (false, _) => Ok(None),
            (true, Some(staging)) => Ok(Some(staging)),
            (true, None) => Err(StoreError::Signing(
                "the zone's signatures are not in force".into(),
            )),
        }
    }

    /// Keeps what a restart needs to serve the zone as it was, under the same serial (at
    /// shutdown, after the listeners stopped; nothing with DNSSEC off): the SOA signature
    /// served at the current serial (or that none was made), and a copy of every terminal's
    /// signatures that the next start reads at once (see [`Store::save_signatures`]).
    /// Saving the copy blocks for about a quarter of a second per million terminals; if it
    /// fails, the next start reads the store's table instead.
    pub async fn keep_signatures(&self) -> Result<(), StoreError> {
        // Nothing to keep before the signatures are in force (a stop during the start); a
        // cluster node keeps nothing of its own (its store is the log's, and the SOA's
        // signature comes with each change).
        if self.signatures() != super::Signatures::Ready || self.commit().store().is_replicated() {
            return Ok(());
        }
        let writer = self.commit().write_lock().await?;
        self.commit().flush_or_poison().await?;
        self.commit().publish();
        let kept =
            {
                let view = self.view();
                view.signed().map(|signed| {
                    let saved = self
                    .inner.commit.store()
                    .save_signatures(signed.terminals_in_store_order())
                    .inspect_err(|e| {
                        tracing::warn!(error = %e, "cannot save the signatures for the next start");
                    })
                    .ok();
                    (
                        (view.serial(), signed.soa_signature_at(view.serial())),
                        saved,
                    )
                })
            };
        let Some((soa, saved)) = kept else {
            return Ok(());
        };
        self.commit().store().stage(&Change {
            dnssec: DnssecWrites {
                soa_sig: Some(soa),
                signatures_saved: saved,
                ..Default::default()
            },
            ..Change::default()
        })?;
        self.commit().durable(writer).await
    }

    /// The static names' signatures as staged, to store with a change that signed some
    /// of them again (with the writer lock held).
    pub(super) fn staged_statics(&self) -> Result<Option<StoredStatics>, StoreError> {
        Ok(self.staged()?.map(|staging| {
            let staging = staging.lock().unwrap_or_else(|p| p.into_inner());
            staging.stored_statics(&self.zone().fingerprint())
        }))
    }

    /// Signs the zone changes of a change being staged (call with the writer lock held);
    /// `None` with DNSSEC off.
    pub(super) fn sign_change(
        &self,
        changes: &[AddressChange],
        now: u64,
    ) -> Result<Option<SignedDelta>, StoreError> {
        let Some(staging) = self.staged()? else {
            return Ok(None);
        };
        let mut staging = staging.lock().unwrap_or_else(|p| p.into_inner());
        let store = self.commit().store();
        staging
            .sign(&self.zone(), changes, now, |key| store.signed(key))
            .map(Some)
            .map_err(|e| StoreError::Signing(e.to_string()))
    }

    /// Signs again, through the commit pipeline, up to `limit` terminals whose signatures
    /// expire within [`whole::REFRESH`] of `now`, and the static names when theirs do;
    /// returns how many terminals.
    ///
    /// The signatures are made without the writer lock, from the terminals as staged; with
    /// the lock held, each is checked against what is staged then (the terminal's stored
    /// signatures, its NSEC3's next hash, the signer) and staged, so updates wait only for
    /// those checks. A terminal that changed meanwhile is signed again under the lock.
    pub async fn refresh_signatures(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        // Store reads and up to three signatures a terminal: blocking work, off the runtime.
        let directory = self.clone();
        let prepared = tokio::task::spawn_blocking(move || directory.prepare_refresh(now, limit))
            .await
            .map_err(|e| StoreError::Signing(format!("the refresh task failed: {e}")))??;
        match prepared {
            Some(prepared) => self.commit_refresh(prepared, now).await,
            None => Ok(0),
        }
    }

    /// The refresh's first part, without the writer lock: what is due, signed afresh.
    pub(super) fn prepare_refresh(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Option<PreparedRefresh>, StoreError> {
        let Some(staging) = self.inner.staging.get() else {
            return Ok(None);
        };
        let lock_staging = || staging.lock().unwrap_or_else(|p| p.into_inner());
        let horizon = (now as u32).wrapping_add(whole::REFRESH);
        let sign_error = |e: crate::dnssec::SignError| StoreError::Signing(e.to_string());
        let (due, statics, signer) = {
            let mut staging = lock_staging();
            let due = staging.due(horizon, limit);
            let statics = staging.statics_due(horizon);
            if due.is_empty() && !statics {
                staging.note_progress(now);
                return Ok(None);
            }
            (due, statics, staging.signer().clone())
        };
        let zone = self.zone();
        let store = self.commit().store();
        // Read without any lock: each terminal's signatures and addresses as staged now.
        let mut read = Vec::with_capacity(due.len());
        for key in due {
            let code = key.to_code();
            let old = store.signed(key)?;
            let addresses = staged_addresses(store, &code)?;
            let hash = old.map_or_else(|| terminal_hash(&zone, &code), |o| o.hash);
            read.push((key, old, addresses, code, hash));
        }
        let nexts: Vec<_> = {
            let staging = lock_staging();
            read.iter().map(|(.., hash)| staging.next(hash)).collect()
        };
        let mut made = Vec::with_capacity(read.len());
        for ((key, old, addresses, code, hash), next) in read.into_iter().zip(nexts) {
            let new = addresses
                .map(|addresses| {
                    crate::dnssec::staging::sign_terminal(
                        &signer, &zone, &code, hash, &addresses, next, now,
                    )
                })
                .transpose()
                .map_err(sign_error)?;
            made.push((key, old, new));
        }
        Ok(Some(PreparedRefresh {
            made,
            statics,
            signer,
            zone,
        }))
    }

    /// The refresh's second part, with the writer lock: each signature checked against what
    /// is staged now, and staged.
    pub(super) async fn commit_refresh(
        &self,
        prepared: PreparedRefresh,
        now: u64,
    ) -> Result<usize, StoreError> {
        let Some(staging) = self.inner.staging.get() else {
            return Ok(0);
        };
        let lock_staging = || staging.lock().unwrap_or_else(|p| p.into_inner());
        let sign_error = |e: crate::dnssec::SignError| StoreError::Signing(e.to_string());
        let PreparedRefresh {
            made,
            statics,
            signer,
            zone,
        } = prepared;
        let store = self.commit().store();
        let writer = self.commit().write_lock().await?;
        let zone_now = self.zone();
        let delta = {
            let mut staging = lock_staging();
            let mut delta = SignedDelta::default();
            let same_signer = Arc::ptr_eq(staging.signer(), &signer);
            for (key, old, new) in made {
                let current = store.signed(key)?;
                let holds = same_signer
                    && Arc::ptr_eq(&zone, &zone_now)
                    && current == old
                    && new.is_none_or(|n| staging.next(&n.hash) == n.next);
                let new = if holds {
                    new
                } else {
                    // Changed meanwhile: signed again from what is staged now.
                    let addresses = staged_addresses(store, &key.to_code())?;
                    match addresses {
                        Some(addresses) => Some(
                            staging
                                .sign_terminal(&zone_now, &key.to_code(), &addresses, now)
                                .map_err(sign_error)?,
                        ),
                        None => None,
                    }
                };
                staging.track(key, current.as_ref(), new.as_ref());
                delta.terminals.push((key, new));
                delta.before.push((key, current));
            }
            staging.note_progress(now);
            if statics {
                delta.all_statics = Some(staging.sign_statics(&zone_now, now).map_err(sign_error)?);
            }
            delta
        };
        let count = delta.terminals.len();
        self.stage(Work {
            store: Change::default(),
            zone_changes: Vec::new(),
            entries: Vec::new(),
            now,
            resigned: Some(delta),
        })?;
        self.commit().durable(writer).await?;
        Ok(count)
    }

    /// Signs the whole zone again for a reset with `zone` (call with the
    /// writer lock held); `None` with DNSSEC off.
    pub(super) fn sign_whole(&self, zone: &Zone, now: u64) -> Result<Option<Signing>, StoreError> {
        let Some(staging) = self.staged()? else {
            return Ok(None);
        };
        let signer = staging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .signer()
            .clone();
        // The store, not the view: an import's terminals are in it before the view.
        let mut online = Vec::new();
        self.commit().store().scan_hot(|key, hot| {
            if !hot.addresses.is_empty() {
                online.push((key, hot.addresses));
            }
        })?;
        let stored = stored_rows(self.commit().store(), online.len())?;
        let mut signing = signing_for(signer, zone, online, stored, None, true, now)?;
        signing
            .staging
            .set_expiring(signing.published.expiry_order());
        Ok(Some(signing))
    }

    /// Puts a whole zone's signatures in force (with the view's write lock held).
    pub(super) fn install(&self, signing: Signing, view: &mut View) {
        if let Some(staging) = self.inner.staging.get() {
            *staging.lock().unwrap_or_else(|p| p.into_inner()) = signing.staging;
        }
        view.set_signed(signing.published);
    }
}

impl Directory {
    /// The signed zone built again from what the store holds, for the terminals in `view`
    /// (a cluster node that installed the leader's snapshot, signatures included): `None`
    /// when the zone is not signed here. What the store lacks is signed here, and logged:
    /// this node then serves signatures of its own for it until the leader signs it again.
    pub(super) fn signing_from_store(
        &self,
        view: &View,
        now: u64,
    ) -> Result<Option<Signing>, StoreError> {
        if !self.is_signed() {
            return Ok(None);
        }
        let store = self.commit().store();
        let zone = self.zone();
        let keys = store.zone_keys()?;
        if keys.is_empty() {
            tracing::warn!("the snapshot installed has no DNSSEC keys; answers stay unsigned");
            return Ok(None);
        }
        let signer = signer_of(&keys, zone.origin())?;
        // The table, never a copy saved at an earlier stop: the store was just replaced.
        let stored = table_signatures(store, &zone, view.len(), true)?;
        let online = view.entries().map(|(key, hot)| (key, &hot.addresses));
        let (mut signing, _) = signing_at_start(
            signer,
            &zone,
            online,
            stored,
            store.static_sigs()?,
            true,
            now,
        )?;
        if !signing.changes.is_empty() || signing.statics.is_some() {
            tracing::warn!(
                signed = signing.changes.len(),
                "signatures made here that the leader's store lacked; served until the leader signs them again"
            );
        }
        let order = signing.published.expiry_order();
        signing.staging.set_expiring(order);
        if let Some((at, Some(sig))) = store.soa_sig()? {
            if at == view.serial() {
                signing.published.keep_soa_signature(at, sig);
            }
        }
        Ok(Some(signing))
    }

    /// What a change signed by a cluster's leader, `change`, does to the published signed
    /// zone `published`; with `follow`, the staging follows it too (this node did not
    /// stage it).
    pub(super) fn follow_signed(
        &self,
        change: &ViewChange,
        published: &SignedZone,
        follow: bool,
    ) -> Result<SignedDelta, StoreError> {
        let zone = self.zone();
        let signer = (change.zone_keys.as_ref())
            .map(|keys| signer_of(keys, zone.origin()))
            .transpose()?;
        let mut delta = SignedDelta {
            terminals: change.signed.iter().map(|(k, _, now)| (*k, *now)).collect(),
            before: change.signed.iter().map(|(k, was, _)| (*k, *was)).collect(),
            signer: signer.clone(),
            ..SignedDelta::default()
        };
        if let Some(stored) = change.static_sigs.clone() {
            let signer = signer.as_ref().unwrap_or(published.signer());
            match stored.fitting(&zone.fingerprint(), signer, published.statics()) {
                Some(all) => {
                    let now = published.signed_statics();
                    let same_rrsets = all.len() == now.len()
                        && all.iter().zip(now).all(|(a, b)| a.rrsets == b.rrsets);
                    if same_rrsets {
                        delta.statics = (all.iter().zip(now).enumerate())
                            .filter(|(_, (a, b))| a.next != b.next || a.nsec3 != b.nsec3)
                            .map(|(place, (a, _))| (place as u32, a.next, a.nsec3))
                            .collect();
                    } else {
                        delta.all_statics = Some(all);
                    }
                }
                None => tracing::warn!(
                    "the static names' signatures from the leader are for another zone file; is this node's the leader's?"
                ),
            }
        }
        if follow {
            if let Some(staging) = self.inner.staging.get() {
                staging
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .follow(&delta);
            }
        }
        Ok(delta)
    }

    /// Has every group commit this node replicates, as a cluster's leader, carry the SOA's
    /// signature at the serial it leaves the zone at (see [`crate::store::replicated`]).
    pub(super) fn seal_replicated(&self) {
        let inner = Arc::downgrade(&self.inner);
        let sealer = move |serial: u32| {
            let inner = inner.upgrade()?;
            let signer = inner
                .staging
                .get()?
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .signer()
                .clone();
            let soa = inner.zone.load().soa_record(serial);
            signer.sign(&[soa], crate::unix_now()).ok()
        };
        self.commit()
            .store()
            .seal_with(crate::store::replicated::SoaSealer(Box::new(sealer)));
    }
}

/// A terminal's addresses as staged, if it has any.
fn staged_addresses(store: &Store, code: &CallingCode) -> Result<Option<Addresses>, StoreError> {
    Ok(store
        .terminal(code)?
        .map(|e| e.presence.addresses)
        .filter(|a| !a.is_empty()))
}

/// Signatures the refresh made without the writer lock, to check and stage with it.
pub(super) struct PreparedRefresh {
    /// Each due terminal, its signatures when read, and the new ones.
    made: Vec<(
        CodeKey,
        Option<crate::dnssec::TerminalSigs>,
        Option<crate::dnssec::TerminalSigs>,
    )>,
    /// The static names are due too (signed with the lock: a handful of signatures).
    statics: bool,
    signer: Arc<Signer>,
    zone: Arc<Zone>,
}

/// The keys at open: the stored ones, or a new key made durable now.
pub(super) fn keys_at_open(store: &Store, now: u64) -> Result<Vec<ZoneKey>, StoreError> {
    let keys = store.zone_keys()?;
    if !keys.is_empty() {
        return Ok(keys);
    }
    let key = ZoneKey::generate(now).map_err(|e| StoreError::Signing(e.to_string()))?;
    let keys = vec![key];
    store.commit_now(&Change {
        dnssec: DnssecWrites {
            zone_keys: Some(&keys),
            ..Default::default()
        },
        ..Change::default()
    })?;
    tracing::info!(
        key_tag = keys[0].key_tag().unwrap_or_default(),
        "generated the zone's DNSSEC key (ECDSA P-256, a CSK); `nameserver dnssec ds` prints its DS"
    );
    Ok(keys)
}

/// The signer of the active key.
pub(super) fn signer_of(keys: &[ZoneKey], origin: &Name) -> Result<Arc<Signer>, StoreError> {
    Signer::new(keys, origin)
        .map(Arc::new)
        .map_err(|e| StoreError::Signing(e.to_string()))
}

/// The signed zone answered in place from the copy saved at the last stop, `saved`, while a
/// signed start reads it whole: when it is the zone as that stop left it at `serial`, with
/// every signature holding for [`preview::MARGIN`] past `now` (see [`crate::dnssec::warm_start::preview`]).
pub(super) fn in_place_at_open(
    store: &Store,
    zone: &Zone,
    signer: &Arc<Signer>,
    saved: InPlace,
    serial: u32,
    now: u64,
) -> Option<SignedZone> {
    let until = (now as u32).wrapping_add(preview::MARGIN);
    let statics = Statics::of(zone);
    let preview = Preview::new(Box::new(saved), &statics, signer.key_tag(), until)?;
    // The SOA's signature kept at the stop; none when none was asked for at that serial
    // (then it is made when first asked for, as it would have been).
    let soa = match store.soa_sig().ok()?? {
        (at, Some(sig)) if at == serial && sig.expiration >= until => Some((at, sig)),
        (at, None) if at == serial => None,
        _ => return None,
    };
    let signed_statics =
        (store.static_sigs().ok()??).fitting(&zone.fingerprint(), signer, &statics)?;
    if !statics::fit_chain(&signed_statics, &statics, |h| preview.next(h), until) {
        return None;
    }
    Some(SignedZone::in_place(
        signer.clone(),
        statics,
        signed_statics,
        preview,
        zone,
        soa,
    ))
}

/// Where a signed start took the terminals' signatures from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignaturesFrom {
    /// The copy saved at the last stop ([`Store::save_signatures`]).
    Saved,
    /// The store's table (after a crash, or a change since the copy was saved).
    Table,
}

/// The terminals' signatures as a signed start reads them, prepared on the reading core
/// (see [`crate::dnssec::warm_start::resume`]): from the copy saved at the last stop, or from the store's
/// table, which gives them in the same order of codes.
#[derive(Debug)]
pub(super) struct Stored {
    pub from: SignaturesFrom,
    /// Prepared; or, when a code came twice (never from this server's store), the entries
    /// as read, for the general signing.
    pub prepared: Result<Box<resume::Prepared>, Slab>,
}

/// Every terminal's signatures for a signed start of `zone` (on a second core, beside the
/// terminals' read): the copy saved at the last stop when it is current, the store's
/// table otherwise (`capacity`: about how many). Once `terminals_read` is set, the core
/// that read them is free to help prepare what is read.
pub(super) fn stored_signatures(
    store: &Store,
    zone: &Zone,
    capacity: usize,
    terminals_read: &AtomicBool,
) -> Result<Stored, StoreError> {
    let spare_core = || terminals_read.load(Ordering::Acquire);
    let mut building = resume::Building::with_capacity(capacity);
    if store.saved_signatures(|key, sigs| building.push(key, sigs)) {
        match building.finish(zone, spare_core()) {
            Ok(saved) => {
                return Ok(Stored {
                    from: SignaturesFrom::Saved,
                    prepared: Ok(Box::new(saved)),
                });
            }
            Err(_) => tracing::warn!(
                "the signatures saved at the stop name a code twice; reading the store's table"
            ),
        }
    }
    table_signatures(store, zone, capacity, spare_core())
}

/// Every terminal's signatures from the store's `signed` table, prepared (`capacity`:
/// about how many; `spare_core`: a second core is free to help).
fn table_signatures(
    store: &Store,
    zone: &Zone,
    capacity: usize,
    spare_core: bool,
) -> Result<Stored, StoreError> {
    let mut building = resume::Building::with_capacity(capacity);
    store.scan_signed(|key, sigs| building.push(key, sigs))?;
    Ok(Stored {
        from: SignaturesFrom::Table,
        prepared: building.finish(zone, spare_core).map(Box::new),
    })
}

/// Every terminal's signatures as the store's table holds them (`capacity`: about how
/// many).
fn stored_rows(store: &Store, capacity: usize) -> Result<Slab, StoreError> {
    let mut stored = Slab::with_capacity(capacity);
    store.scan_signed(|key, sigs| stored.push(key, sigs))?;
    Ok(stored)
}

/// The whole zone's signatures at a signed start, from what [`stored_signatures`] read:
/// taken up from them when they followed every change (`current`) and the terminals that
/// publish addresses, `online`, are those they hold (see [`crate::dnssec::warm_start::resume`]), signed
/// as [`signing_for`] does otherwise.
pub(super) fn signing_at_start<'a>(
    signer: Arc<Signer>,
    zone: &Zone,
    online: impl Iterator<Item = (CodeKey, &'a Addresses)> + Clone,
    stored: Stored,
    stored_statics: Option<StoredStatics>,
    current: bool,
    now: u64,
) -> Result<(Signing, SignaturesFrom), StoreError> {
    let started = std::time::Instant::now();
    let Stored { from, prepared } = stored;
    let source = match from {
        SignaturesFrom::Saved => "signatures taken up from the copy saved at the stop",
        SignaturesFrom::Table => "signatures read from the store's table",
    };
    tracing::info!("{source}");
    let rows = match prepared {
        Ok(saved) if current => {
            match resume::resume(signer.clone(), zone, *saved, online.clone(), now)
                .map_err(sign_error)?
            {
                Resumed::Whole(whole) => {
                    let signing = signing_of(*whole, zone, stored_statics, current, now, started)?;
                    return Ok((signing, from));
                }
                Resumed::Differs(rows) => {
                    tracing::warn!(
                        "the terminals are not those the stored signatures are for; signing the zone from them"
                    );
                    rows
                }
            }
        }
        Ok(saved) => saved.into_slab(),
        Err(rows) => rows,
    };
    let online = online
        .filter(|(_, addresses)| !addresses.is_empty())
        .map(|(key, addresses)| (key, addresses.clone()))
        .collect();
    let signing = signing_for(signer, zone, online, rows, stored_statics, current, now)?;
    Ok((signing, from))
}

fn sign_error(e: crate::dnssec::SignError) -> StoreError {
    StoreError::Signing(e.to_string())
}

/// The whole zone's signatures for the terminals `online` (those with addresses): the
/// `stored` ones kept while they hold (`current`: they followed every change), the others
/// made again; the static names' `stored_statics` likewise, when they fit (see
/// [`crate::dnssec::Staging::statics_at_open`]). The staging tracks no expiration yet (see
/// [`SignedZone::expiry_order`]).
pub(super) fn signing_for(
    signer: Arc<Signer>,
    zone: &Zone,
    online: Vec<(CodeKey, Addresses)>,
    stored: Slab,
    stored_statics: Option<StoredStatics>,
    current: bool,
    now: u64,
) -> Result<Signing, StoreError> {
    let started = std::time::Instant::now();
    let whole = whole::sign_zone(signer, zone, online, stored, current, now).map_err(sign_error)?;
    signing_of(whole, zone, stored_statics, current, now, started)
}

/// The signing state of `whole` (begun at `started`), with the static names' signatures:
/// `stored_statics` kept when they fit (and `current`), made again otherwise.
fn signing_of(
    whole: Whole,
    zone: &Zone,
    stored_statics: Option<StoredStatics>,
    current: bool,
    now: u64,
    started: std::time::Instant,
) -> Result<Signing, StoreError> {
    let Whole {
        mut staging,
        terminals,
        changes,
        published_chain,
    } = whole;
    staging.signed_whole_at(now);
    if !changes.is_empty() {
        tracing::info!(
            signed = changes.iter().filter(|(_, s)| s.is_some()).count(),
            forgotten = changes.iter().filter(|(_, s)| s.is_none()).count(),
            seconds = started.elapsed().as_secs_f64(),
            "signed the zone's terminals"
        );
    }
    let fingerprint = zone.fingerprint();
    let horizon = (now as u32).wrapping_add(whole::REFRESH);
    let stored_statics = stored_statics.filter(|_| current);
    let (signed_statics, made) = staging
        .statics_at_open(zone, &fingerprint, stored_statics, horizon, now)
        .map_err(sign_error)?;
    let chain = published_chain.unwrap_or_else(|| staging.chain().clone());
    let published = SignedZone::new(&staging, zone, terminals, signed_statics, chain);
    Ok(Signing {
        statics: made.then(|| staging.stored_statics(&fingerprint)),
        staging,
        published,
        changes,
    })
}
