//! Signing changes as they are staged (under the directory's writer lock), so that a change
//! and its signatures are made durable in one transaction and published together.
//!
//! The chain here is the zone as staged; the one that answers read ([`super::SignedZone`])
//! follows it as changes are published. For each change to a terminal's addresses:
//! - a family whose addresses changed gets a new RRSIG; one left empty loses its RRSIG;
//! - a terminal that gains its first address joins the chain, one that loses its last
//!   leaves it; either way its predecessor's NSEC3 (whose next hash moved) is signed again;
//! - its own NSEC3 is signed again when it joins or its types change;
//! - the SOA is signed when first asked for at the new serial ([`super::SignedZone`]), once
//!   per published serial rather than once per change.
//!
//! NSEC3s are signed once per change, after every name has joined or left the chain.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};

use super::chain::Chain;
use super::nsec3::{self, Hash};
use super::sign::{Sig, SignError, Signer};
use super::statics::{self, SignedStatic, Statics, StoredStatics};
use super::{Owner, TerminalSigs};
use crate::identity::{CallingCode, CodeKey};
use crate::journal::AddressChange;
use crate::model::Addresses;
use crate::update;
use crate::zone::Zone;

/// Per-terminal state while a change is signed.
type Map<V> = HashMap<CodeKey, V, foldhash::fast::RandomState>;

/// Signatures made for one change, to store and publish with it.
#[derive(Debug, Default)]
pub struct SignedDelta {
    /// Terminals' new signatures (`None`: it left the signed zone).
    pub terminals: Vec<(CodeKey, Option<TerminalSigs>)>,
    /// Static names whose NSEC3 was signed again: place, next hash, signature.
    pub statics: Vec<(u32, Hash, Sig)>,
    /// Every static name signed again (a refresh, new keys).
    pub all_statics: Option<Vec<SignedStatic>>,
    /// New keys: the signer from now on.
    pub signer: Option<Arc<Signer>>,
    /// What each terminal in `terminals` had before (for incremental transfers).
    pub before: Vec<(CodeKey, Option<TerminalSigs>)>,
}

impl SignedDelta {
    /// True when it signs every static name again or changes the keys: an incremental
    /// transfer across it sends the whole zone.
    pub fn zone_wide(&self) -> bool {
        self.all_statics.is_some() || self.signer.is_some()
    }
}

/// Why signing failed; the change it was for is refused.
#[derive(Debug, thiserror::Error)]
pub enum StagingError<E> {
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Read(E),
}

/// The writer's view of the signed zone.
#[derive(Debug)]
pub struct Staging {
    signer: Arc<Signer>,
    statics: Statics,
    chain: Chain<Owner>,
    /// Each signed terminal's earliest signature expiration, soonest first, so that the
    /// refresh finds what is due without a scan.
    expiring: BTreeSet<(u32, CodeKey)>,
    /// The static names' signatures as staged (what the store's `static_sigs` holds).
    signed_statics: Vec<SignedStatic>,
    /// Every terminal is being signed again with a new key ([`Staging::resign_all`]).
    resigning: bool,
    /// When the last signature by a replaced key was replaced (a rollover's last wait
    /// counts from then).
    resigned_at: Option<u64>,
}

impl Staging {
    /// The writer's state for `chain` (every name with records: `statics` and the terminals
    /// that publish an address), with no signature tracked yet ([`Staging::set_expiring`]).
    pub fn new(signer: Arc<Signer>, statics: Statics, chain: Chain<Owner>) -> Self {
        Self {
            signer,
            statics,
            chain,
            expiring: BTreeSet::new(),
            signed_statics: Vec::new(),
            resigning: false,
            resigned_at: None,
        }
    }

    /// Tracks, for the refresh, every signed terminal by its signatures' first expiration.
    pub fn set_expiring(&mut self, expiring: BTreeSet<(u32, CodeKey)>) {
        self.expiring = expiring;
    }

    /// Signs with `signer` from now on.
    pub fn set_signer(&mut self, signer: Arc<Signer>) {
        self.signer = signer;
    }

    /// Makes every terminal due for signing again (a new zone-signing key): the refresh
    /// signs them all, soonest first, a batch at a time.
    pub fn resign_all(&mut self) {
        self.expiring = self.expiring.iter().map(|(_, key)| (0, *key)).collect();
        self.resigning = true;
        self.resigned_at = None;
    }

