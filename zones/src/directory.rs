//! The directory: registered terminals and their current addresses.
//!
//! Reads come from an in-memory [`View`] (a `RwLock`ed map, rebuilt from the store at
//! start-up). Every change takes the one writer lock, checks against the view, commits one
//! store transaction, flushes it to disk, and only then updates the view and returns; so an
//! acknowledged change is durable and visible to the very next query.
//!
//! Replay protection (RFC 8945 §5.2.3) is kept per terminal in its [`Presence`]: the newest
//! accepted Time Signed and the MACs accepted within the time window. An update signed
//! earlier than the newest one, or carrying a MAC already accepted, is [`DirectoryError::Stale`].
//! Both survive a restart, since they are committed with the update they belong to.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::identity::{CallingCode, Kid, Mid, encode_hex};
use crate::journal::{AddressChange, Delta, Journal};
use crate::key::{Algorithm, KeyError, Secret, TerminalKeyName, TsigKey};
use crate::lease::LeasePolicy;
use crate::serial::Serial;
use crate::store::{Change, Store, StoreError};
use crate::update::{self, UpdateError, UpdateMessage, ZoneContents};
use crate::zone::{NamePlace, Zone};

/// Caps on what terminals may publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest TTL of a terminal's records; larger TTLs are clamped to it.
    pub max_ttl: u32,
    /// Most addresses per family (A, AAAA) a terminal may have; more is refused.
    pub max_addresses_per_family: usize,
    /// TSIG time window in seconds (RFC 8945 "fudge"), also the replay-memory window.
    pub fudge: u16,
    /// Update leases (RFC 9664).
    pub leases: LeasePolicy,
    /// How many recent changes are kept for incremental transfers (IXFR).
    pub journal_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_ttl: 60,
            max_addresses_per_family: 8,
            fudge: 300,
            leases: LeasePolicy::default(),
            journal_depth: 1000,
        }
    }
}

/// A registered terminal: calling code, customer, machine and its TSIG key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminal {
    pub code: CallingCode,
    pub kid: Kid,
    pub mid: Mid,
    pub key: TsigKey,
    /// Unix seconds.
    pub registered_at: u64,
}

/// One family's addresses, with the RRset's TTL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressSet<T> {
    pub ttl: u32,
    pub addrs: Vec<T>,
}

impl<T> Default for AddressSet<T> {
    fn default() -> Self {
        Self {
            ttl: 0,
            addrs: Vec::new(),
        }
    }
}

/// A terminal's published addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    pub v4: AddressSet<Ipv4Addr>,
    pub v6: AddressSet<Ipv6Addr>,
}

impl Addresses {
    /// The addresses as text, for logs and listings: `192.0.2.1 2001:db8::1`.
    pub fn describe(&self) -> String {
        let v4 = self.v4.addrs.iter().map(ToString::to_string);
        let v6 = self.v6.addrs.iter().map(ToString::to_string);
        let all: Vec<String> = v4.chain(v6).collect();
        if all.is_empty() {
            "-".into()
        } else {
            all.join(" ")
        }
    }
}

/// No addresses: what an offline terminal publishes.
static OFFLINE: Addresses = Addresses {
    v4: AddressSet {
        ttl: 0,
        addrs: Vec::new(),
    },
    v6: AddressSet {
        ttl: 0,
        addrs: Vec::new(),
    },
};

/// A terminal's changing state: addresses, lease, last update, and replay memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Presence {
    pub addresses: Addresses,
    /// Unix seconds when the lease runs out; `None`: no expiry.
    pub lease_expires: Option<u64>,
    /// Unix seconds of the last accepted update.
    pub updated_at: Option<u64>,
    /// Newest Time Signed accepted from this terminal's key.
    pub last_signed: u64,
    /// MACs (hex) accepted within the time window, with their Time Signed.
    pub recent_macs: Vec<(u64, String)>,
}

impl Presence {
    /// True once the lease has run out: the terminal is offline.
    pub fn expired(&self, now: u64) -> bool {
        self.lease_expires.is_some_and(|t| t <= now)
    }

