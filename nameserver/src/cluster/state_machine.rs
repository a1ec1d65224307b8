//! The Raft state machine: the directory itself. Each committed entry is written to the
//! store with the log position it leaves it at, in one durable transaction, and moves the
//! view ([`zones::Directory::apply_replicated`]). A snapshot is a backup of the store
//! ([`zones::backup::write_lines`]); a node far behind installs it in place
//! ([`zones::Directory::install_backup`]) and goes on from the log after it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::BasicNode;
use zones::secret_file;

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
    snapshots: Arc<Snapshots>,
}

impl StateMachine {
    /// Over `directory`, at the log position its store records, with the snapshot kept in
    /// `dir`.
    pub fn open(directory: Directory, dir: &Path) -> Result<Self, StoreError> {
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
            snapshots: Arc::new(Snapshots::open(dir)),
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

/// A snapshot's metadata and body.
type Kept = (SnapshotMeta<NodeId, BasicNode>, Arc<String>);

/// The newest snapshot, built here or installed from the leader: a backup of the store as
/// `nameserver backup` writes it, at a log position. Kept in the store's directory
/// (`cluster-snapshot`, 0600: it holds every terminal's key), its metadata on the first
/// line, so that a restarted node can still send it to a node far behind.
#[derive(Debug)]
pub struct Snapshots {
    path: PathBuf,
    current: Mutex<Option<Kept>>,
}

impl Snapshots {
    /// The snapshot kept in `dir`, if any.
    pub fn open(dir: &Path) -> Self {
        let path = dir.join("cluster-snapshot");
        let current = std::fs::read_to_string(&path).ok().and_then(|text| {
            let (meta, body) = text.split_once('\n')?;
            let meta = serde_json::from_str(meta).ok()?;
            Some((meta, Arc::new(body.to_owned())))
        });
        Self {
            path,
            current: Mutex::new(current),
        }
    }

    fn keep(&self, meta: &SnapshotMeta<NodeId, BasicNode>, body: String) -> Result<(), StoreError> {
        let text = format!(
            "{}\n{body}",
            serde_json::to_string(meta).map_err(|e| StoreError::Io(e.to_string()))?
        );
        secret_file::write(&self.path, &text, secret_file::Durability::Synced)
            .map_err(|e| StoreError::Io(format!("{}: {e}", self.path.display())))?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((meta.clone(), Arc::new(body)));
        Ok(())
    }

    fn current(&self) -> Option<Snapshot<TypeConfig>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().map(|(meta, body)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(body.as_bytes().to_vec())),
        })
    }
}

/// Builds a snapshot: a backup from one read transaction, with the log position that
/// transaction saw.
#[derive(Debug)]
pub struct Builder {
    directory: Directory,
    snapshots: Arc<Snapshots>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (directory, snapshots) = (self.directory.clone(), self.snapshots.clone());
        let built =
            tokio::task::spawn_blocking(move || -> Result<Snapshot<TypeConfig>, StoreError> {
                let mut body = Vec::new();
                let position = zones::backup::write_lines(&directory, true, &mut body)
                    .map_err(|e| StoreError::Io(e.to_string()))?;
                let Some((applied, membership)) = position else {
                    return Err(StoreError::Io("nothing applied yet".into()));
                };
                let applied: LogId = decode(&applied)?;
                let meta = SnapshotMeta {
                    last_log_id: Some(applied),
                    last_membership: decode(&membership)?,
                    snapshot_id: format!("{}-{}", applied.leader_id.term, applied.index),
                };
                let body = String::from_utf8(body).map_err(|e| StoreError::Io(e.to_string()))?;
                snapshots.keep(&meta, body.clone())?;
                tracing::info!(
                    index = applied.index,
                    bytes = body.len(),
                    "cluster snapshot built"
                );
                Ok(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(body.into_bytes())),
                })
            })
            .await
            .map_err(|e| StoreError::Io(e.to_string()))
            .and_then(|built| built);
        built.map_err(|e| StorageIOError::<NodeId>::write_snapshot(None, &e).into())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

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
        Builder {
            directory: self.directory.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let (directory, snapshots) = (self.directory.clone(), self.snapshots.clone());
        let meta_owned = meta.clone();
        let installed = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let body = snapshot.into_inner();
            let Some(applied) = meta_owned.last_log_id else {
                return Err(StoreError::Io("a snapshot without a log position".into()));
            };
            let state = [
                (APPLIED_KEY, encode(&applied)?),
                (MEMBERSHIP_KEY, encode(&meta_owned.last_membership)?),
            ];
            let (header, records) =
                zones::backup::read_lines(&body[..]).map_err(|e| StoreError::Io(e.to_string()))?;
            directory
                .install_backup(&header, records, &state, zones::unix_now())
                .map_err(|e| StoreError::Io(e.to_string()))?;
            let body = String::from_utf8(body).map_err(|e| StoreError::Io(e.to_string()))?;
            snapshots.keep(&meta_owned, body)?;
            tracing::info!(
                index = applied.index,
                terminals = header.terminals,
                "cluster snapshot installed"
            );
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Io(e.to_string()))
        .and_then(|installed| installed);
        installed
            .map_err(|e| StorageError::from(StorageIOError::<NodeId>::write_snapshot(None, &e)))?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.snapshots.current())
    }
}
