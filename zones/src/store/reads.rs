//! Typed reads: what start-up needs, a terminal with every staged change, keys, machines,
//! signatures, and the `meta` records.

use super::*;

impl Store {
    pub(super) fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let meta = match read.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StoreError::io(e)),
        };
        let value = meta.get(key).map_err(StoreError::io)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Reads what start-up needs: the serial, the journal, and the number of terminals.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let serial = self
            .meta(SERIAL_KEY)?
            .map(|v| decode_u32(SERIAL_KEY, &v))
            .transpose()?;
        let zone_fingerprint = self
            .meta(ZONE_KEY)?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let hot = read.open_table(HOT).map_err(StoreError::io)?;
        let terminals = hot.len().map_err(StoreError::io)? as usize;
        let journal_table = read.open_table(JOURNAL).map_err(StoreError::io)?;
        let mut journal = Vec::new();
        for item in journal_table.iter().map_err(StoreError::io)? {
            let (key, value) = item.map_err(StoreError::io)?;
            journal.push(decode(&key.value().to_string(), value.value())?);
        }
        let unsigned_since = self
            .meta(UNSIGNED_KEY)?
            .map(|v| decode_u32(UNSIGNED_KEY, &v))
            .transpose()?;
        Ok(Snapshot {
            serial,
            zone_fingerprint,
            terminals,
            journal,
            unsigned_since,
        })
    }

    /// Every terminal's hot data, in code order, to `each` (the index at start-up; nothing
    /// is collected on the way).
    pub fn scan_hot(&self, mut each: impl FnMut(CodeKey, Hot)) -> Result<(), StoreError> {
        self.scan_by_code(HOT, |key, code, value| {
            let record: HotRecord = decode(code, value)?;
            each(key, record.into());
            Ok(())
        })
    }

    /// A terminal and its presence with every staged change (durable or not), if registered.
    pub fn terminal(&self, code: &CallingCode) -> Result<Option<Entry>, StoreError> {
        let text = code.as_str();
        let [cold, hot, replay] = self.rows([
            (Table::Cold, text),
            (Table::Hot, text),
            (Table::Replay, text),
        ])?;
        let Some(cold) = cold else {
            return Ok(None);
        };
        Ok(Some(assemble(
            code.clone(),
            decode(text, &cold)?,
            decode_row(text, hot)?,
            replay.as_deref(),
            &self.origin,
        )?))
    }

    /// A terminal's signatures with every staged change (durable or not).
    pub fn signed(&self, key: CodeKey) -> Result<Option<TerminalSigs>, StoreError> {
        let text = key.to_code();
        let [row] = self.rows([(Table::Signed, text.as_str())])?;
        decode_row(text.as_str(), row)
    }

    /// Every terminal's signatures as redb holds them, to `each`.
    pub fn scan_signed(
        &self,
        mut each: impl FnMut(CodeKey, TerminalSigs),
    ) -> Result<(), StoreError> {
        self.scan_by_code(SIGNED, |key, code, value| {
            each(key, decode(code, value)?);
            Ok(())
        })
    }

    /// Every row of a table keyed by calling code, as redb holds it, to `each` with the
    /// code as an integer and as text.
    pub(super) fn scan_by_code(
        &self,
        table: TableDefinition<&str, &[u8]>,
        mut each: impl FnMut(CodeKey, &str, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let rows = read.open_table(table).map_err(StoreError::io)?;
        for item in rows.iter().map_err(StoreError::io)? {
            let (key, value) = item.map_err(StoreError::io)?;
            let code = key.value();
            let key = CodeKey::from_digits(code.as_bytes()).ok_or_else(|| StoreError::Corrupt {
                key: code.to_owned(),
                message: "not a calling code".into(),
            })?;
            each(key, code, value.value())?;
        }
        Ok(())
    }

    /// The static names' signatures as last stored, if any. They are made again from the
    /// zone when they cannot be read (a store of an older version), so that is no error.
    pub fn static_sigs(&self) -> Result<Option<StoredStatics>, StoreError> {
        Ok(self.meta(STATIC_SIGS_KEY)?.and_then(|v| {
            decode(STATIC_SIGS_KEY, &v)
                .inspect_err(|e| tracing::warn!(error = %e, "static signatures made again"))
                .ok()
        }))
    }

    /// The SOA signature kept when a signed zone was last stopped, with its serial (and
    /// `None` when no SOA signature was made at that serial); like the static names', made
    /// again when it cannot be read.
    pub fn soa_sig(&self) -> Result<Option<(u32, Option<Sig>)>, StoreError> {
        Ok(self.meta(SOA_SIG_KEY)?.and_then(|v| {
            decode(SOA_SIG_KEY, &v)
                .inspect_err(|e| tracing::warn!(error = %e, "SOA signature made again"))
                .ok()
        }))
    }

    /// The zone's DNSSEC signing keys (none until DNSSEC is first turned on).
    pub fn zone_keys(&self) -> Result<Vec<ZoneKey>, StoreError> {
        self.meta(DNSSEC_KEYS_KEY)?
            .map(|v| decode(DNSSEC_KEYS_KEY, &v))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// A terminal's TSIG key (the cold table only: what every signed request needs).
    pub fn key(&self, code: &CallingCode) -> Result<Option<TsigKey>, StoreError> {
        let [cold] = self.rows([(Table::Cold, code.as_str())])?;
        let record: Option<ColdRecord> = decode_row(code.as_str(), cold)?;
        Ok(record.map(|r| key_of(code, &r, &self.origin)))
    }

    /// The code registered for a KID and MID, if any.
    pub fn machine(&self, kid: &Kid, mid: &Mid) -> Result<Option<CallingCode>, StoreError> {
        let key = machine_key(kid, mid);
        let [code] = self.rows([(Table::Machines, key.as_str())])?;
        let Some(code) = code else {
            return Ok(None);
        };
        String::from_utf8_lossy(&code)
            .parse()
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key,
                message: format!("{e}"),
            })
    }

    /// Rows as the staged changes leave them, else as redb holds them, all from one moment:
    /// the staged rows are read, and redb's snapshot taken, under the lock a flush takes to
    /// retire the rows it has written.
    pub(super) fn rows<const N: usize>(
        &self,
        keys: [(Table, &str); N],
    ) -> Result<[Option<Vec<u8>>; N], StoreError> {
        let db = self.db();
        let staged = self.staged();
        let read = db.begin_read().map_err(StoreError::io)?;
        let mut out = [const { None }; N];
        for (slot, (table, key)) in out.iter_mut().zip(keys) {
            *slot = match staged.row(table, key) {
                Some(value) => value.map(<[u8]>::to_vec),
                None => read_row(&read, table, key)?,
            };
        }
        Ok(out)
    }
}

/// One row as redb holds it.
pub(super) fn read_row(
    read: &redb::ReadTransaction,
    table: Table,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let bytes = |table: TableDefinition<&str, &[u8]>| -> Result<Option<Vec<u8>>, StoreError> {
        let rows = read.open_table(table).map_err(StoreError::io)?;
        let value = rows.get(key).map_err(StoreError::io)?;
        Ok(value.map(|v| v.value().to_vec()))
    };
    match table {
        Table::Cold => bytes(COLD),
        Table::Hot => bytes(HOT),
        Table::Replay => bytes(REPLAY),
        Table::Importing => bytes(IMPORTING),
        Table::Signed => bytes(SIGNED),
        Table::Enrollment => bytes(ENROLLMENT),
        Table::Machines => {
            let machines = read.open_table(MACHINES).map_err(StoreError::io)?;
            let value = machines.get(key).map_err(StoreError::io)?;
            Ok(value.map(|v| v.value().as_bytes().to_vec()))
        }
    }
}
