//! End-to-end tests: the built `nameserver` binary, driven as a user would, with BIND's
//! `dig` and `nsupdate` and OpenBSD `nc`.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Nameserver, free_port, require, status_of, text};

const ZONE: &str = "dial.example";
const CODE: &str = "5551234";
const NAME: &str = "5551234.dial.example";

fn replace_a(name: &str, ip: &str) -> String {
    format!("zone {ZONE}\nupdate delete {name} A\nupdate add {name} 60 A {ip}\nsend\n")
}

/// The README walkthrough: register, update with nsupdate, look up with dig, connect with nc.
#[test]
fn walkthrough_register_update_lookup_connect() {
    require("nc", "netcat-openbsd");
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &[]);
    let key = server.register(CODE, "acme-0042", "3f9a0c1d22e4b7a8", tmp.path());
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "key files are owner-only");
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("algorithm hmac-sha256;")
    );

    // Registered, no address yet: NOERROR without answers.
    assert_eq!(server.status(&[NAME, "A"]), "NOERROR");
    assert!(server.short(NAME, "A").is_empty());

    // The terminal (here: nc listening on loopback) publishes its address.
    let port = free_port();
    let mut listener = Command::new("nc")
        .args(["-l", "127.0.0.1", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let script = format!(
        "zone {ZONE}\nupdate delete {NAME} A\nupdate add {NAME} 60 A 127.0.0.1\nupdate add {NAME} 60 AAAA ::1\nsend\n"
    );
    let out = server.nsupdate(Some(&key), &script);
    assert!(out.status.success(), "nsupdate: {}", text(&out));
    assert_eq!(server.short(NAME, "A"), vec!["127.0.0.1"]);
    assert_eq!(server.short(NAME, "AAAA"), vec!["::1"]);
    let answer = server.dig(&[NAME, "A"]);
    assert!(
        answer.contains("flags: qr aa"),
        "authoritative, no RA: {answer}"
    );
    assert_eq!(
        server.dig(&["+tcp", "+short", NAME, "A"]).trim(),
        "127.0.0.1"
    );

    // A caller resolves the code and connects to the address it got.
    let address = server.short(NAME, "A").remove(0);
    let mut caller = Command::new("nc")
        .args(["-N", &address, &port.to_string()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    connect_retry(&mut caller, b"hello from the caller\n");
    let mut got = String::new();
    listener
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    let _ = listener.wait();
    assert_eq!(got, "hello from the caller\n");

    // The operator sees it; then removes it.
    let list = server.admin(&["list"]);
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(
        listing.contains(CODE) && listing.contains("acme-0042") && listing.contains("127.0.0.1"),
        "{listing}"
    );
    let out = server.admin(&["unregister", "--code", CODE]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.status(&[NAME, "A"]), "NXDOMAIN");
    let log = server.log();
    assert!(
        log.contains("register") && log.contains("update"),
        "one line per registration and update:\n{log}"
    );
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret = secret.split('"').nth(3).unwrap();
    assert!(!log.contains(secret), "the secret reached the log");
}

fn connect_retry(caller: &mut std::process::Child, line: &[u8]) {
    let mut stdin = caller.stdin.take().unwrap();
    stdin.write_all(line).unwrap();
    drop(stdin);
    let status = caller.wait().unwrap();
    assert!(status.success(), "nc could not connect");
}

#[test]
fn lookups_answer_like_an_authoritative_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &[]);
    assert_eq!(server.status(&["5550000.dial.example", "A"]), "NXDOMAIN");
    let nx = server.dig(&["5550000.dial.example", "A"]);
    assert!(
        nx.contains("AUTHORITY: 1") && nx.contains("SOA"),
        "SOA in authority: {nx}"
    );
    assert_eq!(server.status(&["www.example.org", "A"]), "REFUSED");
    assert_eq!(server.short(ZONE, "NS"), vec!["ns1.dial.example."]);
    assert_eq!(server.short(ZONE, "SOA").len(), 1);
    let recursive = server.dig(&["+rec", ZONE, "SOA"]);
    assert!(
        !recursive.contains(" ra"),
        "no recursion offered: {recursive}"
    );
    assert!(
        recursive.contains("udp: 1232"),
        "EDNS answered: {recursive}"
    );
}

#[test]
fn nsupdate_rejections_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &[]);
    let key = server.register(CODE, "acme", "3f9a0c1d22e4b7a8", tmp.path());
    server.register("5559999", "acme", "3f9a0c1d22e4b7a9", tmp.path());
    let out = server.nsupdate(Some(&key), &replace_a(NAME, "192.0.2.1"));
    assert!(out.status.success(), "{}", text(&out));
    let serial = server.short(ZONE, "SOA");

    let unsigned = server.nsupdate(None, &replace_a(NAME, "192.0.2.66"));
    assert!(text(&unsigned).contains("REFUSED"), "{}", text(&unsigned));

    let wrong_secret = tmp.path().join("wrong.key");
    let original = std::fs::read_to_string(&key).unwrap();
    let secret = original.split('"').nth(3).unwrap();
    std::fs::write(
        &wrong_secret,
        original.replace(secret, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    )
    .unwrap();
    let badsig = server.nsupdate(Some(&wrong_secret), &replace_a(NAME, "192.0.2.66"));
    assert!(text(&badsig).contains("BADSIG"), "{}", text(&badsig));

    let unknown = tmp.path().join("unknown.key");
    std::fs::write(&unknown, original.replace("5551234.3f9a", "5550000.3f9a")).unwrap();
    let badkey = server.nsupdate(Some(&unknown), &replace_a(NAME, "192.0.2.66"));
    assert!(text(&badkey).contains("BADKEY"), "{}", text(&badkey));

    for (what, script) in [
        (
            "another code",
            replace_a("5559999.dial.example", "192.0.2.66"),
        ),
        ("the apex", replace_a(ZONE, "192.0.2.66")),
        (
            "a TXT record",
            format!("zone {ZONE}\nupdate add {NAME} 60 TXT hello\nsend\n"),
        ),
        (
            "the NS RRset",
            format!("zone {ZONE}\nupdate delete {ZONE} NS\nsend\n"),
        ),
    ] {
        let out = server.nsupdate(Some(&key), &script);
        assert!(!out.status.success(), "{what} was accepted");
        assert!(text(&out).contains("REFUSED"), "{what}: {}", text(&out));
    }
    assert_eq!(server.short(NAME, "A"), vec!["192.0.2.1"]);
    assert!(server.short("5559999.dial.example", "A").is_empty());
    assert_eq!(
        server.short(ZONE, "SOA"),
        serial,
        "no refused update changed the serial"
    );
}

