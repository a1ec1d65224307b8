//! Consistent snapshots of the whole store, in one read transaction: a backup's stream
//! and a streamed `list`.

use super::*;

impl Store {
    /// Everything a backup holds, from one read transaction (a consistent moment: every
    /// change flushed before it, none after), to `each` until it returns false: the
    /// [`Snapshotted::Head`] first, then every terminal by code, then the journal.
    pub fn snapshot(
        &self,
        signatures: bool,
        mut each: impl FnMut(Snapshotted) -> bool,
    ) -> Result<(), StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let meta = read.open_table(META).map_err(StoreError::io)?;
        let meta_value = |key: &str| -> Result<Option<Vec<u8>>, StoreError> {
            let value = meta.get(key).map_err(StoreError::io)?;
            Ok(value.map(|v| v.value().to_vec()))
        };
        let serial = meta_value(SERIAL_KEY)?
            .map(|v| decode_u32(SERIAL_KEY, &v))
            .transpose()?;
        let zone_fingerprint =
            meta_value(ZONE_KEY)?.map(|v| String::from_utf8_lossy(&v).into_owned());
        let cold = read.open_table(COLD).map_err(StoreError::io)?;
        let hot = read.open_table(HOT).map_err(StoreError::io)?;
        let replay = read.open_table(REPLAY).map_err(StoreError::io)?;
        let journal = read.open_table(JOURNAL).map_err(StoreError::io)?;
        let staged = Unregistered::of(&read, meta_value(IMPORT_KEY)?.is_some())?;
        let enrolled = enrollment_rows::snapshot(&read)?;
        let signed = read.open_table(SIGNED).map_err(StoreError::io)?;
        let zone_keys: Vec<ZoneKey> = meta_value(DNSSEC_KEYS_KEY)?
            .map(|v| decode(DNSSEC_KEYS_KEY, &v))
            .transpose()?
            .unwrap_or_default();
        let signatures = (signatures && !zone_keys.is_empty())
            .then(|| -> Result<SnapshotSignatures, StoreError> {
                Ok(SnapshotSignatures {
                    terminals: signed.len().map_err(StoreError::io)? as usize,
                    static_sigs: meta_value(STATIC_SIGS_KEY)?
                        .map(|v| decode(STATIC_SIGS_KEY, &v))
                        .transpose()?,
                    soa_sig: meta_value(SOA_SIG_KEY)?
                        .map(|v| decode(SOA_SIG_KEY, &v))
                        .transpose()?,
                })
            })
            .transpose()?;
        let head = Snapshotted::Head {
            serial,
            zone_fingerprint,
            terminals: (cold.len().map_err(StoreError::io)? - staged.count()?) as usize,
            journal: journal.len().map_err(StoreError::io)? as usize,
            zone_keys,
            enrollment: enrolled.len(),
            cluster: match (
                meta_value(replicated::APPLIED_KEY)?,
                meta_value(replicated::MEMBERSHIP_KEY)?,
            ) {
                (Some(applied), Some(membership)) => Some((applied, membership)),
                _ => None,
            },
            signatures: signatures.clone(),
        };
        if !each(head) {
            return Ok(());
        }
        let go_on = self.entries(&cold, &hot, &replay, &staged, |entry| {
            each(Snapshotted::Terminal(Box::new(entry)))
        })?;
        if !go_on {
            return Ok(());
        }
        for item in journal.iter().map_err(StoreError::io)? {
            let (key, value) = item.map_err(StoreError::io)?;
            let delta = decode(&key.value().to_string(), value.value())?;
            if !each(Snapshotted::Delta(delta)) {
                return Ok(());
            }
        }
        for item in enrolled {
            if !each(Snapshotted::Enrollment(item)) {
                return Ok(());
            }
        }
        if signatures.is_some() {
            for item in signed.iter().map_err(StoreError::io)? {
                let (code, value) = item.map_err(StoreError::io)?;
                let key = CodeKey::from_digits(code.value().as_bytes()).ok_or_else(|| {
                    StoreError::Corrupt {
                        key: code.value().into(),
                        message: "not a calling code".into(),
                    }
                })?;
                if !each(Snapshotted::Signed(
                    key,
                    decode(code.value(), value.value())?,
                )) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Every terminal and its presence, by code, to `each` until it returns false; one read
    /// transaction, nothing collected (a streamed `list`).
    pub fn for_each_entry(&self, each: impl FnMut(Entry) -> bool) -> Result<(), StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let cold = read.open_table(COLD).map_err(StoreError::io)?;
        let hot = read.open_table(HOT).map_err(StoreError::io)?;
        let replay = read.open_table(REPLAY).map_err(StoreError::io)?;
        let in_progress = read
            .open_table(META)
            .map_err(StoreError::io)?
            .get(IMPORT_KEY)
            .map_err(StoreError::io)?
            .is_some();
        let staged = Unregistered::of(&read, in_progress)?;
        self.entries(&cold, &hot, &replay, &staged, each)?;
        Ok(())
    }

    /// Every terminal of one read transaction's tables, by code, to `each` until it returns
    /// false; returns whether it went to the end.
    pub(super) fn entries(
        &self,
        cold: &redb::ReadOnlyTable<&str, &[u8]>,
        hot: &redb::ReadOnlyTable<&str, &[u8]>,
        replay: &redb::ReadOnlyTable<&str, &[u8]>,
        staged: &Unregistered,
        mut each: impl FnMut(Entry) -> bool,
    ) -> Result<bool, StoreError> {
        for item in cold.iter().map_err(StoreError::io)? {
            let (key, value) = item.map_err(StoreError::io)?;
            let text = key.value();
            if staged.holds(text)? {
                continue;
            }
            let code: CallingCode = text.parse().map_err(|e| StoreError::Corrupt {
                key: text.to_owned(),
                message: format!("{e}"),
            })?;
            let record: ColdRecord = decode(text, value.value())?;
            let h = get_decoded(hot, text)?;
            let r = replay.get(text).map_err(StoreError::io)?;
            let entry = assemble(code, record, h, r.as_ref().map(|r| r.value()), &self.origin)?;
            if !each(entry) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
