//! The Raft log in the node's redb store ([`zones::store::Store`]'s `raft_log` and
//! `raft_state` tables): every append, truncation and vote is durable before it is
//! reported done. The store's calls block on a disk, so they run on the blocking pool.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zones::store::{Store, StoreError};

use super::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// The log of one node.
#[derive(Clone, Debug)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || job(&store))
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?
    }

    async fn state<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let bytes = self.run(move |s| s.log_state(key)).await?;
        bytes.map(|b| decode(&b)).transpose()
    }

    async fn set_state<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        synced: bool,
    ) -> Result<(), StoreError> {
        let bytes = encode(value)?;
        self.run(move |s| s.set_log_state(key, &bytes, synced))
            .await
    }
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value).map_err(|e| StoreError::Io(format!("cannot encode: {e}")))
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        key: "raft".into(),
        message: e.to_string(),
    })
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let read = async {
            let rows = self.run(move |s| s.log_entries(bounds)).await?;
            rows.iter()
                .map(|row| decode::<Entry>(row))
                .collect::<Result<Vec<_>, _>>()
        };
        read.await
            .map_err(|e: StoreError| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = async {
            let purged: Option<LogId> = self.state(PURGED).await?;
            let last = self.run(|s| s.log_last()).await?;
            let last = match last {
                Some(bytes) => Some(decode::<Entry>(&bytes)?.log_id),
                None => purged,
            };
            Ok::<_, StoreError>(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        };
        read.await.map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.set_state(VOTE, vote, true)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.state(VOTE)
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    /// A hint, not synced: after a crash the entries up to it are applied again at once,
    /// and the leader tells the rest.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.set_state(COMMITTED, &committed, false)
            .await
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> = self
            .state(COMMITTED)
            .await
            .map_err(|e| StorageIOError::read(&e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows = entries
            .into_iter()
            .map(|entry| Ok((entry.log_id.index, encode(&entry)?)))
            .collect::<Result<Vec<_>, StoreError>>()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let written = self.run(move |s| s.log_append(&rows)).await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index;
        self.run(move |s| s.log_truncate(from))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let upto = log_id.index;
        let purged = async {
            self.set_state(PURGED, &log_id, true).await?;
            self.run(move |s| s.log_purge(upto)).await
        };
        purged
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
