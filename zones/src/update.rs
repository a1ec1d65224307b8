//! The RFC 2136 update engine, as named steps over the current zone contents:
//!
//! ```text
//! check_zone_section  §3.1   one SOA question for our zone, class IN
//! check_prerequisites §3.2   name in use / not in use, RRset exists / not, RRset equality
//! prescan             §3.4.1 every update RR is well formed and inside the zone
//! authorize           §3.3   the key's policy: its own name, A and AAAA only
//! apply               §3.4.2 on a copy of the terminal's addresses; then the caps
//! ```
//!
//! Nothing here writes: [`plan`] returns the terminal's new address sets, and the
//! [`crate::directory`] commits them (with the new serial) in one transaction.
//!
//! # Policy
//! - A terminal key may add, delete and replace the A and AAAA records of its own name,
//!   `<code>.<zone>`, and nothing else (class ANY type ANY deletes both families).
//! - TTLs above the configured maximum are **clamped** to it, not refused.
//! - More addresses per family than the configured maximum: the whole update is **refused**.
//! - Addresses outside the [`crate::policy`] (unspecified, multicast, broadcast, and their
//!   IPv4-mapped forms) are refused.
//!
//! # Limitations
//! - Prerequisites may name any name in the zone, as RFC 2136 allows; with signed lookups
//!   this tells a key holder whether other names exist.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use std::collections::BTreeMap;

use std::net::IpAddr;

use crate::identity::CallingCode;
use crate::limits::Limits;
use crate::model::{AddressSet, Addresses};
use crate::policy::{self, PolicyError};
use crate::zone::Zone;

/// Why an update was not applied. Each maps to one RCODE ([`UpdateError::response_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("malformed update: {0}")]
    FormErr(String),
    #[error("not authoritative for zone {0}")]
    NotAuth(String),
    #[error("{0} is outside the zone")]
    NotZone(String),
    #[error("prerequisite failed: {name} {what}")]
    Prerequisite {
        rcode: PrereqFailure,
        name: String,
        what: &'static str,
    },
    #[error("refused: {0}")]
    Refused(String),
    #[error("internal error: {0}")]
    ServFail(String),
}

/// The four ways a prerequisite fails (RFC 2136 §3.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrereqFailure {
    NxDomain,
    YxDomain,
    NxRrset,
    YxRrset,
}

impl UpdateError {
    /// The RCODE that tells the client about this error.
    pub fn response_code(&self) -> ResponseCode {
        match self {
            Self::FormErr(_) => ResponseCode::FormErr,
            Self::NotAuth(_) => ResponseCode::NotAuth,
            Self::NotZone(_) => ResponseCode::NotZone,
            Self::Prerequisite { rcode, .. } => match rcode {
                PrereqFailure::NxDomain => ResponseCode::NXDomain,
                PrereqFailure::YxDomain => ResponseCode::YXDomain,
                PrereqFailure::NxRrset => ResponseCode::NXRRSet,
                PrereqFailure::YxRrset => ResponseCode::YXRRSet,
            },
            Self::Refused(_) => ResponseCode::Refused,
            Self::ServFail(_) => ResponseCode::ServFail,
        }
    }
}

/// The zone section's one entry (RFC 2136 §2.3).
#[derive(Debug, Clone)]
pub struct ZoneSection {
    pub name: Name,
    pub rtype: RecordType,
    pub class: DNSClass,
}

/// What the update engine reads: the zone's current RRsets.
pub trait ZoneContents {
    /// The RDATA of the RRset at `name` and `rtype` (empty if none).
    fn rrset(&self, name: &LowerName, rtype: RecordType) -> Vec<RData>;
    /// True if the name exists: it owns records or is a registered terminal.
    fn name_in_use(&self, name: &LowerName) -> bool;
}

/// An UPDATE message's sections, as the engine sees them.
#[derive(Debug, Clone, Copy)]
pub struct UpdateMessage<'a> {
    pub zone: &'a [ZoneSection],
    pub prerequisites: &'a [Record],
    pub updates: &'a [Record],
}

/// Runs every step for an update signed by the key of `code`, whose addresses are now
/// `current`; returns the addresses after the update.
pub fn plan(
    zone: &Zone,
    contents: &impl ZoneContents,
    code: &CallingCode,
    current: &Addresses,
    message: &UpdateMessage<'_>,
    limits: &Limits,
) -> Result<Addresses, UpdateError> {
    check_zone_section(zone, message.zone)?;
    check_prerequisites(zone, contents, message.prerequisites)?;
    prescan(zone, message.updates)?;
    authorize(zone, code, message.updates)?;
    let next = apply(current, message.updates, limits);
    check_caps(&next, limits)?;
    Ok(next)
}

