//! Stage 3: the request's TSIG (RFC 8945), checked once. What comes out is who asks and
//! how the answer is signed; every later stage reads the principal, none reads the TSIG.
//!
//! An enrollment is checked against the tokens' keys only, and every way a token can fail
//! (no TSIG, unknown, wrong MAC, signed too far from our time; expired, revoked or used up
//! tokens are not found at all) gives the same refusal and the same unsigned BADKEY. A
//! terminal's key whose customer is suspended, or whose terminal waits for approval, is
//! refused here too, for every kind of request.

use hickory_server::server::Request;
use zones::Directory;
use zones::directory::Standing;
use zones::enroll::TokenId;
use zones::identity::CallingCode;
use zones::key::{TerminalKeyName, TsigKey};

use super::classify::Kind;
use crate::refusal::Refusal;
use crate::tsig::{self, Authentication, KeyOwner, ResponseSigning, SignedRequest, TsigFailure};

/// Who sent a request.
#[derive(Debug)]
pub enum Principal {
    /// No TSIG.
    Anonymous,
    /// A terminal's key: it may update its own name and make signed lookups.
    Terminal(CallingCode, SignedRequest),
    /// A transfer key: it may transfer the zone and make signed lookups.
    Transfer(SignedRequest),
    /// An enrollment token's key: it may enroll one terminal of its customer.
    Enrollee(TokenId, SignedRequest),
}

impl Principal {
    /// True for a verified key of any kind.
    pub fn is_signed(&self) -> bool {
        !matches!(self, Self::Anonymous)
    }
}

/// The principal of `request` (of `kind`) and how its answer is signed; `Err` when its
/// TSIG failed or its key may not be used now.
pub fn authenticate(
    request: &Request,
    kind: Kind,
    directory: &Directory,
    transfer_keys: &[TsigKey],
    now: u64,
) -> (ResponseSigning, Result<Principal, Refusal>) {
    let enrollment = kind == Kind::Enroll;
    let keys = tsig::Keys {
        directory,
        transfer: transfer_keys,
        enrollment,
        now,
    };
    let fudge = directory.limits().fudge;
    let auth = tsig::verify_request(
        request.as_slice(),
        request.signature.as_deref(),
        &keys,
        fudge,
        now,
    );
    if enrollment {
        return enrollee(auth, request.metadata.id, now);
    }
    let signing = ResponseSigning::for_request(&auth, request.metadata.id, now);
    let principal = match auth {
        Authentication::Unsigned => Ok(Principal::Anonymous),
        Authentication::Signed(signed) => match signed.owner.clone() {
            KeyOwner::Terminal(code) => standing(directory, &code, &signed.key_name)
                .map(|()| Principal::Terminal(code, signed)),
            KeyOwner::Transfer => Ok(Principal::Transfer(signed)),
            // Token keys are only looked up for enrollments.
            KeyOwner::Token(_) => Err(Refusal::TokenRefused),
        },
        Authentication::Failed(failure) => Err(Refusal::Tsig(Box::new(failure))),
    };
    (signing, principal)
}

/// An enrollment's principal: a token's verified key, or the one refusal for every failure.
fn enrollee(
    auth: Authentication,
    request_id: u16,
    now: u64,
) -> (ResponseSigning, Result<Principal, Refusal>) {
    let (name, algorithm) = match auth {
        Authentication::Signed(signed) => {
            let signing = ResponseSigning::for_request(
                &Authentication::Signed(signed.clone()),
                request_id,
                now,
            );
            return match signed.owner.clone() {
                KeyOwner::Token(id) => (signing, Ok(Principal::Enrollee(id, signed))),
                _ => (ResponseSigning::None, Err(Refusal::TokenRefused)),
            };
        }
        Authentication::Unsigned | Authentication::Failed(TsigFailure::Malformed(_)) => {
            return (ResponseSigning::None, Err(Refusal::TokenRefused));
        }
        Authentication::Failed(TsigFailure::BadKey {
            key_name,
            algorithm,
        }) => (key_name, algorithm),
        Authentication::Failed(TsigFailure::BadSig { signer }) => {
            (signer.signer_name().clone(), signer.algorithm().clone())
        }
        Authentication::Failed(TsigFailure::BadTime(signed)) => (
            signed.signer.signer_name().clone(),
            signed.signer.algorithm().clone(),
        ),
    };
    let signing = ResponseSigning::bad_key(name, algorithm, request_id, now);
    (signing, Err(Refusal::TokenRefused))
}

/// Refuses a terminal key whose customer is suspended or whose terminal awaits approval.
fn standing(directory: &Directory, code: &CallingCode, key_name: &str) -> Result<(), Refusal> {
    let Some(name) = TerminalKeyName::parse(key_name) else {
        return Ok(());
    };
    match directory.standing(code, &name.kid) {
        Standing::Good => Ok(()),
        Standing::Suspended => Err(Refusal::Suspended),
        Standing::Awaiting => Err(Refusal::AwaitingApproval),
    }
}
