//! An enrollment ([`zones::enroll`]): the UPDATE's one TXT record read as the terminal's
//! request, the directory's [`zones::Directory::enroll`] (token, customer, code, key
//! agreement, group commit), and the answer's TXT record in the additional section, signed
//! with the token's key by the finish stage.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::Request;
use tracing::info;
use zones::Directory;
use zones::directory::{DirectoryError, Enrolled, Enrollment, Freshness};
use zones::enroll::{self, EnrollError, TokenId};

use crate::refusal::Refusal;
use crate::response::Reply;
use crate::tsig::SignedRequest;

/// Enrolls the terminal `request` asks for with token `id`; answers once it is durable.
pub async fn answer(
    directory: &Directory,
    request: &Request,
    id: &TokenId,
    signed: &SignedRequest,
    now: u64,
) -> Result<Reply, Refusal> {
    let asked = read(directory, request)?;
    let enrollment = Enrollment {
        token: id.clone(),
        request: asked,
        freshness: Freshness {
            time_signed: signed.time_signed,
            mac: signed.request_mac.clone(),
        },
    };
    let enrolled = directory.enroll(enrollment, now).await.map_err(refusal)?;
    let Enrolled {
        terminal,
        public,
        replaced,
        awaiting,
    } = enrolled;
    let (code, kid, mid, key) = (
        &terminal.code,
        &terminal.kid,
        &terminal.mid,
        &terminal.key.name,
    );
    let src = request.src();
    info!(%src, token = %id, %kid, %code, %mid, %key, replaced, awaiting, outcome = "accepted", "enroll");
    let answer = enroll::Answer {
        code: terminal.code.clone(),
        key_name: terminal.key.name.clone(),
        public,
    };
    let zone = directory.zone();
    let txt = hickory_proto::rr::rdata::TXT::new(answer.to_strings());
    let mut reply = Reply::new(request, ResponseCode::NoError);
    reply.additionals.push(Record::from_rdata(
        enroll::owner(zone.origin()),
        0,
        RData::TXT(txt),
    ));
    Ok(reply)
}

/// The terminal's request: a zone section naming our zone, no prerequisites, and one TXT
/// record at `_enroll.<zone>` in the update section.
fn read(directory: &Directory, request: &Request) -> Result<enroll::Request, Refusal> {
    let malformed = |why: &str| Refusal::EnrollMalformed(why.to_owned());
    let zone = directory.zone();
    let origin = zone.origin();
    let names_zone = match request.queries.queries() {
        [q] => Name::from(q.name().clone()) == *origin && q.query_type() == RecordType::SOA,
        _ => false,
    };
    if !names_zone {
        return Err(malformed(
            "the zone section must name the directory's zone (SOA)",
        ));
    }
    if !request.answers.is_empty() {
        return Err(malformed("an enrollment has no prerequisites"));
    }
    let [record] = request.authorities.as_slice() else {
        return Err(malformed(
            "the update section must hold exactly one TXT record",
        ));
    };
    let strings = match &record.data {
        RData::TXT(txt)
            if record.name == enroll::owner(origin) && record.dns_class == DNSClass::IN =>
        {
            txt.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
        }
        _ => {
            return Err(malformed(
                "the update section must hold one TXT record at _enroll",
            ));
        }
    };
    enroll::Request::from_strings(&strings).map_err(|e| Refusal::EnrollMalformed(e.to_string()))
}

/// What the terminal is told when the directory refuses it. A token that cannot enroll
/// gets the one answer every token failure gets.
fn refusal(e: DirectoryError) -> Refusal {
    let refused = |why: String| Refusal::EnrollRefused(why);
    match e {
        DirectoryError::TokenRefused => Refusal::TokenRefused,
        DirectoryError::Suspended(kid) => refused(format!("customer {kid} is suspended")),
        DirectoryError::TerminalLimit { kid, limit } => refused(format!(
            "customer {kid} has reached its limit of {limit} terminals"
        )),
        // The other customer is not named: the enrollee has no business knowing it.
        DirectoryError::MachineOfAnother { mid, .. } => refused(format!(
            "machine {mid} is registered under another customer"
        )),
        DirectoryError::CodeTaken { code, .. } => refused(format!("calling code {code} is taken")),
        e @ (DirectoryError::OutOfRange { .. }
        | DirectoryError::NoFreeCode(_)
        | DirectoryError::Importing(_)) => refused(e.to_string()),
        DirectoryError::Stale { .. } => Refusal::Replay,
        DirectoryError::Enroll(e @ EnrollError::Agreement) => {
            Refusal::EnrollMalformed(e.to_string())
        }
        e => Refusal::StoreFailed(e.to_string()),
    }
}
