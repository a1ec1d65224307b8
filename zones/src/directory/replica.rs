//! A cluster node's directory: the entries the cluster committed, applied to the store and
//! the view on every node, and a node taking over as the leader.
//!
//! ```text
//!  leader:  change ─▶ rules ─▶ stage ─▶ flush ─▶ Replicator (the log; a majority) ─┐
//!  every node, in log order: apply_replicated ─▶ rows + log position (one fdatasync)
//!                            ─▶ view (terminals, serial, journal) ─▶ NOTIFY ◀───────┘
//! ```
//!
//! The view of every node therefore moves only with what a majority holds durably, in the
//! log's order: the same serial for the same content on every node.

use std::sync::Arc;

use super::{Directory, enrollment, load};
use crate::backup::{BackupError, Header, Record};
use crate::commit::Pending;
use crate::index::View;
use crate::journal::Journal;
use crate::serial::Serial;
use crate::store::replicated::{Replicated, Replicator, ViewChange};
use crate::store::{Change, CustomerWrites, StoreError, TerminalWrites, ZoneWrites};

impl Directory {
    /// Sends every later change through `replicator` (a cluster's log): it is written, and
    /// published, only by [`Directory::apply_replicated`].
    pub fn replicate_through(&self, replicator: Arc<dyn Replicator>) {
        self.commit().store().replicate_through(replicator);
    }

    /// The store (a cluster keeps its log and its position in it there).
    pub fn store(&self) -> &crate::store::Store {
        self.commit().store()
    }

    /// Writes a committed entry (`None`: one that changes no rows) with `state`, the log
    /// position it leaves the store at, in one durable transaction, then moves the view and
    /// tells followers the serial. Blocking: call it on the blocking pool.
    pub fn apply_replicated(
        &self,
        entry: Option<&Replicated>,
        state: &[(&'static str, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let changes = self.commit().store().apply_replicated(entry, state)?;
        if changes.is_empty() {
            return Ok(());
        }
        let enrollment = changes.iter().any(|c| c.enrollment);
        let (serial, own) = {
            let mut pending = self.commit().pending();
            let mut view = self.commit().view_mut();
            for change in changes {
                apply(&mut view, change);
            }
            // A change of this node's own is still queued (its staging moved the serial
            // and the gate already); anything else moves them here.
            let own = !pending.is_idle();
            if !own {
                *pending = Pending::new(Serial(view.serial()), view.journal().next_seq());
            }
            (view.serial(), own)
        };
        if enrollment && !own {
            self.reload_gate()?;
        }
        self.commit().announce(serial);
        Ok(())
    }

    /// Makes this node ready to stage changes as the leader: the next change starts from
    /// what the log applied, and the gate (suspensions, approvals) is read again.
    pub fn take_lead(&self) -> Result<(), StoreError> {
        self.commit().resync();
        self.reload_gate()
    }

    /// Replaces everything with a backup's content, exactly (its serial and journal, unlike
    /// a restore, which moves the serial on): a node far behind takes the leader's
    /// snapshot. `state` is the log position the snapshot stands for, written in the same
    /// durable transaction; then the view is rebuilt from the store. Blocking.
    pub fn install_backup(
        &self,
        header: &Header,
        records: impl Iterator<Item = Result<Record, BackupError>>,
        state: &[(&'static str, Vec<u8>)],
    ) -> Result<(), BackupError> {
        header.check()?;
        let origin = self.zone().origin().to_ascii();
        if header.zone != origin {
            return Err(BackupError::NotABackup(format!(
                "the snapshot is of {}, this node serves {origin}",
                header.zone
            )));
        }
        let origin = self.zone().origin().clone();
        let (mut entries, mut deltas) = (Vec::new(), Vec::new());
        let (mut tokens, mut customers, mut awaiting) = (Vec::new(), Vec::new(), Vec::new());
        for record in records {
            match record? {
                Record::Terminal(t) => entries.push(t.into_entry(&origin)),
                Record::Delta(delta) => deltas.push(delta),
                Record::Token(t) => tokens.push(t),
                Record::Customer(c) => customers.push(c),
                Record::Awaiting(a) => awaiting.push(a.code),
            }
        }
        for (what, expected, found) in [
            ("terminals", header.terminals, entries.len()),
            ("journal entries", header.journal, deltas.len()),
            (
                "enrollment records",
                header.enrollment,
                tokens.len() + customers.len() + awaiting.len(),
            ),
        ] {
            if expected != found {
                return Err(BackupError::Truncated {
                    what,
                    expected,
                    found,
                });
            }
        }
        let mut changes = vec![Change {
            terminals: TerminalWrites {
                put_terminals: entries.iter().map(|e| &e.terminal).collect(),
                put_presence: entries
                    .iter()
                    .map(|e| (&e.terminal.code, &e.presence))
                    .collect(),
                ..Default::default()
            },
            zone: ZoneWrites {
                serial: Some(header.serial),
                zone_fingerprint: header.zone_fingerprint.as_deref(),
                ..Default::default()
            },
            customers: CustomerWrites {
                tokens: tokens.iter().map(|t| (&t.id, Some(&t.token))).collect(),
                customers: customers
                    .iter()
                    .map(|c| (&c.kid, Some(&c.customer)))
                    .collect(),
                awaiting: awaiting.iter().map(|code| (code, true)).collect(),
            },
            ..Change::default()
        }];
        changes.extend(deltas.iter().map(|delta| Change {
            zone: ZoneWrites {
                journal: Some(delta),
                ..Default::default()
            },
            ..Change::default()
        }));
        let store = self.commit().store();
        store.replace_all(&changes, state)?;
        let loaded = store.load()?;
        let serial = Serial(loaded.serial.unwrap_or(header.serial));
        let journal = Journal::new(self.limits().journal_depth, loaded.journal);
        let next_seq = journal.next_seq();
        let mut view = View::new(serial, journal, loaded.terminals);
        load::terminals(store, &mut view, true)?;
        {
            let mut pending = self.commit().pending();
            *self.commit().view_mut() = view;
            *pending = Pending::new(serial, next_seq);
        }
        self.reload_gate()?;
        self.commit().announce_exactly(serial.0);
        Ok(())
    }

    fn reload_gate(&self) -> Result<(), StoreError> {
        let gate = enrollment::Gate::load(self.commit().store())?;
        *self.inner.gate.write().unwrap_or_else(|e| e.into_inner()) = gate;
        Ok(())
    }
}

/// One change to the view, in the order the committer publishes its own.
fn apply(view: &mut View, change: ViewChange) {
    if change.reset_journal {
        view.clear_journal();
    }
    if let Some(serial) = change.serial {
        view.set_serial(Serial(serial));
    }
    if let Some(delta) = change.delta {
        view.push_delta(delta);
    }
    if let Some(key) = change.removed {
        view.remove(key);
    }
    for (key, hot) in change.hot {
        view.insert(key, hot);
    }
}
