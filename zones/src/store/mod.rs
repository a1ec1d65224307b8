//! The durable store, on redb: one file, `DIR/directory.redb`.
//!
//! Tables (keys are calling codes as text unless said; values in postcard, a compact binary
//! serde format):
//!
//! | table     | value                                                      | read          |
//! |-----------|------------------------------------------------------------|---------------|
//! | `meta`    | `schema` (u32), `serial` (u32), `zone` (static fingerprint) | at open       |
//! | `hot`     | addresses with TTLs, lease end, time of the last update     | every query   |
//! | `cold`    | KID, MID, TSIG algorithm and secret, registration time      | signed requests |
//! | `replay`  | newest accepted Time Signed, prints of the MACs to refuse ([`replay_rows`]) | updates |
//! | `machines`| key `<kid> <mid>`: the code registered for that machine    | registrations |
//! | `importing`| the codes of an import not yet committed (with `meta` `import`) | imports    |
//! | `import_machines`| key (batch, `<kid> <mid>`): an import's pairs until its commit, see [`import_machines`] | the commit |
//! | `journal` | by sequence (u64): one serial increase, for IXFR            | transfers     |
//! | `signed`  | a terminal's RRSIGs and NSEC3 (DNSSEC on), see [`crate::dnssec`] | at open |
//!
//! `meta` also holds `origin`, the zone the store was made for (another is refused),
//! `import_batches` while an import is staged, `dnssec_keys`, the zone's signing keys, `static_sigs`, the static
//! names' signatures with the zone and keys they were made for, and `soa_sig`, the SOA
//! signature served at the serial the zone was stopped at (DNSSEC on), and
//! `signatures_saved`, the id of the copy of the `signed` table saved at that stop (see
//! [`saved`]; every later commit removes it).
//!
//! Hot data is kept apart from cold data so that what every query needs stays small, and
//! there is room for per-RRset signatures beside it later. At start-up only `hot` is read,
//! (and `signed` with DNSSEC on, or its copy saved at the last stop, see [`saved`], which
//! [`in_place`] looks up where it lies until it is read) to
//! build the in-memory index; the rest is read when a
//! request needs it. Point reads of a
//! terminal see every staged change (durable or not: writers read here); scans see what
//! redb holds. The `schema` record is checked at open: a store of another version is
//! refused with a clear error, never misread.
//!
//! # Durability: group commit, one transaction and one `fdatasync` per batch
//! [`Store::stage`] encodes a change and queues it, with no I/O, and numbers it.
//! [`Store::flush`] takes everything queued and writes it in one redb transaction committed
//! with [`redb::Durability::Immediate`], whose `fdatasync` makes it durable (redb's
//! documented contract), then records the newest change it covered ([`Store::flushed`]).
//! Callers acknowledge a change only once its number is covered, so many concurrent changes
//! share one transaction and one sync. After `kill -9` or a power cut, redb opens at the last
//! durable commit, checksummed, with no repair step. See [`batch`] for how writers read what
//! is queued. A flush that fails discards everything staged, and every later flush fails
//! too: reads go back to what redb holds, which is what is on disk, and nothing staged can
//! be counted as durable.
//!
//! Flushes run on the blocking pool: the async workers that answer queries must never wait
//! for a disk.
//!
//! The store holds every terminal's TSIG secret: its directory is created 0700 and its files
//! made 0600 at open, whatever the umask.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use hickory_proto::rr::Name;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::dnssec::statics::StoredStatics;
use crate::dnssec::{Sig, TerminalSigs, ZoneKey};
use crate::identity::{CallingCode, CodeKey, Kid, Mid};
use crate::journal::Delta;
use crate::key::{Algorithm, Secret, TerminalKeyName, TsigKey};
use crate::model::{Addresses, Entry, Hot, Presence, Terminal};
use crate::observe::FlushObserver;

mod batch;
mod import_machines;
mod in_place;
mod replay_rows;
mod saved;

pub use import_machines::Conflict;
pub use in_place::InPlace;
pub use saved::SavedId;

use batch::{Staged, Table, Writes};

/// The version of the layout above; bumped whenever a table or a value changes shape.
/// Version 2 added the `signed` table; a store of version 1 is migrated at open (the table
/// is created: nothing else changed shape).
pub const SCHEMA_VERSION: u32 = 3;

/// The store's file inside its directory.
const FILE_NAME: &str = "directory.redb";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const HOT: TableDefinition<&str, &[u8]> = TableDefinition::new("hot");
const COLD: TableDefinition<&str, &[u8]> = TableDefinition::new("cold");
const REPLAY: TableDefinition<&str, &[u8]> = TableDefinition::new("replay");
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
const MACHINES: TableDefinition<&str, &str> = TableDefinition::new("machines");
const IMPORTING: TableDefinition<&str, &[u8]> = TableDefinition::new("importing");
const SIGNED: TableDefinition<&str, &[u8]> = TableDefinition::new("signed");

/// redb's page cache: the index in memory serves queries, so the store needs little. Each
/// thread that writes fills it from its own malloc arena, so a large cache shows up more
/// than once in the resident size: during a 1M import the server peaked at 184-217 MiB
/// with 32 MiB, and at 146-154 MiB with 8 MiB, with durable updates no slower.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

const SCHEMA_KEY: &str = "schema";
const SERIAL_KEY: &str = "serial";
const ZONE_KEY: &str = "zone";
const IMPORT_KEY: &str = "import";
const DNSSEC_KEYS_KEY: &str = "dnssec_keys";
/// The serial at which a zone with DNSSEC keys was first served unsigned (its stored
/// signatures are not kept up to date then), until it is signed again.
const UNSIGNED_KEY: &str = "unsigned_since";
/// The static names' signatures (DNSSEC on), with what they were made for.
const STATIC_SIGS_KEY: &str = "static_sigs";
/// The SOA signature served at the serial a signed zone was stopped at (DNSSEC on).
const SOA_SIG_KEY: &str = "soa_sig";
/// The id of the copy of the `signed` table saved at the last stop, while it is current.
const SAVED_KEY: &str = "signatures_saved";
/// The zone the store holds (lower case, fully qualified): another zone is refused.
const ORIGIN_KEY: &str = "origin";

/// A storage failure; the change it was part of did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store in {path}: {message}")]
    Open { path: String, message: String },
    #[error("the store in {path} is locked by another process")]
    Locked { path: String },
    #[error(
        "the store in {path} has schema version {found}, and this build reads version {SCHEMA_VERSION}; use the matching release of nameserver"
    )]
    Version { path: String, found: u32 },
    #[error(
        "{path} holds a store of an earlier release (sled); this release stores in redb: export it with the earlier release (`nameserver export`, and the terminals' key files), or start from an empty data directory"
    )]
    OldFormat { path: String },
    #[error(
        "the store in {path} holds the zone {stored}, not {asked}: start with --zone {stored} (or its zone file), or use another --data directory for {asked}"
    )]
    OtherZone {
        path: String,
        stored: String,
        asked: String,
    },
    #[error("storage error: {0}")]
    Io(String),
    #[error("stored record for {key:?} is corrupt: {message}")]
    Corrupt { key: String, message: String },
    #[error("cannot make the store in {path} owner-only: {source}")]
    Permissions {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot sign the change (DNSSEC): {0}")]
    Signing(String),
    #[error(
        "an earlier flush to disk failed, so the store may not match the disk; changes are refused until the server is restarted"
    )]
    Poisoned,
}

impl StoreError {
    fn io(e: impl std::fmt::Display) -> Self {
        Self::Io(e.to_string())
    }
}

