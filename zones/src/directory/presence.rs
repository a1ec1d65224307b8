//! Terminals' presence: RFC 2136 updates by their own keys, and the expiry of leases.

use super::*;
use crate::store::TerminalWrites;

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

impl Directory {
    /// Applies an RFC 2136 update signed by the key of `code`, asking for `lease` seconds.
    pub async fn update(
        &self,
        code: &CallingCode,
        message: &UpdateMessage<'_>,
        freshness: &Freshness,
        lease: Option<u32>,
        now: u64,
    ) -> Result<UpdateOutcome, DirectoryError> {
        let writer = self.commit().write_lock().await?;
        let entry = self
            .inner
            .commit
            .store()
            .terminal(code)?
            .ok_or_else(|| DirectoryError::UnknownCode(code.clone()))?;
        replay::check_fresh(&entry.presence, freshness).map_err(|e| DirectoryError::Stale {
            code: code.clone(),
            time_signed: e.time_signed,
        })?;
        let zone = self.inner.zone.load();
        let contents = Contents {
            zone: &zone,
            store: self.commit().store(),
            serial: self.commit().pending().serial(),
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
                terminals: TerminalWrites {
                    put_presence: vec![(code, &presence)],
                    ..Default::default()
                },
                ..Change::default()
            },
            zone_changes,
            entries: vec![(CodeKey::from(code), Some(updated))],
            now,
            resigned: None,
        })?;
        self.commit().durable(writer).await?;
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
        let writer = self.commit().write_lock().await?;
        let candidates = self.view().expired_by(now);
        let mut expired = Vec::new();
        for key in candidates {
            // Renewed since publication: its committed lease is what counts.
            if let Some(entry) = self.commit().store().terminal(&key.to_code())? {
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
                terminals: TerminalWrites {
                    put_presence: offline
                        .iter()
                        .map(|e| (&e.terminal.code, &e.presence))
                        .collect(),
                    ..Default::default()
                },
                ..Change::default()
            },
            zone_changes,
            entries: offline
                .iter()
                .map(|e| (CodeKey::from(&e.terminal.code), Some(e.presence.hot())))
                .collect(),
            now,
            resigned: None,
        })?;
        self.commit().durable(writer).await?;
        Ok(expired.into_iter().map(|e| e.terminal.code).collect())
    }
}
