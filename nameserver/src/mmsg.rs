//! Datagrams in batches: up to [`BATCH`] received with one `recvmmsg` and their answers sent
//! with one `sendmmsg` (Linux), as NSD and Knot do, instead of two system calls per query.
//! Elsewhere, one `recv_from` and one `send_to` each.
//!
//! The buffers belong to the worker that uses them and are allocated once. The kernel's
//! message headers (nix's `MultiHeaders`, which hold raw pointers and so cannot move between
//! threads) are kept per thread and used only inside a system call, never across an await.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// Datagrams received (and answers sent) per system call at most.
pub const BATCH: usize = 32;
/// The largest datagram read.
pub const DATAGRAM: usize = 4096;

/// Datagrams received by one [`Received::receive`].
pub struct Received {
    bufs: Box<[[u8; DATAGRAM]; BATCH]>,
    lens: [usize; BATCH],
    srcs: [Option<SocketAddr>; BATCH],
    count: usize,
    /// The socket is IPv4 (else IPv6): which headers receive into.
    ipv4: bool,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("count", &self.count)
            .finish()
    }
}

impl Received {
    /// Buffers for receiving on `socket`.
    pub fn for_socket(socket: &UdpSocket) -> Self {
        Self {
            ipv4: socket.local_addr().map_or(true, |a| a.is_ipv4()),
            bufs: vec![[0u8; DATAGRAM]; BATCH]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("BATCH buffers")),
            lens: [0; BATCH],
            srcs: [None; BATCH],
            count: 0,
        }
    }

    /// The datagrams of the last receive, with their senders.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        (0..self.count).filter_map(|i| Some((&self.bufs[i][..self.lens[i]], self.srcs[i]?)))
    }

    /// Waits until at least one datagram is there, then takes as many as one call gives.
    pub async fn receive(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        loop {
            socket.readable().await?;
            match socket.try_io(tokio::io::Interest::READABLE, || self.receive_now(socket)) {
                Ok(count) => return Ok(count),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn receive_now(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{MsgFlags, recvmmsg};

        let Self {
            bufs,
            lens,
            srcs,
            ipv4,
            ..
        } = self;
        // The kernel shortens a header's address length to the last sender's; headers are
        // kept apart by family, so an IPv6 sender is never cut to an IPv4 length.
        let use_headers = if *ipv4 {
            linux::Headers::ReceiveV4
        } else {
            linux::Headers::ReceiveV6
        };
        let count = linux::with_headers(use_headers, |headers| {
            let mut slices = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
            let results = recvmmsg(
                socket.as_raw_fd(),
                headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )?;
            let mut count = 0;
            for (i, message) in results.enumerate() {
                lens[i] = message.bytes;
                srcs[i] = message.address.as_ref().and_then(linux::to_std);
                count = i + 1;
            }
            Ok(count)
        })?;
        self.count = count;
        Ok(count)
    }

    #[cfg(not(target_os = "linux"))]
    fn receive_now(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        let (len, src) = socket.try_recv_from(&mut self.bufs[0])?;
        self.lens[0] = len;
        self.srcs[0] = Some(src);
        self.count = 1;
        Ok(1)
    }
}

/// Answers waiting to be sent by one [`Replies::send`].
pub struct Replies {
    outs: Vec<Vec<u8>>,
    dsts: [Option<SocketAddr>; BATCH],
    count: usize,
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("count", &self.count)
            .finish()
    }
}

impl Default for Replies {
    fn default() -> Self {
        Self {
            outs: (0..BATCH).map(|_| Vec::with_capacity(DATAGRAM)).collect(),
            dsts: [None; BATCH],
            count: 0,
        }
    }
}

impl Replies {
    /// The buffer for the next answer; it is sent only once [`Replies::commit`]ted.
    pub fn next_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.outs[self.count]
    }

    /// The buffer last handed out holds an answer for `dst`.
    pub fn commit(&mut self, dst: SocketAddr) {
        self.dsts[self.count] = Some(dst);
        self.count += 1;
    }

    /// The answer last committed.
    pub fn last(&self) -> Option<&[u8]> {
        self.count.checked_sub(1).map(|i| self.outs[i].as_slice())
    }

    /// Sends every committed answer; those the socket refuses are dropped, as a lost
    /// datagram would be.
    pub async fn send(&mut self, socket: &UdpSocket) {
        let mut from = 0;
        while from < self.count {
            if socket.writable().await.is_err() {
                break;
            }
            match socket.try_io(tokio::io::Interest::WRITABLE, || {
                self.send_now(socket, from)
            }) {
                Ok(sent) => from += sent.max(1),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                // One answer the kernel will not take (e.g. an unreachable address family):
                // skip it and go on with the rest.
                Err(_) => from += 1,
            }
        }
        self.count = 0;
    }

    #[cfg(target_os = "linux")]
    fn send_now(&self, socket: &UdpSocket, from: usize) -> std::io::Result<usize> {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmmsg};

        // Only the answers this call sends are converted (a batch is often one answer).
        let pending = from..self.count;
        let slices: [[IoSlice; 1]; BATCH] = std::array::from_fn(|i| {
            let out = if pending.contains(&i) {
                &self.outs[i][..]
            } else {
                &[]
            };
            [IoSlice::new(out)]
        });
        let addrs: [Option<SockaddrStorage>; BATCH] = std::array::from_fn(|i| {
            pending
                .contains(&i)
                .then(|| self.dsts[i].map(SockaddrStorage::from))
                .flatten()
        });
        let cmsgs: [ControlMessage; 0] = [];
        linux::with_headers(linux::Headers::Send, |headers| {
            let sent = sendmmsg(
                socket.as_raw_fd(),
                headers,
                slices[from..self.count].iter(),
                &addrs[from..self.count],
                cmsgs,
                MsgFlags::MSG_DONTWAIT,
            )?;
            Ok(sent.count())
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn send_now(&self, socket: &UdpSocket, from: usize) -> std::io::Result<usize> {
        let dst = self.dsts[from].ok_or(std::io::ErrorKind::InvalidInput)?;
        socket.try_send_to(&self.outs[from], dst)?;
        Ok(1)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::cell::RefCell;
    use std::net::SocketAddr;

    use nix::sys::socket::{MultiHeaders, SockaddrStorage};

    type Slot = RefCell<Option<MultiHeaders<SockaddrStorage>>>;

    thread_local! {
        /// The kernel's message headers for this thread's batched calls: receiving on IPv4
        /// sockets, on IPv6 sockets, and sending (which points them at its own addresses).
        static RECEIVE_V4: Slot = const { RefCell::new(None) };
        static RECEIVE_V6: Slot = const { RefCell::new(None) };
        static SEND: Slot = const { RefCell::new(None) };
    }

    /// Which of this thread's headers a call uses.
    #[derive(Clone, Copy)]
    pub enum Headers {
        ReceiveV4,
        ReceiveV6,
        Send,
    }

    /// Runs `call` with this thread's headers of that kind (allocated on first use).
    pub fn with_headers<R>(
        which: Headers,
        call: impl FnOnce(&mut MultiHeaders<SockaddrStorage>) -> nix::Result<R>,
    ) -> std::io::Result<R> {
        let key = match which {
            Headers::ReceiveV4 => &RECEIVE_V4,
            Headers::ReceiveV6 => &RECEIVE_V6,
            Headers::Send => &SEND,
        };
        key.with(|cell| {
            let mut headers = cell.borrow_mut();
            let headers =
                headers.get_or_insert_with(|| MultiHeaders::preallocate(super::BATCH, None));
            call(headers).map_err(std::io::Error::from)
        })
    }

    pub fn to_std(address: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = address.as_sockaddr_in() {
            return Some(SocketAddr::V4((*v4).into()));
        }
        address
            .as_sockaddr_in6()
            .map(|v6| SocketAddr::V6((*v6).into()))
    }
}
