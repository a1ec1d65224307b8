//! `updater enroll`: the terminal's side of enrollment ([`zones::enroll`] describes the
//! exchange). A fresh X25519 key pair, one UPDATE signed with the token's key, the answer's
//! TSIG verified with it, and the terminal's key derived here: the directory never sends
//! it, and the token's secret never leaves this machine either.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record};
use zones::enroll::{self, Derivation, Ephemeral, Token};
use zones::identity::{CallingCode, Mid};
use zones::key::{TerminalKeyName, TsigKey};

use crate::client::update_message;
use crate::exchange::{ExchangeError, exchange, extended_error};
use crate::tls::Channel;

/// One enrollment to make.
#[derive(Debug)]
pub struct Enroll {
    pub server: SocketAddr,
    pub zone: Name,
    pub token: Token,
    pub mid: Mid,
    /// The code asked for; `None`: the directory picks one.
    pub code: Option<CallingCode>,
    pub timeout: Duration,
    pub channel: Channel,
}

/// Why an enrollment did not give a key.
#[derive(Debug, thiserror::Error)]
pub enum EnrollFailure {
    #[error(
        "the directory did not accept the token: it is unknown, wrong, expired, revoked or used up (or this machine's clock is more than 5 minutes off); ask for a new token"
    )]
    TokenRefused,
    #[error("the directory refused the enrollment: {0}")]
    Refused(String),
    #[error("the directory refused the enrollment as a replay; run `updater enroll` again")]
    Replay,
    #[error("the directory answered {0}")]
    Answered(String),
    #[error("the directory's answer is not an enrollment: {0}")]
    Malformed(String),
    #[error(transparent)]
    Exchange(ExchangeError),
    #[error("key agreement failed: {0}")]
    Agreement(String),
}

/// What enrolling gave: the code and the terminal's key.
#[derive(Debug)]
pub struct Enrolled {
    pub code: CallingCode,
    pub key: TsigKey,
}

/// Enrolls this terminal: one exchange, the key derived on this side.
pub async fn enroll(e: &Enroll) -> Result<Enrolled, EnrollFailure> {
    let ours = Ephemeral::generate().map_err(|e| EnrollFailure::Agreement(e.to_string()))?;
    let client = ours.public();
    let request = enroll::Request {
        mid: e.mid.clone(),
        code: e.code.clone(),
        public: client,
    };
    let message = request_message(&e.zone, &request);
    let token_key = e.token.tsig_key(&e.zone);
    let answer = exchange(e.server, message, Some(&token_key), e.timeout, &e.channel)
        .await
        .map_err(|err| match err {
            ExchangeError::BadKey { .. } | ExchangeError::BadSig { .. } => {
                EnrollFailure::TokenRefused
            }
            ExchangeError::NotFresh => EnrollFailure::Replay,
            ExchangeError::Unsigned {
                rcode: ResponseCode::Refused,
                reason,
                ..
            } => EnrollFailure::Refused(reason),
            other => EnrollFailure::Exchange(other),
        })?;
    let given = read_answer(&e.zone, &answer)?;
    let name = TerminalKeyName::parse(&given.key_name)
        .ok_or_else(|| EnrollFailure::Malformed(format!("key name {}", given.key_name)))?;
    if name.code != given.code || name.mid != e.mid || name.kid != e.token.kid {
        return Err(EnrollFailure::Malformed(format!(
            "key {} is not this machine's",
            given.key_name
        )));
    }
    let secret = ours
        .derive(
            &given.public,
            &Derivation {
                verifier: &e.token.verifier(),
                key_name: &given.key_name,
                mid: &e.mid,
                client: &client,
                server: &given.public,
            },
        )
        .map_err(|e| EnrollFailure::Agreement(e.to_string()))?;
    Ok(Enrolled {
        code: given.code,
        key: TsigKey {
            name: given.key_name,
            algorithm: enroll::ALGORITHM,
            secret,
        },
    })
}

/// The enrollment UPDATE: zone section, one TXT at `_enroll.<zone>`, and an OPT so that the
/// directory can say why it refuses (Extended DNS Error).
pub fn request_message(zone: &Name, request: &enroll::Request) -> Message {
    let mut record = Record::from_rdata(
        enroll::owner(zone),
        0,
        RData::TXT(TXT::new(request.to_strings())),
    );
    record.dns_class = DNSClass::IN;
    let mut message = update_message(zone, vec![record]);
    message.set_edns(Edns::new());
    message
}

/// The directory's answer, or why it refused.
fn read_answer(zone: &Name, answer: &Message) -> Result<enroll::Answer, EnrollFailure> {
    match answer.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::Refused => return Err(EnrollFailure::Refused(extended_error(answer))),
        ResponseCode::NotAuth => return Err(EnrollFailure::TokenRefused),
        rcode => {
            let why = extended_error(answer);
            return Err(EnrollFailure::Answered(format!("{rcode}: {why}")));
        }
    }
    let owner = enroll::owner(zone);
    let strings = answer
        .additionals
        .iter()
        .find_map(|r| match &r.data {
            RData::TXT(txt) if r.name == owner => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .ok_or_else(|| EnrollFailure::Malformed("no TXT record at _enroll".into()))?;
    enroll::Answer::from_strings(&strings).map_err(|e| EnrollFailure::Malformed(e.to_string()))
}

/// The format of the key file `enroll` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyFormat {
    /// BIND's `key "NAME" { algorithm ...; secret "..."; };` (`nsupdate -k`).
    #[default]
    Bind,
    /// Knot's `hmac-sha256:NAME:SECRET` (`knsupdate -k`, `kdig -k`).
    Knot,
}

/// Writes `key` in `format` to `path`, owner-only (0600) from the start, and flushed to
/// disk before this returns. The updater reads either format.
pub fn write_key_file(path: &Path, key: &TsigKey, format: KeyFormat) -> std::io::Result<()> {
    let text = match format {
        KeyFormat::Bind => key.to_key_file(),
        KeyFormat::Knot => key.to_knot_key_file(),
    };
    zones::secret_file::write(path, &text, zones::secret_file::Durability::Synced)
}
