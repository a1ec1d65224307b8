//! The signed directory (DNSSEC on): every published signature verifies with the zone's
//! DNSKEY, the NSEC3 chain is one closed cycle over exactly the names with records, through
//! changes, a reopen and a refresh; time is given, never waited for.

use hickory_proto::dnssec::Verifier;
use hickory_proto::dnssec::rdata::{DNSSECRData, RRSIG};
use hickory_proto::rr::{DNSClass, Record};

use super::KeyEvent;
use super::tests::{registration, set_a_signed, signed, update_a};
use super::*;
use crate::dnssec::{nsec3, sign::VALIDITY, whole::REFRESH};

/// A time in 2027, as Unix seconds.
const T: u64 = 1_800_000_000;

fn open_signed(dir: &Path, now: u64) -> Directory {
    Directory::open_signed(dir, Zone::embedded_default(), Limits::default(), now).unwrap()
}

/// Opens a signed directory; says where its start took the terminals' signatures from.
fn open_signed_from(dir: &Path, now: u64) -> (Directory, SignaturesFrom) {
    let (directory, start) =
        Directory::open_signing(dir, Zone::embedded_default(), Limits::default(), now).unwrap();
    let from = start.finish().unwrap();
    (directory, from)
}

fn rrsig_of(record: &Record) -> &RRSIG {
    match &record.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sig,
        other => panic!("not an RRSIG: {other:?}"),
    }
}

/// Checks every signature and the chain; returns the earliest expiration seen.
fn check_consistent(dir: &Directory, now: u64) -> u32 {
    let zone = dir.zone();
    let view = dir.view();
    let signed = view.signed().expect("the zone is signed");
    let keys = dir.zone_keys().unwrap();
    let mut earliest = u32::MAX;
    let mut verify = |rrset: &[Record], sig: &Record| {
        let sig = rrsig_of(sig);
        // By a key of the zone that is signing (or was, and is retiring): never one that
        // is only published.
        let key = keys
            .iter()
            .find(|k| k.key_tag().unwrap() == sig.input().key_tag)
            .expect("signed by a key of the zone");
        assert_ne!(key.state, crate::dnssec::KeyState::Published);
        key.dnskey()
            .unwrap()
            .verify_rrsig(&rrset[0].name, DNSClass::IN, sig, rrset.iter())
            .unwrap_or_else(|e| panic!("{} {:?}: {e}", rrset[0].name, rrset[0].record_type()));
        earliest = earliest.min(sig.input().sig_expiration.get());
    };
    // Terminals with addresses: signed; without: not in the signed zone.
    let mut online = 0;
    for (key, hot) in view.entries() {
        let owner = crate::dnssec::staging::terminal_owner(&zone, &key.to_code());
        assert_eq!(
            signed.exists(&owner),
            !hot.addresses.is_empty(),
            "{owner} is in the chain exactly when it has addresses"
        );
        if hot.addresses.is_empty() {
            assert!(signed.terminal(key).is_none());
            continue;
        }
        online += 1;
        for rrset in [
            crate::update::address_records(&owner, &hot.addresses, RecordType::A),
            crate::update::address_records(&owner, &hot.addresses, RecordType::AAAA),
        ] {
            if !rrset.is_empty() {
                let sig = signed.rrsig(&zone, &rrset, T).expect("an RRSIG");
                verify(&rrset, &sig);
            }
        }
    }
    // The DNSKEY RRset holds every key and is signed by the key-signing one.
    let dnskeys = signed.dnskey_records(&zone);
    assert_eq!(dnskeys.len(), keys.len());
    let dnskey_sig = signed
        .rrsig(&zone, &dnskeys, now)
        .expect("the DNSKEY RRSIG");
    verify(&dnskeys, &dnskey_sig);
    let soa = zone.soa_record(view.serial());
    verify(
        std::slice::from_ref(&soa),
        &signed
            .rrsig(&zone, std::slice::from_ref(&soa), now)
            .unwrap(),
    );
    // The chain: the apex, ns1, and the terminals with addresses, in one cycle.
    let chain = signed.nsec3_chain(&zone);
    let nsec3s: Vec<&Record> = chain.iter().step_by(2).collect();
    assert_eq!(nsec3s.len(), online + 2);
    for pair in chain.chunks(2) {
        verify(&pair[..1], &pair[1]);
    }
    for (i, record) in nsec3s.iter().enumerate() {
        let RData::DNSSEC(DNSSECRData::NSEC3(nsec3)) = &record.data else {
            panic!("not an NSEC3")
        };
        let following = nsec3s[(i + 1) % nsec3s.len()];
        let mut next = [0u8; 20];
        next.copy_from_slice(nsec3.next_hashed_owner_name());
        assert_eq!(
            nsec3::owner(&next, zone.origin()),
            following.name,
            "each NSEC3 points to the next one"
        );
    }
    earliest
}

