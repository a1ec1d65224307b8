//! The terminals' signatures saved at a clean stop, `DIR/signatures.saved`: one file read in
//! large blocks at the next start, instead of a million rows of the `signed` table decoded
//! one by one, and looked up in place meanwhile (see [`super::in_place`]).
//!
//! The `signed` table stays what is durable; this file is a copy, taken only when it is
//! whole and when it is the table as the store last left it:
//! - it is written under a temporary name and renamed, and ends with a CRC-32 of all it
//!   holds, so a torn or damaged file is refused;
//! - it carries a random id that the store's last commit at the stop records (`meta`
//!   `signatures_saved`), and every later commit removes that record, so a copy older
//!   than the table is refused too (see [`super::Store::saved_signatures`]).
//!
//! Layout, little-endian:
//!
//! ```text
//! header   "DIALSIG\0"  format (u32)  id (16 bytes)
//! records  code key (u64)  hash (20)  next (20)  families (u8: 1 A, 2 AAAA)
//!          NSEC3 RRSIG, then the A and AAAA RRSIGs it has
//!          (an RRSIG: inception u32, expiration u32, key tag u16, signature 64 bytes)
//!          CRC-32 of the record's bytes before it (u32): a lookup in place serves a
//!          record only when it holds
//! by code  for each record in the order of code keys: code key (u64), offset (u64)
//! by hash  for each record in the order of hashes: hash (20), offset (u64)
//! trailer  records (u64)  offset of "by code" (u64)  the earliest expiration (u32)
//!          the key tag of every signature (u32; NO_KEY_TAG when they differ or are none)
//!          CRC-32 of everything before it (u32)
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::dnssec::{Sig, TerminalSigs};
use crate::identity::CodeKey;

/// The copy's name in the data directory.
pub const FILE_NAME: &str = "signatures.saved";

/// What ties a copy to the commit that recorded it.
pub type SavedId = [u8; 16];

const MAGIC: &[u8; 8] = b"DIALSIG\0";
/// 3: each record ends with its own CRC-32 (2 had the file's only).
const FORMAT: u32 = 3;
pub(super) const HEADER: usize = 8 + 4 + 16;
pub(super) const TRAILER: usize = 8 + 8 + 4 + 4 + 4;
const SIG: usize = 4 + 4 + 2 + 64;
/// A record's own CRC-32, at its end.
const RECORD_CRC: usize = 4;
/// A record with its NSEC3 signature and no address signature.
const RECORD_MIN: usize = 8 + 20 + 20 + 1 + SIG + RECORD_CRC;
pub(super) const RECORD_MAX: usize = RECORD_MIN + 2 * SIG;
/// An entry of the records by code, and by hash.
pub(super) const BY_CODE: usize = 8 + 8;
pub(super) const BY_HASH: usize = 20 + 8;
/// In the trailer: the signatures were made by more than one key (or there are none).
pub(super) const NO_KEY_TAG: u32 = u32::MAX;
/// Read at a time.
const BLOCK: usize = 4 << 20;

/// Why a copy was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    #[error("it was saved for another state of the store")]
    Stale,
    #[error("it is damaged: {0}")]
    Damaged(&'static str),
}

