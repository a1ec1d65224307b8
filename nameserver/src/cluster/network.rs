//! The consensus library's network: one channel per peer, opened on first use and again
//! after a failure; each call is one request and its response, within the library's
//! deadline.

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::channel::{Channel, ClusterKey};
use super::types::{NodeId, TypeConfig};
use super::wire::{Request, Response};

/// Opens a [`Peer`] for each member the library talks to.
#[derive(Clone, Debug)]
pub struct Network {
    pub key: ClusterKey,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            key: self.key.clone(),
            channel: None,
        }
    }
}

/// One peer, and the channel to it once open.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    addr: String,
    key: ClusterKey,
    channel: Option<Channel>,
}

type Failed<E> = RPCError<NodeId, BasicNode, E>;

impl Peer {
    /// Sends `request` and waits for its response within `deadline`; a failed channel is
    /// closed, and the next call opens another.
    pub async fn call(
        &mut self,
        request: &Request,
        deadline: Duration,
    ) -> std::io::Result<Response> {
        let exchange = async {
            if self.channel.is_none() {
                self.channel = Some(Channel::connect(&self.addr, &self.key, deadline).await?);
            }
            let channel = self.channel.as_mut().expect("opened above");
            channel.send(request).await?;
            channel.recv::<Response>().await
        };
        let answered = tokio::time::timeout(deadline, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer in time",
                ))
            });
        if answered.is_err() {
            self.channel = None;
        }
        answered
    }

    pub fn new(target: NodeId, addr: String, key: ClusterKey) -> Self {
        Self {
            target,
            addr,
            key,
            channel: None,
        }
    }

    fn unreachable<E: std::error::Error>(e: &std::io::Error) -> Failed<E> {
        RPCError::Unreachable(Unreachable::new(e))
    }

    fn unexpected<E: std::error::Error>() -> Failed<E> {
        let e = std::io::Error::other("the peer answered another request");
        RPCError::Network(NetworkError::new(&e))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> Failed<E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    /// After an unreachable peer, try again every 50 ms (the library waits 500 ms by
    /// default): a node that starts a moment after the leader, or comes back, hears from it
    /// before its election timeout (500 to 900 ms) and does not call an election.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(50)))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Failed<RaftError<NodeId>>> {
        match self.call(&Request::Append(rpc), option.hard_ttl()).await {
            Ok(Response::Append(Ok(r))) => Ok(r),
            Ok(Response::Append(Err(e))) => Err(self.remote(e)),
            Ok(_) => Err(Self::unexpected()),
            Err(e) => Err(Self::unreachable(&e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Failed<RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.call(&Request::Snapshot(rpc), option.hard_ttl()).await {
            Ok(Response::Snapshot(Ok(r))) => Ok(r),
            Ok(Response::Snapshot(Err(e))) => Err(self.remote(e)),
            Ok(_) => Err(Self::unexpected()),
            Err(e) => Err(Self::unreachable(&e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Failed<RaftError<NodeId>>> {
        match self.call(&Request::Vote(rpc), option.hard_ttl()).await {
            Ok(Response::Vote(Ok(r))) => Ok(r),
            Ok(Response::Vote(Err(e))) => Err(self.remote(e)),
            Ok(_) => Err(Self::unexpected()),
            Err(e) => Err(Self::unreachable(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::node::ELECTION_TIMEOUT_MIN;

    /// Regression: after an unreachable peer the library waited its default 500 ms before
    /// trying again, as long as the shortest election timeout: a node that started a moment
    /// after the leader heard from it too late, and called an election that unseated it.
    #[test]
    fn an_unreachable_peer_is_tried_again_well_within_the_election_timeout() {
        let peer = Peer::new(2, "127.0.0.1:9".into(), ClusterKey::derive(b"test"));
        let waits: Vec<Duration> = peer.backoff().take(100).collect();
        assert_eq!(waits.len(), 100, "the retries stop");
        let limit = Duration::from_millis(ELECTION_TIMEOUT_MIN / 4);
        assert!(
            waits.iter().all(|w| *w <= limit),
            "waits {:?} exceed a quarter of the election timeout ({limit:?})",
            &waits[..3]
        );
    }
}