/// Every terminal's stored signatures, by code.
fn terminal_sigs(dir: &Directory) -> Vec<(CodeKey, Option<crate::dnssec::TerminalSigs>)> {
    let mut keys: Vec<CodeKey> = dir.view().entries().map(|(key, _)| key).collect();
    keys.sort_unstable();
    keys.into_iter()
        .map(|key| (key, dir.inner.commit.store().signed(key).unwrap()))
        .collect()
}

/// Registers `count` terminals from code `base` on, each with one IPv4 address.
async fn online_fleet(dir: &Directory, base: u32, count: u32) {
    for i in 0..count {
        let mid = format!("00112233{i:04x}");
        let code = format!("{}", base + i);
        dir.register(registration(&code, "acme", &mid), T)
            .await
            .unwrap();
        update_a(dir, &code, [192, 0, 2, i as u8], T, i as u8)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_chain_and_signatures_hold_through_changes_a_reopen_and_lease_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open_signed(tmp.path(), T);
    for i in 0..40u32 {
        let mid = format!("00112233{i:04x}");
        dir.register(registration(&format!("{}", 5000 + i), "acme", &mid), T)
            .await
            .unwrap();
    }
    for i in 0..30u32 {
        update_a(
            &dir,
            &format!("{}", 5000 + i),
            [192, 0, 2, i as u8],
            T,
            i as u8,
        )
        .await
        .unwrap();
    }
    check_consistent(&dir, T);
    // Some leave the zone (offline, unregistered), some move.
    for i in 0..5u32 {
        dir.unregister(&format!("{}", 5000 + i).parse().unwrap(), T)
            .await
            .unwrap();
    }
    for i in 5..10u32 {
        update_a(
            &dir,
            &format!("{}", 5000 + i),
            [198, 51, 100, 1],
            T + 1,
            100 + i as u8,
        )
        .await
        .unwrap();
    }
    check_consistent(&dir, T);
    let (serial, sigs) = (dir.view().serial(), terminal_sigs(&dir));
    drop(dir);
    // A reopen after a crash (no stop kept the SOA's signature) signs no terminal again;
    // the SOA's fresh signature moves the serial on by one; everything still verifies.
    let dir = open_signed(tmp.path(), T + 60);
    assert_eq!(dir.view().serial(), serial + 1);
    assert_eq!(terminal_sigs(&dir), sigs);
    check_consistent(&dir, T);
    // Two terminals take a lease that runs out: the sweep takes them out of the zone.
    for i in 10..12u32 {
        let code = format!("{}", 5000 + i);
        let fresh = signed(T + 100, 200 + i as u8);
        set_a_signed(&dir, &code, [203, 0, 113, 1], fresh, Some(60), T + 100)
            .await
            .unwrap();
    }
    assert_eq!(dir.expire(T + 200).await.unwrap().len(), 2);
    check_consistent(&dir, T);
}

#[tokio::test]
async fn signatures_are_refreshed_before_they_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open_signed(tmp.path(), T);
    online_fleet(&dir, 7000, 20).await;
    let first = check_consistent(&dir, T);
    assert!(first >= (T as u32) + VALIDITY);
    // Nothing is due yet.
    assert_eq!(dir.refresh_signatures(T + 60, 100).await.unwrap(), 0);
    // Once within the refresh window, everything is signed again, a few at a time.
    let later = T + u64::from(VALIDITY - REFRESH) + 3600;
    let serial = dir.view().serial();
    assert_eq!(dir.refresh_signatures(later, 8).await.unwrap(), 8);
    assert_eq!(dir.refresh_signatures(later, 100).await.unwrap(), 12);
    assert_eq!(dir.refresh_signatures(later, 100).await.unwrap(), 0);
    assert!(
        dir.view().serial() > serial,
        "a refresh changes the zone's serial"
    );
    let earliest = check_consistent(&dir, later);
    assert!(
        earliest >= later as u32 + VALIDITY,
        "every signature, static names' and SOA's included, was made again"
    );
}

