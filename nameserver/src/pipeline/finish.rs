//! The last stage: what was decided becomes bytes. A refusal becomes its answer here and
//! nowhere else; then the OPT with its options (EDNS, COOKIE, Extended DNS Error), the
//! slip RRL asked for, truncation to what the asker can receive, and the TSIG.
//!
//! Signing and truncation interact: the MAC must cover exactly the records sent. So a
//! signed UDP reply is first encoded within the size limit less the TSIG's size; if that
//! truncates, the records that fitted are read back and become the reply.

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::serialize::binary::{BinEncodable as _, BinEncoder};
use hickory_server::server::Request;
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tracing::debug;

use super::authenticate::Principal;
use crate::metrics::Transport;
use crate::ratelimit::Verdict;
use crate::refusal::Refusal;
use crate::response::{EXTENDED_ERROR, Reply};
use crate::tsig::{ResponseSigning, SignedRequest};

/// The reply that answers `refusal`.
pub fn refused(request: &Request, refusal: &Refusal) -> Reply {
    let mut reply = Reply::new(request, refusal.rcode());
    if let Some((code, text)) = refusal.extended_error() {
        // RFC 8914 §2: INFO-CODE, then EXTRA-TEXT in UTF-8.
        let mut data = code.to_be_bytes().to_vec();
        data.extend_from_slice(text.unwrap_or_default().as_bytes());
        reply
            .edns_options
            .push(EdnsOption::Unknown(EXTENDED_ERROR, data));
    }
    reply
}

/// How the answer to `refusal` is signed, given how the request's was (`signing`):
/// a verified key's stale message is signed with BADTIME (RFC 8945 §5.2.3); a token that
/// verified but may not enroll gets the unsigned BADKEY every token failure gets.
pub fn refusal_signing(
    refusal: &Refusal,
    principal: Option<&Principal>,
    signing: &ResponseSigning,
    request_id: u16,
    now: u64,
) -> ResponseSigning {
    match (refusal.tsig_error(), principal) {
        (
            Some(TsigError::BadTime),
            Some(Principal::Terminal(_, signed) | Principal::Enrollee(_, signed)),
        ) => ResponseSigning::stale(signed),
        (Some(TsigError::BadKey), Some(Principal::Enrollee(_, signed))) => {
            let signer = &signed.signer;
            let (name, algorithm) = (signer.signer_name(), signer.algorithm());
            ResponseSigning::bad_key(name.clone(), algorithm.clone(), request_id, now)
        }
        _ => signing.clone(),
    }
}

/// The answer to a message whose header could be read but not the rest (RFC 1035 §4.1.1):
/// a bare header, QR set, the request's id and opcode.
pub fn undecodable(request: &Header) -> Vec<u8> {
    header_only(request, &Refusal::Undecodable)
}

/// The answer to `request` refused for `refusal`: its header alone, with the refusal's RCODE.
pub fn header_only(request: &Header, refusal: &Refusal) -> Vec<u8> {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = refusal.rcode();
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    header.to_bytes().unwrap_or_default()
}

/// The reply RRL lets out: whole, or an empty truncated slip (a real client retries over
/// TCP). `None`: dropped.
pub fn limited(request: &Request, reply: Reply, verdict: Verdict) -> Option<Reply> {
    match verdict {
        Verdict::Answer => Some(reply),
        Verdict::Slip => {
            // The answer without its records: its RCODE and AA, and TC.
            let mut slip = Reply::new(request, reply.metadata.response_code);
            slip.metadata.authoritative = reply.metadata.authoritative;
            slip.metadata.truncation = true;
            Some(slip)
        }
        Verdict::Drop => None,
    }
}