/// What start-up reads besides the terminals: the serial and the journal.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub serial: Option<u32>,
    /// The fingerprint of the static zone the serial belongs to.
    pub zone_fingerprint: Option<String>,
    /// How many terminals are registered.
    pub terminals: usize,
    /// The journal, oldest first.
    pub journal: Vec<Delta>,
    /// The serial at which the zone, signed before, was first served unsigned.
    pub unsigned_since: Option<u32>,
}

/// One item of a consistent snapshot ([`Store::snapshot`]).
#[derive(Debug)]
pub enum Snapshotted {
    /// What the snapshot holds, first.
    Head {
        serial: Option<u32>,
        zone_fingerprint: Option<String>,
        terminals: usize,
        journal: usize,
        /// The zone's DNSSEC keys.
        zone_keys: Vec<ZoneKey>,
    },
    Terminal(Box<Entry>),
    Delta(Delta),
}

/// One change to the store, applied atomically by [`Store::stage`] and a flush.
#[derive(Debug, Default)]
pub struct Change<'a> {
    /// New or replaced registrations.
    pub put_terminals: Vec<&'a Terminal>,
    /// Registrations removed (with their presence).
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
    /// The registrations are part of an import not yet committed.
    pub importing: bool,
    /// Commits the import in progress: its terminals stay, the marker goes.
    pub finish_import: bool,
    /// Terminals' signatures, new (`Some`) or removed (`None`).
    pub signed: &'a [(CodeKey, Option<TerminalSigs>)],
    /// The zone's signing keys, when they changed.
    pub zone_keys: Option<&'a [ZoneKey]>,
    /// Notes the serial at which a signed zone is first served unsigned (`Some(Some)`), or
    /// that it is signed again (`Some(None)`).
    pub unsigned_since: Option<Option<u32>>,
    /// The static names' signatures, when they were made again.
    pub static_sigs: Option<StoredStatics>,
    /// The SOA signature served at a serial (`None`: none was made), kept at shutdown.
    pub soa_sig: Option<(u32, Option<Sig>)>,
    /// The id of the copy of the `signed` table just saved ([`Store::save_signatures`]),
    /// recorded by this change when it is the last of its commit. Any other commit removes
    /// the record and the file: the copy no longer matches.
    pub signatures_saved: Option<SavedId>,
}

/// What every query needs of a terminal.
#[derive(Serialize, Deserialize)]
struct HotRecord {
    addresses: Addresses,
    lease_expires: Option<u64>,
    updated_at: Option<u64>,
}

impl From<HotRecord> for Hot {
    fn from(record: HotRecord) -> Self {
        Self {
            addresses: record.addresses,
            lease_expires: record.lease_expires.and_then(std::num::NonZeroU64::new),
        }
    }
}

/// What only signed requests and administration need.
#[derive(Serialize, Deserialize)]
struct ColdRecord {
    kid: Kid,
    mid: Mid,
    algorithm: Algorithm,
    secret: Vec<u8>,
    registered_at: u64,
}

/// Group commit: what is staged, and how many changes are known to be on disk.
#[derive(Debug, Default)]
struct GroupCommit {
    staged: Mutex<Staged>,
    flushed: AtomicU64,
    /// How many syncs ran (each flush that wrote anything): for tests and metrics.
    syncs: AtomicU64,
    /// One flush at a time; those who wait behind it usually find their change covered.
    flushing: tokio::sync::Mutex<()>,
    /// Fault injection for tests: the next flush fails as a failing disk would.
    fail_next_flush: AtomicBool,
    /// A flush failed: what was staged is gone, and no later flush may claim to cover it.
    failed: AtomicBool,
    /// Told the size and time of each group commit (metrics), once set.
    observer: std::sync::OnceLock<Arc<dyn FlushObserver>>,
}

/// The redb database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Arc<RwLock<Database>>,
    durability: Arc<GroupCommit>,
    /// The zone's origin, from which key names are derived.
    origin: Name,
    /// The directory of the store's files.
    dir: Arc<Path>,
    /// `meta` may hold `signatures_saved`: the next commit removes it.
    saved_recorded: Arc<AtomicBool>,
}

/// The codes of an import staged but not committed, in one read transaction: not yet
/// registered, so left out of a backup and a list.
enum Unregistered {
    None,
    Import(redb::ReadOnlyTable<&'static str, &'static [u8]>),
}

impl Unregistered {
    fn of(read: &redb::ReadTransaction, in_progress: bool) -> Result<Self, StoreError> {
        Ok(match in_progress {
            true => Self::Import(read.open_table(IMPORTING).map_err(StoreError::io)?),
            false => Self::None,
        })
    }

    fn count(&self) -> Result<u64, StoreError> {
        match self {
            Self::None => Ok(0),
            Self::Import(table) => table.len().map_err(StoreError::io),
        }
    }

    fn holds(&self, code: &str) -> Result<bool, StoreError> {
        match self {
            Self::None => Ok(false),
            Self::Import(table) => Ok(table.get(code).map_err(StoreError::io)?.is_some()),
        }
    }
}

/// An import's terminals from one read transaction ([`Store::imported`]).
pub struct Imported {
    read: redb::ReadTransaction,
}

impl std::fmt::Debug for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imported").finish_non_exhaustive()
    }
}

impl Imported {
    /// How many terminals the import holds.
    pub fn count(&self) -> Result<usize, StoreError> {
        let importing = self.read.open_table(IMPORTING).map_err(StoreError::io)?;
        Ok(importing.len().map_err(StoreError::io)? as usize)
    }

    /// The hot data of the import's terminals, `chunk` at a time, to `each` (to publish
    /// them to the index without holding them all); returns how many.
    pub fn scan(
        &self,
        chunk: usize,
        mut each: impl FnMut(Vec<(CodeKey, Hot)>),
    ) -> Result<usize, StoreError> {
        let importing = self.read.open_table(IMPORTING).map_err(StoreError::io)?;
        let hot = self.read.open_table(HOT).map_err(StoreError::io)?;
        let (mut batch, mut total) = (Vec::with_capacity(chunk), 0);
        for item in importing.iter().map_err(StoreError::io)? {
            let (key, _) = item.map_err(StoreError::io)?;
            let code = key.value();
            let Some(record) = get_decoded::<HotRecord>(&hot, code)? else {
                continue;
            };
            if let Some(key) = CodeKey::from_digits(code.as_bytes()) {
                batch.push((key, record.into()));
            }
            if batch.len() == chunk {
                total += batch.len();
                each(std::mem::replace(&mut batch, Vec::with_capacity(chunk)));
            }
        }
        total += batch.len();
        if !batch.is_empty() {
            each(batch);
        }
        Ok(total)
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, for the zone `origin`.
    pub fn open(dir: &Path, origin: &Name) -> Result<Self, StoreError> {
        let shown = dir.display().to_string();
        if dir.join("db").is_file() && dir.join("conf").is_file() {
            return Err(StoreError::OldFormat { path: shown });
        }
        create_owner_only(dir)?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(file_path(dir))
            .map_err(|e| open_error(&shown, e))?;
        restrict_permissions(dir).map_err(|source| StoreError::Permissions {
            path: shown.clone(),
            source,
        })?;
        let store = Self {
            db: Arc::new(RwLock::new(db)),
            durability: Arc::default(),
            origin: origin.clone(),
            dir: Arc::from(dir),
            saved_recorded: Arc::default(),
        };
        store.check_schema(&shown)?;
        store.check_origin(&shown)?;
        let recorded = store.meta(SAVED_KEY)?.is_some();
        store.saved_recorded.store(recorded, Ordering::SeqCst);
        Ok(store)
    }

    /// Refuses a store of another schema version; upgrades one of an earlier version and
    /// stamps a new one (durably, in one transaction).
    ///
    /// Version 1 lacks the `signed` table; versions 1 and 2 keep whole MACs in `replay`
    /// rows, and a row for every terminal ([`replay_rows`]).
    fn check_schema(&self, shown: &str) -> Result<(), StoreError> {
        let found = self.meta(SCHEMA_KEY)?.map(|v| decode_u32(SCHEMA_KEY, &v));
        let found = found.transpose()?;
        match found {
            Some(SCHEMA_VERSION) => return Ok(()),
            Some(found) if !(1..SCHEMA_VERSION).contains(&found) => {
                return Err(StoreError::Version {
                    path: shown.to_owned(),
                    found,
                });
            }
            _ => {}
        }
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        create_tables(&tx)?;
        if let Some(found) = found {
            let (rewritten, dropped) = replay_rows::upgrade(&tx)?;
            tracing::info!(
                store = shown,
                from = found,
                to = SCHEMA_VERSION,
                replay_rows_rewritten = rewritten,
                replay_rows_dropped = dropped,
                "store upgraded"
            );
        }
        {
            let mut meta = tx.open_table(META).map_err(StoreError::io)?;
            meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes()[..])
                .map_err(StoreError::io)?;
        }
        tx.commit().map_err(StoreError::io)
    }