#[test]
fn signed_lookups_need_a_registered_key() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &["--lookups", "signed"]);
    let key = server.register(CODE, "acme", "3f9a0c1d22e4b7a8", tmp.path());
    let out = server.nsupdate(Some(&key), &replace_a(NAME, "192.0.2.8"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.status(&[NAME, "A"]), "REFUSED");
    // dig checks the answer's TSIG and reports a failure in its output.
    let signed = server.dig(&["-k", key.to_str().unwrap(), NAME, "A"]);
    assert_eq!(status_of(&signed), "NOERROR", "{signed}");
    assert!(signed.contains("192.0.2.8"), "{signed}");
    assert!(
        signed.contains("TSIG PSEUDOSECTION") && !signed.to_lowercase().contains("failure"),
        "{signed}"
    );
}

#[test]
fn admin_commands_fail_clearly_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &[]);
    server.register(CODE, "acme", "3f9a0c1d22e4b7a8", tmp.path());
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "register",
                "--code",
                CODE,
                "--kid",
                "other",
                "--mid",
                "3f9a0c1d22e4b7a9",
            ],
            "already registered",
        ),
        (
            &[
                "register",
                "--code",
                "5550001",
                "--kid",
                "acme",
                "--mid",
                "3f9a0c1d22e4b7a8",
            ],
            "already registered",
        ),
        (
            &[
                "register",
                "--code",
                "55",
                "--kid",
                "acme",
                "--mid",
                "3f9a0c1d22e4b7a8",
            ],
            "3 to 15 decimal digits",
        ),
        (
            &[
                "register", "--code", "5550001", "--kid", "acme", "--mid", "xyz",
            ],
            "machine id",
        ),
        (&["unregister", "--code", "5550001"], "not registered"),
    ];
    for (args, expected) in cases {
        let out = server.admin(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text(&out).contains(expected), "{args:?}: {}", text(&out));
    }
    let listing = String::from_utf8_lossy(&server.admin(&["list"]).stdout).into_owned();
    assert!(listing.contains("1 terminal(s)"), "{listing}");
    let nobody = tmp.path().join("no-server");
    let out = Command::new(support::binary("nameserver"))
        .args(["list", "--data"])
        .arg(&nobody)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no nameserver is running"),
        "{}",
        text(&out)
    );
}

