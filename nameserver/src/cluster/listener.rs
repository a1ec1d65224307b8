//! Serving peers: consensus messages go to the library; what a follower relays is answered
//! here when this node leads (never relayed again), and refused with [`NOT_LEADER`]
//! otherwise.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::channel::Channel;
use super::node::{Cluster, NOT_LEADER};
use super::wire::{Request, Response};
use crate::metrics::{Metrics, Transport};
use crate::pipeline::{Collected, Pipeline};

/// What a node needs to answer what followers relay.
#[derive(Clone, Debug)]
pub struct Serving {
    pub pipeline: Pipeline,
    pub metrics: Option<Arc<Metrics>>,
}

/// Accepts peers until `shutdown`.
pub async fn serve(
    cluster: Arc<Cluster>,
    listener: TcpListener,
    serving: Serving,
    shutdown: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "cluster accept failed");
                    continue;
                }
            },
        };
        let (cluster, serving) = (cluster.clone(), serving.clone());
        connections.spawn(async move {
            let mut channel = match Channel::accept(stream, &cluster.key).await {
                Ok(channel) => channel,
                Err(e) => {
                    warn!(%peer, error = %e, "cluster connection refused");
                    return;
                }
            };
            loop {
                let request = match channel.recv::<Request>().await {
                    Ok(request) => request,
                    Err(e) => {
                        debug!(%peer, error = %e, "cluster connection ended");
                        return;
                    }
                };
                let response = answer(&cluster, &serving, request).await;
                if let Err(e) = channel.send(&response).await {
                    debug!(%peer, error = %e, "cluster connection ended");
                    return;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

async fn answer(cluster: &Cluster, serving: &Serving, request: Request) -> Response {
    let raft = &cluster.raft;
    match request {
        Request::Append(rpc) => Response::Append(raft.append_entries(rpc).await),
        Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
        Request::Snapshot(rpc) => Response::Snapshot(raft.install_snapshot(rpc).await),
        Request::Status => Response::Status(cluster.member_status()),
        Request::Dns { .. } | Request::Control(_) | Request::Change(_) if !cluster.leads() => {
            match request {
                Request::Dns { .. } => Response::Dns(Err(NOT_LEADER.into())),
                Request::Control(_) => Response::Control(Err(NOT_LEADER.into())),
                _ => Response::Change(Err(NOT_LEADER.into())),
            }
        }
        Request::Dns { message, src, tcp } => {
            let transport = if tcp { Transport::Tcp } else { Transport::Udp };
            let mut sink = Collected::default();
            serving
                .pipeline
                .answer_here(message, src, transport, &mut sink)
                .await;
            let index = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
            Response::Dns(Ok((sink.0, index)))
        }
        Request::Control(line) => Response::Control(Ok(crate::control::execute_line(
            &line,
            &cluster.directory,
            serving.metrics.as_deref(),
        )
        .await)),
        Request::Change(change) => Response::Change(cluster.change_members(change).await),
    }
}