    /// Refuses a store made for another zone (a typo in `--zone` would otherwise serve
    /// every terminal under the wrong name); records the zone of a store that has none.
    fn check_origin(&self, shown: &str) -> Result<(), StoreError> {
        let asked = self.origin.to_lowercase().to_ascii();
        match self.meta(ORIGIN_KEY)? {
            Some(stored) if stored == asked.as_bytes() => Ok(()),
            Some(stored) => Err(StoreError::OtherZone {
                path: shown.to_owned(),
                stored: String::from_utf8_lossy(&stored).into_owned(),
                asked,
            }),
            None => {
                let db = self.db();
                let tx = begin_write(&db, Durability::Immediate)?;
                {
                    let mut meta = tx.open_table(META).map_err(StoreError::io)?;
                    meta.insert(ORIGIN_KEY, asked.as_bytes())
                        .map_err(StoreError::io)?;
                }
                tx.commit().map_err(StoreError::io)
            }
        }
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let meta = match read.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StoreError::io(e)),
        };
        let value = meta.get(key).map_err(StoreError::io)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Reads what start-up needs: the serial, the journal, and the number of terminals.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let serial = self
            .meta(SERIAL_KEY)?
            .map(|v| decode_u32(SERIAL_KEY, &v))
            .transpose()?;
        let zone_fingerprint = self
            .meta(ZONE_KEY)?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let hot = read.open_table(HOT).map_err(StoreError::io)?;
        let terminals = hot.len().map_err(StoreError::io)? as usize;
        let journal_table = read.open_table(JOURNAL).map_err(StoreError::io)?;
        let mut journal = Vec::new();
        for item in journal_table.iter().map_err(StoreError::io)? {
            let (key, value) = item.map_err(StoreError::io)?;
            journal.push(decode(&key.value().to_string(), value.value())?);
        }
        let unsigned_since = self
            .meta(UNSIGNED_KEY)?
            .map(|v| decode_u32(UNSIGNED_KEY, &v))
            .transpose()?;
        Ok(Snapshot {
            serial,
            zone_fingerprint,
            terminals,
            journal,
            unsigned_since,
        })
    }

    /// Every terminal's hot data, in code order, to `each` (the index at start-up; nothing
    /// is collected on the way).
    pub fn scan_hot(&self, mut each: impl FnMut(CodeKey, Hot)) -> Result<(), StoreError> {
        self.scan_by_code(HOT, |key, code, value| {
            let record: HotRecord = decode(code, value)?;
            each(key, record.into());
            Ok(())
        })
    }

    /// A terminal and its presence with every staged change (durable or not), if registered.
    pub fn terminal(&self, code: &CallingCode) -> Result<Option<Entry>, StoreError> {
        let text = code.as_str();
        let [cold, hot, replay] = self.rows([
            (Table::Cold, text),
            (Table::Hot, text),
            (Table::Replay, text),
        ])?;
        let Some(cold) = cold else {
            return Ok(None);
        };
        Ok(Some(assemble(
            code.clone(),
            decode(text, &cold)?,
            decode_row(text, hot)?,
            replay.as_deref(),
            &self.origin,
        )?))
    }

    /// A terminal's signatures with every staged change (durable or not).
    pub fn signed(&self, key: CodeKey) -> Result<Option<TerminalSigs>, StoreError> {
        let text = key.to_code();
        let [row] = self.rows([(Table::Signed, text.as_str())])?;
        decode_row(text.as_str(), row)
    }

    /// Every terminal's signatures as redb holds them, to `each`.
    pub fn scan_signed(
        &self,
        mut each: impl FnMut(CodeKey, TerminalSigs),
    ) -> Result<(), StoreError> {
        self.scan_by_code(SIGNED, |key, code, value| {
            each(key, decode(code, value)?);
            Ok(())
        })
    }

    /// Every row of a table keyed by calling code, as redb holds it, to `each` with the
    /// code as an integer and as text.
    fn scan_by_code(
        &self,
        table: TableDefinition<&str, &[u8]>,
        mut each: impl FnMut(CodeKey, &str, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let rows = read.open_table(table).map_err(StoreError::io)?;
        for item in rows.iter().map_err(StoreError::io)? {
            let (key, value) = item.map_err(StoreError::io)?;
            let code = key.value();
            let key = CodeKey::from_digits(code.as_bytes()).ok_or_else(|| StoreError::Corrupt {
                key: code.to_owned(),
                message: "not a calling code".into(),
            })?;
            each(key, code, value.value())?;
        }
        Ok(())
    }

    /// Saves a copy of every terminal's signatures, `entries` (the `signed` table as the
    /// last flush left it, with nothing staged), for the next start to read at once;
    /// returns the id for [`Change::signatures_saved`], which makes it current. Blocking:
    /// about a quarter of a second per million terminals.
    pub fn save_signatures(
        &self,
        entries: impl Iterator<Item = (CodeKey, TerminalSigs)>,
    ) -> Result<SavedId, StoreError> {
        let mut id = SavedId::default();
        getrandom::fill(&mut id).map_err(StoreError::io)?;
        saved::write(&self.dir.join(saved::FILE_NAME), &id, entries).map_err(StoreError::io)?;
        Ok(id)
    }

    /// Each terminal's signatures from the copy saved at the last stop, to `each`, when it
    /// is whole and no commit came after it (then it is the `signed` table, read in one
    /// pass); false otherwise (why is logged), and then what `each` was given must be
    /// dropped. The file is removed once read: it is saved again at the next stop.
    pub fn saved_signatures(&self, each: impl FnMut(CodeKey, TerminalSigs)) -> bool {
        let path = self.dir.join(saved::FILE_NAME);
        let result = match self.meta(SAVED_KEY) {
            Ok(Some(id)) => match <SavedId>::try_from(id.as_slice()) {
                Ok(id) => saved::read(&path, &id, each).map_err(|e| e.to_string()),
                Err(_) => Err("its record in the store is corrupt".into()),
            },
            Ok(None) => Err("the store changed since it was saved".into()),
            Err(e) => Err(e.to_string()),
        };
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            _ => {}
        }
        result
            .inspect_err(|reason| {
                tracing::info!(%reason, "the signatures saved at the stop are not used; reading the store's table");
            })
            .is_ok()
    }

    /// The copy saved at the last stop, open to be looked up in place (see [`in_place`]),
    /// when no commit came after it; `None` otherwise. Its checksum is checked by
    /// [`Store::saved_signatures`], which reads it whole.
    pub fn saved_in_place(&self) -> Option<InPlace> {
        let id = self.meta(SAVED_KEY).ok()??;
        let id = <SavedId>::try_from(id.as_slice()).ok()?;
        InPlace::open(&self.dir.join(saved::FILE_NAME), &id)
            .inspect_err(
                |e| tracing::debug!(error = %e, "the saved signatures are not looked up in place"),
            )
            .ok()
    }

    /// After a commit that removed the record of the saved copy: the copy is no longer the
    /// table, so its file goes now, not at the next start.
    fn saved_forgotten(&self) {
        self.saved_recorded.store(false, Ordering::SeqCst);
        let _ = std::fs::remove_file(self.dir.join(saved::FILE_NAME));
    }

    /// The static names' signatures as last stored, if any. They are made again from the
    /// zone when they cannot be read (a store of an older version), so that is no error.
    pub fn static_sigs(&self) -> Result<Option<StoredStatics>, StoreError> {
        Ok(self.meta(STATIC_SIGS_KEY)?.and_then(|v| {
            decode(STATIC_SIGS_KEY, &v)
                .inspect_err(|e| tracing::warn!(error = %e, "static signatures made again"))
                .ok()
        }))
    }

    /// The SOA signature kept when a signed zone was last stopped, with its serial (and
    /// `None` when no SOA signature was made at that serial); like the static names', made
    /// again when it cannot be read.
    pub fn soa_sig(&self) -> Result<Option<(u32, Option<Sig>)>, StoreError> {
        Ok(self.meta(SOA_SIG_KEY)?.and_then(|v| {
            decode(SOA_SIG_KEY, &v)
                .inspect_err(|e| tracing::warn!(error = %e, "SOA signature made again"))
                .ok()
        }))
    }

    /// The zone's DNSSEC signing keys (none until DNSSEC is first turned on).
    pub fn zone_keys(&self) -> Result<Vec<ZoneKey>, StoreError> {
        self.meta(DNSSEC_KEYS_KEY)?
            .map(|v| decode(DNSSEC_KEYS_KEY, &v))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// A terminal's TSIG key (the cold table only: what every signed request needs).
    pub fn key(&self, code: &CallingCode) -> Result<Option<TsigKey>, StoreError> {
        let [cold] = self.rows([(Table::Cold, code.as_str())])?;
        let record: Option<ColdRecord> = decode_row(code.as_str(), cold)?;
        Ok(record.map(|r| key_of(code, &r, &self.origin)))
    }

    /// The code registered for a KID and MID, if any.
    pub fn machine(&self, kid: &Kid, mid: &Mid) -> Result<Option<CallingCode>, StoreError> {
        let key = machine_key(kid, mid);
        let [code] = self.rows([(Table::Machines, key.as_str())])?;
        let Some(code) = code else {
            return Ok(None);
        };
        String::from_utf8_lossy(&code)
            .parse()
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key,
                message: format!("{e}"),
            })
    }

    /// Rows as the staged changes leave them, else as redb holds them, all from one moment:
    /// the staged rows are read, and redb's snapshot taken, under the lock a flush takes to
    /// retire the rows it has written.
    fn rows<const N: usize>(
        &self,
        keys: [(Table, &str); N],
    ) -> Result<[Option<Vec<u8>>; N], StoreError> {
        let db = self.db();
        let staged = self.staged();
        let read = db.begin_read().map_err(StoreError::io)?;
        let mut out = [const { None }; N];
        for (slot, (table, key)) in out.iter_mut().zip(keys) {
            *slot = match staged.row(table, key) {
                Some(value) => value.map(<[u8]>::to_vec),
                None => read_row(&read, table, key)?,
            };
        }
        Ok(out)
    }

    fn staged(&self) -> MutexGuard<'_, Staged> {
        self.durability
            .staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// True while an import is staged but not committed (or was interrupted by a crash).
    pub fn import_in_progress(&self) -> Result<bool, StoreError> {
        Ok(self.meta(IMPORT_KEY)?.is_some())
    }

    /// Whether `code` belongs to an import not yet committed.
    pub fn is_importing(&self, code: &CallingCode) -> Result<bool, StoreError> {
        let [row] = self.rows([(Table::Importing, code.as_str())])?;
        Ok(row.is_some())
    }

    /// The import being committed, as it stands before its commit: read from it after the
    /// commit, whose transaction clears the list of its codes.
    pub fn imported(&self) -> Result<Imported, StoreError> {
        let read = self.db().begin_read().map_err(StoreError::io)?;
        Ok(Imported { read })
    }

    /// Clears, durably, a list of codes left by an import committed by an earlier release
    /// (which cleared it after the commit, not with it); returns whether there was one.
    pub fn drop_stale_import_list(&self) -> Result<bool, StoreError> {
        let staged = {
            let read = self.db().begin_read().map_err(StoreError::io)?;
            import_machines::any_staged(&read)?
        };
        if self.import_in_progress()? || (self.imported()?.count()? == 0 && !staged) {
            return Ok(false);
        }
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        tx.delete_table(IMPORTING).map_err(StoreError::io)?;
        tx.open_table(IMPORTING).map_err(StoreError::io)?;
        import_machines::clear(&tx)?;
        tx.commit().map_err(StoreError::io)?;
        Ok(true)
    }

    /// The first KID/MID pair of the staged import that cannot be committed (taken twice
    /// within it, or registered meanwhile), if any.
    pub fn import_conflict(&self) -> Result<Option<Conflict>, StoreError> {
        let read = self.db().begin_read().map_err(StoreError::io)?;
        import_machines::first_conflict(&read)
    }

    /// Removes every terminal of an import not committed, durably; returns how many.
    pub fn abort_import(&self) -> Result<usize, StoreError> {
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        let mut removed = 0;
        {
            let importing = tx.open_table(IMPORTING).map_err(StoreError::io)?;
            let mut cold = tx.open_table(COLD).map_err(StoreError::io)?;
            let mut hot = tx.open_table(HOT).map_err(StoreError::io)?;
            let mut replay = tx.open_table(REPLAY).map_err(StoreError::io)?;
            let mut machines = tx.open_table(MACHINES).map_err(StoreError::io)?;
            for item in importing.iter().map_err(StoreError::io)? {
                let (key, _) = item.map_err(StoreError::io)?;
                let code = key.value();
                if let Some(value) = cold.remove(code).map_err(StoreError::io)? {
                    let record: ColdRecord = decode(code, value.value())?;
                    // Only a pair this code holds (an import staged by an earlier release
                    // wrote its pairs here; now they wait apart until the commit).
                    let machine = machine_key(&record.kid, &record.mid);
                    let held = machines
                        .get(machine.as_str())
                        .map_err(StoreError::io)?
                        .is_some_and(|held| held.value() == code);
                    if held {
                        machines.remove(machine.as_str()).map_err(StoreError::io)?;
                    }
                }
                hot.remove(code).map_err(StoreError::io)?;
                replay.remove(code).map_err(StoreError::io)?;
                removed += 1;
            }
            let mut meta = tx.open_table(META).map_err(StoreError::io)?;
            meta.remove(IMPORT_KEY).map_err(StoreError::io)?;
            meta.remove(SAVED_KEY).map_err(StoreError::io)?;
        }
        tx.delete_table(IMPORTING).map_err(StoreError::io)?;
        tx.open_table(IMPORTING).map_err(StoreError::io)?;
        import_machines::clear(&tx)?;
        tx.commit().map_err(StoreError::io)?;
        self.saved_forgotten();
        Ok(removed)
    }

    /// Everything a backup holds, from one read transaction (a consistent moment: every
    /// change flushed before it, none after), to `each` until it returns false: the
    /// [`Snapshotted::Head`] first, then every terminal by code, then the journal.
    pub fn snapshot(&self, mut each: impl FnMut(Snapshotted) -> bool) -> Result<(), StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let meta = read.open_table(META).map_err(StoreError::io)?;
        let meta_value = |key: &str| -> Result<Option<Vec<u8>>, StoreError> {
            let value = meta.get(key).map_err(StoreError::io)?;
            Ok(value.map(|v| v.value().to_vec()))
        };
        let serial = meta_value(SERIAL_KEY)?
            .map(|v| decode_u32(SERIAL_KEY, &v))
            .transpose()?;
        let zone_fingerprint =
            meta_value(ZONE_KEY)?.map(|v| String::from_utf8_lossy(&v).into_owned());
        let cold = read.open_table(COLD).map_err(StoreError::io)?;
        let hot = read.open_table(HOT).map_err(StoreError::io)?;
        let replay = read.open_table(REPLAY).map_err(StoreError::io)?;
        let journal = read.open_table(JOURNAL).map_err(StoreError::io)?;
        let staged = Unregistered::of(&read, meta_value(IMPORT_KEY)?.is_some())?;
        let head = Snapshotted::Head {
            serial,
            zone_fingerprint,
            terminals: (cold.len().map_err(StoreError::io)? - staged.count()?) as usize,
            journal: journal.len().map_err(StoreError::io)? as usize,
            zone_keys: meta_value(DNSSEC_KEYS_KEY)?
                .map(|v| decode(DNSSEC_KEYS_KEY, &v))
                .transpose()?
                .unwrap_or_default(),
        };
        if !each(head) {
            return Ok(());
        }
        let go_on = self.entries(&cold, &hot, &replay, &staged, |entry| {
            each(Snapshotted::Terminal(Box::new(entry)))
        })?;
        if !go_on {
            return Ok(());
        }
        for item in journal.iter().map_err(StoreError::io)? {
            let (key, value) = item.map_err(StoreError::io)?;
            let delta = decode(&key.value().to_string(), value.value())?;
            if !each(Snapshotted::Delta(delta)) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Every terminal and its presence, by code, to `each` until it returns false; one read
    /// transaction, nothing collected (a streamed `list`).
    pub fn for_each_entry(&self, each: impl FnMut(Entry) -> bool) -> Result<(), StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let cold = read.open_table(COLD).map_err(StoreError::io)?;
        let hot = read.open_table(HOT).map_err(StoreError::io)?;
        let replay = read.open_table(REPLAY).map_err(StoreError::io)?;
        let in_progress = read
            .open_table(META)
            .map_err(StoreError::io)?
            .get(IMPORT_KEY)
            .map_err(StoreError::io)?
            .is_some();
        let staged = Unregistered::of(&read, in_progress)?;
        self.entries(&cold, &hot, &replay, &staged, each)?;
        Ok(())
    }

    /// Every terminal of one read transaction's tables, by code, to `each` until it returns
    /// false; returns whether it went to the end.
    fn entries(
        &self,
        cold: &redb::ReadOnlyTable<&str, &[u8]>,
        hot: &redb::ReadOnlyTable<&str, &[u8]>,
        replay: &redb::ReadOnlyTable<&str, &[u8]>,
        staged: &Unregistered,
        mut each: impl FnMut(Entry) -> bool,
    ) -> Result<bool, StoreError> {
        for item in cold.iter().map_err(StoreError::io)? {
            let (key, value) = item.map_err(StoreError::io)?;
            let text = key.value();
            if staged.holds(text)? {
                continue;
            }
            let code: CallingCode = text.parse().map_err(|e| StoreError::Corrupt {
                key: text.to_owned(),
                message: format!("{e}"),
            })?;
            let record: ColdRecord = decode(text, value.value())?;
            let h = get_decoded(hot, text)?;
            let r = replay.get(text).map_err(StoreError::io)?;
            let entry = assemble(code, record, h, r.as_ref().map(|r| r.value()), &self.origin)?;
            if !each(entry) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Stages one change for the next flush (no I/O): point reads see it at once; it is
    /// written, atomically, by [`Store::flush`]. Returns the change's number, which
    /// [`Store::flushed`] reaches once it is on disk.
    pub fn stage(&self, change: &Change<'_>) -> Result<u64, StoreError> {
        let writes = encode_change(change)?;
        Ok(self.staged().push(writes))
    }

    /// Writes a bulk change (an import's batch) durably, with everything staged before it, in
    /// one flush. Its rows are not kept for reads until then: call it holding the writer lock.
    pub async fn write_now(&self, change: &Change<'_>) -> Result<(), StoreError> {
        let writes = encode_change(change)?;
        self.staged().push_unread(writes);
        self.flush().await
    }

    /// Applies one change and makes it durable at once, blocking (at open, before anything
    /// is served and nothing is staged).
    pub fn commit_now(&self, change: &Change<'_>) -> Result<(), StoreError> {
        self.commit_all_now(std::slice::from_ref(change))
    }

    /// Applies changes, in order, in one transaction made durable at once (one sync),
    /// blocking (at open or in a restore, before anything is served and nothing is staged).
    pub fn commit_all_now(&self, changes: &[Change<'_>]) -> Result<(), StoreError> {
        let writes = changes
            .iter()
            .map(encode_change)
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.staged().count_direct();
        self.write(&writes)?;
        self.durability.flushed.fetch_max(n, Ordering::SeqCst);
        Ok(())
    }

    /// Shared access to the database: held for as long as a transaction lives, so that
    /// [`Store::compact`] never runs beside one.
    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes changes, oldest first, in one durable transaction (one `fdatasync`).
    fn write(&self, writes: &[Writes]) -> Result<(), StoreError> {
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        apply(&tx, writes)?;
        let saved = writes.last().and_then(|w| w.signatures_saved);
        let recorded = self.saved_recorded.load(Ordering::SeqCst);
        if saved.is_some() || recorded {
            let mut meta = tx.open_table(META).map_err(StoreError::io)?;
            match &saved {
                Some(id) => meta.insert(SAVED_KEY, &id[..]),
                None => meta.remove(SAVED_KEY),
            }
            .map_err(StoreError::io)?;
        }
        tx.commit().map_err(StoreError::io)?;
        match saved {
            Some(_) => self.saved_recorded.store(true, Ordering::SeqCst),
            None if recorded => self.saved_forgotten(),
            None => {}
        }
        self.durability.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Gives the file back the space a bulk change freed (a streamed import leaves its
    /// staging behind): waits for every transaction, then rewrites the file compactly.
    pub async fn compact(&self) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = store.db.write().unwrap_or_else(|p| p.into_inner());
            db.compact().map(|_| ()).map_err(StoreError::io)
        })
        .await
        .map_err(StoreError::io)?
    }

    /// The newest commit number known to be on disk.
    pub fn flushed(&self) -> u64 {
        self.durability.flushed.load(Ordering::SeqCst)
    }

    /// How many syncs have run since the store was opened.
    pub fn syncs(&self) -> u64 {
        self.durability.syncs.load(Ordering::SeqCst)
    }

    /// Reports every later group commit to `observer` (only the first one set counts).
    pub fn observe(&self, observer: Arc<dyn FlushObserver>) {
        let _ = self.durability.observer.set(observer);
    }

    /// Makes the next flush fail (fault injection for tests of the commit pipeline).
    pub fn inject_flush_failure(&self) {
        self.durability
            .fail_next_flush
            .store(true, Ordering::SeqCst);
    }

    /// Makes every change staged so far durable: one transaction and one `fdatasync` for
    /// all of them (group commit). Callers queue for one flush at a time, and one whose
    /// change a flush already covered returns at once.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let d = &self.durability;
        let wanted = self.staged().newest();
        let _turn = d.flushing.lock().await;
        if d.failed.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        if d.flushed.load(Ordering::SeqCst) >= wanted {
            return Ok(());
        }
        if d.fail_next_flush.swap(false, Ordering::SeqCst) {
            d.failed.store(true, Ordering::SeqCst);
            self.staged().discard();
            return Err(StoreError::Io("injected flush failure".into()));
        }
        let (batch, covered) = self.staged().take();
        let (changes, started) = (batch.len(), std::time::Instant::now());
        let store = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let written = store.write(&batch);
            // Readers take their redb snapshot under this lock: they see the rows here or,
            // once retired, in redb (written), or what redb held before (failed).
            let mut staged = store.staged();
            match written {
                Ok(()) => staged.landed(),
                Err(_) => staged.discard(),
            }
            written
        })
        .await
        .map_err(StoreError::io)
        .and_then(|written| written);
        if written.is_err() {
            d.failed.store(true, Ordering::SeqCst);
            // Also when the write itself panicked and never reached its own discard.
            self.staged().discard();
        }
        written?;
        d.flushed.fetch_max(covered, Ordering::SeqCst);
        if let Some(observer) = d.observer.get() {
            observer.flushed(started.elapsed(), changes);
        }
        Ok(())
    }
}

