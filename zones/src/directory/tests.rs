//! The directory's tests: registration, updates, replay, leases, the commit pipeline,
//! the journal across races, imports.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Record};

use super::*;
use crate::store::TerminalWrites;
use crate::update::ZoneSection;

/// Unix seconds for changes whose time does not matter to a test.
pub(super) const NOW: u64 = 1;

pub(super) fn registration(code: &str, kid: &str, mid: &str) -> Registration {
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

pub(super) fn set_a(code: &str, ip: [u8; 4]) -> (Vec<ZoneSection>, Vec<Record>) {
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

pub(super) async fn update_a(
    dir: &Directory,
    code: &str,
    ip: [u8; 4],
    time: u64,
    mac: u8,
) -> Result<UpdateOutcome, DirectoryError> {
    set_a_signed(dir, code, ip, signed(time, mac), None, time).await
}

/// A signature's facts: signed at `time` with a MAC of 32 bytes `mac`.
pub(super) fn signed(time: u64, mac: u8) -> Freshness {
    Freshness {
        time_signed: time,
        mac: vec![mac; 32],
    }
}

/// `code`'s key replaces its A RRset with `ip`, signed as `freshness`, asking for
/// `lease`, at server time `now`.
pub(super) async fn set_a_signed(
    dir: &Directory,
    code: &str,
    ip: [u8; 4],
    freshness: Freshness,
    lease: Option<u32>,
    now: u64,
) -> Result<UpdateOutcome, DirectoryError> {
    let (zone, updates) = set_a(code, ip);
    let message = UpdateMessage {
        zone: &zone,
        prerequisites: &[],
        updates: &updates,
    };
    dir.update(&code.parse().unwrap(), &message, &freshness, lease, now)
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
    assert_eq!(dir.view().serial(), serial);
    let (code, key) = dir.terminal_key(&t.key.name).unwrap();
    assert_eq!(code, t.code);
    assert_eq!(key, t.key);
    assert_eq!(dir.terminal(&t.code).unwrap().unwrap().terminal, t);
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
    let entry = dir.terminal(&"5551234".parse().unwrap()).unwrap().unwrap();
    assert_eq!(
        entry.presence.addresses.v4.addrs.as_slice(),
        [Ipv4Addr::new(192, 0, 2, 1)]
    );
    assert_eq!(entry.presence.updated_at, Some(101));
}

#[tokio::test]
async fn replays_and_older_signatures_are_refused_even_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    update_a_registered(&dir).await;
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
    let ip = [192, 0, 2, 1];
    let first = set_a_signed(&dir, "5551234", ip, signed(1000, 1), Some(5), 1000)
        .await
        .unwrap();
    assert_eq!(first.lease, Some(60), "raised to the minimum");
    // A refresh that changes nothing extends the lease without a serial increase.
    let refresh = set_a_signed(&dir, "5551234", ip, signed(1050, 2), Some(60), 1050)
        .await
        .unwrap();
    assert!(!refresh.changed);
    assert_eq!(refresh.serial, first.serial);
    assert!(!dir.view().terminal(&code).unwrap().expired(1100));
    assert!(dir.expire(1100).await.unwrap().is_empty());
    // Past the lease: offline, one serial increase, addresses gone from the store too.
    assert!(dir.view().terminal(&code).unwrap().expired(1110));
    assert_eq!(dir.expire(1110).await.unwrap(), vec![code.clone()]);
    assert_eq!(dir.view().serial(), first.serial + 1);
    drop(dir);
    let dir = open(tmp.path());
    let entry = dir.terminal(&code).unwrap().unwrap();
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
    let rotated = dir.rotate_key(&t.code, NOW).await.unwrap();
    assert_eq!(rotated.key.name, t.key.name);
    assert_ne!(rotated.key.secret, t.key.secret);
    dir.unregister(&t.code, NOW).await.unwrap();
    assert!(dir.view().terminal(&t.code).is_none());
    assert!(dir.terminal_key(&t.key.name).is_none());
    assert!(matches!(
        dir.unregister(&t.code, NOW).await,
        Err(DirectoryError::UnknownCode(_))
    ));
    // The machine can register again once unregistered.
    dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 2)
        .await
        .unwrap();
}

fn two_addresses_plus(ip: std::net::IpAddr) -> Addresses {
    let mut a = Addresses::default();
    a.v4.ttl = 30;
    a.v6.ttl = 30;
    match ip {
        std::net::IpAddr::V4(v4) => a.v4.addrs.push(v4),
        std::net::IpAddr::V6(v6) => a.v6.addrs.push(v6),
    }
    a
}

