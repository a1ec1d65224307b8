//! The copy of the terminals' signatures saved at the last clean stop (see [`super::saved`]),
//! looked up where it lies, by reads at offsets: what a signed start answers with DO from
//! as soon as the terminals are read, while the copy is read whole for the signed zone in
//! memory (see [`crate::dnssec::warm_start::preview`]). Opening it reads its header and trailer only;
//! a lookup is a binary search of about twenty reads in the records by code or by hash,
//! then one read of the record.
//!
//! Each record's own CRC-32 is checked before it is served (the file's is checked by the
//! whole read that follows); a lookup that finds the file damaged answers nothing (and says
//! so in the log once), never a record that fails its checksum.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::saved::{
    self, BY_CODE, BY_HASH, HEADER, NO_KEY_TAG, RECORD_MAX, SavedError, SavedId, Trailer,
};
use crate::dnssec::warm_start::preview::SavedSigs;
use crate::dnssec::{Hash, TerminalSigs};
use crate::identity::CodeKey;

/// A saved copy open for lookups.
#[derive(Debug)]
pub struct InPlace {
    file: File,
    trailer: Trailer,
    /// A lookup found the file damaged (logged once).
    damaged: AtomicBool,
}

impl InPlace {
    /// The copy at `path` saved with `id`: its header and trailer read and checked.
    pub(super) fn open(path: &Path, id: &SavedId) -> Result<Self, SavedError> {
        let (file, trailer, _) = saved::open(path, id)?;
        Ok(Self {
            file,
            trailer,
            damaged: AtomicBool::new(false),
        })
    }

    /// The `N` bytes at `offset`, or `None` (the file cannot be read: said once).
    fn read_at<const N: usize>(&self, offset: u64) -> Option<[u8; N]> {
        let mut bytes = [0u8; N];
        match self.file.read_exact_at(&mut bytes, offset) {
            Ok(()) => Some(bytes),
            Err(e) => {
                self.failed(SavedError::Io(e));
                None
            }
        }
    }

    fn failed(&self, error: SavedError) {
        if !self.damaged.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, "the signatures saved at the stop cannot be looked up");
        }
    }

    /// The record at `offset` (an offset from the records by code or by hash).
    fn record_at(&self, offset: u64) -> Option<(CodeKey, TerminalSigs)> {
        let end = self.trailer.by_code_at;
        if offset < HEADER as u64 || offset >= end {
            self.failed(SavedError::Damaged("an offset is outside the records"));
            return None;
        }
        let mut bytes = [0u8; RECORD_MAX];
        let len = RECORD_MAX.min((end - offset) as usize);
        if let Err(e) = self.file.read_exact_at(&mut bytes[..len], offset) {
            self.failed(SavedError::Io(e));
            return None;
        }
        match saved::decode(&bytes[..len]) {
            Ok(Some(record)) => Some((record.key, record.sigs)),
            Ok(None) => {
                self.failed(SavedError::Damaged("a record ends past the records"));
                None
            }
            Err(e) => {
                self.failed(e);
                None
            }
        }
    }

    /// The entry `i` of the records by code: code key bits and offset (`None` past the last).
    fn by_code(&self, i: u64) -> Option<(u64, u64)> {
        if i >= self.trailer.records {
            return None;
        }
        let bytes: [u8; BY_CODE] = self.read_at(self.trailer.by_code_at + i * BY_CODE as u64)?;
        let key = u64::from_le_bytes(bytes[..8].try_into().expect("8"));
        Some((key, u64::from_le_bytes(bytes[8..].try_into().expect("8"))))
    }

    /// The entry `i` of the records by hash: hash and offset (`None` past the last).
    fn by_hash(&self, i: u64) -> Option<(Hash, u64)> {
        if i >= self.trailer.records {
            return None;
        }
        let bytes: [u8; BY_HASH] = self.read_at(self.trailer.by_hash_at() + i * BY_HASH as u64)?;
        let hash = bytes[..20].try_into().expect("20");
        Some((hash, u64::from_le_bytes(bytes[20..].try_into().expect("8"))))
    }

    /// The first index in `0..records` at which `below` is false (it is true, then false).
    fn partition_point(&self, below: impl Fn(u64) -> Option<bool>) -> Option<u64> {
        let (mut low, mut high) = (0, self.trailer.records);
        while low < high {
            let middle = low + (high - low) / 2;
            match below(middle)? {
                true => low = middle + 1,
                false => high = middle,
            }
        }
        Some(low)
    }
}

impl SavedSigs for InPlace {
    fn count(&self) -> u64 {
        self.trailer.records
    }

    fn expires(&self) -> u32 {
        self.trailer.expires
    }