fn begin_write(db: &Database, durability: Durability) -> Result<WriteTransaction, StoreError> {
    let mut tx = db.begin_write().map_err(StoreError::io)?;
    tx.set_durability(durability).map_err(StoreError::io)?;
    Ok(tx)
}

fn file_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(META).map_err(StoreError::io)?;
    tx.open_table(HOT).map_err(StoreError::io)?;
    tx.open_table(COLD).map_err(StoreError::io)?;
    tx.open_table(REPLAY).map_err(StoreError::io)?;
    tx.open_table(JOURNAL).map_err(StoreError::io)?;
    tx.open_table(MACHINES).map_err(StoreError::io)?;
    tx.open_table(IMPORTING).map_err(StoreError::io)?;
    tx.open_table(import_machines::IMPORT_MACHINES)
        .map_err(StoreError::io)?;
    tx.open_table(SIGNED).map_err(StoreError::io)?;
    Ok(())
}

/// Writes encoded changes, oldest first, inside `tx`.
fn apply(tx: &WriteTransaction, batch: &[Writes]) -> Result<(), StoreError> {
    apply_rows(tx, batch)?;
    for w in batch {
        import_machines::stage(tx, w.import_machines.clone())?;
    }
    if batch.iter().any(|w| w.finish_import) {
        // The committed import's KID/MID pairs go into `machines` in key order, and its
        // list of codes goes, in the commit's own transaction: a list that outlived its
        // commit would be taken for the next import's, and removed with it.
        import_machines::merge_into_machines(tx)?;
        tx.delete_table(IMPORTING).map_err(StoreError::io)?;
        tx.open_table(IMPORTING).map_err(StoreError::io)?;
    }
    Ok(())
}

