//! One request pipeline for every transport: bytes in, bytes out, each decision made once,
//! in one order.
//!
//! ```text
//!  bytes ─▶ classify      header, opcode, question → Kind (query, transfer, update, other);
//!                         responses and headerless bytes are never answered
//!        ─▶ edns          response OPT and COOKIE; BADVERS, malformed COOKIE
//!        ─▶ authenticate  TSIG checked once → Principal (anonymous, terminal, transfer key,
//!                         enrollment token); an enrollment over its failure budget is
//!                         refused before its TSIG is looked at
//!        ─▶ admit         RRL verdict (UDP, unless proven); who may ask what; update budget
//!        ─▶ handle_*      query → Reply; transfer → SOA or records; update → directory;
//!                         enroll → directory (key agreement), TXT answer
//!        ─▶ finish        a Refusal becomes its answer; slip; OPT, EDE; truncation; TSIG
//!                         ─▶ Sink; account: the metric and the log line
//! ```
//!
//! On UDP, [`Pipeline::answer_datagram`] first offers the bytes to the wire-level fast path
//! ([`crate::fast`]), which answers the common queries without decoding; what it declines
//! comes back as [`Outcome::Deferred`] and takes [`Pipeline::answer`]. `udp.rs` and `tcp.rs`
//! only frame bytes; the fuzzer and the tests call the pipeline directly.

pub mod account;
pub mod admit;
pub mod authenticate;
pub mod classify;
pub mod edns;
pub mod finish;
pub mod handle_enroll;
pub mod handle_query;
pub mod handle_transfer;
pub mod handle_update;
pub mod policy;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tracing::debug;
use zones::Directory;

use crate::cookie::CookieSecret;
use crate::fast::Fast;
use crate::metrics::{Metrics, Transport};
use crate::ratelimit::{EnrollFailures, Verdict};
use crate::refusal::Refusal;
use crate::response::Reply;
use crate::tsig::ResponseSigning;
use account::Account;
use admit::Permit;
use authenticate::Principal;
use classify::{Classified, InFlight, Kind};
use handle_transfer::Transfer;
use policy::Live;
pub use policy::Policy;

/// What became of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// One answer was sent.
    Sent,
    /// Not answered: RRL dropped it, or it was a response or had no header.
    Dropped,
    /// A zone transfer: this many messages were sent.
    Stream(usize),
    /// Not answered yet: the fast path declined it; [`Pipeline::answer`] will.
    Deferred,
    /// The sink failed: the connection is finished.
    Broken,
}

/// Where the answers go: a datagram, a TCP connection, a test's buffer.
#[async_trait::async_trait]
pub trait Sink: Send {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

/// A sink that keeps every message, for the tests and the fuzzer.
#[derive(Debug, Default)]
pub struct Collected(pub Vec<Vec<u8>>);

#[async_trait::async_trait]
impl Sink for Collected {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.push(bytes.to_vec());
        Ok(())
    }
}

/// Answers queries, transfers and updates for one zone.
#[derive(Clone, Debug)]
pub struct Pipeline {
    directory: Directory,
    /// What a reload replaces; each request reads it once, without a lock.
    live: Arc<ArcSwap<Live>>,
    cookies: Arc<CookieSecret>,
    /// What is counted for `--metrics`; `None`: nothing is.
    metrics: Option<Arc<Metrics>>,
    /// Failed enrollments, per source prefix and per token.
    failures: Arc<EnrollFailures>,
    /// A cluster's follower hands UPDATEs to the leader through it; `None`: no cluster.
    relay: Option<Arc<dyn crate::relay::Relay>>,
}

impl Pipeline {
    pub fn new(directory: Directory, policy: Policy) -> Self {
        let live = Live::new(&directory, policy, None);
        Self {
            directory,
            live: Arc::new(ArcSwap::from_pointee(live)),
            cookies: Arc::new(CookieSecret::generate()),
            metrics: None,
            failures: Arc::default(),
            relay: None,
        }
    }

    /// Hands every UPDATE to a cluster's leader through `relay` while this node is not it.
    pub fn with_relay(mut self, relay: Option<Arc<dyn crate::relay::Relay>>) -> Self {
        self.relay = relay;
        self
    }

