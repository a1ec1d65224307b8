//! DNS over TLS (RFC 7858), tried with the clients people use: `kdig +tls` with the pin the
//! server logs, `dig +tls`, and a TSIG-signed zone transfer over TLS; the self-signed
//! certificate keeps its pin across restarts, and a given certificate's pin is the one
//! `openssl` computes.

mod support;

use std::path::Path;
use std::process::Command;

use support::{Nameserver, free_port, require, text};

const ZONE: &str = "dial.example";

/// The pin the server logged for DNS over TLS.
fn logged_pin(server: &Nameserver) -> String {
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("DNS over TLS, certificate public key pin"))
        .unwrap_or_else(|| panic!("no pin logged:\n{log}"));
    line.split("pin=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("pin=BASE64")
        .to_owned()
}

/// What a command wrote to standard output.
fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kdig` over TLS to `port`, checking `pin`; returns (success, standard output, or all it
/// said when it failed).
fn kdig(port: u16, pin: &str, args: &[&str]) -> (bool, String) {
    require("kdig", "knot-dnsutils");
    let out = Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+tls",
            "+time=3",
            "+retry=0",
        ])
        .arg(format!("+tls-pin={pin}"))
        .args(args)
        .output()
        .expect("run kdig");
    match out.status.success() {
        true => (true, stdout(&out)),
        false => (false, text(&out)),
    }
}

fn start(data: &Path, tls_port: u16, extra: &[&str]) -> Nameserver {
    let tls = format!("127.0.0.1:{tls_port}");
    let mut args = vec!["--tls-listen", tls.as_str()];
    args.extend_from_slice(extra);
    Nameserver::start(data, &args)
}

#[test]
fn lookups_and_a_signed_transfer_go_over_tls_to_the_pinned_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (xfer, secret) = support::transfer_key(dir.path());
    let port = free_port();
    let mut server = start(&data, port, &["--transfer-key", xfer.to_str().unwrap()]);
    let key = server.register("5551234", "acme", "0000000005551234", dir.path());
    let update = format!("zone {ZONE}\nupdate add 5551234.{ZONE} 60 A 192.0.2.44\nsend\n");
    let out = server.nsupdate(Some(&key), &update);
    assert!(out.status.success(), "{}", text(&out));

    let pin = logged_pin(&server);
    let (ok, answer) = kdig(port, &pin, &["+short", "5551234.dial.example", "A"]);
    assert!(ok, "{answer}");
    assert_eq!(answer.trim(), "192.0.2.44", "{answer}");

    // Another key's pin: the handshake is refused, nothing is answered.
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (ok, answer) = kdig(port, wrong, &["+short", "5551234.dial.example", "A"]);
    assert!(!ok && !answer.contains("192.0.2.44"), "{answer}");

    // BIND's dig, which does not verify, gets the same answer.
    require("dig", "bind9-dnsutils");
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+tls",
            "+short",
            "+time=3",
        ])
        .args(["5551234.dial.example", "A"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "192.0.2.44", "{}", text(&out));

    // A zone transfer over TLS (XoT), signed with the transfer key: streamed through the
    // same pipeline, every message signed.
    let tsig = format!("hmac-sha256:xfer:{secret}");
    let (ok, axfr) = kdig(port, &pin, &["-y", &tsig, "AXFR", ZONE]);
    assert!(ok, "{axfr}");
    assert!(axfr.contains("192.0.2.44"), "{axfr}");
    assert_eq!(axfr.matches("\tSOA\t").count(), 2, "{axfr}");
    assert!(!axfr.contains("TSIG verification failed"), "{axfr}");

    // The self-signed certificate is kept: a restart presents the same key.
    server.terminate();
    let server = start(&data, port, &[]);
    assert_eq!(logged_pin(&server), pin);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("tls/key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the TLS key is owner-only");
}

/// `updater dial --tls-pin` looks the code up over TLS and connects.
#[test]
fn updater_dial_looks_the_code_up_over_tls() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start(&dir.path().join("data"), port, &[]);
    let key = server.register("5551235", "acme", "0000000005551235", dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let callee = listener.local_addr().unwrap().port();
    let update = format!("zone {ZONE}\nupdate add 5551235.{ZONE} 60 A 127.0.0.1\nsend\n");
    let out = server.nsupdate(Some(&key), &update);
    assert!(out.status.success(), "{}", text(&out));
    let answering = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        stream.write_all(b"reply-over-tls-lookup\n").unwrap();
        line
    });
    let pin = logged_pin(&server);
    let mut dial = Command::new(support::binary("updater"))
        .args([
            "dial",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--tls-pin",
            &pin,
        ])
        .args(["5551235", &callee.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    dial.stdin
        .take()
        .unwrap()
        .write_all(b"hello-over-tls-lookup\n")
        .unwrap();
    let out = dial.wait_with_output().unwrap();
    assert_eq!(answering.join().unwrap(), "hello-over-tls-lookup\n");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "reply-over-tls-lookup\n");
}

#[test]
fn a_given_certificate_is_served_and_its_pin_is_the_one_openssl_computes() {
    require("openssl", "openssl");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=ns1.dial.example"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let openssl_pin = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            cert.display()
        ))
        .output()
        .unwrap();
    let openssl_pin = stdout(&openssl_pin).trim().to_owned();

    let port = free_port();
    let server = start(
        &dir.path().join("data"),
        port,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(logged_pin(&server), openssl_pin);
    let (ok, soa) = kdig(port, &openssl_pin, &["+short", ZONE, "SOA"]);
    assert!(ok && soa.contains("hostmaster.dial.example."), "{soa}");
    assert!(
        !dir.path().join("data/tls").exists(),
        "no self-signed certificate is made when one is given"
    );
}

#[test]
fn half_a_certificate_is_refused_at_start_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(support::binary("nameserver"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--tls-cert", "/nonexistent/tls.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("tls_key"), "{}", text(&out));
}