/// Writes `entries` to `path` (through a temporary file, then renamed), readable by its
/// owner only. On failure nothing is left behind.
pub fn write(
    path: &Path,
    id: &SavedId,
    entries: impl Iterator<Item = (CodeKey, TerminalSigs)>,
) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    write_to(&temporary, id, entries)
        .and_then(|()| std::fs::rename(&temporary, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
}

fn write_to(
    temporary: &Path,
    id: &SavedId,
    entries: impl Iterator<Item = (CodeKey, TerminalSigs)>,
) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(temporary)?;
    let mut out = Summed {
        inner: BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
    };
    out.write_all(&header(id))?;
    let mut record = Vec::with_capacity(RECORD_MAX);
    let mut offset = HEADER as u64;
    let mut by_code: Vec<(u64, u64)> = Vec::with_capacity(entries.size_hint().0);
    let mut by_hash: Vec<([u8; 20], u64)> = Vec::with_capacity(entries.size_hint().0);
    let mut signed = Signed {
        expires: u32::MAX,
        key_tag: None,
    };
    for (key, sigs) in entries {
        record.clear();
        encode(&mut record, key, &sigs);
        out.write_all(&record)?;
        by_code.push((key.to_bits(), offset));
        by_hash.push((sigs.hash, offset));
        signed.add(&sigs);
        offset += record.len() as u64;
    }
    by_code.sort_unstable();
    sort_by_hash(&mut by_hash);
    for (key, at) in &by_code {
        out.write_all(&key.to_le_bytes())?;
        out.write_all(&at.to_le_bytes())?;
    }
    for (hash, at) in &by_hash {
        out.write_all(hash)?;
        out.write_all(&at.to_le_bytes())?;
    }
    let trailer = Trailer {
        records: by_code.len() as u64,
        by_code_at: offset,
        expires: signed.expires,
        key_tag: signed.key_tag.unwrap_or(NO_KEY_TAG),
    };
    out.write_all(&trailer.encode()[..TRAILER - 4])?;
    let crc = out.crc.finalize();
    let mut inner = out.inner;
    inner.write_all(&crc.to_le_bytes())?;
    inner.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

/// Sorts `entries` by hash: by their first eight bytes as a number, a sort of 16-byte
/// entries (about three times as fast at a million as comparing whole hashes), then by the
/// whole hash where those bytes are equal.
fn sort_by_hash(entries: &mut Vec<([u8; 20], u64)>) {
    let prefix = |hash: &[u8; 20]| u64::from_be_bytes(hash[..8].try_into().expect("8"));
    let mut order: Vec<(u64, u32)> = (entries.iter().enumerate())
        .map(|(i, (hash, _))| (prefix(hash), i as u32))
        .collect();
    order.sort_unstable();
    let mut sorted: Vec<([u8; 20], u64)> =
        order.iter().map(|(_, i)| entries[*i as usize]).collect();
    for run in sorted.chunk_by_mut(|a, b| prefix(&a.0) == prefix(&b.0)) {
        if run.len() > 1 {
            run.sort_unstable();
        }
    }
    *entries = sorted;
}

/// What the trailer says of the records, beside their checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Trailer {
    pub records: u64,
    /// Where the records by code start (and the records end).
    pub by_code_at: u64,
    /// The earliest expiration of all the signatures (`u32::MAX` with none).
    pub expires: u32,
    /// The key tag of every signature, or [`NO_KEY_TAG`].
    pub key_tag: u32,
}

impl Trailer {
    fn encode(&self) -> [u8; TRAILER] {
        let mut out = [0u8; TRAILER];
        out[..8].copy_from_slice(&self.records.to_le_bytes());
        out[8..16].copy_from_slice(&self.by_code_at.to_le_bytes());
        out[16..20].copy_from_slice(&self.expires.to_le_bytes());
        out[20..24].copy_from_slice(&self.key_tag.to_le_bytes());
        out
    }

    /// The trailer of a file `len` bytes long, and its CRC; refused when its sections
    /// cannot fit the file.
    pub(super) fn decode(bytes: &[u8; TRAILER], len: u64) -> Result<(Self, u32), SavedError> {
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let trailer = Self {
            records: u64_at(0),
            by_code_at: u64_at(8),
            expires: u32_at(16),
            key_tag: u32_at(20),
        };
        let sections = trailer
            .records
            .checked_mul((BY_CODE + BY_HASH) as u64)
            .and_then(|s| s.checked_add(trailer.by_code_at))
            .and_then(|s| s.checked_add(TRAILER as u64));
        if trailer.by_code_at < HEADER as u64 || sections != Some(len) {
            return Err(SavedError::Damaged("its sections do not fit its length"));
        }
        Ok((trailer, u32_at(24)))
    }

    /// Where the records by hash start.
    pub(super) fn by_hash_at(&self) -> u64 {
        self.by_code_at + self.records * BY_CODE as u64
    }

    /// Where the trailer starts.
    fn at(&self) -> u64 {
        self.by_hash_at() + self.records * BY_HASH as u64
    }
}

/// The earliest expiration (`u32::MAX` before any) and the key tag of the signatures seen
/// (`None` before any, [`NO_KEY_TAG`] once two differ).
struct Signed {
    expires: u32,
    key_tag: Option<u32>,
}

impl Signed {
    fn add(&mut self, sigs: &TerminalSigs) {
        for sig in [Some(sigs.nsec3), sigs.a, sigs.aaaa].iter().flatten() {
            let tag = u32::from(sig.key_tag);
            self.expires = self.expires.min(sig.expiration);
            if *self.key_tag.get_or_insert(tag) != tag {
                self.key_tag = Some(NO_KEY_TAG);
            }
        }
    }
}

