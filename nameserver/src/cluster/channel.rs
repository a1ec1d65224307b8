//! The cluster's connections: TCP, opened with a Noise handshake (`NNpsk0`: X25519,
//! ChaCha20-Poly1305, SHA-256) keyed by the shared cluster key, so that only a peer holding
//! the key gets past the first message, and every message after it is encrypted and
//! authenticated. The log carries terminals' TSIG secrets: it never crosses in clear.
//!
//! A message is postcard bytes, prefixed with its length and cut into Noise messages of at
//! most 64 KiB, each framed by its 2-byte length.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use snow::{HandshakeState, TransportState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The Noise pattern and primitives.
const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
/// Binds the handshake to this protocol and its version.
const PROLOGUE: &[u8] = b"dial-cluster-v1";
/// The largest Noise message, and the plaintext one holds (16 bytes go to its tag).
const NOISE_MAX: usize = 65535;
const CHUNK: usize = NOISE_MAX - 16;
/// The largest message accepted (a batch of log entries).
const MESSAGE_MAX: usize = 256 << 20;
/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// The pre-shared key of the handshake, derived from the cluster key's secret.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// From the secret of the `key_file` of `[cluster]`.
    pub fn derive(secret: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"dial-cluster-key-v1\0");
        hash.update(secret);
        Self(hash.finalize().into())
    }

    fn builder(&self) -> Result<snow::Builder<'_>, std::io::Error> {
        let params = PATTERN.parse().map_err(noise_error)?;
        Ok(snow::Builder::new(params)
            .prologue(PROLOGUE)
            .psk(0, &self.0))
    }
}

fn noise_error(e: snow::Error) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!("cluster handshake: {e}"),
    )
}

/// One authenticated, encrypted connection to a peer.
pub struct Channel {
    stream: TcpStream,
    noise: TransportState,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("peer", &self.stream.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Connects to `addr` and opens the channel (the initiator's side).
    pub async fn connect(addr: &str, key: &ClusterKey, timeout: Duration) -> std::io::Result<Self> {
        let open = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut hs = key.builder()?.build_initiator().map_err(noise_error)?;
            write_handshake(&mut stream, &mut hs).await?;
            read_handshake(&mut stream, &mut hs).await?;
            let noise = hs.into_transport_mode().map_err(noise_error)?;
            Ok(Self { stream, noise })
        };
        tokio::time::timeout(timeout.min(HANDSHAKE_TIMEOUT), open)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "cluster peer did not answer")
            })?
    }

    /// Opens the channel on an accepted connection (the responder's side); a peer without
    /// the key fails here.
    pub async fn accept(mut stream: TcpStream, key: &ClusterKey) -> std::io::Result<Self> {
        let open = async {
            stream.set_nodelay(true)?;
            let mut hs = key.builder()?.build_responder().map_err(noise_error)?;
            read_handshake(&mut stream, &mut hs).await?;
            write_handshake(&mut stream, &mut hs).await?;
            let noise = hs.into_transport_mode().map_err(noise_error)?;
            Ok(Self { stream, noise })
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, open)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "cluster handshake timed out")
            })?
    }

    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, message: &T) -> std::io::Result<()> {
        let body = postcard::to_stdvec(message).map_err(std::io::Error::other)?;
        let mut plain = Vec::with_capacity(body.len() + 4);
        plain.extend_from_slice(
            &u32::try_from(body.len())
                .map_err(std::io::Error::other)?
                .to_be_bytes(),
        );
        plain.extend_from_slice(&body);
        let mut out = Vec::with_capacity(plain.len() + plain.len() / CHUNK * 18 + 18);
        let mut sealed = vec![0u8; NOISE_MAX];
        for chunk in plain.chunks(CHUNK) {
            let n = self
                .noise
                .write_message(chunk, &mut sealed)
                .map_err(noise_error)?;
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&sealed[..n]);
        }
        self.stream.write_all(&out).await
    }

    /// Receives one message.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> std::io::Result<T> {
        let mut plain = Vec::new();
        let mut want = None;
        let mut opened = vec![0u8; NOISE_MAX];
        loop {
            let sealed = read_frame(&mut self.stream).await?;
            let n = self
                .noise
                .read_message(&sealed, &mut opened)
                .map_err(noise_error)?;
            plain.extend_from_slice(&opened[..n]);
            if want.is_none() && plain.len() >= 4 {
                let len = u32::from_be_bytes([plain[0], plain[1], plain[2], plain[3]]) as usize;
                if len > MESSAGE_MAX {
                    return Err(std::io::Error::other("cluster message too large"));
                }
                want = Some(len + 4);
            }
            if want.is_some_and(|w| plain.len() >= w) {
                break;
            }
        }
        postcard::from_bytes(&plain[4..])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

async fn write_handshake(stream: &mut TcpStream, hs: &mut HandshakeState) -> std::io::Result<()> {
    let mut message = vec![0u8; NOISE_MAX];
    let n = hs.write_message(&[], &mut message).map_err(noise_error)?;
    let mut framed = (n as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&message[..n]);
    stream.write_all(&framed).await
}

async fn read_handshake(stream: &mut TcpStream, hs: &mut HandshakeState) -> std::io::Result<()> {
    let message = read_frame(stream).await?;
    let mut payload = vec![0u8; NOISE_MAX];
    hs.read_message(&message, &mut payload)
        .map_err(noise_error)?;
    Ok(())
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut frame = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}