/// Regression: `register --key-file` to a path that cannot be written failed with exit 1
/// but left the code registered and its key lost; `rotate-key` to such a path revoked the
/// old key and lost the new one; an existing file was replaced without a word.
#[test]
fn a_key_file_that_cannot_be_written_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &[]);
    // A path under a regular file cannot be created, even by root.
    let blocker = tmp.path().join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let unwritable = blocker.join("5551234.key");
    let register = |path: &std::path::Path| {
        server.admin(&[
            "register",
            "--code",
            CODE,
            "--kid",
            "acme",
            "--mid",
            "3f9a0c1d22e4b7a8",
            "--key-file",
            path.to_str().unwrap(),
        ])
    };
    let out = register(&unwritable);
    assert!(!out.status.success());
    assert!(text(&out).contains("key file"), "{}", text(&out));
    let listing = text(&server.admin(&["list"]));
    assert!(listing.contains("0 terminal(s)"), "{listing}");
    // An existing file is never replaced by a registration.
    let taken = tmp.path().join("taken.key");
    std::fs::write(&taken, "something else\n").unwrap();
    let out = register(&taken);
    assert!(!out.status.success());
    assert!(text(&out).contains("exists"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "something else\n");
    assert!(text(&server.admin(&["list"])).contains("0 terminal(s)"));
    // The same registration to a good path works at once.
    let key = tmp.path().join("5551234.key");
    let out = register(&key);
    assert!(out.status.success(), "{}", text(&out));
    let update = replace_a(NAME, "127.0.0.5");
    assert!(server.nsupdate(Some(&key), &update).status.success());
    // rotate-key to a path that cannot be written keeps the old key working.
    let out = server.admin(&[
        "rotate-key",
        "--code",
        CODE,
        "--key-file",
        unwritable.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("key file"), "{}", text(&out));
    let update = replace_a(NAME, "127.0.0.6");
    assert!(
        server.nsupdate(Some(&key), &update).status.success(),
        "the old key still works"
    );
    assert_eq!(server.short(NAME, "A"), vec!["127.0.0.6"]);
    // rotate-key into the terminal's own key file replaces it, and says so.
    let out = server.admin(&[
        "rotate-key",
        "--code",
        CODE,
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("replaced"), "{}", text(&out));
    let update = replace_a(NAME, "127.0.0.7");
    assert!(server.nsupdate(Some(&key), &update).status.success());
}

#[test]
fn a_second_server_on_the_same_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let _first = Nameserver::start(&data, &[]);
    let out = Command::new(support::binary("nameserver"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("in use by another nameserver"),
        "{}",
        text(&out)
    );
}

#[test]
fn sigterm_stops_cleanly_and_data_persists() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Nameserver::start(&data, &[]);
    let key = server.register(CODE, "acme", "3f9a0c1d22e4b7a8", tmp.path());
    assert!(
        server
            .nsupdate(Some(&key), &replace_a(NAME, "192.0.2.77"))
            .status
            .success()
    );
    assert_eq!(server.terminate(), Some(0));
    let server = Nameserver::start(&data, &[]);
    assert_eq!(server.short(NAME, "A"), vec!["192.0.2.77"]);
}

/// `kill -9` at random moments during streams of updates from several terminals, several
/// times: after each restart on the same data, every acknowledged update is there.
#[test]
fn kill_9_during_update_streams_loses_no_acknowledged_update() {
    const TERMINALS: usize = 4;
    const UPDATES: usize = 2000;
    const ROUNDS: usize = 3;
    require("nsupdate", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let no_limit = ["--update-rate-limit", "0"];
    let mut server = Nameserver::start(&data, &no_limit);
    let codes: Vec<String> = (0..TERMINALS).map(|i| format!("555100{i}")).collect();
    let keys: Vec<_> = codes
        .iter()
        .enumerate()
        .map(|(i, c)| server.register(c, "fleet", &format!("00000000000000{i:02}"), tmp.path()))
        .collect();
    let (mut acknowledged_total, mut present_total) = (0, 0);
    for round in 0..ROUNDS {
        let base = round * UPDATES;
        let streams: Vec<_> = codes
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (code, key))| update_stream(&server, code, key, i, base))
            .collect();
        // Kill at a moment that differs from round to round (300 to 1500 ms in).
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        std::thread::sleep(Duration::from_millis(300 + u64::from(jitter % 1200)));
        server.kill9();
        let acknowledged: Vec<usize> = streams.into_iter().map(finish_stream).collect();
        assert!(
            acknowledged.iter().sum::<usize>() > 0,
            "round {round}: nothing acknowledged; the test proved nothing"
        );
        assert!(
            acknowledged.iter().all(|&k| k < UPDATES),
            "round {round}: a stream ended before the kill"
        );

        // The store opens as it is, and holds the latest acknowledged update of each.
        server = Nameserver::start(&data, &no_limit);
        for (i, code) in codes.iter().enumerate() {
            let k = acknowledged[i];
            let got = server.short(&format!("{code}.{ZONE}"), "A");
            // The last acknowledged update, or the one after it (applied, answer lost in the kill).
            let allowed: Vec<String> = [base + k, base + k + 1]
                .iter()
                .map(|&j| address(i, j))
                .collect();
            if k == 0 {
                continue;
            }
            assert!(
                got.len() == 1 && allowed.contains(&got[0]),
                "round {round}, terminal {code}: {k} acknowledged, found {got:?}, expected one of {allowed:?}"
            );
            present_total += 1;
        }
        acknowledged_total += acknowledged.iter().sum::<usize>();
        println!("kill -9 round {}: acknowledged {acknowledged:?}", round + 1);
    }
    println!(
        "kill -9: {ROUNDS} kills survived; {acknowledged_total} updates acknowledged over {TERMINALS} terminals; latest acknowledged state present {present_total} times of {present_total}; lost: 0"
    );
}

