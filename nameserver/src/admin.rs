//! Output of the admin commands: key files written owner-only, and the terminal list.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zones::secret_file::{self, Durability};

use crate::control::{ImportEntry, TerminalInfo};
use crate::utc::format_utc;

/// The place of a key file, taken before the directory issues the key: a path that cannot
/// be written fails before anything changes, and an existing file is never replaced unless
/// it holds the same terminal's key (a rotation). The temporary file is removed if the key
/// never comes.
#[derive(Debug)]
pub struct KeyFileSlot {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    /// The file exists and holds this terminal's key, which the new one replaces.
    replaces: bool,
}

impl KeyFileSlot {
    /// For a new terminal's key: `path` must not exist.
    pub fn new_file(path: &Path) -> Result<Self, String> {
        if path.symlink_metadata().is_ok() {
            return Err(format!(
                "key file {} exists; remove it or choose another path (nothing was registered)",
                path.display()
            ));
        }
        Self::reserve(path, false)
    }

    /// For a rotated key of `code`: `path` may hold that terminal's key, which it replaces;
    /// any other file there is kept and the rotation refused.
    pub fn for_rotation(path: &Path, code: &str) -> Result<Self, String> {
        let Ok(text) = std::fs::read_to_string(path) else {
            if path.symlink_metadata().is_ok() {
                return Err(format!(
                    "key file {} exists and cannot be read; remove it or choose another path (the key was not rotated)",
                    path.display()
                ));
            }
            return Self::reserve(path, false);
        };
        let own = zones::key::TsigKey::from_key_file(&text)
            .is_ok_and(|key| key.name.starts_with(&format!("{code}.")));
        if !own {
            return Err(format!(
                "key file {} exists and does not hold the key of {code}; remove it or choose another path (the key was not rotated)",
                path.display()
            ));
        }
        Self::reserve(path, true)
    }

    fn reserve(path: &Path, replaces: bool) -> Result<Self, String> {
        let (_, tmp) = temporary_beside(path, "tmp");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot write key file {}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
            replaces,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the file held this terminal's earlier key, which `fill` replaces.
    pub fn replaces(&self) -> bool {
        self.replaces
    }

    /// Writes the key, syncs it, and puts it in place (a new file is never put over one
    /// that appeared meanwhile).
    pub fn fill(mut self, text: &str) -> std::io::Result<()> {
        let mut file = self.file.take().expect("filled once");
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        if self.replaces {
            std::fs::rename(&self.tmp, &self.path)
        } else {
            std::fs::hard_link(&self.tmp, &self.path)?;
            std::fs::remove_file(&self.tmp)
        }
    }
}

impl Drop for KeyFileSlot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Writes a key file with mode 0600, atomically (temporary file, fsync, rename).
pub fn write_key_file(path: &Path, text: &str) -> std::io::Result<()> {
    secret_file::write(path, text, Durability::Synced)
}

/// Writes many key files (an import): mode 0600 and atomic, but without an fsync each,
/// which would take minutes for a large fleet. A key lost to a crash right after an import
/// is issued again with `rotate-key`.
pub fn write_key_files<'a>(
    dir: &Path,
    keys: impl Iterator<Item = (&'a str, &'a str)>,
) -> std::io::Result<usize> {
    let mut count = 0;
    for (code, text) in keys {
        let path = dir.join(format!("{code}.key"));
        secret_file::write(&path, text, Durability::Buffered)?;
        count += 1;
    }
    Ok(count)
}

pub use zones::secret_file::temporary_beside;

/// Parses an import file: one `CODE KID MID [ADDRESS ...]` per line; `#` starts a comment.
pub fn parse_import(text: &str, path: &str) -> Result<Vec<ImportEntry>, String> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        entries.extend(parse_import_line(line, number + 1, path)?);
    }
    Ok(entries)
}

