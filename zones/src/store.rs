//! The durable store, on sled.
//!
//! Trees (all values JSON, keys UTF-8):
//!
//! | tree        | key                | value                                        |
//! |-------------|--------------------|----------------------------------------------|
//! | `terminals` | calling code       | [`Terminal`]: KID, MID, TSIG key             |
//! | `presence`  | calling code       | [`Presence`]: addresses, last update, replay |
//! | `meta`      | `serial`           | the zone's SOA serial (u32, big endian)      |
//! | `journal`   | sequence (u64, BE) | [`Delta`]: one serial increase, for IXFR     |
//!
//! Every change is one sled transaction over the trees it touches, then a flush to disk
//! ([`Store::flush`]); the caller acknowledges only after the flush. After `kill -9`, sled
//! recovers to the last flushed transaction with no repair step. The indexes (key name to
//! code, KID/MID to code) are rebuilt in memory from `terminals` at start-up.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Serialize, de::DeserializeOwned};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::directory::{Presence, Terminal};
use crate::identity::CallingCode;
use crate::journal::Delta;

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

/// Everything the store holds, as read at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub serial: Option<u32>,
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
}

/// Group commit: how many changes were committed, and how many are known to be on disk.
#[derive(Debug, Default)]
struct Durability {
    committed: AtomicU64,
    flushed: AtomicU64,
    /// One flush at a time; those who wait behind it usually find their change covered.
    flushing: tokio::sync::Mutex<()>,
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
        // The in-memory view serves every read; sled's page cache need not hold much.
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(32 * 1024 * 1024)
            // Every change is flushed before it is acknowledged; sled's timer flush would only
            // compete with queries for the core.
            .flush_every_ms(None)
            .open()
            .map_err(|source| open_error(dir, source))?;
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
            terminals,
            journal,
        })
    }

    /// Applies one change in a single transaction. Not yet durable: call [`Store::flush`].
    pub fn commit(&self, change: &Change<'_>) -> Result<(), StoreError> {
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
            Ok(())
        })?;
        self.durability.committed.fetch_add(1, Ordering::SeqCst);
        Ok(())
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
