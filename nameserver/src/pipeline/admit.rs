//! Stage 4: admission, one verdict per request. Response rate limiting (RRL) for every UDP
//! answer, refusals included, unless the asker proved itself with a verified TSIG or a
//! valid server cookie; then the rules of who may ask what: signed lookups, transfer keys,
//! and a terminal key's update budget.

use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::rr::RecordType;
use zones::Directory;
use zones::directory::Freshness;
use zones::identity::CallingCode;

use super::authenticate::Principal;
use super::classify::Kind;
use super::policy::Live;
use crate::config::LookupPolicy;
use crate::cookie::CookieState;
use crate::metrics::{Metrics, Transport};
use crate::ratelimit::Verdict;
use crate::refusal::Refusal;
use crate::tsig::SignedRequest;

/// RRL's verdict for an answer to `src`. `proven`: the asker showed a verified TSIG or a
/// valid server cookie; TCP answers are never limited (the handshake proves the address).
#[inline]
pub fn rate(
    live: &Live,
    metrics: Option<&Metrics>,
    transport: Transport,
    proven: bool,
    src: IpAddr,
) -> Verdict {
    if transport != Transport::Udp || proven {
        return Verdict::Answer;
    }
    let verdict = match &live.rrl {
        Some(rrl) => rrl.check(src, Instant::now()),
        None => Verdict::Answer,
    };
    if let (Some(m), false) = (metrics, verdict == Verdict::Answer) {
        m.rate_limited(verdict);
    }
    verdict
}

/// True when the asker proved itself: a verified, fresh TSIG or a valid server cookie.
pub fn proven(authentic: bool, cookie: &CookieState) -> bool {
    authentic || matches!(cookie, CookieState::Valid(_))
}

/// What an admitted request may do, with the key it was signed with where that matters.
#[derive(Debug)]
pub enum Permit<'p> {
    Query,
    /// A transfer of this type, by the holder of this transfer key.
    Transfer(RecordType, &'p SignedRequest),
    /// An update of this terminal's own name, signed with its key.
    Update(&'p CallingCode, &'p SignedRequest),
    /// An enrollment with this token, signed with its key.
    Enroll(&'p zones::enroll::TokenId, &'p SignedRequest),
    /// Another opcode.
    Other,
}

/// Whether `principal` may make a request of `kind`, before its handler runs.
#[inline]
pub fn allowed<'p>(
    live: &Live,
    kind: Kind,
    principal: &'p Principal,
) -> Result<Permit<'p>, Refusal> {
    match (kind, principal) {
        (Kind::Enroll, Principal::Enrollee(id, signed)) => Ok(Permit::Enroll(id, signed)),
        // A token authorises nothing but its enrollments.
        (Kind::Enroll, _) | (_, Principal::Enrollee(..)) => Err(Refusal::TokenRefused),
        (Kind::Query, Principal::Anonymous) if live.policy.lookups == LookupPolicy::Signed => {
            Err(Refusal::LookupNotSigned)
        }
        (Kind::Query, _) => Ok(Permit::Query),
        (Kind::Transfer(qtype), Principal::Transfer(signed)) => Ok(Permit::Transfer(qtype, signed)),
        (Kind::Transfer(_), _) => Err(Refusal::TransferNotSigned),
        (Kind::Update, Principal::Terminal(code, signed)) => Ok(Permit::Update(code, signed)),
        (Kind::Update, Principal::Anonymous) => Err(Refusal::UpdateNotSigned),
        (Kind::Update, Principal::Transfer(_)) => Err(Refusal::UpdateByTransferKey),
        (Kind::Other, _) => Ok(Permit::Other),
    }
}

/// A terminal's update against its budget. Replays are refused before they touch it: a
/// stranger's copies of a captured update must not lock the terminal out. (Without a
/// budget, the directory's own check under its lock is the only one needed.)
pub fn update_budget(
    live: &Live,
    directory: &Directory,
    code: &CallingCode,
    freshness: &Freshness,
) -> Result<(), Refusal> {
    let Some(limit) = &live.update_limit else {
        return Ok(());
    };
    if !directory.is_fresh(code, freshness) {
        return Err(Refusal::Replay);
    }
    if !limit.take(code, Instant::now()) {
        return Err(Refusal::UpdateRateLimited);
    }
    Ok(())
}
