//! `nameserver import`, the client side: streams a fleet file to the running server in
//! batches, writes the keys as they come back, and shows progress.
//!
//! ```text
//!  FILE ─ checked, sorted by code (fleet_order) ─▶ batches of 10,000 ─▶ import-batch
//!       ─▶ keys ─▶ key sink                          (server: staged, invisible)
//!       ─ end of file ─▶ import-commit ─▶ all terminals at once (one serial increase)
//! ```
//!
//! Memory stays bounded on both sides: one batch at a time on the wire, and the fleet sorted
//! in runs of at most a million lines ([`crate::fleet_order`]), so the store takes the
//! terminals in its own order of codes. Any error (a bad line, a
//! refused batch, a lost connection) ends the connection before the commit, and the server
//! removes what was staged: all or none. The keys go by default to one bundle file
//! (`FILE.keys`, mode 0600, BIND's key-file format, one `key` clause per terminal),
//! written under a temporary name and renamed only after the commit; `--keys-dir` writes
//! one file per terminal instead.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use zones::identity::CallingCode;
use zones::key::Algorithm;

use crate::admin;
use crate::control::{ControlError, ControlReply, ControlRequest, ImportEntry, Session};

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
    // Every line checked, and the entries in the store's order, before anything is sent.
    let entries = crate::fleet_order::read(file, &shown)?;
    let mut sink = KeySink::create(keys)?;
    let result = stream(entries, algorithm, session, &mut sink).await;
    match result {
        Ok(count) => {
            sink.finish()?;
            Ok(count)
        }
        Err(Failure::Aborted(e)) => {
            sink.discard();
            Err(e)
        }
        Err(Failure::Unknown { why, last }) => {
            let kept = sink.keep()?;
            Err(format!(
                "{why}: the import's commit was sent but its answer never came, so whether it was committed is unknown. The keys are kept in {kept}. Check with `nameserver list`: if {last} is listed, the import was committed and those are the terminals' keys; if not, nothing was imported: delete them and import again"
            ))
        }
    }
}

/// Why an import did not complete.
#[derive(Debug)]
enum Failure {
    /// Before the commit: the server removes everything staged.
    Aborted(String),
    /// The commit was sent, and no answer came: it may have been made durable.
    Unknown { why: String, last: String },
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Self::Aborted(e)
    }
}

async fn stream(
    entries: crate::fleet_order::FleetInOrder,
    algorithm: Algorithm,
    session: &mut Session,
    sink: &mut KeySink,
) -> Result<usize, Failure> {
    let mut progress = Progress::new(entries.total);
    let mut last = None;
    let mut batch: Vec<ImportEntry> = Vec::with_capacity(BATCH);
    for entry in entries {
        let entry = entry?;
        last = Some(entry.code.clone());
        batch.push(entry);
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
    // Every key on disk before the commit is asked for: whatever becomes of its answer,
    // the keys of terminals that may be registered are never lost.
    sink.sync()?;
    let reply = session.request(&ControlRequest::ImportCommit).await;
    progress.finish();
    let unknown = |why: String| Failure::Unknown {
        why,
        last: last
            .as_ref()
            .map_or_else(|| "the file's last code".to_owned(), ToString::to_string),
    };
    match reply {
        Ok(ControlReply::Imported { count }) => Ok(count),
        Err(ControlError::Refused(why)) => Err(Failure::Aborted(why)),
        Err(e) => Err(unknown(e.to_string())),
        Ok(_) => Err(unknown("unexpected answer to the import's commit".into())),
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

    /// Before the commit: every key written so far on disk (the bundle flushed and synced;
    /// the key files of `--keys-dir`, and their directory, synced).
    fn sync(&mut self) -> Result<(), String> {
        let synced = match self {
            Self::Bundle { out, .. } => out.flush().and_then(|()| out.get_ref().sync_all()),
            Self::Dir { dir, written } => written
                .iter()
                .chain(std::iter::once(&*dir))
                .try_for_each(|path| File::open(path).and_then(|f| f.sync_all())),
        };
        synced.map_err(|e| format!("cannot write the keys before the commit: {e}"))
    }

    /// After the commit: the bundle moved to its name.
    fn finish(self) -> Result<(), String> {
        self.keep().map(|_| ())
    }

    /// After the commit, or when its outcome is unknown: the bundle moved to its name;
    /// returns where the keys are.
    fn keep(self) -> Result<String, String> {
        match self {
            Self::Bundle { path, tmp, out } => {
                let file = out
                    .into_inner()
                    .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
                file.sync_all()
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Ok(path.display().to_string())
            }
            Self::Dir { dir, .. } => Ok(format!("{}/CODE.key", dir.display())),
        }
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixListener;

    use super::*;
    use crate::control::ControlResponse;

    /// A control peer that stages batches like the server (a key per entry) and, on the
    /// commit, closes the connection without an answer: a server killed right after its
    /// durable commit, whose timing a test of the real one cannot choose.
    async fn peer_that_loses_the_commit_answer(listener: UnixListener) {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            let keys = match serde_json::from_str(&line).unwrap() {
                ControlRequest::ImportBatch { entries, .. } => entries
                    .into_iter()
                    .map(|e| {
                        let text = format!("key \"{}.k.\" {{ secret \"c2VjcmV0\"; }};\n", e.code);
                        (e.code, text)
                    })
                    .collect(),
                _ => return,
            };
            let reply: ControlResponse = Ok(ControlReply::Keys { keys });
            let mut out = serde_json::to_vec(&reply).unwrap();
            out.push(b'\n');
            write.write_all(&out).await.unwrap();
        }
    }

    /// Regression: when the commit's answer was lost (a dropped connection, a server killed
    /// after the durable commit), `nameserver import` deleted the key bundle while the
    /// terminals could be registered: every key was lost.
    #[tokio::test]
    async fn import_keeps_the_keys_when_the_commit_outcome_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("control.sock");
        let peer = tokio::spawn(peer_that_loses_the_commit_answer(
            UnixListener::bind(&socket).unwrap(),
        ));
        let fleet = dir.path().join("fleet.txt");
        let lines: String = (0..25)
            .map(|i| format!("{} acme 0011223344{i:02x}\n", 5_550_000 + i))
            .collect();
        std::fs::write(&fleet, lines).unwrap();
        let bundle = dir.path().join("fleet.keys");
        let mut session = Session::connect(dir.path(), &socket).await.unwrap();
        let err = run(
            &fleet,
            &KeysTo::Bundle(bundle.clone()),
            Algorithm::HmacSha256,
            &mut session,
        )
        .await
        .unwrap_err();
        peer.await.unwrap();
        assert!(err.contains("unknown"), "{err}");
        assert!(err.contains("5550024"), "names the code to check: {err}");
        let kept = std::fs::read_to_string(&bundle).expect("the bundle is kept");
        assert_eq!(kept.matches("key \"").count(), 25, "{kept}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&bundle).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