/// The rows of encoded changes, oldest first, inside `tx`.
fn apply_rows(tx: &WriteTransaction, batch: &[Writes]) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META).map_err(StoreError::io)?;
    let mut hot = tx.open_table(HOT).map_err(StoreError::io)?;
    let mut cold = tx.open_table(COLD).map_err(StoreError::io)?;
    let mut replay = tx.open_table(REPLAY).map_err(StoreError::io)?;
    let mut importing = tx.open_table(IMPORTING).map_err(StoreError::io)?;
    let mut machines = tx.open_table(MACHINES).map_err(StoreError::io)?;
    let mut journal = tx.open_table(JOURNAL).map_err(StoreError::io)?;
    let mut signed = tx.open_table(SIGNED).map_err(StoreError::io)?;
    for w in batch {
        for (key, value) in &w.meta {
            meta.insert(*key, value.as_slice())
                .map_err(StoreError::io)?;
        }
        if let Some(code) = &w.remove {
            hot.remove(code.as_str()).map_err(StoreError::io)?;
            cold.remove(code.as_str()).map_err(StoreError::io)?;
            replay.remove(code.as_str()).map_err(StoreError::io)?;
            signed.remove(code.as_str()).map_err(StoreError::io)?;
        }
        for (code, value) in &w.signed {
            match value {
                Some(value) => signed.insert(code.as_str(), value.as_slice()),
                None => signed.remove(code.as_str()),
            }
            .map_err(StoreError::io)?;
        }
        for (table, rows) in [(&mut cold, &w.cold), (&mut hot, &w.hot)] {
            for (code, value) in rows {
                table
                    .insert(code.as_str(), value.as_slice())
                    .map_err(StoreError::io)?;
            }
        }
        for (code, value) in &w.replay {
            match value {
                Some(value) => replay.insert(code.as_str(), value.as_slice()).map(|_| ()),
                None => replay.remove(code.as_str()).map(|_| ()),
            }
            .map_err(StoreError::io)?;
        }
        for code in &w.importing {
            importing
                .insert(code.as_str(), &[][..])
                .map_err(StoreError::io)?;
        }
        if w.finish_import {
            meta.remove(IMPORT_KEY).map_err(StoreError::io)?;
        }
        for key in &w.meta_remove {
            meta.remove(*key).map_err(StoreError::io)?;
        }
        for key in &w.machines_remove {
            machines.remove(key.as_str()).map_err(StoreError::io)?;
        }
        for (key, code) in &w.machines_put {
            machines
                .insert(key.as_str(), code.as_str())
                .map_err(StoreError::io)?;
        }
        if let Some((seq, value)) = &w.journal {
            journal
                .insert(*seq, value.as_slice())
                .map_err(StoreError::io)?;
        }
        for seq in &w.journal_drop {
            journal.remove(*seq).map_err(StoreError::io)?;
        }
    }
    Ok(())
}

