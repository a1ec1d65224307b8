//! The published signatures: what answers with DO read, moved only with the durable view.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::chain::Chain;
use super::nsec3::{self, Hash};
use super::sign::{Sig, SignError, Signer};
use super::staging::{SignedDelta, Staging};
use super::statics::{self, SignedStatic, Statics};
use super::terminals::Terminals;
use super::warm_start::preview::Preview;
use super::{Owner, TerminalSigs};
use crate::identity::CodeKey;
use crate::zone::Zone;

/// The signed zone as published.
#[derive(Debug)]
pub struct SignedZone {
    signer: Arc<Signer>,
    statics: Statics,
    signed_statics: Vec<SignedStatic>,
    /// The chain and the terminals' signatures.
    source: Source,
    /// The SOA's signature, and the serial it covers: made when first asked for at a new
    /// serial (one signature per published serial at most, not per change), and again
    /// when it nears its expiration.
    soa: arc_swap::ArcSwap<(u32, Sig)>,
    negative_ttl: u32,
    /// Compact denial answers already signed (RFC 9824), by owner and types.
    compact: std::sync::Mutex<HashMap<CompactKey, (Record, Record)>>,
    /// Every SOA signature made, with its serial, newest last (at most [`HISTORY`]): the
    /// one a secondary holds at its serial is removed by an incremental transfer.
    soa_made: std::sync::Mutex<VecDeque<(u32, Sig)>>,
    /// What each published change replaced, by the serial it moved to, newest last (at most
    /// [`HISTORY`]): since start-up, for incremental transfers.
    history: VecDeque<Step>,
    /// How many terminals' signatures `history` holds.
    history_terminals: usize,
}

/// Where the chain and the terminals' signatures are read.
#[derive(Debug)]
enum Source {
    /// In memory: what changes as the zone changes.
    Memory {
        chain: Chain<Owner>,
        terminals: Terminals,
    },
    /// In place, in the copy saved at the last stop, while a signed start reads it whole
    /// (see [`super::preview`]): nothing changes meanwhile.
    Saved(Preview),
}

impl Source {
    fn terminal(&self, key: &CodeKey) -> Option<TerminalSigs> {
        match self {
            Self::Memory { terminals, .. } => terminals.get(key),
            Self::Saved(preview) => preview.terminal(*key),
        }
    }

    fn address_sig(&self, key: &CodeKey, aaaa: bool) -> Option<Sig> {
        match self {
            Self::Memory { terminals, .. } => terminals.address_sig(key, aaaa),
            Self::Saved(preview) => {
                let sigs = preview.terminal(*key)?;
                if aaaa { sigs.aaaa } else { sigs.a }
            }
        }
    }

    fn owner(&self, hash: &Hash) -> Option<Owner> {
        match self {
            Self::Memory { chain, .. } => chain.get(hash),
            Self::Saved(preview) => preview.get(hash),
        }
    }

    fn before(&self, hash: &Hash) -> Option<(Hash, Owner)> {
        match self {
            Self::Memory { chain, .. } => chain.before(hash),
            Self::Saved(preview) => preview.before(hash),
        }
    }

    fn memory(&self) -> Option<(&Chain<Owner>, &Terminals)> {
        match self {
            Self::Memory { chain, terminals } => Some((chain, terminals)),
            Self::Saved(_) => None,
        }
    }
}

/// One published change's signatures as they were before it.
#[derive(Debug)]
pub struct Step {
    /// The serial the change moved the zone to.
    pub to: u32,
    /// Each terminal's signatures before the change.
    pub before: Vec<(CodeKey, Option<TerminalSigs>)>,
    /// Each static name whose NSEC3 it signed again: its place, and its next hash and
    /// signature before.
    pub statics_before: Vec<(u32, Hash, Sig)>,
    /// It changed the static names' signatures or the keys too.
    pub zone_wide: bool,
}

/// Changes and SOA signatures remembered for incremental transfers (the journal's default
/// depth is 1,000).
const HISTORY: usize = 1024;

/// Terminals' signatures remembered at most across those changes (about 30 MB; a refresh
/// or a rollover's re-signing replaces 300 a second).
const HISTORY_TERMINALS: usize = 100_000;

/// What a compact denial answer depends on: the name, the types it holds (`None`: it does
/// not exist), and the key that signed it.
type CompactKey = (LowerName, Option<Vec<RecordType>>, u16);

/// Compact denial answers kept at most; the cache starts afresh when full.
const COMPACT_CACHE: usize = 100_000;

/// The NXNAME pseudo-type (RFC 9824 §2): the name does not exist.
pub const NXNAME: RecordType = RecordType::Unknown(128);

