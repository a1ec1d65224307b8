//! The directory as a hidden primary for real secondaries from Debian's packages, NSD and
//! Knot, on loopback ports, each configured with a TSIG transfer key.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::unbound::Unbound;
use support::{Nameserver, free_port, require, status_of, text, transfer_key};

const ZONE: &str = "dial.example";
const FLEET: usize = 100_000;

/// A secondary server process, killed on drop.
struct Secondary {
    name: &'static str,
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Drop for Secondary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Secondary {
    fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+time=2",
                "+tries=2",
            ])
            .args(args)
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The answer's records. A reply dig warns about (";; Warning: query response not
    /// set": a stray message, such as another test's NOTIFY to a port that dig's source
    /// port now reuses) is not the secondary's answer: the question is asked again.
    fn short(&self, name: &str, rtype: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..3 {
            lines = self
                .dig(&["+short", name, rtype])
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>();
            if !lines.iter().any(|l| l.starts_with(";;")) {
                break;
            }
        }
        lines
    }

    fn serial(&self) -> Option<u32> {
        self.short(ZONE, "SOA")
            .first()?
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn start_nsd(dir: &Path, primary: u16, secret: &str, port: u16) -> Secondary {
    require("nsd", "nsd");
    let d = dir.display();
    let conf = dir.join("nsd.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  do-ip6: no\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  xfrdir: \"{d}\"\n  database: \"\"\n  username: \"\"\n  chroot: \"\"\n  logfile: \"{d}/nsd.log\"\n  verbosity: 2\n  server-count: 1\n\
             remote-control:\n  control-enable: no\n\
             key:\n  name: \"xfer\"\n  algorithm: hmac-sha256\n  secret: \"{secret}\"\n\
             zone:\n  name: \"{ZONE}\"\n  zonefile: \"{ZONE}.zone\"\n  request-xfr: 127.0.0.1@{primary} xfer\n  allow-notify: 127.0.0.1 xfer\n  provide-xfr: 127.0.0.1 xfer\n"
        ),
    )
    .unwrap();
    let child = Command::new("nsd")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nsd");
    Secondary {
        name: "nsd",
        port,
        child,
        log: dir.join("nsd.log"),
    }
}

fn start_knot(dir: &Path, primary: u16, secret: &str, port: u16) -> Secondary {
    require("knotd", "knot");
    let d = dir.display();
    let conf = dir.join("knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  listen: 127.0.0.1@{port}\n  rundir: \"{d}\"\n\
             log:\n  - target: \"{d}/knot.log\"\n    any: info\n\
             database:\n  storage: \"{d}\"\n\
             key:\n  - id: xfer\n    algorithm: hmac-sha256\n    secret: \"{secret}\"\n\
             remote:\n  - id: primary\n    address: 127.0.0.1@{primary}\n    key: xfer\n\
             acl:\n  - id: notify_from_primary\n    address: 127.0.0.1\n    key: xfer\n    action: notify\n  - id: transfer_out\n    address: 127.0.0.1\n    key: xfer\n    action: transfer\n\
             template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n\
             zone:\n  - domain: {ZONE}\n    master: primary\n    acl: [notify_from_primary, transfer_out]\n"
        ),
    )
    .unwrap();
    let child = Command::new("knotd")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start knotd");
    Secondary {
        name: "knot",
        port,
        child,
        log: dir.join("knot.log"),
    }
}

/// Waits until `check` holds, polling; returns how long it took.
fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn code(i: usize) -> String {
    format!("{}", 5_000_000 + i)
}

