//! Group commits replicated by a cluster: what one flush writes, encoded as one log entry;
//! written on every node in one durable transaction with the log position it came from; and
//! what it changes in the view.
//!
//! ```text
//!  leader:   Store::flush ─▶ Replicated::encode(batch) ─▶ Replicator (consensus: a majority
//!            holds it durably) ─▶ applied here ─▶ the flush returns ─▶ acknowledged
//!  every node, in log order: Store::apply_replicated ─▶ rows + log position, one fdatasync
//!            ─▶ ViewChange (removed, hot rows, serial, journal delta) ─▶ the view
//! ```
//!
//! The entry holds rows, not requests: nodes never run the rules again (a registration's
//! random key, a signature's time), so every node's store holds exactly what the leader
//! staged.

use std::future::Future;
use std::pin::Pin;

use super::*;

/// The `meta` record of the log position the store's state has applied.
pub const APPLIED_KEY: &str = "raft_applied";
/// The `meta` record of the cluster's membership as of that position.
pub const MEMBERSHIP_KEY: &str = "raft_membership";

/// One group commit as the cluster's log carries it: the rows it writes, encoded. It holds
/// terminals' secrets: [`std::fmt::Debug`] shows its size only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicated(Vec<u8>);

impl std::fmt::Debug for Replicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replicated({} bytes)", self.0.len())
    }
}

/// What waits for a replicated entry.
pub type Replicating<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Replicates group commits: the store's flushes go through it once it is set.
pub trait Replicator: Send + Sync + std::fmt::Debug {
    /// Returns once `entry` is held durably by a majority and applied on this node
    /// ([`Store::apply_replicated`]); an error when it is not known to be (this node is not
    /// the leader, or lost the leadership meanwhile).
    fn replicate(&self, entry: Replicated) -> Replicating<'_>;
}

/// Signs the SOA at a serial, in a signed zone's leader: `None` when it cannot (the
/// signatures are not in force yet; the SOA is then signed where it is served).
pub struct SoaSealer(pub Box<dyn Fn(u32) -> Option<Sig> + Send + Sync>);

impl std::fmt::Debug for SoaSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SoaSealer")
    }
}

/// The SOA's signature at the serial `batch` leaves the zone at, as a change to append to
/// it (`None` when it does not move the serial): every node serves the signature the
/// leader made, so that secondaries find the same SOA RRSIG whichever node they ask.
pub(super) fn seal(sealer: &SoaSealer, batch: &[Writes]) -> Result<Option<Writes>, StoreError> {
    let serial = batch
        .iter()
        .rev()
        .find_map(|w| w.meta.iter().find(|(k, _)| *k == SERIAL_KEY))
        .map(|(k, v)| decode_u32(k, v))
        .transpose()?;
    let Some(sig) = serial.and_then(|serial| Some((serial, (sealer.0)(serial)?))) else {
        return Ok(None);
    };
    Ok(Some(Writes {
        meta: vec![(SOA_SIG_KEY, encode(&(sig.0, Some(sig.1)))?)],
        ..Writes::default()
    }))
}

/// [`Writes`] as the log carries it (`meta` keys as text).
#[derive(Serialize, Deserialize)]
struct Wire {
    meta: Vec<(String, Vec<u8>)>,
    meta_remove: Vec<String>,
    cold: Vec<(String, Vec<u8>)>,
    hot: Vec<(String, Vec<u8>)>,
    replay: Vec<(String, Option<Vec<u8>>)>,
    remove: Option<String>,
    machines_put: Vec<(String, String)>,
    machines_remove: Vec<String>,
    import_machines: Vec<(String, String)>,
    importing: Vec<String>,
    finish_import: bool,
    journal: Option<(u64, Vec<u8>)>,
    journal_drop: Vec<u64>,
    signed: Vec<(String, Option<Vec<u8>>)>,
    enrollment: Vec<(String, Option<Vec<u8>>)>,
}

/// Every `meta` key a change may write.
const META_KEYS: [&str; 10] = [
    SERIAL_KEY,
    ZONE_KEY,
    IMPORT_KEY,
    DNSSEC_KEYS_KEY,
    UNSIGNED_KEY,
    STATIC_SIGS_KEY,
    SOA_SIG_KEY,
    ORIGIN_KEY,
    SCHEMA_KEY,
    import_machines::BATCHES_KEY,
];

