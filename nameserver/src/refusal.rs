//! The one vocabulary of refusals: every reason a request is not answered as asked, and
//! what each means on the wire (RCODE, TSIG error, Extended DNS Error), in the metrics and
//! in the log. Handlers return it; only the pipeline's finish stage
//! ([`crate::pipeline::finish`] and the counting beside it) turns it into an answer, a
//! metric and a log line.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::tsig::TsigError;
use zones::update::UpdateError;

use crate::metrics::UpdateOutcome;
use crate::tsig::TsigFailure;

/// RFC 8914 §4.15 "Not Ready": the server cannot answer yet (its zone is still loading).
pub const EDE_NOT_READY: u16 = 14;
/// RFC 8914 §4.19 "Prohibited": refused by policy (with a text that says which).
pub const EDE_PROHIBITED: u16 = 18;

/// Why a request was refused. Each case knows its answer; nothing else chooses an RCODE
/// for a refusal.
#[derive(Debug)]
pub enum Refusal {
    /// The header could be read, the rest could not (RFC 1035 §4.1.1).
    Undecodable,
    /// A COOKIE option of the wrong length (RFC 7873 §5.2.2).
    MalformedCookie,
    /// An EDNS version other than 0 (RFC 6891 §6.1.3), for every request.
    BadVersion,
    /// An opcode this server does not implement.
    NotImplemented,
    /// Not exactly one question.
    NotOneQuestion,
    /// NXNAME asked for: a meta-type (RFC 9824 §3.5).
    MetaType,
    /// A class other than IN.
    NotInternet,
    /// A name outside the zone (not authoritative: no AA).
    OutsideZone,
    /// A compact denial could not be signed.
    SigningFailed(String),
    /// A TSIG that did not verify (RFC 8945 §5.2).
    Tsig(Box<TsigFailure>),
    /// Lookups must be signed (`lookups = "signed"`) and this one is not.
    LookupNotSigned,
    /// A transfer not signed with a transfer key.
    TransferNotSigned,
    /// A transfer of another zone.
    TransferOtherZone,
    /// AXFR over UDP (RFC 5936 §4.2).
    AxfrOverUdp,
    /// IXFR without the secondary's SOA in the authority section (RFC 1995 §3).
    IxfrWithoutSoa,
    /// Compact denial is made per answer: a secondary could not deny anything.
    CompactDenialZone,
    /// A signed start has not put its signatures in force yet.
    NotReady,
    /// An update without a TSIG.
    UpdateNotSigned,
    /// An update signed with a transfer key.
    UpdateByTransferKey,
    /// A malformed UPDATE-LEASE option (RFC 9664).
    MalformedLease,
    /// A replayed or out-of-order update (NOTAUTH with BADTIME, signed).
    Replay,
    /// Over the key's update rate limit.
    UpdateRateLimited,
    /// The key's code is no longer registered.
    CodeGone,
    /// An RFC 2136 step refused the update; it names its own RCODE.
    Update(UpdateError),
    /// The store failed.
    StoreFailed(String),
    /// The answer could not be signed or encoded.
    AnswerFailed(String),
    /// An enrollment whose token is unknown, wrong, expired, revoked, used up, or signed
    /// too far from our time: one answer for all (NOTAUTH, unsigned BADKEY), no oracle.
    TokenRefused,
    /// Too many failed enrollments from this prefix or for this token: refused before any
    /// key is looked at.
    EnrollLimited,
    /// An enrollment the token may not make, with the reason the terminal is told.
    EnrollRefused(String),
    /// An enrollment message that does not follow the exchange.
    EnrollMalformed(String),
    /// The key's customer is suspended.
    Suspended,
    /// The key's terminal waits for approval.
    AwaitingApproval,
}

impl Refusal {
    /// The RCODE of the answer.
    pub fn rcode(&self) -> ResponseCode {
        match self {
            Self::Undecodable
            | Self::MalformedCookie
            | Self::NotOneQuestion
            | Self::MetaType
            | Self::AxfrOverUdp
            | Self::IxfrWithoutSoa
            | Self::MalformedLease
            | Self::EnrollMalformed(_) => ResponseCode::FormErr,
            Self::Tsig(failure) => match **failure {
                TsigFailure::Malformed(_) => ResponseCode::FormErr,
                _ => ResponseCode::NotAuth,
            },
            Self::BadVersion => ResponseCode::BADVERS,
            Self::NotImplemented => ResponseCode::NotImp,
            Self::Replay | Self::TransferOtherZone | Self::TokenRefused => ResponseCode::NotAuth,
            Self::NotInternet
            | Self::OutsideZone
            | Self::LookupNotSigned
            | Self::TransferNotSigned
            | Self::CompactDenialZone
            | Self::UpdateNotSigned
            | Self::UpdateByTransferKey
            | Self::UpdateRateLimited
            | Self::CodeGone
            | Self::EnrollLimited
            | Self::EnrollRefused(_)
            | Self::Suspended
            | Self::AwaitingApproval => ResponseCode::Refused,
            Self::NotReady
            | Self::SigningFailed(_)
            | Self::StoreFailed(_)
            | Self::AnswerFailed(_) => ResponseCode::ServFail,
            Self::Update(e) => e.response_code(),
        }
    }

    /// The TSIG error the answer's TSIG record carries, if any (RFC 8945 §5.3).
    pub fn tsig_error(&self) -> Option<TsigError> {
        match self {
            Self::Tsig(failure) => match **failure {
                TsigFailure::BadKey { .. } => Some(TsigError::BadKey),
                TsigFailure::BadSig { .. } => Some(TsigError::BadSig),
                TsigFailure::BadTime(_) => Some(TsigError::BadTime),
                TsigFailure::Malformed(_) => None,
            },
            Self::Replay => Some(TsigError::BadTime),
            Self::TokenRefused => Some(TsigError::BadKey),
            _ => None,
        }
    }