#[tokio::test]
async fn a_rollover_publishes_switches_and_retires_the_zone_signing_key_in_time() {
    use crate::dnssec::{KeyRole, KeyState};
    const PROPAGATION: u64 = 300;
    let tmp = tempfile::tempdir().unwrap();
    let dir = open_signed(tmp.path(), T);
    online_fleet(&dir, 8000, 10).await;
    let csk = dir.zone_keys().unwrap()[0].key_tag().unwrap();
    let new = dir.start_rollover(T + 10).await.unwrap();
    assert!(
        dir.start_rollover(T + 11).await.is_err(),
        "one rollover at a time"
    );
    let keys = dir.zone_keys().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        (keys[1].role, keys[1].state),
        (KeyRole::Zsk, KeyState::Published)
    );
    // Published, not signing: everything is still signed by the CSK.
    check_consistent(&dir, T + 10);
    let tags = |dir: &Directory| -> Vec<u16> {
        let view = dir.view();
        let signed = view.signed().unwrap();
        view.entries()
            .filter_map(|(k, _)| signed.terminal(k).and_then(|s| s.a).map(|a| a.key_tag))
            .collect()
    };
    assert!(tags(&dir).iter().all(|t| *t == csk));
    // Before the DNSKEY TTL (3600) and the propagation delay have passed: nothing moves.
    assert_eq!(
        dir.advance_keys(T + 10 + 3600, PROPAGATION).await.unwrap(),
        None
    );
    let switch = T + 10 + 3600 + PROPAGATION;
    assert_eq!(
        dir.advance_keys(switch, PROPAGATION).await.unwrap(),
        Some(KeyEvent::Activated(new))
    );
    let keys = dir.zone_keys().unwrap();
    assert_eq!(
        (keys[0].role, keys[0].state),
        (KeyRole::Ksk, KeyState::Active)
    );
    assert_eq!(
        (keys[1].role, keys[1].state),
        (KeyRole::Zsk, KeyState::Active)
    );
    // The refresh signs everything again with the new key, a batch at a time.
    assert_eq!(dir.refresh_signatures(switch, 4).await.unwrap(), 4);
    assert_eq!(dir.refresh_signatures(switch, 100).await.unwrap(), 6);
    assert!(tags(&dir).iter().all(|t| *t == new));
    check_consistent(&dir, switch);
    // The old key was a CSK: it stays as the KSK (the DS does not change), nothing retires.
    assert_eq!(
        dir.advance_keys(switch + 100_000, PROPAGATION)
            .await
            .unwrap(),
        None
    );
    assert_eq!(dir.zone_keys().unwrap()[0].key_tag().unwrap(), csk);

    // A second rollover replaces the ZSK, which retires and later leaves the RRset.
    let newer = dir.start_rollover(switch + 200_000).await.unwrap();
    let second = switch + 200_000 + 3600 + PROPAGATION;
    assert_eq!(
        dir.advance_keys(second, PROPAGATION).await.unwrap(),
        Some(KeyEvent::Activated(newer))
    );
    assert_eq!(dir.refresh_signatures(second, 100).await.unwrap(), 10);
    // Noticed as done at the next pass; then the largest TTL (the SOA's 3600) and the delay.
    assert_eq!(dir.refresh_signatures(second + 1, 100).await.unwrap(), 0);
    assert_eq!(
        dir.advance_keys(second + 1 + 3600, PROPAGATION)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        dir.advance_keys(second + 1 + 3600 + PROPAGATION, PROPAGATION)
            .await
            .unwrap(),
        Some(KeyEvent::Removed(new))
    );
    let keys = dir.zone_keys().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].key_tag().unwrap(), csk);
    assert_eq!(keys[1].key_tag().unwrap(), newer);
    check_consistent(&dir, second + 1 + 3600 + PROPAGATION);
    // And it all holds after a reopen.
    drop(dir);
    let dir = open_signed(tmp.path(), second + 10_000);
    check_consistent(&dir, second + 10_000);
}

