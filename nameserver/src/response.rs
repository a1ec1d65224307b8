//! Building, signing and sending responses.
//!
//! A [`Reply`] holds the header and sections; [`send`] adds EDNS, truncates for UDP, signs
//! with TSIG when asked, and hands the message to hickory's response handle.
//!
//! Signing and truncation interact: the MAC must cover exactly the records sent. So a
//! signed UDP reply is first encoded within the size limit less the TSIG's size; if that
//! truncates, the records that fitted are read back and become the reply.

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tracing::debug;

use crate::tsig::ResponseSigning;

/// The UDP payload size we advertise and send at most (the DNS Flag Day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

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

    /// Adds an Extended DNS Error (RFC 8914) with `info_code` and no text; it goes out
    /// when the request had EDNS, as every option does.
    pub fn extended_error(&mut self, info_code: u16) {
        self.edns_options.push(EdnsOption::Unknown(
            EXTENDED_ERROR,
            info_code.to_be_bytes().to_vec(),
        ));
    }
}

/// The EDNS option code of an Extended DNS Error (RFC 8914 §2).
const EXTENDED_ERROR: u16 = 15;
/// RFC 8914 §4.15 "Not Ready": the server cannot answer yet (its zone is still loading).
pub const NOT_READY: u16 = 14;