/// One row as redb holds it.
fn read_row(
    read: &redb::ReadTransaction,
    table: Table,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let bytes = |table: TableDefinition<&str, &[u8]>| -> Result<Option<Vec<u8>>, StoreError> {
        let rows = read.open_table(table).map_err(StoreError::io)?;
        let value = rows.get(key).map_err(StoreError::io)?;
        Ok(value.map(|v| v.value().to_vec()))
    };
    match table {
        Table::Cold => bytes(COLD),
        Table::Hot => bytes(HOT),
        Table::Replay => bytes(REPLAY),
        Table::Importing => bytes(IMPORTING),
        Table::Signed => bytes(SIGNED),
        Table::Machines => {
            let machines = read.open_table(MACHINES).map_err(StoreError::io)?;
            let value = machines.get(key).map_err(StoreError::io)?;
            Ok(value.map(|v| v.value().as_bytes().to_vec()))
        }
    }
}

fn encode_change(change: &Change<'_>) -> Result<Writes, StoreError> {
    let mut w = Writes {
        remove: change.remove_terminal.map(|t| t.code.as_str().to_owned()),
        machines_remove: change
            .remove_terminal
            .map(|t| machine_key(&t.kid, &t.mid))
            .into_iter()
            .collect(),
        journal_drop: change.journal_drop.clone(),
        ..Writes::default()
    };
    if let Some(serial) = change.serial {
        w.meta.push((SERIAL_KEY, serial.to_be_bytes().to_vec()));
    }
    if let Some(fingerprint) = change.zone_fingerprint {
        w.meta.push((ZONE_KEY, fingerprint.as_bytes().to_vec()));
    }
    if let Some(keys) = change.zone_keys {
        w.meta.push((DNSSEC_KEYS_KEY, encode(&keys)?));
    }
    if let Some(statics) = &change.static_sigs {
        w.meta.push((STATIC_SIGS_KEY, encode(statics)?));
    }
    if let Some(soa) = &change.soa_sig {
        w.meta.push((SOA_SIG_KEY, encode(soa)?));
    }
    match change.unsigned_since {
        Some(Some(serial)) => w.meta.push((UNSIGNED_KEY, serial.to_be_bytes().to_vec())),
        Some(None) => w.meta_remove.push(UNSIGNED_KEY),
        None => {}
    }
    for (key, sigs) in change.signed {
        let value = sigs.as_ref().map(encode).transpose()?;
        w.signed.push((key.to_code().as_str().to_owned(), value));
    }
    if change.importing {
        w.meta.push((IMPORT_KEY, Vec::new()));
        w.importing = change
            .put_terminals
            .iter()
            .map(|t| t.code.as_str().to_owned())
            .collect();
    }
    w.finish_import = change.finish_import;
    w.signatures_saved = change.signatures_saved;
    for t in &change.put_terminals {
        let record = ColdRecord {
            kid: t.kid.clone(),
            mid: t.mid.clone(),
            algorithm: t.key.algorithm,
            secret: t.key.secret.as_bytes().to_vec(),
            registered_at: t.registered_at,
        };
        w.cold.push((t.code.as_str().to_owned(), encode(&record)?));
        let machine = (machine_key(&t.kid, &t.mid), t.code.as_str().to_owned());
        match change.importing {
            // Kept apart until the commit ([`import_machines`]).
            true => w.import_machines.push(machine),
            false => w.machines_put.push(machine),
        }
    }
    for (code, p) in &change.put_presence {
        let hot = HotRecord {
            addresses: p.addresses.clone(),
            lease_expires: p.lease_expires,
            updated_at: p.updated_at,
        };
        w.hot.push((code.as_str().to_owned(), encode(&hot)?));
        match replay_rows::encode_row(p)? {
            // An imported terminal is new: it has no row to remove.
            None if change.importing => {}
            row => w.replay.push((code.as_str().to_owned(), row)),
        }
    }
    if let Some(delta) = change.journal {
        w.journal = Some((delta.seq, encode(delta)?));
    }
    Ok(w)
}