/// Regression: an update that kept a terminal's address families kept its NSEC3 signature
/// but lost the NSEC3's next hash (it was set to the terminal's own hash), so the chain
/// broke at every moved terminal.
#[tokio::test]
async fn an_address_change_keeps_its_nsec3_next_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open_signed(tmp.path(), T);
    online_fleet(&dir, 9000, 5).await;
    update_a(&dir, "9002", [198, 51, 100, 2], T + 1, 99)
        .await
        .unwrap();
    check_consistent(&dir, T + 1);
}

/// Regression: a store served unsigned for a while (DNSSEC turned off, then on again) kept
/// the signatures of before; at the signed reopen they were taken as valid when their
/// address families matched, so a terminal that had moved within IPv4 was served with an
/// RRSIG over its old address (bogus at every validator).
#[tokio::test]
async fn a_store_served_unsigned_in_between_is_signed_again_at_the_signed_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open_signed(tmp.path(), T);
    online_fleet(&dir, 9100, 6).await;
    drop(dir);
    let dir = Directory::open(tmp.path(), Zone::embedded_default(), Limits::default()).unwrap();
    update_a(&dir, "9103", [198, 51, 100, 3], T + 1, 99)
        .await
        .unwrap();
    drop(dir);
    let dir = open_signed(tmp.path(), T + 2);
    check_consistent(&dir, T + 2);
    // And served unsigned with no change in between, the stored signatures are kept.
    let sigs = terminal_sigs(&dir);
    drop(dir);
    drop(Directory::open(tmp.path(), Zone::embedded_default(), Limits::default()).unwrap());
    let dir = open_signed(tmp.path(), T + 3);
    assert_eq!(terminal_sigs(&dir), sigs, "no terminal was signed again");
    check_consistent(&dir, T + 3);
    // Terminals that left and joined while unsigned: the stored signatures of one are
    // forgotten, the other is signed, at the signed reopen.
    drop(dir);
    let dir = Directory::open(tmp.path(), Zone::embedded_default(), Limits::default()).unwrap();
    dir.unregister(&"9104".parse().unwrap(), T + 4)
        .await
        .unwrap();
    dir.register(registration("9200", "other", "00aabbccddee"), T + 4)
        .await
        .unwrap();
    update_a(&dir, "9200", [203, 0, 113, 9], T + 4, 7)
        .await
        .unwrap();
    drop(dir);
    let dir = open_signed(tmp.path(), T + 5);
    check_consistent(&dir, T + 5);
    assert!(
        dir.inner
            .commit
            .store()
            .signed(CodeKey::from_digits(b"9104").unwrap())
            .unwrap()
            .is_none()
    );
}

