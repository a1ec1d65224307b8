//! The durable store, on sled.
//!
//! Trees (all values JSON, keys UTF-8):
//!
//! | tree        | key                | value                                        |
//! |-------------|--------------------|----------------------------------------------|
//! | `terminals` | calling code       | [`Terminal`]: KID, MID, TSIG key             |
//! | `presence`  | calling code       | [`Presence`]: addresses, last update, replay |
//! | `meta`      | `serial`           | the zone's SOA serial (u32, big endian)      |
//! | `meta`      | `zone`             | fingerprint of the static zone (SHA-256 hex)  |
//! | `journal`   | sequence (u64, BE) | [`Delta`]: one serial increase, for IXFR     |
//!
//! Every change is one sled transaction over the trees it touches, then a flush to disk
//! ([`Store::flush`]); the caller acknowledges only after the flush. After `kill -9`, sled
//! recovers to the last flushed transaction with no repair step. The indexes (key name to
//! code, KID/MID to code) are rebuilt in memory from `terminals` at start-up.
//!
//! The store holds every terminal's TSIG secret: its directory is created 0700 and every
//! file in it is made 0600 at open, whatever the umask.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Serialize, de::DeserializeOwned};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::identity::CallingCode;
use crate::journal::Delta;
use crate::model::{Presence, Terminal};

/// A storage failure; the change it was part of did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store in {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("the store in {path} is locked by another process")]
    Locked { path: String },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record for {key:?} is corrupt: {message}")]
    Corrupt { key: String, message: String },
    #[error("cannot make the store in {path} owner-only: {source}")]
    Permissions {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "an earlier flush to disk failed, so the store may not match the disk; changes are refused until the server is restarted"
    )]
    Poisoned,
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => Self::Sled(e),
        }
    }
}

type TxResult<T = ()> = Result<T, ConflictableTransactionError<StoreError>>;

const SERIAL_KEY: &[u8] = b"serial";
const ZONE_KEY: &[u8] = b"zone";

/// Everything the store holds, as read at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub serial: Option<u32>,
    /// The fingerprint of the static zone the serial belongs to.
    pub zone_fingerprint: Option<String>,
    pub terminals: Vec<(Terminal, Presence)>,
    /// The journal, oldest first.
    pub journal: Vec<Delta>,
}

/// One change to the store, applied atomically by [`Store::commit`].
#[derive(Debug, Default)]
pub struct Change<'a> {
    /// New or replaced registrations.
    pub put_terminals: Vec<&'a Terminal>,
    /// Registrations removed (with their presence and indexes).
    pub remove_terminal: Option<&'a Terminal>,
    /// New presence records, by code.
    pub put_presence: Vec<(&'a CallingCode, &'a Presence)>,
    /// The new serial, if the zone changed.
    pub serial: Option<u32>,
    /// The delta that describes the serial increase.
    pub journal: Option<&'a Delta>,
    /// Journal entries to forget (by sequence), beyond the history's depth.
    pub journal_drop: Vec<u64>,
    /// The fingerprint of the static zone, when it changed.
    pub zone_fingerprint: Option<&'a str>,
}

/// Group commit: how many changes were committed, and how many are known to be on disk.
#[derive(Debug, Default)]
struct Durability {
    committed: AtomicU64,
    flushed: AtomicU64,
    /// One flush at a time; those who wait behind it usually find their change covered.
    flushing: tokio::sync::Mutex<()>,
    /// Fault injection for tests: the next flush fails as a failing disk would.
    fail_next_flush: std::sync::atomic::AtomicBool,
}

