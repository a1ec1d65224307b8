//! The published signatures: what answers with DO read, moved only with the durable view.

use std::collections::HashMap;
use std::sync::Arc;

use hickory_proto::rr::{Name, Record, RecordType};

use super::nsec3::{self, Chain, Hash};
use super::sign::{Sig, SignError, Signer};
use super::staging::{SignedDelta, Staging};
use super::statics::{self, SignedStatic, Statics};
use super::{Owner, TerminalSigs};
use crate::identity::CodeKey;
use crate::zone::Zone;

/// The signed zone as published.
#[derive(Debug)]
pub struct SignedZone {
    signer: Arc<Signer>,
    statics: Statics,
    signed_statics: Vec<SignedStatic>,
    chain: Chain<Owner>,
    terminals: HashMap<CodeKey, TerminalSigs, foldhash::fast::RandomState>,
    /// The SOA's signature, and the serial it covers: made when first asked for at a new
    /// serial (one signature per published serial at most, not per change), and again
    /// when it nears its expiration.
    soa: arc_swap::ArcSwap<(u32, Sig)>,
    negative_ttl: u32,
}

impl SignedZone {
    /// The published copy of `staging`, with the terminals' stored signatures and the
    /// static names' fresh ones.
    pub fn new(
        staging: &mut Staging,
        zone: &Zone,
        terminals: HashMap<CodeKey, TerminalSigs, foldhash::fast::RandomState>,
        now: u64,
    ) -> Result<Self, SignError> {
        let signed_statics = staging.sign_statics(zone, now)?;
        let unsigned = Sig {
            inception: 0,
            expiration: 0,
            key_tag: 0,
            signature: [0; 64],
        };
        Ok(Self {
            signer: staging.signer().clone(),
            statics: staging.statics().clone(),
            signed_statics,
            chain: staging.chain().clone(),
            terminals,
            soa: arc_swap::ArcSwap::from_pointee((0, unsigned)),
            negative_ttl: zone.negative_ttl(),
        })
    }