/// The refresh signs without the writer lock: terminals that change between its signing and
/// its staging (one moves, one leaves, a new neighbour moves next hashes) are signed again
/// from what is staged then, and every signature still verifies.
#[tokio::test]
async fn terminals_that_change_while_the_refresh_signs_are_signed_from_their_new_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open_signed(tmp.path(), T);
    online_fleet(&dir, 7100, 6).await;
    let later = T + u64::from(VALIDITY - REFRESH) + 3600;
    let prepared = dir
        .prepare_refresh(later, 100)
        .unwrap()
        .expect("all are due");
    update_a(&dir, "7102", [198, 51, 100, 7], later, 50)
        .await
        .unwrap();
    dir.unregister(&"7104".parse().unwrap(), later)
        .await
        .unwrap();
    dir.register(registration("7200", "other", "00aabbccddee"), later)
        .await
        .unwrap();
    update_a(&dir, "7200", [203, 0, 113, 5], later, 51)
        .await
        .unwrap();
    assert_eq!(dir.commit_refresh(prepared, later).await.unwrap(), 6);
    let earliest = check_consistent(&dir, later);
    assert!(earliest >= later as u32 + VALIDITY, "all signed afresh");
    assert_eq!(dir.refresh_signatures(later, 100).await.unwrap(), 0);
}

/// A signed start in two steps: once open, the terminals are in the view but the signed
/// zone is not (answers with DO wait), and a change waits for the writer lock; `finish`
/// puts the stored signatures in force with the serial moved on, and the change then goes
/// through, signed.
#[tokio::test]
async fn a_signed_start_serves_the_terminals_first_and_changes_wait_for_its_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let (stored, serial) = {
        let dir = open_signed(tmp.path(), T);
        online_fleet(&dir, 7300, 4).await;
        (terminal_sigs(&dir), dir.view().serial())
    };
    let (dir, start) = Directory::open_signing(
        tmp.path(),
        Zone::embedded_default(),
        Limits::default(),
        T + 5,
    )
    .unwrap();
    {
        let view = dir.view();
        assert!(view.signatures_pending() && view.signed().is_none());
        assert_eq!(view.len(), 4, "the terminals are served at once");
        assert_eq!(view.serial(), serial);
    }
    assert_eq!(dir.signatures(), Signatures::Pending);
    assert!(dir.is_signed());
    // A change waits for the signed zone: it cannot take the writer lock yet.
    let waiting = {
        let dir = dir.clone();
        tokio::spawn(async move { update_a(&dir, "7301", [198, 51, 100, 9], T + 5, 60).await })
    };
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiting.is_finished(),
        "the change waits for the signatures"
    );
    assert_eq!(dir.view().serial(), serial);
    tokio::task::spawn_blocking(move || start.finish())
        .await
        .unwrap()
        .unwrap();
    dir.signatures_ready().await.unwrap();
    assert_eq!(dir.signatures(), Signatures::Ready);
    {
        let view = dir.view();
        assert!(!view.signatures_pending() && view.signed().is_some());
        assert!(view.serial() > serial);
    }
    waiting.await.unwrap().unwrap();
    // The others' stored signatures were kept, not made again.
    let moved = CodeKey::from_digits(b"7301").unwrap();
    let others = |sigs: Vec<(CodeKey, _)>| -> Vec<_> {
        sigs.into_iter().filter(|(key, _)| *key != moved).collect()
    };
    assert_eq!(others(stored), others(terminal_sigs(&dir)));
    check_consistent(&dir, T + 5);
    assert!(dir.view().signed().unwrap().terminal(moved).is_some());
}

/// The SOA's signature a directory serves at its serial (made if none was yet).
fn soa_signature(dir: &Directory, now: u64) -> Record {
    let zone = dir.zone();
    let view = dir.view();
    let soa = zone.soa_record(view.serial());
    view.signed()
        .unwrap()
        .rrsig(&zone, std::slice::from_ref(&soa), now)
        .unwrap()
}

