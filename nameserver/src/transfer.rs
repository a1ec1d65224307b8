//! Zone transfers to secondaries: AXFR (RFC 5936) and IXFR (RFC 1995).
//!
//! ```text
//! AXFR  SOA, every record, SOA                       (split over as many messages as needed)
//!       signed zone: each RRset with its RRSIG, DNSKEY, NSEC3PARAM, the NSEC3 chain
//! IXFR  SOA(current)                                  when the secondary is up to date
//!       SOA(current) {SOA(old) removed… SOA(new) added…}… SOA(current)   from the journal
//!       signed zone: one condensed difference, RRSIGs and NSEC3s included
//!       the AXFR form                                 when its serial is older than the journal
//!                                                     (signed: or its signatures are not known)
//! ```
//! Only requests signed with a transfer key get here (the pipeline checks). AXFR needs TCP;
//! IXFR over UDP is answered with the current SOA alone, so the secondary retries over TCP
//! (RFC 1995 §2). A signed zone's IXFR is one difference from the secondary's serial to
//! now ([`signed_diff`]): the journal says which terminals changed and the signed zone
//! remembers, since start-up, the signatures each change replaced and the SOA signature
//! served at each serial (that at the serial the last run stopped at included).
//!
//! # Limitations
//! - A registered terminal without addresses owns no records, so it is not transferred:
//!   secondaries answer NXDOMAIN for it where the primary answers NODATA.

use std::collections::BTreeMap;

use hickory_proto::rr::{Name, Record, RecordType};
use zones::directory::{Addresses, View};
use zones::dnssec::{SignedZone, TerminalSigs};
use zones::identity::CodeKey;
use zones::journal::Delta;
use zones::serial::Serial;
use zones::zone::Zone;

use crate::query::{address_records, with_rrsigs};

/// The most bytes of records put in one transfer message, by a generous estimate (a message
/// may hold 64 KiB; compressed owner names make the real size about half the estimate).
const MESSAGE_BUDGET: usize = 60 * 1024;

/// What a transfer sends, and what kind it turned out to be.
#[derive(Debug)]
pub struct TransferPlan {
    pub kind: &'static str,
    pub records: Vec<Record>,
}

/// Every record of the zone except the SOA: static data, then terminals by code.
///
/// The terminals' stored addresses: the zone's content at the view's serial, which the
/// journal's deltas describe. A lease that ran out before the expiry sweep still counts
/// here (queries already answer without it); the sweep removes it with a serial increase.
pub fn zone_body(zone: &Zone, view: &View) -> Vec<Record> {
    let mut records: Vec<Record> = zone.static_records().cloned().collect();
    let mut entries: Vec<_> = view.entries().collect();
    entries.sort_unstable_by_key(|(key, _)| *key);
    for (key, hot) in entries {
        let owner = Name::from(zones::update::terminal_name(zone, &key.to_code()));
        records.extend(address_records(&owner, &hot.addresses, RecordType::ANY));
    }
    records
}

/// AXFR: SOA, the zone, SOA (a signed zone's SOA signature made at `now` if its serial
/// has none yet).
pub fn axfr(zone: &Zone, view: &View, now: u64) -> TransferPlan {
    let soa = zone.soa_record(view.serial());
    let mut records = vec![soa.clone()];
    match view.signed() {
        None => records.extend(zone_body(zone, view)),
        Some(signed) => {
            records.extend(signed.rrsig(zone, std::slice::from_ref(&soa), now));
            let mut body = zone_body(zone, view);
            body.extend(signed.dnskey_records(zone));
            body.push(zones::dnssec::nsec3::param_record(zone.origin()));
            records.extend(with_rrsigs(zone, signed, body, now, false));
            records.extend(signed.nsec3_chain(zone));
        }
    }
    records.push(soa);
    TransferPlan {
        kind: "AXFR",
        records,
    }
}

/// IXFR from the secondary's `serial`.
pub fn ixfr(zone: &Zone, view: &View, serial: u32, now: u64) -> TransferPlan {
    let current = zone.soa_record(view.serial());
    if serial == view.serial() || Serial(serial).is_newer_than(Serial(view.serial())) {
        return TransferPlan {
            kind: "IXFR (up to date)",
            records: vec![current],
        };
    }
    let chain = view.journal().since(serial);
    let reaches_now = chain
        .as_ref()
        .and_then(|c| c.last())
        .is_some_and(|d| d.to == view.serial());
    let Some(deltas) = chain.filter(|_| reaches_now) else {
        let mut full = axfr(zone, view, now);
        full.kind = "IXFR (full zone: serial older than the journal)";
        return full;
    };
    let mut records = vec![current.clone()];
    match view.signed() {
        None => {
            for delta in deltas {
                records.extend(delta_records(zone, delta));
            }
        }
        Some(signed) => match signed_diff(zone, view, signed, serial, &deltas, now) {
            Some(diff) => records.extend(diff),
            None => {
                let mut full = axfr(zone, view, now);
                full.kind = "IXFR (full zone: signed history not known)";
                return full;
            }
        },
    }
    records.push(current);
    TransferPlan {
        kind: "IXFR",
        records,
    }
}

