//! Signing the whole zone: at the first start with DNSSEC on, after a restore or an import,
//! and when the static zone changes. Stored signatures that still hold are kept; the others
//! are made again, on every core.
//!
//! A terminal's stored signatures are made again when they are missing, were made by
//! another key, no longer match its address families, name another next hash than the
//! chain's, or expire within [`REFRESH`]; and all of them when the zone was changed while
//! served unsigned (DNSSEC off) since they were made.

use std::sync::Arc;

use super::chain::Chain;
use super::sign::{SignError, Signer};
use super::staging::Staging;
use super::statics::Statics;
use super::terminals::{Slab, Terminals};
use super::{Owner, TerminalSigs, nsec3};
use crate::identity::CodeKey;
use crate::model::Addresses;
use crate::zone::Zone;

/// Signatures expiring sooner than this are made again (half of [`super::sign::VALIDITY`]).
pub const REFRESH: u32 = super::sign::VALIDITY / 2;

/// The outcome: the writer's chain, every terminal's signatures, and what changed. The
/// staging tracks no expiration yet: [`Terminals::expiry_order`] gives its order, built
/// after the signatures are published at a start (their answers wait for nothing else).
#[derive(Debug)]
pub struct Whole {
    pub staging: Staging,
    pub terminals: Terminals,
    /// Signatures to store: new ones (`Some`) and ones to forget (`None`).
    pub changes: Vec<(CodeKey, Option<TerminalSigs>)>,
    /// A copy of the staging's chain for the published zone, when one was made beside the
    /// reading ([`super::resume`]); otherwise it is copied when published.
    pub published_chain: Option<Chain<Owner>>,
}

/// Signs `zone` with `signer`: `online` are the terminals that publish addresses, `stored`
/// the signatures the store holds (each in any order), and `current` says whether those
/// followed every change (not when the zone was served unsigned in between: then every
/// terminal is signed again).
///
/// Built for a million terminals at start-up: the two lists are joined by sorting, the chain
/// is sorted once and built in bulk, and each hash's successor is found in one pass over it;
/// no per-terminal search or hash-map lookup.
pub fn sign_zone(
    signer: Arc<Signer>,
    zone: &Zone,
    mut online: Vec<(CodeKey, Addresses)>,
    stored: Slab,
    current: bool,
    now: u64,
) -> Result<Whole, SignError> {
    online.sort_unstable_by_key(|(key, _)| *key);
    // The stored entries' places by code (the slab stays where it is: it becomes the
    // published one); a code that came twice keeps one place.
    let mut order: Vec<(CodeKey, u32)> = stored.keys().zip(0..).collect();
    order.sort_unstable();
    order.dedup_by_key(|(key, _)| *key);
    // Each online terminal's place in `stored`; the signatures of terminals gone offline
    // are forgotten (`kept` false).
    let mut changes: Vec<(CodeKey, Option<TerminalSigs>)> = Vec::new();
    let mut kept = vec![false; stored.len()];
    let mut held: Vec<Option<u32>> = Vec::with_capacity(online.len());
    let mut next = 0;
    for (key, _) in &online {
        while let Some((gone, _)) = order.get(next).filter(|(k, _)| k < key) {
            changes.push((*gone, None));
            next += 1;
        }
        let found = order
            .get(next)
            .filter(|(k, _)| k == key)
            .map(|(_, place)| *place);
        held.push(found);
        if let Some(place) = found {
            kept[place as usize] = true;
            next += 1;
        }
    }
    changes.extend(order[next..].iter().map(|(gone, _)| (*gone, None)));
    drop(order);
    let sigs_of = |place: usize| held[place].map(|i| stored.get(i));
    let statics = Statics::of(zone);

    // Beside the chain, on a second core: the published index.
    let (chain, successor, index) = std::thread::scope(|scope| {
        let side = scope.spawn(|| Terminals::index(stored.keys(), &kept));
        // Each online terminal's hash as stored, or computed.
        let hashes = (0..online.len())
            .map(|place| match sigs_of(place) {
                Some(sigs) => sigs.hash,
                None => super::staging::terminal_hash(zone, &online[place].0.to_code()),
            })
            .collect();
        let (chain, successor) = chain_of(hashes, |place| online[place].0, &statics);
        let side = side.join().expect("building the index does not panic");
        (chain, successor, side)
    });
    let staging = Staging::new(signer.clone(), statics, chain);

    let key_tag = signer.key_tag();
    let horizon = (now as u32).wrapping_add(REFRESH);
    let due: Vec<(CodeKey, &Addresses)> = (0..online.len())
        .filter(|&place| {
            let addresses = &online[place].1;
            !current
                || sigs_of(place).is_none_or(|s| {
                    successor[place] != s.next
                        || !Standing::of(&s).holds(addresses, key_tag, horizon)
                })
        })
        .map(|place| (online[place].0, &online[place].1))
        .collect();
    drop(successor);
    let signed = sign_each(&staging, zone, &due, now)?;
    let mut terminals = Terminals::from_parts(stored, index);
    for (key, sigs) in signed {
        terminals.insert(key, sigs);
        changes.push((key, Some(sigs)));
    }
    Ok(Whole {
        staging,
        terminals,
        changes,
        published_chain: None,
    })
}

/// What decides whether a terminal's stored signatures still do for its addresses
/// ([`Standing::holds`]: each made by the active key, none due for refresh, one per address
/// family it has; its NSEC3 next hash is checked apart), in a few bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    v4: bool,
    v6: bool,
    /// The key that made all of them (`None`: more than one did).
    key_tag: Option<u16>,
    /// The first of them to expire.
    expiration: u32,
}