/// RFC 2136 §3.1.1: the zone section has one RR, of type SOA, naming a zone we serve.
pub fn check_zone_section(zone: &Zone, section: &[ZoneSection]) -> Result<(), UpdateError> {
    let [entry] = section else {
        return Err(UpdateError::FormErr(format!(
            "the zone section has {} entries instead of 1",
            section.len()
        )));
    };
    if entry.rtype != RecordType::SOA {
        return Err(UpdateError::FormErr(
            "the zone section's type is not SOA".into(),
        ));
    }
    if LowerName::new(&entry.name) != *zone.lower_origin() || entry.class != DNSClass::IN {
        return Err(UpdateError::NotAuth(entry.name.to_string()));
    }
    Ok(())
}

/// RFC 2136 §3.2: every prerequisite holds, or the first that does not is reported.
pub fn check_prerequisites(
    zone: &Zone,
    contents: &impl ZoneContents,
    prerequisites: &[Record],
) -> Result<(), UpdateError> {
    // §3.2.3: "value dependent" prerequisites are gathered per RRset, then compared whole.
    let mut expected: BTreeMap<(LowerName, RecordType), Vec<RData>> = BTreeMap::new();
    for rr in prerequisites {
        let name = LowerName::new(&rr.name);
        if rr.ttl != 0 {
            return Err(UpdateError::FormErr(format!(
                "prerequisite for {} has a TTL",
                rr.name
            )));
        }
        if !zone.lower_origin().zone_of(&name) {
            return Err(UpdateError::NotZone(rr.name.to_string()));
        }
        let rtype = rr.record_type();
        let empty = matches!(rr.data, RData::Update0(_));
        match rr.dns_class {
            DNSClass::ANY | DNSClass::NONE if !empty => {
                return Err(UpdateError::FormErr(format!(
                    "prerequisite for {} of class {} has data",
                    rr.name, rr.dns_class
                )));
            }
            DNSClass::ANY => require_present(contents, &name, rtype)?,
            DNSClass::NONE => require_absent(contents, &name, rtype)?,
            DNSClass::IN if rtype != RecordType::ANY && !empty => {
                expected
                    .entry((name, rtype))
                    .or_default()
                    .push(rr.data.clone());
            }
            _ => {
                return Err(UpdateError::FormErr(format!(
                    "prerequisite for {} has class {} type {}",
                    rr.name, rr.dns_class, rtype
                )));
            }
        }
    }
    for ((name, rtype), wanted) in expected {
        if !same_rdata_set(&contents.rrset(&name, rtype), &wanted) {
            return Err(prereq_failed(
                PrereqFailure::NxRrset,
                &name,
                "RRset differs",
            ));
        }
    }
    Ok(())
}

/// §3.2.1: class ANY prerequisites ("name is in use", "RRset exists").
fn require_present(
    contents: &impl ZoneContents,
    name: &LowerName,
    rtype: RecordType,
) -> Result<(), UpdateError> {
    if rtype == RecordType::ANY {
        if !contents.name_in_use(name) {
            return Err(prereq_failed(
                PrereqFailure::NxDomain,
                name,
                "is not in use",
            ));
        }
    } else if contents.rrset(name, rtype).is_empty() {
        return Err(prereq_failed(
            PrereqFailure::NxRrset,
            name,
            "RRset does not exist",
        ));
    }
    Ok(())
}

/// §3.2.2: class NONE prerequisites ("name is not in use", "RRset does not exist").
fn require_absent(
    contents: &impl ZoneContents,
    name: &LowerName,
    rtype: RecordType,
) -> Result<(), UpdateError> {
    if rtype == RecordType::ANY {
        if contents.name_in_use(name) {
            return Err(prereq_failed(PrereqFailure::YxDomain, name, "is in use"));
        }
    } else if !contents.rrset(name, rtype).is_empty() {
        return Err(prereq_failed(PrereqFailure::YxRrset, name, "RRset exists"));
    }
    Ok(())
}

fn prereq_failed(rcode: PrereqFailure, name: &LowerName, what: &'static str) -> UpdateError {
    UpdateError::Prerequisite {
        rcode,
        name: name.to_string(),
        what,
    }
}