    /// The addresses to answer with at `now`: none once the lease has run out.
    pub fn live(&self, now: u64) -> &Addresses {
        if self.expired(now) {
            &OFFLINE
        } else {
            &self.addresses
        }
    }
}

/// The TSIG facts of a signed update that replay protection needs.
#[derive(Clone, Debug)]
pub struct Freshness {
    pub time_signed: u64,
    pub mac: Vec<u8>,
}

/// The most MACs remembered per key; older ones are also refused by the Time Signed order.
const MAX_RECENT_MACS: usize = 256;

/// A registered terminal and its presence.
#[derive(Clone, Debug)]
pub struct Entry {
    pub terminal: Arc<Terminal>,
    pub presence: Presence,
}

/// One terminal of a bulk import: its registration and, optionally, its addresses.
#[derive(Clone, Debug)]
pub struct Import {
    pub registration: Registration,
    pub addresses: Addresses,
}

/// What a registration asks for.
#[derive(Clone, Debug)]
pub struct Registration {
    pub code: CallingCode,
    pub kid: Kid,
    pub mid: Mid,
    pub algorithm: Algorithm,
}

/// Why a directory operation was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(
        "calling code {code} is already registered to KID {kid}; use rotate-key to issue a new key"
    )]
    CodeTaken { code: CallingCode, kid: Kid },
    #[error("KID {kid} with MID {mid} is already registered as code {code}; unregister it first")]
    MachineTaken {
        kid: Kid,
        mid: Mid,
        code: CallingCode,
    },
    #[error("calling code {0} is not registered")]
    UnknownCode(CallingCode),
    #[error("{0} appears twice in the import")]
    Duplicate(String),
    #[error(
        "update for {code} is not fresh (signed at {time_signed}, a replay or older than the last update from this key)"
    )]
    Stale { code: CallingCode, time_signed: u64 },
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of an accepted update.
#[derive(Clone, Debug)]
pub struct UpdateOutcome {
    pub code: CallingCode,
    pub addresses: Addresses,
    /// False when the update left the addresses as they were (no serial increase).
    pub changed: bool,
    pub serial: u32,
    /// The lease granted, in seconds; `None`: no expiry.
    pub lease: Option<u32>,
}

/// The in-memory state that queries read.
#[derive(Debug)]
pub struct View {
    serial: Serial,
    terminals: HashMap<CallingCode, Entry>,
    /// Key name (lower case, fully qualified) to code.
    keys: HashMap<String, CallingCode>,
    /// `<kid>/<mid>` to code.
    machines: HashMap<(Kid, Mid), CallingCode>,
    /// Recent deltas, for IXFR.
    journal: Journal,
    /// Lease ends, soonest first, so the expiry sweep touches only what expires.
    leases: BTreeSet<(u64, CallingCode)>,
}

impl View {
    pub fn serial(&self) -> u32 {
        self.serial.0
    }

    pub fn terminal(&self, code: &CallingCode) -> Option<&Entry> {
        self.terminals.get(code)
    }

    /// The terminal whose key has this name (lower case, fully qualified).
    pub fn terminal_by_key(&self, key_name: &str) -> Option<&Entry> {
        self.keys.get(key_name).and_then(|c| self.terminals.get(c))
    }

    pub fn len(&self) -> usize {
        self.terminals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terminals.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.terminals.values()
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    fn insert(&mut self, entry: Entry) {
        let t = &entry.terminal;
        self.forget_lease(&t.code);
        if let Some(end) = entry.presence.lease_expires {
            self.leases.insert((end, t.code.clone()));
        }
        self.keys.insert(t.key.name.clone(), t.code.clone());
        self.machines
            .insert((t.kid.clone(), t.mid.clone()), t.code.clone());
        self.terminals.insert(t.code.clone(), entry);
    }

    fn remove(&mut self, code: &CallingCode) {
        self.forget_lease(code);
        if let Some(entry) = self.terminals.remove(code) {
            let t = &entry.terminal;
            self.keys.remove(&t.key.name);
            self.machines.remove(&(t.kid.clone(), t.mid.clone()));
        }
    }

    fn forget_lease(&mut self, code: &CallingCode) {
        if let Some(end) = self
            .terminals
            .get(code)
            .and_then(|e| e.presence.lease_expires)
        {
            self.leases.remove(&(end, code.clone()));
        }
    }

    /// Codes whose lease ended by `now`.
    fn expired_by(&self, now: u64) -> Vec<CallingCode> {
        self.leases
            .iter()
            .take_while(|(end, _)| *end <= now)
            .map(|(_, code)| code.clone())
            .collect()
    }
}

/// The zone contents as the update engine reads them: static records plus terminals.
struct Contents<'a> {
    zone: &'a Zone,
    view: &'a View,
    now: u64,
}