/// The `machines` table's key for a KID and MID.
fn machine_key(kid: &Kid, mid: &Mid) -> String {
    format!("{kid} {mid}")
}

/// A terminal's key from its cold record; the name is derived, not stored.
fn key_of(code: &CallingCode, cold: &ColdRecord, origin: &Name) -> TsigKey {
    TsigKey {
        name: TerminalKeyName::format(code, &cold.mid, &cold.kid, origin),
        algorithm: cold.algorithm,
        secret: Secret::from_bytes(cold.secret.clone()),
    }
}

/// A terminal and its presence from their stored records.
fn assemble(
    code: CallingCode,
    cold: ColdRecord,
    hot: Option<HotRecord>,
    replay: Option<&[u8]>,
    origin: &Name,
) -> Result<Entry, StoreError> {
    let key = key_of(&code, &cold, origin);
    let mut presence = Presence::default();
    if let Some(hot) = hot {
        presence.addresses = hot.addresses;
        presence.lease_expires = hot.lease_expires;
        presence.updated_at = hot.updated_at;
    }
    if let Some(replay) = replay {
        replay_rows::decode_into(code.as_str(), replay, &mut presence)?;
    }
    let terminal = Terminal {
        code,
        kid: cold.kid,
        mid: cold.mid,
        key,
        registered_at: cold.registered_at,
    };
    Ok(Entry { terminal, presence })
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

/// redb reports another process's open database as `DatabaseAlreadyOpen`.
fn open_error(path: &str, error: redb::DatabaseError) -> StoreError {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_owned(),
        },
        e => StoreError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        },
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value).map_err(|e| StoreError::Corrupt {
        key: String::new(),
        message: e.to_string(),
    })
}

/// The record of `code` in `table`, decoded, if there is one.
fn get_decoded<T: DeserializeOwned>(
    table: &redb::ReadOnlyTable<&str, &[u8]>,
    code: &str,
) -> Result<Option<T>, StoreError> {
    let value = table.get(code).map_err(StoreError::io)?;
    value.map(|v| decode(code, v.value())).transpose()
}

