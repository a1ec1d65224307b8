//! The request handler hickory's listeners call for every decoded request.
//!
//! hickory has already dropped responses and answered undecodable messages with FORMERR.
//! Here, cheap checks come first: opcode (NOTIMP), EDNS version (BADVERS), the question
//! (FORMERR, REFUSED), TSIG; then the directory.

use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tracing::{error, info, warn};
use zones::Directory;
use zones::directory::{DirectoryError, Freshness};
use zones::update::{UpdateMessage, ZoneSection};

use crate::config::LookupPolicy;
use crate::query;
use crate::response::{self, Reply};
use crate::tsig::{self, Authentication, KeyOwner, ResponseSigning, SignedRequest, TsigFailure};

/// Answers queries and updates for one zone.
#[derive(Clone, Debug)]
pub struct Handler {
    directory: Directory,
    lookups: LookupPolicy,
}

impl Handler {
    pub fn new(directory: Directory, lookups: LookupPolicy) -> Self {
        Self { directory, lookups }
    }

    /// The request's TSIG state, checked against the registered keys.
    fn authenticate(&self, request: &Request, now: u64) -> Authentication {
        let view = self.directory.view();
        let fudge = self.directory.limits().fudge;
        tsig::verify_request(
            request.as_slice(),
            request.signature.as_deref(),
            &view,
            fudge,
            now,
        )
    }

    /// RFC 1035 §4.1.1 and RFC 6891: a standard query.
    fn query(&self, request: &Request, now: u64) -> (Reply, ResponseSigning) {
        let auth = self.authenticate(request, now);
        let signing = ResponseSigning::for_request(&auth, request.metadata.id, now);
        if let Some(reply) = tsig_failure_reply(request, &auth) {
            return (reply, signing);
        }
        let [query] = request.queries.queries() else {
            return (Reply::new(request, ResponseCode::FormErr), signing);
        };
        let qtype = query.query_type();
        let refused = query.query_class() != DNSClass::IN
            || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
            || (self.lookups == LookupPolicy::Signed && !matches!(auth, Authentication::Signed(_)));
        if refused {
            return (Reply::new(request, ResponseCode::Refused), signing);
        }
        let mut reply = Reply::authoritative(request, ResponseCode::NoError);
        let view = self.directory.view();
        let qname = Name::from(query.name().clone());
        query::answer(
            self.directory.zone(),
            &view,
            &qname,
            qtype,
            request.src(),
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
            warn!(src = %request.src(), outcome = "refused", reason = ?auth, "update");
            return (reply, signing);
        }
        let Authentication::Signed(signed) = auth else {
            info!(src = %request.src(), outcome = "refused", reason = "unsigned", "update");
            return (Reply::new(request, ResponseCode::Refused), signing);
        };
        let Ok(lease) = requested_lease(request) else {
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
        let KeyOwner::Terminal(code) = &signed.owner;
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
        let freshness = Freshness {
            time_signed: signed.time_signed,
            mac: signed.request_mac.clone(),
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
                info!(%code, %key, outcome = "accepted", %addresses, changed, serial, %lease, "update");
                Some((ResponseCode::NoError, done.lease))
            }
            Err(DirectoryError::Stale { .. }) => {
                warn!(%code, %key, outcome = "refused", reason = "replayed or out of order (BADTIME)", "update");
                None
            }
            Err(DirectoryError::Update(e)) => {
                warn!(%code, %key, outcome = "refused", reason = %e, "update");
                Some((e.response_code(), None))
            }
            Err(DirectoryError::UnknownCode(_)) => {
                warn!(%code, %key, outcome = "refused", reason = "code no longer registered", "update");
                Some((ResponseCode::Refused, None))
            }
            Err(e) => {
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
        let edns = response::response_edns(request);
        let (reply, signing) = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 §6.1.3: unknown EDNS version.
            (
                Reply::new(request, ResponseCode::BADVERS),
                ResponseSigning::None,
            )
        } else {
            match request.metadata.op_code {
                OpCode::Query => self.query(request, now),
                OpCode::Update => self.update(request, now).await,
                _ => (
                    Reply::new(request, ResponseCode::NotImp),
                    ResponseSigning::None,
                ),
            }
        };
        response::send(request, reply, &signing, edns.as_ref(), now, handle).await
    }
}