    /// Notes at `now` whether the signing again is over.
    pub fn note_progress(&mut self, now: u64) {
        let pending = self.expiring.first().is_some_and(|(end, _)| *end == 0);
        if self.resigning && !pending {
            self.resigning = false;
            self.resigned_at = Some(now);
        }
    }

    /// When every signature by a replaced key had been replaced, if that is over.
    pub fn resigned_at(&self) -> Option<u64> {
        self.resigned_at
    }

    /// Counts what was signed at open as fully signed with the current keys at `now`.
    pub fn signed_whole_at(&mut self, now: u64) {
        self.resigning = false;
        self.resigned_at = Some(now);
    }

    /// Follows a terminal's signatures from `old` to `new` (for the refresh). A terminal
    /// any of whose signatures is by another key than the signing one stays due at once
    /// (0): a change that signs one RRset with a new key leaves the others to the refresh.
    pub fn track(&mut self, key: CodeKey, old: Option<&TerminalSigs>, new: Option<&TerminalSigs>) {
        let tag = self.signer.key_tag();
        let due_at = |sigs: &TerminalSigs| match sigs.signed_only_by(tag) {
            true => sigs.expiration(),
            false => 0,
        };
        let (old_at, new_at) = (old.map(due_at), new.map(due_at));
        if old_at == new_at && !self.resigning {
            // An address change re-signs one RRset; its NSEC3's older signature still
            // expires first.
            return;
        }
        if let Some(old) = old {
            self.expiring.remove(&(old.expiration(), key));
            // Made due by a new key ([`Staging::resign_all`]).
            self.expiring.remove(&(0, key));
        }
        if let Some(at) = new_at {
            self.expiring.insert((at, key));
        }
    }

    /// Makes `keys` due for signing at once (signatures by a key that is leaving found in
    /// the store).
    pub fn make_due(&mut self, keys: impl IntoIterator<Item = CodeKey>) {
        let due: BTreeSet<CodeKey> = keys.into_iter().collect();
        self.expiring.retain(|(_, key)| !due.contains(key));
        self.expiring.extend(due.into_iter().map(|key| (0, key)));
        self.resigning = true;
        self.resigned_at = None;
    }

    /// Up to `limit` terminals whose signatures expire before `horizon` (Unix seconds),
    /// soonest first.
    pub fn due(&self, horizon: u32, limit: usize) -> Vec<CodeKey> {
        self.expiring
            .iter()
            .take_while(|(end, _)| *end < horizon)
            .take(limit)
            .map(|(_, key)| *key)
            .collect()
    }

    /// True when the static names' signatures expire before `horizon`.
    pub fn statics_due(&self, horizon: u32) -> bool {
        // None yet (before the first signing): due.
        let first = self
            .signed_statics
            .iter()
            .map(SignedStatic::expiration)
            .min();
        first.unwrap_or(0) < horizon
    }

    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    pub fn statics(&self) -> &Statics {
        &self.statics
    }

    pub fn chain(&self) -> &Chain<Owner> {
        &self.chain
    }

