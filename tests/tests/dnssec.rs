//! DNSSEC checked by validators no one here wrote: unbound (with the zone's DS from
//! `nameserver dnssec ds` as its trust anchor and a stub zone pointing at the directory),
//! and BIND's `dnssec-verify` and Knot's `kzonecheck` on the transferred zone.

mod support;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::unbound::{Lookup, Unbound};
use support::{Nameserver, require, status_of, text, transfer_key};

const ZONE: &str = "dial.example";

/// A directory with DNSSEC on, and its DS line.
fn signed_directory(data: &Path, extra: &[&str]) -> (Nameserver, String) {
    let mut args = vec!["--dnssec"];
    args.extend_from_slice(extra);
    let ns = Nameserver::start(data, &args);
    let out = ns.admin(&["dnssec", "ds"]);
    assert!(out.status.success(), "dnssec ds: {}", text(&out));
    let ds = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        ds.starts_with("dial.example. IN DS ") && ds.contains(" 13 2 "),
        "a SHA-256 DS of an algorithm 13 key: {ds}"
    );
    (ns, ds)
}

fn set_addresses(ns: &Nameserver, key: &Path, code: &str, records: &[(&str, &str)]) {
    let mut script =
        format!("zone {ZONE}\nupdate delete {code}.{ZONE} A\nupdate delete {code}.{ZONE} AAAA\n");
    for (rtype, address) in records {
        script.push_str(&format!("update add {code}.{ZONE} 60 {rtype} {address}\n"));
    }
    script.push_str("send\n");
    let out = ns.nsupdate(Some(key), &script);
    assert!(out.status.success(), "nsupdate: {}", text(&out));
}

