//! The Raft state machine: the directory itself. Each committed entry is written to the
//! store with the log position it leaves it at, in one durable transaction, and moves the
//! view ([`zones::Directory::apply_replicated`]). Snapshots are not offered yet: the log is
//! kept whole, and a node far behind catches up from it.

use std::io::Cursor;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use zones::Directory;
use zones::store::StoreError;
use zones::store::replicated::{APPLIED_KEY, MEMBERSHIP_KEY};

use super::log_store::{decode, encode};
use super::types::{Entry, LogId, Membership, NodeId, StorageError, TypeConfig};

/// The directory as the state machine of one node.
#[derive(Debug)]
pub struct StateMachine {
    directory: Directory,
    applied: Option<LogId>,
    membership: Membership,
}

impl StateMachine {
    /// Over `directory`, at the log position its store records.
    pub fn open(directory: Directory) -> Result<Self, StoreError> {
        let store = directory.store();
        let applied = store
            .cluster_state(APPLIED_KEY)?
            .map(|b| decode(&b))
            .transpose()?;
        let membership = store
            .cluster_state(MEMBERSHIP_KEY)?
            .map(|b| decode(&b))
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            directory,
            applied,
            membership,
        })
    }

    /// Writes one entry and its position, durably, on the blocking pool.
    async fn apply_one(&mut self, entry: Entry) -> Result<(), StoreError> {
        let mut state = vec![(APPLIED_KEY, encode(&entry.log_id)?)];
        let rows = match entry.payload {
            EntryPayload::Blank => None,
            EntryPayload::Normal(rows) => Some(rows),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
                state.push((MEMBERSHIP_KEY, encode(&self.membership)?));
                None
            }
        };
        let directory = self.directory.clone();
        tokio::task::spawn_blocking(move || directory.apply_replicated(rows.as_ref(), &state))
            .await
            .map_err(|e| StoreError::Io(e.to_string()))??;
        self.applied = Some(entry.log_id);
        Ok(())
    }
}

/// Snapshots are not built: the log is never purged (the policy is `Never`).
#[derive(Debug)]
pub struct NoSnapshots;

fn unsupported() -> StorageError {
    let e = std::io::Error::other("this release does not build or install snapshots");
    StorageIOError::<NodeId>::read_snapshot(None, &e).into()
}

impl RaftSnapshotBuilder<TypeConfig> for NoSnapshots {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        Err(unsupported())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = NoSnapshots;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            self.apply_one(entry).await.map_err(|e| {
                tracing::error!(error = %e, index = log_id.index, "cannot apply a committed entry; this node stops");
                StorageError::from(StorageIOError::apply(log_id, &e))
            })?;
            replies.push(());
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        NoSnapshots
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        Err(unsupported())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(None)
    }
}
