//! Rolling the zone-signing key by pre-publication (RFC 6781 §4.1.1.1), driven by the
//! clock the caller passes:
//!
//! ```text
//!  start_rollover      new ZSK published (in the DNSKEY RRset, not signing)
//!    wait: DNSKEY TTL + propagation delay        (resolvers learn the new key)
//!  advance_keys        new ZSK active; the old one retired (a CSK becomes the KSK: it goes
//!                      on signing the DNSKEY RRset, so the DS at the parent stays); every
//!                      terminal is signed again by the refresh, a batch a second
//!    wait: the largest TTL served (terminals' stored TTLs included) + propagation delay,
//!          from the last re-signature; and no stored signature by the retired key left
//!  advance_keys        the retired ZSK leaves the DNSKEY RRset
//! ```
//!
//! Each step is a change through the commit pipeline (keys and signatures in one
//! transaction, a serial increase), so secondaries follow it by NOTIFY and transfer.

use super::*;
use crate::dnssec::{KeyRole, KeyState, SignedDelta, ZoneKey};
use crate::store::DnssecWrites;

/// What a rollover step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEvent {
    /// A new zone-signing key is published (its tag).
    Published(u16),
    /// The published key signs the zone now (its tag).
    Activated(u16),
    /// The retired key left the DNSKEY RRset (its tag).
    Removed(u16),
}

/// Why a rollover cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RolloverError {
    #[error("the zone is not signed: start the server with --dnssec")]
    Unsigned,
    #[error("a rollover is in progress (key {tag} is {state}); it must end first")]
    InProgress { tag: u16, state: KeyState },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Directory {
    /// Starts a rollover: a new zone-signing key, published. Returns its tag.
    pub async fn start_rollover(&self, now: u64) -> Result<u16, RolloverError> {
        if !self.is_signed() {
            return Err(RolloverError::Unsigned);
        }
        let writer = self.commit().write_lock().await?;
        let mut keys = self.commit().store().zone_keys()?;
        if let Some(busy) = keys.iter().find(|k| k.state != KeyState::Active) {
            return Err(RolloverError::InProgress {
                tag: busy.key_tag().unwrap_or_default(),
                state: busy.state,
            });
        }
        let key = ZoneKey::generate_zsk(now).map_err(|e| StoreError::Signing(e.to_string()))?;
        let tag = key
            .key_tag()
            .map_err(|e| StoreError::Signing(e.to_string()))?;
        keys.push(key);
        self.change_keys(writer, &keys, false, now).await?;
        Ok(tag)
    }

    /// Moves a rollover on when its wait is over (`propagation`: seconds allowed for a
    /// change to reach every secondary and resolver, on top of TTLs). Call it often.
    pub async fn advance_keys(
        &self,
        now: u64,
        propagation: u64,
    ) -> Result<Option<KeyEvent>, StoreError> {
        let Some(staging) = self.inner.staging.get() else {
            return Ok(None);
        };
        let keys = self.commit().store().zone_keys()?;
        if keys.iter().all(|k| k.state == KeyState::Active) {
            return Ok(None);
        }
        let zone = self.zone();
        let tag = |k: &ZoneKey| k.key_tag().unwrap_or_default();
        // A key leaves the RRset only when no stored signature names it (checked before the
        // writer lock: changes from now on are signed by the active key, so such signatures
        // can only go). Any found are signed again by the refresh first.
        if let Some(retired) = keys.iter().find(|k| k.state == KeyState::Retired) {
            let held = self.terminals_signed_by(tag(retired))?;
            if !held.is_empty() {
                tracing::warn!(
                    key = tag(retired),
                    terminals = held.len(),
                    "the retired key still signs some terminals; they are signed again before it leaves"
                );
                let mut staging = staging.lock().unwrap_or_else(|p| p.into_inner());
                staging.make_due(held);
                return Ok(None);
            }
        }
        let writer = self.commit().write_lock().await?;
        let mut keys = self.commit().store().zone_keys()?;
        let publish_wait = u64::from(crate::dnssec::statics::dnskey_ttl(&zone)) + propagation;
        if let Some(new) = keys
            .iter()
            .position(|k| k.state == KeyState::Published && now >= k.since + publish_wait)
        {
            for key in keys.iter_mut().filter(|k| k.signs_zone()) {
                match key.role {
                    KeyRole::Csk => key.role = KeyRole::Ksk,
                    _ => {
                        key.state = KeyState::Retired;
                        key.since = now;
                    }
                }
            }
            keys[new].state = KeyState::Active;
            keys[new].since = now;
            let event = KeyEvent::Activated(tag(&keys[new]));
            self.change_keys(writer, &keys, true, now).await?;
            return Ok(Some(event));
        }
        let resigned_at = staging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .resigned_at();
        let retire_wait = u64::from(self.largest_ttl_served(&zone)) + propagation;
        let done = resigned_at.is_some_and(|at| now >= at + retire_wait);
        if let Some(old) = keys
            .iter()
            .position(|k| k.state == KeyState::Retired && done)
        {
            let event = KeyEvent::Removed(tag(&keys[old]));
            keys.remove(old);
            self.change_keys(writer, &keys, false, now).await?;
            return Ok(Some(event));
        }
        Ok(None)
    }

    /// Puts `keys` in force: stored with the static names signed again (the DNSKEY RRset
    /// changed), and with every terminal due for signing again when `resign_all`.
    async fn change_keys(
        &self,
        writer: tokio::sync::MutexGuard<'_, ()>,
        keys: &[ZoneKey],
        resign_all: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        let signer = signing::signer_of(keys, self.zone().origin())?;
        let delta = {
            let staging = self.inner.staging.get().expect("the zone is signed");
            let mut staging = staging.lock().unwrap_or_else(|p| p.into_inner());
            staging.set_signer(signer.clone());
            if resign_all {
                staging.resign_all();
            }
            let statics = staging
                .sign_statics(&self.zone(), now)
                .map_err(|e| StoreError::Signing(e.to_string()))?;
            SignedDelta {
                all_statics: Some(statics),
                signer: Some(signer),
                ..SignedDelta::default()
            }
        };
        self.stage(Work {
            store: Change {
                dnssec: DnssecWrites {
                    zone_keys: Some(keys),
                    ..Default::default()
                },
                ..Change::default()
            },
            zone_changes: Vec::new(),
            entries: Vec::new(),
            now,
            resigned: Some(delta),
        })?;
        self.commit().durable(writer).await
    }
}

