//! AXFR and IXFR for a transfer key's holder: over UDP only the current SOA (RFC 1995 §2),
//! over TCP the planned records, streamed by [`super::finish`].

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use hickory_server::server::Request;
use zones::Directory;

use crate::metrics::Transport;
use crate::refusal::Refusal;
use crate::response::Reply;
use crate::transfer::{self, TransferPlan};

/// How long a transfer waits for a signed start to put its signatures in force before it
/// is refused (SERVFAIL): seconds at a million terminals, far more at a first signing.
const SIGNED_START_WAIT: Duration = Duration::from_secs(30);

/// What a transfer request gets.
#[derive(Debug)]
pub enum Transfer {
    /// Over UDP: the current SOA, which sends the secondary to TCP.
    Soa(Reply),
    /// Over TCP: the records to stream.
    Records(TransferPlan),
}

/// The answer to a transfer request of `qtype`; the key was checked before.
pub async fn answer(
    directory: &Directory,
    request: &Request,
    qtype: RecordType,
    compact: bool,
    transport: Transport,
    now: u64,
) -> Result<Transfer, Refusal> {
    if compact {
        // Compact denial is made per answer: a secondary could not deny anything.
        return Err(Refusal::CompactDenialZone);
    }
    let zone = directory.zone();
    let [question] = request.queries.queries() else {
        return Err(Refusal::NotOneQuestion);
    };
    if question.name() != zone.lower_origin() {
        return Err(Refusal::TransferOtherZone);
    }
    if transport == Transport::Udp {
        // Never waits, not even for a signed start.
        if qtype == RecordType::AXFR {
            return Err(Refusal::AxfrOverUdp);
        }
        let mut reply = Reply::authoritative(request, ResponseCode::NoError);
        reply.answers = vec![zone.soa_record(directory.view().serial())];
        return Ok(Transfer::Soa(reply));
    }
    if directory.view().signatures_pending() {
        // A signed start is putting its signatures in force (a moment): the transfer
        // waits for it rather than fail, which would send the secondary to its retry
        // timer or to a full transfer.
        let _ = tokio::time::timeout(SIGNED_START_WAIT, directory.signatures_ready()).await;
    }
    let view = directory.view();
    if view.signatures_pending() {
        // Never the zone without its signatures: the secondary asks again.
        return Err(Refusal::NotReady);
    }
    if qtype == RecordType::AXFR {
        return Ok(Transfer::Records(transfer::axfr(&zone, &view, now)));
    }
    // RFC 1995 §3: the secondary's SOA is in the authority section.
    let serial = request.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    });
    let serial = serial.ok_or(Refusal::IxfrWithoutSoa)?;
    Ok(Transfer::Records(transfer::ixfr(&zone, &view, serial, now)))
}