impl ZoneContents for Contents<'_> {
    fn rrset(&self, name: &LowerName, rtype: RecordType) -> Vec<RData> {
        match self.zone.place(&Name::from(name.clone())) {
            NamePlace::Terminal(code) => self
                .view
                .terminal(&code)
                .map(|e| update::address_rdata(e.presence.live(self.now), rtype))
                .unwrap_or_default(),
            NamePlace::Apex if rtype == RecordType::SOA => {
                vec![self.zone.soa_record(self.view.serial()).data]
            }
            _ => self
                .zone
                .rrset(name, rtype)
                .iter()
                .map(|r| r.data.clone())
                .collect(),
        }
    }

    fn name_in_use(&self, name: &LowerName) -> bool {
        match self.zone.place(&Name::from(name.clone())) {
            NamePlace::Terminal(code) => self.view.terminal(&code).is_some(),
            NamePlace::Apex => true,
            _ => self.zone.static_name_exists(name),
        }
    }
}

/// The directory handle: cheap to clone, shared by every request.
#[derive(Clone, Debug)]
pub struct Directory {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    zone: Zone,
    limits: Limits,
    store: Store,
    view: RwLock<View>,
    writer: Mutex<()>,
    /// The current serial, for those who follow changes (NOTIFY).
    serial_tx: tokio::sync::watch::Sender<u32>,
}