impl Directory {
    /// The largest TTL a resolver may cache a signature of this zone for: every terminal's
    /// stored TTL (served as stored, so a cap lowered since does not shorten it), the cap
    /// on new ones, the SOA's, the negative answers' (NSEC3), the DNSKEY RRset's and the
    /// static records'.
    fn largest_ttl_served(&self, zone: &Zone) -> u32 {
        let terminals = {
            let view = self.commit().view();
            view.entries()
                .flat_map(|(_, hot)| {
                    let (v4, v6) = (&hot.addresses.v4, &hot.addresses.v6);
                    [
                        (!v4.addrs.is_empty()).then_some(v4.ttl),
                        (!v6.addrs.is_empty()).then_some(v6.ttl),
                    ]
                })
                .flatten()
                .max()
                .unwrap_or(0)
        };
        zone.static_records()
            .map(|r| r.ttl)
            .chain([
                terminals,
                self.inner.limits.max_ttl,
                zone.soa_record(0).ttl,
                zone.negative_ttl(),
                crate::dnssec::statics::dnskey_ttl(zone),
            ])
            .max()
            .unwrap_or(0)
    }

    /// The terminals any of whose stored signatures is by the key with tag `tag`.
    fn terminals_signed_by(&self, tag: u16) -> Result<Vec<crate::identity::CodeKey>, StoreError> {
        let mut held = Vec::new();
        self.commit().store().scan_signed(|key, sigs| {
            if [sigs.a, sigs.aaaa, Some(sigs.nsec3)]
                .iter()
                .flatten()
                .any(|sig| sig.key_tag == tag)
            {
                held.push(key);
            }
        })?;
        Ok(held)
    }
}
