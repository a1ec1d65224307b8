//! Calling (M2): look a code up (M22), connect to its address by TCP, and pipe stdin and
//! stdout through the connection, like `nc`.
//!
//! Exit codes (see [`DialError::exit_code`]): 3 no such code, 4 terminal offline,
//! 5 connection failed, 6 directory unreachable or refused the lookup, 7 the answer does
//! not validate (with a trust anchor), 1 anything else.
//!
//! With a trust anchor, the lookups ask for DNSSEC records and an address is dialled only
//! when its RRset validates from the zone's keys ([`crate::validate`]); "no such code" and
//! "offline" are said only when the zone's signed denial proves them ([`crate::denial`]).
//! (A signed zone holds no name for a registered code without addresses, so with a trust
//! anchor such a code is "no such code".)

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use zones::identity::CallingCode;
use zones::key::TsigKey;

use crate::client::query_message;
use crate::denial::{self, Denial};
use crate::exchange::{ExchangeError, exchange};
use crate::tls::Channel;
use crate::validate::{TrustAnchor, ValidationError, validate_rrset};

/// Why a call did not connect.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("no such code: {0} is not registered in the directory")]
    NoSuchCode(String),
    #[error("terminal offline: {0} is registered but has no address now")]
    Offline(String),
    #[error("connection refused or failed: {0}")]
    Connect(String),
    #[error("the directory refused the lookup ({0}); with --lookups signed, give --key-file")]
    Refused(ResponseCode),
    #[error("the directory could not be asked: {0}")]
    Directory(#[from] ExchangeError),
    #[error("i/o error while connected: {0}")]
    Io(#[from] std::io::Error),
    #[error("refusing the answer: {0}")]
    Bogus(#[from] ValidationError),
}

impl DialError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoSuchCode(_) => 3,
            Self::Offline(_) => 4,
            Self::Connect(_) => 5,
            Self::Refused(_) | Self::Directory(_) => 6,
            Self::Io(_) => 1,
            Self::Bogus(_) => 7,
        }
    }
}

/// What to call and how to ask the directory.
#[derive(Debug, Clone)]
pub struct Call {
    pub servers: Vec<SocketAddr>,
    pub zone: Name,
    pub code: CallingCode,
    pub port: u16,
    /// Signs the lookups (needed when the directory answers only signed lookups).
    pub key: Option<TsigKey>,
    pub timeout: Duration,
    /// UDP and TCP, or DNS over TLS to a pinned certificate.
    pub channel: Channel,
    /// Validate the answers from this anchor (DNSSEC); `None`: take them as they come.
    pub trust: Option<TrustAnchor>,
}

/// Looks the code up: IPv6 addresses first, then IPv4.
pub async fn resolve(call: &Call) -> Result<Vec<IpAddr>, DialError> {
    let owner = Name::from_ascii(call.code.as_str())
        .and_then(|l| l.append_domain(&call.zone))
        .map_err(|_| DialError::NoSuchCode(call.code.to_string()))?;
    let keys = match &call.trust {
        Some(anchor) => {
            let answer = ask(
                call,
                dnssec_query(anchor.zone().clone(), RecordType::DNSKEY),
            )
            .await?;
            Some(anchor.validate_keys(&answer, zones::unix_now())?)
        }
        None => None,
    };
    let mut addresses = Vec::new();
    for rtype in [RecordType::AAAA, RecordType::A] {
        let question = match keys {
            Some(_) => dnssec_query(owner.clone(), rtype),
            None => query_message(owner.clone(), rtype),
        };
        let answer = ask(call, question).await?;
        let no_name = match answer.metadata.response_code {
            ResponseCode::NoError => false,
            ResponseCode::NXDomain => true,
            rcode => return Err(DialError::Refused(rcode)),
        };
        let found: Vec<IpAddr> = owned_addresses(&answer, &owner).collect();
        let no_name = match &keys {
            None => no_name,
            // A negative answer counts only once proven, and an address once signed.
            Some(keys) if no_name || found.is_empty() => {
                let now = zones::unix_now();
                denial::prove(keys, &call.zone, &answer, &owner, rtype, now)? == Denial::NoName
            }
            Some(keys) => {
                validate_rrset(keys, &call.zone, &answer, &owner, rtype, zones::unix_now())?;
                false
            }
        };
        if no_name {
            return Err(DialError::NoSuchCode(owner.to_string()));
        }
        addresses.extend(found);
    }
    if addresses.is_empty() {
        return Err(DialError::Offline(owner.to_string()));
    }
    Ok(addresses)
}

/// A query with the DO bit (RFC 3225), for DNSSEC records.
fn dnssec_query(name: Name, rtype: RecordType) -> hickory_proto::op::Message {
    let mut message = query_message(name, rtype);
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(true);
    message.edns = Some(edns);
    message
}

/// The A and AAAA records of `owner` in an answer: a record with any other owner name is
/// not the directory's word about this code, and is never dialled.
fn owned_addresses<'a>(
    answer: &'a hickory_proto::op::Message,
    owner: &'a Name,
) -> impl Iterator<Item = IpAddr> + 'a {
    let owner = LowerName::new(owner);
    answer
        .answers
        .iter()
        .filter(move |r| LowerName::new(&r.name) == owner)
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
}

async fn ask(
    call: &Call,
    message: hickory_proto::op::Message,
) -> Result<hickory_proto::op::Message, DialError> {
    let mut last = None;
    for server in &call.servers {
        match exchange(
            *server,
            message.clone(),
            call.key.as_ref(),
            call.timeout,
            &call.channel,
        )
        .await
        {
            Ok(answer) => return Ok(answer),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or(
        DialError::Refused(ResponseCode::ServFail),
        DialError::Directory,
    ))
}

/// Connects to the first address that accepts (M2's connection request).
pub async fn connect(
    addresses: &[IpAddr],
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, DialError> {
    let mut failures = Vec::new();
    for ip in addresses {
        let target = SocketAddr::new(*ip, port);
        match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => failures.push(format!("{target}: {e}")),
            Err(_) => failures.push(format!("{target}: timed out")),
        }
    }
    Err(DialError::Connect(failures.join("; ")))
}

/// Looks up, connects, and pipes stdin to the peer and the peer to stdout until both end.
pub async fn dial(call: &Call) -> Result<(), DialError> {
    let addresses = resolve(call).await?;
    let stream = connect(&addresses, call.port, call.timeout).await?;
    let (mut from_peer, mut to_peer) = stream.into_split();
    let upload = async {
        tokio::io::copy(&mut tokio::io::stdin(), &mut to_peer).await?;
        to_peer.shutdown().await
    };
    let download = async {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut from_peer, &mut stdout).await?;
        stdout.flush().await
    };
    let (up, down) = tokio::join!(upload, download);
    up?;
    down?;
    Ok(())
}