fn decode_row<T: DeserializeOwned>(
    key: &str,
    row: Option<Vec<u8>>,
) -> Result<Option<T>, StoreError> {
    row.map(|v| decode(key, &v)).transpose()
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(value).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

fn decode_u32(key: &str, value: &[u8]) -> Result<u32, StoreError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| StoreError::Corrupt {
        key: key.into(),
        message: format!("{} bytes instead of 4", value.len()),
    })?;
    Ok(u32::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn terminal(code: &str) -> Terminal {
        let code: CallingCode = code.parse().unwrap();
        let kid: Kid = "acme".parse().unwrap();
        let mid: Mid = "3f9a0c1d22e4b7a8".parse().unwrap();
        Terminal {
            key: TsigKey {
                name: TerminalKeyName::format(&code, &mid, &kid, &origin()),
                algorithm: Algorithm::HmacSha256,
                secret: Secret::from_bytes(vec![7; 32]),
            },
            code,
            kid,
            mid,
            registered_at: 5,
        }
    }

    fn origin() -> Name {
        Name::from_ascii("dial.example.").unwrap()
    }

    #[tokio::test]
    async fn changes_read_back_after_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let t = terminal("5551234");
        let mut p = Presence::default();
        p.addresses.v4.ttl = 30;
        p.addresses.v4.addrs = vec![Ipv4Addr::new(192, 0, 2, 1)].into();
        p.lease_expires = Some(99);
        p.last_signed = 42;
        p.recent_macs = vec![(42, crate::model::mac_print(&[1, 2, 3]))];
        {
            let store = Store::open(tmp.path(), &origin()).unwrap();
            let n = store
                .stage(&Change {
                    put_terminals: vec![&t],
                    put_presence: vec![(&t.code, &p)],
                    serial: Some(7),
                    ..Change::default()
                })
                .unwrap();
            let staged = store.terminal(&t.code).unwrap().unwrap();
            assert_eq!(
                staged.presence, p,
                "a staged change reads back before its flush"
            );
            assert_eq!(store.flushed(), 0, "not durable before the flush");
            store.flush().await.unwrap();
            assert_eq!(store.flushed(), n);
            assert_eq!(store.syncs(), 1);
        }
        let store = Store::open(tmp.path(), &origin()).unwrap();
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.serial, Some(7));
        assert_eq!(snapshot.terminals, 1);
        let mut hot = Vec::new();
        store.scan_hot(|k, h| hot.push((k, h))).unwrap();
        assert_eq!(hot, vec![(CodeKey::from(&t.code), p.hot())]);
        let machine = store.machine(&t.kid, &t.mid).unwrap();
        assert_eq!(machine.as_ref(), Some(&t.code));
        let entry = store.terminal(&t.code).unwrap().unwrap();
        assert_eq!(
            entry,
            Entry {
                terminal: t,
                presence: p
            }
        );
    }

    /// The saved copy is read while it is the table as the store last left it: never after
    /// a later commit (alone or in the same batch after the save), an import's abort, or a
    /// reopen that removed it; and it is removed once read.
    #[tokio::test]
    async fn saved_signatures_are_read_only_while_no_commit_came_after_them() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &origin()).unwrap();
        let key = CodeKey::from_digits(b"5551234").unwrap();
        let sig = Sig {
            inception: 1,
            expiration: 2,
            key_tag: 3,
            signature: [4; 64],
        };
        let sigs = TerminalSigs {
            hash: [5; 20],
            next: [6; 20],
            a: Some(sig),
            aaaa: None,
            nsec3: sig,
        };
        let read = |store: &Store| {
            let mut all = Vec::new();
            store
                .saved_signatures(|key, sigs| all.push((key, sigs)))
                .then_some(all)
        };
        let save = |store: &Store| Change {
            signatures_saved: Some(store.save_signatures([(key, sigs)].into_iter()).unwrap()),
            ..Change::default()
        };
        let other = |serial| Change {
            serial: Some(serial),
            ..Change::default()
        };
        assert_eq!(read(&store), None, "none saved");

        store.commit_now(&save(&store)).unwrap();
        let file = tmp.path().join(saved::FILE_NAME);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner only");
        drop(store);
        let store = Store::open(tmp.path(), &origin()).unwrap();
        assert_eq!(read(&store), Some(vec![(key, sigs)]), "after a reopen");
        assert!(!file.exists(), "removed once read");
        assert_eq!(read(&store), None, "read once");

        store.commit_now(&save(&store)).unwrap();
        store.commit_now(&other(8)).unwrap();
        assert!(
            !file.exists(),
            "a stale copy is removed by the commit after it"
        );
        assert_eq!(read(&store), None, "a commit after the save");

        store.stage(&save(&store)).unwrap();
        store.stage(&other(9)).unwrap();
        store.flush().await.unwrap();
        assert_eq!(
            read(&store),
            None,
            "a change after the save in the same batch"
        );

        store.stage(&other(10)).unwrap();
        store.stage(&save(&store)).unwrap();
        store.flush().await.unwrap();
        assert_eq!(
            read(&store),
            Some(vec![(key, sigs)]),
            "the save last in its batch"
        );

        store.commit_now(&save(&store)).unwrap();
        store.abort_import().unwrap();
        assert_eq!(read(&store), None, "an aborted import removes terminals");
    }

    #[tokio::test]
    async fn one_sync_covers_every_commit_before_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &origin()).unwrap();
        let mut last = 0;
        for serial in 1..=50 {
            last = store
                .stage(&Change {
                    serial: Some(serial),
                    ..Change::default()
                })
                .unwrap();
        }
        store.flush().await.unwrap();
        assert_eq!(store.flushed(), last);
        assert_eq!(
            store.syncs(),
            1,
            "fifty changes, one transaction and one fdatasync"
        );
        store.flush().await.unwrap();
        assert_eq!(store.syncs(), 1, "nothing new: no sync");
    }

    /// A change staged after a failed flush must never be counted as durable: the flush
    /// that failed discarded what was staged, and an empty write would otherwise "cover" it.
    #[tokio::test]
    async fn no_flush_after_a_failed_one_claims_to_cover_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &origin()).unwrap();
        store
            .stage(&Change {
                serial: Some(1),
                ..Change::default()
            })
            .unwrap();
        store.inject_flush_failure();
        assert!(store.flush().await.is_err());
        let later = store
            .stage(&Change {
                serial: Some(2),
                ..Change::default()
            })
            .unwrap();
        assert!(matches!(store.flush().await, Err(StoreError::Poisoned)));
        assert!(store.flushed() < later);
    }

    #[test]
    fn a_store_of_another_schema_version_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = Store::open(tmp.path(), &origin()).unwrap();
            let db = store.db();
            let tx = begin_write(&db, Durability::Immediate).unwrap();
            {
                let mut meta = tx.open_table(META).unwrap();
                meta.insert(SCHEMA_KEY, &99u32.to_be_bytes()[..]).unwrap();
            }
            tx.commit().unwrap();
        }
        let err = Store::open(tmp.path(), &origin()).unwrap_err();
        assert!(
            matches!(err, StoreError::Version { found: 99, .. }),
            "{err}"
        );
    }

    fn replay_rows(store: &Store) -> u64 {
        let read = store.db().begin_read().unwrap();
        read.open_table(REPLAY).unwrap().len().unwrap()
    }

    /// A store of schema 2 kept whole MACs and a replay row for every terminal (about 44
    /// bytes each once updated: 242 bytes per terminal after a million updates to a 1M
    /// fleet). It opens upgraded: prints, no empty rows, the same replays refused.
    #[tokio::test]
    async fn a_store_of_schema_2_is_upgraded_and_keeps_refusing_replays() {
        let tmp = tempfile::tempdir().unwrap();
        let (updated, idle) = (terminal("5551234"), terminal("5559876"));
        let mac = (0..32).collect::<Vec<u8>>();
        {
            let store = Store::open(tmp.path(), &origin()).unwrap();
            let p = Presence::default();
            store
                .stage(&Change {
                    put_terminals: vec![&updated, &idle],
                    put_presence: vec![(&updated.code, &p), (&idle.code, &p)],
                    ..Change::default()
                })
                .unwrap();
            store.flush().await.unwrap();
            assert_eq!(replay_rows(&store), 0, "nothing to remember: no row");
            // The rows as schema 2 wrote them.
            let db = store.db();
            let tx = begin_write(&db, Durability::Immediate).unwrap();
            {
                let mut replay = tx.open_table(REPLAY).unwrap();
                let old = |last: u64, macs: Vec<(u64, Vec<u8>)>| {
                    postcard::to_stdvec(&(last, macs)).unwrap()
                };
                let row = old(42, vec![(42, mac.clone())]);
                replay.insert("5551234", row.as_slice()).unwrap();
                replay.insert("5559876", old(0, vec![]).as_slice()).unwrap();
                let mut meta = tx.open_table(META).unwrap();
                meta.insert(SCHEMA_KEY, &2u32.to_be_bytes()[..]).unwrap();
            }
            tx.commit().unwrap();
        }
        let store = Store::open(tmp.path(), &origin()).unwrap();
        let schema = store.meta(SCHEMA_KEY).unwrap().unwrap();
        assert_eq!(decode_u32(SCHEMA_KEY, &schema).unwrap(), SCHEMA_VERSION);
        assert_eq!(replay_rows(&store), 1, "the empty row is dropped");
        let entry = store.terminal(&updated.code).unwrap().unwrap();
        assert_eq!(entry.presence.last_signed, 42);
        assert_eq!(
            entry.presence.recent_macs,
            vec![(42, crate::model::mac_print(&mac))]
        );
        let replayed = crate::replay::Freshness {
            time_signed: 42,
            mac: mac.clone(),
        };
        assert!(crate::replay::check_fresh(&entry.presence, &replayed).is_err());
        let idle = store.terminal(&idle.code).unwrap().unwrap();
        assert_eq!(idle.presence, Presence::default());
    }

    /// Regression: `serve --zone dial.exmaple` on a store made for `dial.example.` started
    /// and served every terminal under the wrong name.
    #[test]
    fn a_store_refuses_a_zone_other_than_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Store::open(tmp.path(), &origin()).unwrap());
        let typo = Name::from_ascii("dial.exmaple.").unwrap();
        let err = Store::open(tmp.path(), &typo).unwrap_err();
        assert!(matches!(err, StoreError::OtherZone { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("dial.example.") && message.contains("dial.exmaple."),
            "{message}"
        );
        // The same zone in other letters, or without the final dot, is the same zone.
        let mut bare = Name::from_ascii("Dial.Example").unwrap();
        bare.set_fqdn(true);
        drop(Store::open(tmp.path(), &bare).unwrap());
    }

    #[test]
    fn a_sled_store_of_an_earlier_release_gets_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("db"), b"").unwrap();
        std::fs::write(tmp.path().join("conf"), b"").unwrap();
        let err = Store::open(tmp.path(), &origin()).unwrap_err();
        assert!(matches!(err, StoreError::OldFormat { .. }), "{err}");
        assert!(err.to_string().contains("export"), "{err}");
    }
}
