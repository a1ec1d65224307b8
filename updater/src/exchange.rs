//! One DNS request and its answer, over UDP with TCP when truncated, or over TLS
//! ([`crate::tls`]), optionally TSIG-signed.
//!
//! The updater builds and signs its messages itself (hickory-proto's `TSigner`) rather than
//! through hickory-net's client, because it must tell the user *which* TSIG error the
//! directory returned: hickory-net's verifier turns an unsigned BADKEY or BADSIG answer into
//! one generic error, and it does not expose BADTIME's server time.
//!
//! BADKEY and BADSIG answers are unsigned (the server cannot sign with a key it does not
//! know or that does not verify), so anyone on the path could forge one. An unsigned TSIG
//! error received over UDP is therefore not taken as the directory's word: the request is
//! signed afresh and asked again over TCP, which a stranger off the path cannot answer.
//! Only a TSIG error that comes back over TCP is reported as one a person must fix.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::tsig::TsigError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use zones::key::TsigKey;

use crate::tls::{Channel, Pinned};

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
    #[error(
        "the directory refused the update as not fresh (BADTIME with clocks that agree): it has a newer update from this key, or saw this one before; retrying with a new signature"
    )]
    NotFresh,
    #[error("the answer from {0} is not signed with our key; ignoring it")]
    NotAuthentic(SocketAddr),
    /// An answer to a signed request with no TSIG at all: the directory refused before it
    /// looked at the key (a failure budget). Only taken from TCP.
    #[error("the directory at {server} answered {rcode} without a signature: {reason}")]
    Unsigned {
        server: SocketAddr,
        rcode: hickory_proto::op::ResponseCode,
        reason: String,
    },
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

/// Sends `message` (signed with `key` if given) to `server` over `channel`; returns the
/// verified answer.
pub async fn exchange(
    server: SocketAddr,
    message: Message,
    key: Option<&TsigKey>,
    timeout: Duration,
    channel: &Channel,
) -> Result<Message, ExchangeError> {
    if let Channel::Tls(pinned) = channel {
        // One connection, authenticated by the pin: a TSIG error over it is the directory's.
        return attempt(server, message, key, timeout, Transport::Tls(pinned)).await;
    }
    match attempt(server, message.clone(), key, timeout, Transport::Udp).await {
        Err(
            e @ (ExchangeError::BadKey { .. }
            | ExchangeError::BadSig { .. }
            | ExchangeError::Unsigned { .. }),
        ) => {
            tracing::debug!(%server, error = %e, "unsigned TSIG error over UDP; asking again over TCP");
            attempt(server, message, key, timeout, Transport::Tcp).await
        }
        other => other,
    }
}

/// How a request is sent first.
#[derive(Clone, Copy, Debug)]
enum Transport<'a> {
    /// UDP, and TCP when the answer is truncated.
    Udp,
    Tcp,
    Tls(&'a Pinned),
}

/// One signed request and its verified answer.
async fn attempt(
    server: SocketAddr,
    mut message: Message,
    key: Option<&TsigKey>,
    timeout: Duration,
    transport: Transport<'_>,
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
    let over_tcp = || async {
        tokio::time::timeout(timeout, tcp(server, &bytes))
            .await
            .map_err(|_| ExchangeError::Timeout(server))?
    };
    let raw = match transport {
        Transport::Tcp => over_tcp().await?,
        Transport::Tls(pinned) => tokio::time::timeout(timeout, tls(pinned, server, &bytes))
            .await
            .map_err(|_| ExchangeError::Timeout(server))??,
        Transport::Udp => {
            let id = message.metadata.id;
            let raw = tokio::time::timeout(timeout, udp(server, &bytes, id))
                .await
                .map_err(|_| ExchangeError::Timeout(server))??;
            let answer = Message::from_vec(&raw).map_err(|_| ExchangeError::Malformed(server))?;
            if answer.metadata.truncation {
                over_tcp().await?
            } else {
                raw
            }
        }
    };
    let answer = Message::from_vec(&raw).map_err(|_| ExchangeError::Malformed(server))?;
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
    let Some(tsig) = answer.signature() else {
        return Err(ExchangeError::Unsigned {
            server,
            rcode: answer.metadata.response_code,
            reason: extended_error(answer),
        });
    };
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
        return Err(badtime(zones::unix_now(), theirs));
    }
    Ok(())
}

/// The EXTRA-TEXT of an answer's Extended DNS Error (RFC 8914), or a word for its absence.
pub fn extended_error(answer: &Message) -> String {
    const EXTENDED_ERROR: u16 = 15;
    let text = answer.edns.as_ref().and_then(|edns| {
        edns.options()
            .as_ref()
            .iter()
            .find_map(|(_, option)| match option {
                hickory_proto::rr::rdata::opt::EdnsOption::Unknown(EXTENDED_ERROR, data)
                    if data.len() > 2 =>
                {
                    Some(String::from_utf8_lossy(&data[2..]).into_owned())
                }
                _ => None,
            })
    });
    text.unwrap_or_else(|| "no reason given".into())
}

/// Largest clock difference still taken as clocks that agree: a BADTIME then means the
/// directory refused the message as a replay or as older than its last one, which a new
/// signature a moment later cures; a larger one is a clock a person must fix.
const CLOCKS_AGREE: u64 = 5;

/// What a verified BADTIME means, given our time and the directory's.
fn badtime(ours: u64, theirs: u64) -> ExchangeError {
    let skew = ours.abs_diff(theirs);
    if skew <= CLOCKS_AGREE {
        return ExchangeError::NotFresh;
    }
    let direction = if ours > theirs { "ahead of" } else { "behind" };
    ExchangeError::BadTime { skew, direction }
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
    let stream = TcpStream::connect(server).await.map_err(io)?;
    framed(server, stream, bytes).await
}

async fn tls(pinned: &Pinned, server: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, ExchangeError> {
    let io = |source| ExchangeError::Io { server, source };
    let stream = pinned.connect(server).await.map_err(io)?;
    framed(server, stream, bytes).await
}

/// One request and its answer over a stream, each with its length (RFC 1035 §4.2.2).
async fn framed<S>(
    server: SocketAddr,
    mut stream: S,
    bytes: &[u8],
) -> Result<Vec<u8>, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = |source| ExchangeError::Io { server, source };
    let len = u16::try_from(bytes.len()).map_err(|_| ExchangeError::Malformed(server))?;
    stream.write_all(&len.to_be_bytes()).await.map_err(io)?;
    stream.write_all(bytes).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await.map_err(io)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a BADTIME refusal for freshness ("0 seconds behind") was taken for a
    /// clock a person must fix, and the updater waited an hour.
    #[test]
    fn badtime_with_clocks_that_agree_is_retried_soon() {
        let stale = badtime(1000, 1000);
        assert!(matches!(stale, ExchangeError::NotFresh), "{stale}");
        assert!(!stale.needs_a_person());
        let clock = badtime(1000, 1400);
        assert!(
            matches!(clock, ExchangeError::BadTime { skew: 400, .. }),
            "{clock}"
        );
        assert!(clock.needs_a_person());
    }
}
