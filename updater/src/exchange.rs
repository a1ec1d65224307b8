//! One DNS request and its answer, over UDP with TCP when truncated, optionally TSIG-signed.
//!
//! The updater builds and signs its messages itself (hickory-proto's `TSigner`) rather than
//! through hickory-net's client, because it must tell the user *which* TSIG error the
//! directory returned: hickory-net's verifier turns an unsigned BADKEY or BADSIG answer into
//! one generic error, and it does not expose BADTIME's server time.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::tsig::TsigError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use zones::key::TsigKey;

/// Why an exchange gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    #[error("cannot reach {server}: {source}")]
    Io {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("the answer from {0} is not a valid DNS message")]
    Malformed(SocketAddr),
    #[error(
        "the directory does not know key {key} (BADKEY): is the terminal registered, and is this its key file?"
    )]
    BadKey { key: String },
    #[error(
        "the directory rejected the signature of key {key} (BADSIG): the key was rotated or the key file is wrong; get the current key from the operator"
    )]
    BadSig { key: String },
    #[error(
        "the directory refused our time (BADTIME): this clock is {skew} seconds {direction} the directory's; fix the clock (NTP)"
    )]
    BadTime { skew: u64, direction: &'static str },
    #[error("the answer from {0} is not signed with our key; ignoring it")]
    NotAuthentic(SocketAddr),
}

impl ExchangeError {
    /// Errors a person must fix: retrying soon cannot help.
    pub fn needs_a_person(&self) -> bool {
        matches!(
            self,
            Self::BadKey { .. } | Self::BadSig { .. } | Self::BadTime { .. }
        )
    }
}

/// Sends `message` (signed with `key` if given) to `server`; returns the verified answer.
pub async fn exchange(
    server: SocketAddr,
    mut message: Message,
    key: Option<&TsigKey>,
    timeout: Duration,
) -> Result<Message, ExchangeError> {
    let signer = key
        .map(|k| k.signer(300))
        .transpose()
        .map_err(|_| ExchangeError::Malformed(server))?;
    let request_mac = match &signer {
        Some(signer) => {
            let (signature, _) = signer
                .sign_message(&message, zones::unix_now())
                .map_err(|_| ExchangeError::Malformed(server))?;
            let mac = signature.data.mac.clone();
            message.set_signature(signature);
            Some(mac)
        }
        None => None,
    };
    let bytes = message
        .to_vec()
        .map_err(|_| ExchangeError::Malformed(server))?;
    let id = message.metadata.id;
    let mut raw = tokio::time::timeout(timeout, udp(server, &bytes, id))
        .await
        .map_err(|_| ExchangeError::Timeout(server))??;
    let mut answer = Message::from_vec(&raw).map_err(|_| ExchangeError::Malformed(server))?;
    if answer.metadata.truncation {
        raw = tokio::time::timeout(timeout, tcp(server, &bytes))
            .await
            .map_err(|_| ExchangeError::Timeout(server))??;
        answer = Message::from_vec(&raw).map_err(|_| ExchangeError::Malformed(server))?;
    }
    if let (Some(signer), Some(mac), Some(key)) = (&signer, &request_mac, key) {
        check_signature(server, &raw, &answer, signer, mac, &key.name)?;
    }
    Ok(answer)
}

/// RFC 8945 §5.3 from the client's side: TSIG errors first, then the MAC.
fn check_signature(
    server: SocketAddr,
    raw: &[u8],
    answer: &Message,
    signer: &hickory_proto::rr::TSigner,
    request_mac: &[u8],
    key: &str,
) -> Result<(), ExchangeError> {
    let tsig = answer
        .signature()
        .ok_or(ExchangeError::NotAuthentic(server))?;
    match tsig.data.error {
        Some(TsigError::BadKey) => {
            return Err(ExchangeError::BadKey {
                key: key.to_owned(),
            });
        }
        Some(TsigError::BadSig) => {
            return Err(ExchangeError::BadSig {
                key: key.to_owned(),
            });
        }
        _ => {}
    }
    signer
        .verify_message_byte(raw, Some(request_mac), true)
        .map_err(|_| ExchangeError::NotAuthentic(server))?;
    if tsig.data.error == Some(TsigError::BadTime) {
        let mut server_time = [0u8; 8];
        if tsig.data.other.len() == 6 {
            server_time[2..].copy_from_slice(&tsig.data.other);
        }
        let theirs = u64::from_be_bytes(server_time);
        let ours = zones::unix_now();
        let direction = if ours > theirs { "ahead of" } else { "behind" };
        return Err(ExchangeError::BadTime {
            skew: ours.abs_diff(theirs),
            direction,
        });
    }
    Ok(())
}

async fn udp(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Vec<u8>, ExchangeError> {
    let io = |source| ExchangeError::Io { server, source };
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    socket.send(bytes).await.map_err(io)?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        // Ignore stray datagrams that do not answer this request.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return Ok(buf[..n].to_vec());
        }
    }
}

async fn tcp(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, ExchangeError> {
    let io = |source| ExchangeError::Io { server, source };
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    let len = u16::try_from(bytes.len()).map_err(|_| ExchangeError::Malformed(server))?;
    stream.write_all(&len.to_be_bytes()).await.map_err(io)?;
    stream.write_all(bytes).await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await.map_err(io)?;
    Ok(answer)
}
