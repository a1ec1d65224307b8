//! The rows of the code-keyed tables: their records, a [`super::Change`] encoded into the
//! rows it writes and applied inside a transaction, and entries assembled from rows.

use super::*;

/// What every query needs of a terminal.
#[derive(Serialize, Deserialize)]
pub(super) struct HotRecord {
    pub(super) addresses: Addresses,
    pub(super) lease_expires: Option<u64>,
    pub(super) updated_at: Option<u64>,
}

impl From<HotRecord> for Hot {
    fn from(record: HotRecord) -> Self {
        Self {
            addresses: record.addresses,
            lease_expires: record.lease_expires.and_then(std::num::NonZeroU64::new),
        }
    }
}

/// What only signed requests and administration need.
#[derive(Serialize, Deserialize)]
pub(super) struct ColdRecord {
    pub(super) kid: Kid,
    pub(super) mid: Mid,
    pub(super) algorithm: Algorithm,
    pub(super) secret: Vec<u8>,
    pub(super) registered_at: u64,
}

/// The rows of encoded changes, oldest first, inside `tx`.
pub(super) fn apply_rows(tx: &WriteTransaction, batch: &[Writes]) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META).map_err(StoreError::io)?;
    let mut hot = tx.open_table(HOT).map_err(StoreError::io)?;
    let mut cold = tx.open_table(COLD).map_err(StoreError::io)?;
    let mut replay = tx.open_table(REPLAY).map_err(StoreError::io)?;
    let mut importing = tx.open_table(IMPORTING).map_err(StoreError::io)?;
    let mut machines = tx.open_table(MACHINES).map_err(StoreError::io)?;
    let mut journal = tx.open_table(JOURNAL).map_err(StoreError::io)?;
    let mut signed = tx.open_table(SIGNED).map_err(StoreError::io)?;
    let mut enrollment = tx.open_table(ENROLLMENT).map_err(StoreError::io)?;
    for w in batch {
        for (key, value) in &w.meta {
            meta.insert(*key, value.as_slice())
                .map_err(StoreError::io)?;
        }
        if let Some(code) = &w.remove {
            hot.remove(code.as_str()).map_err(StoreError::io)?;
            cold.remove(code.as_str()).map_err(StoreError::io)?;
            replay.remove(code.as_str()).map_err(StoreError::io)?;
            signed.remove(code.as_str()).map_err(StoreError::io)?;
        }
        for (code, value) in &w.signed {
            match value {
                Some(value) => signed.insert(code.as_str(), value.as_slice()),
                None => signed.remove(code.as_str()),
            }
            .map_err(StoreError::io)?;
        }
        for (table, rows) in [(&mut cold, &w.cold), (&mut hot, &w.hot)] {
            for (code, value) in rows {
                table
                    .insert(code.as_str(), value.as_slice())
                    .map_err(StoreError::io)?;
            }
        }
        for (code, value) in &w.replay {
            match value {
                Some(value) => replay.insert(code.as_str(), value.as_slice()).map(|_| ()),
                None => replay.remove(code.as_str()).map(|_| ()),
            }
            .map_err(StoreError::io)?;
        }
        for code in &w.importing {
            importing
                .insert(code.as_str(), &[][..])
                .map_err(StoreError::io)?;
        }
        if w.finish_import {
            meta.remove(IMPORT_KEY).map_err(StoreError::io)?;
        }
        for key in &w.meta_remove {
            meta.remove(*key).map_err(StoreError::io)?;
        }
        for key in &w.machines_remove {
            machines.remove(key.as_str()).map_err(StoreError::io)?;
        }
        for (key, code) in &w.machines_put {
            machines
                .insert(key.as_str(), code.as_str())
                .map_err(StoreError::io)?;
        }
        if let Some((seq, value)) = &w.journal {
            journal
                .insert(*seq, value.as_slice())
                .map_err(StoreError::io)?;
        }
        for seq in &w.journal_drop {
            journal.remove(*seq).map_err(StoreError::io)?;
        }
        for (key, value) in &w.enrollment {
            match value {
                Some(value) => enrollment
                    .insert(key.as_str(), value.as_slice())
                    .map(|_| ()),
                None => enrollment.remove(key.as_str()).map(|_| ()),
            }
            .map_err(StoreError::io)?;
        }
    }
    Ok(())
}

pub(super) fn encode_change(change: &Change<'_>) -> Result<Writes, StoreError> {
    let mut w = Writes::default();
    encode_terminals(&change.terminals, &mut w)?;
    enrollment_rows::encode(&change.customers, &mut w)?;
    encode_zone(&change.zone, &mut w)?;
    encode_dnssec(&change.dnssec, &mut w)?;
    Ok(w)
}