/// The sled database and its trees. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    durability: Arc<Durability>,
    db: sled::Db,
    terminals: sled::Tree,
    presence: sled::Tree,
    meta: sled::Tree,
    journal: sled::Tree,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        create_owner_only(dir)?;
        // The in-memory view serves every read; sled's page cache need not hold much.
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(32 * 1024 * 1024)
            // Every change is flushed before it is acknowledged; sled's timer flush would only
            // compete with queries for the core.
            .flush_every_ms(None)
            .open()
            .map_err(|source| open_error(dir, source))?;
        restrict_permissions(dir).map_err(|source| StoreError::Permissions {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self {
            durability: Arc::default(),
            terminals: db.open_tree("terminals")?,
            presence: db.open_tree("presence")?,
            meta: db.open_tree("meta")?,
            journal: db.open_tree("journal")?,
            db,
        })
    }

    /// Reads everything, for building the in-memory view at start-up.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let serial = self
            .meta
            .get(SERIAL_KEY)?
            .map(|v| decode_serial(&v))
            .transpose()?;
        let zone_fingerprint = self
            .meta
            .get(ZONE_KEY)?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let mut terminals = Vec::new();
        for item in self.terminals.iter() {
            let (key, value) = item?;
            let terminal: Terminal = decode(&key, &value)?;
            let presence = match self.presence.get(&key)? {
                Some(v) => decode(&key, &v)?,
                None => Presence::default(),
            };
            terminals.push((terminal, presence));
        }
        let mut journal = Vec::new();
        for item in self.journal.iter() {
            let (key, value) = item?;
            journal.push(decode(&key, &value)?);
        }
        Ok(Snapshot {
            serial,
            zone_fingerprint,
            terminals,
            journal,
        })
    }

    /// Applies one change in a single transaction. Not yet durable: call [`Store::flush`].
    /// Returns the change's commit number; [`Store::flushed`] says when it is durable.
    pub fn commit(&self, change: &Change<'_>) -> Result<u64, StoreError> {
        let trees = (&self.terminals, &self.presence, &self.meta, &self.journal);
        trees.transaction(|(terminals, presence, meta, journal)| {
            if let Some(old) = change.remove_terminal {
                let code = old.code.as_str().as_bytes();
                terminals.remove(code)?;
                presence.remove(code)?;
            }
            for new in &change.put_terminals {
                terminals.insert(new.code.as_str().as_bytes(), encode(new)?)?;
            }
            for (code, p) in &change.put_presence {
                presence.insert(code.as_str().as_bytes(), encode(p)?)?;
            }
            if let Some(serial) = change.serial {
                meta.insert(SERIAL_KEY, &serial.to_be_bytes())?;
            }
            if let Some(delta) = change.journal {
                journal.insert(&delta.seq.to_be_bytes(), encode(delta)?)?;
            }
            for seq in &change.journal_drop {
                journal.remove(&seq.to_be_bytes())?;
            }
            if let Some(fingerprint) = change.zone_fingerprint {
                meta.insert(ZONE_KEY, fingerprint.as_bytes())?;
            }
            Ok(())
        })?;
        Ok(self.durability.committed.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// The newest commit number known to be on disk.
    pub fn flushed(&self) -> u64 {
        self.durability.flushed.load(Ordering::SeqCst)
    }

    /// Flushes at once, blocking (at open, before anything is served).
    pub fn flush_now(&self) -> Result<(), StoreError> {
        let covered = self.durability.committed.load(Ordering::SeqCst);
        self.db.flush()?;
        self.durability.flushed.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }

    /// Makes the next flush fail (fault injection for tests of the commit pipeline).
    pub fn inject_flush_failure(&self) {
        self.durability
            .fail_next_flush
            .store(true, Ordering::SeqCst);
    }

    /// Makes every change committed so far durable (fsync), with group commit: callers
    /// queue for one flush at a time, and one whose change a flush already covered returns
    /// at once, so many concurrent updates share one fsync.
    ///
    /// sled's blocking flush runs on the blocking pool: with many concurrent callers, sled
    /// 0.34's `flush_async` was seen to leave some waiting until a later flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let d = &self.durability;
        let wanted = d.committed.load(Ordering::SeqCst);
        let _turn = d.flushing.lock().await;
        if d.flushed.load(Ordering::SeqCst) >= wanted {
            return Ok(());
        }
        if d.fail_next_flush.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Sled(sled::Error::Io(std::io::Error::other(
                "injected flush failure",
            ))));
        }
        // Everything counted here is in sled's buffers: this flush covers it.
        let covered = d.committed.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Corrupt {
                key: String::new(),
                message: format!("flush task failed: {e}"),
            })??;
        d.flushed.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }
}

/// Creates the store's directory owner-only (0700), whatever the umask.
fn create_owner_only(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Permissions {
            path: dir.display().to_string(),
            source,
        })
}

/// Makes the store's directories 0700 and its files 0600: they hold every TSIG secret.
fn restrict_permissions(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let kind = item.file_type()?;
        if kind.is_dir() {
            restrict_permissions(&item.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(item.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// sled reports another process's lock as an I/O error ("could not acquire lock").
fn open_error(dir: &Path, source: sled::Error) -> StoreError {
    let path = dir.display().to_string();
    match &source {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") =>
        {
            StoreError::Locked { path }
        }
        _ => StoreError::Open { path, source },
    }
}

fn encode<T: Serialize>(value: &T) -> TxResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| {
        ConflictableTransactionError::Abort(StoreError::Corrupt {
            key: String::new(),
            message: e.to_string(),
        })
    })
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

fn decode_serial(value: &[u8]) -> Result<u32, StoreError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| StoreError::Corrupt {
        key: "serial".into(),
        message: format!("{} bytes instead of 4", value.len()),
    })?;
    Ok(u32::from_be_bytes(bytes))
}
