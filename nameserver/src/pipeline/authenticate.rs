//! Stage 3: the request's TSIG (RFC 8945), checked once. What comes out is who asks and
//! how the answer is signed; every later stage reads the principal, none reads the TSIG.

use hickory_server::server::Request;
use zones::Directory;
use zones::identity::CallingCode;
use zones::key::TsigKey;

use crate::refusal::Refusal;
use crate::tsig::{self, Authentication, KeyOwner, ResponseSigning, SignedRequest};

/// Who sent a request.
#[derive(Debug)]
pub enum Principal {
    /// No TSIG.
    Anonymous,
    /// A terminal's key: it may update its own name and make signed lookups.
    Terminal(CallingCode, SignedRequest),
    /// A transfer key: it may transfer the zone and make signed lookups.
    Transfer(SignedRequest),
}

impl Principal {
    /// True for a verified key of either kind.
    pub fn is_signed(&self) -> bool {
        !matches!(self, Self::Anonymous)
    }
}

/// The principal of `request` and how its answer is signed; `Err` when its TSIG failed.
pub fn authenticate(
    request: &Request,
    directory: &Directory,
    transfer_keys: &[TsigKey],
    now: u64,
) -> (ResponseSigning, Result<Principal, Refusal>) {
    let keys = tsig::Keys {
        directory,
        transfer: transfer_keys,
    };
    let fudge = directory.limits().fudge;
    let auth = tsig::verify_request(
        request.as_slice(),
        request.signature.as_deref(),
        &keys,
        fudge,
        now,
    );
    let signing = ResponseSigning::for_request(&auth, request.metadata.id, now);
    let principal = match auth {
        Authentication::Unsigned => Ok(Principal::Anonymous),
        Authentication::Signed(signed) => Ok(match &signed.owner {
            KeyOwner::Terminal(code) => Principal::Terminal(code.clone(), signed),
            KeyOwner::Transfer => Principal::Transfer(signed),
        }),
        Authentication::Failed(failure) => Err(Refusal::Tsig(Box::new(failure))),
    };
    (signing, principal)
}
