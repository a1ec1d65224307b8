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
//! | `enrollment` | key `token <id>`, `customer <kid>`, `awaiting <code>`, `owner <mid>`: tokens, customers, terminals awaiting approval, each MID's KID ([`enrollment_rows`]) | enrollments; customers and approvals at open |
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
//! # Files
//! [`open`] (the directory, the schema and its upgrades, the zone), [`rows`] (records and
//! how a [`Change`] becomes rows), [`replay_rows`], [`batch`] and [`group_commit`] (staging
//! and flushing), [`reads`] (typed reads), [`import`] and [`import_machines`] (a streamed
//! import's bookkeeping), [`snapshot`] (backups and lists), [`saved`], [`saved_sigs`] and
//! [`in_place`] (the signatures saved at a stop), and for a cluster [`replicated`] (group
//! commits as log entries, applied on every node), [`raft_log`] (the consensus log) and
//! [`replace`] (a snapshot installed in place).
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
mod enrollment_rows;
mod group_commit;
mod import;
mod import_machines;
mod in_place;
mod open;
mod raft_log;
mod reads;
mod replace;
mod replay_rows;
pub mod replicated;
mod rows;
mod saved;
mod saved_sigs;
mod snapshot;

pub use import_machines::Conflict;
pub use in_place::InPlace;
pub use saved::SavedId;

use batch::{Staged, Table, Writes};
use group_commit::GroupCommit;
pub use import::Imported;
use import::Unregistered;
use rows::{
    ColdRecord, HotRecord, apply_rows, assemble, decode, decode_row, decode_u32, encode,
    encode_change, get_decoded, key_of, machine_key,
};

/// The version of the layout above; bumped whenever a table or a value changes shape.
/// Version 2 added the `signed` table; a store of version 1 is migrated at open (the table
/// is created: nothing else changed shape). Version 4 added the `enrollment` table, whose
/// `owner` rows a store of version 3 or earlier gets from its `machines` at open.
pub const SCHEMA_VERSION: u32 = 4;

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
const ENROLLMENT: TableDefinition<&str, &[u8]> = TableDefinition::new("enrollment");

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
    /// A cluster did not commit the change (this node is not, or is no longer, the leader).
    #[error("not committed by the cluster: {0}")]
    NotReplicated(String),
    #[error(
        "an earlier flush to disk failed, so the store may not match the disk; changes are refused until the server is restarted"
    )]
    Poisoned,
}

impl StoreError {
    pub(super) fn io(e: impl std::fmt::Display) -> Self {
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
        /// How many [`Snapshotted::Enrollment`] items follow the journal.
        enrollment: usize,
        /// A cluster's log position and membership as of this snapshot (encoded by the
        /// cluster), read in the same transaction.
        cluster: Option<(Vec<u8>, Vec<u8>)>,
        /// A cluster snapshot's signatures (asked for, and the zone is signed).
        signatures: Option<SnapshotSignatures>,
    },
    Terminal(Box<Entry>),
    Delta(Delta),
    Enrollment(Enrolled),
    /// A terminal's signatures, after the enrollment items (a cluster snapshot).
    Signed(CodeKey, TerminalSigs),
}

/// The signatures a cluster's snapshot carries, so that a node installing it serves the
/// leader's: how many terminals' follow, and the static names' and the SOA's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSignatures {
    pub terminals: usize,
    pub static_sigs: Option<StoredStatics>,
    pub soa_sig: Option<(u32, Option<Sig>)>,
}

/// A row of the `enrollment` table a backup carries (`owner` rows are made again from the
/// terminals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    Token(crate::enroll::TokenId, crate::model::TokenEntry),
    Customer(Kid, crate::model::Customer),
    Awaiting(CallingCode),
}

/// One change to the store, applied atomically by [`Store::stage`] and a flush: each
/// subsystem's writes in a type of its own.
#[derive(Debug, Default)]
pub struct Change<'a> {
    pub terminals: TerminalWrites<'a>,
    pub customers: CustomerWrites<'a>,
    pub zone: ZoneWrites<'a>,
    pub dnssec: DnssecWrites<'a>,
}

/// What a change writes of the registrations and their presence.
#[derive(Debug, Default)]
pub struct TerminalWrites<'a> {
    /// New or replaced registrations.
    pub put_terminals: Vec<&'a Terminal>,
    /// Registrations removed (with their presence).
    pub remove_terminal: Option<&'a Terminal>,
    /// New presence records, by code.
    pub put_presence: Vec<(&'a CallingCode, &'a Presence)>,
    /// The registrations are part of an import not yet committed.
    pub importing: bool,
    /// Commits the import in progress: its terminals stay, the marker goes.
    pub finish_import: bool,
}

/// What a change writes of enrollment: tokens, customers, terminals awaiting approval.
#[derive(Debug, Default)]
pub struct CustomerWrites<'a> {
    /// Tokens written (`None`: removed).
    pub tokens: Vec<(
        &'a crate::enroll::TokenId,
        Option<&'a crate::model::TokenEntry>,
    )>,
    /// Customers written (`None`: back to the defaults).
    pub customers: Vec<(&'a Kid, Option<&'a crate::model::Customer>)>,
    /// Terminals that start (`true`) or stop (`false`) awaiting approval.
    pub awaiting: Vec<(&'a CallingCode, bool)>,
}

/// What a change writes of the zone: its serial, journal and static part.
#[derive(Debug, Default)]
pub struct ZoneWrites<'a> {
    /// The new serial, if the zone changed.
    pub serial: Option<u32>,
    /// The delta that describes the serial increase.
    pub journal: Option<&'a Delta>,
    /// Journal entries to forget (by sequence), beyond the history's depth.
    pub journal_drop: Vec<u64>,
    /// The fingerprint of the static zone, when it changed.
    pub zone_fingerprint: Option<&'a str>,
}

/// What a change writes of the zone's DNSSEC state.
#[derive(Debug, Default)]
pub struct DnssecWrites<'a> {
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

impl Store {
    /// Shared access to the database: held for as long as a transaction lives, so that
    /// [`Store::compact`] never runs beside one.
    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn begin_write(db: &Database, durability: Durability) -> Result<WriteTransaction, StoreError> {
    let mut tx = db.begin_write().map_err(StoreError::io)?;
    tx.set_durability(durability).map_err(StoreError::io)?;
    Ok(tx)
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
                    terminals: TerminalWrites {
                        put_terminals: vec![&t],
                        put_presence: vec![(&t.code, &p)],
                        ..Default::default()
                    },
                    zone: ZoneWrites {
                        serial: Some(7),
                        ..Default::default()
                    },
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
            dnssec: DnssecWrites {
                signatures_saved: Some(store.save_signatures([(key, sigs)].into_iter()).unwrap()),
                ..Default::default()
            },
            ..Change::default()
        };
        let other = |serial| Change {
            zone: ZoneWrites {
                serial: Some(serial),
                ..Default::default()
            },
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
                    zone: ZoneWrites {
                        serial: Some(serial),
                        ..Default::default()
                    },
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
                zone: ZoneWrites {
                    serial: Some(1),
                    ..Default::default()
                },
                ..Change::default()
            })
            .unwrap();
        store.inject_flush_failure();
        assert!(store.flush().await.is_err());
        let later = store
            .stage(&Change {
                zone: ZoneWrites {
                    serial: Some(2),
                    ..Default::default()
                },
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
                    terminals: TerminalWrites {
                        put_terminals: vec![&updated, &idle],
                        put_presence: vec![(&updated.code, &p), (&idle.code, &p)],
                        ..Default::default()
                    },
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
