//! TSIG (RFC 8945) for requests and responses.
//!
//! [`verify_request`] follows §5.2: find the key (BADKEY), check the MAC (BADSIG), then the
//! time (BADTIME, against the smaller of the request's fudge and ours, so a client cannot
//! widen the window). hickory checks none of the time rules itself. Replays of updates are
//! caught later, under the directory's writer lock ([`zones::directory`]).
//!
//! [`ResponseSigning`] says how the answer is signed (§5.3): a normal or BADTIME response is
//! signed with the request's key and includes the request MAC; BADKEY and BADSIG responses
//! carry an unsigned TSIG record.

use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::{
    TsigAlgorithm, TsigError, make_tsig_record, signed_bitmessage_to_buf,
};
use hickory_proto::rr::{Name, Record, TSigner};
use zones::Directory;
use zones::identity::CallingCode;
use zones::key::{Algorithm, TsigKey};

/// Whose key signed a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOwner {
    /// A terminal's key: it may update its own name and make signed lookups.
    Terminal(CallingCode),
    /// A transfer key: it may transfer the zone (AXFR, IXFR) and make signed lookups.
    Transfer,
    /// An enrollment token's key: it may enroll its customer's terminals, nothing else.
    Token(zones::enroll::TokenId),
}

/// A request whose TSIG was verified.
#[derive(Clone)]
pub struct SignedRequest {
    pub owner: KeyOwner,
    pub key_name: String,
    pub signer: TSigner,
    pub request_mac: Vec<u8>,
    pub time_signed: u64,
}

impl std::fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRequest")
            .field("owner", &self.owner)
            .field("key_name", &self.key_name)
            .field("time_signed", &self.time_signed)
            .finish_non_exhaustive()
    }
}

/// Why a request's TSIG was not accepted (RFC 8945 §5.2).
#[derive(Clone)]
pub enum TsigFailure {
    /// No such key, or the algorithm is not the key's.
    BadKey {
        key_name: Name,
        algorithm: TsigAlgorithm,
    },
    /// The MAC does not verify.
    BadSig { signer: TSigner },
    /// Signed too far from our time; the MAC itself is good.
    BadTime(SignedRequest),
    /// The TSIG record cannot be read back from the raw message.
    Malformed(String),
}

impl std::fmt::Debug for TsigFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadKey { key_name, .. } => write!(f, "BadKey({key_name})"),
            Self::BadSig { signer } => write!(f, "BadSig({})", signer.signer_name()),
            Self::BadTime(req) => {
                write!(f, "BadTime({}, signed {})", req.key_name, req.time_signed)
            }
            Self::Malformed(m) => write!(f, "Malformed({m})"),
        }
    }
}

/// The TSIG state of a request.
#[derive(Debug)]
pub enum Authentication {
    Unsigned,
    Signed(SignedRequest),
    Failed(TsigFailure),
}

/// Verifies the TSIG of a request, if it has one. `raw` is the request as received.
pub fn verify_request(
    raw: &[u8],
    signature: Option<&Record<TSIG>>,
    keys: &Keys<'_>,
    our_fudge: u16,
    now: u64,
) -> Authentication {
    let Some(signature) = signature else {
        return Authentication::Unsigned;
    };
    let key_name = signature.name.to_lowercase().to_ascii();
    let Some((owner, key)) = keys.find(&key_name) else {
        return bad_key(signature);
    };
    if Algorithm::from_hickory(&signature.data.algorithm) != Some(key.algorithm) {
        return bad_key(signature);
    }
    let Ok(signer) = key.signer(our_fudge) else {
        return bad_key(signature);
    };
    let (tbv, record) = match signed_bitmessage_to_buf(raw, None, true) {
        Ok(parts) => parts,
        Err(e) => return Authentication::Failed(TsigFailure::Malformed(e.to_string())),
    };
    let tsig = &record.data;
    if tsig.mac.len() != key.algorithm.mac_len() || signer.verify(&tbv, &tsig.mac).is_err() {
        return Authentication::Failed(TsigFailure::BadSig { signer });
    }
    let request = SignedRequest {
        owner,
        key_name,
        signer,
        request_mac: tsig.mac.clone(),
        time_signed: tsig.time,
    };
    let window = u64::from(tsig.fudge.min(our_fudge));
    if now.abs_diff(tsig.time) > window {
        return Authentication::Failed(TsigFailure::BadTime(request));
    }
    Authentication::Signed(request)
}