    fn key_tag(&self) -> Option<u16> {
        (self.trailer.key_tag != NO_KEY_TAG).then_some(self.trailer.key_tag as u16)
    }

    fn terminal(&self, key: CodeKey) -> Option<TerminalSigs> {
        let bits = key.to_bits();
        let at = self.partition_point(|i| self.by_code(i).map(|(k, _)| k < bits))?;
        let (found, offset) = self.by_code(at).filter(|(k, _)| *k == bits)?;
        let (stored, sigs) = self.record_at(offset)?;
        if stored.to_bits() != found {
            self.failed(SavedError::Damaged(
                "a record is not the one its code names",
            ));
            return None;
        }
        Some(sigs)
    }

    fn lower_bound(&self, hash: &Hash) -> Option<u64> {
        self.partition_point(|i| self.by_hash(i).map(|(h, _)| h < *hash))
    }

    fn hash_at(&self, i: u64) -> Option<Hash> {
        self.by_hash(i).map(|(hash, _)| hash)
    }

    fn owner_at(&self, i: u64) -> Option<CodeKey> {
        let (hash, offset) = self.by_hash(i)?;
        let (key, sigs) = self.record_at(offset)?;
        if sigs.hash != hash {
            self.failed(SavedError::Damaged(
                "a record is not the one its hash names",
            ));
            return None;
        }
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::super::saved::TRAILER;
    use super::*;
    use crate::dnssec::chain::Chain;
    use crate::dnssec::statics::Statics;
    use crate::dnssec::warm_start::preview::Preview;
    use crate::dnssec::{Owner, Sig, nsec3};
    use crate::zone::Zone;

    fn sig(expiration: u32, key_tag: u16) -> Sig {
        Sig {
            inception: 1000,
            expiration,
            key_tag,
            signature: [expiration as u8; 64],
        }
    }

    /// `n` terminals of the embedded zone in the store's order, with real hashes, each
    /// signed by `key_tag` to expire from 5,000 on.
    fn entries(zone: &Zone, n: u32, key_tag: u16) -> Vec<(CodeKey, TerminalSigs)> {
        let mut entries: Vec<(String, CodeKey, TerminalSigs)> = (0..n)
            .map(|i| {
                let code = format!("{}", 70_000 + i * 7);
                let key = CodeKey::from_digits(code.as_bytes()).unwrap();
                let name = crate::dnssec::staging::terminal_owner(zone, &key.to_code());
                let sigs = TerminalSigs {
                    hash: nsec3::hash(&name),
                    next: [i as u8; 20],
                    a: (i % 3 != 1).then(|| sig(5000 + i, key_tag)),
                    aaaa: (i % 3 != 0).then(|| sig(6000 + i, key_tag)),
                    nsec3: sig(7000 + i, key_tag),
                };
                (code, key, sigs)
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
            .into_iter()
            .map(|(_, key, sigs)| (key, sigs))
            .collect()
    }

    fn open(dir: &Path, entries: &[(CodeKey, TerminalSigs)]) -> InPlace {
        let path = dir.join(saved::FILE_NAME);
        saved::write(&path, &[3; 16], entries.iter().copied()).unwrap();
        InPlace::open(&path, &[3; 16]).unwrap()
    }

    #[test]
    fn a_saved_copy_looked_up_in_place_answers_as_the_chain_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let zone = Zone::embedded_default();
        let statics = Statics::of(&zone);
        for n in [0, 1, 2, 300] {
            let written = entries(&zone, n, 42);
            let saved = open(dir.path(), &written);
            assert_eq!(saved.count(), u64::from(n));
            assert_eq!(saved.expires(), if n == 0 { u32::MAX } else { 5000 });
            assert_eq!(saved.key_tag(), (n > 0).then_some(42));
            for (key, sigs) in &written {
                assert_eq!(saved.terminal(*key), Some(*sigs));
            }
            let absent = CodeKey::from_digits(b"69999").unwrap();
            assert_eq!(saved.terminal(absent), None);
            assert_eq!(saved.hash_at(u64::from(n)), None);
            assert!(
                !saved.damaged.load(Ordering::Relaxed),
                "nothing read was damaged"
            );

            let chain: Chain<Owner> = (written.iter())
                .map(|(key, sigs)| (sigs.hash, Owner::Terminal(*key)))
                .chain(
                    (statics.names.iter().enumerate())
                        .map(|(i, s)| (s.hash, Owner::Static(i as u32))),
                )
                .collect();
            assert!(
                Preview::new(Box::new(open(dir.path(), &written)), &statics, 41, 0).is_none()
                    || n == 0
            );
            assert!(
                Preview::new(Box::new(open(dir.path(), &written)), &statics, 42, 5001).is_none()
                    || n == 0
            );
            let preview = Preview::new(Box::new(saved), &statics, 42, 5000).unwrap();
            let mut probes = vec![[0u8; 20], [0xff; 20]];
            for (hash, _) in chain.iter() {
                let mut above = *hash;
                above[19] = above[19].wrapping_add(1);
                let mut below = *hash;
                below[19] = below[19].wrapping_sub(1);
                probes.extend([*hash, above, below]);
            }
            for probe in &probes {
                assert_eq!(preview.get(probe), chain.get(probe), "{n}: at {probe:?}");
                assert_eq!(
                    preview.before(probe),
                    chain.before(probe),
                    "{n}: before {probe:?}"
                );
                assert_eq!(
                    preview.next(probe),
                    chain.next(probe),
                    "{n}: after {probe:?}"
                );
            }
        }
    }

    #[test]
    fn a_copy_signed_by_more_than_one_key_is_not_looked_up_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let zone = Zone::embedded_default();
        let mut written = entries(&zone, 20, 42);
        written[7].1.nsec3.key_tag = 43;
        let saved = open(dir.path(), &written);
        assert_eq!(saved.key_tag(), None);
        assert!(Preview::new(Box::new(saved), &Statics::of(&zone), 42, 0).is_none());
    }

    /// A damaged copy's lookups answer nothing or what it holds, and never panic.
    #[test]
    fn a_damaged_copy_answers_nothing_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let zone = Zone::embedded_default();
        let written = entries(&zone, 50, 42);
        let path = dir.path().join(saved::FILE_NAME);
        saved::write(&path, &[3; 16], written.iter().copied()).unwrap();
        let whole = std::fs::read(&path).unwrap();
        let by_code_at = whole.len() - TRAILER - 50 * (BY_CODE + BY_HASH);
        for at in (by_code_at..whole.len() - TRAILER).step_by(5) {
            let mut damaged = whole.clone();
            damaged[at] ^= 0xa5;
            std::fs::write(&path, &damaged).unwrap();
            let saved = InPlace::open(&path, &[3; 16]).unwrap();
            for (key, sigs) in &written {
                if let Some(found) = saved.terminal(*key) {
                    assert_eq!(found, *sigs);
                }
                if let Some(at) = saved.lower_bound(&sigs.hash) {
                    let _ = (saved.hash_at(at), saved.owner_at(at));
                }
            }
        }
        std::fs::write(&path, &whole[..whole.len() - 1]).unwrap();
        assert!(InPlace::open(&path, &[3; 16]).is_err());
        std::fs::write(&path, &whole).unwrap();
        assert!(matches!(
            InPlace::open(&path, &[4; 16]),
            Err(SavedError::Stale)
        ));
    }