    /// The Extended DNS Error (RFC 8914) the answer carries, if any, and its text.
    pub fn extended_error(&self) -> Option<(u16, Option<String>)> {
        match self {
            Self::NotReady => Some((EDE_NOT_READY, None)),
            Self::EnrollRefused(why) => Some((EDE_PROHIBITED, Some(why.clone()))),
            Self::EnrollLimited => Some((
                EDE_PROHIBITED,
                Some("too many failed enrollments; try again in a minute".into()),
            )),
            Self::Suspended => Some((EDE_PROHIBITED, Some("the customer is suspended".into()))),
            Self::AwaitingApproval => Some((
                EDE_PROHIBITED,
                Some("the terminal waits for the operator's approval".into()),
            )),
            _ => None,
        }
    }

    /// The `outcome` an update refused this way is counted under.
    pub fn update_outcome(&self) -> UpdateOutcome {
        match self {
            Self::Tsig(failure) => match **failure {
                TsigFailure::BadKey { .. } => UpdateOutcome::BadKey,
                TsigFailure::BadSig { .. } => UpdateOutcome::BadSig,
                TsigFailure::BadTime(_) => UpdateOutcome::BadTime,
                TsigFailure::Malformed(_) => UpdateOutcome::Malformed,
            },
            Self::Replay => UpdateOutcome::Replay,
            Self::UpdateRateLimited => UpdateOutcome::RateLimited,
            Self::StoreFailed(_) => UpdateOutcome::Failed,
            refusal if refusal.rcode() == ResponseCode::FormErr => UpdateOutcome::Malformed,
            _ => UpdateOutcome::Refused,
        }
    }

    /// Whether the log says `failed` (the server's fault) rather than `refused`.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::StoreFailed(_) | Self::SigningFailed(_) | Self::AnswerFailed(_)
        )
    }
}

/// Why, in the words of the log; written only when a log line is.
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Undecodable => f.write_str("undecodable message"),
            Self::MalformedCookie => f.write_str("malformed COOKIE option"),
            Self::BadVersion => f.write_str("unknown EDNS version"),
            Self::NotImplemented => f.write_str("opcode not implemented"),
            Self::NotOneQuestion => f.write_str("not exactly one question"),
            Self::MetaType => f.write_str("NXNAME is a meta-type"),
            Self::NotInternet => f.write_str("class other than IN"),
            Self::OutsideZone => f.write_str("a name outside the zone"),
            Self::SigningFailed(e) => write!(f, "cannot sign a compact denial: {e}"),
            Self::Tsig(failure) => write!(f, "{failure:?}"),
            Self::LookupNotSigned => f.write_str("lookups must be signed"),
            Self::TransferNotSigned => f.write_str("not signed with a transfer key"),
            Self::TransferOtherZone => f.write_str("another zone"),
            Self::AxfrOverUdp => f.write_str("AXFR over UDP"),
            Self::IxfrWithoutSoa => f.write_str("IXFR without the secondary's SOA"),
            Self::CompactDenialZone => {
                f.write_str("compact denial (RFC 9824): the signed zone is not transferred")
            }
            Self::NotReady => {
                f.write_str("the zone's signatures are not in force yet (starting up)")
            }
            Self::UpdateNotSigned => f.write_str("unsigned"),
            Self::UpdateByTransferKey => f.write_str("a transfer key cannot update"),
            Self::MalformedLease => f.write_str("malformed UPDATE-LEASE option"),
            Self::Replay => f.write_str("replayed or out of order (BADTIME)"),
            Self::UpdateRateLimited => f.write_str("update rate limit"),
            Self::CodeGone => f.write_str("code no longer registered"),
            Self::Update(e) => write!(f, "{e}"),
            Self::StoreFailed(e) => f.write_str(e),
            Self::AnswerFailed(e) => write!(f, "cannot make the answer: {e}"),
            Self::TokenRefused => f.write_str("token not accepted"),
            Self::EnrollLimited => f.write_str("too many failed enrollments"),
            Self::EnrollRefused(why) => f.write_str(why),
            Self::EnrollMalformed(why) => write!(f, "malformed enrollment: {why}"),
            Self::Suspended => f.write_str("the key's customer is suspended"),
            Self::AwaitingApproval => f.write_str("the terminal awaits approval"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsig_refusals_answer_as_rfc_8945_says() {
        let bad_time = Refusal::Replay;
        assert_eq!(bad_time.rcode(), ResponseCode::NotAuth);
        assert_eq!(bad_time.tsig_error(), Some(TsigError::BadTime));
        let malformed = Refusal::Tsig(Box::new(TsigFailure::Malformed("x".into())));
        assert_eq!(malformed.rcode(), ResponseCode::FormErr);
        assert_eq!(malformed.tsig_error(), None);
        assert_eq!(malformed.update_outcome(), UpdateOutcome::Malformed);
    }

    #[test]
    fn not_ready_carries_an_extended_error_and_a_store_failure_none() {
        assert_eq!(
            Refusal::NotReady.extended_error(),
            Some((EDE_NOT_READY, None))
        );
        assert_eq!(Refusal::NotReady.rcode(), ResponseCode::ServFail);
        assert_eq!(Refusal::StoreFailed("disk".into()).extended_error(), None);
    }
}