fn bad_key(signature: &Record<TSIG>) -> Authentication {
    Authentication::Failed(TsigFailure::BadKey {
        key_name: signature.name.clone(),
        algorithm: signature.data.algorithm.clone(),
    })
}

/// The keys a request may be signed with: the terminals' and the transfer keys, or for an
/// enrollment only the tokens' keys.
#[derive(Debug)]
pub struct Keys<'a> {
    pub directory: &'a Directory,
    pub transfer: &'a [TsigKey],
    /// An enrollment: only a token's key, and only one that may enroll now.
    pub enrollment: bool,
    pub now: u64,
}

impl Keys<'_> {
    /// A transfer key by name, or a terminal's: its code is parsed from the name and its
    /// key read from the store (see [`Directory::terminal_key`]); for an enrollment, a
    /// token's ([`Directory::token_key`]).
    fn find(&self, key_name: &str) -> Option<(KeyOwner, TsigKey)> {
        if self.enrollment {
            let (id, key) = self.directory.token_key(key_name, self.now)?;
            return Some((KeyOwner::Token(id), key));
        }
        if let Some(key) = self.transfer.iter().find(|k| k.name == key_name) {
            return Some((KeyOwner::Transfer, key.clone()));
        }
        let (code, key) = self.directory.terminal_key(key_name)?;
        Some((KeyOwner::Terminal(code), key))
    }
}

/// How a response is signed.
#[derive(Clone, Debug)]
pub enum ResponseSigning {
    /// No TSIG record: the request was unsigned.
    None,
    /// Signed with the request's key (§5.3), optionally carrying a TSIG error.
    Signed {
        request: SignedRequest,
        error: Option<TsigError>,
    },
    /// An unsigned TSIG record carrying BADKEY or BADSIG (§5.3.2).
    Unsigned(Box<Record<TSIG>>),
}

impl ResponseSigning {
    /// The signing that answers a request in the given authentication state.
    pub fn for_request(auth: &Authentication, request_id: u16, now: u64) -> Self {
        match auth {
            Authentication::Unsigned | Authentication::Failed(TsigFailure::Malformed(_)) => {
                Self::None
            }
            Authentication::Signed(request) => Self::Signed {
                request: request.clone(),
                error: None,
            },
            Authentication::Failed(TsigFailure::BadTime(request)) => Self::Signed {
                request: request.clone(),
                error: Some(TsigError::BadTime),
            },
            Authentication::Failed(TsigFailure::BadKey {
                key_name,
                algorithm,
            }) => Self::Unsigned(Box::new(unsigned_error(
                key_name.clone(),
                algorithm.clone(),
                request_id,
                now,
                TsigError::BadKey,
            ))),
            Authentication::Failed(TsigFailure::BadSig { signer }) => {
                Self::Unsigned(Box::new(unsigned_error(
                    signer.signer_name().clone(),
                    signer.algorithm().clone(),
                    request_id,
                    now,
                    TsigError::BadSig,
                )))
            }
        }
    }

    /// An unsigned BADKEY (§5.3.2) for `key_name`: also how every refused enrollment token
    /// is answered, whatever was wrong with it, so that none is told apart.
    pub fn bad_key(key_name: Name, algorithm: TsigAlgorithm, request_id: u16, now: u64) -> Self {
        Self::Unsigned(Box::new(unsigned_error(
            key_name,
            algorithm,
            request_id,
            now,
            TsigError::BadKey,
        )))
    }

    /// A signing that answers a fresh-looking but replayed or out-of-order update: BADTIME.
    pub fn stale(request: &SignedRequest) -> Self {
        Self::Signed {
            request: request.clone(),
            error: Some(TsigError::BadTime),
        }
    }

