//! Signing the whole zone: at the first start with DNSSEC on, after a restore or an import,
//! and when the static zone changes. Stored signatures that still hold are kept; the others
//! are made again, on every core.
//!
//! A terminal's stored signatures are made again when they are missing, were made by
//! another key, no longer match its address families, name another next hash than the
//! chain's, or expire within [`REFRESH`].

use std::collections::HashMap;
use std::sync::Arc;

use super::sign::{SignError, Signer};
use super::staging::Staging;
use super::{TerminalSigs, nsec3};
use crate::identity::CodeKey;
use crate::model::Addresses;
use crate::zone::Zone;

/// Signatures expiring sooner than this are made again (half of [`super::sign::VALIDITY`]).
pub const REFRESH: u32 = super::sign::VALIDITY / 2;

/// The outcome: the writer's chain, every terminal's signatures, and what changed.
#[derive(Debug)]
pub struct Whole {
    pub staging: Staging,
    pub terminals: HashMap<CodeKey, TerminalSigs, foldhash::fast::RandomState>,
    /// Signatures to store: new ones (`Some`) and ones to forget (`None`).
    pub changes: Vec<(CodeKey, Option<TerminalSigs>)>,
}

/// Signs `zone` with `signer`: `online` are the terminals that publish addresses, `stored`
/// the signatures the store holds.
pub fn sign_zone(
    signer: Arc<Signer>,
    zone: &Zone,
    online: Vec<(CodeKey, Addresses)>,
    mut stored: HashMap<CodeKey, TerminalSigs, foldhash::fast::RandomState>,
    now: u64,
) -> Result<Whole, SignError> {
    let mut changes: Vec<(CodeKey, Option<TerminalSigs>)> = Vec::new();
    let online_keys: std::collections::HashSet<CodeKey> = online.iter().map(|(k, _)| *k).collect();
    stored.retain(|key, _| {
        let keep = online_keys.contains(key);
        if !keep {
            changes.push((*key, None));
        }
        keep
    });
    let hashes: Vec<(CodeKey, nsec3::Hash)> = online
        .iter()
        .map(|(key, _)| {
            let hash = stored.get(key).map_or_else(
                || nsec3::hash(&super::staging::terminal_owner(zone, &key.to_code())),
                |s| s.hash,
            );
            (*key, hash)
        })
        .collect();
    let mut staging = Staging::new(signer.clone(), zone, hashes.into_iter());
    // Each hash's successor, in one pass over the chain (not a search per terminal).
    let chain: Vec<nsec3::Hash> = staging.chain().iter().map(|(h, _)| *h).collect();
    let successor: HashMap<nsec3::Hash, nsec3::Hash, foldhash::fast::RandomState> = chain
        .iter()
        .zip(chain.iter().cycle().skip(1))
        .map(|(h, next)| (*h, *next))
        .collect();
    drop(chain);
    let key_tag = signer.key_tag();
    let horizon = (now as u32).wrapping_add(REFRESH);
    let stale: Vec<&(CodeKey, Addresses)> = online
        .iter()
        .filter(|(key, addresses)| {
            stored.get(key).is_none_or(|s| {
                let sigs = [s.a, s.aaaa, Some(s.nsec3)];
                s.a.is_some() == addresses.v4.addrs.is_empty()
                    || s.aaaa.is_some() == addresses.v6.addrs.is_empty()
                    || successor.get(&s.hash) != Some(&s.next)
                    || sigs
                        .iter()
                        .flatten()
                        .any(|sig| sig.key_tag != key_tag || sig.expiration < horizon)
            })
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let chunk = stale.len().div_ceil(threads).max(1);
    let signed: Vec<Result<Vec<(CodeKey, TerminalSigs)>, SignError>> =
        std::thread::scope(|scope| {
            let workers: Vec<_> = stale
                .chunks(chunk)
                .map(|part| {
                    let staging = &staging;
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
    for part in signed {
        for (key, sigs) in part? {
            stored.insert(key, sigs);
            changes.push((key, Some(sigs)));
        }
    }
    for (key, sigs) in &stored {
        staging.track(*key, None, Some(sigs));
    }
    Ok(Whole {
        staging,
        terminals: stored,
        changes,
    })
}
