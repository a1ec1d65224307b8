//! Files that hold secrets (TSIG keys, TLS private keys): written owner-only (0600) from the
//! first byte, under a temporary name beside the target, then renamed into place, so that
//! no reader ever sees a partial file or one readable by others.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Whether a write waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The file and its directory are flushed before this returns.
    Synced,
    /// Not flushed: for many files at once (an import), where a sync each would take
    /// minutes.
    Buffered,
}

/// The directory `path` is in, and a temporary name beside it ending in `suffix`, to
/// write the file under before it is renamed into place.
pub fn temporary_beside(path: &Path, suffix: &str) -> (PathBuf, PathBuf) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.{suffix}", std::process::id()));
    (dir.to_path_buf(), tmp)
}

/// Writes `text` to `path`, mode 0600, atomically; a failed write leaves no temporary file.
pub fn write(path: &Path, text: &str, durability: Durability) -> std::io::Result<()> {
    let (dir, tmp) = temporary_beside(path, "tmp");
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        if durability == Durability::Synced {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if durability == Durability::Synced {
        std::fs::File::open(&dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_secret_file_is_owner_only_and_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("k.key");
        write(&path, "first", Durability::Synced).unwrap();
        write(&path, "second", Durability::Buffered).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        let missing = tmp.path().join("no-such-dir").join("k.key");
        assert!(write(&missing, "x", Durability::Synced).is_err());
    }
}