    pub fn is_signed(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// True when the request's MAC verified and its time is fresh: the asker holds a key
    /// (BADKEY, BADSIG and BADTIME answers are not, so they stay under RRL).
    pub fn is_authentic(&self) -> bool {
        matches!(self, Self::Signed { error: None, .. })
    }

    /// The TSIG record for a response whose to-be-signed bytes (without TSIG) are `tbs`.
    pub fn sign(
        &self,
        tbs: &[u8],
        response_id: u16,
        now: u64,
    ) -> Result<Option<Box<Record<TSIG>>>, String> {
        match self {
            Self::None => Ok(None),
            Self::Unsigned(record) => Ok(Some(record.clone())),
            Self::Signed { request, error } => {
                sign_response(request, *error, tbs, response_id, now).map(Some)
            }
        }
    }

    /// An upper bound of the bytes the TSIG record adds to a response.
    pub fn overhead(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Unsigned(record) => record.name.len() + 64,
            Self::Signed { request, .. } => request.key_name.len() + 128,
        }
    }
}

/// RFC 8945 §5.3: MAC over request MAC, response and TSIG variables. For BADTIME (§5.2.3)
/// the Time Signed is the request's, so the client can check it, and Other Data is our time.
fn sign_response(
    request: &SignedRequest,
    error: Option<TsigError>,
    tbs: &[u8],
    response_id: u16,
    now: u64,
) -> Result<Box<Record<TSIG>>, String> {
    let signer = &request.signer;
    let bad_time = error == Some(TsigError::BadTime);
    let (time, other) = if bad_time {
        (request.time_signed, now.to_be_bytes()[2..].to_vec())
    } else {
        (now, Vec::new())
    };
    let stub = TSIG::new(
        signer.algorithm().clone(),
        time,
        signer.fudge(),
        Vec::new(),
        response_id,
        error,
        other,
    );
    let to_sign = signer
        .encode_response_tbs(&request.request_mac, tbs, &stub)
        .map_err(|e| e.to_string())?;
    let mac = signer.sign(&to_sign).map_err(|e| e.to_string())?;
    Ok(Box::new(make_tsig_record(
        signer.signer_name().clone(),
        stub.set_mac(mac),
    )))
}

/// RFC 8945 §5.3.1: the TSIG of a later message of a multi-message answer (zone transfers):
/// MAC over the prior MAC, this message, and only the timers (Time Signed, Fudge).
pub fn sign_subsequent(
    request: &SignedRequest,
    prior_mac: &[u8],
    tbs: &[u8],
    response_id: u16,
    now: u64,
) -> Result<Box<Record<TSIG>>, String> {
    let signer = &request.signer;
    let mut to_sign = Vec::with_capacity(prior_mac.len() + tbs.len() + 10);
    let prior_len = u16::try_from(prior_mac.len()).map_err(|e| e.to_string())?;
    to_sign.extend_from_slice(&prior_len.to_be_bytes());
    to_sign.extend_from_slice(prior_mac);
    to_sign.extend_from_slice(tbs);
    to_sign.extend_from_slice(&now.to_be_bytes()[2..]);
    to_sign.extend_from_slice(&signer.fudge().to_be_bytes());
    let mac = signer.sign(&to_sign).map_err(|e| e.to_string())?;
    let tsig = TSIG::new(
        signer.algorithm().clone(),
        now,
        signer.fudge(),
        mac,
        response_id,
        None,
        Vec::new(),
    );
    Ok(Box::new(make_tsig_record(
        signer.signer_name().clone(),
        tsig,
    )))
}

fn unsigned_error(
    key_name: Name,
    algorithm: TsigAlgorithm,
    request_id: u16,
    now: u64,
    error: TsigError,
) -> Record<TSIG> {
    make_tsig_record(
        key_name,
        TSIG::new(
            algorithm,
            now,
            300,
            Vec::new(),
            request_id,
            Some(error),
            Vec::new(),
        ),
    )
}
