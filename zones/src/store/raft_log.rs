//! The cluster's consensus log, in the store's own file: entries by index in `raft_log`,
//! and the vote and the like in `raft_state`. Entries are opaque bytes here (the consensus
//! library's encoding); every write is durable (one `fdatasync`) before it returns.

use std::ops::Bound;

use super::*;

const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const RAFT_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_state");

/// `table` in `read`, or `None` before anything was written to it.
fn opened<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match read.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(StoreError::io(e)),
    }
}

impl Store {
    /// Appends (or overwrites) entries by index, durably.
    pub fn log_append(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        {
            let mut log = tx.open_table(RAFT_LOG).map_err(StoreError::io)?;
            for (index, bytes) in entries {
                log.insert(*index, bytes.as_slice())
                    .map_err(StoreError::io)?;
            }
        }
        tx.commit().map_err(StoreError::io)
    }

    /// Entries with indexes in `range`, in order.
    pub fn log_entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Vec<u8>>, StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let Some(log) = opened(&read, RAFT_LOG)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in log.range::<u64>(range).map_err(StoreError::io)? {
            let (_, value) = row.map_err(StoreError::io)?;
            out.push(value.value().to_vec());
        }
        Ok(out)
    }

    /// The newest entry, if any.
    pub fn log_last(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let Some(log) = opened(&read, RAFT_LOG)? else {
            return Ok(None);
        };
        let last = log.last().map_err(StoreError::io)?;
        Ok(last.map(|(_, v)| v.value().to_vec()))
    }

    /// Removes every entry from index `from` on (a leader's log replaces them), durably.
    pub fn log_truncate(&self, from: u64) -> Result<(), StoreError> {
        self.log_remove((Bound::Included(from), Bound::Unbounded))
    }

    /// Removes every entry up to index `upto` (a snapshot covers them), durably.
    pub fn log_purge(&self, upto: u64) -> Result<(), StoreError> {
        self.log_remove((Bound::Unbounded, Bound::Included(upto)))
    }

    fn log_remove(&self, range: (Bound<u64>, Bound<u64>)) -> Result<(), StoreError> {
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        {
            let mut log = tx.open_table(RAFT_LOG).map_err(StoreError::io)?;
            log.retain_in::<u64, _>(range, |_, _| false)
                .map_err(StoreError::io)?;
        }
        tx.commit().map_err(StoreError::io)
    }

    /// A record of the consensus state (the vote, what is committed, what was purged).
    pub fn log_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let Some(state) = opened(&read, RAFT_STATE)? else {
            return Ok(None);
        };
        let value = state.get(key).map_err(StoreError::io)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Records `value` under `key`: durably, or `synced: false`, with the next durable write
    /// (a hint that may be lost in a crash, such as how far the log is committed).
    pub fn set_log_state(&self, key: &str, value: &[u8], synced: bool) -> Result<(), StoreError> {
        let db = self.db();
        let durability = if synced {
            Durability::Immediate
        } else {
            Durability::None
        };
        let tx = begin_write(&db, durability)?;
        {
            let mut state = tx.open_table(RAFT_STATE).map_err(StoreError::io)?;
            state.insert(key, value).map_err(StoreError::io)?;
        }
        tx.commit().map_err(StoreError::io)
    }
}
