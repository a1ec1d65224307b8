//! The physical floor of a UDP DNS answer on this machine: a responder that takes datagrams
//! in batches (`recvmmsg`) and sends each straight back as an answer (`sendmmsg`), with the
//! QR and AA bits set and nothing parsed, through the same batched socket code as the
//! directory ([`nameserver::mmsg`]). What any server costs above it is its own work.
//!
//! `floor 127.0.0.1:PORT` answers until killed.

use std::net::SocketAddr;

use nameserver::mmsg::{Received, Replies};

fn main() -> std::io::Result<()> {
    let Some(Ok(addr)) = std::env::args().nth(1).map(|a| a.parse::<SocketAddr>()) else {
        eprintln!("usage: floor IP:PORT");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        let mut received = Received::for_socket(&socket);
        let mut replies = Replies::default();
        loop {
            received.receive(&socket).await?;
            for (datagram, src) in received.iter() {
                if datagram.len() < 12 || datagram[2] & 0x80 != 0 {
                    continue;
                }
                let out = replies.next_buffer();
                out.clear();
                out.extend_from_slice(datagram);
                // QR and AA set, the opcode and RD kept; RCODE 0.
                out[2] |= 0x84;
                out[3] &= 0xf0;
                replies.commit(src);
            }
            replies.send(&socket).await;
        }
    })
}