/// `nameserver restore FILE --data DIR`.
fn restore(file: &std::path::Path, data: &std::path::Path) -> std::process::Output {
    Command::new(support::binary("nameserver"))
        .arg("restore")
        .arg(file)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

/// `nameserver backup` while signed updates stream in, then `nameserver restore` into a new
/// directory: the restored server holds every update acknowledged before the backup began,
/// its serial did not go backwards, and every terminal's existing key still updates it.
#[test]
fn backup_during_updates_restores_with_every_key_working() {
    require("nsupdate", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let no_limit = ["--update-rate-limit", "0"];
    let mut server = Nameserver::start(&tmp.path().join("a"), &no_limit);
    let codes: Vec<String> = (0..3).map(|i| format!("555200{i}")).collect();
    let keys: Vec<_> = codes
        .iter()
        .enumerate()
        .map(|(i, c)| server.register(c, "fleet", &format!("00000000000001{i:02}"), tmp.path()))
        .collect();
    // Acknowledged before the backup begins.
    let before = address(0, 7);
    let name0 = format!("{}.{ZONE}", codes[0]);
    let out = server.nsupdate(Some(&keys[0]), &replace_a(&name0, &before));
    assert!(out.status.success(), "{}", text(&out));
    let serial_before = server.serial(ZONE);
    // The others keep changing while the backup is taken.
    let streams: Vec<_> = (1..3)
        .map(|i| update_stream(&server, &codes[i], &keys[i], i, 0))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let file = tmp.path().join("directory.backup");
    let out = server.admin(&["backup", "--output", file.to_str().unwrap()]);
    assert!(out.status.success(), "backup failed: {}", text(&out));
    let acknowledged: Vec<usize> = streams.into_iter().map(finish_stream).collect();
    assert!(
        acknowledged.iter().all(|&k| k > 0 && k < 2000),
        "the streams must be running when the backup is taken: {acknowledged:?}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup holds secrets");
    server.terminate();

    let restored = tmp.path().join("b");
    let out = restore(file.as_path(), &restored);
    assert!(out.status.success(), "restore failed: {}", text(&out));
    assert!(
        text(&out).contains("restored 3 terminal(s)"),
        "{}",
        text(&out)
    );
    let server = Nameserver::start(&restored, &no_limit);
    assert_eq!(server.short(&name0, "A"), vec![before]);
    assert!(
        server.serial(ZONE) >= serial_before,
        "the serial went backwards"
    );
    for (i, (code, key)) in codes.iter().zip(&keys).enumerate() {
        let name = format!("{code}.{ZONE}");
        if i > 0 {
            let got = server.short(&name, "A");
            assert!(
                got.len() == 1 && got[0].starts_with(&format!("127.{}.", i + 1)),
                "{name}: an address of its stream expected, found {got:?}"
            );
        }
        let after = address(i, 4000);
        let out = server.nsupdate(Some(key), &replace_a(&name, &after));
        assert!(
            out.status.success(),
            "{name}: its key no longer updates: {}",
            text(&out)
        );
        assert_eq!(server.short(&name, "A"), vec![after]);
    }

    // Into a directory that is not empty: refused, nothing touched.
    let out = restore(file.as_path(), &restored);
    assert!(!out.status.success());
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    // A truncated copy: refused with the reason, and no store left behind.
    let full = std::fs::read_to_string(&file).unwrap();
    let cut = tmp.path().join("cut.backup");
    let lines: Vec<&str> = full.lines().collect();
    std::fs::write(&cut, lines[..lines.len() - 1].join("\n")).unwrap();
    let empty = tmp.path().join("c");
    let out = restore(cut.as_path(), &empty);
    assert!(!out.status.success());
    assert!(text(&out).contains("incomplete"), "{}", text(&out));
    assert!(!empty.join("store").exists());
}

/// nsupdate sending `UPDATES` updates for terminal `i`, numbered from `base`.
fn update_stream(
    server: &Nameserver,
    code: &str,
    key: &std::path::Path,
    i: usize,
    base: usize,
) -> std::process::Child {
    const UPDATES: usize = 2000;
    let name = format!("{code}.{ZONE}");
    let mut script = format!("server 127.0.0.1 {}\nzone {ZONE}\n", server.port());
    for j in 1..=UPDATES {
        script.push_str(&format!(
            "update delete {name} A\nupdate add {name} 60 A {}\nsend\n",
            address(i, base + j)
        ));
    }
    let mut child = Command::new("nsupdate")
        .args(["-d", "-t", "2", "-r", "0", "-k"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(script.as_bytes());
    });
    child
}

/// Stops a stream (nsupdate keeps retrying a dead server; its stderr is unbuffered, so
/// stopping it loses no line) and counts the updates it saw acknowledged.
fn finish_stream(mut child: std::process::Child) -> usize {
    let deadline = Instant::now() + Duration::from_secs(3);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    count_acknowledged(&String::from_utf8_lossy(&out.stderr))
}

/// The address of update `j` of terminal `i` (loopback range: data only, never contacted).
fn address(i: usize, j: usize) -> String {
    format!("127.{}.{}.{}", i + 1, (j >> 8) & 255, j & 255)
}

/// Updates whose reply nsupdate -d printed as NOERROR.
fn count_acknowledged(stderr: &str) -> usize {
    let mut in_reply = false;
    let mut count = 0;
    for line in stderr.lines() {
        if line.starts_with("Reply from update query") {
            in_reply = true;
        } else if in_reply && line.contains("->>HEADER<<-") {
            count += usize::from(line.contains("status: NOERROR"));
            in_reply = false;
        }
    }
    count
}

#[test]
fn a_zone_file_provides_soa_ns_glue_and_static_records() {
    let tmp = tempfile::tempdir().unwrap();
    let zone = tmp.path().join("calls.zone");
    std::fs::write(
        &zone,
        "$ORIGIN calls.example.\n$TTL 300\n\
         @ IN SOA ns1 hostmaster 2026112701 3600 600 604800 20\n\
         @ IN NS ns1\n@ IN NS ns2.elsewhere.example.\n\
         ns1 IN A 192.0.2.53\nwww IN A 192.0.2.80\nhelp IN CNAME www\n@ IN TXT \"calling codes\"\n",
    )
    .unwrap();
    let zone_arg = zone.to_str().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &["--zone-file", zone_arg]);
    assert_eq!(server.short("www.calls.example", "A"), vec!["192.0.2.80"]);
    assert_eq!(
        server.short("help.calls.example", "A"),
        vec!["www.calls.example."]
    );
    assert_eq!(
        server.short("calls.example", "TXT"),
        vec!["\"calling codes\""]
    );
    let soa = server.short("calls.example", "SOA").join(" ");
    assert!(soa.contains("2026112701"), "{soa}");
    let ns = server.dig(&["calls.example", "NS"]);
    assert!(
        ns.contains("ns2.elsewhere.example.") && ns.contains("192.0.2.53"),
        "NS with glue: {ns}"
    );
    assert_eq!(server.status(&["nothing.calls.example", "A"]), "NXDOMAIN");
    assert_eq!(server.status(&["www.calls.example", "MX"]), "NOERROR");
    // Terminals live in the same zone.
    let key = server.register(CODE, "acme", "3f9a0c1d22e4b7a8", tmp.path());
    let script = "zone calls.example\nupdate add 5551234.calls.example 60 A 192.0.2.9\nsend\n";
    assert!(server.nsupdate(Some(&key), script).status.success());
    assert_eq!(
        server.short("5551234.calls.example", "A"),
        vec!["192.0.2.9"]
    );
    let serial = server.short("calls.example", "SOA").join(" ");
    // A registration without addresses changes no record; the update does.
    assert!(
        serial.contains("2026112702"),
        "serial counts on from the file's: {serial}"
    );
}

#[test]
fn hmac_sha384_and_sha512_keys_work_with_nsupdate() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &[]);
    for (code, algorithm, mid) in [
        ("5550384", "hmac-sha384", "3f9a0c1d22e40384"),
        ("5550512", "hmac-sha512", "3f9a0c1d22e40512"),
    ] {
        let key = tmp.path().join(format!("{code}.key"));
        let out = server.admin(&[
            "register",
            "--code",
            code,
            "--kid",
            "acme",
            "--mid",
            mid,
            "--algorithm",
            algorithm,
            "--key-file",
            key.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(std::fs::read_to_string(&key).unwrap().contains(algorithm));
        let name = format!("{code}.{ZONE}");
        let out = server.nsupdate(Some(&key), &replace_a(&name, "192.0.2.44"));
        assert!(out.status.success(), "{algorithm}: {}", text(&out));
        assert_eq!(server.short(&name, "A"), vec!["192.0.2.44"]);
    }
}

#[test]
fn a_data_directory_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(support::binary("nameserver"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("writable by group or others"),
        "{}",
        text(&out)
    );
    // The control socket of a running server is owner-only.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let server = Nameserver::start(&data, &[]);
    let mode = std::fs::metadata(server.data.join("control.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Regression (secrets on disk): a data directory readable by others (0755) was served as
/// it was, so any local user could read every terminal's TSIG secret from the store.
#[test]
fn a_data_directory_readable_by_others_is_made_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Nameserver::start(&data, &[]);
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(
        server.log().contains("made it owner-only"),
        "{}",
        server.log()
    );
}

/// Regression (secrets on disk): the store was created 0755/0644 under the usual umask.
/// Started with umask 000, every file of the store must still be owner-only.
#[test]
fn store_files_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(support::binary("nameserver"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !data.join("control.sock").exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut checked = 0;
    let mut pending = vec![data.join("store")];
    while let Some(dir) = pending.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "the store has files");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory");
}

/// A transfer key file readable by others is served, with a warning that says the fix.
#[test]
fn a_transfer_key_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("xfer.key");
    // The form `tsig-keygen xfer` writes.
    std::fs::write(
        &key,
        "key \"xfer\" {\n\talgorithm hmac-sha256;\n\tsecret \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\";\n};\n",
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Nameserver::start(
        &tmp.path().join("data"),
        &["--transfer-key", key.to_str().unwrap()],
    );
    let log = server.log();
    assert!(
        log.contains("readable by group or others") && log.contains("chmod 600"),
        "{log}"
    );
}

/// Regression: when the reader of the server's log went away (a pipe closed, a log
/// collector restarted), the next log line panicked the task that wrote it: the main task
/// ended the server, and the signal task's "SIGTERM" line left SIGTERM ignored for good.
#[test]
fn a_closed_log_pipe_neither_stops_nor_hangs_the_server() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    /// Killed when the test ends, whatever happens in it.
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = Server(
        Command::new(support::binary("nameserver"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut server.0;
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut port = None;
    let mut line = String::new();
    while port.is_none() && log.read_line(&mut line).unwrap() > 0 {
        port = line
            .split("listening on 127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned);
        line.clear();
    }
    let port = port.expect("the server said where it listens");
    // The log's reader goes away; every line the server writes from now on fails.
    drop(log);
    let register = Command::new(support::binary("nameserver"))
        .args([
            "register",
            "--code",
            CODE,
            "--kid",
            "acme",
            "--mid",
            "3f9a0c1d22e4b7a8",
        ])
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        register.status.success(),
        "register (which logs a line): {}",
        text(&register)
    );
    require("dig", "bind9-dnsutils");
    let answer = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port,
            "+time=2",
            "+tries=1",
            ZONE,
            "SOA",
        ])
        .output()
        .unwrap();
    assert_eq!(
        status_of(&String::from_utf8_lossy(&answer.stdout)),
        "NOERROR"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server stopped when its log went away"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.try_wait().unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM must stop the server cleanly even with nowhere to log"
    );
}

/// Regression: a server started under strace outlived its test. Dropping the test's handle
/// killed strace, and the traced server, detached, went on running with no one to stop it.
#[test]
fn a_server_under_strace_stops_with_its_test() {
    require("strace", "strace");
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start_under(
        &["strace", "-f", "-qq", "-e", "trace=none"],
        &tmp.path().join("data"),
        &[],
    );
    let beneath = support::descendants(server.pid());
    assert!(!beneath.is_empty(), "the server runs beneath strace");
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    let alive = |pid: &u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    while beneath.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<&u32> = beneath.iter().filter(|p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "still running after the test let go: {left:?}"
    );
}

/// Every acknowledged update waited for an `fdatasync` that covers it: with updates sent one
/// after another (none can share a sync), the server makes at least one sync per update.
/// sled, the earlier store, synced with `sync_file_range` alone, which a power cut defeats.
#[test]
fn each_acknowledged_update_waited_for_an_fdatasync() {
    const UPDATES: usize = 20;
    require("strace", "strace");
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("syscalls.log");
    let trace_arg = trace.to_str().unwrap().to_owned();
    let server = Nameserver::start_under(
        &[
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=fdatasync,fsync,sync_file_range",
            "-o",
            &trace_arg,
        ],
        &tmp.path().join("data"),
        &[],
    );
    let key = server.register(CODE, "acme", "3f9a0c1d22e4b7a8", tmp.path());
    let syncs = || {
        std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("fdatasync(") || l.contains("fsync("))
            .count()
    };
    let before = syncs();
    for i in 0..UPDATES {
        let out = server.nsupdate(
            Some(&key),
            &replace_a(&format!("{CODE}.{ZONE}"), &format!("127.0.9.{i}")),
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let during = syncs() - before;
    println!("{UPDATES} acknowledged updates, one after another: {during} syncs");
    assert!(
        during >= UPDATES,
        "{during} syncs for {UPDATES} acknowledged updates"
    );
    let weak = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(
        !weak.contains("sync_file_range("),
        "sync_file_range alone does not make data durable"
    );
}

/// `CODE KID MID ADDRESS` lines for codes `from..to` (loopback addresses: data only).
fn fleet_lines(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            format!(
                "{} fleet {i:016x} 127.3.{}.{}\n",
                6_000_000 + i,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect()
}

/// A streamed import of three batches: every terminal answers, and the keys arrive as one
/// owner-only bundle in BIND's key-file format that nsupdate accepts.
#[test]
fn import_streams_batches_and_writes_one_key_bundle() {
    use std::os::unix::fs::PermissionsExt;
    const FLEET: usize = 25_000;
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &[]);
    let fleet = tmp.path().join("fleet.txt");
    std::fs::write(&fleet, fleet_lines(0, FLEET)).unwrap();
    let out = server.admin(&["import", fleet.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("imported {FLEET} terminal(s)")),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("terminals ("),
        "progress on stderr: {}",
        text(&out)
    );
    let bundle = tmp.path().join("fleet.txt.keys");
    let mode = std::fs::metadata(&bundle).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key bundle is owner-only");
    let keys = std::fs::read_to_string(&bundle).unwrap();
    assert_eq!(keys.matches("key \"").count(), FLEET);
    for i in [0, 12_345, FLEET - 1] {
        let name = format!("{}.{ZONE}", 6_000_000 + i);
        assert_eq!(
            server.short(&name, "A"),
            vec![format!("127.3.{}.{}", (i >> 8) & 255, i & 255)]
        );
    }
    // `list` streams them all: the header, then a line each; `--json`, one array.
    let list = server.admin(&["list"]);
    assert!(list.status.success(), "{}", text(&list));
    let table = String::from_utf8_lossy(&list.stdout);
    assert!(
        table.starts_with("zone dial.example. serial "),
        "{table:.200}"
    );
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .ends_with(&format!("{FLEET} terminal(s)"))
    );
    assert_eq!(table.lines().count(), FLEET + 2);
    let json = server.admin(&["list", "--json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(listed.len(), FLEET);
    assert_eq!(listed[0]["code"], "6000000");
    // One clause of the bundle is a key file nsupdate takes as it is.
    let first = keys.split_inclusive("};\n").next().unwrap();
    let key = tmp.path().join("first.key");
    std::fs::write(&key, first).unwrap();
    let name = format!("{}.{ZONE}", 6_000_000);
    let out = server.nsupdate(Some(&key), &replace_a(&name, "127.0.7.7"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.short(&name, "A"), vec!["127.0.7.7"]);
}

/// All or none: a batch refused after two were staged (a code already registered) leaves
/// no terminal of the import and no key file, and the same fleet imports cleanly after.
#[test]
fn a_refused_import_batch_leaves_nothing_behind() {
    const FLEET: usize = 25_000;
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &[]);
    let taken = 6_000_000 + 24_000;
    server.register(&taken.to_string(), "acme", "3f9a0c1d22e4b7a8", tmp.path());
    let fleet = tmp.path().join("fleet.txt");
    std::fs::write(&fleet, fleet_lines(0, FLEET)).unwrap();
    let out = server.admin(&["import", fleet.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{taken} is already registered")),
        "{}",
        text(&out)
    );
    assert_eq!(
        server.status(&[&format!("{}.{ZONE}", 6_000_000), "A"]),
        "NXDOMAIN"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("fleet.txt."))
        .collect();
    assert!(leftovers.is_empty(), "no key bundle: {leftovers:?}");
    let out = server.admin(&["unregister", "--code", &taken.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = server.admin(&["import", fleet.to_str().unwrap()]);
    assert!(out.status.success(), "the same fleet again: {}", text(&out));
    assert_eq!(
        server.status(&[&format!("{}.{ZONE}", 6_000_000), "A"]),
        "NOERROR"
    );
}

/// Terminals carry no storage engine: the updater's dependencies (resolved as for the
/// updater alone) include neither redb nor the store's encoding.
#[test]
fn the_updater_does_not_depend_on_the_storage_engine() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "updater",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("zones v"), "the tree names zones: {tree}");
    for engine in ["redb v", "postcard v"] {
        assert!(
            !tree.contains(engine),
            "the updater depends on {engine}: {tree}"
        );
    }
}
