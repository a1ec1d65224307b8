//! DNSSEC validation of the directory's answers from the zone apex, for `dial
//! --trust-anchor`: the caller connects only to an address the zone's key signed.
//!
//! ```text
//!  trust anchor (DS or DNSKEY lines, e.g. `nameserver dnssec ds`'s)
//!    ─▶ the zone's DNSKEY RRset: one key matches the anchor and signs the RRset
//!    ─▶ each A/AAAA RRset: an RRSIG by one of those keys, valid now, no wildcard
//! ```
//! Negative answers are proven too ([`crate::denial`]): a forged "no such code" or
//! "offline" is refused like a forged address.

use std::path::Path;

use hickory_proto::dnssec::Verifier;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, RRSIG};
use hickory_proto::op::Message;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

/// What the zone's keys must match: DS records (a digest of a key) or DNSKEY records.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    zone: Name,
    ds: Vec<DS>,
    keys: Vec<DNSKEY>,
}

/// Why an answer was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("cannot read the trust anchor {path}: {message}")]
    Anchor { path: String, message: String },
    #[error("no DNSKEY of {zone} matches the trust anchor")]
    NoAnchoredKey { zone: String },
    #[error("{what} of {owner} has no valid signature by the zone's key ({why})")]
    Bogus {
        what: String,
        owner: String,
        why: String,
    },
}

impl TrustAnchor {
    /// Reads DS and DNSKEY records for `zone` from a file in zone-file syntax (as
    /// `nameserver dnssec ds` and `nameserver dnssec keys` print them).
    pub fn load(path: &Path, zone: &Name) -> Result<Self, ValidationError> {
        let failed = |message: String| ValidationError::Anchor {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        // `dial.example` and `dial.example.` are the same zone.
        let mut zone = zone.clone();
        zone.set_fqdn(true);
        let zone = &zone;
        let mut anchor = Self {
            zone: zone.clone(),
            ds: Vec::new(),
            keys: Vec::new(),
        };
        // hickory's zone-file parser refuses DNSKEY records: those lines are read here.
        let (keys, rest): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| {
            l.split_whitespace()
                .any(|t| t.eq_ignore_ascii_case("DNSKEY"))
        });
        for line in keys {
            anchor.keys.push(dnskey_line(line, zone).map_err(failed)?);
        }
        // A TTL for lines without one (DS lines as dnssec-dsfromkey and `nameserver dnssec
        // ds` print them have none); an anchor's TTL means nothing here.
        let text = format!("$TTL 3600\n{}", rest.join("\n"));
        let (_, sets) = Parser::new(&text, None, Some(zone.clone()))
            .parse()
            .map_err(|e| failed(e.to_string()))?;
        let zone_lower = LowerName::new(zone);
        for (key, set) in sets {
            if key.name != zone_lower {
                continue;
            }
            for record in set.records_without_rrsigs() {
                match &record.data {
                    RData::DNSSEC(DNSSECRData::DS(ds)) => anchor.ds.push(ds.clone()),
                    RData::DNSSEC(DNSSECRData::DNSKEY(k)) => anchor.keys.push(k.clone()),
                    _ => {}
                }
            }
        }
        if anchor.ds.is_empty() && anchor.keys.is_empty() {
            return Err(failed(format!("it holds no DS or DNSKEY record of {zone}")));
        }
        Ok(anchor)
    }

    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// True if `key` is one the anchor names.
    fn anchors(&self, key: &DNSKEY) -> bool {
        self.keys.iter().any(|k| k == key)
            || self.ds.iter().any(|ds| {
                key.to_digest(&self.zone, ds.digest_type())
                    .is_ok_and(|d| d.as_ref() == ds.digest())
            })
    }

    /// The zone's keys from an answer to a DNSKEY query (with DO): those of the RRset, once
    /// an anchored key's signature over it holds at `now` (Unix seconds).
    pub fn validate_keys(
        &self,
        answer: &Message,
        now: u64,
    ) -> Result<Vec<DNSKEY>, ValidationError> {
        let rrset = rrset_of(&answer.answers, &self.zone, RecordType::DNSKEY);
        let keys: Vec<DNSKEY> = rrset
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::DNSKEY(k)) => Some(k.clone()),
                _ => None,
            })
            .collect();
        let anchored: Vec<DNSKEY> = keys.iter().filter(|k| self.anchors(k)).cloned().collect();
        if anchored.is_empty() {
            return Err(ValidationError::NoAnchoredKey {
                zone: self.zone.to_string(),
            });
        }
        validate_rrset(
            &anchored,
            &self.zone,
            answer,
            &self.zone,
            RecordType::DNSKEY,
            now,
        )?;
        Ok(keys)
    }
}

