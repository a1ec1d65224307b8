//! Requests a cluster's follower hands to the leader: signed UPDATEs (enrollments included)
//! and admin commands. The pipeline and the control socket ask through this trait, and the
//! cluster ([`crate::cluster`]) answers it, so neither depends on the other.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::metrics::Transport;

/// What waits for the leader's answer.
pub type Relayed<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Hands requests to the leader.
pub trait Relay: Send + Sync + std::fmt::Debug {
    /// Whether changes are made here (this node leads, or there is no cluster).
    fn is_leader(&self) -> bool;

    /// The leader's answer (its messages, each a DNS message) to an UPDATE from `src`,
    /// once the change it made is committed and applied on this node.
    fn dns(
        &self,
        request: Vec<u8>,
        src: SocketAddr,
        transport: Transport,
    ) -> Relayed<'_, Vec<Vec<u8>>>;

    /// The leader's reply line to an admin request line.
    fn control(&self, request: String) -> Relayed<'_, String>;

    /// A change of members, made by the leader; what it did, as text.
    fn change(&self, change: ClusterChange) -> Relayed<'_, String>;

    /// Every member's role and position in the log, as text.
    fn status(&self) -> Relayed<'_, String>;
}

/// A change to a cluster's members, asked on any node and made by the leader.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum ClusterChange {
    /// Adds node `node`, reached at `addr`, as a voting member (it catches up first).
    Add { node: u64, addr: SocketAddr },
    /// Removes node `node` from the members.
    Remove { node: u64 },
}
