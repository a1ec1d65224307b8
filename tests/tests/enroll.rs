//! Enrollment on the wire: a packet capture (tcpdump, loopback) of a whole enrollment holds
//! neither the token's secret, nor what the directory stores of it, nor the terminal's key,
//! in any encoding.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use support::{Nameserver, binary, require, text};

/// Every way a secret could be written: its bytes, hex, base64 and base64url.
fn encodings(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("raw".into(), secret.to_vec()),
        ("hex".into(), hex.clone().into_bytes()),
        ("HEX".into(), hex.to_uppercase().into_bytes()),
        ("base64".into(), STANDARD.encode(secret).into_bytes()),
        (
            "base64 unpadded".into(),
            STANDARD_NO_PAD.encode(secret).into_bytes(),
        ),
        ("base64url".into(), URL_SAFE.encode(secret).into_bytes()),
        (
            "base64url unpadded".into(),
            URL_SAFE_NO_PAD.encode(secret).into_bytes(),
        ),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_capture_of_an_enrollment_holds_no_secret() {
    require("tcpdump", "tcpdump");
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &[]);
    let out = server.admin(&["token", "create", "--kid", "acme"]);
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let capture = tmp.path().join("enroll.pcap");
    let port = server.port();
    let filter = format!("port {port}");
    let mut tcpdump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0", "-w"])
        .arg(&capture)
        .arg(&filter)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcpdump");
    // tcpdump says "listening on lo" once it captures.
    let stderr = tcpdump.stderr.take().unwrap();
    let (ready, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = ready.send(());
            }
        }
    });
    listening
        .recv_timeout(Duration::from_secs(10))
        .expect("tcpdump listening within 10 s");

    let key = tmp.path().join("enrolled.key");
    let server_addr = format!("127.0.0.1:{port}");
    let enrolled = Command::new(binary("updater"))
        .args(["enroll", "--server", &server_addr, "--token", &token])
        .args(["--mac", "02:00:00:00:00:01", "--key-file"])
        .arg(&key)
        .output()
        .expect("run updater enroll");
    assert!(enrolled.status.success(), "{}", text(&enrolled));
    // A query after it, so the last packet of the enrollment is surely written.
    server.short("dial.example", "SOA");
    let started = Instant::now();
    Command::new("kill")
        .args(["-INT", &tcpdump.id().to_string()])
        .status()
        .unwrap();
    while tcpdump.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    let captured = std::fs::read(&capture).unwrap();

    // The capture holds the exchange: the owner name, the public keys, the answer.
    let code = String::from_utf8_lossy(&enrolled.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    for expected in ["_enroll".as_bytes(), b"pub=", b"key=", code.as_bytes()] {
        assert!(
            contains(&captured, expected),
            "the capture ({} bytes) lacks {:?}: it did not see the enrollment",
            captured.len(),
            String::from_utf8_lossy(expected)
        );
    }

    let parsed: zones::enroll::Token = token.parse().unwrap();
    let secret = URL_SAFE_NO_PAD
        .decode(token.rsplit('.').next().unwrap())
        .unwrap();
    let verifier = parsed.verifier().0.to_vec();
    let key_file =
        zones::key::TsigKey::from_key_file(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let terminal = key_file.secret.as_bytes().to_vec();
    for (what, value) in [
        ("the token's secret", &secret),
        ("the token's verifier", &verifier),
        ("the terminal's key", &terminal),
    ] {
        assert_eq!(value.len(), 32, "{what}");
        for (encoding, bytes) in encodings(value) {
            assert!(
                !contains(&captured, &bytes),
                "{what} crossed the wire ({encoding})"
            );
        }
    }
}

/// An enrollment survives `kill -9` the moment it is acknowledged, and its key works with
/// nsupdate and (in Knot's format) knsupdate; enrollments and the admin changes are counted
/// in the metrics and logged without a secret.
#[test]
fn an_acknowledged_enrollment_survives_kill_9_and_is_counted() {
    require("nsupdate", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = support::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut server = Nameserver::start(&data, &["--metrics", &metrics]);
    let out = server.admin(&["token", "create", "--kid", "acme", "--uses", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let secret = token.rsplit('.').next().unwrap().to_owned();
    let addr = server.addr.to_string();
    let enroll = |token: &str, mac: &str, key: &std::path::Path, extra: &[&str]| {
        Command::new(binary("updater"))
            .args(["enroll", "--server", &addr, "--token", token, "--mac", mac])
            .arg("--key-file")
            .arg(key)
            .args(extra)
            .output()
            .expect("run updater enroll")
    };
    let key = tmp.path().join("5557001.key");
    let enrolled = enroll(&token, "02:00:00:00:00:01", &key, &["--code", "5557001"]);
    assert!(enrolled.status.success(), "{}", text(&enrolled));
    // Knot's key format, for knsupdate.
    let knot_key = tmp.path().join("5557002.knot");
    let args = ["--code", "5557002", "--key-format", "knot"];
    let knot = enroll(&token, "02:00:00:00:00:03", &knot_key, &args);
    assert!(knot.status.success(), "{}", text(&knot));
    let wrong = format!("{}.{}", token.rsplit_once('.').unwrap().0, "A".repeat(43));
    let refused = enroll(&wrong, "02:00:00:00:00:02", &tmp.path().join("x.key"), &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let counted = support::scrape(port);
    let count = |key: &str| support::sample(&counted, key);
    assert_eq!(count(r#"dial_enrollments_total{outcome="accepted"}"#), 2.0);
    assert!(count(r#"dial_enrollments_total{outcome="token_refused"}"#) >= 1.0);
    assert_eq!(
        count(r#"dial_enrollment_admin_total{event="token_created"}"#),
        1.0
    );

    let log = server.log();
    assert!(log.contains("enroll"), "enrollments are logged: {log}");
    assert!(!log.contains(&secret), "the token's secret is in the log");
    server.kill9();
    let server = Nameserver::start(&data, &[]);
    let update = "update add 5557001.dial.example. 60 A 192.0.2.70\nsend\n";
    let out = server.nsupdate(Some(&key), update);
    assert!(
        out.status.success(),
        "the enrolled key after kill -9: {}",
        text(&out)
    );
    assert_eq!(server.short("5557001.dial.example", "A"), ["192.0.2.70"]);
    require("knsupdate", "knot-dnsutils");
    let script = format!(
        "server 127.0.0.1 {}\nzone dial.example.\nupdate add 5557002.dial.example. 60 A 192.0.2.71\nsend\n",
        server.port()
    );
    let mut knsupdate = Command::new("knsupdate")
        .arg("-k")
        .arg(&knot_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run knsupdate");
    use std::io::Write as _;
    knsupdate
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = knsupdate.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "knsupdate with the enrolled key: {}",
        text(&out)
    );
    assert_eq!(server.short("5557002.dial.example", "A"), ["192.0.2.71"]);
    let listed = server.admin(&["token", "list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("2/3"),
        "the token's use survived: {}",
        text(&listed)
    );
}

/// A token with `--approve`: its terminal has no records and its updates are refused until
/// `nameserver approve`; then its key works.
#[test]
fn an_approval_token_holds_its_terminal_until_approved() {
    require("nsupdate", "bind9-dnsutils");
    let tmp = tempfile::tempdir().unwrap();
    let server = Nameserver::start(&tmp.path().join("data"), &[]);
    let out = server.admin(&["token", "create", "--kid", "acme", "--approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let key = tmp.path().join("5557101.key");
    let enrolled = Command::new(binary("updater"))
        .args([
            "enroll",
            "--server",
            &server.addr.to_string(),
            "--token",
            &token,
        ])
        .args([
            "--mac",
            "02:00:00:00:00:01",
            "--code",
            "5557101",
            "--key-file",
        ])
        .arg(&key)
        .output()
        .expect("run updater enroll");
    assert!(enrolled.status.success(), "{}", text(&enrolled));
    let update = "update add 5557101.dial.example. 60 A 192.0.2.80\nsend\n";
    let held = server.nsupdate(Some(&key), update);
    assert!(!held.status.success(), "an unapproved terminal updated");
    assert!(text(&held).contains("REFUSED"), "{}", text(&held));
    assert!(server.short("5557101.dial.example", "A").is_empty());
    let out = server.admin(&["approve", "--code", "5557101"]);
    assert!(out.status.success(), "{}", text(&out));
    let approved = server.nsupdate(Some(&key), update);
    assert!(approved.status.success(), "{}", text(&approved));
    assert_eq!(server.short("5557101.dial.example", "A"), ["192.0.2.80"]);
    let again = server.admin(&["approve", "--code", "5557101"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
}
