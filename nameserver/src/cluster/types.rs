//! The consensus library's types for this directory: a log entry carries one replicated
//! group commit; nodes are numbered and found at their cluster address.

use std::io::Cursor;

use zones::store::replicated::Replicated;

openraft::declare_raft_types!(
    /// The directory's Raft: entries are group commits, nodes are `ID=IP:PORT`.
    pub TypeConfig:
        D = Replicated,
        R = (),
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Membership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
