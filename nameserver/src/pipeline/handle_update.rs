//! RFC 2136 UPDATE from a terminal's key, for its own name: the lease asked for, the key's
//! budget, then the directory's named steps, its redb commit and group fdatasync.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_server::server::Request;
use tracing::info;
use zones::Directory;
use zones::directory::{DirectoryError, Freshness};
use zones::identity::CallingCode;
use zones::update::{UpdateMessage, ZoneSection};

use super::admit;
use super::policy::Live;
use crate::refusal::Refusal;
use crate::response::Reply;
use crate::tsig::SignedRequest;

/// Applies the update `request` from the terminal `code`, signed as `signed`; answers
/// once it is durable.
pub async fn answer(
    directory: &Directory,
    live: &Live,
    request: &Request,
    code: &CallingCode,
    signed: &SignedRequest,
    now: u64,
) -> Result<Reply, Refusal> {
    let lease = requested_lease(request)?;
    let freshness = Freshness {
        time_signed: signed.time_signed,
        mac: signed.request_mac.clone(),
    };
    admit::update_budget(live, directory, code, &freshness)?;
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
    let done = directory
        .update(code, &message, &freshness, lease, now)
        .await
        .map_err(|e| match e {
            DirectoryError::Stale { .. } => {
                // A copy that raced the original past the early check: no budget spent.
                if let Some(limit) = &live.update_limit {
                    limit.refund(code);
                }
                Refusal::Replay
            }
            DirectoryError::Update(e) => Refusal::Update(e),
            DirectoryError::UnknownCode(_) => Refusal::CodeGone,
            e => Refusal::StoreFailed(e.to_string()),
        })?;
    let addresses = done.addresses.describe();
    let (changed, serial) = (done.changed, done.serial);
    let granted = done
        .lease
        .map_or_else(|| "none".to_owned(), |l| format!("{l}s"));
    let key = &signed.key_name;
    info!(%code, %key, outcome = "accepted", %addresses, changed, serial, lease = %granted, "update");
    let mut reply = Reply::new(request, ResponseCode::NoError);
    if let (Some(_), Some(granted)) = (lease, done.lease) {
        // RFC 9664 §4: the response carries the lease granted.
        let data = zones::lease::encode(granted);
        reply
            .edns_options
            .push(EdnsOption::Unknown(zones::lease::OPTION_CODE, data));
    }
    Ok(reply)
}

/// The lease the request asks for (RFC 9664), if any.
fn requested_lease(request: &Request) -> Result<Option<u32>, Refusal> {
    let option = request.edns.as_ref().and_then(|e| e.option(EdnsCode::UL));
    match option {
        None => Ok(None),
        Some(EdnsOption::Unknown(_, data)) => zones::lease::decode(data)
            .map(Some)
            .ok_or(Refusal::MalformedLease),
        Some(_) => Err(Refusal::MalformedLease),
    }
}