/// Two RRsets are equal when they hold the same RDATA, in any order (§3.2.3).
fn same_rdata_set(a: &[RData], b: &[RData]) -> bool {
    let mut a: Vec<&RData> = a.iter().collect();
    let mut b: Vec<&RData> = b.iter().collect();
    a.sort_by_key(|r| r.to_string());
    a.dedup();
    b.sort_by_key(|r| r.to_string());
    b.dedup();
    a == b
}

/// RFC 2136 §3.4.1: every update RR is inside the zone and well formed for its class.
pub fn prescan(zone: &Zone, updates: &[Record]) -> Result<(), UpdateError> {
    for rr in updates {
        if !zone.origin().zone_of(&rr.name) {
            return Err(UpdateError::NotZone(rr.name.to_string()));
        }
        let rtype = rr.record_type();
        let meta = matches!(
            rtype,
            RecordType::AXFR | RecordType::IXFR | RecordType::OPT | RecordType::TSIG
        ) || u16::from(rtype) == 253
            || u16::from(rtype) == 254;
        let bad = match rr.dns_class {
            DNSClass::IN => {
                meta || rtype == RecordType::ANY || matches!(rr.data, RData::Update0(_))
            }
            DNSClass::ANY => meta || rr.ttl != 0 || !matches!(rr.data, RData::Update0(_)),
            DNSClass::NONE => meta || rtype == RecordType::ANY || rr.ttl != 0,
            _ => true,
        };
        if bad {
            return Err(UpdateError::FormErr(format!(
                "update of {} class {} type {} is malformed",
                rr.name, rr.dns_class, rtype
            )));
        }
    }
    Ok(())
}

/// RFC 2136 §3.3, with the directory's policy: only the key's own name, only A and AAAA.
pub fn authorize(zone: &Zone, code: &CallingCode, updates: &[Record]) -> Result<(), UpdateError> {
    let own = terminal_name(zone, code);
    for rr in updates {
        if LowerName::new(&rr.name) != own {
            return Err(UpdateError::Refused(format!(
                "the key of {code} may change only {own}, not {}",
                rr.name
            )));
        }
        let rtype = rr.record_type();
        let delete_all = rr.dns_class == DNSClass::ANY && rtype == RecordType::ANY;
        if !delete_all && !matches!(rtype, RecordType::A | RecordType::AAAA) {
            return Err(UpdateError::Refused(format!(
                "only A and AAAA records may be changed, not {rtype}"
            )));
        }
        check_rdata(&rr.data).map_err(|e| UpdateError::Refused(e.to_string()))?;
    }
    Ok(())
}

/// `<code>.<zone>`, lower case.
pub fn terminal_name(zone: &Zone, code: &CallingCode) -> LowerName {
    let label = Name::from_ascii(code.as_str()).expect("a calling code is a valid label");
    let name = label
        .append_domain(zone.origin())
        .expect("a calling code under the zone fits a name");
    LowerName::new(&name)
}

/// The address policy's verdict on one update RR's data (A or AAAA).
fn check_rdata(data: &RData) -> Result<(), PolicyError> {
    match data {
        RData::A(a) => policy::check_address(IpAddr::V4(a.0)),
        RData::AAAA(a) => policy::check_address(IpAddr::V6(a.0)),
        _ => Ok(()),
    }
}

/// RFC 2136 §3.4.2: applies the update RRs in order to a copy of the addresses.
pub fn apply(current: &Addresses, updates: &[Record], limits: &Limits) -> Addresses {
    let mut next = current.clone();
    for rr in updates {
        let ttl = rr.ttl.min(limits.max_ttl);
        match (rr.dns_class, &rr.data) {
            (DNSClass::IN, RData::A(a)) => add(&mut next.v4, a.0, ttl),
            (DNSClass::IN, RData::AAAA(a)) => add(&mut next.v6, a.0, ttl),
            (DNSClass::NONE, RData::A(a)) => next.v4.addrs.retain(|x| *x != a.0),
            (DNSClass::NONE, RData::AAAA(a)) => next.v6.addrs.retain(|x| *x != a.0),
            (DNSClass::ANY, _) => match rr.record_type() {
                RecordType::A => next.v4 = AddressSet::default(),
                RecordType::AAAA => next.v6 = AddressSet::default(),
                _ => next = Addresses::default(),
            },
            // Deleting an RR that is not there, or with empty data: nothing to do.
            _ => {}
        }
    }
    next
}