impl Directory {
    /// Opens the store in `data_dir` and builds the view from it.
    pub fn open(data_dir: &Path, zone: Zone, limits: Limits) -> Result<Self, StoreError> {
        let store = Store::open(data_dir)?;
        let snapshot = store.load()?;
        let initial = Serial(zone.initial_serial());
        // A zone file whose serial is newer than the stored one (an operator's edit) wins.
        let serial = match snapshot.serial.map(Serial) {
            Some(stored) if !initial.is_newer_than(stored) => stored,
            _ => initial,
        };
        let mut view = View {
            serial,
            terminals: HashMap::new(),
            keys: HashMap::new(),
            machines: HashMap::new(),
            journal: Journal::new(limits.journal_depth, snapshot.journal),
            leases: BTreeSet::new(),
        };
        for (terminal, presence) in snapshot.terminals {
            view.insert(Entry {
                terminal: Arc::new(terminal),
                presence,
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                zone,
                limits,
                store,
                serial_tx: tokio::sync::watch::Sender::new(serial.0),
                view: RwLock::new(view),
                writer: Mutex::new(()),
            }),
        })
    }

    pub fn zone(&self) -> &Zone {
        &self.inner.zone
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Read access to the current state. Hold it briefly: writers wait for it.
    pub fn view(&self) -> RwLockReadGuard<'_, View> {
        self.inner.view.read().unwrap_or_else(|p| p.into_inner())
    }

    fn with_view_mut(&self, f: impl FnOnce(&mut View)) {
        let mut view = self.inner.view.write().unwrap_or_else(|p| p.into_inner());
        f(&mut view);
    }

    /// Registers a terminal and issues its fresh TSIG key.
    pub async fn register(&self, reg: Registration, now: u64) -> Result<Terminal, DirectoryError> {
        let imported = self
            .import(
                vec![Import {
                    registration: reg,
                    addresses: Addresses::default(),
                }],
                now,
            )
            .await?;
        Ok(imported
            .into_iter()
            .next()
            .expect("one registration, one terminal"))
    }

    /// Registers many terminals at once (each optionally with addresses), in one
    /// transaction: all of them, or none if any is refused.
    pub async fn import(
        &self,
        imports: Vec<Import>,
        now: u64,
    ) -> Result<Vec<Terminal>, DirectoryError> {
        let writer = self.inner.writer.lock().await;
        self.check_new_registrations(&imports)?;
        let mut entries = Vec::with_capacity(imports.len());
        for Import {
            registration: reg,
            addresses,
        } in imports
        {
            let terminal = Terminal {
                key: self.new_key(&reg.code, &reg.mid, &reg.kid, reg.algorithm)?,
                code: reg.code,
                kid: reg.kid,
                mid: reg.mid,
                registered_at: now,
            };
            let presence = Presence {
                updated_at: (addresses != Addresses::default()).then_some(now),
                addresses,
                ..Presence::default()
            };
            entries.push(Entry {
                terminal: Arc::new(terminal),
                presence,
            });
        }
        let changes = entries
            .iter()
            .filter(|e| e.presence.addresses != Addresses::default())
            .map(|e| AddressChange {
                code: e.terminal.code.clone(),
                old: Addresses::default(),
                new: e.presence.addresses.clone(),
            })
            .collect();
        let change = Change {
            put_terminals: entries.iter().map(|e| e.terminal.as_ref()).collect(),
            put_presence: entries
                .iter()
                .map(|e| (&e.terminal.code, &e.presence))
                .collect(),
            ..Change::default()
        };
        let terminals: Vec<Terminal> = entries
            .iter()
            .map(|e| Terminal::clone(&e.terminal))
            .collect();
        let to_insert = entries.clone();
        let serial = self.stage_bump(change, changes, move |view| {
            for entry in to_insert {
                view.insert(entry);
            }
        })?;
        self.durable(writer, Some(serial)).await?;
        Ok(terminals)
    }

    /// Refuses codes or KID/MID pairs that are taken, or repeated within `imports`.
    fn check_new_registrations(&self, imports: &[Import]) -> Result<(), DirectoryError> {
        let view = self.view();
        let mut codes = std::collections::HashSet::new();
        let mut machines = std::collections::HashSet::new();
        for Import {
            registration: reg, ..
        } in imports
        {
            if let Some(e) = view.terminal(&reg.code) {
                return Err(DirectoryError::CodeTaken {
                    code: reg.code.clone(),
                    kid: e.terminal.kid.clone(),
                });
            }
            let machine = (reg.kid.clone(), reg.mid.clone());
            if let Some(code) = view.machines.get(&machine) {
                return Err(DirectoryError::MachineTaken {
                    kid: reg.kid.clone(),
                    mid: reg.mid.clone(),
                    code: code.clone(),
                });
            }
            if !codes.insert(reg.code.clone()) {
                return Err(DirectoryError::Duplicate(format!(
                    "calling code {}",
                    reg.code
                )));
            }
            if !machines.insert(machine) {
                return Err(DirectoryError::Duplicate(format!(
                    "KID {} with MID {}",
                    reg.kid, reg.mid
                )));
            }
        }
        Ok(())
    }

    /// Removes a terminal; its name disappears from the zone.
    pub async fn unregister(&self, code: &CallingCode) -> Result<Terminal, DirectoryError> {
        let writer = self.inner.writer.lock().await;
        let now = crate::unix_now();
        let entry = self
            .view()
            .terminal(code)
            .cloned()
            .ok_or_else(|| DirectoryError::UnknownCode(code.clone()))?;
        let terminal = Terminal::clone(&entry.terminal);
        let changes = vec![AddressChange {
            code: code.clone(),
            old: entry.presence.live(now).clone(),
            new: Addresses::default(),
        }];
        let change = Change {
            remove_terminal: Some(&terminal),
            ..Change::default()
        };
        let serial = self.stage_bump(change, changes, |view| view.remove(code))?;
        self.durable(writer, Some(serial)).await?;
        Ok(terminal)
    }

    /// Issues a new secret for a terminal's key; the old secret stops working at once.
    pub async fn rotate_key(&self, code: &CallingCode) -> Result<Terminal, DirectoryError> {
        let writer = self.inner.writer.lock().await;
        let entry = self
            .view()
            .terminal(code)
            .cloned()
            .ok_or_else(|| DirectoryError::UnknownCode(code.clone()))?;
        let mut terminal = Terminal::clone(&entry.terminal);
        terminal.key.secret = Secret::generate()?;
        // Replay memory belongs to the old secret.
        let presence = Presence {
            last_signed: 0,
            recent_macs: Vec::new(),
            ..entry.presence
        };
        self.stage(&Change {
            put_terminals: vec![&terminal],
            put_presence: vec![(code, &presence)],
            ..Change::default()
        })?;
        self.with_view_mut(|view| {
            view.insert(Entry {
                terminal: Arc::new(terminal.clone()),
                presence,
            });
        });
        self.durable(writer, None).await?;
        Ok(terminal)
    }

    /// Applies an RFC 2136 update signed by the key of `code`, asking for `lease` seconds.
    pub async fn update(
        &self,
        code: &CallingCode,
        message: &UpdateMessage<'_>,
        freshness: &Freshness,
        lease: Option<u32>,
        now: u64,
    ) -> Result<UpdateOutcome, DirectoryError> {
        let writer = self.inner.writer.lock().await;
        let (entry, planned) = {
            let view = self.view();
            let entry = view
                .terminal(code)
                .cloned()
                .ok_or_else(|| DirectoryError::UnknownCode(code.clone()))?;
            check_fresh(code, &entry.presence, freshness)?;
            let contents = Contents {
                zone: &self.inner.zone,
                view: &view,
                now,
            };
            let current = entry.presence.live(now);
            let planned = update::plan(
                &self.inner.zone,
                &contents,
                code,
                current,
                message,
                &self.inner.limits,
            )?;
            (entry, planned)
        };
        // An expired terminal's stored addresses are already gone for everyone.
        let old = entry.presence.live(now).clone();
        let changed = planned != old;
        let granted = self.inner.limits.leases.grant(lease);
        let presence = Presence {
            addresses: planned,
            lease_expires: granted.map(|g| now + u64::from(g)),
            updated_at: Some(now),
            ..remember_signature(entry.presence, freshness, now, self.inner.limits.fudge)
        };
        let addresses = presence.addresses.clone();
        let change = Change {
            put_presence: vec![(code, &presence)],
            ..Change::default()
        };
        let stored = Entry {
            terminal: entry.terminal,
            presence: presence.clone(),
        };
        let serial = if changed {
            let changes = vec![AddressChange {
                code: code.clone(),
                old,
                new: addresses.clone(),
            }];
            self.stage_bump(change, changes, |view| view.insert(stored))?
        } else {
            self.stage(&change)?;
            let mut serial = 0;
            self.with_view_mut(|view| {
                serial = view.serial();
                view.insert(stored);
            });
            serial
        };
        // Group commit: the lock is released before the flush, so updates arriving
        // meanwhile stage theirs and share the next fsync.
        self.durable(writer, changed.then_some(serial)).await?;
        Ok(UpdateOutcome {
            code: code.clone(),
            addresses,
            changed,
            serial,
            lease: granted,
        })
    }

    /// Takes offline every terminal whose lease ran out by `now`, in one transaction with
    /// one serial increase; returns their codes.
    pub async fn expire(&self, now: u64) -> Result<Vec<CallingCode>, StoreError> {
        if self.view().expired_by(now).is_empty() {
            return Ok(Vec::new());
        }
        let writer = self.inner.writer.lock().await;
        let expired: Vec<(CallingCode, Addresses, Presence)> = {
            let view = self.view();
            view.expired_by(now)
                .iter()
                .filter_map(|code| view.terminal(code))
                .filter(|e| e.presence.expired(now))
                .map(|e| {
                    let presence = Presence {
                        addresses: Addresses::default(),
                        lease_expires: None,
                        ..e.presence.clone()
                    };
                    (
                        e.terminal.code.clone(),
                        e.presence.addresses.clone(),
                        presence,
                    )
                })
                .collect()
        };
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let change = Change {
            put_presence: expired.iter().map(|(c, _, p)| (c, p)).collect(),
            ..Change::default()
        };
        let changes: Vec<AddressChange> = expired
            .iter()
            .filter(|(_, old, _)| *old != Addresses::default())
            .map(|(code, old, _)| AddressChange {
                code: code.clone(),
                old: old.clone(),
                new: Addresses::default(),
            })
            .collect();
        let apply = |view: &mut View| {
            for (code, _, presence) in &expired {
                if let Some(terminal) = view.terminal(code).map(|e| e.terminal.clone()) {
                    view.insert(Entry {
                        terminal,
                        presence: presence.clone(),
                    });
                }
            }
        };
        let serial = if changes.is_empty() {
            self.stage(&change)?;
            self.with_view_mut(apply);
            None
        } else {
            Some(self.stage_bump(change, changes, apply)?)
        };
        self.durable(writer, serial).await?;
        Ok(expired.into_iter().map(|(c, _, _)| c).collect())
    }

    /// Stages a change that increases the serial, with its journal delta; then, under one
    /// write lock, moves the view to the new serial and applies `apply`. Returns the new
    /// serial. Call with the writer lock held, then [`Directory::durable`].
    fn stage_bump(
        &self,
        change: Change<'_>,
        changes: Vec<AddressChange>,
        apply: impl FnOnce(&mut View),
    ) -> Result<u32, StoreError> {
        let (from, seq, drop) = {
            let view = self.view();
            (
                view.serial,
                view.journal.next_seq(),
                view.journal.overflow_after_push(),
            )
        };
        let to = from.next();
        let delta = Delta {
            seq,
            from: from.0,
            to: to.0,
            changes,
        };
        let change = Change {
            serial: Some(to.0),
            journal: Some(&delta),
            journal_drop: drop,
            ..change
        };
        self.stage(&change)?;
        self.with_view_mut(|view| {
            view.serial = to;
            view.journal.push(delta.clone());
            apply(view);
        });
        Ok(to.0)
    }

    /// Commits one change's transaction (not yet durable).
    fn stage(&self, change: &Change<'_>) -> Result<(), StoreError> {
        self.inner.store.commit(change)
    }

    /// Releases the writer lock, then flushes: everything staged so far, this change's
    /// included, is on disk when this returns. Only then are followers told of `serial`.
    async fn durable(
        &self,
        writer: tokio::sync::MutexGuard<'_, ()>,
        serial: Option<u32>,
    ) -> Result<(), StoreError> {
        drop(writer);
        self.inner.store.flush().await?;
        if let Some(serial) = serial {
            // Flushes may finish out of order: the announced serial only moves forward.
            self.inner.serial_tx.send_if_modified(|current| {
                let newer = Serial(serial).is_newer_than(Serial(*current));
                if newer {
                    *current = serial;
                }
                newer
            });
        }
        Ok(())
    }

    /// A receiver that sees every new serial (for NOTIFY).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u32> {
        self.inner.serial_tx.subscribe()
    }

    /// Makes everything committed durable (at shutdown; every change is already flushed).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.store.flush().await
    }

    fn new_key(
        &self,
        code: &CallingCode,
        mid: &Mid,
        kid: &Kid,
        algorithm: Algorithm,
    ) -> Result<TsigKey, KeyError> {
        Ok(TsigKey {
            name: TerminalKeyName::format(code, mid, kid, self.inner.zone.origin()),
            algorithm,
            secret: Secret::generate()?,
        })
    }
}

