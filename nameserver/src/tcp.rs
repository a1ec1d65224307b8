//! DNS over TCP, and over TLS (RFC 7858), with limits: an accept loop and the framing
//! around [`crate::pipeline`]. A TLS connection is a TCP one with a handshake first.
//!
//! Here:
//!
//! - at most `max_connections` connections in all and `max_per_client` from one client
//!   network (/24 for IPv4, /56 for IPv6, as RRL counts: one host owns many addresses of
//!   its network); the last eighth of the slots is kept for networks that hold none, so a
//!   few busy networks cannot starve everyone else; a connection over a limit is closed at
//!   once;
//! - a connection idle for `idle_timeout` (no complete request) is closed;
//! - a client that does not read its answers (slow reader) is cut off after `write_timeout`;
//! - each answer is written as soon as it is built, so a zone transfer streams with
//!   backpressure instead of piling up in memory.
//!
//! Requests are handled one after another per connection (RFC 7766 allows pipelining;
//! answering in order is always correct).

pub use crate::config::TcpLimits;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::metrics::Transport;
use crate::pipeline::{Outcome, Pipeline, Sink};

/// Connections per client network (see [`crate::ratelimit::prefix`]), released when a
/// connection ends.
#[derive(Debug, Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    /// Counts a connection from `network`, unless it holds `max` already, or the free slots
    /// are down to the reserve and it holds any.
    fn try_add(&self, network: IpAddr, max: usize, in_reserve: bool) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.get(&network).copied().unwrap_or(0);
        if count >= max || (in_reserve && count > 0) {
            return false;
        }
        map.insert(network, count + 1);
        true
    }

    fn remove(&self, ip: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// Accepts and serves TCP connections until `shutdown`; with `tls`, each begins with a TLS
/// handshake (DNS over TLS, RFC 7858), within the idle timeout.
pub async fn serve(
    listener: TcpListener,
    pipeline: Pipeline,
    limits: TcpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = Arc::new(PerClient::default());
    // Slots only a network holding none may take.
    let reserve = limits.max_connections / 8;
    let mut connections = JoinSet::new();
    loop {
        let (stream, src) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    debug!(error = %e, "tcp accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = total.clone().try_acquire_owned() else {
            debug!(%src, "tcp connection refused: too many connections");
            continue;
        };
        let network = crate::ratelimit::prefix(src.ip());
        let in_reserve = total.available_permits() < reserve;
        if !per_client.try_add(network, limits.max_per_client, in_reserve) {
            debug!(%src, "tcp connection refused: too many from this client's network");
            continue;
        }
        let (pipeline, per_client, stop) = (pipeline.clone(), per_client.clone(), shutdown.clone());
        let tls = tls.clone();
        connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            let served = async {
                match tls {
                    None => connection(stream, src, &pipeline, limits).await,
                    Some(tls) => {
                        let handshake =
                            tokio::time::timeout(limits.idle_timeout, tls.accept(stream));
                        match handshake.await {
                            Ok(Ok(stream)) => connection(stream, src, &pipeline, limits).await,
                            Ok(Err(e)) => debug!(%src, error = %e, "tls handshake failed"),
                            Err(_) => debug!(%src, "tls handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = served => {}
            }
            per_client.remove(network);
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// One connection: read framed requests, answer each, until idle, closed or cut off.
async fn connection<S>(stream: S, src: SocketAddr, pipeline: &Pipeline, limits: TcpLimits)
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let mut sink = Framed {
        writer,
        write_timeout: limits.write_timeout,
    };
    loop {
        let mut len = [0u8; 2];
        let read = async {
            reader.read_exact(&mut len).await?;
            let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
            reader.read_exact(&mut message).await?;
            Ok::<_, std::io::Error>(message)
        };
        // Idle too long, closed, or cut mid-message: the connection ends.
        let Ok(Ok(message)) = tokio::time::timeout(limits.idle_timeout, read).await else {
            return;
        };
        if pipeline
            .answer(message, src, Transport::Tcp, &mut sink)
            .await
            == Outcome::Broken
        {
            return;
        }
    }
}

/// Writes answers to one connection, each with its length, within the write timeout.
struct Framed<W> {
    writer: W,
    write_timeout: Duration,
}

#[async_trait::async_trait]
impl<W: AsyncWrite + Send + Unpin> Sink for Framed<W> {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len =
            u16::try_from(bytes.len()).map_err(|_| std::io::Error::other("answer too long"))?;
        let writer = &mut self.writer;
        let write = async {
            writer.write_all(&len.to_be_bytes()).await?;
            writer.write_all(bytes).await?;
            // TLS holds records back until flushed; plain TCP has nothing to flush.
            writer.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::other("client does not read its answers")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_counts_are_bounded_and_released() {
        let pc = PerClient::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(pc.try_add(ip, 2, false));
        assert!(pc.try_add(ip, 2, false));
        assert!(!pc.try_add(ip, 2, false));
        pc.remove(ip);
        assert!(pc.try_add(ip, 2, false));
        pc.remove(ip);
        pc.remove(ip);
        assert!(pc.0.lock().unwrap().is_empty(), "no entry left behind");
    }

    #[test]
    fn the_reserve_is_only_for_networks_holding_none() {
        let pc = PerClient::default();
        let busy: IpAddr = "192.0.2.0".parse().unwrap();
        let other: IpAddr = "198.51.100.0".parse().unwrap();
        assert!(pc.try_add(busy, 4, false));
        assert!(
            !pc.try_add(busy, 4, true),
            "a busy network may not take the reserve"
        );
        assert!(pc.try_add(other, 4, true), "a new network may");
    }
}
