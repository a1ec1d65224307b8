//! `nameserver backup` and `nameserver restore`: the client side.
//!
//! A backup is taken through the running server (its control socket), which streams a
//! consistent snapshot while it goes on serving and taking updates; the lines are written
//! to a temporary file beside the output, owner-only (0600: it holds every terminal's
//! secret), synced, checked against the header's counts, then renamed into place. A restore
//! runs without a server: it rebuilds the store into a scratch directory inside the new data
//! directory and renames it into place only when complete. The format is described in
//! [`zones::backup`].

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use zones::backup::{BackupError, Header, Record};
use zones::restore::Restored;

use crate::control::{ControlReply, ControlRequest, Session};

/// What a backup wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub terminals: usize,
    pub journal: usize,
    pub serial: u32,
}

/// Takes a backup through `session` into `output`.
pub async fn write(session: &mut Session, output: &Path) -> Result<Written, String> {
    let (dir, tmp) = crate::admin::temporary_beside(output, "partial");
    let result = write_to(session, &tmp).await;
    match result {
        Ok(written) => {
            std::fs::rename(&tmp, output)
                .map_err(|e| format!("cannot move the backup to {}: {e}", output.display()))?;
            if let Ok(dir) = File::open(&dir) {
                let _ = dir.sync_all();
            }
            Ok(written)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

async fn write_to(session: &mut Session, tmp: &Path) -> Result<Written, String> {
    let io = |e: std::io::Error| format!("cannot write {}: {e}", tmp.display());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io)?;
    let mut out = BufWriter::new(file);
    let reply = session
        .request(&ControlRequest::Backup)
        .await
        .map_err(|e| e.to_string())?;
    let ControlReply::BackupHeader { header } = reply else {
        return Err("unexpected answer to backup: no header".into());
    };
    write_line(&mut out, &header).map_err(io)?;
    let (mut terminals, mut journal, mut enrollment) = (0, 0, 0);
    loop {
        match session.next().await.map_err(|e| e.to_string())? {
            ControlReply::BackupRecord { record } => {
                match &record {
                    Record::Terminal(_) => terminals += 1,
                    Record::Delta(_) => journal += 1,
                    Record::Token(_) | Record::Customer(_) | Record::Awaiting(_) => enrollment += 1,
                    Record::Signature(_) => {
                        return Err(
                            "a backup carries no signatures (a cluster's snapshot does)".into()
                        );
                    }
                }
                write_line(&mut out, &record).map_err(io)?;
            }
            ControlReply::BackupEnd => break,
            _ => return Err("unexpected answer during backup".into()),
        }
    }
    if (terminals, journal, enrollment) != (header.terminals, header.journal, header.enrollment) {
        return Err(format!(
            "the backup stream ended early: {terminals} of {} terminals, {journal} of {} journal entries, {enrollment} of {} enrollment records",
            header.terminals, header.journal, header.enrollment
        ));
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(Written {
        terminals,
        journal,
        serial: header.serial,
    })
}

fn write_line(out: &mut impl Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

/// Rebuilds the data directory `data` (absent or empty) from the backup `file`.
pub fn restore(file: &Path, data: &Path) -> Result<Restored, String> {
    if let Ok(mut entries) = std::fs::read_dir(data) {
        if entries.next().is_some() {
            return Err(format!(
                "{} is not empty; restore into a new or empty data directory",
                data.display()
            ));
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let shown = file.display().to_string();
    let reader = File::open(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut lines = BufReader::new(reader).lines().enumerate();
    let header: Header = match lines.next() {
        Some((_, Ok(line))) => serde_json::from_str(&line)
            .map_err(|e| format!("{shown}: {}", BackupError::NotABackup(e.to_string())))?,
        Some((_, Err(e))) => return Err(format!("cannot read {shown}: {e}")),
        None => {
            return Err(format!(
                "{shown}: {}",
                BackupError::NotABackup("it is empty".into())
            ));
        }
    };
    let records = lines.map(|(number, line)| {
        let line = line?;
        serde_json::from_str::<Record>(&line).map_err(|e| BackupError::Line {
            line: number + 1,
            message: e.to_string(),
        })
    });
    let scratch = data.join(".restoring");
    let restored = zones::restore::restore(&scratch, &header, records).map_err(|e| {
        let _ = std::fs::remove_dir_all(&scratch);
        format!("{shown}: {e}")
    })?;
    std::fs::rename(&scratch, data.join("store"))
        .map_err(|e| format!("cannot move the restored store into place: {e}"))?;
    if let Ok(dir) = File::open(data) {
        let _ = dir.sync_all();
    }
    Ok(restored)
}
