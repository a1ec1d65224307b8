//! DNS over UDP: worker tasks that receive, answer and send on the same socket.
//!
//! Each socket has one worker per core; a worker hands each datagram to the
//! [`crate::pipeline`] and sends what comes out straight back. The fast path's answers go
//! out together after the batch ([`crate::mmsg`]); the others are sent as the pipeline
//! finishes them. Requests that wait on the disk (UPDATE: a flush) get a task of their
//! own, so a query never waits behind one.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::metrics::Transport;
use crate::mmsg::{Received, Replies};
use crate::pipeline::classify::is_update;
use crate::pipeline::{Outcome, Pipeline, Sink};

/// Serves one UDP socket with `workers` tasks until `shutdown`.
pub async fn serve(
    socket: UdpSocket,
    pipeline: Pipeline,
    workers: usize,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let mut tasks = JoinSet::new();
    for shard in 0..workers.max(1) {
        tasks.spawn(worker(
            socket.clone(),
            pipeline.clone(),
            shard,
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// One worker; `shard` is its own slot for the query counters.
async fn worker(
    socket: Arc<UdpSocket>,
    pipeline: Pipeline,
    shard: usize,
    shutdown: CancellationToken,
) {
    let mut received = Received::for_socket(&socket);
    let mut replies = Replies::default();
    let mut slow = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            got = received.receive(&socket) => if let Err(e) = got {
                debug!(error = %e, "udp receive failed");
                continue;
            },
        };
        for (datagram, src) in received.iter() {
            let out = replies.next_buffer();
            match pipeline.answer_datagram(datagram, src.ip(), shard, out) {
                Outcome::Sent => {
                    replies.commit(src);
                    continue;
                }
                Outcome::Deferred => {}
                _ => continue,
            }
            let message = datagram.to_vec();
            let mut sink = Datagram {
                socket: socket.clone(),
                dst: src,
            };
            if is_update(&message) {
                let pipeline = pipeline.clone();
                slow.spawn(async move {
                    pipeline
                        .answer(message, src, Transport::Udp, &mut sink)
                        .await
                });
                while slow.try_join_next().is_some() {}
            } else {
                pipeline
                    .answer(message, src, Transport::Udp, &mut sink)
                    .await;
            }
        }
        replies.send(&socket).await;
    }
    slow.shutdown().await;
}

/// Sends one answer back to the asker.
struct Datagram {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl Sink for Datagram {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.socket.send_to(bytes, self.dst).await.map(|_| ())
    }
}