/// A signed restart used to move the serial on every time, since the static names were
/// signed afresh at each start: every secondary then took the whole zone, a million
/// terminals' signatures, after each restart of the primary. Now a restart after a stop
/// serves the zone exactly as it was, under the same serial (the terminals', the static
/// names' and the SOA's signatures all kept), and the serial moves only when something
/// must be signed again: after a crash (the SOA's signature was not kept), or when the
/// static names' signatures come due.
#[tokio::test]
async fn a_signed_restart_after_a_stop_keeps_the_serial_and_every_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open_signed(tmp.path(), T);
    online_fleet(&dir, 7400, 5).await;
    let soa = soa_signature(&dir, T + 10);
    dir.keep_signatures().await.unwrap();
    let (serial, sigs) = (dir.view().serial(), terminal_sigs(&dir));
    let statics = dir.inner.commit.store().static_sigs().unwrap();
    assert!(statics.is_some(), "the static names' signatures are stored");
    drop(dir);

    let (dir, from) = open_signed_from(tmp.path(), T + 20);
    assert_eq!(from, SignaturesFrom::Saved, "the copy saved at the stop");
    assert_eq!(
        dir.view().serial(),
        serial,
        "a restart after a stop keeps the serial"
    );
    assert_eq!(terminal_sigs(&dir), sigs);
    assert_eq!(dir.inner.commit.store().static_sigs().unwrap(), statics);
    assert_eq!(
        soa_signature(&dir, T + 30),
        soa,
        "the same SOA signature is served"
    );
    check_consistent(&dir, T + 30);
    // Saved again, then a change after it (the static names' signatures still fit the new
    // chain), then a crash.
    dir.keep_signatures().await.unwrap();
    update_a(&dir, "7402", [198, 51, 100, 42], T + 40, 70)
        .await
        .unwrap();
    check_consistent(&dir, T + 40);
    let (serial, sigs) = (dir.view().serial(), terminal_sigs(&dir));
    drop(dir);

    // No SOA signature was kept at this serial, so it moves on; the signatures saved
    // before the change are not taken: the store's table is read.
    let (dir, from) = open_signed_from(tmp.path(), T + 50);
    assert_eq!(
        from,
        SignaturesFrom::Table,
        "not the copy saved before the change"
    );
    assert_eq!(dir.view().serial(), serial + 1);
    assert_eq!(terminal_sigs(&dir), sigs, "the change's signatures");
    check_consistent(&dir, T + 50);
    dir.keep_signatures().await.unwrap();
    let serial = dir.view().serial();
    drop(dir);

    // Stopped long enough for the static names' signatures to come due: they are made
    // again at the start (the terminals' too), with a new serial.
    let later = T + u64::from(VALIDITY - REFRESH) + 3600;
    let (dir, from) = open_signed_from(tmp.path(), later);
    assert_eq!(from, SignaturesFrom::Saved);
    assert_eq!(dir.view().serial(), serial + 1);
    let resigned = terminal_sigs(&dir);
    assert!(
        resigned
            .iter()
            .zip(&sigs)
            .all(|(now, before)| now != before),
        "every terminal signed again"
    );
    assert_ne!(dir.inner.commit.store().static_sigs().unwrap(), statics);
    check_consistent(&dir, later);
}

/// What a battery of answers with DO reads from the published signatures at `now`: each
/// terminal's existence and its A RRset's RRSIG, a NODATA proof, NXDOMAIN proofs around and
/// beyond the terminals, and the DNSKEY's RRSIG.
fn signed_answers(dir: &Directory, now: u64) -> Vec<Record> {
    let zone = dir.zone();
    let view = dir.view();
    let signed = view.signed().expect("answers with DO are given");
    let mut records = Vec::new();
    let mut entries: Vec<_> = view.entries().collect();
    entries.sort_unstable_by_key(|(key, _)| *key);
    for (key, hot) in entries {
        let owner = crate::dnssec::staging::terminal_owner(&zone, &key.to_code());
        assert_eq!(signed.exists(&owner), !hot.addresses.is_empty());
        let rrset = crate::update::address_records(&owner, &hot.addresses, RecordType::A);
        if !rrset.is_empty() {
            records.push(signed.rrsig(&zone, &rrset, now).expect("an RRSIG"));
            records.extend(signed.nodata(&zone, &owner));
        }
    }
    for name in ["7500", "7503", "7599", "1", "99999999", "x.7501", "nothing"] {
        let name = Name::from_ascii(name)
            .unwrap()
            .append_domain(zone.origin())
            .unwrap();
        if !signed.exists(&name) {
            records.extend(signed.nxdomain(&zone, &name));
        }
    }
    let dnskeys = signed.dnskey_records(&zone);
    records.extend(signed.rrsig(&zone, &dnskeys, now));
    records
}

