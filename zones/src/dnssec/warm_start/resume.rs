//! Taking the signed zone up again at a start from the terminals' signatures as stored:
//! the copy saved at the last clean stop (see `store::saved`), or the store's `signed`
//! table; both give them in the store's order of codes, the order the terminals are read.
//!
//! [`Building`] takes each stored entry as it is decoded, on the core that reads them
//! beside the terminals' read, and keeps what the start needs of it apart: the index by
//! code, the chain's hashes, and a few bytes that say whether its signatures still do
//! ([`Standing`]); its [`Building::finish`] sorts the chain there too. [`resume`] then
//! checks the terminals against those in one walk, in step with the terminals as the
//! store gives them. No sort, join or pass over the signatures themselves is left for
//! after the terminals' read.
//!
//! Signatures are kept as the general path ([`crate::dnssec::whole::sign_zone`]) would keep them:
//! every signature by the active key, not due for refresh, over the terminal's address
//! families, its NSEC3 naming the chain's next hash; a terminal that fails one of these is
//! signed again. When the terminals that publish addresses are not exactly the stored
//! ones, the chain itself differs: the start signs the zone the general way, from the same
//! rows.

use std::sync::Arc;

use crate::dnssec::chain::Chain;
use crate::dnssec::nsec3::Hash;
use crate::dnssec::sign::{SignError, Signer};
use crate::dnssec::staging::Staging;
use crate::dnssec::statics::Statics;
use crate::dnssec::terminals::{Slab, Terminals};
use crate::dnssec::whole::{self, Standing, Whole};
use crate::dnssec::{Owner, TerminalSigs};
use crate::identity::CodeKey;
use crate::model::Addresses;
use crate::zone::Zone;

/// Stored signatures as they are read.
#[derive(Debug)]
pub struct Building {
    /// In the stored order; then each entry's code, hash, next hash and standing by place,
    /// apart from the slab so that the passes after the read go over 8 to 20 bytes an
    /// entry, not 208.
    slab: Slab,
    keys: Vec<CodeKey>,
    hashes: Vec<Hash>,
    nexts: Vec<Hash>,
    standings: Vec<Standing>,
}

/// Stored signatures, ready for [`resume`].
#[derive(Debug)]
pub struct Prepared {
    terminals: Terminals,
    /// The stored terminals and the static names, for the writer and (a copy) for the
    /// published zone.
    chain: Chain<Owner>,
    published_chain: Chain<Owner>,
    statics: Statics,
    /// By place, in the stored order.
    keys: Vec<CodeKey>,
    standings: Vec<Standing>,
    /// The stored terminals whose NSEC3 names another next hash than the chain's, by code.
    moved: Vec<CodeKey>,
}

/// What [`resume`] made of the stored signatures.
#[derive(Debug)]
pub enum Resumed {
    /// The signed zone.
    Whole(Box<Whole>),
    /// The terminals that publish addresses are not the stored ones: the stored signatures,
    /// for [`crate::dnssec::whole::sign_zone`].
    Differs(Slab),
}

impl Building {
    /// Room for about `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            slab: Slab::with_capacity(capacity),
            keys: Vec::with_capacity(capacity),
            hashes: Vec::with_capacity(capacity),
            nexts: Vec::with_capacity(capacity),
            standings: Vec::with_capacity(capacity),
        }
    }

    pub fn push(&mut self, key: CodeKey, sigs: TerminalSigs) {
        self.keys.push(key);
        self.hashes.push(sigs.hash);
        self.nexts.push(sigs.next);
        self.standings.push(Standing::of(&sigs));
        self.slab.push(key, sigs);
    }

    /// The chain of the stored terminals with the static names of `zone`, and their index;
    /// the entries back when a code came twice (never in what this server stores). With a
    /// `spare_core` (the terminals' read is over, as after `kill -9`, when the store's table
    /// is read more slowly than the terminals) the index is built there meanwhile; beside
    /// the terminals' read, one core does both.
    pub fn finish(self, zone: &Zone, spare_core: bool) -> Result<Prepared, Slab> {
        let Self {
            slab,
            keys,
            hashes,
            nexts,
            standings,
        } = self;
        let statics = Statics::of(zone);
        let index = || Terminals::index(keys.iter().copied(), &vec![true; keys.len()]);
        let chain = || whole::chain_of(hashes, |place| keys[place], &statics);
        let (index, (chain, successor)) = match spare_core {
            true => std::thread::scope(|scope| {
                let side = scope.spawn(index);
                let chain = chain();
                (
                    side.join().expect("building the index does not panic"),
                    chain,
                )
            }),
            false => (index(), chain()),
        };
        let terminals = Terminals::from_parts(slab, index);
        if terminals.len() != keys.len() {
            return Err(terminals.into_slab());
        }
        let mut moved: Vec<CodeKey> = (keys.iter().zip(nexts.iter().zip(&successor)))
            .filter(|(_, (next, successor))| next != successor)
            .map(|(key, _)| *key)
            .collect();
        moved.sort_unstable();
        Ok(Prepared {
            terminals,
            published_chain: chain.clone(),
            chain,
            statics,
            keys,
            standings,
            moved,
        })
    }
}