/// A signed zone's changes from `serial` to now as one condensed difference (RFC 1995 §4
/// allows it): SOA(old) and its RRSIG as served, the removed records; SOA(new) and its
/// RRSIG, the added records. For each terminal the deltas touched, its records and
/// signatures (A, AAAA, NSEC3, RRSIGs) as they were at `serial` against now, and so for
/// each static name whose NSEC3 moved. `None` when that is not known: a change since then
/// signed every static name again or changed the keys, `serial` is older than the server's
/// start (what it signed before is not kept), or the old SOA was signed more than once;
/// the caller then sends the whole zone.
fn signed_diff(
    zone: &Zone,
    view: &View,
    signed: &SignedZone,
    serial: u32,
    deltas: &[&Delta],
    now: u64,
) -> Option<Vec<Record>> {
    let old_soa = zone.soa_record(serial);
    let old_rrsig = signed.served_soa_rrsig(&old_soa)?;
    // Per terminal, the addresses and signatures at `serial` (from the first delta that
    // touched each; `None`: unchanged since, as now).
    let mut before: BTreeMap<CodeKey, (Option<Addresses>, Option<Option<TerminalSigs>>)> =
        BTreeMap::new();
    let mut statics_before = BTreeMap::new();
    for delta in deltas {
        let step = signed.step(delta.to).filter(|s| !s.zone_wide)?;
        for change in &delta.changes {
            let entry = before.entry(CodeKey::from(&change.code)).or_default();
            entry.0.get_or_insert_with(|| change.old.clone());
        }
        for (key, sigs) in &step.before {
            before.entry(*key).or_default().1.get_or_insert(*sigs);
        }
        for (place, next, sig) in &step.statics_before {
            statics_before.entry(*place).or_insert((*next, *sig));
        }
    }
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for (place, then) in statics_before {
        difference(
            signed.static_nsec3(zone, place, Some(then)),
            signed.static_nsec3(zone, place, None),
            (&mut removed, &mut added),
        );
    }
    for (key, (addresses, sigs)) in before {
        let now_addresses = view
            .get(key)
            .map(|h| h.addresses.clone())
            .unwrap_or_default();
        let now_sigs = signed.terminal(key);
        let old = signed.terminal_records(
            zone,
            key,
            addresses.as_ref().unwrap_or(&now_addresses),
            sigs.unwrap_or(now_sigs).as_ref(),
        );
        let new = signed.terminal_records(zone, key, &now_addresses, now_sigs.as_ref());
        difference(old, new, (&mut removed, &mut added));
    }
    let new_soa = zone.soa_record(view.serial());
    let new_rrsig = signed.rrsig(zone, std::slice::from_ref(&new_soa), now)?;
    let mut records = vec![old_soa, old_rrsig];
    records.extend(removed);
    records.push(new_soa);
    records.push(new_rrsig);
    records.extend(added);
    Some(records)
}

/// One delta in IXFR form: SOA(old), removed records, SOA(new), added records.
fn delta_records(zone: &Zone, delta: &Delta) -> Vec<Record> {
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for change in &delta.changes {
        let owner = Name::from(zones::update::terminal_name(zone, &change.code));
        difference(
            records_of(&owner, &change.old),
            records_of(&owner, &change.new),
            (&mut removed, &mut added),
        );
    }
    let mut records = vec![zone.soa_record(delta.from)];
    records.extend(removed);
    records.push(zone.soa_record(delta.to));
    records.extend(added);
    records
}

/// Adds to `removed` what of `old` is not in `new`, and to `added` the reverse.
fn difference(
    old: Vec<Record>,
    new: Vec<Record>,
    (removed, added): (&mut Vec<Record>, &mut Vec<Record>),
) {
    removed.extend(old.iter().filter(|r| !new.contains(r)).cloned());
    added.extend(new.into_iter().filter(|r| !old.contains(r)));
}

fn records_of(owner: &Name, addresses: &Addresses) -> Vec<Record> {
    address_records(owner, addresses, RecordType::ANY)
}

/// Splits records into messages of about [`MESSAGE_BUDGET`] bytes each.
pub fn split(records: Vec<Record>) -> Vec<Vec<Record>> {
    let mut messages = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for record in records {
        // Owner name, type, class, TTL, length, and the data (at most a few hundred bytes here).
        let estimate = record.name.len() + 10 + record.data.to_string().len() + 16;
        if size + estimate > MESSAGE_BUDGET && !current.is_empty() {
            messages.push(std::mem::take(&mut current));
            size = 0;
        }
        size += estimate;
        current.push(record);
    }
    if !current.is_empty() {
        messages.push(current);
    }
    messages
}

/// The zone as an RFC 1035 zone file (for `nameserver export`).
pub fn zone_file(zone: &Zone, view: &View) -> String {
    let mut text = format!(
        "; zone {} serial {} exported by the calling-code directory\n",
        zone.origin(),
        view.serial()
    );
    text.push_str(&format!("{}\n", zone.soa_record(view.serial())));
    for record in zone_body(zone, view) {
        text.push_str(&format!("{record}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::A;

    use super::*;

    fn a(name: &str, ip: [u8; 4]) -> Record {
        Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            60,
            RData::A(A::from(Ipv4Addr::from(ip))),
        )
    }

    #[test]
    fn split_keeps_every_record_in_order_within_the_budget() {
        let records: Vec<Record> = (0..20_000u32)
            .map(|i| {
                a(
                    &format!("{}.dial.example.", 5_550_000 + i),
                    [192, 0, 2, (i % 250) as u8],
                )
            })
            .collect();
        let messages = split(records.clone());
        assert!(messages.len() > 5);
        let flat: Vec<Record> = messages.iter().flatten().cloned().collect();
        assert_eq!(flat, records);
        for m in &messages {
            let bytes: usize = m.iter().map(|r| r.name.len() + 30).sum();
            assert!(bytes < 64 * 1024);
        }
    }
}
