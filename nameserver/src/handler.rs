//! The request handler hickory's listeners call for every decoded request.
//!
//! hickory has already dropped responses and answered undecodable messages with FORMERR.
//! Here, cheap checks come first: opcode (NOTIMP), EDNS version (BADVERS), the question
//! (FORMERR, REFUSED), TSIG; then the directory.

use std::sync::Arc;

use arc_swap::ArcSwap;

use hickory_proto::op::{Edns, OpCode, ResponseCode};
use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tracing::{debug, error, info, warn};
use zones::Directory;
use zones::directory::{DirectoryError, Freshness};
use zones::identity::CallingCode;
use zones::key::TsigKey;

use crate::cookie::{CookieSecret, CookieState};
use crate::fast::{Fast, FastPath};
use crate::ratelimit::{Buckets, ResponseRateLimit, Verdict};
use zones::update::{UpdateMessage, ZoneSection};

use crate::config::LookupPolicy;
use crate::metrics::{Metrics, TransferOutcome, Transport, UpdateOutcome};
use crate::query;
use crate::response::{self, Reply};
use crate::transfer::{self, TransferPlan};
use crate::tsig::{self, Authentication, KeyOwner, ResponseSigning, SignedRequest, TsigFailure};

/// How long a transfer waits for a signed start to put its signatures in force before it
/// is refused (SERVFAIL): seconds at a million terminals, far more at a first signing.
const SIGNED_START_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Who may do what, and how often.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub lookups: LookupPolicy,
    pub transfer_keys: Vec<TsigKey>,
    /// UDP answers per second per client prefix (RRL); 0: no limit.
    pub rate_limit: u32,
    /// Every n-th answer over the limit is sent truncated; 0: none.
    pub rate_limit_slip: u32,
    /// Updates per second per terminal key (bursts of twice as many); 0: no limit.
    pub update_rate_limit: u32,
    /// How a signed zone denies existence.
    pub denial: crate::config::Denial,
}

impl From<&crate::config::Settings> for Policy {
    fn from(s: &crate::config::Settings) -> Self {
        Self {
            lookups: s.lookups,
            transfer_keys: s.transfer_keys.clone(),
            rate_limit: s.rate_limit,
            rate_limit_slip: s.rate_limit_slip,
            update_rate_limit: s.update_rate_limit,
            denial: s.denial,
        }
    }
}

/// Answers queries, transfers and updates for one zone.
#[derive(Clone, Debug)]
pub struct Handler {
    directory: Directory,
    /// What a reload replaces; each request reads it once, without a lock.
    live: Arc<ArcSwap<Live>>,
    cookies: Arc<CookieSecret>,
    /// What is counted for `--metrics`; `None`: nothing is.
    metrics: Option<Arc<Metrics>>,
}

/// The policy in force, and what is built from it and from the zone.
#[derive(Debug)]
struct Live {
    policy: Policy,
    rrl: Option<Arc<ResponseRateLimit>>,
    update_limit: Option<Arc<Buckets<CallingCode>>>,
    /// The wire-level path for common answers; off when lookups must be signed.
    fast: Option<Arc<FastPath>>,
}

impl Live {
    /// Built for `policy` and the directory's zone as it is now. Rate-limit state carries
    /// over from `old` when its limits did not change, so a reload resets no client's budget.
    fn new(directory: &Directory, policy: Policy, old: Option<&Live>) -> Self {
        let same_rrl = old.filter(|o| {
            (o.policy.rate_limit, o.policy.rate_limit_slip)
                == (policy.rate_limit, policy.rate_limit_slip)
        });
        let rrl = match same_rrl {
            Some(old) => old.rrl.clone(),
            None => (policy.rate_limit > 0).then(|| {
                Arc::new(ResponseRateLimit::new(
                    policy.rate_limit,
                    policy.rate_limit_slip,
                ))
            }),
        };
        let same_updates = old.filter(|o| o.policy.update_rate_limit == policy.update_rate_limit);
        let update_limit = match same_updates {
            Some(old) => old.update_limit.clone(),
            None => (policy.update_rate_limit > 0).then(|| {
                let rate = policy.update_rate_limit;
                Arc::new(Buckets::new(rate, rate.saturating_mul(2)))
            }),
        };
        let fast = (policy.lookups == LookupPolicy::Public)
            .then(|| Arc::new(FastPath::new(&directory.zone())));
        Self {
            policy,
            rrl,
            update_limit,
            fast,
        }
    }
}