/// The rows of registrations and presence: `cold`, `machines`, `hot`, `replay`, and an
/// import's bookkeeping.
fn encode_terminals(t: &TerminalWrites<'_>, w: &mut Writes) -> Result<(), StoreError> {
    if let Some(removed) = t.remove_terminal {
        w.remove = Some(removed.code.as_str().to_owned());
        w.machines_remove
            .push(machine_key(&removed.kid, &removed.mid));
        enrollment_rows::removed(removed, w);
    }
    if t.importing {
        w.meta.push((IMPORT_KEY, Vec::new()));
        w.importing = t
            .put_terminals
            .iter()
            .map(|t| t.code.as_str().to_owned())
            .collect();
    }
    w.finish_import = t.finish_import;
    for terminal in &t.put_terminals {
        let record = ColdRecord {
            kid: terminal.kid.clone(),
            mid: terminal.mid.clone(),
            algorithm: terminal.key.algorithm,
            secret: terminal.key.secret.as_bytes().to_vec(),
            registered_at: terminal.registered_at,
        };
        let code = terminal.code.as_str().to_owned();
        w.cold.push((code.clone(), encode(&record)?));
        enrollment_rows::registered(terminal, w);
        let machine = (machine_key(&terminal.kid, &terminal.mid), code);
        match t.importing {
            // Kept apart until the commit ([`import_machines`]).
            true => w.import_machines.push(machine),
            false => w.machines_put.push(machine),
        }
    }
    for (code, p) in &t.put_presence {
        let hot = HotRecord {
            addresses: p.addresses.clone(),
            lease_expires: p.lease_expires,
            updated_at: p.updated_at,
        };
        w.hot.push((code.as_str().to_owned(), encode(&hot)?));
        match replay_rows::encode_row(p)? {
            // An imported terminal is new: it has no row to remove.
            None if t.importing => {}
            row => w.replay.push((code.as_str().to_owned(), row)),
        }
    }
    Ok(())
}

/// The zone's rows: its serial, journal and static zone's fingerprint.
fn encode_zone(z: &ZoneWrites<'_>, w: &mut Writes) -> Result<(), StoreError> {
    w.journal_drop.clone_from(&z.journal_drop);
    if let Some(serial) = z.serial {
        w.meta.push((SERIAL_KEY, serial.to_be_bytes().to_vec()));
    }
    if let Some(fingerprint) = z.zone_fingerprint {
        w.meta.push((ZONE_KEY, fingerprint.as_bytes().to_vec()));
    }
    if let Some(delta) = z.journal {
        w.journal = Some((delta.seq, encode(delta)?));
    }
    Ok(())
}

/// The DNSSEC rows: keys, signatures (terminals', static names', the SOA's), and the notes
/// a signed start reads.
fn encode_dnssec(d: &DnssecWrites<'_>, w: &mut Writes) -> Result<(), StoreError> {
    if let Some(keys) = d.zone_keys {
        w.meta.push((DNSSEC_KEYS_KEY, encode(&keys)?));
    }
    if let Some(statics) = &d.static_sigs {
        w.meta.push((STATIC_SIGS_KEY, encode(statics)?));
    }
    if let Some(soa) = &d.soa_sig {
        w.meta.push((SOA_SIG_KEY, encode(soa)?));
    }
    match d.unsigned_since {
        Some(Some(serial)) => w.meta.push((UNSIGNED_KEY, serial.to_be_bytes().to_vec())),
        Some(None) => w.meta_remove.push(UNSIGNED_KEY),
        None => {}
    }
    for (key, sigs) in d.signed {
        let value = sigs.as_ref().map(encode).transpose()?;
        w.signed.push((key.to_code().as_str().to_owned(), value));
    }
    w.signatures_saved = d.signatures_saved;
    Ok(())
}

/// The `machines` table's key for a KID and MID.
pub(super) fn machine_key(kid: &Kid, mid: &Mid) -> String {
    format!("{kid} {mid}")
}

/// A terminal's key from its cold record; the name is derived, not stored.
pub(super) fn key_of(code: &CallingCode, cold: &ColdRecord, origin: &Name) -> TsigKey {
    TsigKey {
        name: TerminalKeyName::format(code, &cold.mid, &cold.kid, origin),
        algorithm: cold.algorithm,
        secret: Secret::from_bytes(cold.secret.clone()),
    }
}

/// A terminal and its presence from their stored records.
pub(super) fn assemble(
    code: CallingCode,
    cold: ColdRecord,
    hot: Option<HotRecord>,
    replay: Option<&[u8]>,
    origin: &Name,
) -> Result<Entry, StoreError> {
    let key = key_of(&code, &cold, origin);
    let mut presence = Presence::default();
    if let Some(hot) = hot {
        presence.addresses = hot.addresses;
        presence.lease_expires = hot.lease_expires;
        presence.updated_at = hot.updated_at;
    }
    if let Some(replay) = replay {
        replay_rows::decode_into(code.as_str(), replay, &mut presence)?;
    }
    let terminal = Terminal {
        code,
        kid: cold.kid,
        mid: cold.mid,
        key,
        registered_at: cold.registered_at,
    };
    Ok(Entry { terminal, presence })
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value).map_err(|e| StoreError::Corrupt {
        key: String::new(),
        message: e.to_string(),
    })
}

/// The record of `code` in `table`, decoded, if there is one.
pub(super) fn get_decoded<T: DeserializeOwned>(
    table: &redb::ReadOnlyTable<&str, &[u8]>,
    code: &str,
) -> Result<Option<T>, StoreError> {
    let value = table.get(code).map_err(StoreError::io)?;
    value.map(|v| decode(code, v.value())).transpose()
}

pub(super) fn decode_row<T: DeserializeOwned>(
    key: &str,
    row: Option<Vec<u8>>,
) -> Result<Option<T>, StoreError> {
    row.map(|v| decode(key, &v)).transpose()
}

pub(super) fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(value).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

pub(super) fn decode_u32(key: &str, value: &[u8]) -> Result<u32, StoreError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| StoreError::Corrupt {
        key: key.into(),
        message: format!("{} bytes instead of 4", value.len()),
    })?;
    Ok(u32::from_be_bytes(bytes))
}
