//! Stage 1: the bytes become one kind of request, or are not answered at all.

use std::net::SocketAddr;

use hickory_proto::op::{Header, MessageType, OpCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;

use crate::metrics::Transport;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A standard query (the fast path's kind is tried before decoding, on UDP).
    Query,
    /// AXFR or IXFR.
    Transfer(RecordType),
    /// RFC 2136 UPDATE.
    Update,
    /// An UPDATE that enrolls a terminal: its update section adds a record at
    /// `_enroll.<zone>` ([`zones::enroll`]).
    Enroll,
    /// Any other opcode (NOTIMP).
    Other,
}

/// A decoded request on its way through the stages.
#[derive(Debug)]
pub struct InFlight<'a> {
    pub request: &'a Request,
    pub kind: Kind,
    pub transport: Transport,
    /// Unix seconds when it arrived.
    pub now: u64,
}

/// What the bytes are.
#[derive(Debug)]
pub enum Classified {
    /// A request of this kind.
    Request(Box<Request>, Kind),
    /// A header could be read, the rest could not: FORMERR with a bare header.
    Undecodable(Header),
    /// No header, or a response (QR set): never answered.
    Ignored,
}

/// Decodes `bytes` from `src` and names its kind.
pub fn classify(bytes: Vec<u8>, src: SocketAddr, transport: Transport) -> Classified {
    let mut decoder = BinDecoder::new(&bytes);
    let Ok(header) = Header::read(&mut decoder) else {
        return Classified::Ignored;
    };
    if header.metadata.message_type == MessageType::Response {
        return Classified::Ignored;
    }
    let protocol = match transport {
        Transport::Udp => Protocol::Udp,
        Transport::Tcp => Protocol::Tcp,
    };
    let Ok(request) = Request::from_bytes(bytes, src, protocol) else {
        return Classified::Undecodable(header);
    };
    let kind = kind_of(&request);
    Classified::Request(Box::new(request), kind)
}

fn kind_of(request: &Request) -> Kind {
    match request.metadata.op_code {
        OpCode::Query => request
            .queries
            .queries()
            .iter()
            .find_map(|q| {
                matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR)
                    .then_some(Kind::Transfer(q.query_type()))
            })
            .unwrap_or(Kind::Query),
        OpCode::Update if is_enrollment(request) => Kind::Enroll,
        OpCode::Update => Kind::Update,
        _ => Kind::Other,
    }
}

/// An UPDATE whose first update-section record is owned by `_enroll.` under some zone.
fn is_enrollment(request: &Request) -> bool {
    request.authorities.first().is_some_and(|record| {
        let name = &record.name;
        name.num_labels() > 1
            && name
                .iter()
                .next()
                .is_some_and(|label| label.eq_ignore_ascii_case(zones::enroll::LABEL.as_bytes()))
    })
}

/// True when the opcode in a datagram's header is UPDATE: it waits on the disk, so the UDP
/// listener gives it a task of its own.
pub fn is_update(message: &[u8]) -> bool {
    message.len() > 2 && OpCode::from_u8((message[2] >> 3) & 0x0f) == OpCode::Update
}
