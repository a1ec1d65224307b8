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

use super::{Directory, enrollment};
use crate::commit::Pending;
use crate::index::View;
use crate::serial::Serial;
use crate::store::StoreError;
use crate::store::replicated::{Replicated, Replicator, ViewChange};

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