    /// Puts `policy` in force for every request from now on (a reload), with the fast
    /// path rebuilt from the directory's zone as it is now.
    pub fn reload(&self, policy: Policy) {
        let live = Live::new(&self.directory, policy, Some(&self.live.load()));
        self.live.store(Arc::new(live));
    }

    /// Counts every request into `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The counters, when metrics are on.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_deref()
    }

    /// Where what became of a request is counted and logged.
    fn account(&self) -> Account<'_> {
        Account {
            metrics: self.metrics.as_deref(),
        }
    }

    /// The fast path's answer to a datagram, into `out`, counted in the worker's `shard`;
    /// [`Outcome::Deferred`] when the full path must answer it.
    pub fn answer_datagram(
        &self,
        bytes: &[u8],
        src: IpAddr,
        shard: usize,
        out: &mut Vec<u8>,
    ) -> Outcome {
        match self.answer_fast(bytes, src, out) {
            Fast::Answered { qtype } => {
                if let Some(m) = &self.metrics {
                    let rcode = out.get(3).map_or(0, |b| u16::from(b & 0x0f));
                    m.query(shard, Transport::Udp, qtype, rcode);
                }
                Outcome::Sent
            }
            Fast::Dropped => Outcome::Dropped,
            Fast::Declined => Outcome::Deferred,
        }
    }

    /// The wire-level fast path alone ([`crate::fast`]): `Declined` sends the request down
    /// the full path.
    pub fn answer_fast(&self, request: &[u8], src: IpAddr, out: &mut Vec<u8>) -> Fast {
        let live = self.live.load();
        // The fast path answers only anonymous queries, so only where they are allowed.
        if admit::allowed(&live, Kind::Query, &Principal::Anonymous).is_err() {
            return Fast::Declined;
        }
        let fast = &live.fast;
        let view = self.directory.view();
        let metrics = self.metrics.as_deref();
        let rate_limit = |proven| admit::rate(&live, metrics, Transport::Udp, proven, src);
        let now = zones::unix_now();
        fast.answer(request, &view, now, src, &self.cookies, rate_limit, out)
    }

    /// Runs `bytes` from `src` through every stage and sends what comes out to `sink`.
    pub async fn answer(
        &self,
        bytes: Vec<u8>,
        src: SocketAddr,
        transport: Transport,
        sink: &mut impl Sink,
    ) -> Outcome {
        if let Some(relay) = self
            .relay
            .as_deref()
            .filter(|r| is_update(&bytes) && !r.is_leader())
        {
            return relayed(relay, bytes, src, transport, sink).await;
        }
        self.answer_here(bytes, src, transport, sink).await
    }

    /// [`Pipeline::answer`] on this node, never relayed (a cluster's leader answering what
    /// a follower relayed).
    pub async fn answer_here(
        &self,
        bytes: Vec<u8>,
        src: SocketAddr,
        transport: Transport,
        sink: &mut impl Sink,
    ) -> Outcome {
        let now = zones::unix_now();
        let live = self.live.load_full();
        let metrics = self.metrics.as_deref();
        let (request, kind) = match classify::classify(bytes, src, transport) {
            Classified::Request(request, kind) => (request, kind),
            Classified::Ignored => return Outcome::Dropped,
            Classified::Undecodable(header) => {
                // Under RRL like every other answer; a slip would be no smaller than this.
                if admit::rate(&live, metrics, transport, false, src.ip()) == Verdict::Drop {
                    return Outcome::Dropped;
                }
                if let Some(m) = metrics {
                    m.query_answered(transport, RecordType::NULL, Refusal::Undecodable.rcode());
                }
                return send(sink, &finish::undecodable(&header)).await;
            }
        };
        let flight = InFlight {
            request: &request,
            kind,
            transport,
            now,
        };
        let (edns, edns_verdict) = edns::read(&request, &self.cookies, now);
        let token = (kind == Kind::Enroll).then(|| self.token_named(&request));
        let token = token.flatten();
        let over_budget = kind == Kind::Enroll
            && !self
                .failures
                .allows(src.ip(), token.as_deref(), Instant::now());
        let (signing, principal) = match edns_verdict {
            Ok(()) if over_budget => (ResponseSigning::None, Err(Refusal::EnrollLimited)),
            Ok(()) => authenticate::authenticate(
                &request,
                kind,
                &self.directory,
                &live.policy.transfer_keys,
                now,
            ),
            Err(refusal) => (ResponseSigning::None, Err(refusal)),
        };
        if matches!(principal, Err(Refusal::TokenRefused)) {
            self.failures
                .failed(src.ip(), token.as_deref(), Instant::now());
        }
        let proven = admit::proven(signing.is_authentic(), &edns.cookie);
        let verdict = admit::rate(&live, metrics, transport, proven, src.ip());
        if verdict == Verdict::Drop {
            // Not sent: nothing is looked up, applied or signed.
            return Outcome::Dropped;
        }
        let opt = edns.opt.as_ref();
        let principal = match principal {
            Ok(principal) => principal,
            Err(refusal) => {
                let answer = Answer {
                    signing: &signing,
                    verdict,
                    opt,
                };
                return self.refuse(&flight, &refusal, None, answer, sink).await;
            }
        };
        let dnssec_ok = edns.dnssec_ok && verdict == Verdict::Answer;
        match self.handle(&live, &flight, &principal, dnssec_ok).await {
            Ok(Planned::Reply(reply)) => {
                self.account().done(&flight);
                self.send_reply(&flight, reply, &signing, verdict, opt, sink)
                    .await
            }
            Ok(Planned::Stream(plan, signed)) => {
                self.stream(&flight, plan, &signed, opt, sink).await
            }
            Err(refusal) => {
                if refusal.tsig_error() == Some(TsigError::BadKey)
                    && matches!(principal, Principal::Enrollee(..))
                {
                    // A token that verified but may not enroll (used up meanwhile).
                    self.failures
                        .failed(src.ip(), token.as_deref(), Instant::now());
                }
                let answer = Answer {
                    signing: &signing,
                    verdict,
                    opt,
                };
                self.refuse(&flight, &refusal, Some(&principal), answer, sink)
                    .await
            }
        }
    }

    /// Stages 4 and 5 for an authenticated request: who may ask this, then its handler.
    async fn handle(
        &self,
        live: &Live,
        flight: &InFlight<'_>,
        principal: &Principal,
        dnssec_ok: bool,
    ) -> Result<Planned, Refusal> {
        let permit = admit::allowed(live, flight.kind, principal)?;
        let (directory, request, now) = (&self.directory, flight.request, flight.now);
        let compact = live.compact(directory);
        match permit {
            Permit::Query => handle_query::answer(directory, request, dnssec_ok, compact, now)
                .map(Planned::Reply),
            Permit::Transfer(qtype, signed) => {
                let transport = flight.transport;
                let transfer =
                    handle_transfer::answer(directory, request, qtype, compact, transport, now);
                Ok(match transfer.await? {
                    Transfer::Soa(reply) => Planned::Reply(reply),
                    Transfer::Records(plan) => Planned::Stream(plan, signed.clone()),
                })
            }
            Permit::Update(code, signed) => {
                handle_update::answer(directory, live, request, code, signed, now)
                    .await
                    .map(Planned::Reply)
            }
            Permit::Enroll(id, signed) => {
                handle_enroll::answer(directory, request, id, signed, now)
                    .await
                    .map(Planned::Reply)
            }
            Permit::Other => Err(Refusal::NotImplemented),
        }
    }

    /// The token an enrollment's TSIG names (not verified), for its failure budget.
    fn token_named(&self, request: &hickory_server::server::Request) -> Option<String> {
        let name = request.signature.as_deref()?.name.to_lowercase().to_ascii();
        let zone = self.directory.zone();
        zones::enroll::parse_token_key_name(&name, zone.origin()).map(|(id, _)| id.to_string())
    }

    /// A refusal, counted and logged, answered as the finish stage says (its signing
    /// included) and sent.
    async fn refuse(
        &self,
        flight: &InFlight<'_>,
        refusal: &Refusal,
        principal: Option<&Principal>,
        answer: Answer<'_>,
        sink: &mut impl Sink,
    ) -> Outcome {
        self.account().refused(flight, refusal, principal);
        let reply = finish::refused(flight.request, refusal);
        let id = flight.request.metadata.id;
        let signing = finish::refusal_signing(refusal, principal, answer.signing, id, flight.now);
        self.send_reply(flight, reply, &signing, answer.verdict, answer.opt, sink)
            .await
    }

    /// The finish stage for one message: slip, encoding, TSIG, the query counter, the sink.
    async fn send_reply(
        &self,
        flight: &InFlight<'_>,
        reply: Reply,
        signing: &ResponseSigning,
        verdict: Verdict,
        opt: Option<&hickory_proto::op::Edns>,
        sink: &mut impl Sink,
    ) -> Outcome {
        let request = flight.request;
        let Some(reply) = finish::limited(request, reply, verdict) else {
            return Outcome::Dropped;
        };
        let (bytes, rcode) =
            finish::encode(request, reply, signing, opt, flight.transport, flight.now);
        self.account().query(flight, rcode);
        send(sink, &bytes).await
    }

    /// Streams a planned transfer as signed messages, and logs it.
    async fn stream(
        &self,
        flight: &InFlight<'_>,
        plan: crate::transfer::TransferPlan,
        signed: &crate::tsig::SignedRequest,
        opt: Option<&hickory_proto::op::Edns>,
        sink: &mut impl Sink,
    ) -> Outcome {
        let request = flight.request;
        let records = plan.records.len();
        let kind = plan.kind;
        let serial = self.directory.view().serial();
        let mut signer = finish::StreamSigner::new(request, signed, opt, flight.now);
        let (mut messages, mut bytes) = (0, 0);
        let mut failure = None;
        for answers in crate::transfer::split(plan.records) {
            let mut reply = Reply::authoritative(request, ResponseCode::NoError);
            reply.answers = answers;
            let sent = match signer.next(&reply) {
                Ok(message) => {
                    bytes += message.len();
                    sink.send(&message).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                failure = Some(e);
                break;
            }
            messages += 1;
        }
        let streamed = account::Streamed {
            key: &signed.key_name,
            kind,
            serial,
            records,
            messages,
            bytes,
        };
        match failure {
            Some(error) => {
                self.account().stream_failed(flight, &streamed, &error);
                Outcome::Broken
            }
            None => {
                self.account().streamed(flight, &streamed);
                Outcome::Stream(messages)
            }
        }
    }
}

