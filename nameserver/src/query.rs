//! Answers to standard queries, from the static zone and the directory's view.
//!
//! ```text
//! apex           SOA (current serial), NS (+ glue), static records
//! <code>.<zone>  A / AAAA of a registered terminal; NXDOMAIN if not registered;
//!                NODATA if registered without an address of the asked family
//! whoami.<zone>  A, AAAA or TXT of the address the query came from (TTL 0)
//! other names    static records, NODATA for existing names, NXDOMAIN otherwise
//! ```
//! Negative answers carry the SOA in the authority section (RFC 2308 §3), with the TTL
//! of negative caching.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use zones::directory::{Addresses, View};
use zones::identity::CallingCode;
use zones::zone::{NamePlace, Zone};

use crate::response::Reply;

/// What a lookup found.
#[derive(Debug, Default)]
struct Found {
    answers: Vec<Record>,
    additionals: Vec<Record>,
    /// False for NXDOMAIN.
    name_exists: bool,
}

/// Fills `reply` with the answer to `qname`/`qtype` from `src`.
pub fn answer(
    zone: &Zone,
    view: &View,
    qname: &Name,
    qtype: RecordType,
    src: SocketAddr,
    now: u64,
    reply: &mut Reply,
) {
    let found = match zone.place(qname) {
        NamePlace::Outside => {
            reply.metadata.response_code = ResponseCode::Refused;
            reply.metadata.authoritative = false;
            return;
        }
        NamePlace::Apex => apex(zone, view, qtype),
        NamePlace::Terminal(code) => terminal(zone, view, &code, qtype, now),
        NamePlace::BelowTerminal => Found::default(),
        NamePlace::Whoami => whoami(qname, qtype, src.ip()),
        NamePlace::Other => static_name(zone, &LowerName::new(qname), qtype),
    };
    if !found.name_exists {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    if found.answers.is_empty() {
        reply.authorities.push(zone.negative_soa(view.serial()));
    }
    reply.answers = found.answers;
    reply.additionals = found.additionals;
}

fn apex(zone: &Zone, view: &View, qtype: RecordType) -> Found {
    let origin = zone.lower_origin();
    let mut answers = Vec::new();
    if matches!(qtype, RecordType::SOA | RecordType::ANY) {
        answers.push(zone.soa_record(view.serial()));
    }
    if qtype == RecordType::ANY {
        answers.extend(zone.rrsets_at(origin).flatten().cloned());
    } else {
        answers.extend(zone.rrset(origin, qtype).iter().cloned());
    }
    let additionals = if qtype == RecordType::NS {
        glue(zone, &answers)
    } else {
        Vec::new()
    };
    Found {
        answers,
        additionals,
        name_exists: true,
    }
}

/// In-zone addresses of the name servers named in NS records.
fn glue(zone: &Zone, ns_records: &[Record]) -> Vec<Record> {
    let targets = ns_records.iter().filter_map(|r| match &r.data {
        RData::NS(ns) => Some(LowerName::new(&ns.0)),
        _ => None,
    });
    targets
        .flat_map(|t| {
            let v4 = zone.rrset(&t, RecordType::A).to_vec();
            let v6 = zone.rrset(&t, RecordType::AAAA).to_vec();
            v4.into_iter().chain(v6)
        })
        .collect()
}

/// A terminal's addresses; none once its lease has run out (offline: NODATA).
fn terminal(zone: &Zone, view: &View, code: &CallingCode, qtype: RecordType, now: u64) -> Found {
    let Some(entry) = view.terminal(code) else {
        return Found::default();
    };
    let owner = zones::update::terminal_name(zone, code);
    Found {
        answers: address_records(&Name::from(owner), entry.live(now), qtype),
        additionals: Vec::new(),
        name_exists: true,
    }
}

/// The A and/or AAAA records of a terminal's addresses.
pub fn address_records(owner: &Name, addresses: &Addresses, qtype: RecordType) -> Vec<Record> {
    let mut records = Vec::new();
    if matches!(qtype, RecordType::A | RecordType::ANY) {
        let set = &addresses.v4;
        records.extend(
            set.addrs
                .iter()
                .map(|a| Record::from_rdata(owner.clone(), set.ttl, RData::A(A::from(*a)))),
        );
    }
    if matches!(qtype, RecordType::AAAA | RecordType::ANY) {
        let set = &addresses.v6;
        records.extend(
            set.addrs
                .iter()
                .map(|a| Record::from_rdata(owner.clone(), set.ttl, RData::AAAA(AAAA::from(*a)))),
        );
    }
    records
}

/// The asker's own address, as seen here (after any NAT), like Knot's whoami module.
fn whoami(qname: &Name, qtype: RecordType, src: IpAddr) -> Found {
    let src = match src {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let data = match (qtype, src) {
        (RecordType::A | RecordType::ANY, IpAddr::V4(v4)) => Some(RData::A(A::from(v4))),
        (RecordType::AAAA | RecordType::ANY, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA::from(v6))),
        (RecordType::TXT, ip) => Some(RData::TXT(TXT::new(vec![ip.to_string()]))),
        _ => None,
    };
    Found {
        answers: data
            .map(|d| Record::from_rdata(qname.clone(), 0, d))
            .into_iter()
            .collect(),
        additionals: Vec::new(),
        name_exists: true,
    }
}

fn static_name(zone: &Zone, name: &LowerName, qtype: RecordType) -> Found {
    let mut answers: Vec<Record> = if qtype == RecordType::ANY {
        zone.rrsets_at(name).flatten().cloned().collect()
    } else {
        zone.rrset(name, qtype).to_vec()
    };
    if answers.is_empty() && qtype != RecordType::CNAME {
        // RFC 1034 §4.3.2: a CNAME answers any type; the resolver follows it.
        answers = zone.rrset(name, RecordType::CNAME).to_vec();
    }
    Found {
        answers,
        additionals: Vec::new(),
        name_exists: zone.static_name_exists(name),
    }
}
