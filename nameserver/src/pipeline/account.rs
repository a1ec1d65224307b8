//! What became of each request, counted and logged in one place: the metric of a query
//! answered by the full path, an update's outcome, a transfer's, and the log line of every
//! refusal (its reason from [`crate::refusal::Refusal`]).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tracing::{debug, error, info, warn};

use super::authenticate::Principal;
use super::classify::{InFlight, Kind};
use crate::metrics::{EnrollOutcome, Metrics, TransferOutcome, UpdateOutcome};
use crate::refusal::Refusal;

/// Counts into the metrics, when they are on, and logs.
#[derive(Clone, Copy, Debug)]
pub struct Account<'m> {
    pub metrics: Option<&'m Metrics>,
}

/// A zone transfer as it was streamed.
#[derive(Debug)]
pub struct Streamed<'a> {
    pub key: &'a str,
    pub kind: &'static str,
    pub serial: u32,
    pub records: usize,
    pub messages: usize,
    pub bytes: usize,
}

impl Account<'_> {
    /// A request its handler answered.
    pub fn done(self, flight: &InFlight<'_>) {
        match flight.kind {
            Kind::Update => self.update(UpdateOutcome::Accepted),
            Kind::Enroll => self.enroll(EnrollOutcome::Accepted),
            Kind::Transfer(qtype) => self.transfer(qtype, TransferOutcome::Sent),
            Kind::Query | Kind::Other => {}
        }
    }

    /// A refusal: the one place a refusal reaches the metrics and the log.
    pub fn refused(self, flight: &InFlight<'_>, refusal: &Refusal, principal: Option<&Principal>) {
        let src = flight.request.src();
        let reason = refusal;
        let outcome = if refusal.is_failure() {
            "failed"
        } else {
            "refused"
        };
        match flight.kind {
            Kind::Update => {
                self.update(refusal.update_outcome());
                let (code, key) = match principal {
                    Some(Principal::Terminal(code, signed)) => {
                        (code.to_string(), signed.key_name.as_str())
                    }
                    Some(Principal::Transfer(signed)) => (String::new(), signed.key_name.as_str()),
                    _ => (String::new(), ""),
                };
                match refusal {
                    Refusal::UpdateNotSigned => info!(%src, outcome, %reason, "update"),
                    r if r.is_failure() => error!(%src, %code, %key, outcome, %reason, "update"),
                    _ => warn!(%src, %code, %key, outcome, %reason, "update"),
                }
            }
            Kind::Enroll => {
                self.enroll(EnrollOutcome::of(refusal));
                // The key the request named (verified or not): it names the token, never
                // its secret.
                let key = flight
                    .request
                    .signature
                    .as_deref()
                    .map(|s| s.name.to_string())
                    .unwrap_or_default();
                match refusal {
                    r if r.is_failure() => error!(%src, %key, outcome, %reason, "enroll"),
                    _ => warn!(%src, %key, outcome, %reason, "enroll"),
                }
            }
            Kind::Transfer(qtype) => {
                self.transfer(qtype, TransferOutcome::Refused);
                warn!(%src, kind = %qtype, outcome, %reason, "transfer");
            }
            Kind::Query | Kind::Other => debug!(%src, outcome, %reason, "request"),
        }
    }

    /// A message the full path sent: a query's (transfers included) is counted by type and
    /// RCODE; the UDP workers count the fast path's in their own shard.
    pub fn query(self, flight: &InFlight<'_>, rcode: ResponseCode) {
        let request = flight.request;
        let question = request.queries.queries().first();
        if tracing::enabled!(tracing::Level::DEBUG) {
            let question = question.map(|q| format!("{} {}", q.name(), q.query_type()));
            debug!(src = %request.src(), op = %request.metadata.op_code, question = ?question, %rcode, "request");
        }
        let Some(m) = self.metrics else { return };
        if !matches!(flight.kind, Kind::Query | Kind::Transfer(_)) {
            return;
        }
        let qtype = question.map_or(RecordType::NULL, |q| q.query_type());
        m.query_answered(flight.transport, qtype, rcode);
    }

    /// A transfer streamed whole.
    pub fn streamed(self, flight: &InFlight<'_>, s: &Streamed<'_>) {
        self.transfer(transfer_type(flight.kind), TransferOutcome::Sent);
        self.query(flight, ResponseCode::NoError);
        let (src, key, kind) = (flight.request.src(), s.key, s.kind);
        let (serial, records, messages, bytes) = (s.serial, s.records, s.messages, s.bytes);
        info!(%src, %key, %kind, serial, records, messages, bytes, outcome = "sent", "transfer");
    }

    /// A transfer cut off.
    pub fn stream_failed(self, flight: &InFlight<'_>, s: &Streamed<'_>, error: &str) {
        self.transfer(transfer_type(flight.kind), TransferOutcome::Failed);
        let (src, key, kind) = (flight.request.src(), s.key, s.kind);
        warn!(%src, %key, %kind, %error, outcome = "failed", "transfer");
    }

    fn update(self, outcome: UpdateOutcome) {
        if let Some(m) = self.metrics {
            m.update(outcome);
        }
    }

    fn enroll(self, outcome: EnrollOutcome) {
        if let Some(m) = self.metrics {
            m.enroll(outcome);
        }
    }

    fn transfer(self, kind: RecordType, outcome: TransferOutcome) {
        if let Some(m) = self.metrics {
            m.transfer(kind, outcome);
        }
    }
}

fn transfer_type(kind: Kind) -> RecordType {
    match kind {
        Kind::Transfer(qtype) => qtype,
        _ => RecordType::AXFR,
    }
}