    /// Applies the signatures of a change as it is published.
    pub fn apply(&mut self, delta: SignedDelta) {
        for (key, sigs) in delta.terminals {
            match sigs {
                Some(sigs) => {
                    self.chain.insert(sigs.hash, Owner::Terminal(key));
                    self.terminals.insert(key, sigs);
                }
                None => {
                    if let Some(old) = self.terminals.remove(&key) {
                        self.chain.remove(&old.hash);
                    }
                }
            }
        }
        for (place, next, sig) in delta.statics {
            let signed = &mut self.signed_statics[place as usize];
            signed.next = next;
            signed.nsec3 = sig;
        }
        if let Some(all) = delta.all_statics {
            self.signed_statics = all;
        }
        if let Some(signer) = delta.signer {
            self.signer = signer;
        }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// How many terminals are signed.
    pub fn terminals(&self) -> usize {
        self.terminals.len()
    }

    pub fn terminal(&self, key: CodeKey) -> Option<&TerminalSigs> {
        self.terminals.get(&key)
    }

    /// The DNSKEY RRset.
    pub fn dnskey_records(&self, zone: &Zone) -> Vec<Record> {
        self.signer.dnskey_records(statics::dnskey_ttl(zone))
    }

    /// The RRSIG over the RRset `records` (one owner and type) of a published answer, if
    /// it is signed: terminals' from the store, static names' from start-up, the SOA's
    /// signed at its serial when first asked for (at `now`). `None` for the answers made
    /// per query (whoami).
    pub fn rrsig(&self, zone: &Zone, records: &[Record], now: u64) -> Option<Record> {
        let first = records.first()?;
        let (owner, rtype, ttl) = (&first.name, first.record_type(), first.ttl);
        let sig = if rtype == RecordType::SOA {
            self.soa_sig(first, now)?
        } else if let Some(key) = terminal_key(zone, owner) {
            let sigs = self.terminals.get(&key)?;
            match rtype {
                RecordType::A => sigs.a?,
                RecordType::AAAA => sigs.aaaa?,
                _ => return None,
            }
        } else {
            let place = self.statics.find(owner)?;
            self.signed_statics[place]
                .rrsets
                .iter()
                .find(|(t, _)| *t == rtype)?
                .1
        };
        Some(self.signer.rrsig(owner, rtype, ttl, &sig))
    }

    /// The SOA's signature at the serial of `soa`: the one made last, or a new one.
    fn soa_sig(&self, soa: &Record, now: u64) -> Option<Sig> {
        let serial = soa_serial(soa)?;
        let cached = self.soa.load();
        let fresh = (now as u32).wrapping_add(super::whole::REFRESH);
        if cached.0 == serial && cached.1.expiration.wrapping_sub(fresh) as i32 > 0 {
            return Some(cached.1);
        }
        let sig = self.signer.sign(std::slice::from_ref(soa), now).ok()?;
        self.soa.store(std::sync::Arc::new((serial, sig)));
        Some(sig)
    }

    /// Signs an answer made per query (whoami) now.
    pub fn sign_now(&self, records: &[Record], now: u64) -> Result<Record, SignError> {
        let sig = self.signer.sign(records, now)?;
        let first = &records[0];
        Ok(self
            .signer
            .rrsig(&first.name, first.record_type(), first.ttl, &sig))
    }

    /// True when `name` is in the signed zone (it owns records, or names below it do).
    pub fn exists(&self, name: &Name) -> bool {
        self.chain.get(&nsec3::hash(name)).is_some()
    }

    /// The proof that `name` owns no RRset of the asked type (it exists): its NSEC3.
    pub fn nodata(&self, zone: &Zone, name: &Name) -> Vec<Record> {
        self.matching(zone, &nsec3::hash(name)).unwrap_or_default()
    }

    /// The proof that `name` does not exist (RFC 5155 §7.2.2): the NSEC3 matching its
    /// closest encloser, and those covering the next closer name and the wildcard at the
    /// closest encloser.
    pub fn nxdomain(&self, zone: &Zone, name: &Name) -> Vec<Record> {
        let depth = zone.origin().num_labels() as usize;
        let mut encloser = zone.origin().clone();
        let mut next_closer = name.trim_to(depth + 1);
        for labels in (depth..name.num_labels() as usize).rev() {
            let candidate = name.trim_to(labels);
            if self.exists(&candidate) {
                encloser = candidate;
                next_closer = name.trim_to(labels + 1);
                break;
            }
        }
        let wildcard = Name::from_ascii("*")
            .and_then(|w| w.append_domain(&encloser))
            .unwrap_or_else(|_| encloser.clone());
        let mut records = self
            .matching(zone, &nsec3::hash(&encloser))
            .unwrap_or_default();
        for covered in [next_closer, wildcard] {
            for record in self.covering(zone, &nsec3::hash(&covered)) {
                if !records.contains(&record) {
                    records.push(record);
                }
            }
        }
        records
    }

    /// Every NSEC3 record of the chain, each followed by its RRSIG, in hash order (for
    /// zone transfers).
    pub fn nsec3_chain(&self, zone: &Zone) -> Vec<Record> {
        let mut records = Vec::with_capacity(self.chain.len() * 2);
        for (hash, owner) in self.chain.iter() {
            records.extend(self.nsec3_records(zone, hash, *owner));
        }
        records
    }

    /// The NSEC3 at `hash` and its RRSIG, if `hash` is in the chain.
    fn matching(&self, zone: &Zone, hash: &Hash) -> Option<Vec<Record>> {
        let owner = self.chain.get(hash)?;
        Some(self.nsec3_records(zone, hash, owner))
    }

    /// The NSEC3 whose span covers `hash` (not in the chain), and its RRSIG.
    fn covering(&self, zone: &Zone, hash: &Hash) -> Vec<Record> {
        match self.chain.before(hash) {
            Some((at, owner)) => self.nsec3_records(zone, &at, owner),
            None => Vec::new(),
        }
    }

    fn nsec3_records(&self, zone: &Zone, hash: &Hash, owner: Owner) -> Vec<Record> {
        let (next, types, sig) = match owner {
            Owner::Terminal(key) => {
                let Some(sigs) = self.terminals.get(&key) else {
                    return Vec::new();
                };
                (sigs.next, sigs.types(), sigs.nsec3)
            }
            Owner::Static(place) => {
                let signed = &self.signed_statics[place as usize];
                let types = self.statics.names[place as usize].types.clone();
                (signed.next, types, signed.nsec3)
            }
        };
        let record = nsec3::record(hash, &next, &types, self.negative_ttl, zone.origin());
        let rrsig = self
            .signer
            .rrsig(&record.name, RecordType::NSEC3, record.ttl, &sig);
        vec![record, rrsig]
    }
}

/// The serial of an SOA record.
fn soa_serial(record: &Record) -> Option<u32> {
    match &record.data {
        hickory_proto::rr::RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

/// The code of a terminal's owner name, if `owner` is one.
fn terminal_key(zone: &Zone, owner: &Name) -> Option<CodeKey> {
    match zone.place(owner) {
        crate::zone::NamePlace::Terminal(code) => Some(CodeKey::from(&code)),
        _ => None,
    }
}
