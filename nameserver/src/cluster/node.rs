//! Starting a node, following who leads, and handing requests to the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use zones::Directory;
use zones::store::replicated::{Replicated, Replicating, Replicator};

use super::channel::ClusterKey;
use super::log_store::LogStore;
use super::network::{Network, Peer};
use super::state_machine::StateMachine;
use super::types::{NodeId, Raft};
use super::wire::{MemberStatus, Request, Response};
use crate::config::ClusterSettings;
use crate::metrics::Transport;
use crate::relay::{ClusterChange, Relay, Relayed};

/// How long a follower keeps trying to reach a leader for one request.
const RELAY_PATIENCE: Duration = Duration::from_secs(6);
/// The shortest wait, in milliseconds, without hearing from a leader before a follower
/// calls an election (the longest: [`ELECTION_TIMEOUT_MAX`]).
pub(super) const ELECTION_TIMEOUT_MIN: u64 = 500;
pub(super) const ELECTION_TIMEOUT_MAX: u64 = 900;
/// How long one exchange with a peer may take.
const EXCHANGE: Duration = Duration::from_secs(5);
/// The consensus-state record of a founding under way: the members to add once what the
/// founding node holds is in a snapshot.
const FOUNDING: &str = "founding";

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot listen for the cluster on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cluster: {0}")]
    Consensus(String),
    #[error(transparent)]
    Store(#[from] zones::store::StoreError),
}

/// One node of a cluster.
pub struct Cluster {
    pub(super) node: NodeId,
    pub(super) raft: Raft,
    pub(super) key: ClusterKey,
    pub(super) directory: Directory,
    /// Set once this node leads and has applied everything before its term: changes are
    /// made here.
    pub(super) leading: AtomicBool,
    /// Open channels to the leader, reused by relayed requests.
    idle: std::sync::Mutex<Vec<(NodeId, Peer)>>,
    /// One founding at a time (see [`Cluster::found`]).
    founding: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("leading", &self.leads())
            .finish_non_exhaustive()
    }
}

/// Sends the directory's group commits through the log.
struct ThroughLog(Raft);

impl std::fmt::Debug for ThroughLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThroughLog")
    }
}