/// What an IXFR-following secondary holds: the records it was sent, delta by delta.
fn follow_journal(copy: &mut HashMap<CallingCode, Addresses>, serial: &mut u32, dir: &Directory) {
    let view = dir.view();
    if *serial == view.serial() {
        return;
    }
    let chain = view
        .journal()
        .since(*serial)
        .expect("the follower's serial is in the journal");
    for delta in chain {
        assert_eq!(delta.from, *serial, "the IXFR chain has a gap");
        for change in &delta.changes {
            let held = copy.get(&change.code).cloned().unwrap_or_default();
            assert_eq!(
                held, change.old,
                "delta {}→{} removes what the secondary does not hold for {}",
                delta.from, delta.to, change.code
            );
            copy.insert(change.code.clone(), change.new.clone());
        }
        *serial = delta.to;
    }
    assert_eq!(*serial, view.serial());
}

/// The zone's content at its serial, as a full transfer sends it.
fn full_zone(dir: &Directory) -> HashMap<CallingCode, Addresses> {
    let view = dir.view();
    view.entries()
        .map(|(key, hot)| (key.to_code(), hot.addresses.clone()))
        .filter(|(_, a)| *a != Addresses::default())
        .collect()
}

fn without_empty(copy: &HashMap<CallingCode, Addresses>) -> HashMap<CallingCode, Addresses> {
    copy.iter()
        .filter(|(_, a)| **a != Addresses::default())
        .map(|(c, a)| (c.clone(), a.clone()))
        .collect()
}

/// Regression (visible only after durable): the view moved before the flush, so a
/// failed flush left queries answering a serial and addresses that were never durable.
#[tokio::test]
async fn flush_failure_leaves_queries_on_the_old_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    update_a_registered(&dir).await;
    let serial = dir.view().serial();
    dir.inject_flush_failure();
    let failed = update_a(&dir, "5551234", [192, 0, 2, 2], 101, 2).await;
    assert!(failed.is_err(), "a failed flush is not acknowledged");
    let view = dir.view();
    assert_eq!(view.serial(), serial, "the serial did not move");
    let entry = view.terminal(&"5551234".parse().unwrap()).unwrap();
    assert_eq!(
        entry.addresses.v4.addrs.as_slice(),
        [Ipv4Addr::new(192, 0, 2, 1)],
        "queries still answer the durable address"
    );
}

/// Regression: after a failed flush, reads of the store (a signed request's key, `list`,
/// a backup) still showed the change that never reached the disk.
#[tokio::test]
async fn a_failed_flush_leaves_store_reads_on_the_durable_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    update_a_registered(&dir).await;
    dir.inject_flush_failure();
    let failed = update_a(&dir, "5551234", [192, 0, 2, 2], 101, 2).await;
    assert!(failed.is_err(), "a failed flush is not acknowledged");
    let stored = dir.terminal(&"5551234".parse().unwrap()).unwrap().unwrap();
    assert_eq!(
        stored.presence.addresses.v4.addrs.as_slice(),
        [Ipv4Addr::new(192, 0, 2, 1)],
        "the store answers the durable address, not the change that never reached the disk"
    );
}

/// Regression (lease expiry races): an update or unregister after the lease ended but
/// before the sweep journalled an empty "old" side, so IXFR secondaries kept the stale
/// address, or the unregistered code, for good.
#[tokio::test]
async fn deltas_after_lease_end_before_the_sweep_remove_what_secondaries_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    for (code, mid) in [
        ("5551234", "3f9a0c1d22e4b7a8"),
        ("5557777", "3f9a0c1d22e4b7a9"),
    ] {
        dir.register(registration(code, "acme", mid), 1)
            .await
            .unwrap();
    }
    let mut copy = HashMap::new();
    let mut serial = dir.view().serial();
    set_a_signed(
        &dir,
        "5551234",
        [192, 0, 2, 1],
        signed(1000, 1),
        Some(60),
        1000,
    )
    .await
    .unwrap();
    follow_journal(&mut copy, &mut serial, &dir);
    // The lease ended at 1060; the sweep has not run. A new address arrives.
    update_a(&dir, "5551234", [192, 0, 2, 2], 1070, 2)
        .await
        .unwrap();
    follow_journal(&mut copy, &mut serial, &dir);
    assert_eq!(without_empty(&copy), full_zone(&dir));
    // The same race with an unregister.
    let other: CallingCode = "5557777".parse().unwrap();
    set_a_signed(
        &dir,
        "5557777",
        [192, 0, 2, 7],
        signed(2000, 3),
        Some(60),
        2000,
    )
    .await
    .unwrap();
    follow_journal(&mut copy, &mut serial, &dir);
    assert!(dir.view().terminal(&other).unwrap().expired(2070));
    dir.unregister(&other, NOW).await.unwrap();
    follow_journal(&mut copy, &mut serial, &dir);
    assert_eq!(without_empty(&copy), full_zone(&dir));
}

