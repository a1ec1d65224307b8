//! A standard query's answer (RFC 1035 §4.1.1): the question checked, then [`crate::query`]
//! makes the answer from the zone and the directory's view.

use hickory_proto::rr::{DNSClass, Name};
use hickory_server::server::Request;
use zones::Directory;

use crate::query;
use crate::refusal::Refusal;
use crate::response::Reply;

/// The answer to `request`'s one question. `dnssec_ok`: DO set and the answer is not a
/// slip (a slip carries only the RCODE; nothing is signed for it).
pub fn answer(
    directory: &Directory,
    request: &Request,
    dnssec_ok: bool,
    compact: bool,
    now: u64,
) -> Result<Reply, Refusal> {
    let [question] = request.queries.queries() else {
        return Err(Refusal::NotOneQuestion);
    };
    if question.query_class() != DNSClass::IN {
        return Err(Refusal::NotInternet);
    }
    let mut reply = Reply::authoritative(request, hickory_proto::op::ResponseCode::NoError);
    let view = directory.view();
    let name = Name::from(question.name().clone());
    query::answer(
        &directory.zone(),
        &view,
        &query::Question {
            name: &name,
            qtype: question.query_type(),
            src: request.src(),
            dnssec_ok,
            compact,
        },
        now,
        &mut reply,
    )?;
    Ok(reply)
}