/// Each entry of the copy at `path` saved with `id` to `each`, in the order they were
/// written (as they are decoded: the caller sorts them out while they are in the cache);
/// returns how many. An error may come after some entries: the caller drops them then.
pub fn read(
    path: &Path,
    id: &SavedId,
    mut each: impl FnMut(CodeKey, TerminalSigs),
) -> Result<u64, SavedError> {
    let (mut file, sections, stored_crc) = open(path, id)?;
    file.seek(SeekFrom::Start(HEADER as u64))?;

    let mut crc = crc32fast::Hasher::new();
    crc.update(&header(id));
    let mut left = sections.by_code_at as usize - HEADER;
    let mut entries = 0u64;
    let mut block = vec![0u8; BLOCK + RECORD_MAX];
    // Bytes of `block` read and not yet decoded: `block[start..end]`.
    let (mut start, mut end) = (0, 0);
    loop {
        while let Some(record) = decode(&block[start..end])? {
            each(record.key, record.sigs);
            entries += 1;
            start += record.len;
        }
        if left == 0 {
            break;
        }
        block.copy_within(start..end, 0);
        (start, end) = (0, end - start);
        let want = left.min(block.len() - end);
        file.read_exact(&mut block[end..end + want])?;
        crc.update(&block[end..end + want]);
        end += want;
        left -= want;
    }
    if start != end {
        return Err(SavedError::Damaged("ends inside a record"));
    }
    // The records by code and by hash: summed only (they serve lookups in place).
    let mut left = (sections.at() - sections.by_code_at) as usize;
    while left > 0 {
        let want = left.min(block.len());
        file.read_exact(&mut block[..want])?;
        crc.update(&block[..want]);
        left -= want;
    }
    crc.update(&sections.encode()[..TRAILER - 4]);
    if crc.finalize() != stored_crc {
        return Err(SavedError::Damaged("its checksum does not match"));
    }
    if entries != sections.records {
        return Err(SavedError::Damaged("it holds another number of records"));
    }
    Ok(entries)
}

/// The copy at `path` saved with `id`, open, with its trailer and the CRC that ends it: its
/// header and trailer read and checked, not its records nor its CRC.
pub(super) fn open(path: &Path, id: &SavedId) -> Result<(File, Trailer, u32), SavedError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < (HEADER + TRAILER) as u64 {
        return Err(SavedError::Damaged("shorter than its header"));
    }
    let mut found = [0u8; HEADER];
    file.read_exact_at(&mut found, 0)?;
    let expected = header(id);
    if found[..12] != expected[..12] {
        return Err(SavedError::Damaged("not a copy of this format"));
    }
    if found != expected {
        return Err(SavedError::Stale);
    }
    let mut trailer = [0u8; TRAILER];
    file.read_exact_at(&mut trailer, len - TRAILER as u64)?;
    let (trailer, crc) = Trailer::decode(&trailer, len)?;
    Ok((file, trailer, crc))
}

/// The header of a copy saved with `id`.
fn header(id: &SavedId) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    header[12..].copy_from_slice(id);
    header
}

