//! Registering terminals (one, or a bulk import in one transaction), unregistering them and
//! rotating their keys: new keys, and the checks that a code or machine is not taken.

use super::*;
use crate::store::TerminalWrites;

impl Directory {
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
        let writer = self.commit().write_lock().await?;
        let entries = checked_registrations(self.commit().store(), entries)?;
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
            now,
            resigned: None,
        })?;
        self.commit().durable(writer).await?;
        Ok(entries.into_iter().map(|e| e.terminal).collect())
    }

    /// A registered terminal that no uncommitted import holds. Call with the writer lock.
    pub(super) fn registered(&self, code: &CallingCode) -> Result<Entry, DirectoryError> {
        self.refuse_importing(code)?;
        self.commit()
            .store()
            .terminal(code)?
            .ok_or_else(|| DirectoryError::UnknownCode(code.clone()))
    }

    /// Removes a terminal; its name disappears from the zone.
    pub async fn unregister(
        &self,
        code: &CallingCode,
        now: u64,
    ) -> Result<Terminal, DirectoryError> {
        let writer = self.commit().write_lock().await?;
        let entry = self.registered(code)?;
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
                terminals: TerminalWrites {
                    remove_terminal: Some(&terminal),
                    ..Default::default()
                },
                ..Change::default()
            },
            zone_changes,
            entries: vec![(CodeKey::from(code), None)],
            now,
            resigned: None,
        })?;
        self.commit().durable(writer).await?;
        self.gate_forget(code);
        Ok(terminal)
    }

    /// Issues a new secret for a terminal's key; the old secret stops working once the
    /// new one is durable.
    pub async fn rotate_key(
        &self,
        code: &CallingCode,
        now: u64,
    ) -> Result<Terminal, DirectoryError> {
        let writer = self.commit().write_lock().await?;
        let entry = self.registered(code)?;
        let mut terminal = entry.terminal;
        terminal.key.secret = Secret::generate()?;
        let mut presence = entry.presence;
        replay::forget(&mut presence);
        let rotated = presence.hot();
        self.stage(Work {
            store: Change {
                terminals: TerminalWrites {
                    put_terminals: vec![&terminal],
                    put_presence: vec![(code, &presence)],
                    ..Default::default()
                },
                ..Change::default()
            },
            zone_changes: Vec::new(),
            entries: vec![(CodeKey::from(code), Some(rotated))],
            now,
            resigned: None,
        })?;
        self.commit().durable(writer).await?;
        Ok(terminal)
    }

    /// Terminals with fresh keys for `imports`, after the address policy.
    pub(super) fn new_entries(
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

    pub(super) fn new_key(
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

/// The new terminals, once [`check_new_registrations`] passes. Call with the writer lock.
pub(super) fn checked_registrations(
    store: &Store,
    entries: Vec<(Registration, Entry)>,
) -> Result<Vec<Entry>, DirectoryError> {
    let registrations: Vec<&Registration> = entries.iter().map(|(r, _)| r).collect();
    check_new_registrations(store, &registrations)?;
    Ok(entries.into_iter().map(|(_, e)| e).collect())
}

/// The store change that writes new terminals (staged as `importing`, or not).
pub(super) fn registrations_change(entries: &[Entry], importing: bool) -> Change<'_> {
    Change {
        terminals: TerminalWrites {
            put_terminals: entries.iter().map(|e| &e.terminal).collect(),
            put_presence: entries
                .iter()
                .map(|e| (&e.terminal.code, &e.presence))
                .collect(),
            importing,
            ..Default::default()
        },
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