/// Adds an address; the RRset takes the TTL of the latest addition (RFC 2181 §5.2).
fn add<T: PartialEq, const N: usize>(set: &mut AddressSet<T, N>, addr: T, ttl: u32) {
    if !set.addrs.contains(&addr) {
        set.addrs.push(addr);
    }
    set.ttl = ttl;
}

/// The per-family cap on addresses.
fn check_caps(next: &Addresses, limits: &Limits) -> Result<(), UpdateError> {
    policy::check_counts(next, limits.max_addresses_per_family)
        .map_err(|e| UpdateError::Refused(e.to_string()))
}

/// The A and/or AAAA records (`rtype` A, AAAA or ANY) of a terminal's addresses at `owner`,
/// each family with its RRset's TTL.
pub fn address_records(owner: &Name, addresses: &Addresses, rtype: RecordType) -> Vec<Record> {
    let mut records = Vec::new();
    for (family, ttl) in [
        (RecordType::A, addresses.v4.ttl),
        (RecordType::AAAA, addresses.v6.ttl),
    ] {
        if rtype == family || rtype == RecordType::ANY {
            records.extend(
                address_rdata(addresses, family)
                    .into_iter()
                    .map(|data| Record::from_rdata(owner.clone(), ttl, data)),
            );
        }
    }
    records
}