/// Regression (zone-file serial changes): restarting with a zone file whose serial
/// jumped left a gap in the IXFR chain (deltas 2→3, then 1000→1001).
#[tokio::test]
async fn zone_file_serial_jump_leaves_no_gap_in_the_ixfr_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let zone_text = |serial: u32, extra: &str| {
        format!(
            "$ORIGIN dial.example.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\n{extra}"
        )
    };
    let zone1 = Zone::parse(&zone_text(1, ""), "zone", None).unwrap();
    let dir = Directory::open(tmp.path(), zone1, Limits::default()).unwrap();
    update_a_registered(&dir).await;
    let old_serials: Vec<u32> = {
        let view = dir.view();
        let first = view.journal().since(1).unwrap();
        first.iter().map(|d| d.from).collect()
    };
    drop(dir);
    let zone2 = Zone::parse(&zone_text(1000, "www TXT \"new\"\n"), "zone", None).unwrap();
    let dir = Directory::open(tmp.path(), zone2, Limits::default()).unwrap();
    update_a(&dir, "5551234", [192, 0, 2, 2], 200, 2)
        .await
        .unwrap();
    let view = dir.view();
    assert!(view.serial() > 1000);
    for from in old_serials {
        if let Some(chain) = view.journal().since(from) {
            let mut at = from;
            for delta in &chain {
                assert_eq!(delta.from, at, "gap in the IXFR chain from {from}");
                at = delta.to;
            }
            assert_eq!(at, view.serial(), "the chain from {from} ends early");
        }
    }
}

/// Regression (import policy): import accepted addresses an UPDATE refuses.
#[tokio::test]
async fn import_refuses_addresses_an_update_would_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    let max = Limits::default().max_addresses_per_family;
    let mut too_many = Addresses::default();
    too_many.v4.ttl = 30;
    too_many.v4.addrs = (0..=max as u8)
        .map(|i| Ipv4Addr::new(192, 0, 2, i + 1))
        .collect();
    let unusable = [
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::",
        "ff02::1",
        "::ffff:0.0.0.0",
        "::ffff:224.0.0.1",
    ];
    let mut cases: Vec<Addresses> = unusable
        .iter()
        .map(|ip| two_addresses_plus(ip.parse().unwrap()))
        .collect();
    cases.push(too_many);
    for addresses in cases {
        let shown = addresses.describe();
        let result = dir
            .import(
                vec![Import {
                    registration: registration("5551234", "acme", "3f9a0c1d22e4b7a8"),
                    addresses,
                }],
                1,
            )
            .await;
        assert!(result.is_err(), "import accepted {shown}");
        assert!(dir.view().is_empty(), "a refused import changed nothing");
    }
}

/// Regression: an update signed 120 s in the future was accepted, and then every
/// correctly timed update was refused as stale for 120 s.
#[tokio::test]
async fn future_dated_update_does_not_lock_out_correctly_timed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
        .await
        .unwrap();
    let ip = [192, 0, 2, 1];
    set_a_signed(&dir, "5551234", ip, signed(1120, 1), None, 1000)
        .await
        .unwrap();
    update_a(&dir, "5551234", [192, 0, 2, 2], 1001, 2)
        .await
        .expect("a correctly timed update after a future-dated one");
    let replay = set_a_signed(&dir, "5551234", ip, signed(1120, 1), None, 1002).await;
    assert!(matches!(replay, Err(DirectoryError::Stale { .. })));
}

/// Regression: with the per-key limit off, the 257th update of one second evicted the
/// first MAC from the replay memory, and a replay of it was accepted.
#[tokio::test]
async fn replays_are_refused_however_many_updates_share_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
        .await
        .unwrap();
    let send = |i: u16| {
        let freshness = Freshness {
            time_signed: 500,
            mac: i.to_be_bytes().repeat(16),
        };
        let ip = [192, 0, 2, (i % 200) as u8 + 1];
        let dir = dir.clone();
        async move { set_a_signed(&dir, "5551234", ip, freshness, None, 500).await }
    };
    for i in 0..300 {
        send(i).await.unwrap();
    }
    for i in [0, 1, 43, 255, 299] {
        assert!(
            matches!(send(i).await, Err(DirectoryError::Stale { .. })),
            "replay of update {i} accepted"
        );
    }
}