/// The bytes of `reply` to `request`: OPT with its options, within what the asker can
/// receive over `transport`, signed as `signing` says. A reply that cannot be signed
/// becomes SERVFAIL.
pub fn encode(
    request: &Request,
    mut reply: Reply,
    signing: &ResponseSigning,
    opt: Option<&Edns>,
    transport: Transport,
    now: u64,
) -> (Vec<u8>, ResponseCode) {
    let opt = with_options(opt, &reply.edns_options);
    let opt = opt.as_ref();
    let limit = match transport {
        // RFC 1035 §4.2.1 and RFC 6891: 512 bytes without EDNS, else the advertised size.
        Transport::Udp => opt.map_or(512, |e| usize::from(e.max_payload().max(512))),
        Transport::Tcp => usize::from(u16::MAX),
    };
    let signature = if signing.is_signed() {
        match sign(request, &mut reply, signing, opt, limit, now) {
            Ok(signature) => signature,
            Err(error) => {
                let refusal = Refusal::AnswerFailed(error);
                debug!(reason = %refusal, "response");
                reply = refused(request, &refusal);
                None
            }
        }
    } else {
        None
    };
    let rcode = reply.metadata.response_code;
    match emit(request, &reply, opt, signature, limit) {
        Ok((bytes, _)) => (bytes, rcode),
        Err(error) => {
            let refusal = Refusal::AnswerFailed(error);
            debug!(reason = %refusal, "response");
            let bytes = emit(request, &refused(request, &refusal), None, None, 512)
                .map(|(b, _)| b)
                .unwrap_or_default();
            (bytes, refusal.rcode())
        }
    }
}

/// Signs the messages of a multi-message answer (a zone transfer) over TCP one by one, as
/// they are sent: the first as an ordinary response, the others chained to the one before
/// (RFC 8945 §5.3.1).
#[derive(Debug)]
pub struct StreamSigner<'r> {
    request: &'r Request,
    signed: &'r SignedRequest,
    opt: Option<&'r Edns>,
    now: u64,
    prior_mac: Option<Vec<u8>>,
}

impl<'r> StreamSigner<'r> {
    pub fn new(
        request: &'r Request,
        signed: &'r SignedRequest,
        opt: Option<&'r Edns>,
        now: u64,
    ) -> Self {
        Self {
            request,
            signed,
            opt,
            now,
            prior_mac: None,
        }
    }

    /// The bytes of the next message.
    pub fn next(&mut self, reply: &Reply) -> Result<Vec<u8>, String> {
        let max = usize::from(u16::MAX);
        let (tbs, _) = emit(self.request, reply, self.opt, None, max)?;
        let (id, now) = (reply.metadata.id, self.now);
        let signature = match &self.prior_mac {
            None => ResponseSigning::Signed {
                request: self.signed.clone(),
                error: None,
            }
            .sign(&tbs, id, now)?
            .ok_or("no signature")?,
            Some(prior) => crate::tsig::sign_subsequent(self.signed, prior, &tbs, id, now)?,
        };
        self.prior_mac = Some(signature.data.mac.clone());
        Ok(emit(self.request, reply, self.opt, Some(signature), max)?.0)
    }
}

/// The response OPT with the reply's options added.
fn with_options(edns: Option<&Edns>, options: &[EdnsOption]) -> Option<Edns> {
    let mut edns = edns?.clone();
    for option in options {
        edns.options_mut().insert(option.clone());
    }
    Some(edns)
}

/// Encodes `reply` within `limit` bytes; returns the bytes and whether it truncated.
fn emit(
    request: &Request,
    reply: &Reply,
    opt: Option<&Edns>,
    signature: Option<Box<Record<TSIG>>>,
    limit: usize,
) -> Result<(Vec<u8>, bool), String> {
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(u16::try_from(limit).unwrap_or(u16::MAX));
    let mut message = build(request, reply, opt);
    if let Some(signature) = signature {
        message.set_signature(signature);
    }
    let info = message
        .destructive_emit(&mut encoder)
        .map_err(|e| e.to_string())?;
    Ok((bytes, info.truncation))
}

fn build<'q, 'a>(
    request: &'q Request,
    reply: &'a Reply,
    opt: Option<&'q Edns>,
) -> MessageResponse<
    'q,
    'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
> {
    MessageResponseBuilder::new(&request.queries, opt).build(
        reply.metadata,
        &reply.answers,
        &reply.authorities,
        [],
        &reply.additionals,
    )
}

/// Fits the reply to the size limit less the TSIG, and computes the TSIG record.
fn sign(
    request: &Request,
    reply: &mut Reply,
    signing: &ResponseSigning,
    opt: Option<&Edns>,
    limit: usize,
    now: u64,
) -> Result<Option<Box<Record<TSIG>>>, String> {
    let limit = limit.saturating_sub(signing.overhead());
    let (mut tbs, truncated) = emit(request, reply, opt, None, limit)?;
    if truncated {
        keep_what_fitted(reply, &tbs)?;
        tbs = emit(request, reply, opt, None, limit)?.0;
    }
    signing.sign(&tbs, reply.metadata.id, now)
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