/// The A and AAAA RDATA of a set of addresses.
pub fn address_rdata(addresses: &Addresses, rtype: RecordType) -> Vec<RData> {
    match rtype {
        RecordType::A => addresses
            .v4
            .addrs
            .iter()
            .map(|a| RData::A((*a).into()))
            .collect(),
        RecordType::AAAA => addresses
            .v6
            .addrs
            .iter()
            .map(|a| RData::AAAA((*a).into()))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    use hickory_proto::rr::rdata::{A, AAAA, TXT};

    use super::*;

    /// Zone contents for tests: a map of RRsets and a set of registered terminal names.
    #[derive(Default)]
    struct Fixture {
        rrsets: HashMap<(LowerName, RecordType), Vec<RData>>,
    }

    impl ZoneContents for Fixture {
        fn rrset(&self, name: &LowerName, rtype: RecordType) -> Vec<RData> {
            self.rrsets
                .get(&(name.clone(), rtype))
                .cloned()
                .unwrap_or_default()
        }
        fn name_in_use(&self, name: &LowerName) -> bool {
            self.rrsets.keys().any(|(n, _)| n == name)
        }
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn lower(s: &str) -> LowerName {
        LowerName::new(&name(s))
    }

    fn code() -> CallingCode {
        "5551234".parse().unwrap()
    }

    const OWN: &str = "5551234.dial.example.";

    fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A::from(Ipv4Addr::from(ip))))
    }

    fn with_class(mut r: Record, class: DNSClass) -> Record {
        r.dns_class = class;
        r
    }

    fn empty(owner: &str, rtype: RecordType, class: DNSClass) -> Record {
        let mut r = Record::update0(name(owner), 0, rtype);
        r.dns_class = class;
        r
    }

    fn fixture_with_a(ip: [u8; 4]) -> Fixture {
        let mut f = Fixture::default();
        f.rrsets.insert(
            (lower(OWN), RecordType::A),
            vec![RData::A(A::from(Ipv4Addr::from(ip)))],
        );
        f
    }

    fn zone_section() -> Vec<ZoneSection> {
        vec![ZoneSection {
            name: name("dial.example."),
            rtype: RecordType::SOA,
            class: DNSClass::IN,
        }]
    }

    fn run(
        fixture: &Fixture,
        current: &Addresses,
        prereqs: &[Record],
        updates: &[Record],
    ) -> Result<Addresses, UpdateError> {
        let zone = Zone::embedded_default();
        let zs = zone_section();
        let message = UpdateMessage {
            zone: &zs,
            prerequisites: prereqs,
            updates,
        };
        plan(
            &zone,
            fixture,
            &code(),
            current,
            &message,
            &Limits::default(),
        )
    }

    #[test]
    fn zone_section_must_be_one_soa_of_our_zone() {
        let zone = Zone::embedded_default();
        assert!(check_zone_section(&zone, &zone_section()).is_ok());
        assert!(matches!(
            check_zone_section(&zone, &[]),
            Err(UpdateError::FormErr(_))
        ));
        let mut other = zone_section();
        other[0].name = name("other.example.");
        assert!(matches!(
            check_zone_section(&zone, &other),
            Err(UpdateError::NotAuth(_))
        ));
        let mut not_soa = zone_section();
        not_soa[0].rtype = RecordType::A;
        assert!(matches!(
            check_zone_section(&zone, &not_soa),
            Err(UpdateError::FormErr(_))
        ));
    }

    #[test]
    fn prerequisites_in_use_and_not_in_use() {
        let f = fixture_with_a([192, 0, 2, 1]);
        let zone = Zone::embedded_default();
        let in_use = empty(OWN, RecordType::ANY, DNSClass::ANY);
        let not_in_use = empty(OWN, RecordType::ANY, DNSClass::NONE);
        assert!(check_prerequisites(&zone, &f, std::slice::from_ref(&in_use)).is_ok());
        let err = check_prerequisites(&zone, &f, &[not_in_use]).unwrap_err();
        assert_eq!(err.response_code(), ResponseCode::YXDomain);
        let err = check_prerequisites(&zone, &Fixture::default(), &[in_use]).unwrap_err();
        assert_eq!(err.response_code(), ResponseCode::NXDomain);
    }

    #[test]
    fn prerequisites_rrset_exists_or_not() {
        let f = fixture_with_a([192, 0, 2, 1]);
        let zone = Zone::embedded_default();
        let a_exists = empty(OWN, RecordType::A, DNSClass::ANY);
        let aaaa_exists = empty(OWN, RecordType::AAAA, DNSClass::ANY);
        let a_absent = empty(OWN, RecordType::A, DNSClass::NONE);
        assert!(check_prerequisites(&zone, &f, &[a_exists]).is_ok());
        let err = check_prerequisites(&zone, &f, &[aaaa_exists]).unwrap_err();
        assert_eq!(err.response_code(), ResponseCode::NXRRSet);
        let err = check_prerequisites(&zone, &f, &[a_absent]).unwrap_err();
        assert_eq!(err.response_code(), ResponseCode::YXRRSet);
    }

    /// §3.2.3: the RRset must equal the prerequisite's records exactly, in any order.
    #[test]
    fn prerequisites_exact_rrset_equality() {
        let mut f = Fixture::default();
        let set = vec![
            RData::A(A::new(192, 0, 2, 1)),
            RData::A(A::new(192, 0, 2, 2)),
        ];
        f.rrsets.insert((lower(OWN), RecordType::A), set);
        let zone = Zone::embedded_default();
        let both = [a(OWN, 0, [192, 0, 2, 2]), a(OWN, 0, [192, 0, 2, 1])];
        assert!(check_prerequisites(&zone, &f, &both).is_ok());
        let subset = [a(OWN, 0, [192, 0, 2, 1])];
        let err = check_prerequisites(&zone, &f, &subset).unwrap_err();
        assert_eq!(err.response_code(), ResponseCode::NXRRSet);
        let superset = [
            a(OWN, 0, [192, 0, 2, 1]),
            a(OWN, 0, [192, 0, 2, 2]),
            a(OWN, 0, [192, 0, 2, 3]),
        ];
        assert!(check_prerequisites(&zone, &f, &superset).is_err());
    }

    #[test]
    fn prerequisites_are_checked_for_form_and_zone() {
        let zone = Zone::embedded_default();
        let f = Fixture::default();
        let with_ttl = Record::update0(name(OWN), 5, RecordType::A);
        let mut with_ttl = with_ttl;
        with_ttl.dns_class = DNSClass::ANY;
        assert_eq!(
            check_prerequisites(&zone, &f, &[with_ttl])
                .unwrap_err()
                .response_code(),
            ResponseCode::FormErr
        );
        let outside = empty("x.other.example.", RecordType::A, DNSClass::ANY);
        assert_eq!(
            check_prerequisites(&zone, &f, &[outside])
                .unwrap_err()
                .response_code(),
            ResponseCode::NotZone
        );
        let any_with_data = with_class(a(OWN, 0, [192, 0, 2, 1]), DNSClass::ANY);
        assert_eq!(
            check_prerequisites(&zone, &f, &[any_with_data])
                .unwrap_err()
                .response_code(),
            ResponseCode::FormErr
        );
    }

    #[test]
    fn prescan_refuses_malformed_updates() {
        let zone = Zone::embedded_default();
        let outside = a("5551234.other.example.", 30, [192, 0, 2, 1]);
        assert_eq!(
            prescan(&zone, &[outside]).unwrap_err().response_code(),
            ResponseCode::NotZone
        );
        let delete_with_ttl = {
            let mut r = empty(OWN, RecordType::A, DNSClass::ANY);
            r.ttl = 30;
            r
        };
        assert_eq!(
            prescan(&zone, &[delete_with_ttl])
                .unwrap_err()
                .response_code(),
            ResponseCode::FormErr
        );
        let bad_class = with_class(a(OWN, 30, [192, 0, 2, 1]), DNSClass::CH);
        assert_eq!(
            prescan(&zone, &[bad_class]).unwrap_err().response_code(),
            ResponseCode::FormErr
        );
        assert!(prescan(&zone, &[a(OWN, 30, [192, 0, 2, 1])]).is_ok());
    }

    #[test]
    fn policy_allows_only_own_a_and_aaaa() {
        let zone = Zone::embedded_default();
        let c = code();
        assert!(authorize(&zone, &c, &[a(OWN, 30, [192, 0, 2, 1])]).is_ok());
        assert!(authorize(&zone, &c, &[empty(OWN, RecordType::ANY, DNSClass::ANY)]).is_ok());
        let other = a("5559999.dial.example.", 30, [192, 0, 2, 1]);
        let apex = a("dial.example.", 30, [192, 0, 2, 1]);
        let txt = Record::from_rdata(name(OWN), 30, RData::TXT(TXT::new(vec!["x".into()])));
        let soa_delete = empty("dial.example.", RecordType::SOA, DNSClass::ANY);
        let unspecified = a(OWN, 30, [0, 0, 0, 0]);
        for rr in [other, apex, txt, soa_delete, unspecified] {
            let err = authorize(&zone, &c, std::slice::from_ref(&rr)).unwrap_err();
            assert_eq!(err.response_code(), ResponseCode::Refused, "{rr}");
        }
    }

    /// Regression: IPv4-mapped IPv6 (`::ffff:0.0.0.0`, `::ffff:224.0.0.1`) passed the policy.
    #[test]
    fn ipv4_mapped_unusable_addresses_are_refused() {
        let zone = Zone::embedded_default();
        for ip in ["::ffff:0.0.0.0", "::ffff:224.0.0.1"] {
            let rr = Record::from_rdata(name(OWN), 30, RData::AAAA(AAAA(ip.parse().unwrap())));
            let err = authorize(&zone, &code(), std::slice::from_ref(&rr));
            assert!(err.is_err(), "{ip} accepted");
        }
    }

    #[test]
    fn apply_replaces_adds_and_deletes() {
        let f = Fixture::default();
        let v6 = Record::from_rdata(
            name(OWN),
            30,
            RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        );
        let replace = [
            empty(OWN, RecordType::A, DNSClass::ANY),
            a(OWN, 30, [192, 0, 2, 7]),
            v6,
        ];
        let next = run(&f, &Addresses::default(), &[], &replace).unwrap();
        assert_eq!(next.v4.addrs.as_slice(), [Ipv4Addr::new(192, 0, 2, 7)]);
        assert_eq!(next.v6.addrs.len(), 1);
        let delete_one = [with_class(a(OWN, 0, [192, 0, 2, 7]), DNSClass::NONE)];
        let after = run(&f, &next, &[], &delete_one).unwrap();
        assert!(after.v4.addrs.is_empty());
        assert_eq!(after.v6.addrs.len(), 1);
        let delete_all = [empty(OWN, RecordType::ANY, DNSClass::ANY)];
        assert_eq!(
            run(&f, &after, &[], &delete_all).unwrap(),
            Addresses::default()
        );
    }

    #[test]
    fn ttls_above_the_cap_are_clamped() {
        let limits = Limits::default();
        let next = apply(
            &Addresses::default(),
            &[a(OWN, 86400, [192, 0, 2, 1])],
            &limits,
        );
        assert_eq!(next.v4.ttl, limits.max_ttl);
        let next = apply(&Addresses::default(), &[a(OWN, 5, [192, 0, 2, 1])], &limits);
        assert_eq!(next.v4.ttl, 5);
    }

    #[test]
    fn more_addresses_than_the_cap_are_refused() {
        let limits = Limits::default();
        let too_many: Vec<Record> = (0..=limits.max_addresses_per_family as u8)
            .map(|i| a(OWN, 30, [192, 0, 2, i + 1]))
            .collect();
        let err = run(&Fixture::default(), &Addresses::default(), &[], &too_many).unwrap_err();
        assert_eq!(err.response_code(), ResponseCode::Refused);
        assert!(
            run(
                &Fixture::default(),
                &Addresses::default(),
                &[],
                &too_many[1..]
            )
            .is_ok()
        );
    }
}