impl SignedZone {
    /// The published copy of `staging`, with the terminals' and the static names'
    /// signatures and `chain`, a copy of the staging's.
    pub fn new(
        staging: &Staging,
        zone: &Zone,
        terminals: Terminals,
        signed_statics: Vec<SignedStatic>,
        chain: Chain<Owner>,
    ) -> Self {
        Self::of(
            staging.signer().clone(),
            staging.statics().clone(),
            signed_statics,
            Source::Memory { chain, terminals },
            zone,
        )
    }

    /// The signed zone answered in place from the copy saved at the last stop, `preview`,
    /// with the static names' signatures, `signed_statics`, and the SOA's, `soa`, kept at
    /// that stop if one was made (see [`super::preview`]): until the signed zone in memory
    /// replaces it.
    pub fn in_place(
        signer: Arc<Signer>,
        statics: Statics,
        signed_statics: Vec<SignedStatic>,
        preview: Preview,
        zone: &Zone,
        soa: Option<(u32, Sig)>,
    ) -> Self {
        let signed = Self::of(
            signer,
            statics,
            signed_statics,
            Source::Saved(preview),
            zone,
        );
        if let Some((serial, sig)) = soa {
            signed.keep_soa_signature(serial, sig);
        }
        signed
    }

    fn of(
        signer: Arc<Signer>,
        statics: Statics,
        signed_statics: Vec<SignedStatic>,
        source: Source,
        zone: &Zone,
    ) -> Self {
        let unsigned = Sig {
            inception: 0,
            expiration: 0,
            key_tag: 0,
            signature: [0; 64],
        };
        Self {
            signer,
            statics,
            signed_statics,
            source,
            soa: arc_swap::ArcSwap::from_pointee((0, unsigned)),
            negative_ttl: zone.negative_ttl(),
            compact: std::sync::Mutex::new(HashMap::new()),
            soa_made: std::sync::Mutex::new(VecDeque::new()),
            history: VecDeque::new(),
            history_terminals: 0,
        }
    }

    /// The SOA signature made last at `serial`, if any.
    pub fn soa_signature_at(&self, serial: u32) -> Option<Sig> {
        let made = self.soa_made.lock().unwrap_or_else(|p| p.into_inner());
        made.iter()
            .rev()
            .find(|(s, _)| *s == serial)
            .map(|(_, sig)| *sig)
    }

    /// Serves `sig` as the SOA's signature at `serial` (one kept from before a restart), as
    /// if it had been made here.
    pub fn keep_soa_signature(&self, serial: u32, sig: Sig) {
        let mut made = self.soa_made.lock().unwrap_or_else(|p| p.into_inner());
        self.serve_soa(&mut made, serial, sig);
    }

    /// Serves `sig` at `serial` from now on, and remembers it among those made (the last
    /// [`HISTORY`]); `made` is `soa_made`, locked.
    fn serve_soa(&self, made: &mut VecDeque<(u32, Sig)>, serial: u32, sig: Sig) {
        self.soa.store(std::sync::Arc::new((serial, sig)));
        if made.len() >= HISTORY {
            made.pop_front();
        }
        made.push_back((serial, sig));
    }