    /// Signs what `changes` change. `read` returns a terminal's signatures as staged.
    pub fn sign<E>(
        &mut self,
        zone: &Zone,
        changes: &[AddressChange],
        now: u64,
        read: impl Fn(CodeKey) -> Result<Option<TerminalSigs>, E>,
    ) -> Result<SignedDelta, StagingError<E>> {
        // Most changes are one terminal's: sized once, hashed without SipHash's cost.
        let map = || Map::with_capacity_and_hasher(changes.len(), Default::default());
        let mut terminals: Map<Option<TerminalSigs>> = map();
        // What the store held before this change, read once per terminal.
        let mut before: Map<Option<TerminalSigs>> = map();
        let mut stored = |key: CodeKey| -> Result<Option<TerminalSigs>, StagingError<E>> {
            if let Some(sigs) = before.get(&key) {
                return Ok(*sigs);
            }
            let sigs = read(key).map_err(StagingError::Read)?;
            before.insert(key, sigs);
            Ok(sigs)
        };
        let mut resign: BTreeSet<Hash> = BTreeSet::new();
        for change in changes {
            let key = CodeKey::from(&change.code);
            let old = match terminals.get(&key) {
                Some(staged) => *staged,
                None => stored(key)?,
            };
            if change.new.is_empty() {
                if let Some(old) = old {
                    self.chain.remove(&old.hash);
                    resign.extend(self.chain.before(&old.hash).map(|(h, _)| h));
                }
                terminals.insert(key, None);
                continue;
            }
            let hash = old.map_or_else(|| terminal_hash(zone, &change.code), |o| o.hash);
            // A family keeps its signature while its addresses stay; one left empty has none.
            let family = |rtype, empty: bool, same: bool, kept: Option<Sig>| match empty {
                true => Ok(None),
                false => match kept.filter(|_| same) {
                    Some(sig) => Ok(Some(sig)),
                    None => (self.signer)
                        .sign_addresses(&change.code, &change.new, rtype, now)
                        .map(Some),
                },
            };
            let (v4, v6) = (&change.new.v4, &change.new.v6);
            let a = family(
                RecordType::A,
                v4.addrs.is_empty(),
                change.old.v4 == *v4,
                old.and_then(|o| o.a),
            )?;
            let aaaa = family(
                RecordType::AAAA,
                v6.addrs.is_empty(),
                change.old.v6 == *v6,
                old.and_then(|o| o.aaaa),
            )?;
            if old.is_none() {
                self.chain.insert(hash, Owner::Terminal(key));
                resign.extend(self.chain.before(&hash).map(|(h, _)| h));
            }
            let families = |a: Option<Sig>, aaaa: Option<Sig>| (a.is_some(), aaaa.is_some());
            if old.is_none_or(|o| families(o.a, o.aaaa) != families(a, aaaa)) {
                resign.insert(hash);
            }
            let placeholder = Sig {
                inception: 0,
                expiration: 0,
                key_tag: 0,
                signature: [0; 64],
            };
            terminals.insert(
                key,
                Some(TerminalSigs {
                    hash,
                    // A new name's NSEC3 is signed below; a known one keeps its own.
                    next: old.map_or(hash, |o| o.next),
                    a,
                    aaaa,
                    nsec3: old.map_or(placeholder, |o| o.nsec3),
                }),
            );
        }
        let mut delta = SignedDelta::default();
        let negative_ttl = zone.negative_ttl();
        for hash in resign {
            let Some(owner) = self.chain.get(&hash) else {
                continue;
            };
            let next = self.next(&hash);
            match owner {
                Owner::Terminal(key) => {
                    let sigs = match terminals.get(&key) {
                        Some(staged) => *staged,
                        None => stored(key)?,
                    };
                    let Some(mut sigs) = sigs else { continue };
                    let record =
                        nsec3::record(&hash, &next, &sigs.types(), negative_ttl, zone.origin());
                    sigs.next = next;
                    sigs.nsec3 = self.signer.sign(&[record], now)?;
                    terminals.insert(key, Some(sigs));
                }
                Owner::Static(place) => {
                    let name = &self.statics.names[place as usize];
                    let record =
                        nsec3::record(&hash, &next, &name.types, negative_ttl, zone.origin());
                    let sig = self.signer.sign(&[record], now)?;
                    if let Some(staged) = self.signed_statics.get_mut(place as usize) {
                        staged.next = next;
                        staged.nsec3 = sig;
                    }
                    delta.statics.push((place, next, sig));
                }
            }
        }
        for (key, new) in &terminals {
            let old = stored(*key)?;
            self.track(*key, old.as_ref(), new.as_ref());
            delta.before.push((*key, old));
        }
        delta.terminals = terminals.into_iter().collect();
        Ok(delta)
    }

    /// Follows a change signed elsewhere (by a cluster's leader, whose signatures this
    /// node's store now holds): its keys, each terminal's signatures replacing those in
    /// `delta.before` (the chain and the refresh's order move with them), and the static
    /// names' signatures. A node that takes the lead then signs from where the log left it.
    pub fn follow(&mut self, delta: &SignedDelta) {
        if let Some(signer) = &delta.signer {
            if signer.key_tag() != self.signer.key_tag() {
                // A new zone-signing key: the leader signs every terminal again, and a
                // node that takes over finishes that before the rollover goes on.
                self.resigning = true;
                self.resigned_at = None;
            }
            self.signer = signer.clone();
        }
        let before: Map<Option<TerminalSigs>> = delta.before.iter().copied().collect();
        for (key, new) in &delta.terminals {
            let old = before.get(key).copied().flatten();
            if let Some(old) = old.filter(|o| new.is_none_or(|n| n.hash != o.hash)) {
                self.chain.remove(&old.hash);
            }
            if let Some(new) = new.filter(|n| old.is_none_or(|o| o.hash != n.hash)) {
                self.chain.insert(new.hash, Owner::Terminal(*key));
            }
            self.track(*key, old.as_ref(), new.as_ref());
        }
        for (place, next, sig) in &delta.statics {
            if let Some(staged) = self.signed_statics.get_mut(*place as usize) {
                staged.next = *next;
                staged.nsec3 = *sig;
            }
        }
        if let Some(all) = &delta.all_statics {
            self.set_statics(all);
        }
    }

