//! Rebuilds a store from a backup ([`crate::backup`]): into a directory that holds no store,
//! with the terminals, their keys and replay memory as they were at the moment of the
//! snapshot. Each chunk is written durably; the caller restores into a scratch directory and
//! moves it into place only once this has returned, so a restore that fails half-way leaves
//! nothing a server would open.
//!
//! The serial is not the backup's: the directory that was backed up may have served newer
//! serials since, with other content, and its secondaries hold them. A restore comes up
//! [`SERIAL_JUMP`] past the backup's serial (RFC 1982: newer than any serial up to 2^30
//! changes after the backup, or before it), with an empty journal, so every secondary takes
//! the whole zone and none applies a difference to another base.

use std::path::Path;

use hickory_proto::rr::Name;

use crate::backup::{BackupError, CustomerRecord, Header, Record, TokenRecord};
use crate::model::Entry;
use crate::store::{Change, Store};
use crate::store::{CustomerWrites, DnssecWrites, TerminalWrites, ZoneWrites};

/// Terminals written per transaction.
const CHUNK: usize = 10_000;

/// How far past the backup's serial a restore comes up: half the RFC 1982 window, so the
/// restored serial is newer than every serial within 2^30 changes of the backup's, whether
/// a secondary is ahead of the backup or behind it.
pub const SERIAL_JUMP: u32 = 1 << 30;

/// What a restore wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub terminals: usize,
    pub journal: usize,
    pub serial: u32,
}

/// Writes the backup whose `header` was read and whose `records` follow into a new store in
/// `store_dir`.
pub fn restore(
    store_dir: &Path,
    header: &Header,
    records: impl Iterator<Item = Result<Record, BackupError>>,
) -> Result<Restored, BackupError> {
    header.check()?;
    let origin = Name::from_ascii(&header.zone)
        .map_err(|e| BackupError::NotABackup(format!("zone {:?}: {e}", header.zone)))?;
    let store = Store::open(store_dir, &origin)?;
    let (mut chunk, mut terminals, mut deltas) = (Vec::with_capacity(CHUNK), 0, Vec::new());
    let (mut tokens, mut customers, mut awaiting) = (Vec::new(), Vec::new(), Vec::new());
    for record in records {
        match record? {
            Record::Terminal(t) => {
                chunk.push(t.into_entry(&origin));
                if chunk.len() == CHUNK {
                    terminals += write_terminals(&store, &mut chunk)?;
                }
            }
            // The journal is short (at most `ixfr_history` deltas): kept for the last write.
            Record::Delta(delta) => deltas.push(delta),
            Record::Token(t) => tokens.push(t),
            Record::Customer(c) => customers.push(c),
            Record::Awaiting(a) => awaiting.push(a.code),
            // A cluster's snapshot: a restored directory signs its zone itself.
            Record::Signature(_) => {}
        }
    }
    terminals += write_terminals(&store, &mut chunk)?;
    header.check_counts(
        terminals,
        deltas.len(),
        tokens.len() + customers.len() + awaiting.len(),
    )?;
    // The journal is checked, not restored: differences from the backup's serials would
    // be applied by secondaries to whatever they hold.
    let serial = header.serial.wrapping_add(SERIAL_JUMP);
    let keys = header
        .dnssec_keys
        .iter()
        .map(|k| k.to_key())
        .collect::<Result<Vec<_>, _>>()?;
    store.commit_now(&head_change(
        header, serial, &keys, &tokens, &customers, &awaiting,
    ))?;
    Ok(Restored {
        terminals,
        journal: 0,
        serial,
    })
}

/// A backup's zone, DNSSEC keys and enrollment rows, as one change that puts the zone at
/// `serial`.
pub(crate) fn head_change<'a>(
    header: &'a Header,
    serial: u32,
    keys: &'a [crate::dnssec::ZoneKey],
    tokens: &'a [TokenRecord],
    customers: &'a [CustomerRecord],
    awaiting: &'a [crate::identity::CallingCode],
) -> Change<'a> {
    Change {
        zone: ZoneWrites {
            serial: Some(serial),
            zone_fingerprint: header.zone_fingerprint.as_deref(),
            ..Default::default()
        },
        dnssec: DnssecWrites {
            zone_keys: (!keys.is_empty()).then_some(keys),
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
    }
}