/// One line of an import file: `CODE KID MID [ADDRESS ...]`, `#` comments and blank lines
/// skipped (`None`); errors name the file and line.
pub fn parse_import_line(
    line: &str,
    number: usize,
    path: &str,
) -> Result<Option<ImportEntry>, String> {
    let line = line.split('#').next().unwrap_or_default();
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.is_empty() {
        return Ok(None);
    }
    let at = |e: String| format!("{path}:{number}: {e}");
    let [code, kid, mid, addresses @ ..] = fields.as_slice() else {
        return Err(at("expected `CODE KID MID [ADDRESS ...]`".into()));
    };
    let identity = |e: zones::identity::IdentityError| at(e.to_string());
    Ok(Some(ImportEntry {
        code: code.parse().map_err(identity)?,
        kid: kid.parse().map_err(identity)?,
        mid: mid.parse().map_err(identity)?,
        addresses: addresses
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|_| at(format!("{a:?} is not an IP address")))
            })
            .collect::<Result<_, _>>()?,
    }))
}

/// The list's first lines: the zone, its serial, the count and the column names.
pub fn list_header(zone: &str, serial: u32, count: usize) -> String {
    format!(
        "zone {zone} serial {serial}: {count} terminal(s)\n{:<16} {:<20} {:<17} {:<20} {:<20} {}\n",
        "CODE", "KID", "MID", "LAST UPDATE (UTC)", "LEASE UNTIL (UTC)", "ADDRESSES"
    )
}

/// One terminal's line (the columns are as wide as the longest code, KID and MID allowed).
pub fn list_row(t: &TerminalInfo) -> String {
    let updated = t.updated_at.map_or_else(|| "never".to_owned(), format_utc);
    let lease = t.lease_expires.map_or_else(|| "-".to_owned(), format_utc);
    let addresses = if t.addresses.is_empty() {
        "-".to_owned()
    } else {
        t.addresses.join(" ")
    };
    format!(
        "{:<16} {:<20} {:<17} {:<20} {:<20} {}\n",
        t.code, t.kid, t.mid, updated, lease, addresses
    )
}

/// `nameserver list`: prints the terminals as the server streams them (a table, or a JSON
/// array with `json`), never holding them all; returns how many.
pub async fn print_list(
    session: &mut crate::control::Session,
    json: bool,
    out: &mut impl Write,
) -> Result<usize, String> {
    use crate::control::{ControlReply, ControlRequest};
    let fail = |e: std::io::Error| format!("cannot write the list: {e}");
    let ControlReply::ListStart {
        zone,
        serial,
        count,
    } = session
        .request(&ControlRequest::List)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err("unexpected answer to list".into());
    };
    if json {
        out.write_all(b"[").map_err(fail)?;
    } else {
        out.write_all(list_header(&zone, serial, count).as_bytes())
            .map_err(fail)?;
    }
    let mut listed = 0;
    loop {
        match session.next().await.map_err(|e| e.to_string())? {
            ControlReply::Listed { terminal } if json => {
                let sep = if listed == 0 { "\n" } else { ",\n" };
                let item = serde_json::to_string(&terminal).map_err(|e| e.to_string())?;
                write!(out, "{sep}  {item}").map_err(fail)?;
            }
            ControlReply::Listed { terminal } => {
                out.write_all(list_row(&terminal).as_bytes())
                    .map_err(fail)?;
            }
            ControlReply::ListEnd => break,
            _ => return Err("unexpected answer while listing".into()),
        }
        listed += 1;
    }
    if json {
        out.write_all(b"\n]\n").map_err(fail)?;
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn parses_import_files_and_names_the_bad_line() {
        let text = "# fleet\n5551234 acme 3f9a0c1d22e4b7a8 192.0.2.1 2001:db8::1\n\n5551235 acme 3f9a0c1d22e4b7a9\n";
        let entries = parse_import(text, "f").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].addresses.len(), 2);
        let err = parse_import(
            "5551234 acme 3f9a0c1d22e4b7a8\n55 acme 3f9a0c1d22e4b7a9\n",
            "f",
        )
        .unwrap_err();
        assert!(err.starts_with("f:2:"), "{err}");
        assert!(parse_import("5551234 acme\n", "f").is_err());
        assert!(parse_import("5551234 acme 3f9a0c1d22e4b7a8 not-an-ip\n", "f").is_err());
    }

    #[test]
    fn key_files_are_owner_only_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.key");
        write_key_file(&path, "one").unwrap();
        write_key_file(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