    /// Regression: a record damaged on disk (a signature's bytes, its hash, its next hash)
    /// was served by the lookups in place until the whole read failed its CRC.
    #[test]
    fn a_damaged_record_is_never_served_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let zone = Zone::embedded_default();
        let written = entries(&zone, 30, 42);
        let path = dir.path().join(saved::FILE_NAME);
        saved::write(&path, &[3; 16], written.iter().copied()).unwrap();
        let whole = std::fs::read(&path).unwrap();
        let by_code_at = whole.len() - TRAILER - 30 * (BY_CODE + BY_HASH);
        let mut served_damaged = Vec::new();
        for at in (HEADER..by_code_at).step_by(3) {
            let mut damaged = whole.clone();
            damaged[at] ^= 0x10;
            std::fs::write(&path, &damaged).unwrap();
            let saved = InPlace::open(&path, &[3; 16]).unwrap();
            for (i, (key, sigs)) in written.iter().enumerate() {
                if saved.terminal(*key).is_some_and(|found| found != *sigs) {
                    served_damaged.push((at, i));
                }
                let owner = saved
                    .lower_bound(&sigs.hash)
                    .and_then(|i| saved.owner_at(i));
                assert!(owner.is_none_or(|owner| owner == *key), "byte {at}");
            }
        }
        assert!(
            served_damaged.is_empty(),
            "damaged records served: {} (byte, record), first {:?}",
            served_damaged.len(),
            served_damaged.first()
        );
    }

    #[test]
    fn a_copy_of_another_id_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let zone = Zone::embedded_default();
        let written = entries(&zone, 3, 42);
        let path = dir.path().join(saved::FILE_NAME);
        saved::write(&path, &[3; 16], written.iter().copied()).unwrap();
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole).unwrap();
        assert!(matches!(
            InPlace::open(&path, &[4; 16]),
            Err(SavedError::Stale)
        ));
    }
}