fn static_key(key: &str) -> Result<&'static str, StoreError> {
    META_KEYS
        .iter()
        .find(|k| **k == key)
        .copied()
        .ok_or_else(|| StoreError::Corrupt {
            key: key.into(),
            message: "a replicated entry writes an unknown meta record".into(),
        })
}

impl Replicated {
    /// A batch of staged changes as one entry. A saved copy of the signatures is a node's
    /// own (written at its stop), never replicated.
    pub(super) fn encode<'a>(batch: impl Iterator<Item = &'a Writes>) -> Result<Self, StoreError> {
        let wire: Vec<Wire> = batch
            .map(|w| Wire {
                meta: w
                    .meta
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                meta_remove: w.meta_remove.iter().map(|k| (*k).to_owned()).collect(),
                cold: w.cold.clone(),
                hot: w.hot.clone(),
                replay: w.replay.clone(),
                remove: w.remove.clone(),
                machines_put: w.machines_put.clone(),
                machines_remove: w.machines_remove.clone(),
                import_machines: w.import_machines.clone(),
                importing: w.importing.clone(),
                finish_import: w.finish_import,
                journal: w.journal.clone(),
                journal_drop: w.journal_drop.clone(),
                signed: w.signed.clone(),
                enrollment: w.enrollment.clone(),
            })
            .collect();
        encode(&wire).map(Self)
    }

    fn decode(&self) -> Result<Vec<Writes>, StoreError> {
        let wire: Vec<Wire> = decode("replicated entry", &self.0)?;
        wire.into_iter()
            .map(|w| {
                Ok(Writes {
                    meta: w
                        .meta
                        .into_iter()
                        .map(|(k, v)| Ok((static_key(&k)?, v)))
                        .collect::<Result<_, StoreError>>()?,
                    meta_remove: w
                        .meta_remove
                        .iter()
                        .map(|k| static_key(k))
                        .collect::<Result<_, _>>()?,
                    cold: w.cold,
                    hot: w.hot,
                    replay: w.replay,
                    remove: w.remove,
                    machines_put: w.machines_put,
                    machines_remove: w.machines_remove,
                    import_machines: w.import_machines,
                    importing: w.importing,
                    finish_import: w.finish_import,
                    journal: w.journal,
                    journal_drop: w.journal_drop,
                    signatures_saved: None,
                    signed: w.signed,
                    enrollment: w.enrollment,
                })
            })
            .collect()
    }

    /// The encoded size, in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What one replicated change does to the view, in the order the committer publishes a
/// change of its own: the journal, the serial, then the terminals.
#[derive(Debug, Default)]
pub struct ViewChange {
    /// The journal was emptied (a serial move with no delta: secondaries take the whole zone).
    pub reset_journal: bool,
    pub serial: Option<u32>,
    pub delta: Option<Delta>,
    /// A terminal removed (before the new rows below).
    pub removed: Option<CodeKey>,
    /// Terminals' new published state.
    pub hot: Vec<(CodeKey, Hot)>,
    /// Tokens, customers or approvals changed.
    pub enrollment: bool,
    /// Terminals' signatures: each key, what the store held before, and what it holds now
    /// (`None`: it left the signed zone).
    pub signed: Vec<(CodeKey, Option<TerminalSigs>, Option<TerminalSigs>)>,
    /// The static names' signatures, when they were made again.
    pub static_sigs: Option<StoredStatics>,
    /// The zone's keys, when they changed.
    pub zone_keys: Option<Vec<ZoneKey>>,
    /// The SOA's signature made at a serial.
    pub soa_sig: Option<(u32, Option<Sig>)>,
}

impl ViewChange {
    /// True when it changes the signed zone.
    pub fn signs(&self) -> bool {
        !self.signed.is_empty() || self.static_sigs.is_some() || self.zone_keys.is_some()
    }
}

fn code_key(code: &str) -> Result<CodeKey, StoreError> {
    CodeKey::from_digits(code.as_bytes()).ok_or_else(|| StoreError::Corrupt {
        key: code.into(),
        message: "not a calling code".into(),
    })
}

fn meta_of<T: DeserializeOwned>(w: &Writes, key: &str) -> Result<Option<T>, StoreError> {
    w.meta
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(k, v)| decode(k, v))
        .transpose()
}