/// Waits until `check` holds for unbound's answer to `name`/`rtype`, or fails with it.
fn until(unbound: &Unbound, name: &str, rtype: &str, check: impl Fn(&Lookup) -> bool) -> Lookup {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lookup = unbound.lookup(name, rtype);
        if check(&lookup) {
            return lookup;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {rtype}: {lookup:?}\nunbound: {}",
            unbound.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn unbound_validates_answers_nodata_and_nxdomain_through_updates_and_expiry() {
    require("dig", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("nameserver.toml");
    // Leases of 2 s for updates that ask none, so that one runs out during the test.
    std::fs::write(&config, "lease_min = 1\nlease_default = 2\n").unwrap();
    let (ns, ds) = signed_directory(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let both = ns.register("4711", "acme", "001122334455", tmp.path());
    let v4_only = ns.register("4712", "acme", "001122334456", tmp.path());
    ns.register("4713", "acme", "001122334457", tmp.path());
    let unbound = Unbound::start(tmp.path(), &ds, ns.addr.port());

    // The apex and its keys validate.
    let soa = unbound.lookup(ZONE, "SOA");
    assert!(soa.authenticated && soa.status == "NOERROR", "{soa:?}");

    // Registered codes with addresses: AD, the addresses.
    set_addresses(
        &ns,
        &both,
        "4711",
        &[("A", "192.0.2.7"), ("AAAA", "2001:db8::7")],
    );
    set_addresses(&ns, &v4_only, "4712", &[("A", "192.0.2.12")]);
    let a = until(&unbound, "4711.dial.example", "A", |l| {
        l.answers.contains("192.0.2.7")
    });
    assert!(a.authenticated, "{a:?}");
    let aaaa = unbound.lookup("4711.dial.example", "AAAA");
    assert!(
        aaaa.authenticated && aaaa.answers.contains("2001:db8::7"),
        "{aaaa:?}"
    );

    // NODATA: 4712 has no AAAA.
    let nodata = unbound.lookup("4712.dial.example", "AAAA");
    assert_eq!(nodata.status, "NOERROR", "{nodata:?}");
    assert!(
        nodata.authenticated && !nodata.answers.contains("AAAA"),
        "{nodata:?}"
    );

    // NXDOMAIN: a code no one has, a name below a code, and a registered code with no
    // address (it owns no records in the signed zone).
    for name in [
        "999.dial.example",
        "x.4711.dial.example",
        "4713.dial.example",
    ] {
        let nx = unbound.lookup(name, "A");
        assert_eq!(nx.status, "NXDOMAIN", "{name}: {nx:?}");
        assert!(nx.authenticated, "{name}: {nx:?}");
    }

    // After an update, the new address validates.
    set_addresses(&ns, &both, "4711", &[("A", "192.0.2.8")]);
    let moved = until(&unbound, "4711.dial.example", "A", |l| {
        l.answers.contains("192.0.2.8")
    });
    assert!(moved.authenticated, "{moved:?}");
    let gone = unbound.lookup("4711.dial.example", "AAAA");
    assert!(gone.authenticated && gone.status == "NOERROR", "{gone:?}");

    // After the lease runs out, the terminal's name leaves the zone: a validated NXDOMAIN.
    let expired = until(&unbound, "4712.dial.example", "A", |l| {
        l.status == "NXDOMAIN"
    });
    assert!(expired.authenticated, "{expired:?}");

    // Without DO, answers are as they were: no RRSIG.
    let plain = ns.dig(&["4711.dial.example", "A"]);
    assert!(!plain.contains("RRSIG"), "{plain}");
    assert!(
        unbound
            .log()
            .lines()
            .all(|l| !l.contains("validation failure")),
        "{}",
        unbound.log()
    );
}

/// Forwards datagrams between a client and `upstream` on loopback, changing the address
/// 192.0.2.7 into 192.0.2.9 in every answer that carries it.
struct Tamper {
    port: u16,
    altered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for Tamper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Tamper {
    fn start(upstream: u16) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let altered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, done) = (altered.clone(), stop.clone());
        std::thread::spawn(move || {
            let upstream_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            upstream_socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0u8; 4096];
            while !done.load(Ordering::SeqCst) {
                let Ok((n, client)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                upstream_socket
                    .send_to(&buf[..n], ("127.0.0.1", upstream))
                    .unwrap();
                let Ok(m) = upstream_socket.recv(&mut buf) else {
                    continue;
                };
                let answer = &mut buf[..m];
                if let Some(at) = answer.windows(4).position(|w| w == [192, 0, 2, 7]) {
                    answer[at + 3] = 9;
                    count.fetch_add(1, Ordering::SeqCst);
                }
                let _ = socket.send_to(answer, client);
            }
        });
        Self {
            port,
            altered,
            stop,
        }
    }
}

#[test]
fn an_address_altered_in_flight_fails_validation() {
    require("dig", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let (ns, ds) = signed_directory(&tmp.path().join("data"), &[]);
    let key = ns.register("4711", "acme", "001122334455", tmp.path());
    set_addresses(&ns, &key, "4711", &[("A", "192.0.2.7")]);
    let tamper = Tamper::start(ns.addr.port());
    let unbound = Unbound::start(tmp.path(), &ds, tamper.port);
    let lookup = unbound.lookup("4711.dial.example", "A");
    assert!(
        tamper.altered.load(Ordering::SeqCst) > 0,
        "the proxy altered no answer"
    );
    assert_eq!(lookup.status, "SERVFAIL", "{lookup:?}");
    assert!(!lookup.answers.contains("192.0.2.9"), "{lookup:?}");
    // The same lookup straight at the directory validates.
    let direct_dir = tmp.path().join("direct");
    std::fs::create_dir_all(&direct_dir).unwrap();
    let direct = Unbound::start(&direct_dir, &ds, ns.addr.port());
    let valid = direct.lookup("4711.dial.example", "A");
    assert!(
        valid.authenticated && valid.answers.contains("192.0.2.7"),
        "{valid:?}"
    );
}

#[test]
fn the_transferred_signed_zone_verifies_with_dnssec_verify_and_kzonecheck_and_survives_a_restart() {
    require("dig", "bind9-dnsutils");
    require("dnssec-verify", "bind9-utils");
    require("kzonecheck", "knot-dnssecutils");
    let tmp = tempfile::tempdir().unwrap();
    let (xfer, _) = transfer_key(tmp.path());
    let data = tmp.path().join("data");
    let (mut ns, ds) = signed_directory(&data, &["--transfer-key", xfer.to_str().unwrap()]);
    // The size: a fleet with both families, one family, and none.
    const FLEET: usize = 100_000;
    let fleet = tmp.path().join("fleet.txt");
    let lines: String = (0..FLEET)
        .map(|i| {
            let mid = format!("0a00{i:08x}");
            match i % 4 {
                0 => format!("{} acme {mid}\n", 1_000_000 + i),
                1 => format!("{} acme {mid} 192.0.2.{}\n", 1_000_000 + i, i % 250 + 1),
                _ => format!(
                    "{} acme {mid} 198.51.100.{} 2001:db8::{:x}:{:x}\n",
                    1_000_000 + i,
                    i % 250 + 1,
                    i >> 16,
                    i & 0xffff
                ),
            }
        })
        .collect();
    std::fs::write(&fleet, lines).unwrap();
    let out = ns.admin(&["import", fleet.to_str().unwrap()]);
    assert!(out.status.success(), "import: {}", text(&out));
    let axfr = |ns: &Nameserver| {
        let out = ns.dig(&[
            "-k",
            xfer.to_str().unwrap(),
            ZONE,
            "AXFR",
            "+nocmd",
            "+nostats",
            // The first message waits for the whole signed zone's chain to be read.
            "+time=60",
        ]);
        let zone: String = out
            .lines()
            // The transfer's TSIG records go by their type: base32 hashes and base64
            // signatures can hold the letters "TSIG" too.
            .filter(|l| {
                !l.starts_with(';') && !l.is_empty() && l.split_whitespace().nth(3) != Some("TSIG")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        zone
    };
    let zone = axfr(&ns);
    let nsec3 = zone
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("NSEC3"))
        .count();
    // Three in four terminals have addresses; and the apex and ns1.
    assert_eq!(nsec3, FLEET / 4 * 3 + 2, "one NSEC3 per name with records");
    let file = tmp.path().join("axfr.zone");
    std::fs::write(&file, &zone).unwrap();
    // -z: the zone's one key is a CSK (SEP flag) and signs everything.
    let verify = Command::new("dnssec-verify")
        .args(["-z", "-o", ZONE])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && text(&verify).contains("Zone fully signed"),
        "dnssec-verify: {}",
        text(&verify)
    );
    // Knot's checker: every signature verified, the NSEC3 chain complete.
    let check = Command::new("kzonecheck")
        .args(["-d", "on", "-o", ZONE])
        .arg(&file)
        .output()
        .unwrap();
    assert!(check.status.success(), "kzonecheck: {}", text(&check));

    // A restart after a stop changes nothing: same DS, same serial, and the zone
    // transferred after it is the one before, every signature included (the SOA's too).
    // The terminals' signatures are read from the copy saved at the stop.
    let serial = ns.serial(ZONE);
    ns.terminate();
    let (mut ns, ds_again) = signed_directory(&data, &["--transfer-key", xfer.to_str().unwrap()]);
    assert_eq!(ds, ds_again);
    assert_eq!(ns.serial(ZONE), serial);
    // The terminals' records and signatures and the NSEC3 chain come from the store as
    // they were; only the static names' few signatures are made afresh at start-up.
    let stored = |zone: &str| -> Vec<String> {
        zone.lines()
            .filter(|l| {
                let label = l.split('.').next().unwrap_or_default();
                let code = label.len() == 7 && label.bytes().all(|b| b.is_ascii_digit());
                code || l.split_whitespace().nth(3) == Some("NSEC3")
            })
            .map(str::to_owned)
            .collect()
    };
    // (A transfer waits for the signatures: the start has logged where they came from.)
    let again = axfr(&ns);
    // Answers with DO were given from that copy in place until it was read.
    assert!(
        !ns.log().contains("signed the zone's terminals")
            && ns
                .log()
                .contains("signatures taken up from the copy saved at the stop")
            && ns.log().contains(IN_PLACE),
        "{}",
        ns.log()
    );
    assert_eq!(stored(&again), stored(&zone));
    assert!(again == zone, "the zone changed across a restart");
    // After kill -9 nothing is saved: the store's table gives the same signatures (only the
    // serial and the SOA's signature move on).
    ns.kill9();
    let (ns, _) = signed_directory(&data, &["--transfer-key", xfer.to_str().unwrap()]);
    let again = axfr(&ns);
    assert!(
        ns.log().contains("signatures read from the store's table")
            && !ns.log().contains("signed the zone's terminals")
            && !ns.log().contains(IN_PLACE),
        "{}",
        ns.log()
    );
    assert_eq!(stored(&again), stored(&zone));
    // A and its RRSIG for a quarter, A, AAAA and their RRSIGs for half, and the NSEC3s.
    assert_eq!(
        stored(&zone).len(),
        FLEET / 4 * 2 + FLEET / 2 * 4 + FLEET / 4 * 3 + 2
    );
}

/// What a signed start logs when it answers with DO from the copy saved at the stop.
const IN_PLACE: &str = "answers with DO are given from the signatures saved at the stop, in place";

#[test]
fn a_restored_backup_signs_with_the_same_key() {
    require("dig", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let (ns, ds) = signed_directory(&tmp.path().join("data"), &[]);
    let key = ns.register("4711", "acme", "001122334455", tmp.path());
    set_addresses(&ns, &key, "4711", &[("A", "192.0.2.7")]);
    let file = tmp.path().join("backup.jsonl");
    let out = ns.admin(&["backup", "--output", file.to_str().unwrap()]);
    assert!(out.status.success(), "backup: {}", text(&out));
    drop(ns);
    let restored = tmp.path().join("restored");
    let out = Command::new(support::binary("nameserver"))
        .arg("restore")
        .arg(&file)
        .arg("--data")
        .arg(&restored)
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", text(&out));
    let (ns, ds_restored) = signed_directory(&restored, &[]);
    assert_eq!(ds, ds_restored, "the key came back with the backup");
    let unbound = Unbound::start(tmp.path(), &ds, ns.addr.port());
    let lookup = unbound.lookup("4711.dial.example", "A");
    assert!(
        lookup.authenticated && lookup.answers.contains("192.0.2.7"),
        "{lookup:?}"
    );
}

#[test]
fn unbound_validates_throughout_a_key_rollover() {
    require("dig", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    // Short TTLs and propagation delay, so that the rollover's waits take seconds.
    let zone_file = tmp.path().join("dial.example.zone");
    std::fs::write(
        &zone_file,
        "$ORIGIN dial.example.\n$TTL 2\n@ IN SOA ns1.dial.example. hostmaster.dial.example. 1 3600 600 604800 2\n@ IN NS ns1.dial.example.\nns1 IN A 127.0.0.1\n",
    )
    .unwrap();
    let config = tmp.path().join("nameserver.toml");
    std::fs::write(&config, "max_ttl = 2\ndnssec_propagation_delay = 1\n").unwrap();
    let (xfer, _) = transfer_key(tmp.path());
    let (ns, ds) = signed_directory(
        &tmp.path().join("data"),
        &[
            "--zone-file",
            zone_file.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--transfer-key",
            xfer.to_str().unwrap(),
        ],
    );
    let key = ns.register("4711", "acme", "001122334455", tmp.path());
    set_addresses(&ns, &key, "4711", &[("A", "192.0.2.7")]);
    // Terminals that move, join and leave while the keys change.
    let fleet: Vec<(String, PathBuf)> = (0..6)
        .map(|i| {
            let code = format!("{}", 5000 + i);
            let key = ns.register(&code, "acme", &format!("0011223355{i:02x}"), tmp.path());
            set_addresses(&ns, &key, &code, &[("A", &format!("192.0.2.{}", 20 + i))]);
            (code, key)
        })
        .collect();
    let turn = AtomicUsize::new(0);
    let churn = || {
        let i = turn.fetch_add(1, Ordering::SeqCst);
        let (code, key) = &fleet[i % fleet.len()];
        match i % 3 {
            0 => set_addresses(&ns, key, code, &[]),
            _ => set_addresses(&ns, key, code, &[("A", &format!("198.51.100.{}", i % 250))]),
        }
    };
    let unbound = Unbound::start(tmp.path(), &ds, ns.addr.port());
    let keys = || String::from_utf8_lossy(&ns.admin(&["dnssec", "keys"]).stdout).into_owned();
    let validated = |when: &str| {
        let a = unbound.lookup("4711.dial.example", "A");
        assert!(
            a.authenticated && a.answers.contains("192.0.2.7"),
            "{when}: {a:?}"
        );
        let nx = unbound.lookup("999.dial.example", "A");
        assert!(
            nx.authenticated && nx.status == "NXDOMAIN",
            "{when}: {nx:?}"
        );
    };
    validated("before");
    let out = ns.admin(&["dnssec", "rollover"]);
    assert!(out.status.success(), "rollover: {}", text(&out));
    assert!(keys().contains("ZSK, published"), "{}", keys());
    validated("published");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !keys().contains("ZSK, active") {
        assert!(Instant::now() < deadline, "never activated: {}", keys());
        validated("waiting");
        churn();
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        keys().contains("KSK, active"),
        "the CSK signs the keys now: {}",
        keys()
    );
    validated("activated");
    // A second rollover: the first ZSK retires, then leaves the DNSKEY RRset.
    let out = ns.admin(&["dnssec", "rollover"]);
    assert!(out.status.success(), "rollover: {}", text(&out));
    while keys().matches("DNSKEY").count() != 2 || keys().contains("published") {
        assert!(Instant::now() < deadline, "never finished: {}", keys());
        validated("second rollover");
        churn();
        std::thread::sleep(Duration::from_millis(300));
    }
    validated("after");
    // Every RRSIG of the transferred zone is by a key of its DNSKEY RRset, and the zone
    // verifies (ldns-verify-zone reports "No keys" for a signature by a removed key).
    require("ldns-verify-zone", "ldnsutils");
    let axfr = transfer(&ns, &xfer, "AXFR");
    let dnskey_tags: BTreeSet<String> =
        String::from_utf8_lossy(&ns.admin(&["dnssec", "keys"]).stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("key ")?.split(':').next().map(str::to_owned))
            .collect();
    for line in axfr.iter().filter(|l| l.split(' ').nth(3) == Some("RRSIG")) {
        let tag = line.split(' ').nth(10).unwrap_or_default();
        assert!(dnskey_tags.contains(tag), "{line}: not by {dnskey_tags:?}");
    }
    let file = tmp.path().join("axfr.zone");
    std::fs::write(&file, axfr.join("\n") + "\n").unwrap();
    let verify = Command::new("ldns-verify-zone")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "ldns-verify-zone: {}",
        text(&verify)
    );
    // The DS never changed.
    let ds_after = String::from_utf8_lossy(&ns.admin(&["dnssec", "ds"]).stdout).into_owned();
    assert_eq!(ds_after.lines().next(), ds.lines().next());
    assert!(ns.log().contains("dnssec rollover"), "{}", ns.log());
}

#[test]
fn compact_denial_validates_and_reveals_no_other_name() {
    require("dig", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let (xfer, _) = transfer_key(tmp.path());
    let (ns, ds) = signed_directory(
        &tmp.path().join("data"),
        &[
            "--denial",
            "compact",
            "--transfer-key",
            xfer.to_str().unwrap(),
        ],
    );
    let v4_only = ns.register("4711", "acme", "001122334455", tmp.path());
    set_addresses(&ns, &v4_only, "4711", &[("A", "192.0.2.7")]);
    ns.register("4712", "acme", "001122334456", tmp.path());

    // Straight at the directory: NOERROR, one NSEC at the name itself whose next name is
    // its immediate successor, NXNAME (type 128) for a name that does not exist.
    let nx = ns.dig(&["+dnssec", "+norec", "999.dial.example", "A"]);
    assert_eq!(status_of(&nx), "NOERROR", "{nx}");
    let nsec: Vec<&str> = nx.lines().filter(|l| l.contains("\tNSEC\t")).collect();
    assert_eq!(nsec.len(), 1, "{nx}");
    assert!(
        nsec[0].starts_with("999.dial.example.") && nsec[0].contains("\\000.999.dial.example."),
        "{nx}"
    );
    assert!(nsec[0].contains("TYPE128"), "NXNAME in the bitmap: {nx}");
    assert!(!nx.contains("NSEC3"), "{nx}");
    // An existing name without the type: its types, no NXNAME.
    let nodata = ns.dig(&["+dnssec", "+norec", "4711.dial.example", "AAAA"]);
    let line = nodata
        .lines()
        .find(|l| l.contains("\tNSEC\t"))
        .unwrap_or_else(|| panic!("{nodata}"));
    assert!(
        line.contains(" A ") && !line.contains("TYPE128"),
        "{nodata}"
    );
    // Without DO, NXDOMAIN as always.
    assert_eq!(ns.status(&["999.dial.example", "A"]), "NXDOMAIN");
    // NXNAME itself is never asked for (RFC 9824 §3.5).
    assert_eq!(ns.status(&["999.dial.example", "TYPE128"]), "FORMERR");
    // No NSEC3PARAM, and the zone is not transferred.
    let param = ns.dig(&["+dnssec", "dial.example", "NSEC3PARAM"]);
    assert!(!param.contains("\tNSEC3PARAM\t"), "{param}");
    let axfr = ns.dig(&["-k", xfer.to_str().unwrap(), "dial.example", "AXFR"]);
    assert!(!axfr.contains("\tSOA\t"), "{axfr}");

    // A validator accepts the answers: AD on the address, on the denials (NOERROR), and on
    // a registered code without an address.
    let unbound = Unbound::start(tmp.path(), &ds, ns.addr.port());
    let a = unbound.lookup("4711.dial.example", "A");
    assert!(a.authenticated && a.answers.contains("192.0.2.7"), "{a:?}");
    for (name, rtype) in [
        ("999.dial.example", "A"),
        ("4711.dial.example", "AAAA"),
        ("4712.dial.example", "A"),
        ("x.4711.dial.example", "A"),
    ] {
        let denied = unbound.lookup(name, rtype);
        assert!(
            denied.authenticated && denied.status == "NOERROR" && denied.answers.is_empty(),
            "{name} {rtype}: {denied:?}"
        );
    }
}

/// The zone's records from a transfer as `dig` prints them, in order, one line each with
/// single spaces, TSIG records left out (by type).
fn transfer(ns: &Nameserver, key: &Path, qtype: &str) -> Vec<String> {
    ns.dig(&[
        "-k",
        key.to_str().unwrap(),
        ZONE,
        qtype,
        "+nocmd",
        "+nostats",
        "+noall",
        "+answer",
    ])
    .lines()
    .filter(|l| !l.starts_with(';') && !l.is_empty())
    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    .filter(|l| l.split(' ').nth(3) != Some("TSIG"))
    .collect()
}

fn is_soa(line: &str) -> bool {
    line.split(' ').nth(3) == Some("SOA")
}

/// Applies an incremental transfer's differences (RFC 1995) to `zone`: every removal must
/// find its record. Panics when the transfer is not incremental.
fn apply_ixfr(zone: &[String], ixfr: &[String]) -> BTreeSet<String> {
    let mut records: BTreeSet<String> = zone.iter().cloned().collect();
    assert!(
        ixfr.len() >= 2 && is_soa(&ixfr[1]),
        "not incremental: {ixfr:#?}"
    );
    let mut removing = false;
    for line in &ixfr[1..ixfr.len() - 1] {
        if is_soa(line) {
            removing = !removing;
        }
        if removing {
            assert!(
                records.remove(line),
                "removes a record the zone lacks: {line}"
            );
        } else {
            records.insert(line.clone());
        }
    }
    records
}

/// An IXFR from `serial` applied to `zone` (the AXFR at that serial) is the AXFR now,
/// which is returned.
fn assert_ixfr_leads_on(ns: &Nameserver, xfer: &Path, serial: u32, zone: &[String]) -> Vec<String> {
    let ixfr = transfer(ns, xfer, &format!("IXFR={serial}"));
    let now = transfer(ns, xfer, "AXFR");
    assert_eq!(
        apply_ixfr(zone, &ixfr),
        now.iter().cloned().collect::<BTreeSet<_>>()
    );
    now
}

/// An IXFR from `serial` is the whole zone (AXFR form) and equals the AXFR, and the server
/// logged it as a full IXFR for `why`.
fn assert_whole_zone(ns: &Nameserver, xfer: &Path, serial: u32, why: &str) {
    let ixfr = transfer(ns, xfer, &format!("IXFR={serial}"));
    assert!(!is_soa(&ixfr[1]), "the whole zone: {ixfr:#?}");
    let whole: BTreeSet<String> = ixfr[..ixfr.len() - 1].iter().cloned().collect();
    let now: BTreeSet<String> = transfer(ns, xfer, "AXFR").into_iter().collect();
    assert_eq!(whole, now);
    let logged = format!("kind=IXFR (full zone: {why})");
    assert!(ns.log().contains(&logged), "{}", ns.log());
}

/// An IXFR of the signed zone applied to the AXFR it follows (each removal finding its
/// record exactly) is the AXFR at the new serial, through a move, a change of families, a
/// leave and a join; and across a restart after a stop, from the serial it stopped at.
/// From before a restart, or across a new key, the primary sends the whole zone instead,
/// which is the zone too.
#[test]
fn a_signed_ixfr_applied_to_the_zone_it_follows_is_the_new_zone() {
    require("dig", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let (xfer, _) = transfer_key(tmp.path());
    let data = tmp.path().join("data");
    let args = ["--transfer-key", xfer.to_str().unwrap()];
    let (mut ns, _) = signed_directory(&data, &args);
    let keys: Vec<PathBuf> = (1..=5)
        .map(|i| {
            let code = format!("600000{i}");
            let key = ns.register(&code, "acme", &format!("0a0b0c0d0e0{i}"), tmp.path());
            if i <= 4 {
                set_addresses(&ns, &key, &code, &[("A", &format!("192.0.2.{i}"))]);
            }
            key
        })
        .collect();
    let before = transfer(&ns, &xfer, "AXFR");
    let serial = ns.serial(ZONE);
    let first_serial = serial;
    set_addresses(&ns, &keys[0], "6000001", &[("A", "198.51.100.1")]);
    set_addresses(
        &ns,
        &keys[1],
        "6000002",
        &[("A", "192.0.2.2"), ("AAAA", "2001:db8::2")],
    );
    let out = ns.admin(&["unregister", "--code", "6000003"]);
    assert!(out.status.success(), "{}", text(&out));
    set_addresses(&ns, &keys[4], "6000005", &[("A", "192.0.2.5")]);
    let after = assert_ixfr_leads_on(&ns, &xfer, serial, &before);
    assert!(ns.log().contains("kind=IXFR serial="), "{}", ns.log());

    // A restart after a stop keeps the zone as it was, SOA signature included: an IXFR
    // from the serial it stopped at is a difference still, applied to the zone of before
    // the restart. From an older serial the primary no longer knows what it signed: the
    // whole zone, correct all the same.
    let serial = ns.serial(ZONE);
    ns.terminate();
    let (ns, _) = signed_directory(&data, &args);
    assert_eq!(ns.serial(ZONE), serial);
    set_addresses(&ns, &keys[0], "6000001", &[("A", "198.51.100.7")]);
    assert_ixfr_leads_on(&ns, &xfer, serial, &after);
    assert_whole_zone(&ns, &xfer, first_serial, "signed history not known");

    // A new key (a rollover's first step) changes the DNSKEY RRset and its signature: an
    // IXFR across it is the whole zone too.
    let serial = ns.serial(ZONE);
    let out = ns.admin(&["dnssec", "rollover"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(ns.serial(ZONE) > serial);
    assert_whole_zone(&ns, &xfer, serial, "signed history not known");
}