/// Checks that the `rtype` RRset of `owner` in `answer` is signed by one of `keys` (zone
/// `zone`), valid at `now`; an empty RRset passes (nothing to trust).
pub fn validate_rrset(
    keys: &[DNSKEY],
    zone: &Name,
    answer: &Message,
    owner: &Name,
    rtype: RecordType,
    now: u64,
) -> Result<(), ValidationError> {
    if rrset_of(&answer.answers, owner, rtype).is_empty() {
        return Ok(());
    }
    verify_rrset(keys, zone, &answer.answers, owner, rtype, now)
}

/// Checks that the `rtype` RRset of `owner` in `section` (with its RRSIGs there) is signed
/// by one of `keys` (zone `zone`), valid at `now`; an empty RRset does not pass.
pub fn verify_rrset(
    keys: &[DNSKEY],
    zone: &Name,
    section: &[Record],
    owner: &Name,
    rtype: RecordType,
    now: u64,
) -> Result<(), ValidationError> {
    let bogus = |why: String| ValidationError::Bogus {
        what: rtype.to_string(),
        owner: owner.to_string(),
        why,
    };
    let rrset = rrset_of(section, owner, rtype);
    if rrset.is_empty() {
        return Err(bogus("the answer does not carry it".into()));
    }
    let sigs: Vec<&RRSIG> = section
        .iter()
        .filter(|r| LowerName::new(&r.name) == LowerName::new(owner))
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) if sig.input().type_covered == rtype => {
                Some(sig)
            }
            _ => None,
        })
        .collect();
    if sigs.is_empty() {
        return Err(bogus("the answer carries no RRSIG".into()));
    }
    let now = now as u32;
    let mut last = String::new();
    for sig in sigs {
        let input = sig.input();
        if input.signer_name != *zone {
            last = format!("signed by {}, not the zone", input.signer_name);
            continue;
        }
        if input.num_labels != owner.num_labels() {
            last = "a wildcard expansion, which this zone never makes".into();
            continue;
        }
        // RFC 4034 §3.1.5: serial-number arithmetic (RFC 1982) on the two times.
        let (from, to) = (input.sig_inception.get(), input.sig_expiration.get());
        let started = now.wrapping_sub(from) as i32 >= 0;
        let running = to.wrapping_sub(now) as i32 >= 0;
        if !(started && running) {
            last = format!("valid from {from} to {to} only, and it is {now}");
            continue;
        }
        for key in keys.iter().filter(|k| k.zone_key() && !k.revoke()) {
            if key.calculate_key_tag().ok() != Some(input.key_tag) {
                continue;
            }
            match key.verify_rrsig(owner, DNSClass::IN, sig, rrset.iter()) {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        if last.is_empty() {
            last = format!("no key with tag {}", input.key_tag);
        }
    }
    Err(bogus(last))
}

/// A DNSKEY of `zone` from a line `OWNER [TTL] [IN] DNSKEY FLAGS 3 ALGORITHM BASE64...`
/// (parentheses and comments as BIND writes them are allowed).
fn dnskey_line(line: &str, zone: &Name) -> Result<DNSKEY, String> {
    use base64::Engine as _;
    let line = line
        .split(';')
        .next()
        .unwrap_or_default()
        .replace(['(', ')'], " ");
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let owner = Name::from_ascii(tokens.first().copied().unwrap_or_default())
        .map_err(|e| format!("a DNSKEY line's owner: {e}"))?;
    if LowerName::new(&owner) != LowerName::new(zone) {
        return Err(format!("a DNSKEY of {owner}, not of {zone}"));
    }
    let at = tokens
        .iter()
        .position(|t| t.eq_ignore_ascii_case("DNSKEY"))
        .ok_or("no DNSKEY type")?;
    let field = |i: usize| tokens.get(at + i).copied().ok_or("a DNSKEY line is short");
    let flags: u16 = field(1)?.parse().map_err(|_| "DNSKEY flags are a number")?;
    let algorithm: u8 = field(3)?
        .parse()
        .map_err(|_| "a DNSKEY algorithm is a number")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(tokens[at + 4..].concat())
        .map_err(|e| format!("a DNSKEY's key is not base64: {e}"))?;
    Ok(DNSKEY::with_flags(
        flags,
        hickory_proto::dnssec::PublicKeyBuf::new(
            key,
            hickory_proto::dnssec::Algorithm::from_u8(algorithm),
        ),
    ))
}

/// The records of `owner`/`rtype` in `section`.
fn rrset_of(section: &[Record], owner: &Name, rtype: RecordType) -> Vec<Record> {
    let owner = LowerName::new(owner);
    section
        .iter()
        .filter(|r| r.record_type() == rtype && LowerName::new(&r.name) == owner)
        .cloned()
        .collect()
}
