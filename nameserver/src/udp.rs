//! DNS over UDP: worker tasks that receive, answer and send on the same socket.
//!
//! hickory's UDP listener spawns a task for every datagram and passes every answer through
//! a channel to a sender task: two hand-offs per query. Here each socket has one worker per
//! core; a worker answers a query inline and sends it straight back, through the wire-level
//! [`crate::fast`] path when it can (no decoding, no allocation). Requests that wait on
//! the disk (UPDATE: a flush) get a task of their own, so a query never waits behind one.
//! Responses (QR set) are dropped unanswered; undecodable messages with a readable header get
//! FORMERR, as on TCP.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::fast::Fast;
use crate::handler::Handler;
use crate::metrics::Transport;
use crate::mmsg::{Received, Replies};

/// Serves one UDP socket with `workers` tasks until `shutdown`.
pub async fn serve(
    socket: UdpSocket,
    handler: Handler,
    workers: usize,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let mut tasks = JoinSet::new();
    for shard in 0..workers.max(1) {
        tasks.spawn(worker(
            socket.clone(),
            handler.clone(),
            shard,
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// One worker; `shard` is its own slot for the query counters. Datagrams come in batches
/// ([`crate::mmsg`]); fast-path answers go out together after the batch, the others as
/// hickory's path sends them.
async fn worker(
    socket: Arc<UdpSocket>,
    handler: Handler,
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
            match handler.answer_fast(datagram, src.ip(), out) {
                Fast::Answered { qtype } => {
                    replies.commit(src);
                    if let (Some(m), Some(out)) = (handler.metrics(), replies.last()) {
                        let rcode = u16::from(out[3] & 0x0f);
                        m.query(shard, Transport::Udp, qtype, rcode);
                    }
                    continue;
                }
                Fast::Dropped => continue,
                Fast::Declined => {}
            }
            let message = datagram.to_vec();
            let responder = Responder {
                socket: socket.clone(),
                dst: src,
            };
            if is_update(&message) {
                let handler = handler.clone();
                slow.spawn(async move { answer(message, src, &handler, responder).await });
                while slow.try_join_next().is_some() {}
            } else {
                answer(message, src, &handler, responder).await;
            }
        }
        replies.send(&socket).await;
    }
    slow.shutdown().await;
}

fn is_update(message: &[u8]) -> bool {
    message.len() > 2 && OpCode::from_u8((message[2] >> 3) & 0x0f) == OpCode::Update
}

async fn answer(message: Vec<u8>, src: SocketAddr, handler: &Handler, responder: Responder) {
    let mut decoder = BinDecoder::new(&message);
    let Ok(header) = Header::read(&mut decoder) else {
        return;
    };
    if header.metadata.message_type == MessageType::Response {
        return;
    }
    match Request::from_bytes(message, src, Protocol::Udp) {
        Ok(request) => {
            handler
                .handle_request::<_, TokioTime>(&request, responder)
                .await;
        }
        Err(_) => {
            // Under RRL like every other answer; a slip would be no smaller than this.
            if handler.unparsed_verdict(src.ip()) != crate::ratelimit::Verdict::Drop {
                if let Some(m) = handler.metrics() {
                    m.query_answered(Transport::Udp, RecordType::NULL, ResponseCode::FormErr);
                }
                let bytes = crate::response::formerr_header(&header);
                let _ = responder.socket.send_to(&bytes, src).await;
            }
        }
    }
}

/// Sends one answer back to the asker, truncated to what it can receive.
#[derive(Clone)]
struct Responder {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for Responder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // RFC 1035 §4.2.1 and RFC 6891: 512 bytes without EDNS, else the advertised size.
        let limit = response.edns().map_or(512, |e| e.max_payload().max(512));
        let (info, bytes) = crate::response::encode_response(response, limit)?;
        self.socket
            .send_to(&bytes, self.dst)
            .await
            .map_err(|e| NetError::from(e.to_string()))?;
        Ok(info)
    }
}