/// A signed start after a stop used to refuse every answer with DO until the copy saved at
/// the stop was read whole and the signed zone built in memory, and read that copy on the
/// second core beside the terminals' read, which it slowed. Now the copy is looked up in
/// place as soon as the terminals are read: answers with DO are given at once, the same as
/// once the signed zone is in memory; transfers still wait, and a copy that a later commit
/// made stale is not looked up.
#[tokio::test]
async fn a_signed_start_after_a_stop_answers_with_do_in_place_until_its_signatures_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open_signed(tmp.path(), T);
    online_fleet(&dir, 7500, 12).await;
    dir.unregister(&"7503".parse().unwrap(), T).await.unwrap();
    dir.register(registration("7590", "acme", "00aabbccddee"), T)
        .await
        .unwrap();
    let before_stop = signed_answers(&dir, T + 10);
    dir.keep_signatures().await.unwrap();
    drop(dir);

    let (dir, start) = Directory::open_signing(
        tmp.path(),
        Zone::embedded_default(),
        Limits::default(),
        T + 20,
    )
    .unwrap();
    let in_place = {
        let view = dir.view();
        assert!(view.signatures_pending(), "transfers wait");
        assert!(!view.signed_answers_pending(), "answers with DO do not");
        let signed = view.signed().expect("answered in place");
        assert!(signed.nsec3_chain(&dir.zone()).is_empty());
        drop(view);
        signed_answers(&dir, T + 20)
    };
    assert_eq!(in_place.len(), before_stop.len());
    for (at, (got, want)) in in_place.iter().zip(&before_stop).enumerate() {
        assert_eq!(
            got, want,
            "answer record {at}: the zone as the stop left it"
        );
    }
    // No SOA signature was asked for before the stop: the one made in place is kept.
    let soa = soa_signature(&dir, T + 20);
    assert_eq!(start.finish().unwrap(), SignaturesFrom::Saved);
    assert!(!dir.view().signatures_pending());
    assert_eq!(signed_answers(&dir, T + 20), in_place);
    assert_eq!(soa_signature(&dir, T + 20), soa);
    check_consistent(&dir, T + 20);

    // Saved again, then changed: the copy is stale, and answers with DO wait.
    dir.keep_signatures().await.unwrap();
    update_a(&dir, "7501", [198, 51, 100, 7], T + 30, 80)
        .await
        .unwrap();
    drop(dir);
    let (dir, start) = Directory::open_signing(
        tmp.path(),
        Zone::embedded_default(),
        Limits::default(),
        T + 40,
    )
    .unwrap();
    assert!(dir.view().signed_answers_pending() && dir.view().signed().is_none());
    assert_eq!(start.finish().unwrap(), SignaturesFrom::Table);
    check_consistent(&dir, T + 40);
}