/// An import too large to journal empties the journal: a secondary at an older serial
/// gets the whole zone, and the index does not carry a delta the size of the fleet.
#[tokio::test]
async fn a_change_too_large_to_journal_empties_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    update_a_registered(&dir).await;
    let before = dir.view().serial();
    assert!(dir.view().journal().since(before - 1).is_some());
    dir.import(fleet(0, LARGEST_DELTA + 1), 2).await.unwrap();
    let view = dir.view();
    assert_eq!(view.serial(), before + 1);
    assert!(view.journal().is_empty());
    assert!(view.journal().since(before).is_none(), "a full transfer");
    drop(view);
    drop(dir);
    let dir = open(tmp.path());
    assert!(dir.view().journal().is_empty(), "and so after a restart");
    assert_eq!(dir.view().len(), LARGEST_DELTA + 2);
}

async fn update_a_registered(dir: &Directory) {
    dir.register(registration("5551234", "acme", "3f9a0c1d22e4b7a8"), 1)
        .await
        .unwrap();
    update_a(dir, "5551234", [192, 0, 2, 1], 100, 1)
        .await
        .unwrap();
}

fn fleet(from: usize, count: usize) -> Vec<Import> {
    (from..from + count)
        .map(|i| Import {
            registration: registration(
                &format!("{}", 7_000_000 + i),
                "fleet",
                &format!("{i:016x}"),
            ),
            addresses: two_addresses_plus(std::net::IpAddr::V4(Ipv4Addr::new(
                127,
                1,
                (i >> 8) as u8,
                i as u8,
            ))),
        })
        .collect()
}

#[tokio::test]
async fn a_staged_import_is_invisible_until_committed_then_all_there() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    let session = dir.try_begin_import().unwrap();
    assert!(dir.try_begin_import().is_none(), "one import at a time");
    let serial = dir.view().serial();
    dir.stage_import(fleet(0, 100), 1).await.unwrap();
    dir.stage_import(fleet(100, 100), 1).await.unwrap();
    assert!(dir.view().is_empty(), "not in the index before the commit");
    let taken = dir.stage_import(fleet(150, 1), 1).await;
    assert!(
        matches!(taken, Err(DirectoryError::CodeTaken { .. })),
        "staged codes are taken"
    );
    let staged: CallingCode = "7000005".parse().unwrap();
    assert!(matches!(
        dir.unregister(&staged, NOW).await,
        Err(DirectoryError::Importing(_))
    ));
    assert_eq!(dir.commit_import(NOW).await.unwrap(), 200);
    drop(session);
    assert_eq!(dir.view().len(), 200);
    assert_eq!(dir.view().serial(), serial + 1);
    dir.unregister(&staged, NOW).await.unwrap();
    drop(dir);
    assert_eq!(open(tmp.path()).view().len(), 199);
}

#[tokio::test]
async fn an_import_aborted_or_interrupted_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    dir.stage_import(fleet(0, 50), 1).await.unwrap();
    assert_eq!(dir.abort_import().await.unwrap(), 50);
    assert!(dir.terminal(&"7000001".parse().unwrap()).unwrap().is_none());
    // The same codes and machines can come again; then the server stops mid-import.
    dir.stage_import(fleet(0, 50), 1).await.unwrap();
    dir.flush().await.unwrap();
    drop(dir);
    let dir = open(tmp.path());
    assert!(dir.view().is_empty());
    assert!(dir.terminal(&"7000001".parse().unwrap()).unwrap().is_none());
    dir.stage_import(fleet(0, 50), 1).await.unwrap();
    assert_eq!(dir.commit_import(NOW).await.unwrap(), 50);
    assert_eq!(dir.view().len(), 50);
}

