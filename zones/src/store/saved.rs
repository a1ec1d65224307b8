//! The terminals' signatures saved at a clean stop, `DIR/signatures.saved`: one file read in
//! large blocks at the next start, instead of a million rows of the `signed` table decoded
//! one by one.
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
//! trailer  records (u64)  CRC-32 of everything before it (u32)
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::dnssec::{Sig, TerminalSigs};
use crate::identity::CodeKey;

/// The copy's name in the data directory.
pub const FILE_NAME: &str = "signatures.saved";

/// What ties a copy to the commit that recorded it.
pub type SavedId = [u8; 16];

const MAGIC: &[u8; 8] = b"DIALSIG\0";
const FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 16;
const TRAILER: usize = 8 + 4;
const SIG: usize = 4 + 4 + 2 + 64;
/// A record with its NSEC3 signature and no address signature.
const RECORD_MIN: usize = 8 + 20 + 20 + 1 + SIG;
const RECORD_MAX: usize = RECORD_MIN + 2 * SIG;
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
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT.to_le_bytes())?;
    out.write_all(id)?;
    let mut record = Vec::with_capacity(RECORD_MAX);
    let mut count = 0u64;
    for (key, sigs) in entries {
        record.clear();
        encode(&mut record, key, &sigs);
        out.write_all(&record)?;
        count += 1;
    }
    out.write_all(&count.to_le_bytes())?;
    let crc = out.crc.finalize();
    let mut inner = out.inner;
    inner.write_all(&crc.to_le_bytes())?;
    inner.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

/// Each entry of the copy at `path` saved with `id` to `each`, in the order they were
/// written (as they are decoded: the caller sorts them out while they are in the cache);
/// returns how many. An error may come after some entries: the caller drops them then.
pub fn read(
    path: &Path,
    id: &SavedId,
    mut each: impl FnMut(CodeKey, TerminalSigs),
) -> Result<u64, SavedError> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len() as usize;
    if len < HEADER + TRAILER {
        return Err(SavedError::Damaged("shorter than its header"));
    }
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header)?;
    if &header[..8] != MAGIC || header[8..12] != FORMAT.to_le_bytes() {
        return Err(SavedError::Damaged("not a copy of this format"));
    }
    if header[12..] != id[..] {
        return Err(SavedError::Stale);
    }
    let mut trailer = [0u8; TRAILER];
    file.seek(SeekFrom::Start((len - TRAILER) as u64))?;
    file.read_exact(&mut trailer)?;
    file.seek(SeekFrom::Start(HEADER as u64))?;
    let count = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    let stored_crc = u32::from_le_bytes(trailer[8..].try_into().expect("4 bytes"));

    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    let mut left = len - HEADER - TRAILER;
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
    crc.update(&trailer[..8]);
    if crc.finalize() != stored_crc {
        return Err(SavedError::Damaged("its checksum does not match"));
    }
    if entries != count {
        return Err(SavedError::Damaged("it holds another number of records"));
    }
    Ok(entries)
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
}

/// One record, decoded.
struct Record {
    key: CodeKey,
    sigs: TerminalSigs,
    /// Its length in the file.
    len: usize,
}

/// The record at the start of `bytes`; `None` when `bytes` holds only part of one.
fn decode(bytes: &[u8]) -> Result<Option<Record>, SavedError> {
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
    let key = CodeKey::from_bits(u64::from_le_bytes(bytes[..8].try_into().expect("8")))
        .ok_or(SavedError::Damaged("a record names no calling code"))?;
    let mut sigs = bytes[RECORD_MIN - SIG..len].chunks_exact(SIG).map(|s| Sig {
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
