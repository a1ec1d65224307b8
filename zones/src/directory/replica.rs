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

use super::{Directory, enrollment, load, registry};
use crate::backup::{BackupError, Header, Record};
use crate::commit::Pending;
use crate::dnssec::SignedDelta;
use crate::identity::CodeKey;
use crate::index::View;
use crate::journal::Journal;
use crate::restore::head_change;
use crate::serial::Serial;
use crate::store::replicated::{Replicated, Replicator, ViewChange};
use crate::store::{Change, DnssecWrites, StoreError, ZoneWrites};

impl Directory {
    /// Sends every later change through `replicator` (a cluster's log): it is written, and
    /// published, only by [`Directory::apply_replicated`].
    pub fn replicate_through(&self, replicator: Arc<dyn Replicator>) {
        self.seal_replicated();
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
            // A change of this node's own is still queued (its staging moved the serial,
            // the gate and the signing state already); anything else moves them here.
            let own = !pending.is_idle();
            for change in changes {
                let signed = match view.signed() {
                    Some(published) if change.signs() => {
                        Some(self.follow_signed(&change, published, !own)?)
                    }
                    _ => None,
                };
                let soa = change.soa_sig;
                apply(&mut view, change, signed);
                if let (Some((at, Some(sig))), Some(published)) = (soa, view.signed()) {
                    if at == view.serial() {
                        published.keep_soa_signature(at, sig);
                    }
                }
            }
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
    /// what the log applied, and the gate (suspensions, approvals) is read again. A signed
    /// zone's signing state follows the log (see [`crate::dnssec::Staging::follow`]); after
    /// changes of this node's own that the cluster did not commit, it moved with them, and
    /// is built again from the store.
    /// `now`: Unix seconds.
    pub fn take_lead(&self, now: u64) -> Result<(), StoreError> {
        self.commit().resync();
        if self.commit().take_lost_staged() {
            let mut view = self.commit().view_mut();
            if let Some(signing) = self.signing_from_store(&view, now)? {
                tracing::info!("the signing state is built again from the store");
                self.install(signing, &mut view);
            }
        }
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
        now: u64,
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
        let mut signed = Vec::new();
        for record in records {
            match record? {
                Record::Terminal(t) => entries.push(t.into_entry(&origin)),
                Record::Delta(delta) => deltas.push(delta),
                Record::Token(t) => tokens.push(t),
                Record::Customer(c) => customers.push(c),
                Record::Awaiting(a) => awaiting.push(a.code),
                Record::Signature(r) => signed.push((CodeKey::from(&r.code), Some(r.sigs))),
            }
        }
        if signed.len() != header.signatures.as_ref().map_or(0, |s| s.terminals) {
            return Err(BackupError::NotABackup(format!(
                "the snapshot holds {} terminals' signatures, its header counts {}",
                signed.len(),
                header.signatures.as_ref().map_or(0, |s| s.terminals)
            )));
        }
        header.check_counts(
            entries.len(),
            deltas.len(),
            tokens.len() + customers.len() + awaiting.len(),
        )?;
        let keys = header
            .dnssec_keys
            .iter()
            .map(|k| k.to_key())
            .collect::<Result<Vec<_>, _>>()?;
        let mut changes = vec![
            registry::registrations_change(&entries, false),
            head_change(header, header.serial, &keys, &tokens, &customers, &awaiting),
        ];
        if let Some(signatures) = &header.signatures {
            changes.push(Change {
                dnssec: DnssecWrites {
                    signed: &signed,
                    static_sigs: signatures.static_sigs.clone(),
                    soa_sig: signatures.soa_sig,
                    ..Default::default()
                },
                ..Change::default()
            });
        }
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
        if let Some(signing) = self.signing_from_store(&view, now)? {
            self.install(signing, &mut view);
        }
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

/// One change to the view, with its signatures (`signed`, a signed zone), in the order
/// the committer publishes its own.
fn apply(view: &mut View, change: ViewChange, signed: Option<SignedDelta>) {
    if change.reset_journal {
        view.clear_journal();
    }
    if let Some(serial) = change.serial {
        view.set_serial(Serial(serial));
    }
    if let Some(delta) = change.delta {
        view.push_delta(delta);
    }
    if let Some(signed) = signed {
        let serial = view.serial();
        view.apply_signed(signed, serial);
    }
    if let Some(key) = change.removed {
        view.remove(key);
    }
    for (key, hot) in change.hot {
        view.insert(key, hot);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::directory::tests::{NOW, registration, update_a};
    use crate::store::replicated::{APPLIED_KEY, Replicating};
    use crate::{DirectoryError, Limits, Zone};

    /// A log that every node applies at once, in order; or refuses every entry (a node
    /// that lost the leadership).
    #[derive(Debug, Default)]
    struct Log {
        nodes: OnceLock<Vec<Directory>>,
        refuse: AtomicBool,
        index: AtomicU64,
    }

    impl Replicator for Log {
        fn replicate(&self, entry: Replicated) -> Replicating<'_> {
            Box::pin(async move {
                if self.refuse.load(Ordering::SeqCst) {
                    return Err("not the leader".into());
                }
                let index = self.index.fetch_add(1, Ordering::SeqCst) + 1;
                let state = [(APPLIED_KEY, index.to_be_bytes().to_vec())];
                for node in self.nodes.get().unwrap() {
                    node.apply_replicated(Some(&entry), &state)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        }
    }

    fn open(dir: &std::path::Path) -> Directory {
        Directory::open(dir, Zone::embedded_default(), Limits::default()).unwrap()
    }

    fn cluster(nodes: &[&Directory]) -> Arc<Log> {
        let log = Arc::new(Log::default());
        log.nodes
            .set(nodes.iter().map(|d| (*d).clone()).collect())
            .unwrap();
        log
    }

    const CODE: &str = "5551234";

    /// Two nodes, `a` leading through `log`, with one terminal registered and updated.
    async fn two_nodes() -> ([tempfile::TempDir; 2], Directory, Directory, Arc<Log>) {
        let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (open(ta.path()), open(tb.path()));
        let log = cluster(&[&a, &b]);
        a.replicate_through(log.clone());
        a.register(registration(CODE, "acme", "001122334455"), NOW)
            .await
            .unwrap();
        update_a(&a, CODE, [192, 0, 2, 1], 10, 1).await.unwrap();
        ([ta, tb], a, b, log)
    }

    fn addresses(dir: &Directory) -> Option<Vec<String>> {
        let view = dir.view();
        let hot = view.terminal(&CODE.parse().unwrap())?;
        Some(
            hot.addresses
                .v4
                .addrs
                .iter()
                .map(ToString::to_string)
                .collect(),
        )
    }

    #[tokio::test]
    async fn every_node_applies_the_leaders_changes_to_the_same_view_and_store() {
        let (_dirs, a, b, _log) = two_nodes().await;
        assert_eq!(addresses(&b), Some(vec!["192.0.2.1".to_owned()]));
        assert_eq!(a.view().serial(), b.view().serial());
        assert_eq!(
            a.view().journal().seqs(),
            b.view().journal().seqs(),
            "the same journal"
        );
        let code = CODE.parse().unwrap();
        assert_eq!(
            a.store().key(&code).unwrap().map(|k| k.secret),
            b.store().key(&code).unwrap().map(|k| k.secret),
            "the same key"
        );

        // Node b takes over: its next change follows on from the log.
        let serial = b.view().serial();
        b.take_lead(NOW).unwrap();
        let log = cluster(&[&b, &a]);
        b.replicate_through(log);
        update_a(&b, CODE, [192, 0, 2, 2], 11, 2).await.unwrap();
        assert_eq!(b.view().serial(), serial + 1);
        assert_eq!(addresses(&a), Some(vec!["192.0.2.2".to_owned()]));
        assert_eq!(a.view().serial(), b.view().serial());
    }

    #[tokio::test]
    async fn a_change_the_cluster_did_not_commit_is_refused_and_forgotten() {
        let (_dirs, a, b, log) = two_nodes().await;
        let serial = a.view().serial();

        log.refuse.store(true, Ordering::SeqCst);
        let refused = update_a(&a, CODE, [192, 0, 2, 9], 11, 2).await;
        assert!(
            matches!(
                refused,
                Err(DirectoryError::Store(StoreError::NotReplicated(_)))
            ),
            "{refused:?}"
        );
        for node in [&a, &b] {
            assert_eq!(addresses(node), Some(vec!["192.0.2.1".to_owned()]));
            assert_eq!(node.view().serial(), serial);
        }
        let stored = a.terminal(&CODE.parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            stored.presence.addresses.v4.addrs.len(),
            1,
            "the store reads what was committed"
        );

        // Not poisoned: the next change, committed, follows on from the last one.
        log.refuse.store(false, Ordering::SeqCst);
        update_a(&a, CODE, [192, 0, 2, 3], 12, 3).await.unwrap();
        assert_eq!(a.view().serial(), serial + 1);
        assert_eq!(addresses(&b), Some(vec!["192.0.2.3".to_owned()]));
    }

    /// Unix seconds for a signed zone's tests.
    const T: u64 = 1_800_000_000;

    fn open_signed(dir: &std::path::Path) -> Directory {
        Directory::open_signed(dir, Zone::embedded_default(), Limits::default(), T).unwrap()
    }

    /// `b` serves exactly the signed zone `a` does: the serial, the keys, every terminal's
    /// signatures, the NSEC3 chain, the static names' and the SOA's signatures.
    fn same_signed_zone(a: &Directory, b: &Directory, codes: &[String]) {
        let (va, vb) = (a.view(), b.view());
        assert_eq!(va.serial(), vb.serial(), "the serial");
        let (sa, sb) = (va.signed().unwrap(), vb.signed().unwrap());
        assert_eq!(sa.signer().key_tag(), sb.signer().key_tag(), "the key");
        let zone = a.zone();
        assert_eq!(
            sa.nsec3_chain(&zone),
            sb.nsec3_chain(&zone),
            "the NSEC3 chain"
        );
        for code in codes {
            let key = CodeKey::from(&code.parse::<crate::identity::CallingCode>().unwrap());
            assert_eq!(sa.terminal(key), sb.terminal(key), "{code}'s signatures");
        }
        assert_eq!(
            sa.signed_statics(),
            sb.signed_statics(),
            "the static names'"
        );
        let soa = sa.soa_signature_at(va.serial());
        assert!(
            soa.is_some(),
            "the leader signed its SOA at {}",
            va.serial()
        );
        assert_eq!(soa, sb.soa_signature_at(vb.serial()), "the SOA's signature");
    }

    #[tokio::test]
    async fn a_signed_zone_is_the_leaders_on_every_node_and_after_a_take_over() {
        let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = open_signed(ta.path());
        a.register(registration(CODE, "acme", "001122334455"), T)
            .await
            .unwrap();
        update_a(&a, CODE, [192, 0, 2, 1], T, 1).await.unwrap();
        // `b`, with a key of its own, takes `a`'s snapshot, as a node added to a cluster
        // does: then `a`'s keys and signatures.
        let b = open_signed(tb.path());
        let mut body = Vec::new();
        crate::backup::write_lines(&a, true, &mut body).unwrap();
        let (header, records) = crate::backup::read_lines(&body[..]).unwrap();
        assert!(
            header.signatures.is_some(),
            "the snapshot carries signatures"
        );
        let state = [(APPLIED_KEY, 0u64.to_be_bytes().to_vec())];
        b.install_backup(&header, records, &state, T).unwrap();
        let mut codes = vec![CODE.to_owned()];
        same_signed_zone(&a, &b, &codes);

        let log = cluster(&[&a, &b]);
        a.replicate_through(log.clone());
        // Terminals join the chain (their neighbours' NSEC3s are signed again), change
        // address, and leave it.
        for k in 0..40u8 {
            let code = format!("55510{k:02}");
            a.register(
                registration(&code, "acme", &format!("0011223344{k:02x}")),
                T,
            )
            .await
            .unwrap();
            update_a(&a, &code, [192, 0, 2, k], T + 1, 2).await.unwrap();
            codes.push(code);
        }
        update_a(&a, CODE, [192, 0, 2, 200], T + 2, 3)
            .await
            .unwrap();
        a.unregister(&"5551007".parse().unwrap(), T + 3)
            .await
            .unwrap();
        same_signed_zone(&a, &b, &codes);
        // `a` loses the lead with changes staged: they moved `a`'s signing state, and are
        // never committed.
        log.refuse.store(true, Ordering::SeqCst);
        update_a(&a, "5551010", [203, 0, 113, 9], T + 3, 9)
            .await
            .expect_err("not committed");
        a.unregister(&"5551011".parse().unwrap(), T + 3)
            .await
            .expect_err("not committed");
        log.refuse.store(false, Ordering::SeqCst);

        // `b` takes over: it signs from where the log left its signing state.
        b.take_lead(T + 4).unwrap();
        b.replicate_through(cluster(&[&b, &a]));
        update_a(&b, "5551010", [198, 51, 100, 1], T + 4, 4)
            .await
            .unwrap();
        b.register(registration("5559999", "acme", "00aabbccddee"), T + 4)
            .await
            .unwrap();
        update_a(&b, "5559999", [198, 51, 100, 2], T + 5, 5)
            .await
            .unwrap();
        codes.push("5559999".to_owned());
        same_signed_zone(&a, &b, &codes);
        {
            let view = b.view();
            let key = CodeKey::from(&"5559999".parse::<crate::identity::CallingCode>().unwrap());
            let signed = view.signed().unwrap().terminal(key);
            assert!(signed.is_some_and(|s| s.a.is_some()), "b signed it");
        }
        // (`a`'s signing state still holds its lost changes: it is built again when `a`
        // takes the lead.)
        the_store_holds_the_zone_signed_as_staged(&b);
        // `a` leads again: it signs from the log's state, not from its lost changes.
        a.take_lead(T + 6).unwrap();
        update_a(&a, "5551012", [198, 51, 100, 3], T + 6, 6)
            .await
            .unwrap();
        a.register(registration("5557777", "acme", "00aabbccdd77"), T + 6)
            .await
            .unwrap();
        update_a(&a, "5557777", [198, 51, 100, 4], T + 7, 7)
            .await
            .unwrap();
        codes.push("5557777".to_owned());
        same_signed_zone(&a, &b, &codes);
        for node in [&a, &b] {
            the_store_holds_the_zone_signed_as_staged(node);
        }
    }

    /// What `node`'s store holds is a whole signed zone, needing no signature made afresh,
    /// whose chain is the one published and the one its staging signs from.
    fn the_store_holds_the_zone_signed_as_staged(node: &Directory) {
        let rebuilt = node
            .signing_from_store(&node.view(), T + 6)
            .unwrap()
            .unwrap();
        assert!(
            rebuilt.changes.is_empty() && rebuilt.statics.is_none(),
            "signatures were missing from the store"
        );
        let zone = node.zone();
        assert_eq!(
            rebuilt.published.nsec3_chain(&zone),
            node.view().signed().unwrap().nsec3_chain(&zone),
            "the published chain"
        );
        let staging = node.inner.staging.get().unwrap().lock().unwrap();
        let chain = |c: &crate::dnssec::chain::Chain<crate::dnssec::Owner>| {
            c.iter().map(|(h, o)| (*h, *o)).collect::<Vec<_>>()
        };
        assert_eq!(
            chain(staging.chain()),
            chain(rebuilt.staging.chain()),
            "the staged chain"
        );
    }
}