    /// Signs every static name (RRsets and NSEC3).
    pub fn sign_statics(&mut self, zone: &Zone, now: u64) -> Result<Vec<SignedStatic>, SignError> {
        let negative_ttl = zone.negative_ttl();
        let signed = self
            .statics
            .names
            .iter()
            .map(|name| {
                let next = self.next(&name.hash);
                let record =
                    nsec3::record(&name.hash, &next, &name.types, negative_ttl, zone.origin());
                Ok(SignedStatic {
                    rrsets: statics::sign_rrsets(zone, &self.signer, &name.name, now)?,
                    next,
                    nsec3: self.signer.sign(&[record], now)?,
                })
            })
            .collect::<Result<Vec<_>, SignError>>()?;
        self.set_statics(&signed);
        Ok(signed)
    }

    fn set_statics(&mut self, signed: &[SignedStatic]) {
        self.signed_statics = signed.to_vec();
    }

    /// The static names' signatures at a signed start: the `stored` ones when they were
    /// made for this zone (`fingerprint`) by the current keys, name the chain's next hashes
    /// and none expires before `horizon`; otherwise made afresh at `now`. True when made.
    pub fn statics_at_open(
        &mut self,
        zone: &Zone,
        fingerprint: &str,
        stored: Option<StoredStatics>,
        horizon: u32,
        now: u64,
    ) -> Result<(Vec<SignedStatic>, bool), SignError> {
        let kept = stored
            .and_then(|stored| stored.fitting(fingerprint, &self.signer, &self.statics))
            .filter(|signed| {
                statics::fit_chain(signed, &self.statics, |h| Some(self.next(h)), horizon)
            });
        match kept {
            Some(signed) => {
                self.set_statics(&signed);
                Ok((signed, false))
            }
            None => Ok((self.sign_statics(zone, now)?, true)),
        }
    }

    /// The static names' signatures as staged, to store (`fingerprint`: the static zone's).
    pub fn stored_statics(&self, fingerprint: &str) -> StoredStatics {
        StoredStatics::new(
            fingerprint,
            &self.signer,
            &self.statics,
            &self.signed_statics,
        )
    }

    /// Full signatures for a terminal with `addresses` (not empty) whose hash is in the
    /// chain: the first signing of the zone, or a repair at open.
    pub fn sign_terminal(
        &self,
        zone: &Zone,
        code: &CallingCode,
        addresses: &Addresses,
        now: u64,
    ) -> Result<TerminalSigs, SignError> {
        let hash = terminal_hash(zone, code);
        sign_terminal(
            &self.signer,
            zone,
            code,
            hash,
            addresses,
            self.next(&hash),
            now,
        )
    }

    /// The hash after `hash` in the chain as staged (its own when it is alone).
    pub fn next(&self, hash: &Hash) -> Hash {
        self.chain.next(hash).unwrap_or(*hash)
    }
}

/// Full signatures by `signer` for the terminal `code` (whose NSEC3 hash is `hash`) with
/// `addresses` (not empty), its NSEC3 naming `next` as the next hash.
pub fn sign_terminal(
    signer: &Signer,
    zone: &Zone,
    code: &CallingCode,
    hash: Hash,
    addresses: &Addresses,
    next: Hash,
    now: u64,
) -> Result<TerminalSigs, SignError> {
    let a = (!addresses.v4.addrs.is_empty())
        .then(|| signer.sign_addresses(code, addresses, RecordType::A, now))
        .transpose()?;
    let aaaa = (!addresses.v6.addrs.is_empty())
        .then(|| signer.sign_addresses(code, addresses, RecordType::AAAA, now))
        .transpose()?;
    let types = nsec3::terminal_types(a.is_some(), aaaa.is_some());
    let record = nsec3::record(&hash, &next, &types, zone.negative_ttl(), zone.origin());
    Ok(TerminalSigs {
        hash,
        next,
        a,
        aaaa,
        nsec3: signer.sign(&[record], now)?,
    })
}

/// A terminal's owner name.
pub fn terminal_owner(zone: &Zone, code: &CallingCode) -> Name {
    Name::from(update::terminal_name(zone, code))
}

/// The NSEC3 hash of a terminal's owner name.
pub fn terminal_hash(zone: &Zone, code: &CallingCode) -> Hash {
    nsec3::hash(&terminal_owner(zone, code))
}
