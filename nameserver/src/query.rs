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
//!
//! With the zone signed and DO set, every RRset gets its RRSIG and negative answers their
//! NSEC3 proofs. Those answers follow the zone as signed (and transferred): a terminal's
//! stored addresses until the expiry sweep removes them, and NXDOMAIN for a registered
//! code without addresses, which has no records.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use zones::directory::View;
use zones::dnssec::SignedZone;
use zones::identity::CallingCode;
use zones::zone::{NamePlace, Zone};

use crate::plan::{self, TerminalPlan};
use crate::refusal::Refusal;
use crate::response::Reply;

/// What a lookup found.
#[derive(Debug, Default)]
struct Found {
    answers: Vec<Record>,
    additionals: Vec<Record>,
    /// False for NXDOMAIN.
    name_exists: bool,
}

/// What is asked.
#[derive(Debug)]
pub struct Question<'a> {
    pub name: &'a Name,
    pub qtype: RecordType,
    /// Where the query came from (for whoami).
    pub src: SocketAddr,
    /// The OPT's DO bit: DNSSEC records wanted.
    pub dnssec_ok: bool,
    /// Compact denial of existence (RFC 9824) instead of NSEC3.
    pub compact: bool,
}

/// Fills `reply` with the answer to `question`.
/// `Err` when the question is refused.
pub fn answer(
    zone: &Zone,
    view: &View,
    question: &Question<'_>,
    now: u64,
    reply: &mut Reply,
) -> Result<(), Refusal> {
    let (qname, qtype) = (question.name, question.qtype);
    if qtype == zones::dnssec::signed::NXNAME {
        // RFC 9824 §3.5: NXNAME is a meta-type, never asked for.
        return Err(Refusal::MetaType);
    }
    // DNSKEY, NSEC3PARAM and RRSIG asked for by type are answered with or without DO
    // (RFC 3225 §3: security records are left out "unless explicitly queried for").
    let zone_signed = view.signed();
    let signed = zone_signed.filter(|_| question.dnssec_ok);
    let place = zone.place(qname);
    let inside = !matches!(place, NamePlace::Outside);
    if plan::not_ready(view, question.dnssec_ok) && inside {
        // The signatures are being read at start-up: not ready (as BIND and Knot answer for
        // a zone not loaded yet), never an unsigned answer to a query that wants them. The
        // Extended DNS Error says why, for a resolver's logs.
        return Err(Refusal::NotReady);
    }
    if matches!(place, NamePlace::Outside) {
        return Err(Refusal::OutsideZone);
    }
    if let (NamePlace::Terminal(code), RecordType::A | RecordType::AAAA) = (&place, qtype) {
        // The fast path's answers, decided as it decides them.
        let key = zones::identity::CodeKey::from(code);
        let aaaa = qtype == RecordType::AAAA;
        match plan::terminal(view, key, aaaa, question.dnssec_ok, now) {
            TerminalPlan::Addresses {
                addresses,
                ttl,
                rrsig,
                ..
            } => {
                let owner = Name::from(zones::update::terminal_name(zone, code));
                reply.answers = address_records(&owner, addresses, qtype);
                if let (Some(sig), Some(signed)) = (rrsig, signed) {
                    reply
                        .answers
                        .push(signed.rrsig_record(&owner, qtype, ttl, &sig));
                }
                return Ok(());
            }
            TerminalPlan::Negative { exists } => {
                if !exists {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                }
                reply.authorities.push(zone.negative_soa(view.serial()));
                return Ok(());
            }
            TerminalPlan::NotReady => return Err(Refusal::NotReady),
            TerminalPlan::General => {}
        }
    }
    let found = match (qtype, zone_signed) {
        (RecordType::RRSIG, Some(zone_signed)) => {
            let records = records_at(zone, view, question, &place, RecordType::ANY, now);
            Found {
                answers: with_rrsigs(zone, zone_signed, records.answers, now, false)
                    .into_iter()
                    .filter(|r| r.record_type() == RecordType::RRSIG)
                    .collect(),
                additionals: Vec::new(),
                name_exists: records.name_exists,
            }
        }
        _ => records_at(zone, view, question, &place, qtype, now),
    };
    if let Some(signed) = signed {
        if qtype == RecordType::RRSIG && !found.answers.is_empty() {
            // The signatures are the answer: none is made over them.
            reply.answers = found.answers;
            return Ok(());
        }
        if question.compact && found.answers.is_empty() {
            let types = types_at(view, signed, qname, &place);
            return compact_answer(zone, view, signed, qname, types, now, reply);
        }
        signed_answer(zone, view, signed, qname, found, now, reply);
        return Ok(());
    }
    if !found.name_exists {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    if found.answers.is_empty() {
        reply.authorities.push(zone.negative_soa(view.serial()));
    }
    reply.answers = found.answers;
    reply.additionals = found.additionals;
    Ok(())
}

/// The records of `rtype` at the name's `place` (not outside the zone).
fn records_at(
    zone: &Zone,
    view: &View,
    question: &Question<'_>,
    place: &NamePlace,
    rtype: RecordType,
    now: u64,
) -> Found {
    let as_signed = question.dnssec_ok && view.signed().is_some();
    match place {
        NamePlace::Outside | NamePlace::BelowTerminal => Found::default(),
        NamePlace::Apex => apex(zone, view, rtype, view.signed(), question.compact),
        NamePlace::Terminal(code) => terminal(zone, view, code, rtype, now, as_signed),
        NamePlace::Whoami => whoami(question.name, rtype, question.src.ip()),
        NamePlace::Other => static_name(zone, &LowerName::new(question.name), rtype),
    }
}

/// The answer with DO to a signed zone: RRSIGs over every RRset, or the SOA and the NSEC3
/// proof (NODATA or NXDOMAIN, whichever the signed zone holds).
fn signed_answer(
    zone: &Zone,
    view: &View,
    signed: &SignedZone,
    qname: &Name,
    found: Found,
    now: u64,
    reply: &mut Reply,
) {
    if found.answers.is_empty() {
        reply.authorities = signed_negative_soa(zone, view, signed, now);
        let proof = if signed.exists(qname) {
            signed.nodata(zone, qname)
        } else {
            reply.metadata.response_code = ResponseCode::NXDomain;
            signed.nxdomain(zone, qname)
        };
        reply.authorities.extend(proof);
        return;
    }
    reply.answers = with_rrsigs(zone, signed, found.answers, now, true);
    reply.additionals = with_rrsigs(zone, signed, found.additionals, now, true);
}

/// A negative answer by compact denial (RFC 9824): NOERROR, the SOA and its RRSIG, and one
/// NSEC at the name (NXNAME in its bitmap when the name does not exist).
fn compact_answer(
    zone: &Zone,
    view: &View,
    signed: &SignedZone,
    qname: &Name,
    types: Option<Vec<RecordType>>,
    now: u64,
    reply: &mut Reply,
) -> Result<(), Refusal> {
    reply.authorities = signed_negative_soa(zone, view, signed, now);
    let proof = signed
        .compact_denial(qname, types, now)
        .map_err(|e| Refusal::SigningFailed(e.to_string()))?;
    reply.authorities.extend(proof);
    Ok(())
}

/// The authority section's SOA of a negative answer (RFC 2308 §3) and its RRSIG, both
/// with the negative-caching TTL.
fn signed_negative_soa(zone: &Zone, view: &View, signed: &SignedZone, now: u64) -> Vec<Record> {
    let soa = zone.soa_record(view.serial());
    let sig = signed.rrsig(zone, std::slice::from_ref(&soa), now);
    let mut records = vec![zone.negative_soa(view.serial())];
    records.extend(sig.map(|mut sig| {
        sig.ttl = zone.negative_ttl();
        sig
    }));
    records
}

/// The types `qname` holds in the signed zone; `None` if it does not exist there.
fn types_at(
    view: &View,
    signed: &SignedZone,
    qname: &Name,
    place: &NamePlace,
) -> Option<Vec<RecordType>> {
    match place {
        NamePlace::Terminal(code) => {
            let addresses = &view.terminal(code)?.addresses;
            let mut types = Vec::new();
            if !addresses.v4.addrs.is_empty() {
                types.push(RecordType::A);
            }
            if !addresses.v6.addrs.is_empty() {
                types.push(RecordType::AAAA);
            }
            (!types.is_empty()).then_some(types)
        }
        NamePlace::Whoami => Some(vec![RecordType::A, RecordType::AAAA, RecordType::TXT]),
        NamePlace::Apex | NamePlace::Other => signed.static_types(qname).map(<[_]>::to_vec),
        NamePlace::BelowTerminal | NamePlace::Outside => None,
    }
}

/// `records` with the RRSIG of each of their RRsets after it, at `now`. An RRset made per
/// query (whoami) is signed now when `sign_made`, and otherwise goes without.
pub fn with_rrsigs(
    zone: &Zone,
    signed: &SignedZone,
    records: Vec<Record>,
    now: u64,
    sign_made: bool,
) -> Vec<Record> {
    let mut out = Vec::with_capacity(records.len() * 2);
    let mut start = 0;
    for end in 1..=records.len() {
        let same = records.get(end).is_some_and(|r| {
            r.name == records[start].name && r.record_type() == records[start].record_type()
        });
        if same {
            continue;
        }
        let rrset = &records[start..end];
        let sig = signed.rrsig(zone, rrset, now).or_else(|| {
            sign_made
                .then(|| signed.sign_now(rrset, now).ok())
                .flatten()
        });
        out.extend_from_slice(rrset);
        out.extend(sig);
        start = end;
    }
    out
}

fn apex(
    zone: &Zone,
    view: &View,
    qtype: RecordType,
    signed: Option<&SignedZone>,
    compact: bool,
) -> Found {
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
    if let Some(signed) = signed {
        if matches!(qtype, RecordType::DNSKEY | RecordType::ANY) {
            answers.extend(signed.dnskey_records(zone));
        }
        if matches!(qtype, RecordType::NSEC3PARAM | RecordType::ANY) && !compact {
            answers.push(zones::dnssec::nsec3::param_record(zone.origin()));
        }
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

/// A terminal's addresses; none once its lease has run out (offline: NODATA). `as_signed`:
/// the addresses the signed zone holds (until the expiry sweep).
fn terminal(
    zone: &Zone,
    view: &View,
    code: &CallingCode,
    qtype: RecordType,
    now: u64,
    as_signed: bool,
) -> Found {
    let Some(entry) = view.terminal(code) else {
        return Found::default();
    };
    let owner = zones::update::terminal_name(zone, code);
    let addresses = plan::served_addresses(entry, as_signed, now);
    Found {
        answers: address_records(&Name::from(owner), addresses, qtype),
        additionals: Vec::new(),
        name_exists: true,
    }
}

/// The A and/or AAAA records of a terminal's addresses.
pub use zones::update::address_records;

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
