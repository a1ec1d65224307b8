//! What nodes say to each other: consensus messages, and what a follower hands the leader.

use std::net::SocketAddr;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::types::{NodeId, TypeConfig};

/// A request from one node to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A DNS UPDATE a follower took from `src` (over TCP when `tcp`).
    Dns {
        message: Vec<u8>,
        src: SocketAddr,
        tcp: bool,
    },
    /// An admin request line a follower took on its control socket.
    Control(String),
    /// A cluster change asked on a follower.
    Change(crate::relay::ClusterChange),
    /// What the node knows of itself.
    Status,
}

/// The answer to a [`Request`], of the same name.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The answer's messages and the log index the change was applied at.
    Dns(Result<(Vec<Vec<u8>>, u64), String>),
    Control(Result<String, String>),
    Change(Result<String, String>),
    Status(MemberStatus),
}

/// One member as it sees itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    pub node: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// The newest log index applied to its store.
    pub applied: Option<u64>,
    /// The newest log index it holds.
    pub last_log: Option<u64>,
    /// Its zone's serial.
    pub serial: u32,
}