/// The address of terminal `i` (loopback range: zone data only, never contacted).
fn address(i: usize) -> String {
    format!("127.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// The zone as an AXFR from `port` gives it: records as sorted lines, comments dropped.
fn axfr(port: u16, key: &Path) -> Vec<String> {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+nocmd", "+nostats"])
        .args(["+noall", "+answer", "-k"])
        .arg(key)
        .args([ZONE, "AXFR"])
        .output()
        .expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

/// nsupdate sending `count` replacements of terminal `i`'s address, numbered from `base`.
fn churn(port: u16, code: &str, key: &Path, i: usize, base: usize, count: usize) -> Child {
    let name = format!("{code}.{ZONE}");
    let mut script = format!("server 127.0.0.1 {port}\nzone {ZONE}\n");
    for j in base..base + count {
        script.push_str(&format!(
            "update delete {name} A\nupdate add {name} 60 A 127.{}.{}.{}\nsend\n",
            i + 1,
            (j >> 8) & 255,
            j & 255
        ));
    }
    let mut child = Command::new("nsupdate")
        .args(["-t", "2", "-r", "0", "-k"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run nsupdate");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut stdin, script.as_bytes());
    });
    child
}

/// A primary on a fixed loopback port with NSD as its secondary: the directories, ports
/// and transfer key they share.
struct NsdLab {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    xfer: PathBuf,
    secret: String,
    nsd_dir: PathBuf,
    nsd_port: u16,
    primary_port: u16,
    /// The primary's `--listen`.
    listen: String,
    /// The primary's `--secondary` (NSD).
    secondary: String,
    /// The primary's data directory.
    data: PathBuf,
}

impl NsdLab {
    /// Starts (or restarts) the primary with its transfer key and NSD as its secondary,
    /// plus `extra` flags.
    fn primary(&self, extra: &[&str]) -> Nameserver {
        let mut flags = vec![
            "--transfer-key",
            self.xfer.to_str().unwrap(),
            "--secondary",
            &self.secondary,
        ];
        flags.extend_from_slice(extra);
        Nameserver::start_in(None, &self.data, &["--listen", &self.listen], &flags)
    }

    /// Registers `count` codes `<prefix>0`, `<prefix>1`, ... with machine ids
    /// `<mid_prefix>00`, ...; returns the codes and their key files.
    fn register(
        &self,
        primary: &Nameserver,
        prefix: &str,
        mid_prefix: &str,
        count: usize,
    ) -> (Vec<String>, Vec<PathBuf>) {
        let codes: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
        let keys = codes
            .iter()
            .enumerate()
            .map(|(i, c)| primary.register(c, "fleet", &format!("{mid_prefix}{i:02}"), &self.root))
            .collect();
        (codes, keys)
    }

    fn start_nsd(&self) -> Secondary {
        start_nsd(
            &self.nsd_dir,
            self.primary_port,
            &self.secret,
            self.nsd_port,
        )
    }

    /// Waits until NSD's AXFR equals the primary's; returns that zone and how long it took.
    /// `context` heads the failure, which shows NSD's log.
    fn nsd_follows(&self, nsd: &Secondary, context: &str) -> (Vec<String>, Duration) {
        let ours = axfr(self.primary_port, &self.xfer);
        let took = wait_until(Duration::from_secs(30), || {
            !ours.is_empty() && axfr(self.nsd_port, &self.xfer) == ours
        });
        let Some(took) = took else {
            panic!(
                "{context}: NSD differs from the primary\nprimary:\n{}\nnsd:\n{}\nnsd log:\n{}",
                ours.join("\n"),
                axfr(self.nsd_port, &self.xfer).join("\n"),
                nsd.log()
            );
        };
        (ours, took)
    }
}

fn nsd_lab() -> NsdLab {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let (xfer, secret) = transfer_key(&root);
    let nsd_dir = root.join("nsd");
    std::fs::create_dir_all(&nsd_dir).unwrap();
    let (nsd_port, primary_port) = (free_port(), free_port());
    NsdLab {
        _tmp: tmp,
        xfer,
        secret,
        nsd_dir,
        nsd_port,
        primary_port,
        listen: format!("127.0.0.1:{primary_port}"),
        secondary: format!("127.0.0.1:{nsd_port}"),
        data: root.join("data"),
        root,
    }
}

/// Regression (visible only after durable): the primary is killed with `kill -9` during
/// update streams while NSD follows it by NOTIFY and IXFR, restarted, and updated again.
/// NSD must end with exactly the primary's zone: a serial it saw must never be reused by
/// the primary with other content, nor be lost so that NSD thinks itself ahead.
#[test]
fn nsd_ends_with_the_primarys_zone_after_kill_9_during_updates() {
    nsd_follows_through_kill_9(false);
}

/// The same with the zone signed: after each restart the primary no longer knows what it
/// signed before, so NSD catches up by the whole zone; it must end with exactly the
/// primary's signed zone, and then follow a change by a signed difference.
#[test]
fn nsd_ends_with_the_primarys_signed_zone_after_kill_9_during_updates() {
    nsd_follows_through_kill_9(true);
}

fn nsd_follows_through_kill_9(signed: bool) {
    const TERMINALS: usize = 3;
    const ROUNDS: usize = 3;
    require("dig", "bind9-dnsutils");
    require("nsupdate", "bind9-dnsutils");
    let lab = nsd_lab();
    let primary_port = lab.primary_port;
    let flags: &[&str] = if signed {
        &["--update-rate-limit", "0", "--dnssec"]
    } else {
        &["--update-rate-limit", "0"]
    };
    let start = || lab.primary(flags);
    let mut primary = start();
    let (codes, keys) = lab.register(&primary, "555200", "00000000000001", TERMINALS);
    let nsd = lab.start_nsd();
    lab.nsd_follows(&nsd, "NSD never loaded the zone");
    let serial = |primary: &Nameserver| primary.serial(ZONE);
    for round in 0..ROUNDS {
        let before = serial(&primary);
        let streams: Vec<Child> = codes
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (code, key))| churn(primary_port, code, key, i, round * 1000, 1000))
            .collect();
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        std::thread::sleep(Duration::from_millis(400 + u64::from(jitter % 800)));
        primary.kill9();
        for mut stream in streams {
            let _ = stream.kill();
            let _ = stream.wait();
        }
        primary = start();
        let churned = serial(&primary) - before;
        assert!(
            churned > 10,
            "round {round}: only {churned} changes before the kill"
        );
        // More updates after the restart, each waited for.
        for (i, (code, key)) in codes.iter().zip(&keys).enumerate() {
            let mut after = churn(primary_port, code, key, i, round * 1000 + 900, 3);
            assert!(after.wait().unwrap().success(), "updates after the restart");
        }
        let (ours, took) = lab.nsd_follows(&nsd, &format!("round {round}"));
        println!(
            "kill -9 round {}: {churned} changes, then NSD held the primary's zone ({} records) {took:?} after the last update",
            round + 1,
            ours.len(),
        );
    }
    if signed {
        // Once NSD holds what this process served, changes go by a signed difference. (NSD
        // itself may ask for one full transfer first: when its reload applied several
        // transfers at once it logs "update failed, restarting transfer" and takes the next
        // one whole. So three changes, each waited for, and at least one incremental.)
        let before = primary.log().lines().count();
        for n in 0..3 {
            let mut last = churn(primary_port, &codes[0], &keys[0], 0, 9000 + n, 1);
            assert!(last.wait().unwrap().success(), "the last updates");
            lab.nsd_follows(&nsd, &format!("change {n} after the kills"));
        }
        let log = primary.log();
        let since: Vec<&str> = log.lines().skip(before).collect();
        assert!(
            since.iter().any(|l| l.contains("kind=IXFR serial=")),
            "{}\nNSD:\n{}",
            since.join("\n"),
            nsd.log()
        );
    }
}

/// Regression: a restored directory came up at the backup's serial, with the backup's
/// journal, while NSD already held newer serials: NSD ignored it, and later applied IXFR
/// deltas to a different base and stayed wrong. Here NSD follows the primary through a
/// backup, more updates, the loss of the primary's data and a restore: it must end with the
/// restored primary's zone, and follow the next change.
#[test]
fn nsd_follows_the_primary_through_a_backup_more_updates_and_a_restore() {
    require("dig", "bind9-dnsutils");
    require("nsupdate", "bind9-dnsutils");
    let lab = nsd_lab();
    let primary_port = lab.primary_port;
    let mut primary = lab.primary(&["--update-rate-limit", "0"]);
    let (codes, keys) = lab.register(&primary, "555400", "00000000000003", 3);
    for (i, (code, key)) in codes.iter().zip(&keys).enumerate() {
        let mut update = churn(primary_port, code, key, i, 0, 1);
        assert!(update.wait().unwrap().success(), "the first addresses");
    }
    let nsd = lab.start_nsd();
    lab.nsd_follows(&nsd, "NSD never loaded the zone");
    let backup = lab.root.join("dial.backup");
    let out = primary.admin(&["backup", "--output", backup.to_str().unwrap()]);
    assert!(out.status.success(), "backup: {}", text(&out));
    let at_backup = primary.serial(ZONE);
    // Changes after the backup, which NSD takes and the backup does not hold.
    let mut later = churn(primary_port, &codes[0], &keys[0], 0, 100, 5);
    assert!(later.wait().unwrap().success(), "updates after the backup");
    lab.nsd_follows(&nsd, "the updates after the backup");
    let newest = primary.serial(ZONE);
    assert!(newest > at_backup);
    // The primary's data is lost; the backup is restored in its place.
    primary.kill9();
    std::fs::remove_dir_all(&lab.data).unwrap();
    let out = Command::new(support::binary("nameserver"))
        .arg("restore")
        .arg(&backup)
        .arg("--data")
        .arg(&lab.data)
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", text(&out));
    primary = lab.primary(&["--update-rate-limit", "0"]);
    let restored = primary.serial(ZONE);
    assert!(
        restored.wrapping_sub(newest) as i32 > 0,
        "the restored serial {restored} is past every serial served ({newest})"
    );
    let (zone, _) = lab.nsd_follows(&nsd, "after the restore");
    assert!(
        zone.iter()
            .any(|l| l.contains("5554000.dial.example") && l.contains("127.1.0.0")),
        "the backup's address, not the lost updates': {zone:?}"
    );
    // And the next change, by whatever transfer NSD asks for.
    let mut next = churn(primary_port, &codes[1], &keys[1], 1, 200, 1);
    assert!(next.wait().unwrap().success(), "a change after the restore");
    lab.nsd_follows(&nsd, "a change after the restore");
}

/// A signed primary stopped and started again keeps its serial and every signature (the
/// SOA's too): NSD, which held the zone, transfers nothing for the restart, and takes the
/// next change by a signed IXFR. (Before, every signed start moved the serial on, and every
/// secondary took the whole zone after each restart of the primary.)
#[test]
fn nsd_takes_nothing_for_a_signed_primarys_restart_and_the_next_change_by_ixfr() {
    require("dig", "bind9-dnsutils");
    require("nsupdate", "bind9-dnsutils");
    let lab = nsd_lab();
    let (primary_port, xfer) = (lab.primary_port, lab.xfer.as_path());
    let start = || lab.primary(&["--dnssec"]);
    let mut primary = start();
    let (codes, keys) = lab.register(&primary, "555300", "00000000000002", 3);
    for (i, (code, key)) in codes.iter().zip(&keys).enumerate() {
        let mut update = churn(primary_port, code, key, i, 0, 1);
        assert!(update.wait().unwrap().success(), "the first addresses");
    }
    let nsd = lab.start_nsd();
    let (ours, _) = lab.nsd_follows(&nsd, "NSD never loaded the zone");

    let serial = primary.serial(ZONE);
    primary.terminate();
    primary = start();
    assert_eq!(primary.serial(ZONE), serial, "the restart keeps the serial");
    assert_eq!(
        axfr(primary_port, xfer),
        ours,
        "and the zone, every signature"
    );
    let mut update = churn(primary_port, &codes[1], &keys[1], 1, 100, 1);
    assert!(
        update.wait().unwrap().success(),
        "a change after the restart"
    );
    lab.nsd_follows(&nsd, "the change after the restart");
    // Since the restart: this test's two AXFRs, and NSD's transfers, incremental only.
    let log = primary.log();
    let transfers: Vec<&str> = log.lines().filter(|l| l.contains("transfer")).collect();
    let shown = transfers.join("\n");
    let count = |kind: &str| transfers.iter().filter(|l| l.contains(kind)).count();
    assert_eq!(count("kind=AXFR"), 2, "{shown}");
    assert!(count("kind=IXFR serial=") >= 1, "{shown}");
    assert_eq!(count("full zone"), 0, "{shown}");
}

#[test]
fn nsd_and_knot_follow_the_directory_by_axfr_notify_and_ixfr() {
    require("dig", "bind9-dnsutils");
    require("nsupdate", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    let (xfer, secret) = transfer_key(root);

    let (nsd_dir, knot_dir) = (root.join("nsd"), root.join("knot"));
    std::fs::create_dir_all(&nsd_dir).unwrap();
    std::fs::create_dir_all(&knot_dir).unwrap();
    let (nsd_port, knot_port) = (free_port(), free_port());
    let (primary_port, metrics_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{primary_port}");
    let metrics = format!("127.0.0.1:{metrics_port}");
    let server = Nameserver::start_in(
        None,
        &root.join("data"),
        &["--listen", &listen],
        &[
            "--metrics",
            &metrics,
            "--transfer-key",
            xfer.to_str().unwrap(),
            "--secondary",
            &format!("127.0.0.1:{nsd_port}"),
            "--secondary",
            &format!("127.0.0.1:{knot_port}"),
        ],
    );

    // A fleet of 100,000 terminals with addresses, provisioned in one import.
    let fleet = root.join("fleet.txt");
    let lines: String = (0..FLEET)
        .map(|i| format!("{} fleet {:016x} {}\n", code(i), i, address(i)))
        .collect();
    std::fs::write(&fleet, lines).unwrap();
    let out = server.admin(&["import", fleet.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let updater_key = server.register("5559000", "acme", "3f9a0c1d22e4b7a8", root);

    // The secondaries start empty and take the whole zone.
    let nsd = start_nsd(&nsd_dir, primary_port, &secret, nsd_port);
    let knot = start_knot(&knot_dir, primary_port, &secret, knot_port);
    let primary_serial = server.serial(ZONE);
    for s in [&nsd, &knot] {
        let took = wait_until(Duration::from_secs(90), || {
            s.serial() == Some(primary_serial)
        });
        assert!(
            took.is_some(),
            "{} never loaded serial {primary_serial}; its log:\n{}\nprimary:\n{}",
            s.name,
            s.log(),
            server.log()
        );
        println!(
            "{}: initial transfer of {FLEET} codes in {:?}",
            s.name,
            took.unwrap()
        );
    }
    for i in (0..FLEET).step_by(FLEET / 40) {
        let name = format!("{}.{ZONE}", code(i));
        let expected = server.short(&name, "A");
        assert_eq!(expected, vec![address(i)]);
        for s in [&nsd, &knot] {
            assert_eq!(
                s.short(&name, "A"),
                expected,
                "{} disagrees on {name}",
                s.name
            );
        }
    }

    // A signed update reaches both within 2 seconds, by NOTIFY and IXFR.
    let before = server.log().lines().count();
    let name = format!("5559000.{ZONE}");
    let script = format!("zone {ZONE}\nupdate add {name} 60 A 192.0.2.99\nsend\n");
    let out = server.nsupdate(Some(&updater_key), &script);
    let updated = Instant::now();
    assert!(out.status.success(), "{}", text(&out));
    for s in [&nsd, &knot] {
        let took = wait_until(Duration::from_secs(10), || {
            s.short(&name, "A") == ["192.0.2.99"]
        });
        let total = took.map(|_| updated.elapsed());
        println!("{}: update visible after {total:?}", s.name);
        assert!(
            total.is_some_and(|t| t <= Duration::from_secs(2)),
            "{} took {total:?}:\n{}",
            s.name,
            s.log()
        );
    }
    let log = server.log();
    let since: Vec<&str> = log
        .lines()
        .skip(before)
        .filter(|l| l.contains("transfer"))
        .collect();
    let incremental = since
        .iter()
        .filter(|l| l.contains("kind=IXFR serial="))
        .count();
    assert!(
        incremental >= 2,
        "both secondaries should have used IXFR:\n{}",
        since.join("\n")
    );
    assert!(
        !since.iter().any(|l| l.contains("kind=AXFR")),
        "a full transfer after the update:\n{}",
        since.join("\n")
    );
    for line in since.iter().filter(|l| l.contains("kind=IXFR serial=")) {
        println!("incremental transfer: {line}");
    }

    // An unregistered code disappears from the secondaries too.
    let gone = format!("{}.{ZONE}", code(7));
    let out = server.admin(&["unregister", "--code", &code(7)]);
    assert!(out.status.success(), "{}", text(&out));
    for s in [&nsd, &knot] {
        let took = wait_until(Duration::from_secs(10), || {
            status_of(&s.dig(&[&gone, "A"])) == "NXDOMAIN"
        });
        assert!(took.is_some(), "{} still answers {gone}", s.name);
    }

    // Export: the zone as a zone file, for backups and other servers.
    let exported = server.admin(&["export"]);
    assert!(exported.status.success(), "{}", text(&exported));
    let zone_text = String::from_utf8_lossy(&exported.stdout);
    assert!(
        zone_text.lines().any(|l| l.contains(" IN SOA ")),
        "no SOA in the export"
    );
    let first = format!("{}.{ZONE}. 60 IN A {}", code(0), address(0));
    assert!(zone_text.lines().any(|l| l == first), "missing `{first}`");
    let a_records = zone_text.lines().filter(|l| l.contains(" IN A ")).count();
    assert_eq!(
        a_records,
        FLEET - 1 + 1 + 1,
        "the fleet less one unregistered, plus 5559000 and ns1"
    );

    // Without the key, or with a terminal's key, a transfer is refused.
    let unsigned = server.dig(&[ZONE, "AXFR"]);
    assert!(unsigned.contains("Transfer failed"), "{unsigned}");
    let terminal = server.dig(&["-k", updater_key.to_str().unwrap(), ZONE, "AXFR"]);
    assert!(terminal.contains("Transfer failed"), "{terminal}");
    let signed = server.dig(&["-k", xfer.to_str().unwrap(), ZONE, "AXFR"]);
    assert!(signed.contains("XFR size"), "{signed}");

    // The metrics show each secondary's acknowledged serial and the transfers they made.
    let serial = f64::from(server.serial(ZONE));
    for s in [&nsd, &knot] {
        let key = format!(
            "dial_secondary_acknowledged_serial{{secondary=\"127.0.0.1:{}\"}}",
            s.port
        );
        let acked = wait_until(Duration::from_secs(10), || {
            support::sample(&support::scrape(metrics_port), &key) == serial
        });
        assert!(acked.is_some(), "{key} never reached {serial}");
    }
    let scraped = support::scrape(metrics_port);
    let count = |kind: &str, outcome: &str| {
        let key = format!("dial_transfers_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}");
        support::sample(&scraped, &key)
    };
    assert!(count("axfr", "sent") >= 3.0, "two secondaries and one dig");
    assert!(
        count("ixfr", "sent") >= incremental as f64,
        "{incremental} in the log"
    );
    assert_eq!(
        count("axfr", "refused"),
        2.0,
        "unsigned and a terminal's key"
    );
    assert!(support::sample(&scraped, "dial_notifies_total{outcome=\"answered\"}") >= 2.0);
}

/// A signed directory as hidden primary: NSD and Knot serve the signed zone as transferred,
/// and unbound, pointed at each of them, validates their answers, before and after a change.
#[test]
fn nsd_and_knot_serve_the_signed_zone_and_unbound_validates_their_answers() {
    require("dig", "bind9-dnsutils");
    require("nsupdate", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (xfer, secret) = transfer_key(root);
    let (nsd_dir, knot_dir) = (root.join("nsd"), root.join("knot"));
    for dir in [
        &nsd_dir,
        &knot_dir,
        &root.join("unbound-nsd"),
        &root.join("unbound-knot"),
    ] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let (nsd_port, knot_port) = (free_port(), free_port());
    let server = Nameserver::start(
        &root.join("data"),
        &[
            "--dnssec",
            "--transfer-key",
            xfer.to_str().unwrap(),
            "--secondary",
            &format!("127.0.0.1:{nsd_port}"),
            "--secondary",
            &format!("127.0.0.1:{knot_port}"),
        ],
    );
    let ds = String::from_utf8_lossy(&server.admin(&["dnssec", "ds"]).stdout).into_owned();
    let fleet = root.join("fleet.txt");
    let lines: String = (0..500)
        .map(|i| format!("{} fleet {:016x} {}\n", code(i), i, address(i)))
        .collect();
    std::fs::write(&fleet, lines).unwrap();
    let out = server.admin(&["import", fleet.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let key = server.register("5559000", "acme", "3f9a0c1d22e4b7a8", root);

    let nsd = start_nsd(&nsd_dir, server.addr.port(), &secret, nsd_port);
    let knot = start_knot(&knot_dir, server.addr.port(), &secret, knot_port);
    let serial = server.serial(ZONE);
    for s in [&nsd, &knot] {
        let loaded = wait_until(Duration::from_secs(60), || s.serial() == Some(serial));
        assert!(loaded.is_some(), "{}: {}", s.name, s.log());
    }
    let resolvers: Vec<(&Secondary, Unbound)> = [&nsd, &knot]
        .into_iter()
        .map(|s| {
            let dir = root.join(format!("unbound-{}", s.name));
            (s, Unbound::start(&dir, &ds, s.port))
        })
        .collect();
    for (s, unbound) in &resolvers {
        let a = unbound.lookup(&format!("{}.{ZONE}", code(7)), "A");
        assert!(
            a.authenticated && a.answers.contains(&address(7)),
            "{}: {a:?}",
            s.name
        );
        let nx = unbound.lookup(&format!("999.{ZONE}"), "A");
        assert!(
            nx.authenticated && nx.status == "NXDOMAIN",
            "{}: {nx:?}",
            s.name
        );
        let nodata = unbound.lookup(&format!("{}.{ZONE}", code(7)), "AAAA");
        assert!(
            nodata.authenticated && nodata.status == "NOERROR",
            "{}: {nodata:?}",
            s.name
        );
    }
    // Changes reach both by NOTIFY and IXFR (the signatures and NSEC3s that moved with
    // them included), and validate there: a code joins the zone, moves, and one leaves.
    let name = format!("5559000.{ZONE}");
    let (gone, gone_code) = (format!("{}.{ZONE}", code(9)), code(9));
    for (step, address) in [
        ("join", "192.0.2.90"),
        ("move", "192.0.2.91"),
        ("leave", ""),
    ] {
        let before = server.log().lines().count();
        if step == "leave" {
            let out = server.admin(&["unregister", "--code", &gone_code]);
            assert!(out.status.success(), "{}", text(&out));
        } else {
            let script = format!(
                "zone {ZONE}\nupdate delete {name} A\nupdate add {name} 60 A {address}\nsend\n"
            );
            let out = server.nsupdate(Some(&key), &script);
            assert!(out.status.success(), "{}", text(&out));
        }
        let serial = server.serial(ZONE);
        for (s, unbound) in &resolvers {
            let seen = wait_until(Duration::from_secs(20), || s.serial() == Some(serial));
            assert!(seen.is_some(), "{} never took {step}: {}", s.name, s.log());
            let a = unbound.lookup(&name, "A");
            assert!(
                a.authenticated && a.answers.contains("192.0.2.9"),
                "{step} {}: {a:?}",
                s.name
            );
            let nx = unbound.lookup(&gone, "A");
            let expected = if step == "leave" {
                "NXDOMAIN"
            } else {
                "NOERROR"
            };
            assert!(
                nx.authenticated && nx.status == expected,
                "{step} {}: {nx:?}",
                s.name
            );
        }
        let log = server.log();
        let transfers: Vec<&str> = log
            .lines()
            .skip(before)
            .filter(|l| l.contains("transfer"))
            .collect();
        println!("{step}:\n{}", transfers.join("\n"));
        // A move changes one RRset and its RRSIG, never the chain: always incremental.
        // (A join or leave re-signs its predecessor's NSEC3, which may be a static name's:
        // then the whole zone goes, which is checked below to be right all the same.)
        if step == "move" {
            let incremental: Vec<&&str> = transfers
                .iter()
                .filter(|l| l.contains("kind=IXFR serial="))
                .collect();
            assert!(incremental.len() >= 2, "{}", transfers.join("\n"));
            assert!(
                !transfers
                    .iter()
                    .any(|l| l.contains("full zone") || l.contains("kind=AXFR")),
                "{}",
                transfers.join("\n")
            );
            // The current SOA; the old SOA and RRSIG, the old A and RRSIG; the new SOA and
            // RRSIG, the new A and RRSIG; the current SOA.
            assert!(
                incremental.iter().all(|l| l.contains("records=10 ")),
                "{}",
                transfers.join("\n")
            );
        }
    }
    // What the secondaries built from the differences is the primary's signed zone.
    let primary = axfr(server.addr.port(), &xfer);
    for s in [&nsd, &knot] {
        assert_eq!(
            axfr(s.port, &xfer),
            primary,
            "{} differs from the primary",
            s.name
        );
    }
}