/// Writes and empties `chunk`; returns how many it held.
fn write_terminals(store: &Store, chunk: &mut Vec<Entry>) -> Result<usize, BackupError> {
    if chunk.is_empty() {
        return Ok(0);
    }
    store.commit_now(&Change {
        terminals: TerminalWrites {
            put_terminals: chunk.iter().map(|e| &e.terminal).collect(),
            put_presence: chunk
                .iter()
                .map(|e| (&e.terminal.code, &e.presence))
                .collect(),
            ..Default::default()
        },
        ..Change::default()
    })?;
    let written = chunk.len();
    chunk.clear();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::Line;
    use crate::directory::{Directory, Registration};
    use crate::identity::Kid;
    use crate::key::Algorithm;
    use crate::{Limits, Zone};

    fn registration(code: &str, mid: &str) -> Registration {
        Registration {
            code: code.parse().unwrap(),
            kid: "acme".parse().unwrap(),
            mid: mid.parse().unwrap(),
            algorithm: Algorithm::HmacSha256,
        }
    }

    fn open(path: &Path) -> Directory {
        Directory::open(path, Zone::embedded_default(), Limits::default()).unwrap()
    }

    /// Everything a snapshot of `dir` holds, as backup lines would carry it.
    fn backup(dir: &Directory) -> (Header, Vec<Record>) {
        let (mut header, mut records) = (None, Vec::new());
        dir.snapshot(false, |item| {
            match Line::of(item, "dial.example.").0 {
                Line::Header(h) => header = Some(h),
                Line::Record(r) => records.push(r),
            }
            true
        })
        .unwrap();
        let lines: Vec<String> = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        let records = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (header.unwrap(), records)
    }

    #[tokio::test]
    async fn a_restored_store_holds_the_tokens_customers_and_approvals() {
        use crate::directory::{CustomerChange, NewToken, Standing};
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(&tmp.path().join("a"));
        let kid: Kid = "acme".parse().unwrap();
        let new = NewToken {
            kid: kid.clone(),
            uses: 3,
            expires_at: u64::MAX,
            codes: Some("5550000-5550099".parse().unwrap()),
            approve: true,
        };
        let (token, entry) = dir.create_token(new, 1).await.unwrap();
        let limit = CustomerChange {
            limit: Some(Some(7)),
            suspended: Some(true),
        };
        dir.change_customer(&kid, limit, 1).await.unwrap();
        dir.register(registration("5551001", "0000000000000001"), 1)
            .await
            .unwrap();
        let (header, records) = backup(&dir);
        assert_eq!(header.enrollment, 2);
        restore(&tmp.path().join("b"), &header, records.into_iter().map(Ok)).unwrap();
        let back = open(&tmp.path().join("b"));
        assert_eq!(back.tokens().unwrap(), vec![(token.id.clone(), entry)]);
        let customer = back.customer(&kid).unwrap();
        assert_eq!((customer.limit, customer.suspended), (Some(7), true));
        let code = "5551001".parse().unwrap();
        assert_eq!(back.standing(&code, &kid), Standing::Suspended);
        let name = token.tsig_key(back.zone().origin()).name;
        assert!(back.token_key(&name, 2).is_some());
    }

    #[tokio::test]
    async fn a_restored_store_holds_the_terminals_keys_journal_and_serial() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(&tmp.path().join("a"));
        let now = crate::unix_now();
        dir.register(registration("5551001", "0000000000000001"), now)
            .await
            .unwrap();
        let mut addresses = crate::model::Addresses::default();
        addresses.v4.ttl = 60;
        addresses.v4.addrs = vec![std::net::Ipv4Addr::new(192, 0, 2, 7)].into();
        let import = crate::directory::Import {
            registration: registration("5551002", "0000000000000002"),
            addresses,
        };
        dir.import(vec![import], now).await.unwrap();
        let (header, records) = backup(&dir);
        assert_eq!((header.terminals, header.journal), (2, 1));
        let restored = restore(
            &tmp.path().join("b"),
            &header,
            records.clone().into_iter().map(Ok),
        )
        .unwrap();
        assert_eq!(restored.serial, header.serial.wrapping_add(SERIAL_JUMP));
        assert_eq!((restored.terminals, restored.journal), (2, 0));
        let back = open(&tmp.path().join("b"));
        assert_eq!(back.view().serial(), restored.serial);
        for code in ["5551001", "5551002"] {
            let code = code.parse().unwrap();
            assert_eq!(back.terminal(&code).unwrap(), dir.terminal(&code).unwrap());
        }
        let (_, again) = backup(&back);
        let terminals = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .filter(|r| matches!(r, Record::Terminal(_)))
                .cloned()
                .collect()
        };
        assert_eq!(
            terminals(&again),
            terminals(&records),
            "a backup of the restored store holds the same terminals"
        );
        assert!(
            !again.iter().any(|r| matches!(r, Record::Delta(_))),
            "and no journal"
        );
    }

    /// Regression: a restored directory came up at the backup's serial with its journal,
    /// while secondaries already held the newer serials the lost directory had served: they
    /// ignored it, then applied IXFR deltas to another base.
    #[tokio::test]
    async fn a_restore_comes_up_past_every_serial_served_with_an_empty_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(&tmp.path().join("a"));
        dir.register(registration("5551001", "0000000000000001"), 1)
            .await
            .unwrap();
        let (header, records) = backup(&dir);
        // Served after the backup: many more serials.
        for i in 0..20u32 {
            let code = format!("{}", 5_552_000 + i);
            dir.register(registration(&code, &format!("{:016x}", 100 + i)), 1)
                .await
                .unwrap();
        }
        let served = dir.view().serial();
        restore(&tmp.path().join("b"), &header, records.into_iter().map(Ok)).unwrap();
        let back = open(&tmp.path().join("b"));
        let restored = back.view().serial();
        assert!(
            crate::serial::Serial(restored).is_newer_than(crate::serial::Serial(served)),
            "{restored} is past {served}"
        );
        assert!(
            back.view().journal().is_empty(),
            "secondaries take the whole zone"
        );
    }

    /// Regression: a backup taken while a streamed import had a batch staged held it,
    /// secrets and all, and its restore brought back terminals whose import was aborted.
    #[tokio::test]
    async fn a_backup_leaves_out_an_import_not_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(&tmp.path().join("a"));
        dir.register(registration("5551001", "0000000000000001"), 1)
            .await
            .unwrap();
        let staged = crate::directory::Import {
            registration: registration("5559001", "0000000000000009"),
            addresses: crate::model::Addresses::default(),
        };
        dir.stage_import(vec![staged], 1).await.unwrap();
        let (header, records) = backup(&dir);
        assert_eq!(header.terminals, 1, "only what is registered is counted");
        let codes: Vec<String> = records
            .iter()
            .filter_map(|r| match r {
                Record::Terminal(t) => Some(t.code.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(codes, vec!["5551001"]);
        restore(&tmp.path().join("b"), &header, records.into_iter().map(Ok)).unwrap();
        let back = open(&tmp.path().join("b"));
        assert!(
            back.terminal(&"5559001".parse().unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_truncated_backup_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(&tmp.path().join("a"));
        dir.register(registration("5551001", "0000000000000001"), 1)
            .await
            .unwrap();
        let (header, _) = backup(&dir);
        let err = restore(&tmp.path().join("b"), &header, std::iter::empty()).unwrap_err();
        assert!(
            matches!(
                err,
                BackupError::Truncated {
                    expected: 1,
                    found: 0,
                    ..
                }
            ),
            "{err}"
        );
    }
}