impl Prepared {
    /// The stored signatures, for [`crate::dnssec::whole::sign_zone`].
    pub fn into_slab(self) -> Slab {
        self.terminals.into_slab()
    }
}

/// The signed zone from `stored`, for the terminals `online` (each with its addresses; those
/// with none are not in the zone), signed by `signer` at `now`: the stored signatures that
/// hold are kept, the others made again (on every core).
pub fn resume<'a>(
    signer: Arc<Signer>,
    zone: &Zone,
    stored: Prepared,
    online: impl Iterator<Item = (CodeKey, &'a Addresses)>,
    now: u64,
) -> Result<Resumed, SignError> {
    let Prepared {
        mut terminals,
        chain,
        published_chain,
        statics,
        keys,
        standings,
        moved,
    } = stored;
    let key_tag = signer.key_tag();
    let horizon = (now as u32).wrapping_add(whole::REFRESH);
    let mut due: Vec<(CodeKey, &Addresses)> = Vec::new();
    let mut found = 0;
    for (key, addresses) in online.filter(|(_, a)| !a.is_empty()) {
        // Prepared in the order the terminals are read: each is where the walk is.
        let standing = match keys.get(found) {
            Some(at) if *at == key => standings[found],
            _ => match terminals.get(&key) {
                Some(sigs) => Standing::of(&sigs),
                None => return Ok(Resumed::Differs(terminals.into_slab())),
            },
        };
        found += 1;
        if !standing.holds(addresses, key_tag, horizon) || moved.binary_search(&key).is_ok() {
            due.push((key, addresses));
        }
    }
    if found != terminals.len() {
        return Ok(Resumed::Differs(terminals.into_slab()));
    }
    let staging = Staging::new(signer, statics, chain);
    let mut changes = Vec::with_capacity(due.len());
    for (key, sigs) in whole::sign_each(&staging, zone, &due, now)? {
        terminals.insert(key, sigs);
        changes.push((key, Some(sigs)));
    }
    Ok(Resumed::Whole(Box::new(Whole {
        staging,
        terminals,
        changes,
        published_chain: Some(published_chain),
    })))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::dnssec::ZoneKey;

    const NOW: u64 = 1_800_000_000;

    fn signer(zone: &Zone) -> Arc<Signer> {
        let key = ZoneKey::generate(NOW).unwrap();
        Arc::new(Signer::new(&[key], zone.origin()).unwrap())
    }

    /// `count` terminals from code 7000 on, each with an IPv4 address.
    fn online(count: u8) -> Vec<(CodeKey, Addresses)> {
        (0..count)
            .map(|i| {
                let mut addresses = Addresses::default();
                addresses.v4.ttl = 60;
                addresses.v4.addrs.push(Ipv4Addr::new(192, 0, 2, i));
                let code = format!("{}", 7000 + u32::from(i));
                (CodeKey::from_digits(code.as_bytes()).unwrap(), addresses)
            })
            .collect()
    }

    /// The zone's signatures made the general way, in the store's order of codes (as a
    /// stop saves them).
    fn signed(signer: &Arc<Signer>, zone: &Zone, online: &[(CodeKey, Addresses)]) -> Whole {
        whole::sign_zone(
            signer.clone(),
            zone,
            online.to_vec(),
            Slab::default(),
            true,
            NOW,
        )
        .unwrap()
    }

    fn in_store_order(terminals: &Terminals) -> Vec<(CodeKey, TerminalSigs)> {
        terminals.in_store_order().collect()
    }

    fn saved_copy(zone: &Zone, entries: &[(CodeKey, TerminalSigs)]) -> Result<Prepared, Slab> {
        let mut building = Building::with_capacity(entries.len());
        for (key, sigs) in entries {
            building.push(*key, *sigs);
        }
        building.finish(zone, false)
    }

    fn resumed(
        signer: &Arc<Signer>,
        zone: &Zone,
        saved: Prepared,
        online: &[(CodeKey, Addresses)],
        now: u64,
    ) -> Resumed {
        let online = online.iter().map(|(key, addresses)| (*key, addresses));
        resume(signer.clone(), zone, saved, online, now).unwrap()
    }

    /// The zone taken up from `entries` saved: it must be (the same terminals).
    fn taken_up(
        signer: &Arc<Signer>,
        zone: &Zone,
        entries: &[(CodeKey, TerminalSigs)],
        online: &[(CodeKey, Addresses)],
        now: u64,
    ) -> Whole {
        let saved = saved_copy(zone, entries).unwrap();
        match resumed(signer, zone, saved, online, now) {
            Resumed::Whole(whole) => *whole,
            Resumed::Differs(_) => panic!("the same terminals"),
        }
    }

    fn chain(staging: &Staging) -> Vec<(Hash, Owner)> {
        staging.chain().iter().map(|(h, o)| (*h, *o)).collect()
    }

    /// Taken up from its saved signatures, the zone is the one the general path builds
    /// from the same rows: the same chain and signatures, nothing signed again; a terminal
    /// whose signatures no longer hold (another address family, another key, another next
    /// hash) is signed again, and every one when they come due.
    #[test]
    fn saved_signatures_that_hold_are_kept_and_the_others_signed_again() {
        let zone = Zone::embedded_default();
        let signer = signer(&zone);
        let online = online(20);
        let general = signed(&signer, &zone, &online);
        let entries = in_store_order(&general.terminals);

        let whole = taken_up(&signer, &zone, &entries, &online, NOW);
        assert!(whole.changes.is_empty(), "nothing signed again");
        assert_eq!(in_store_order(&whole.terminals), entries);
        assert_eq!(chain(&whole.staging), chain(&general.staging));

        // Three that no longer hold, each for another reason.
        let mut changed = online.clone();
        changed[3].1.v6.ttl = 60;
        changed[3].1.v6.addrs.push(Ipv6Addr::LOCALHOST);
        let mut entries = entries;
        let place = |key: CodeKey| entries.iter().position(|(k, _)| *k == key).unwrap();
        let (tagged, moved) = (place(online[5].0), place(online[7].0));
        entries[tagged].1.a.as_mut().unwrap().key_tag ^= 1;
        entries[moved].1.next[0] ^= 1;
        let whole = taken_up(&signer, &zone, &entries, &changed, NOW);
        let mut again: Vec<CodeKey> = whole.changes.iter().map(|(key, _)| *key).collect();
        again.sort();
        assert_eq!(again, [online[3].0, online[5].0, online[7].0]);
        let expected = signed(&signer, &zone, &changed);
        for (key, sigs) in &whole.changes {
            let sigs = sigs.unwrap();
            let made = expected.terminals.get(key).unwrap();
            assert_eq!((sigs.hash, sigs.next), (made.hash, made.next));
            assert_eq!(
                (sigs.a.is_some(), sigs.aaaa.is_some()),
                (true, *key == online[3].0)
            );
            assert_eq!(whole.terminals.get(key), Some(sigs));
        }

        // Come due: all of them.
        let later = NOW + u64::from(crate::dnssec::sign::VALIDITY - whole::REFRESH) + 1;
        let entries = in_store_order(&general.terminals);
        let whole = taken_up(&signer, &zone, &entries, &online, later);
        assert_eq!(whole.changes.len(), online.len());
    }

    /// When the terminals that publish addresses are not the saved ones, the chain differs:
    /// the saved rows come back for the general path, whole. A copy naming a code twice is
    /// not taken at all.
    #[test]
    fn terminals_other_than_the_saved_ones_give_the_rows_back() {
        let zone = Zone::embedded_default();
        let signer = signer(&zone);
        let online = online(10);
        let entries = in_store_order(&signed(&signer, &zone, &online).terminals);
        let sorted = |rows: Slab| {
            let mut rows: Vec<_> = rows.entries().collect();
            rows.sort_by_key(|(key, _)| key.text_order());
            rows
        };
        for terminals in [&online[1..], &self::online(11)[..]] {
            let saved = saved_copy(&zone, &entries).unwrap();
            match resumed(&signer, &zone, saved, terminals, NOW) {
                Resumed::Differs(rows) => assert_eq!(sorted(rows), entries),
                Resumed::Whole(_) => panic!("{} terminals taken up", terminals.len()),
            }
        }
        // A terminal gone offline is not in the zone: as if it were missing.
        let mut offline = online.clone();
        offline[4].1 = Addresses::default();
        let saved = saved_copy(&zone, &entries).unwrap();
        assert!(matches!(
            resumed(&signer, &zone, saved, &offline, NOW),
            Resumed::Differs(_)
        ));
        let mut twice = entries.clone();
        twice.push(entries[2]);
        match saved_copy(&zone, &twice) {
            Err(rows) => assert_eq!(sorted(rows), entries, "each code once"),
            Ok(_) => panic!("a copy naming a code twice taken up"),
        }
    }

    /// Built on one core or on two, the preparation is the same.
    #[test]
    fn a_copy_prepared_with_a_spare_core_is_the_same() {
        let zone = Zone::embedded_default();
        let signer = signer(&zone);
        let online = online(30);
        let mut entries = in_store_order(&signed(&signer, &zone, &online).terminals);
        entries[4].1.next[0] ^= 1;
        let prepare = |spare_core: bool| {
            let mut building = Building::with_capacity(entries.len());
            for (key, sigs) in &entries {
                building.push(*key, *sigs);
            }
            building.finish(&zone, spare_core).unwrap()
        };
        let (one, two) = (prepare(false), prepare(true));
        let chain = |p: &Prepared| p.chain.iter().map(|(h, o)| (*h, *o)).collect::<Vec<_>>();
        assert_eq!(chain(&one), chain(&two));
        assert_eq!(chain(&one).len(), 30 + Statics::of(&zone).names.len());
        assert_eq!(
            in_store_order(&one.terminals),
            in_store_order(&two.terminals)
        );
        assert_eq!(in_store_order(&two.terminals), entries);
        assert_eq!((&one.keys, &one.standings), (&two.keys, &two.standings));
        assert_eq!(one.moved, [entries[4].0]);
        assert_eq!(two.moved, one.moved);
    }
}
