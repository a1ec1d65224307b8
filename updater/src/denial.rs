//! Proving a negative answer about a code (`dial --trust-anchor`): that the name does not
//! exist, or has no record of the asked type, from records the zone's keys signed.
//!
//! ```text
//!  NSEC3 (RFC 5155 §8), the directory's default denial:
//!    no such type ─▶ the NSEC3 of the name itself, without the type (nor CNAME) in its map
//!    no such name ─▶ the NSEC3 of the zone apex (the closest encloser: a code is one label
//!                    below it), and NSEC3s covering the name and the apex's wildcard
//!  compact denial (RFC 9824), NOERROR in both cases:
//!    the NSEC of the name itself: NXNAME in its map ─▶ no such name; else without the type
//! ```
//! Every NSEC3 and NSEC used must carry a valid RRSIG by the zone's keys
//! ([`crate::validate::verify_rrset`]); anything else is refused as bogus.

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, NSEC3};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, RecordType};

use crate::validate::{ValidationError, verify_rrset};

/// What a proven negative answer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The name does not exist.
    NoName,
    /// The name exists, without records of the asked type.
    NoType,
}

/// NXNAME (RFC 9824 §2): in a compact denial's type map, the name does not exist.
const NXNAME: RecordType = RecordType::Unknown(128);

/// Proves the negative `answer` (NXDOMAIN, or NOERROR without the asked records) about
/// `owner` (a name one label below `zone`) and `rtype` with `keys`, at `now`.
pub fn prove(
    keys: &[DNSKEY],
    zone: &Name,
    answer: &Message,
    owner: &Name,
    rtype: RecordType,
    now: u64,
) -> Result<Denial, ValidationError> {
    let section = &answer.authorities;
    let bogus = |why: &str| ValidationError::Bogus {
        what: format!("the denial of {rtype}"),
        owner: owner.to_string(),
        why: why.to_owned(),
    };
    let nxdomain = answer.metadata.response_code == ResponseCode::NXDomain;
    let nsec3s: Vec<(&Name, &NSEC3)> = section
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC3(n)) => Some((&r.name, n)),
            _ => None,
        })
        .collect();
    if !nsec3s.is_empty() {
        let verify = |name: &Name| verify_rrset(keys, zone, section, name, RecordType::NSEC3, now);
        let chain = Chain::new(zone, &nsec3s).ok_or_else(|| bogus("unreadable NSEC3s"))?;
        if !nxdomain {
            let (name, nsec3) = chain
                .matching(owner)
                .ok_or_else(|| bogus("no NSEC3 of the name"))?;
            if nsec3.type_set().contains(rtype) || nsec3.type_set().contains(RecordType::CNAME) {
                return Err(bogus("its NSEC3 lists the type"));
            }
            verify(name)?;
            return Ok(Denial::NoType);
        }
        if owner.base_name() != *zone {
            return Err(bogus("not a name one label below the zone"));
        }
        let (apex, _) = chain
            .matching(zone)
            .ok_or_else(|| bogus("no NSEC3 of the closest encloser"))?;
        let (next_closer, _) = chain
            .covering(owner)
            .ok_or_else(|| bogus("no NSEC3 covering the name"))?;
        let wildcard = Name::from_ascii("*")
            .and_then(|w| w.append_domain(zone))
            .map_err(|_| bogus("no wildcard name"))?;
        let (wildcard, _) = chain
            .covering(&wildcard)
            .ok_or_else(|| bogus("no NSEC3 covering the wildcard"))?;
        for name in [apex, next_closer, wildcard] {
            verify(name)?;
        }
        return Ok(Denial::NoName);
    }
    // Compact denial: one NSEC at the name itself.
    let types = section
        .iter()
        .filter(|r| LowerName::new(&r.name) == LowerName::new(owner))
        .find_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(n)) => Some(n.type_set()),
            _ => None,
        })
        .ok_or_else(|| bogus("no NSEC or NSEC3 proves it"))?;
    if nxdomain {
        return Err(bogus("NXDOMAIN with an NSEC of the name"));
    }
    verify_rrset(keys, zone, section, owner, RecordType::NSEC, now)?;
    if types.contains(NXNAME) {
        return Ok(Denial::NoName);
    }
    if types.contains(rtype) || types.contains(RecordType::CNAME) {
        return Err(bogus("its NSEC lists the type"));
    }
    Ok(Denial::NoType)
}

/// The NSEC3s of an answer, by the hash each one's owner stands for, with their parameters.
struct Chain<'a> {
    entries: Vec<(Vec<u8>, &'a Name, &'a NSEC3)>,
}

impl<'a> Chain<'a> {
    /// `None` when an owner is not a base32hex hash directly below `zone`, or the NSEC3s
    /// disagree on their hash parameters.
    fn new(zone: &Name, nsec3s: &[(&'a Name, &'a NSEC3)]) -> Option<Self> {
        let (_, first) = nsec3s.first()?;
        let mut entries = Vec::new();
        for (name, nsec3) in nsec3s {
            let same = nsec3.hash_algorithm() == first.hash_algorithm()
                && nsec3.iterations() == first.iterations()
                && nsec3.salt() == first.salt();
            if !same || name.base_name() != *zone || name.num_labels() != zone.num_labels() + 1 {
                return None;
            }
            let label = name.iter().next()?.to_ascii_uppercase();
            let hash = data_encoding::BASE32HEX_NOPAD.decode(&label).ok()?;
            entries.push((hash, *name, *nsec3));
        }
        Some(Self { entries })
    }

    fn hash(&self, name: &Name) -> Option<Vec<u8>> {
        let (_, _, first) = self.entries.first()?;
        let digest = first
            .hash_algorithm()
            .hash(first.salt(), name, first.iterations())
            .ok()?;
        Some(digest.as_ref().to_vec())
    }

    /// The NSEC3 whose owner is `name`'s hash.
    fn matching(&self, name: &Name) -> Option<(&'a Name, &'a NSEC3)> {
        let hash = self.hash(name)?;
        self.entries
            .iter()
            .find(|(h, _, _)| *h == hash)
            .map(|(_, n, r)| (*n, *r))
    }

    /// The NSEC3 whose interval (owner hash, next hash) holds `name`'s hash: the hash is
    /// in no NSEC3 of the zone, so the name does not exist. The last NSEC3 wraps around.
    fn covering(&self, name: &Name) -> Option<(&'a Name, &'a NSEC3)> {
        let hash = self.hash(name)?;
        self.entries
            .iter()
            .find(|(owner, _, nsec3)| {
                let (owner, next) = (owner.as_slice(), nsec3.next_hashed_owner_name());
                let hash = hash.as_slice();
                if owner < next {
                    owner < hash && hash < next
                } else {
                    hash > owner || hash < next
                }
            })
            .map(|(_, n, r)| (*n, *r))
    }
}
