//! The bookkeeping of a streamed import: which codes are staged and not yet committed, the
//! commit's list of them, and removing them when the import is aborted.

use super::*;

/// The codes of an import staged but not committed, in one read transaction: not yet
/// registered, so left out of a backup and a list.
pub(super) enum Unregistered {
    None,
    Import(redb::ReadOnlyTable<&'static str, &'static [u8]>),
}

impl Unregistered {
    pub(super) fn of(read: &redb::ReadTransaction, in_progress: bool) -> Result<Self, StoreError> {
        Ok(match in_progress {
            true => Self::Import(read.open_table(IMPORTING).map_err(StoreError::io)?),
            false => Self::None,
        })
    }

    pub(super) fn count(&self) -> Result<u64, StoreError> {
        match self {
            Self::None => Ok(0),
            Self::Import(table) => table.len().map_err(StoreError::io),
        }
    }

    pub(super) fn holds(&self, code: &str) -> Result<bool, StoreError> {
        match self {
            Self::None => Ok(false),
            Self::Import(table) => Ok(table.get(code).map_err(StoreError::io)?.is_some()),
        }
    }
}

/// An import's terminals from one read transaction ([`Store::imported`]).
pub struct Imported {
    read: redb::ReadTransaction,
}

impl std::fmt::Debug for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imported").finish_non_exhaustive()
    }
}

impl Imported {
    /// How many terminals the import holds.
    pub fn count(&self) -> Result<usize, StoreError> {
        let importing = self.read.open_table(IMPORTING).map_err(StoreError::io)?;
        Ok(importing.len().map_err(StoreError::io)? as usize)
    }

    /// The hot data of the import's terminals, `chunk` at a time, to `each` (to publish
    /// them to the index without holding them all); returns how many.
    pub fn scan(
        &self,
        chunk: usize,
        mut each: impl FnMut(Vec<(CodeKey, Hot)>),
    ) -> Result<usize, StoreError> {
        let importing = self.read.open_table(IMPORTING).map_err(StoreError::io)?;
        let hot = self.read.open_table(HOT).map_err(StoreError::io)?;
        let (mut batch, mut total) = (Vec::with_capacity(chunk), 0);
        for item in importing.iter().map_err(StoreError::io)? {
            let (key, _) = item.map_err(StoreError::io)?;
            let code = key.value();
            let Some(record) = get_decoded::<HotRecord>(&hot, code)? else {
                continue;
            };
            if let Some(key) = CodeKey::from_digits(code.as_bytes()) {
                batch.push((key, record.into()));
            }
            if batch.len() == chunk {
                total += batch.len();
                each(std::mem::replace(&mut batch, Vec::with_capacity(chunk)));
            }
        }
        total += batch.len();
        if !batch.is_empty() {
            each(batch);
        }
        Ok(total)
    }
}

impl Store {
    /// True while an import is staged but not committed (or was interrupted by a crash).
    pub fn import_in_progress(&self) -> Result<bool, StoreError> {
        Ok(self.meta(IMPORT_KEY)?.is_some())
    }

    /// Whether `code` belongs to an import not yet committed.
    pub fn is_importing(&self, code: &CallingCode) -> Result<bool, StoreError> {
        let [row] = self.rows([(Table::Importing, code.as_str())])?;
        Ok(row.is_some())
    }

    /// The import being committed, as it stands before its commit: read from it after the
    /// commit, whose transaction clears the list of its codes.
    pub fn imported(&self) -> Result<Imported, StoreError> {
        let read = self.db().begin_read().map_err(StoreError::io)?;
        Ok(Imported { read })
    }

    /// Clears, durably, a list of codes left by an import committed by an earlier release
    /// (which cleared it after the commit, not with it); returns whether there was one.
    pub fn drop_stale_import_list(&self) -> Result<bool, StoreError> {
        let staged = {
            let read = self.db().begin_read().map_err(StoreError::io)?;
            import_machines::any_staged(&read)?
        };
        if self.import_in_progress()? || (self.imported()?.count()? == 0 && !staged) {
            return Ok(false);
        }
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        tx.delete_table(IMPORTING).map_err(StoreError::io)?;
        tx.open_table(IMPORTING).map_err(StoreError::io)?;
        import_machines::clear(&tx)?;
        tx.commit().map_err(StoreError::io)?;
        Ok(true)
    }

    /// The first KID/MID pair of the staged import that cannot be committed (taken twice
    /// within it, or registered meanwhile), if any.
    pub fn import_conflict(&self) -> Result<Option<Conflict>, StoreError> {
        let read = self.db().begin_read().map_err(StoreError::io)?;
        import_machines::first_conflict(&read)
    }

    /// Removes every terminal of an import not committed, durably; returns how many.
    pub fn abort_import(&self) -> Result<usize, StoreError> {
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        let mut removed = 0;
        {
            let importing = tx.open_table(IMPORTING).map_err(StoreError::io)?;
            let mut cold = tx.open_table(COLD).map_err(StoreError::io)?;
            let mut hot = tx.open_table(HOT).map_err(StoreError::io)?;
            let mut replay = tx.open_table(REPLAY).map_err(StoreError::io)?;
            let mut machines = tx.open_table(MACHINES).map_err(StoreError::io)?;
            for item in importing.iter().map_err(StoreError::io)? {
                let (key, _) = item.map_err(StoreError::io)?;
                let code = key.value();
                if let Some(value) = cold.remove(code).map_err(StoreError::io)? {
                    let record: ColdRecord = decode(code, value.value())?;
                    // Only a pair this code holds (an import staged by an earlier release
                    // wrote its pairs here; now they wait apart until the commit).
                    let machine = machine_key(&record.kid, &record.mid);
                    let held = machines
                        .get(machine.as_str())
                        .map_err(StoreError::io)?
                        .is_some_and(|held| held.value() == code);
                    if held {
                        machines.remove(machine.as_str()).map_err(StoreError::io)?;
                    }
                }
                hot.remove(code).map_err(StoreError::io)?;
                replay.remove(code).map_err(StoreError::io)?;
                removed += 1;
            }
            let mut meta = tx.open_table(META).map_err(StoreError::io)?;
            meta.remove(IMPORT_KEY).map_err(StoreError::io)?;
            meta.remove(SAVED_KEY).map_err(StoreError::io)?;
        }
        tx.delete_table(IMPORTING).map_err(StoreError::io)?;
        tx.open_table(IMPORTING).map_err(StoreError::io)?;
        import_machines::clear(&tx)?;
        tx.commit().map_err(StoreError::io)?;
        self.saved_forgotten();
        Ok(removed)
    }
}