impl Standing {
    pub fn of(sigs: &TerminalSigs) -> Self {
        let all = [sigs.a, sigs.aaaa, Some(sigs.nsec3)];
        let tag = sigs.nsec3.key_tag;
        Self {
            v4: sigs.a.is_some(),
            v6: sigs.aaaa.is_some(),
            key_tag: all
                .iter()
                .flatten()
                .all(|sig| sig.key_tag == tag)
                .then_some(tag),
            expiration: sigs.expiration(),
        }
    }

    pub fn holds(&self, addresses: &Addresses, key_tag: u16, horizon: u32) -> bool {
        self.v4 != addresses.v4.addrs.is_empty()
            && self.v6 != addresses.v6.addrs.is_empty()
            && self.key_tag == Some(key_tag)
            && self.expiration >= horizon
    }
}

/// Full signatures for each terminal of `due` (with its addresses), on every core.
pub fn sign_each(
    staging: &Staging,
    zone: &Zone,
    due: &[(CodeKey, &Addresses)],
    now: u64,
) -> Result<Vec<(CodeKey, TerminalSigs)>, SignError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let chunk = due.len().div_ceil(threads).max(1);
    let signed: Vec<Result<Vec<(CodeKey, TerminalSigs)>, SignError>> =
        std::thread::scope(|scope| {
            let workers: Vec<_> = due
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(key, addresses)| {
                                staging
                                    .sign_terminal(zone, &key.to_code(), addresses, now)
                                    .map(|sigs| (*key, sigs))
                            })
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a signing thread does not panic"))
                .collect()
        });
    let mut all = Vec::with_capacity(due.len());
    for part in signed {
        all.extend(part?);
    }
    Ok(all)
}

/// The chain of every name with records: the terminals, each with its hash in `hashes` and
/// its code from `key_of`, by place, and the static names, in hash order; and each
/// terminal's successor in it, by place. One sort, and one pass for the successors.
pub fn chain_of(
    hashes: Vec<nsec3::Hash>,
    key_of: impl Fn(usize) -> CodeKey,
    statics: &Statics,
) -> (Chain<Owner>, Vec<nsec3::Hash>) {
    let terminals = hashes.len();
    // A place below `terminals` is a terminal's, above it a static name's.
    let mut order: Vec<(nsec3::Hash, u32)> = hashes
        .into_iter()
        .enumerate()
        .map(|(place, hash)| (hash, place as u32))
        .chain(
            (statics.names.iter().enumerate())
                .map(|(place, name)| (name.hash, (terminals + place) as u32)),
        )
        .collect();
    nsec3::sort_by_hash(&mut order);
    order.dedup_by_key(|(hash, _)| *hash);
    let mut successor: Vec<nsec3::Hash> = vec![[0; 20]; terminals];
    for (i, (_, place)) in order.iter().enumerate() {
        if let Some(next) = successor.get_mut(*place as usize) {
            *next = order[(i + 1) % order.len()].0;
        }
    }
    let chain = order
        .into_iter()
        .map(|(hash, place)| {
            let owner = match (place as usize) < terminals {
                true => Owner::Terminal(key_of(place as usize)),
                false => Owner::Static(place - terminals as u32),
            };
            (hash, owner)
        })
        .collect();
    (chain, successor)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dnssec::ZoneKey;

    const NOW: u64 = 1_800_000_000;

    fn terminal(code: &str, last: u8) -> (CodeKey, Addresses) {
        let mut addresses = Addresses::default();
        addresses.v4.ttl = 60;
        addresses.v4.addrs.push(Ipv4Addr::new(192, 0, 2, last));
        (CodeKey::from_digits(code.as_bytes()).unwrap(), addresses)
    }

    /// Stored signatures are kept by code in place: those of terminals gone are forgotten,
    /// a code stored twice is kept once, and what still holds is not signed again.
    #[test]
    fn stored_signatures_are_joined_by_code_in_place() {
        let zone = Zone::embedded_default();
        let key = ZoneKey::generate(NOW).unwrap();
        let signer = Arc::new(Signer::new(&[key], zone.origin()).unwrap());
        let three = vec![
            terminal("7001", 1),
            terminal("7002", 2),
            terminal("7003", 3),
        ];
        let first = sign_zone(
            signer.clone(),
            &zone,
            three.clone(),
            Slab::default(),
            true,
            NOW,
        )
        .unwrap();
        let sigs = |code: &str| {
            let key = CodeKey::from_digits(code.as_bytes()).unwrap();
            (key, first.terminals.get(&key).unwrap())
        };
        // In no order, 7002 twice; 7003 has gone offline.
        let stored: Slab = [sigs("7003"), sigs("7002"), sigs("7001"), sigs("7002")]
            .into_iter()
            .collect();
        let again = sign_zone(signer, &zone, three[..2].to_vec(), stored, true, NOW).unwrap();
        assert_eq!(again.changes, [(sigs("7003").0, None)]);
        assert_eq!(again.terminals.len(), 2);
        for code in ["7001", "7002"] {
            let (key, made) = sigs(code);
            let kept = again.terminals.get(&key).unwrap();
            assert_eq!((kept.a, kept.hash), (made.a, made.hash), "{code}");
        }
        assert_eq!(again.terminals.get(&sigs("7003").0), None);
    }
}