/// The OPT record of the response: present when the request had one (RFC 6891 §6.1.1).
pub fn response_edns(request: &Request) -> Option<Edns> {
    let asked = request.edns.as_ref()?;
    let mut edns = Edns::new();
    edns.set_version(0);
    edns.set_max_payload(asked.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    // RFC 3225 §3: the DO bit is copied into the response.
    edns.set_dnssec_ok(asked.flags().dnssec_ok);
    Some(edns)
}

/// The response OPT with the reply's options added.
fn with_options(edns: Option<&Edns>, options: &[EdnsOption]) -> Option<Edns> {
    let mut edns = edns?.clone();
    for option in options {
        edns.options_mut().insert(option.clone());
    }
    Some(edns)
}

/// The largest message we may send to this request.
fn size_limit(request: &Request, edns: Option<&Edns>) -> usize {
    match request.protocol() {
        Protocol::Udp => edns.map_or(512, |e| usize::from(e.max_payload())),
        _ => usize::from(u16::MAX),
    }
}

/// Encodes `reply` without TSIG within `limit` bytes; returns the bytes and whether it truncated.
fn encode(
    request: &Request,
    reply: &Reply,
    edns: Option<&Edns>,
    limit: usize,
) -> Result<(Vec<u8>, bool), String> {
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(u16::try_from(limit).unwrap_or(u16::MAX));
    let message = build(request, reply, edns);
    let info = message
        .destructive_emit(&mut encoder)
        .map_err(|e| e.to_string())?;
    Ok((bytes, info.truncation))
}

fn build<'q, 'a>(
    request: &'q Request,
    reply: &'a Reply,
    edns: Option<&'q Edns>,
) -> hickory_server::zone_handler::MessageResponse<
    'q,
    'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
> {
    MessageResponseBuilder::new(&request.queries, edns).build(
        reply.metadata,
        &reply.answers,
        &reply.authorities,
        [],
        &reply.additionals,
    )
}

/// Replaces the reply's sections with those of a truncated encoding of it.
fn keep_what_fitted(reply: &mut Reply, truncated: &[u8]) -> Result<(), String> {
    let message = Message::from_vec(truncated).map_err(|e| e.to_string())?;
    reply.metadata.truncation = true;
    reply.answers = message.answers;
    reply.authorities = message.authorities;
    reply.additionals = message.additionals;
    Ok(())
}

/// Signs (if asked) and sends the reply.
pub async fn send<R: ResponseHandler>(
    request: &Request,
    mut reply: Reply,
    signing: &ResponseSigning,
    edns: Option<&Edns>,
    now: u64,
    mut handle: R,
) -> ResponseInfo {
    let edns = with_options(edns, &reply.edns_options);
    let edns = edns.as_ref();
    let signature = if signing.is_signed() {
        match sign(request, &mut reply, signing, edns, now) {
            Ok(signature) => signature,
            Err(error) => {
                debug!(%error, "cannot sign response");
                reply = Reply::new(request, ResponseCode::ServFail);
                None
            }
        }
    } else {
        None
    };
    let mut message = build(request, &reply, edns);
    if let Some(signature) = signature {
        message.set_signature(signature);
    }
    match handle.send_response(message).await {
        Ok(info) => info,
        Err(error) => {
            debug!(%error, "cannot send response");
            ResponseInfo::from(Header {
                metadata: reply.metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// Fits the reply to the size limit less the TSIG, and computes the TSIG record.
fn sign(
    request: &Request,
    reply: &mut Reply,
    signing: &ResponseSigning,
    edns: Option<&Edns>,
    now: u64,
) -> Result<Option<Box<hickory_proto::rr::Record<hickory_proto::rr::rdata::TSIG>>>, String> {
    let limit = size_limit(request, edns).saturating_sub(signing.overhead());
    let (mut tbs, truncated) = encode(request, reply, edns, limit)?;
    if truncated {
        keep_what_fitted(reply, &tbs)?;
        tbs = encode(request, reply, edns, limit)?.0;
    }
    signing.sign(&tbs, reply.metadata.id, now)
}

/// Sends a multi-message answer (a zone transfer) over TCP, each message signed: the first
/// as an ordinary response, the others chained to the one before (RFC 8945 §5.3.1).
/// Returns the info of the last message and the bytes sent.
pub async fn send_stream<R: ResponseHandler>(
    request: &Request,
    replies: Vec<Reply>,
    signed: &crate::tsig::SignedRequest,
    edns: Option<&Edns>,
    now: u64,
    mut handle: R,
) -> Result<(ResponseInfo, usize), String> {
    let first = ResponseSigning::Signed {
        request: signed.clone(),
        error: None,
    };
    let mut prior_mac: Vec<u8> = Vec::new();
    let mut info = None;
    let mut bytes = 0;
    for (i, reply) in replies.iter().enumerate() {
        let (tbs, _) = encode(request, reply, edns, usize::from(u16::MAX))?;
        bytes += tbs.len();
        let signature = if i == 0 {
            first
                .sign(&tbs, reply.metadata.id, now)?
                .ok_or("no signature")?
        } else {
            crate::tsig::sign_subsequent(signed, &prior_mac, &tbs, reply.metadata.id, now)?
        };
        prior_mac.clone_from(&signature.data.mac);
        info = Some(send_signed(request, reply, &signature, edns, &mut handle).await?);
    }
    info.map(|i| (i, bytes))
        .ok_or_else(|| "nothing to send".to_owned())
}

/// Sends one signed message of a stream; our TCP responder writes it before returning,
/// so a transfer streams with the socket's backpressure.
async fn send_signed<R: ResponseHandler>(
    request: &Request,
    reply: &Reply,
    signature: &hickory_proto::rr::Record<hickory_proto::rr::rdata::TSIG>,
    edns: Option<&Edns>,
    handle: &mut R,
) -> Result<ResponseInfo, String> {
    let mut message = build(request, reply, edns);
    message.set_signature(Box::new(signature.clone()));
    handle
        .send_response(message)
        .await
        .map_err(|e| e.to_string())
}

/// Encodes a response in at most `max_size` bytes (truncating with TC beyond it): the one
/// place the listeners and test sinks turn a `MessageResponse` into wire bytes.
pub fn encode_response<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    max_size: u16,
) -> Result<(ResponseInfo, Vec<u8>), NetError> {
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(max_size);
    let info = response
        .destructive_emit(&mut encoder)
        .map_err(|e| NetError::from(e.to_string()))?;
    Ok((info, bytes))
}

/// FORMERR for a message whose header could be read but not the rest (RFC 1035 §4.1.1):
/// a bare header, QR set, the request's id and opcode.
pub fn formerr_header(request: &hickory_proto::op::Header) -> Vec<u8> {
    use hickory_proto::serialize::binary::BinEncodable;
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::FormErr;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    header.to_bytes().unwrap_or_default()
}