/// RFC 8945 §5.2.3: refuse messages signed before the newest accepted one, and replays.
fn check_fresh(
    code: &CallingCode,
    presence: &Presence,
    freshness: &Freshness,
) -> Result<(), DirectoryError> {
    let mac = encode_hex(&freshness.mac);
    let replayed = presence.recent_macs.iter().any(|(_, m)| *m == mac);
    if freshness.time_signed < presence.last_signed || replayed {
        return Err(DirectoryError::Stale {
            code: code.clone(),
            time_signed: freshness.time_signed,
        });
    }
    Ok(())
}

/// Adds an accepted signature to the replay memory, forgetting those outside the window.
fn remember_signature(
    mut presence: Presence,
    freshness: &Freshness,
    now: u64,
    fudge: u16,
) -> Presence {
    let oldest_valid = now.saturating_sub(u64::from(fudge));
    presence.recent_macs.retain(|(t, _)| *t >= oldest_valid);
    presence
        .recent_macs
        .push((freshness.time_signed, encode_hex(&freshness.mac)));
    if presence.recent_macs.len() > MAX_RECENT_MACS {
        let excess = presence.recent_macs.len() - MAX_RECENT_MACS;
        presence.recent_macs.drain(..excess);
    }
    presence.last_signed = presence.last_signed.max(freshness.time_signed);
    presence
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{DNSClass, Record};

    use super::*;
    use crate::update::ZoneSection;

    fn registration(code: &str, kid: &str, mid: &str) -> Registration {
        Registration {
            code: code.parse().unwrap(),
            kid: kid.parse().unwrap(),
            mid: mid.parse().unwrap(),
            algorithm: Algorithm::HmacSha256,
        }
    }

    fn open(dir: &Path) -> Directory {
        Directory::open(dir, Zone::embedded_default(), Limits::default()).unwrap()
    }

    fn set_a(code: &str, ip: [u8; 4]) -> (Vec<ZoneSection>, Vec<Record>) {
        let zone = vec![ZoneSection {
            name: Name::from_ascii("dial.example.").unwrap(),
            rtype: RecordType::SOA,
            class: DNSClass::IN,
        }];
        let owner = Name::from_ascii(format!("{code}.dial.example.")).unwrap();
        let mut delete = Record::update0(owner.clone(), 0, RecordType::A);
        delete.dns_class = DNSClass::ANY;
        let add = Record::from_rdata(owner, 30, RData::A(A::from(Ipv4Addr::from(ip))));
        (zone, vec![delete, add])
    }

    async fn update_a(
        dir: &Directory,
        code: &str,
        ip: [u8; 4],
        time: u64,
        mac: u8,
    ) -> Result<UpdateOutcome, DirectoryError> {
        let (zone, updates) = set_a(code, ip);
        let message = UpdateMessage {
            zone: &zone,
            prerequisites: &[],
            updates: &updates,
        };
        let freshness = Freshness {
            time_signed: time,
            mac: vec![mac; 32],
        };
        dir.update(&code.parse().unwrap(), &message, &freshness, None, time)
            .await
    }

    #[tokio::test]
    async fn registration_survives_reopen_and_refuses_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let t = dir
            .register(registration("5551234", "acme-0042", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        assert_eq!(
            t.key.name,
            "5551234.3f9a0c1d22e4b7a8.acme-0042.key.dial.example."
        );
        let again = dir
            .register(registration("5551234", "other", "3f9a0c1d22e4b7a9"), 2)
            .await;
        assert!(matches!(again, Err(DirectoryError::CodeTaken { .. })));
        let same_machine = dir
            .register(registration("5559999", "acme-0042", "3f9a0c1d22e4b7a8"), 2)
            .await;
        assert!(matches!(
            same_machine,
            Err(DirectoryError::MachineTaken { .. })
        ));
        let serial = dir.view().serial();
        drop(dir);
        let dir = open(tmp.path());
        let view = dir.view();
        assert_eq!(view.serial(), serial);
        let entry = view.terminal_by_key(&t.key.name).unwrap();
        assert_eq!(*entry.terminal, t);
    }

    #[tokio::test]
    async fn updates_bump_the_serial_only_when_something_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        let s0 = dir.view().serial();
        let first = update_a(&dir, "5551234", [192, 0, 2, 1], 100, 1)
            .await
            .unwrap();
        assert!(first.changed);
        assert_eq!(first.serial, s0 + 1);
        let same = update_a(&dir, "5551234", [192, 0, 2, 1], 101, 2)
            .await
            .unwrap();
        assert!(!same.changed);
        assert_eq!(same.serial, s0 + 1);
        drop(dir);
        let dir = open(tmp.path());
        let view = dir.view();
        let entry = view.terminal(&"5551234".parse().unwrap()).unwrap();
        assert_eq!(
            entry.presence.addresses.v4.addrs,
            vec![Ipv4Addr::new(192, 0, 2, 1)]
        );
        assert_eq!(entry.presence.updated_at, Some(101));
    }

    #[tokio::test]
    async fn replays_and_older_signatures_are_refused_even_after_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        update_a(&dir, "5551234", [192, 0, 2, 1], 100, 1)
            .await
            .unwrap();
        let replay = update_a(&dir, "5551234", [192, 0, 2, 1], 100, 1).await;
        assert!(matches!(replay, Err(DirectoryError::Stale { .. })));
        let older = update_a(&dir, "5551234", [192, 0, 2, 9], 99, 3).await;
        assert!(matches!(older, Err(DirectoryError::Stale { .. })));
        drop(dir);
        let dir = open(tmp.path());
        let replay = update_a(&dir, "5551234", [192, 0, 2, 1], 100, 1).await;
        assert!(matches!(replay, Err(DirectoryError::Stale { .. })));
        // Same second, different message: accepted.
        assert!(
            update_a(&dir, "5551234", [192, 0, 2, 2], 100, 4)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn refused_updates_change_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        dir.register(registration("5559999", "acme", "3f9a0c1d22e4b7a9"), 1)
            .await
            .unwrap();
        update_a(&dir, "5551234", [192, 0, 2, 1], 100, 1)
            .await
            .unwrap();
        let serial = dir.view().serial();
        // The key of 5551234 tries to write 5559999's name.
        let (zone, updates) = set_a("5559999", [192, 0, 2, 66]);
        let message = UpdateMessage {
            zone: &zone,
            prerequisites: &[],
            updates: &updates,
        };
        let freshness = Freshness {
            time_signed: 101,
            mac: vec![9; 32],
        };
        let err = dir
            .update(&"5551234".parse().unwrap(), &message, &freshness, None, 101)
            .await;
        assert!(matches!(
            err,
            Err(DirectoryError::Update(UpdateError::Refused(_)))
        ));
        let view = dir.view();
        assert_eq!(view.serial(), serial);
        assert!(
            view.terminal(&"5559999".parse().unwrap())
                .unwrap()
                .presence
                .addresses
                .v4
                .addrs
                .is_empty()
        );
    }

    #[tokio::test]
    async fn leases_expire_to_offline_and_refreshes_keep_the_serial() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let code: CallingCode = "5551234".parse().unwrap();
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        let (zone, updates) = set_a("5551234", [192, 0, 2, 1]);
        let message = UpdateMessage {
            zone: &zone,
            prerequisites: &[],
            updates: &updates,
        };
        let fresh = |t: u64, m: u8| Freshness {
            time_signed: t,
            mac: vec![m; 32],
        };
        let first = dir
            .update(&code, &message, &fresh(1000, 1), Some(5), 1000)
            .await
            .unwrap();
        assert_eq!(first.lease, Some(60), "raised to the minimum");
        // A refresh that changes nothing extends the lease without a serial increase.
        let refresh = dir
            .update(&code, &message, &fresh(1050, 2), Some(60), 1050)
            .await
            .unwrap();
        assert!(!refresh.changed);
        assert_eq!(refresh.serial, first.serial);
        assert!(!dir.view().terminal(&code).unwrap().presence.expired(1100));
        assert!(dir.expire(1100).await.unwrap().is_empty());
        // Past the lease: offline, one serial increase, addresses gone from the store too.
        assert!(dir.view().terminal(&code).unwrap().presence.expired(1110));
        assert_eq!(dir.expire(1110).await.unwrap(), vec![code.clone()]);
        assert_eq!(dir.view().serial(), first.serial + 1);
        drop(dir);
        let dir = open(tmp.path());
        let view = dir.view();
        let entry = view.terminal(&code).unwrap();
        assert!(entry.presence.addresses.v4.addrs.is_empty());
        assert_eq!(entry.presence.lease_expires, None);
    }

    #[tokio::test]
    async fn unregister_and_rotate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let t = dir
            .register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
            .await
            .unwrap();
        let rotated = dir.rotate_key(&t.code).await.unwrap();
        assert_eq!(rotated.key.name, t.key.name);
        assert_ne!(rotated.key.secret, t.key.secret);
        dir.unregister(&t.code).await.unwrap();
        assert!(dir.view().terminal(&t.code).is_none());
        assert!(dir.view().terminal_by_key(&t.key.name).is_none());
        assert!(matches!(
            dir.unregister(&t.code).await,
            Err(DirectoryError::UnknownCode(_))
        ));
        // The machine can register again once unregistered.
        dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 2)
            .await
            .unwrap();
    }
}