impl Replicator for ThroughLog {
    fn replicate(&self, entry: Replicated) -> Replicating<'_> {
        Box::pin(async move {
            self.0
                .client_write(entry)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

impl Cluster {
    /// Starts node `settings.node` over `directory`: its log and state in the directory's
    /// store, its listener bound. The node with the lowest id in `peers` founds the cluster
    /// when its log is empty (founding starts an election at once, so only one node may do
    /// it: another starting later would unseat the leader): alone first, then, once what
    /// its store held is in a snapshot, with the others (see [`Cluster::found`]). They,
    /// and a node not listed, wait to be contacted.
    pub async fn start(
        settings: &ClusterSettings,
        directory: Directory,
        store_dir: &std::path::Path,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Self>, TcpListener), ClusterError> {
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ClusterError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let key = ClusterKey::derive(settings.key.secret.as_bytes());
        let config = openraft::Config {
            cluster_name: directory.zone().origin().to_ascii(),
            heartbeat_interval: 100,
            election_timeout_min: ELECTION_TIMEOUT_MIN,
            election_timeout_max: ELECTION_TIMEOUT_MAX,
            // A backup of the store every so many entries; as many are kept behind it,
            // so that a node briefly away catches up from the log, one far behind from it.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: settings.snapshot_every,
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Consensus(e.to_string()))?;
        let log = LogStore::new(directory.store().clone());
        let machine = StateMachine::open(directory.clone(), store_dir)?;
        let network = Network { key: key.clone() };
        let raft = Raft::new(settings.node, Arc::new(config), network, log, machine)
            .await
            .map_err(|e| ClusterError::Consensus(e.to_string()))?;
        directory.replicate_through(Arc::new(ThroughLog(raft.clone())));
        let founding = settings.peers.keys().next() == Some(&settings.node);
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Consensus(e.to_string()))?;
        if founding && !initialized {
            let members: BTreeMap<NodeId, String> = settings
                .peers
                .iter()
                .map(|(id, addr)| (*id, addr.to_string()))
                .collect();
            let record =
                serde_json::to_vec(&members).map_err(|e| ClusterError::Consensus(e.to_string()))?;
            directory.store().set_log_state(FOUNDING, &record, true)?;
            let me = BTreeMap::from([(
                settings.node,
                BasicNode::new(settings.peers[&settings.node]),
            )]);
            match raft.initialize(me).await {
                Ok(()) => info!(
                    node = settings.node,
                    members = settings.peers.len(),
                    "cluster founded; adding the other members"
                ),
                Err(e) => info!(error = %e, "cluster already founded"),
            }
        } else if !initialized {
            info!(
                node = settings.node,
                "waiting to be added to a cluster (`nameserver cluster add`)"
            );
        }
        let cluster = Arc::new(Self {
            node: settings.node,
            raft,
            key,
            directory,
            leading: AtomicBool::new(false),
            idle: std::sync::Mutex::new(Vec::new()),
            founding: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(cluster.clone().follow_leadership(shutdown));
        Ok((cluster, listener))
    }

    /// Whether this node makes changes now.
    pub fn leads(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Follows the consensus state: takes the lead once everything logged before this
    /// node's term is applied, gives it up at once, and stops the server when consensus
    /// stopped (a failed disk).
    async fn follow_leadership(self: Arc<Self>, shutdown: CancellationToken) {
        let mut metrics = self.raft.metrics();
        loop {
            let m = metrics.borrow_and_update().clone();
            if let Err(e) = &m.running_state {
                error!(error = %e, "consensus stopped on this node; stopping the server");
                shutdown.cancel();
                return;
            }
            let leads = m.state == ServerState::Leader && m.current_leader == Some(self.node);
            let caught_up = m.last_applied.map(|l| l.index) >= m.last_log_index;
            if leads && caught_up && !self.leads() {
                match self.directory.take_lead(zones::unix_now()) {
                    Ok(()) => {
                        self.leading.store(true, Ordering::SeqCst);
                        info!(
                            node = self.node,
                            term = m.current_term,
                            "leading the cluster"
                        );
                        tokio::spawn(self.clone().found());
                    }
                    Err(e) => warn!(error = %e, "cannot take the lead"),
                }
            } else if !leads && self.leads() {
                self.leading.store(false, Ordering::SeqCst);
                info!(node = self.node, leader = ?m.current_leader, "no longer leading");
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = self.raft.shutdown().await;
                    return;
                }
                changed = metrics.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Finishes a founding this node began (nothing otherwise): a snapshot of what its
    /// store holds (a directory that served alone before, a restored backup), the log
    /// purged up to it, then the other founding members added. Each of them therefore
    /// starts from that snapshot rather than from a log that begins after what it holds.
    /// Taken up again by the founding node when it leads after a restart.
    async fn found(self: Arc<Self>) {
        let _one = self.founding.lock().await;
        let members: BTreeMap<NodeId, String> = match self.directory.store().log_state(FOUNDING) {
            Ok(Some(record)) if !record.is_empty() => match serde_json::from_slice(&record) {
                Ok(members) => members,
                Err(e) => return error!(error = %e, "the founding record is unreadable"),
            },
            Ok(_) => return,
            Err(e) => return error!(error = %e, "cannot read the founding record"),
        };
        let mut metrics = self.raft.metrics();
        let applied = metrics.borrow().last_applied;
        if let Some(applied) = applied {
            if let Err(e) = self.raft.trigger().snapshot().await {
                return error!(error = %e, "cannot snapshot the founding node's store");
            }
            let built = metrics
                .wait_for(|m| m.snapshot.map(|s| s.index) >= Some(applied.index))
                .await
                .is_ok();
            if !built {
                return;
            }
            if let Err(e) = self.raft.trigger().purge_log(applied.index).await {
                return error!(error = %e, "cannot purge the founding node's log");
            }
        }
        let voters: BTreeSet<NodeId> = members.keys().copied().collect();
        while self.leads() {
            let mut added = true;
            for (id, addr) in members.iter().filter(|(id, _)| **id != self.node) {
                if let Err(e) = self
                    .raft
                    .add_learner(*id, BasicNode::new(addr), false)
                    .await
                {
                    warn!(node = id, error = %e, "cannot add a founding member yet");
                    added = false;
                }
            }
            if added {
                match self.raft.change_membership(voters.clone(), false).await {
                    Ok(_) => {
                        if let Err(e) = self.directory.store().set_log_state(FOUNDING, &[], true) {
                            warn!(error = %e, "cannot record that the founding is over");
                        }
                        return info!(members = voters.len(), "every founding member added");
                    }
                    Err(e) => warn!(error = %e, "cannot make the founding members voters yet"),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The leader's id and cluster address, when one is known.
    fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }

    /// Sends `request` to the leader and returns its answer, trying again (another
    /// leader, a new channel) until [`RELAY_PATIENCE`] is spent.
    async fn to_leader(&self, request: Request) -> Result<Response, String> {
        let started = Instant::now();
        let mut last = String::from("no leader is known");
        while started.elapsed() < RELAY_PATIENCE {
            let Some((id, addr)) = self.leader() else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut peer = self.take_peer(id, addr);
            match peer.call(&request, EXCHANGE).await {
                Ok(
                    Response::Dns(Err(e)) | Response::Control(Err(e)) | Response::Change(Err(e)),
                ) if e == NOT_LEADER => {
                    last = format!("node {id} is not the leader (yet)");
                    self.give_back(id, peer);
                }
                Ok(response) => {
                    self.give_back(id, peer);
                    return Ok(response);
                }
                Err(e) => last = format!("node {id}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    fn take_peer(&self, id: NodeId, addr: String) -> Peer {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(node, _)| *node == id);
        match idle.pop() {
            Some((_, peer)) => peer,
            None => Peer::new(id, addr, self.key.clone()),
        }
    }

    fn give_back(&self, id: NodeId, peer: Peer) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 16 {
            idle.push((id, peer));
        }
    }

    /// Waits (up to two seconds) until this node has applied log index `index`, so that
    /// what a client was told is done is what this node then answers.
    async fn applied(&self, index: u64) {
        let mut metrics = self.raft.metrics();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            metrics.wait_for(|m| m.last_applied.map(|l| l.index) >= Some(index)),
        )
        .await;
    }

    /// What this node knows of itself.
    pub fn member_status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        MemberStatus {
            node: self.node,
            role: role.into(),
            leader: m.current_leader,
            term: m.current_term,
            applied: m.last_applied.map(|l| l.index),
            last_log: m.last_log_index,
            serial: self.directory.view().serial(),
        }
    }

    /// Every member's status, as a table.
    async fn status_text(&self) -> String {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut lines = Vec::new();
        let mine = self.member_status();
        let leader = mine
            .leader
            .map_or("none known".to_owned(), |l| format!("node {l}"));
        lines.push(format!(
            "members: {}; leader: {leader}; term {}",
            voters.len(),
            mine.term
        ));
        lines.push(format!(
            "{:<6} {:<22} {:<12} {:>9} {:>9} {:>11}",
            "node", "address", "role", "applied", "log", "serial"
        ));
        for (id, node) in membership.nodes() {
            let status = if *id == self.node {
                Some(mine.clone())
            } else {
                let mut peer = Peer::new(*id, node.addr.clone(), self.key.clone());
                match peer.call(&Request::Status, Duration::from_secs(1)).await {
                    Ok(Response::Status(s)) => Some(s),
                    _ => None,
                }
            };
            let voter = if voters.contains(id) {
                ""
            } else {
                " (learner)"
            };
            let row = match status {
                Some(s) => format!(
                    "{:<6} {:<22} {:<12} {:>9} {:>9} {:>11}",
                    id,
                    node.addr,
                    format!("{}{voter}", s.role),
                    s.applied.map_or("-".into(), |a| a.to_string()),
                    s.last_log.map_or("-".into(), |a| a.to_string()),
                    s.serial
                ),
                None => format!(
                    "{:<6} {:<22} {:<12} {:>9} {:>9} {:>11}",
                    id, node.addr, "unreachable", "-", "-", "-"
                ),
            };
            lines.push(row);
        }
        lines.join("\n")
    }

    /// Makes a change of members (on the leader).
    pub(super) async fn change_members(&self, change: ClusterChange) -> Result<String, String> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let mut voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        match change {
            ClusterChange::Add { node, addr } => {
                self.raft
                    .add_learner(node, BasicNode::new(addr), true)
                    .await
                    .map_err(|e| e.to_string())?;
                voters.insert(node);
                self.raft
                    .change_membership(voters, false)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("node {node} ({addr}) added"))
            }
            ClusterChange::Remove { node } => {
                if !voters.remove(&node) {
                    return Err(format!("node {node} is not a member"));
                }
                if voters.is_empty() {
                    return Err("the last member cannot be removed".into());
                }
                self.raft
                    .change_membership(voters, false)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("node {node} removed"))
            }
        }
    }
}

impl crate::metrics::ClusterObserved for Cluster {
    fn gauges(&self) -> crate::metrics::ClusterGauges {
        let s = self.member_status();
        crate::metrics::ClusterGauges {
            node: s.node,
            leads: self.leads(),
            leader: s.leader,
            term: s.term,
            applied: s.applied,
            last_log: s.last_log,
        }
    }
}

/// What a node that does not lead answers a relayed request.
pub(super) const NOT_LEADER: &str = "not the leader";

impl Relay for Cluster {
    fn is_leader(&self) -> bool {
        self.leads()
    }

    fn dns(
        &self,
        message: Vec<u8>,
        src: SocketAddr,
        transport: Transport,
    ) -> Relayed<'_, Vec<Vec<u8>>> {
        Box::pin(async move {
            let tcp = transport == Transport::Tcp;
            match self.to_leader(Request::Dns { message, src, tcp }).await? {
                Response::Dns(Ok((messages, index))) => {
                    self.applied(index).await;
                    Ok(messages)
                }
                Response::Dns(Err(e)) => Err(e),
                _ => Err("the leader answered another request".into()),
            }
        })
    }

    fn control(&self, request: String) -> Relayed<'_, String> {
        Box::pin(async move {
            match self.to_leader(Request::Control(request)).await? {
                Response::Control(reply) => reply,
                _ => Err("the leader answered another request".into()),
            }
        })
    }

    fn change(&self, change: ClusterChange) -> Relayed<'_, String> {
        Box::pin(async move {
            if self.leads() {
                return self.change_members(change).await;
            }
            match self.to_leader(Request::Change(change)).await? {
                Response::Change(reply) => reply,
                _ => Err("the leader answered another request".into()),
            }
        })
    }

    fn status(&self) -> Relayed<'_, String> {
        Box::pin(async move { Ok(self.status_text().await) })
    }
}
