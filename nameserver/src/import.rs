//! `nameserver import`, the client side: streams a fleet file to the running server in
//! batches, writes the keys as they come back, and shows progress.
//!
//! ```text
//!  FILE ─ read line by line ─▶ batches of 10,000 ─▶ import-batch ─▶ keys ─▶ key sink
//!                                                  (server: staged, invisible)
//!       ─ end of file ─▶ import-commit ─▶ all terminals at once (one serial increase)
//! ```
//!
//! Memory stays bounded on both sides: one batch at a time. Any error (a bad line, a
//! refused batch, a lost connection) ends the connection before the commit, and the server
//! removes what was staged: all or none. The keys go by default to one bundle file
//! (`FILE.keys`, mode 0600, BIND's key-file format, one `key` clause per terminal),
//! written under a temporary name and renamed only after the commit; `--keys-dir` writes
//! one file per terminal instead.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use zones::identity::CallingCode;
use zones::key::Algorithm;

use crate::admin;
use crate::control::{ControlReply, ControlRequest, ImportEntry, Session};

/// Terminals per batch: large enough to amortize a round trip, small enough to bound memory.
pub const BATCH: usize = 10_000;

/// Where the new keys go.
#[derive(Debug, Clone)]
pub enum KeysTo {
    /// One bundle file of `key` clauses.
    Bundle(PathBuf),
    /// One `CODE.key` file per terminal in this directory.
    Dir(PathBuf),
}

/// Streams `file` to the server behind `session`; returns how many terminals it added.
pub async fn run(
    file: &Path,
    keys: &KeysTo,
    algorithm: Algorithm,
    session: &mut Session,
) -> Result<usize, String> {
    let shown = file.display().to_string();
    let open = || File::open(file).map_err(|e| format!("cannot read {shown}: {e}"));
    let total = count_entries(open()?);
    let mut sink = KeySink::create(keys)?;
    let result = stream(
        BufReader::new(open()?),
        &shown,
        total,
        algorithm,
        session,
        &mut sink,
    )
    .await;
    match result {
        Ok(count) => {
            sink.finish()?;
            Ok(count)
        }
        Err(e) => {
            sink.discard();
            Err(e)
        }
    }
}

async fn stream(
    input: impl BufRead,
    shown: &str,
    total: usize,
    algorithm: Algorithm,
    session: &mut Session,
    sink: &mut KeySink,
) -> Result<usize, String> {
    let mut progress = Progress::new(total);
    let mut batch: Vec<ImportEntry> = Vec::with_capacity(BATCH);
    for (number, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {shown}: {e}"))?;
        if let Some(entry) = admin::parse_import_line(&line, number + 1, shown)? {
            batch.push(entry);
        }
        if batch.len() == BATCH {
            send(
                session,
                std::mem::take(&mut batch),
                algorithm,
                sink,
                &mut progress,
            )
            .await?;
        }
    }
    if !batch.is_empty() || progress.done == 0 {
        send(session, batch, algorithm, sink, &mut progress).await?;
    }
    let reply = session
        .request(&ControlRequest::ImportCommit)
        .await
        .map_err(|e| e.to_string())?;
    progress.finish();
    match reply {
        ControlReply::Imported { count } => Ok(count),
        _ => Err("unexpected answer to the import's commit".into()),
    }
}

async fn send(
    session: &mut Session,
    entries: Vec<ImportEntry>,
    algorithm: Algorithm,
    sink: &mut KeySink,
    progress: &mut Progress,
) -> Result<(), String> {
    let request = ControlRequest::ImportBatch { entries, algorithm };
    let ControlReply::Keys { keys } = session.request(&request).await.map_err(|e| e.to_string())?
    else {
        return Err("unexpected answer to an import batch".into());
    };
    sink.write(&keys)?;
    progress.add(keys.len());
    Ok(())
}

/// Entries in the file (for the progress line), counted without parsing.
fn count_entries(file: File) -> usize {
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.split('#').next().unwrap_or_default().trim().is_empty())
        .count()
}

/// Writes keys as batches come back; nothing is left behind if the import fails.
enum KeySink {
    Bundle {
        path: PathBuf,
        tmp: PathBuf,
        out: BufWriter<File>,
    },
    Dir {
        dir: PathBuf,
        written: Vec<PathBuf>,
    },
}

impl KeySink {
    fn create(keys: &KeysTo) -> Result<Self, String> {
        match keys {
            KeysTo::Bundle(path) => {
                let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
                Ok(Self::Bundle {
                    path: path.clone(),
                    tmp,
                    out: BufWriter::new(file),
                })
            }
            KeysTo::Dir(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                Ok(Self::Dir {
                    dir: dir.clone(),
                    written: Vec::new(),
                })
            }
        }
    }

    fn write(&mut self, keys: &[(CallingCode, String)]) -> Result<(), String> {
        match self {
            Self::Bundle { tmp, out, .. } => keys
                .iter()
                .try_for_each(|(_, text)| out.write_all(text.as_bytes()))
                .map_err(|e| format!("cannot write {}: {e}", tmp.display())),
            Self::Dir { dir, written } => {
                let files = keys
                    .iter()
                    .map(|(code, text)| (code.as_str(), text.as_str()));
                admin::write_key_files(dir, files)
                    .map_err(|e| format!("cannot write keys in {}: {e}", dir.display()))?;
                written.extend(keys.iter().map(|(code, _)| dir.join(format!("{code}.key"))));
                Ok(())
            }
        }
    }

    /// After the commit: the bundle synced and moved to its name.
    fn finish(self) -> Result<(), String> {
        if let Self::Bundle { path, tmp, out } = self {
            let file = out
                .into_inner()
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            file.sync_all()
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// After a failure: the keys of terminals that were never added are removed.
    fn discard(self) {
        match self {
            Self::Bundle { tmp, .. } => {
                let _ = std::fs::remove_file(tmp);
            }
            Self::Dir { written, .. } => {
                for path in written {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

/// Progress on standard error: a line rewritten in place on a terminal, a line per tenth
/// otherwise.
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    tty: bool,
    shown_tenths: usize,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            shown_tenths: 0,
        }
    }

    fn add(&mut self, n: usize) {
        self.done += n;
        let tenths = (self.done * 10).checked_div(self.total).unwrap_or(10);
        if !self.tty && tenths <= self.shown_tenths {
            return;
        }
        self.shown_tenths = tenths;
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / elapsed;
        let eta = self.total.saturating_sub(self.done) as f64 / rate.max(1.0);
        let line = format!(
            "staged {}/{} terminals ({rate:.0}/s, about {eta:.0} s left)",
            self.done, self.total
        );
        if self.tty {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