/// Regression: the list of an import's codes was cleared after its commit, in a transaction
/// of its own that was not made durable. A server killed right after the commit kept the
/// list, and the next import, aborted, removed the committed terminals with its own.
#[tokio::test]
async fn a_committed_import_is_not_undone_by_a_later_aborted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    dir.stage_import(fleet(0, 21), 1).await.unwrap();
    // The commit's own transaction, made durable; then the process is gone (kill -9): no
    // later write reaches the disk.
    let finish = Change {
        terminals: TerminalWrites {
            finish_import: true,
            ..Default::default()
        },
        ..Change::default()
    };
    dir.inner.commit.store().write_now(&finish).await.unwrap();
    drop(dir);
    let dir = open(tmp.path());
    assert_eq!(dir.view().len(), 21, "the committed import is there");
    // A later import stages a batch, and its connection closes: it is aborted.
    dir.stage_import(fleet(100, 1), 1).await.unwrap();
    assert_eq!(
        dir.abort_import().await.unwrap(),
        1,
        "only its own terminal"
    );
    drop(dir);
    let dir = open(tmp.path());
    assert_eq!(dir.view().len(), 21);
    assert!(dir.terminal(&"7000001".parse().unwrap()).unwrap().is_some());
}

/// An import's KID/MID pairs wait apart until its commit (so that the `machines` table takes
/// them in key order): a pair staged twice across batches, or registered while the import
/// was staged, refuses the commit, and the abort that follows leaves the registration alone.
#[tokio::test]
async fn an_imports_machine_pairs_are_checked_at_its_commit_and_then_registered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    dir.stage_import(fleet(0, 10), 1).await.unwrap();
    let mut again = fleet(100, 1);
    again[0].registration.mid = "0000000000000003".parse().unwrap();
    dir.stage_import(again, 1).await.unwrap();
    let refused = dir.commit_import(NOW).await;
    assert!(
        matches!(&refused, Err(DirectoryError::Duplicate(what)) if what.contains("0000000000000003")),
        "{refused:?}"
    );
    assert_eq!(dir.abort_import().await.unwrap(), 11);
    // Registered while the import is staged: the commit is refused, the registration kept.
    dir.stage_import(fleet(0, 10), 1).await.unwrap();
    dir.register(registration("5550000", "fleet", "0000000000000005"), NOW)
        .await
        .unwrap();
    let refused = dir.commit_import(NOW).await;
    assert!(
        matches!(&refused, Err(DirectoryError::MachineTaken { code, .. }) if code.as_str() == "5550000"),
        "{refused:?}"
    );
    assert_eq!(dir.abort_import().await.unwrap(), 10);
    let (kid, mid) = (
        "fleet".parse().unwrap(),
        "0000000000000005".parse().unwrap(),
    );
    assert_eq!(
        dir.inner.commit.store().machine(&kid, &mid).unwrap(),
        Some("5550000".parse().unwrap()),
        "the abort left the registered terminal's pair"
    );
    // A clean import: every pair is registered at its commit, and taken from then on.
    dir.unregister(&"5550000".parse().unwrap(), NOW)
        .await
        .unwrap();
    dir.stage_import(fleet(0, 10), 1).await.unwrap();
    assert_eq!(dir.commit_import(NOW).await.unwrap(), 10);
    for i in 0..10 {
        let mid = format!("{i:016x}").parse().unwrap();
        assert_eq!(
            dir.inner.commit.store().machine(&kid, &mid).unwrap(),
            Some(format!("{}", 7_000_000 + i).parse().unwrap())
        );
    }
    let taken = dir
        .register(registration("5550001", "fleet", "0000000000000004"), NOW)
        .await;
    assert!(
        matches!(taken, Err(DirectoryError::MachineTaken { .. })),
        "{taken:?}"
    );
    drop(dir);
    let dir = open(tmp.path());
    assert_eq!(dir.view().len(), 10);
}

/// The start-up's read of the terminals on a reader thread beside the inserts (more than
/// two chunks here, the last one partial) builds the same index as the read on one thread.
#[tokio::test]
async fn terminals_read_beside_the_inserts_make_the_same_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    let session = dir.try_begin_import().unwrap();
    for from in (0..40_000).step_by(10_000) {
        dir.stage_import(fleet(from, 10_000), 1).await.unwrap();
    }
    dir.commit_import(NOW).await.unwrap();
    drop(session);
    let expected = full_zone(&dir);
    assert_eq!(expected.len(), 40_000);
    let store = dir.inner.commit.store().clone();
    for spare_core in [true, false] {
        let mut view = View::new(Serial(1), Journal::new(1, Vec::new()), 0);
        super::load::terminals(&store, &mut view, spare_core).unwrap();
        assert_eq!(view.len(), 40_000, "spare core: {spare_core}");
        for (code, addresses) in &expected {
            let hot = view.terminal(code).unwrap();
            assert_eq!(
                &hot.addresses, addresses,
                "{code}, spare core: {spare_core}"
            );
        }
    }
}