impl Handler {
    pub fn new(directory: Directory, policy: Policy) -> Self {
        let live = Live::new(&directory, policy, None);
        Self {
            directory,
            live: Arc::new(ArcSwap::from_pointee(live)),
            cookies: Arc::new(CookieSecret::generate()),
            metrics: None,
        }
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

    fn count_update(&self, outcome: UpdateOutcome) {
        if let Some(m) = &self.metrics {
            m.update(outcome);
        }
    }

    fn count_transfer(&self, kind: RecordType, outcome: TransferOutcome) {
        if let Some(m) = &self.metrics {
            m.transfer(kind, outcome);
        }
    }

    /// A query answered by the full path (the UDP workers count the fast path's).
    fn count_query(&self, request: &Request, rcode: ResponseCode) {
        let Some(m) = &self.metrics else { return };
        if request.metadata.op_code != OpCode::Query {
            return;
        }
        let transport = match request.protocol() {
            Protocol::Udp => Transport::Udp,
            _ => Transport::Tcp,
        };
        let qtype = request
            .queries
            .queries()
            .first()
            .map_or(RecordType::NULL, |q| q.query_type());
        m.query_answered(transport, qtype, rcode);
    }

    /// The request's COOKIE, and the response option that answers it.
    fn cookie(&self, request: &Request, now: u64) -> (CookieState, Option<EdnsOption>) {
        let data = request
            .edns
            .as_ref()
            .and_then(|e| match e.option(EdnsCode::Cookie) {
                Some(EdnsOption::Unknown(_, data)) => Some(data.as_slice()),
                _ => None,
            });
        let src = request.src().ip();
        let state = self.cookies.check(data, src, now);
        let option = match &state {
            CookieState::ClientOnly(client) | CookieState::Valid(client) => {
                Some(EdnsOption::Unknown(
                    crate::cookie::OPTION_CODE,
                    self.cookies.answer(client, src, now),
                ))
            }
            _ => None,
        };
        (state, option)
    }

    /// RRL for every UDP answer, errors included, unless the asker proved itself with a
    /// verified TSIG or a valid server cookie.
    fn rate_limit(
        &self,
        request: &Request,
        signing: &ResponseSigning,
        cookie: &CookieState,
    ) -> Verdict {
        let exempt = request.protocol() != Protocol::Udp
            || signing.is_authentic()
            || matches!(cookie, CookieState::Valid(_));
        if exempt {
            Verdict::Answer
        } else {
            self.unparsed_verdict(request.src().ip())
        }
    }

    /// The fast path for the common UDP answers ([`crate::fast`]): `Declined` sends the
    /// request down the full path.
    pub fn answer_fast(&self, request: &[u8], src: std::net::IpAddr, out: &mut Vec<u8>) -> Fast {
        let live = self.live.load();
        let Some(fast) = &live.fast else {
            return Fast::Declined;
        };
        let view = self.directory.view();
        let rate_limit = || self.verdict(&live, src);
        let now = zones::unix_now();
        fast.answer(request, &view, now, src, &self.cookies, rate_limit, out)
    }

    /// RRL's verdict for a UDP answer decided before any cookie or TSIG was read (FORMERR
    /// to an undecodable message, the fast path).
    pub fn unparsed_verdict(&self, src: std::net::IpAddr) -> Verdict {
        self.verdict(&self.live.load(), src)
    }

    fn verdict(&self, live: &Live, src: std::net::IpAddr) -> Verdict {
        let verdict = match &live.rrl {
            Some(rrl) => rrl.check(src, std::time::Instant::now()),
            None => Verdict::Answer,
        };
        if let (Some(m), false) = (&self.metrics, verdict == Verdict::Answer) {
            m.rate_limited(verdict);
        }
        verdict
    }

    /// Sends `reply` as RRL decides: whole, as an empty truncated slip, or not at all.
    async fn send_limited<R: ResponseHandler>(
        &self,
        request: &Request,
        reply: Reply,
        signing: &ResponseSigning,
        answer: &Answering<'_>,
        handle: R,
    ) -> ResponseInfo {
        let verdict = self.rate_limit(request, signing, answer.cookie);
        self.send_decided(request, reply, signing, verdict, answer, handle)
            .await
    }

    /// Sends `reply` as RRL decided (`verdict`, taken once per request).
    async fn send_decided<R: ResponseHandler>(
        &self,
        request: &Request,
        reply: Reply,
        signing: &ResponseSigning,
        verdict: Verdict,
        answer: &Answering<'_>,
        handle: R,
    ) -> ResponseInfo {
        let reply = match verdict {
            Verdict::Answer => reply,
            Verdict::Slip => {
                // Empty, truncated: a real client retries over TCP.
                let mut slip = Reply::new(request, reply.metadata.response_code);
                slip.metadata.truncation = true;
                slip
            }
            Verdict::Drop => {
                return ResponseInfo::from(hickory_proto::op::Header {
                    metadata: reply.metadata,
                    counts: hickory_proto::op::HeaderCounts::default(),
                });
            }
        };
        self.count_query(request, reply.metadata.response_code);
        response::send(request, reply, signing, answer.edns, answer.now, handle).await
    }

    /// The request's TSIG state, checked against the terminals' and the transfer keys.
    fn authenticate(&self, request: &Request, now: u64) -> Authentication {
        let live = self.live.load();
        let keys = tsig::Keys {
            directory: &self.directory,
            transfer: &live.policy.transfer_keys,
        };
        let fudge = self.directory.limits().fudge;
        tsig::verify_request(
            request.as_slice(),
            request.signature.as_deref(),
            &keys,
            fudge,
            now,
        )
    }

    /// AXFR and IXFR: only with a transfer key; AXFR only over TCP.
    async fn transfer<R: ResponseHandler>(
        &self,
        request: &Request,
        qtype: RecordType,
        answer: &Answering<'_>,
        handle: R,
    ) -> ResponseInfo {
        let (now, edns) = (answer.now, answer.edns);
        let auth = self.authenticate(request, now);
        let signing = ResponseSigning::for_request(&auth, request.metadata.id, now);
        let src = request.src();
        let refuse = |rcode, signing: ResponseSigning, why: &str| {
            self.count_transfer(qtype, TransferOutcome::Refused);
            warn!(%src, kind = %qtype, outcome = "refused", reason = why, "transfer");
            (Reply::new(request, rcode), signing)
        };
        let compact = self.live.load().policy.denial == crate::config::Denial::Compact
            && self.directory.is_signed();
        let transfer_key =
            matches!(&auth, Authentication::Signed(s) if s.owner == KeyOwner::Transfer);
        let udp = request.protocol() == Protocol::Udp;
        if transfer_key && !udp && self.directory.view().signatures_pending() {
            // A signed start is putting its signatures in force (a moment): the transfer
            // waits for it rather than fail, which would send the secondary to its retry
            // timer or to a full transfer.
            let ready = self.directory.signatures_ready();
            let _ = tokio::time::timeout(SIGNED_START_WAIT, ready).await;
        }
        let (reply, signing) = match &auth {
            // Compact denial is made per answer: a secondary could not deny anything.
            Authentication::Signed(_) if compact => refuse(
                ResponseCode::Refused,
                signing,
                "compact denial (RFC 9824): the signed zone is not transferred",
            ),
            Authentication::Signed(signed) if signed.owner == KeyOwner::Transfer && udp => {
                match self.udp_transfer_soa(request, qtype) {
                    Ok(soa) => {
                        // RFC 1995 §2: too big for UDP; the current SOA sends the secondary to
                        // TCP. Never waits, not even for a signed start.
                        let mut reply = Reply::authoritative(request, ResponseCode::NoError);
                        reply.answers = vec![soa];
                        self.count_transfer(qtype, TransferOutcome::Sent);
                        (reply, signing)
                    }
                    Err(rcode) => {
                        refuse(rcode, signing, "malformed, another zone, or AXFR over UDP")
                    }
                }
            }
            Authentication::Signed(signed) if signed.owner == KeyOwner::Transfer => {
                match self.plan_transfer(request, qtype, now) {
                    Ok(plan) => return self.stream(request, plan, signed, edns, now, handle).await,
                    Err(ResponseCode::ServFail) => {
                        let (mut reply, signing) = refuse(
                            ResponseCode::ServFail,
                            signing,
                            "the zone's signatures are not in force yet (starting up)",
                        );
                        // As for a query with DO meanwhile: RFC 8914 "Not Ready".
                        reply.extended_error(crate::response::NOT_READY);
                        (reply, signing)
                    }
                    Err(rcode) => {
                        refuse(rcode, signing, "malformed, another zone, or AXFR over UDP")
                    }
                }
            }
            Authentication::Failed(_) => {
                let reply = tsig_failure_reply(request, &auth).expect("a failed TSIG has a reply");
                self.count_transfer(qtype, TransferOutcome::Refused);
                warn!(%src, kind = %qtype, outcome = "refused", reason = ?auth, "transfer");
                (reply, signing)
            }
            _ => refuse(
                ResponseCode::Refused,
                signing,
                "not signed with a transfer key",
            ),
        };
        self.send_limited(request, reply, &signing, answer, handle)
            .await
    }

    /// The answer to a transfer request over UDP: the current SOA (RFC 1995 §2), or the
    /// RCODE that refuses it (AXFR is never sent over UDP).
    fn udp_transfer_soa(
        &self,
        request: &Request,
        qtype: RecordType,
    ) -> Result<hickory_proto::rr::Record, ResponseCode> {
        let zone = self.transfer_zone(request)?;
        match qtype {
            RecordType::AXFR => Err(ResponseCode::FormErr),
            _ => Ok(zone.soa_record(self.directory.view().serial())),
        }
    }

    /// The zone a transfer request asks for: one question, for this zone's origin.
    fn transfer_zone(&self, request: &Request) -> Result<Arc<zones::Zone>, ResponseCode> {
        let zone = self.directory.zone();
        let [query] = request.queries.queries() else {
            return Err(ResponseCode::FormErr);
        };
        if query.name() != zone.lower_origin() {
            return Err(ResponseCode::NotAuth);
        }
        Ok(zone)
    }

    /// What to send for a transfer request, or the RCODE that refuses it (SERVFAIL while
    /// a signed start has not put its signatures in force).
    fn plan_transfer(
        &self,
        request: &Request,
        qtype: RecordType,
        now: u64,
    ) -> Result<TransferPlan, ResponseCode> {
        let zone = self.transfer_zone(request)?;
        let view = self.directory.view();
        if view.signatures_pending() {
            // Never the zone without its signatures: the secondary asks again.
            return Err(ResponseCode::ServFail);
        }
        match qtype {
            RecordType::AXFR => Ok(transfer::axfr(&zone, &view, now)),
            _ => {
                // RFC 1995 §3: the secondary's SOA is in the authority section.
                let serial = request.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(soa.serial),
                    _ => None,
                });
                serial
                    .map(|serial| transfer::ixfr(&zone, &view, serial, now))
                    .ok_or(ResponseCode::FormErr)
            }
        }
    }

    /// Sends a planned transfer as signed messages over TCP, and logs it.
    async fn stream<R: ResponseHandler>(
        &self,
        request: &Request,
        plan: TransferPlan,
        signed: &SignedRequest,
        edns: Option<&Edns>,
        now: u64,
        handle: R,
    ) -> ResponseInfo {
        let records = plan.records.len();
        let qtype = request
            .queries
            .queries()
            .first()
            .map_or(RecordType::AXFR, |q| q.query_type());
        let serial = self.directory.view().serial();
        let replies: Vec<Reply> = transfer::split(plan.records)
            .into_iter()
            .map(|answers| {
                let mut reply = Reply::authoritative(request, ResponseCode::NoError);
                reply.answers = answers;
                reply
            })
            .collect();
        let messages = replies.len();
        let (src, key, kind) = (request.src(), &signed.key_name, plan.kind);
        match response::send_stream(request, replies, signed, edns, now, handle).await {
            Ok((info, bytes)) => {
                self.count_transfer(qtype, TransferOutcome::Sent);
                self.count_query(request, ResponseCode::NoError);
                info!(%src, %key, %kind, serial, records, messages, bytes, outcome = "sent", "transfer");
                info
            }
            Err(error) => {
                self.count_transfer(qtype, TransferOutcome::Failed);
                warn!(%src, %key, %kind, %error, outcome = "failed", "transfer");
                ResponseInfo::from(hickory_proto::op::Header {
                    metadata: Reply::new(request, ResponseCode::ServFail).metadata,
                    counts: hickory_proto::op::HeaderCounts::default(),
                })
            }
        }
    }

    /// RFC 1035 §4.1.1 and RFC 6891: a standard query. RRL decides first (`verdict`), so
    /// that an answer it drops is never made, and one it slips is never signed: a flood of
    /// forged queries costs no signature.
    fn query(
        &self,
        request: &Request,
        now: u64,
        cookie: &CookieState,
    ) -> (Reply, ResponseSigning, Verdict) {
        let auth = self.authenticate(request, now);
        let signing = ResponseSigning::for_request(&auth, request.metadata.id, now);
        let verdict = self.rate_limit(request, &signing, cookie);
        let (reply, signing) = self.query_answer(request, now, auth, signing, verdict);
        (reply, signing, verdict)
    }

    fn query_answer(
        &self,
        request: &Request,
        now: u64,
        auth: Authentication,
        signing: ResponseSigning,
        verdict: Verdict,
    ) -> (Reply, ResponseSigning) {
        if verdict == Verdict::Drop {
            // Not sent: nothing is looked up or signed.
            return (Reply::new(request, ResponseCode::NoError), signing);
        }
        if let Some(reply) = tsig_failure_reply(request, &auth) {
            return (reply, signing);
        }
        let [query] = request.queries.queries() else {
            return (Reply::new(request, ResponseCode::FormErr), signing);
        };
        let qtype = query.query_type();
        let policy = &self.live.load().policy;
        let refused = query.query_class() != DNSClass::IN
            || (policy.lookups == LookupPolicy::Signed
                && !matches!(auth, Authentication::Signed(_)));
        if refused {
            return (Reply::new(request, ResponseCode::Refused), signing);
        }
        let mut reply = Reply::authoritative(request, ResponseCode::NoError);
        let view = self.directory.view();
        let qname = Name::from(query.name().clone());
        // A slip carries only the RCODE: answered as without DO, nothing is signed for it.
        let dnssec_ok = verdict == Verdict::Answer
            && request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let compact = policy.denial == crate::config::Denial::Compact;
        query::answer(
            &self.directory.zone(),
            &view,
            &query::Question {
                name: &qname,
                qtype,
                src: request.src(),
                dnssec_ok,
                compact,
            },
            now,
            &mut reply,
        );
        (reply, signing)
    }

    /// RFC 2136: an update, allowed only with a terminal's key, for its own name.
    async fn update(&self, request: &Request, now: u64) -> (Reply, ResponseSigning) {
        let auth = self.authenticate(request, now);
        let signing = ResponseSigning::for_request(&auth, request.metadata.id, now);
        if let Some(reply) = tsig_failure_reply(request, &auth) {
            if let Authentication::Failed(failure) = &auth {
                self.count_update(match failure {
                    TsigFailure::BadKey { .. } => UpdateOutcome::BadKey,
                    TsigFailure::BadSig { .. } => UpdateOutcome::BadSig,
                    TsigFailure::BadTime(_) => UpdateOutcome::BadTime,
                    TsigFailure::Malformed(_) => UpdateOutcome::Malformed,
                });
            }
            warn!(src = %request.src(), outcome = "refused", reason = ?auth, "update");
            return (reply, signing);
        }
        let Authentication::Signed(signed) = auth else {
            self.count_update(UpdateOutcome::Refused);
            info!(src = %request.src(), outcome = "refused", reason = "unsigned", "update");
            return (Reply::new(request, ResponseCode::Refused), signing);
        };
        let Ok(lease) = requested_lease(request) else {
            self.count_update(UpdateOutcome::Malformed);
            return (Reply::new(request, ResponseCode::FormErr), signing);
        };
        let mut reply = Reply::new(request, ResponseCode::NoError);
        let signing = match self.apply_update(request, &signed, lease, now).await {
            Some((rcode, granted)) => {
                reply.metadata.response_code = rcode;
                if let (Some(_), Some(granted)) = (lease, granted) {
                    // RFC 9664 §4: the response carries the lease granted.
                    let data = zones::lease::encode(granted);
                    reply
                        .edns_options
                        .push(EdnsOption::Unknown(zones::lease::OPTION_CODE, data));
                }
                signing
            }
            None => {
                reply.metadata.response_code = ResponseCode::NotAuth;
                ResponseSigning::stale(&signed)
            }
        };
        (reply, signing)
    }

    /// Runs the update through the directory: its RCODE and granted lease, or `None` for a
    /// replayed or out-of-order message, answered NOTAUTH with TSIG error BADTIME.
    async fn apply_update(
        &self,
        request: &Request,
        signed: &SignedRequest,
        lease: Option<u32>,
        now: u64,
    ) -> Option<(ResponseCode, Option<u32>)> {
        let KeyOwner::Terminal(code) = &signed.owner else {
            self.count_update(UpdateOutcome::Refused);
            warn!(key = %signed.key_name, outcome = "refused", reason = "a transfer key cannot update", "update");
            return Some((ResponseCode::Refused, None));
        };
        let freshness = Freshness {
            time_signed: signed.time_signed,
            mac: signed.request_mac.clone(),
        };
        let update_limit = self.live.load().update_limit.clone();
        if let Some(limit) = &update_limit {
            // Replays are refused before they touch the key's budget: a stranger's copies of
            // a captured update must not lock the terminal out. (Without a budget, the
            // directory's own check under its lock is the only one needed.)
            if !self.directory.is_fresh(code, &freshness) {
                self.count_update(UpdateOutcome::Replay);
                warn!(%code, key = %signed.key_name, outcome = "refused", reason = "replayed or out of order (BADTIME)", "update");
                return None;
            }
            if !limit.take(code, std::time::Instant::now()) {
                self.count_update(UpdateOutcome::RateLimited);
                warn!(%code, key = %signed.key_name, outcome = "refused", reason = "update rate limit", "update");
                return Some((ResponseCode::Refused, None));
            }
        }
        let zone: Vec<ZoneSection> = request
            .queries
            .queries()
            .iter()
            .map(|q| ZoneSection {
                name: Name::from(q.name().clone()),
                rtype: q.query_type(),
                class: q.query_class(),
            })
            .collect();
        let message = UpdateMessage {
            zone: &zone,
            prerequisites: &request.answers,
            updates: &request.authorities,
        };
        let key = &signed.key_name;
        let result = self
            .directory
            .update(code, &message, &freshness, lease, now)
            .await;
        match result {
            Ok(done) => {
                let addresses = done.addresses.describe();
                let (changed, serial) = (done.changed, done.serial);
                let lease = done
                    .lease
                    .map_or_else(|| "none".to_owned(), |l| format!("{l}s"));
                self.count_update(UpdateOutcome::Accepted);
                info!(%code, %key, outcome = "accepted", %addresses, changed, serial, %lease, "update");
                Some((ResponseCode::NoError, done.lease))
            }
            Err(DirectoryError::Stale { .. }) => {
                // A copy that raced the original past the early check: no budget spent.
                if let Some(limit) = &update_limit {
                    limit.refund(code);
                }
                self.count_update(UpdateOutcome::Replay);
                warn!(%code, %key, outcome = "refused", reason = "replayed or out of order (BADTIME)", "update");
                None
            }
            Err(DirectoryError::Update(e)) => {
                self.count_update(if e.response_code() == ResponseCode::FormErr {
                    UpdateOutcome::Malformed
                } else {
                    UpdateOutcome::Refused
                });
                warn!(%code, %key, outcome = "refused", reason = %e, "update");
                Some((e.response_code(), None))
            }
            Err(DirectoryError::UnknownCode(_)) => {
                self.count_update(UpdateOutcome::Refused);
                warn!(%code, %key, outcome = "refused", reason = "code no longer registered", "update");
                Some((ResponseCode::Refused, None))
            }
            Err(e) => {
                self.count_update(UpdateOutcome::Failed);
                error!(%code, %key, outcome = "failed", reason = %e, "update");
                Some((ResponseCode::ServFail, None))
            }
        }
    }
}

