//! A cluster of directory servers: every node accepts every request, one leader makes the
//! changes, and a change is acknowledged only once a majority holds it durably.
//!
//! ```text
//!  follower: UPDATE, enrollment ─▶ Pipeline ─▶ relay (Relay::dns) ─▶ channel ─▶ leader
//!            admin command     ─▶ control   ─▶ relay (Relay::control, change)
//!  leader:   listener ─▶ Pipeline::answer_here ─▶ Directory ─▶ Store::flush
//!            ─▶ Replicator ─▶ Raft::client_write (openraft): log entry = one group commit
//!            ─▶ LogStore::append on each node (redb, fdatasync) ─▶ majority: committed
//!  every node: StateMachine::apply ─▶ Directory::apply_replicated (rows + log position,
//!              one fdatasync) ─▶ view ─▶ NOTIFY, queries, AXFR/IXFR
//!  the follower answers once the change is applied on it too.
//! ```
//!
//! Files: [`types`] (the consensus library's types), [`log_store`] (the log in redb),
//! [`state_machine`] (the directory as the state machine), [`channel`] (authenticated,
//! encrypted connections), [`wire`] (the messages), [`network`] (peers for the library),
//! [`node`] (starting a node, leadership, relaying, status), [`listener`] (serving peers).

pub mod channel;
pub mod listener;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod types;
pub mod wire;

pub use node::{Cluster, ClusterError};