/// How an answer goes out: its signing, RRL's verdict, the request's OPT.
struct Answer<'a> {
    signing: &'a ResponseSigning,
    verdict: Verdict,
    opt: Option<&'a hickory_proto::op::Edns>,
}

/// What a handler planned.
enum Planned {
    /// One message.
    Reply(Reply),
    /// A zone transfer, signed with this transfer key.
    Stream(crate::transfer::TransferPlan, crate::tsig::SignedRequest),
}

/// Whether `bytes` are an UPDATE request (opcode 5, QR clear): a change, which a cluster
/// makes on its leader.
fn is_update(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && bytes[2] & 0x80 == 0 && (bytes[2] >> 3) & 0x0f == 5
}

/// A follower's answer to an UPDATE: the leader's, once the change is applied here too;
/// SERVFAIL when no leader answers (the client tries again, or another server).
async fn relayed(
    relay: &dyn crate::relay::Relay,
    bytes: Vec<u8>,
    src: SocketAddr,
    transport: Transport,
    sink: &mut impl Sink,
) -> Outcome {
    let header = hickory_proto::op::Header::read(&mut BinDecoder::new(&bytes));
    match relay.dns(bytes, src, transport).await {
        Ok(messages) => {
            let mut outcome = Outcome::Dropped;
            for message in messages {
                outcome = send(sink, &message).await;
            }
            outcome
        }
        Err(e) => {
            debug!(error = %e, "the leader did not answer a relayed update");
            match header {
                Ok(header) => send(sink, &finish::header_only(&header, &Refusal::NotReady)).await,
                Err(_) => Outcome::Dropped,
            }
        }
    }
}

async fn send(sink: &mut impl Sink, bytes: &[u8]) -> Outcome {
    match sink.send(bytes).await {
        Ok(()) => Outcome::Sent,
        Err(e) => {
            debug!(error = %e, "cannot send response");
            Outcome::Broken
        }
    }
}
