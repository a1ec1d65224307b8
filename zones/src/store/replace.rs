//! Replacing everything a store holds, in one durable transaction: a cluster node far
//! behind takes the leader's snapshot (a backup stream) instead of the log it no longer has.
//! The cluster's own log and vote (`raft_log`, `raft_state`) are kept.

use super::*;

impl Store {
    /// Empties the directory's tables, then writes `changes` and `state` (the log position
    /// the snapshot leaves the store at), all in one transaction made durable at once.
    pub fn replace_all(
        &self,
        changes: &[Change<'_>],
        state: &[(&'static str, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let mut writes = changes
            .iter()
            .map(encode_change)
            .collect::<Result<Vec<_>, _>>()?;
        writes.push(Writes {
            meta: state.to_vec(),
            meta_remove: vec![IMPORT_KEY, import_machines::BATCHES_KEY, SAVED_KEY],
            ..Writes::default()
        });
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        for table in [HOT, COLD, REPLAY, IMPORTING, SIGNED, ENROLLMENT] {
            tx.delete_table(table).map_err(StoreError::io)?;
        }
        tx.delete_table(MACHINES).map_err(StoreError::io)?;
        tx.delete_table(JOURNAL).map_err(StoreError::io)?;
        tx.delete_table(import_machines::IMPORT_MACHINES)
            .map_err(StoreError::io)?;
        group_commit::apply(&tx, &writes)?;
        tx.commit().map_err(StoreError::io)?;
        self.staged().discard();
        self.durability.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