impl Writes {
    /// What it changes in the view; `signed_now` holds each terminal's signatures as the
    /// store has them before it (read on first use), and is moved on by it.
    fn view_change(
        &self,
        signed_now: &mut std::collections::HashMap<String, Option<TerminalSigs>>,
        read: &mut impl FnMut(&str) -> Result<Option<TerminalSigs>, StoreError>,
    ) -> Result<ViewChange, StoreError> {
        let mut signed = Vec::with_capacity(self.signed.len());
        for (code, value) in &self.signed {
            let after: Option<TerminalSigs> =
                value.as_ref().map(|v| decode(code, v)).transpose()?;
            let before = match signed_now.get(code) {
                Some(held) => *held,
                None => read(code)?,
            };
            signed_now.insert(code.clone(), after);
            signed.push((code_key(code)?, before, after));
        }
        let serial = self
            .meta
            .iter()
            .find(|(k, _)| *k == SERIAL_KEY)
            .map(|(k, v)| decode_u32(k, v))
            .transpose()?;
        let delta = self
            .journal
            .as_ref()
            .map(|(_, v)| decode::<Delta>("journal", v))
            .transpose()?;
        let hot = self
            .hot
            .iter()
            .map(|(code, v)| Ok((code_key(code)?, Hot::from(decode::<HotRecord>(code, v)?))))
            .collect::<Result<_, StoreError>>()?;
        Ok(ViewChange {
            reset_journal: serial.is_some() && delta.is_none(),
            serial,
            delta,
            removed: self.remove.as_deref().map(code_key).transpose()?,
            hot,
            enrollment: !self.enrollment.is_empty(),
            signed,
            static_sigs: meta_of(self, STATIC_SIGS_KEY)?,
            zone_keys: meta_of(self, DNSSEC_KEYS_KEY)?,
            soa_sig: meta_of(self, SOA_SIG_KEY)?,
        })
    }
}

impl Store {
    /// Sends every later flush through `replicator` instead of writing it here: the rows
    /// are written by [`Store::apply_replicated`] once the cluster has committed them.
    pub fn replicate_through(&self, replicator: Arc<dyn Replicator>) {
        let _ = self.durability.replicator.set(replicator);
    }

    /// Has every replicated batch that moves the serial carry the SOA's signature at it,
    /// made by `sealer` (a signed zone's leader).
    pub fn seal_with(&self, sealer: SoaSealer) {
        let _ = self.durability.soa_sealer.set(sealer);
    }

    /// Whether flushes go through a replicator.
    pub fn is_replicated(&self) -> bool {
        self.durability.replicator.get().is_some()
    }

    /// Writes a committed entry (`None`: one that changes no rows, such as a membership
    /// change) and `state`, the log position it leaves the store at, in one transaction;
    /// returns what the entry changes in the view.
    ///
    /// The transaction is not synced: the entry is durable already, in the log of this node
    /// and of a majority. After a crash the store opens at its last synced transaction (the
    /// next log append syncs every one before it), with the position written in that same
    /// transaction, and the entries after it are applied again from the log.
    pub fn apply_replicated(
        &self,
        entry: Option<&Replicated>,
        state: &[(&'static str, Vec<u8>)],
    ) -> Result<Vec<ViewChange>, StoreError> {
        let mut batch = match entry {
            Some(entry) => entry.decode()?,
            None => Vec::new(),
        };
        batch.push(Writes {
            meta: state.to_vec(),
            ..Writes::default()
        });
        let db = self.db();
        let tx = begin_write(&db, Durability::None)?;
        let changes = {
            // What each terminal's signatures were, read before the entry replaces them.
            let table = tx.open_table(SIGNED).map_err(StoreError::io)?;
            let mut read = |code: &str| -> Result<Option<TerminalSigs>, StoreError> {
                let row = table.get(code).map_err(StoreError::io)?;
                row.map(|v| decode(code, v.value())).transpose()
            };
            let mut signed_now = std::collections::HashMap::new();
            batch
                .iter()
                .map(|w| w.view_change(&mut signed_now, &mut read))
                .collect::<Result<Vec<_>, _>>()?
        };
        group_commit::apply(&tx, &batch)?;
        tx.commit().map_err(StoreError::io)?;
        Ok(changes)
    }

    /// A record the cluster keeps in `meta` ([`APPLIED_KEY`], [`MEMBERSHIP_KEY`]).
    pub fn cluster_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta(key)
    }
}