/// The lease the request asks for (RFC 9664), if any; `Err` if the option is malformed.
fn requested_lease(request: &Request) -> Result<Option<u32>, ()> {
    let option = request.edns.as_ref().and_then(|e| e.option(EdnsCode::UL));
    match option {
        None => Ok(None),
        Some(EdnsOption::Unknown(_, data)) => zones::lease::decode(data).map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}

/// RFC 8945 §5.2: NOTAUTH for BADKEY, BADSIG and BADTIME; FORMERR for an unreadable TSIG.
fn tsig_failure_reply(request: &Request, auth: &Authentication) -> Option<Reply> {
    match auth {
        Authentication::Failed(TsigFailure::Malformed(_)) => {
            Some(Reply::new(request, ResponseCode::FormErr))
        }
        Authentication::Failed(_) => Some(Reply::new(request, ResponseCode::NotAuth)),
        _ => None,
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        let now = zones::unix_now();
        let (cookie, cookie_option) = self.cookie(request, now);
        let mut edns = response::response_edns(request);
        if let (Some(edns), Some(option)) = (edns.as_mut(), cookie_option) {
            edns.options_mut().insert(option);
        }
        let answer = Answering {
            now,
            edns: edns.as_ref(),
            cookie: &cookie,
        };
        if cookie == CookieState::Malformed {
            // RFC 7873 §5.2.2.
            let reply = Reply::new(request, ResponseCode::FormErr);
            return self
                .send_limited(request, reply, &ResponseSigning::None, &answer, handle)
                .await;
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 §6.1.3: unknown EDNS version, for every request, transfers included.
            let reply = Reply::new(request, ResponseCode::BADVERS);
            return self
                .send_limited(request, reply, &ResponseSigning::None, &answer, handle)
                .await;
        }
        let transfer = request.queries.queries().iter().find_map(|q| {
            matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR).then_some(q.query_type())
        });
        if let (OpCode::Query, Some(qtype)) = (request.metadata.op_code, transfer) {
            return self.transfer(request, qtype, &answer, handle).await;
        }
        let (reply, signing, verdict) = match request.metadata.op_code {
            OpCode::Query => self.query(request, now, &cookie),
            OpCode::Update => {
                let (reply, signing) = self.update(request, now).await;
                let verdict = self.rate_limit(request, &signing, &cookie);
                (reply, signing, verdict)
            }
            _ => {
                let signing = ResponseSigning::None;
                let verdict = self.rate_limit(request, &signing, &cookie);
                (Reply::new(request, ResponseCode::NotImp), signing, verdict)
            }
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            let question = request
                .queries
                .queries()
                .first()
                .map(|q| format!("{} {}", q.name(), q.query_type()));
            debug!(src = %request.src(), op = %request.metadata.op_code, question = ?question, rcode = %reply.metadata.response_code, "request");
        }
        self.send_decided(request, reply, &signing, verdict, &answer, handle)
            .await
    }
}

/// What every answer to one request shares: the time, the EDNS to answer with, and the
/// request's cookie state (for RRL).
struct Answering<'a> {
    now: u64,
    edns: Option<&'a Edns>,
    cookie: &'a CookieState,
}
