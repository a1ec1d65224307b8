//! A response under construction: the [`Reply`] the handlers plan and
//! [`crate::pipeline::finish`] encodes.

use hickory_proto::op::{Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_server::server::Request;

/// The UDP payload size we advertise and send at most (the DNS Flag Day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The payload size an answer over UDP may have, for a requester that advertised `asked`
/// in its OPT (RFC 6891 §6.2.5: never below 512), and that our OPT advertises back.
#[inline]
pub fn udp_payload(asked: u16) -> u16 {
    asked.clamp(512, MAX_UDP_PAYLOAD)
}

/// A response under construction.
#[derive(Clone, Debug)]
pub struct Reply {
    pub metadata: Metadata,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// EDNS options to add to the response's OPT record (when the request had one).
    pub edns_options: Vec<EdnsOption>,
}

impl Reply {
    /// An empty response to `request` with the given RCODE.
    pub fn new(request: &Request, rcode: ResponseCode) -> Self {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = rcode;
        Self {
            metadata,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            edns_options: Vec::new(),
        }
    }

    /// An authoritative (AA) response to `request`.
    pub fn authoritative(request: &Request, rcode: ResponseCode) -> Self {
        let mut reply = Self::new(request, rcode);
        reply.metadata.authoritative = true;
        reply
    }
}

/// The EDNS option code of an Extended DNS Error (RFC 8914 §2).
pub const EXTENDED_ERROR: u16 = 15;