/// Regression: after a new zone-signing key became active, an update (or a join or leave
/// that signed its predecessor's NSEC3 again) signed only what changed but cleared the
/// terminal's "sign again" mark, so the refresh skipped the rest of its signatures; when the
/// old key left the DNSKEY RRset, those RRSIGs named a key that was gone (`delv`: "broken
/// trust chain"; `ldns-verify-zone`: "No keys").
#[tokio::test]
async fn a_rollover_with_changes_in_its_window_leaves_no_signature_by_the_old_key() {
    const PROPAGATION: u64 = 300;
    let tmp = tempfile::tempdir().unwrap();
    let dir = open_signed(tmp.path(), T);
    online_fleet(&dir, 8000, 12).await;
    // A first rollover makes the CSK a KSK beside a ZSK; the second replaces that ZSK,
    // which then leaves the RRset.
    let mut at = T + 10;
    for round in 0..2u8 {
        let mac = 200 + 10 * round;
        let new = dir.start_rollover(at).await.unwrap();
        at += 3600 + PROPAGATION;
        assert_eq!(
            dir.advance_keys(at, PROPAGATION).await.unwrap(),
            Some(KeyEvent::Activated(new))
        );
        // In the window, before the refresh signs anything: a move, a join, a leave.
        let joins = format!("{}", 8100 + u32::from(round));
        update_a(&dir, "8000", [198, 51, 100, round], at, mac)
            .await
            .unwrap();
        update_a(&dir, "8005", [198, 51, 100, 8], at, mac + 1)
            .await
            .unwrap();
        let mid = format!("00112233ff{round:02x}");
        dir.register(registration(&joins, "acme", &mid), at)
            .await
            .unwrap();
        update_a(&dir, &joins, [198, 51, 100, 9], at, mac + 2)
            .await
            .unwrap();
        let leaves = format!("{}", 8003 + u32::from(round));
        dir.unregister(&leaves.parse().unwrap(), at).await.unwrap();
        // The refresh, a few at a time, then whatever else the key's retirement waits for.
        while dir.refresh_signatures(at, 3).await.unwrap() > 0 {}
        for step in [1, 3600 + PROPAGATION + 1, 1] {
            at += step;
            dir.advance_keys(at, PROPAGATION).await.unwrap();
        }
    }
    let keys = dir.zone_keys().unwrap();
    assert_eq!(keys.len(), 2, "the replaced ZSK was removed");
    let tags: Vec<u16> = keys.iter().map(|k| k.key_tag().unwrap()).collect();
    for (code, sigs) in terminal_sigs(&dir) {
        let Some(sigs) = sigs else { continue };
        for sig in [sigs.a, sigs.aaaa, Some(sigs.nsec3)].into_iter().flatten() {
            assert!(
                tags.contains(&sig.key_tag),
                "{code:?} holds a signature by key {}, not in {tags:?}",
                sig.key_tag
            );
        }
    }
    check_consistent(&dir, at);
}

/// Regression: the retired key's wait came from today's `max_ttl`: lowered between
/// restarts, it removed the key while caches still held RRsets served with the longer TTL
/// stored before, signed by that key.
#[tokio::test]
async fn a_retired_key_waits_for_the_longest_ttl_served_not_todays_cap() {
    const PROPAGATION: u64 = 300;
    let tmp = tempfile::tempdir().unwrap();
    let long = Limits {
        max_ttl: 7200,
        ..Limits::default()
    };
    let dir = Directory::open_signed(tmp.path(), Zone::embedded_default(), long, T).unwrap();
    dir.register(registration("8000", "acme", "001122330000"), T)
        .await
        .unwrap();
    let (zone, mut updates) = super::tests::set_a("8000", [192, 0, 2, 1]);
    updates[1].ttl = 7200;
    let message = UpdateMessage {
        zone: &zone,
        prerequisites: &[],
        updates: &updates,
    };
    dir.update(&"8000".parse().unwrap(), &message, &signed(T, 1), None, T)
        .await
        .unwrap();
    drop(dir);
    // Restarted with the default cap (60 s): the stored record is still served for 7200 s.
    let dir = open_signed(tmp.path(), T + 10);
    let mut at = T + 10;
    for round in 0..2 {
        let new = dir.start_rollover(at).await.unwrap();
        at += 3600 + PROPAGATION;
        assert_eq!(
            dir.advance_keys(at, PROPAGATION).await.unwrap(),
            Some(KeyEvent::Activated(new))
        );
        while dir.refresh_signatures(at, 100).await.unwrap() > 0 {}
        at += 1;
        // Noticed as done here.
        assert_eq!(dir.refresh_signatures(at, 100).await.unwrap(), 0);
        if round == 0 {
            at += 100_000;
        }
    }
    let done = at;
    // The zone's other TTLs (the SOA's 3600) have passed, the terminal's 7200 has not.
    assert_eq!(
        dir.advance_keys(done + 3600 + PROPAGATION + 1, PROPAGATION)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        dir.advance_keys(done + 7200 + PROPAGATION, PROPAGATION)
            .await
            .unwrap(),
        Some(KeyEvent::Removed(_))
    ));
}