    /// Every terminal's signatures, in the store's order of codes (as text): what is saved
    /// at a stop, in the order the next start reads the terminals (see
    /// [`super::resume`]).
    pub fn terminals_in_store_order(&self) -> impl Iterator<Item = (CodeKey, TerminalSigs)> + '_ {
        (self.source.memory().into_iter()).flat_map(|(_, terminals)| terminals.in_store_order())
    }

    /// Each terminal by its earliest signature expiration, soonest first (the staging's
    /// refresh order).
    pub fn expiry_order(&self) -> std::collections::BTreeSet<(u32, CodeKey)> {
        (self.source.memory())
            .map(|(_, terminals)| terminals.expiry_order())
            .unwrap_or_default()
    }

    /// Applies the signatures of the change that moved the zone to serial `to`, as it is
    /// published.
    pub fn apply(&mut self, mut delta: SignedDelta, to: u32) {
        let Source::Memory { chain, terminals } = &mut self.source else {
            // The signed start holds the writer lock while it answers in place.
            tracing::error!("a change was published while the signatures were read in place");
            return;
        };
        self.history_terminals += delta.before.len();
        while self.history.len() >= HISTORY || self.history_terminals > HISTORY_TERMINALS {
            let Some(oldest) = self.history.pop_front() else {
                break;
            };
            self.history_terminals -= oldest.before.len();
        }
        let statics_before = delta
            .statics
            .iter()
            .filter_map(|(place, _, _)| {
                let signed = self.signed_statics.get(*place as usize)?;
                Some((*place, signed.next, signed.nsec3))
            })
            .collect();
        self.history.push_back(Step {
            to,
            zone_wide: delta.zone_wide(),
            before: std::mem::take(&mut delta.before),
            statics_before,
        });
        for (key, sigs) in delta.terminals {
            match sigs {
                Some(sigs) => {
                    // An address change of a terminal in the zone leaves the chain as it is.
                    if terminals
                        .insert(key, sigs)
                        .is_none_or(|old| old.hash != sigs.hash)
                    {
                        chain.insert(sigs.hash, Owner::Terminal(key));
                    }
                }
                None => {
                    if let Some(old) = terminals.remove(&key) {
                        chain.remove(&old.hash);
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

    /// The signer of the published zone.
    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    /// The static names, in the order their signatures are kept.
    pub fn statics(&self) -> &Statics {
        &self.statics
    }

    /// The static names' signatures as published.
    pub fn signed_statics(&self) -> &[SignedStatic] {
        &self.signed_statics
    }

    pub fn terminal(&self, key: CodeKey) -> Option<TerminalSigs> {
        self.source.terminal(&key)
    }

    /// The RRSIG over `key`'s A RRset, or over its AAAA one (`aaaa`), if it has one.
    pub fn address_sig(&self, key: CodeKey, aaaa: bool) -> Option<Sig> {
        self.source.address_sig(&key, aaaa)
    }

    /// The RRSIG record of `sig` over the RRset of `owner` and `rtype` with `ttl`.
    pub fn rrsig_record(&self, owner: &Name, rtype: RecordType, ttl: u32, sig: &Sig) -> Record {
        self.signer.rrsig(owner, rtype, ttl, sig)
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
            match rtype {
                RecordType::A => self.source.address_sig(&key, false)?,
                RecordType::AAAA => self.source.address_sig(&key, true)?,
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

    /// The SOA's signature at the serial of `soa`: the one made last, or a new one (made
    /// once: concurrent askers wait for it).
    fn soa_sig(&self, soa: &Record, now: u64) -> Option<Sig> {
        let serial = soa_serial(soa)?;
        let fresh = (now as u32).wrapping_add(super::whole::REFRESH);
        let usable = |cached: &(u32, Sig)| {
            cached.0 == serial && cached.1.expiration.wrapping_sub(fresh) as i32 > 0
        };
        let cached = self.soa.load();
        if usable(&cached) {
            return Some(cached.1);
        }
        let mut made = self.soa_made.lock().unwrap_or_else(|p| p.into_inner());
        let cached = self.soa.load();
        if usable(&cached) {
            return Some(cached.1);
        }
        let sig = self.signer.sign(std::slice::from_ref(soa), now).ok()?;
        self.serve_soa(&mut made, serial, sig);
        Some(sig)
    }

    /// The RRSIG over `soa` that was served at its serial, if exactly one was made since
    /// start-up (what a secondary at that serial holds).
    pub fn served_soa_rrsig(&self, soa: &Record) -> Option<Record> {
        let serial = soa_serial(soa)?;
        let made = self.soa_made.lock().unwrap_or_else(|p| p.into_inner());
        let mut at = made.iter().filter(|(s, _)| *s == serial);
        let (Some((_, sig)), None) = (at.next(), at.next()) else {
            return None;
        };
        Some(self.signer.rrsig(&soa.name, RecordType::SOA, soa.ttl, sig))
    }

    /// The published change that moved the zone to serial `to`, if it is remembered.
    pub fn step(&self, to: u32) -> Option<&Step> {
        self.history.iter().rev().find(|s| s.to == to)
    }

    /// The NSEC3 of the static name at `place` and its RRSIG: as signed with next hash and
    /// signature `then`, or as now.
    pub fn static_nsec3(&self, zone: &Zone, place: u32, then: Option<(Hash, Sig)>) -> Vec<Record> {
        let Some(name) = self.statics.names.get(place as usize) else {
            return Vec::new();
        };
        let Some((next, sig)) = then.or_else(|| {
            let signed = self.signed_statics.get(place as usize)?;
            Some((signed.next, signed.nsec3))
        }) else {
            return Vec::new();
        };
        let record = nsec3::record(
            &name.hash,
            &next,
            &name.types,
            self.negative_ttl,
            zone.origin(),
        );
        let rrsig = self
            .signer
            .rrsig(&record.name, RecordType::NSEC3, record.ttl, &sig);
        vec![record, rrsig]
    }

    /// A terminal's records in the signed zone with `addresses` and `sigs` (none when it is
    /// not in it): A and AAAA with their RRSIGs, its NSEC3 and RRSIG.
    pub fn terminal_records(
        &self,
        zone: &Zone,
        key: CodeKey,
        addresses: &crate::model::Addresses,
        sigs: Option<&TerminalSigs>,
    ) -> Vec<Record> {
        let Some(sigs) = sigs else {
            return Vec::new();
        };
        let owner = super::staging::terminal_owner(zone, &key.to_code());
        let mut records = Vec::new();
        for (rtype, sig) in [(RecordType::A, sigs.a), (RecordType::AAAA, sigs.aaaa)] {
            let rrset = crate::update::address_records(&owner, addresses, rtype);
            if let (Some(first), Some(sig)) = (rrset.first(), sig) {
                let rrsig = self.signer.rrsig(&owner, rtype, first.ttl, &sig);
                records.extend(rrset);
                records.push(rrsig);
            }
        }
        let record = nsec3::record(
            &sigs.hash,
            &sigs.next,
            &sigs.types(),
            self.negative_ttl,
            zone.origin(),
        );
        let rrsig = self
            .signer
            .rrsig(&record.name, RecordType::NSEC3, record.ttl, &sigs.nsec3);
        records.push(record);
        records.push(rrsig);
        records
    }

    /// Compact denial of existence (RFC 9824) for `name`: one NSEC at the name itself whose
    /// next name is the name's immediate successor, so it covers nothing else and the zone
    /// cannot be walked. `types` are those the name holds (`None`: it does not exist, and
    /// the bitmap says NXNAME). Signed when first asked for, then kept (until its
    /// signature nears expiry or the key changes). The NSEC and its RRSIG.
    pub fn compact_denial(
        &self,
        name: &Name,
        types: Option<Vec<RecordType>>,
        now: u64,
    ) -> Result<Vec<Record>, SignError> {
        let key = (LowerName::new(name), types.clone(), self.signer.key_tag());
        let fresh = (now as u32).wrapping_add(super::whole::REFRESH);
        {
            let cache = self.compact.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((nsec, rrsig)) = cache.get(&key) {
                let expires = match &rrsig.data {
                    RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sig.input().sig_expiration.get(),
                    _ => 0,
                };
                if expires.wrapping_sub(fresh) as i32 > 0 {
                    return Ok(vec![nsec.clone(), rrsig.clone()]);
                }
            }
        }
        // Signed outside the lock, so one name's signature never holds up the others' (two
        // askers of the same new name may each sign it once).
        let owner = name.to_lowercase();
        let next = Name::from_labels([&[0u8][..]])
            .and_then(|zero| zero.append_domain(&owner))
            .unwrap_or_else(|_| owner.clone());
        let listed: Vec<RecordType> = match &types {
            None => vec![RecordType::RRSIG, RecordType::NSEC, NXNAME],
            Some(types) => types
                .iter()
                .copied()
                .filter(|t| *t != RecordType::NSEC3PARAM)
                .chain([RecordType::RRSIG, RecordType::NSEC])
                .collect(),
        };
        let nsec = Record::from_rdata(
            owner.clone(),
            self.negative_ttl,
            RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(next, listed))),
        );
        let sig = self.signer.sign(std::slice::from_ref(&nsec), now)?;
        let rrsig = self
            .signer
            .rrsig(&owner, RecordType::NSEC, self.negative_ttl, &sig);
        let mut cache = self.compact.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= COMPACT_CACHE {
            cache.clear();
        }
        cache.insert(key, (nsec.clone(), rrsig.clone()));
        Ok(vec![nsec, rrsig])
    }

    /// The types `name` holds in the signed zone, if it is one of the static names.
    pub fn static_types(&self, name: &Name) -> Option<&[RecordType]> {
        let place = self.statics.find(name)?;
        Some(&self.statics.names[place].types)
    }

    /// How many RRsets the zone's signer has signed (per answer: whoami, compact denial,
    /// the SOA at a new serial).
    pub fn signatures_made(&self) -> u64 {
        self.signer.signatures_made()
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
        self.source.owner(&nsec3::hash(name)).is_some()
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
        // Transfers wait for the signed zone in memory.
        let Some((chain, _)) = self.source.memory() else {
            return Vec::new();
        };
        let mut records = Vec::with_capacity(chain.len() * 2);
        for (hash, owner) in chain.iter() {
            records.extend(self.nsec3_records(zone, hash, *owner));
        }
        records
    }

    /// The NSEC3 at `hash` and its RRSIG, if `hash` is in the chain.
    fn matching(&self, zone: &Zone, hash: &Hash) -> Option<Vec<Record>> {
        let owner = self.source.owner(hash)?;
        Some(self.nsec3_records(zone, hash, owner))
    }

    /// The NSEC3 whose span covers `hash` (not in the chain), and its RRSIG.
    fn covering(&self, zone: &Zone, hash: &Hash) -> Vec<Record> {
        match self.source.before(hash) {
            Some((at, owner)) => self.nsec3_records(zone, &at, owner),
            None => Vec::new(),
        }
    }

    fn nsec3_records(&self, zone: &Zone, hash: &Hash, owner: Owner) -> Vec<Record> {
        let (next, types, sig) = match owner {
            Owner::Terminal(key) => {
                let Some(sigs) = self.source.terminal(&key) else {
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