/// A writer that sums what goes through it.
struct Summed<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.crc.update(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn encode(out: &mut Vec<u8>, key: CodeKey, sigs: &TerminalSigs) {
    out.extend_from_slice(&key.to_bits().to_le_bytes());
    out.extend_from_slice(&sigs.hash);
    out.extend_from_slice(&sigs.next);
    out.push(u8::from(sigs.a.is_some()) | (u8::from(sigs.aaaa.is_some()) << 1));
    for sig in [Some(sigs.nsec3), sigs.a, sigs.aaaa].iter().flatten() {
        out.extend_from_slice(&sig.inception.to_le_bytes());
        out.extend_from_slice(&sig.expiration.to_le_bytes());
        out.extend_from_slice(&sig.key_tag.to_le_bytes());
        out.extend_from_slice(&sig.signature);
    }
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// One record, decoded.
pub(super) struct Record {
    pub key: CodeKey,
    pub sigs: TerminalSigs,
    /// Its length in the file.
    len: usize,
}

/// The record at the start of `bytes`; `None` when `bytes` holds only part of one.
pub(super) fn decode(bytes: &[u8]) -> Result<Option<Record>, SavedError> {
    if bytes.len() < RECORD_MIN {
        return Ok(None);
    }
    let families = bytes[48];
    if families > 3 {
        return Err(SavedError::Damaged(
            "a record names unknown address families",
        ));
    }
    let len = RECORD_MIN + SIG * families.count_ones() as usize;
    if bytes.len() < len {
        return Ok(None);
    }
    let (body, crc) = bytes[..len].split_at(len - RECORD_CRC);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(SavedError::Damaged("a record's checksum does not match"));
    }
    let key = CodeKey::from_bits(u64::from_le_bytes(bytes[..8].try_into().expect("8")))
        .ok_or(SavedError::Damaged("a record names no calling code"))?;
    let signatures = RECORD_MIN - RECORD_CRC - SIG..len - RECORD_CRC;
    let mut sigs = bytes[signatures].chunks_exact(SIG).map(|s| Sig {
        inception: u32::from_le_bytes(s[..4].try_into().expect("4")),
        expiration: u32::from_le_bytes(s[4..8].try_into().expect("4")),
        key_tag: u16::from_le_bytes(s[8..10].try_into().expect("2")),
        signature: s[10..].try_into().expect("64"),
    });
    let nsec3 = sigs.next().expect("a record has its NSEC3 signature");
    let a = (families & 1 != 0).then(|| sigs.next()).flatten();
    let aaaa = (families & 2 != 0).then(|| sigs.next()).flatten();
    let sigs = TerminalSigs {
        hash: bytes[8..28].try_into().expect("20"),
        next: bytes[28..48].try_into().expect("20"),
        a,
        aaaa,
        nsec3,
    };
    Ok(Some(Record { key, sigs, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sigs(n: u8, a: bool, aaaa: bool) -> TerminalSigs {
        let sig = |k: u8| Sig {
            inception: 1000 + u32::from(n),
            expiration: 2000 + u32::from(k),
            key_tag: 300 + u16::from(k),
            signature: [n ^ k; 64],
        };
        TerminalSigs {
            hash: [n; 20],
            next: [n.wrapping_add(1); 20],
            a: a.then(|| sig(1)),
            aaaa: aaaa.then(|| sig(2)),
            nsec3: sig(3),
        }
    }

    fn entries(n: usize) -> Vec<(CodeKey, TerminalSigs)> {
        (0..n)
            .map(|i| {
                let code = format!("{:07}", 5_000_000 + i);
                let key = CodeKey::from_digits(code.as_bytes()).unwrap();
                (key, sigs(i as u8, i % 3 != 1, i % 3 != 0))
            })
            .collect()
    }

    fn saved(dir: &Path, id: &SavedId, entries: &[(CodeKey, TerminalSigs)]) -> std::path::PathBuf {
        let path = dir.join(FILE_NAME);
        write(&path, id, entries.iter().copied()).unwrap();
        path
    }

    fn read_all(path: &Path, id: &SavedId) -> Result<Vec<(CodeKey, TerminalSigs)>, SavedError> {
        let mut all = Vec::new();
        let count = read(path, id, |key, sigs| all.push((key, sigs)))?;
        assert_eq!(count, all.len() as u64);
        Ok(all)
    }

    #[test]
    fn records_by_hash_are_in_the_order_of_whole_hashes() {
        // Hashes that share their first eight bytes in threes, and some whole duplicates.
        let mut entries: Vec<([u8; 20], u64)> = (0..3000u64)
            .map(|i| {
                let mut hash = [0u8; 20];
                hash[..8].copy_from_slice(&((i * 7919) % 1000).to_be_bytes());
                hash[8..16].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
                hash[19] = (i % 5) as u8;
                (hash, i % 2000)
            })
            .collect();
        let mut whole = entries.clone();
        whole.sort_unstable();
        sort_by_hash(&mut entries);
        assert_eq!(entries, whole);
    }

    #[test]
    fn a_copy_reads_back_as_written_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        // More than one block, with records cut at every block's end.
        let written = entries(BLOCK / RECORD_MIN + 1000);
        let path = saved(dir.path(), &[7; 16], &written);
        assert_eq!(read_all(&path, &[7; 16]).unwrap(), written);
        assert!(!path.with_extension("tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let empty = saved(dir.path(), &[8; 16], &[]);
        assert_eq!(read_all(&empty, &[8; 16]).unwrap(), Vec::new());
    }

    #[test]
    fn a_copy_saved_for_another_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), &[7; 16], &entries(10));
        assert!(matches!(read_all(&path, &[9; 16]), Err(SavedError::Stale)));
    }

    #[test]
    fn a_damaged_or_torn_copy_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), &[7; 16], &entries(50));
        let whole = std::fs::read(&path).unwrap();
        let damaged = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            read_all(&path, &[7; 16])
        };
        // A signature byte flipped, in the middle of the records.
        let mut flipped = whole.clone();
        flipped[HEADER + 20 * RECORD_MIN] ^= 0x40;
        assert!(matches!(damaged(&flipped), Err(SavedError::Damaged(_))));
        // Cut short: the trailer is then read from the records.
        for cut in [1, TRAILER, RECORD_MIN, whole.len() - HEADER] {
            let result = damaged(&whole[..whole.len() - cut]);
            assert!(matches!(result, Err(SavedError::Damaged(_))), "cut {cut}");
        }
        // A record dropped whole, with the trailer kept.
        let mut dropped = whole[..HEADER].to_vec();
        dropped.extend_from_slice(&whole[HEADER + RECORD_MIN + SIG..]);
        assert!(matches!(damaged(&dropped), Err(SavedError::Damaged(_))));
        // Unknown families: refused, not misread.
        let mut families = whole.clone();
        families[HEADER + 48] = 7;
        assert!(matches!(damaged(&families), Err(SavedError::Damaged(_))));
        assert_eq!(damaged(&whole).unwrap(), entries(50));
    }
}
