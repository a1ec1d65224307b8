//! The metrics endpoint, scraped with curl and read with the Prometheus project's Python
//! parser while dig, nsupdate and a UDP burst drive the server: the counters must match
//! the traffic sent.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use support::{Nameserver, free_port, sample, scrape, status_of, text};

const ZONE: &str = "dial.example";

fn replace_a(name: &str, ip: &str) -> String {
    format!("zone {ZONE}\nupdate delete {name} A\nupdate add {name} 60 A {ip}\nsend\n")
}

/// How much each listed sample grew between two scrapes.
fn grew(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    sample(after, key) - sample(before, key)
}

fn query(rtype: &str, rcode: &str, transport: &str) -> String {
    format!("dial_queries_total{{rcode=\"{rcode}\",transport=\"{transport}\",type=\"{rtype}\"}}")
}

fn update(outcome: &str) -> String {
    format!("dial_updates_total{{outcome=\"{outcome}\"}}")
}

fn transfer(kind: &str, outcome: &str) -> String {
    format!("dial_transfers_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}")
}

/// A transfer key as `tsig-keygen xfer` writes it.
fn transfer_key(dir: &std::path::Path) -> std::path::PathBuf {
    let key = dir.join("xfer.key");
    std::fs::write(
        &key,
        "key \"xfer\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=\";\n};\n",
    )
    .unwrap();
    key
}

#[test]
fn metrics_count_the_traffic_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let xfer = transfer_key(tmp.path());
    let metrics = format!("127.0.0.1:{port}");
    let server = Nameserver::start(
        &tmp.path().join("data"),
        &[
            "--metrics",
            &metrics,
            "--transfer-key",
            xfer.to_str().unwrap(),
        ],
    );
    let one = server.register("5551234", "acme", "3f9a0c1d22e4b7a8", tmp.path());
    let two = server.register("5551235", "acme", "3f9a0c1d22e4b7a9", tmp.path());

    // Updates: two accepted, one unsigned, one with a wrong secret, one with an unknown key.
    let start = scrape(port);
    for (key, name) in [
        (&one, "5551234.dial.example"),
        (&two, "5551235.dial.example"),
    ] {
        let out = server.nsupdate(Some(key), &replace_a(name, "192.0.2.1"));
        assert!(out.status.success(), "{}", text(&out));
    }
    let unsigned = server.nsupdate(None, &replace_a("5551234.dial.example", "192.0.2.9"));
    assert!(text(&unsigned).contains("REFUSED"), "{}", text(&unsigned));
    let original = std::fs::read_to_string(&one).unwrap();
    let secret = original.split('"').nth(3).unwrap();
    let wrong = tmp.path().join("wrong.key");
    std::fs::write(
        &wrong,
        original.replace(secret, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    )
    .unwrap();
    let badsig = server.nsupdate(
        Some(&wrong),
        &replace_a("5551234.dial.example", "192.0.2.9"),
    );
    assert!(text(&badsig).contains("BADSIG"), "{}", text(&badsig));
    let unknown = tmp.path().join("unknown.key");
    std::fs::write(&unknown, original.replace("5551234.3f9a", "5550000.3f9a")).unwrap();
    let badkey = server.nsupdate(
        Some(&unknown),
        &replace_a("5551234.dial.example", "192.0.2.9"),
    );
    assert!(text(&badkey).contains("BADKEY"), "{}", text(&badkey));
    let updated = scrape(port);
    for (outcome, expected) in [
        ("accepted", 2.0),
        ("refused", 1.0),
        ("badsig", 1.0),
        ("badkey", 1.0),
        ("badtime", 0.0),
        ("replay", 0.0),
        ("failed", 0.0),
    ] {
        assert_eq!(
            grew(&start, &updated, &update(outcome)),
            expected,
            "updates {outcome}"
        );
    }
    let flushes = grew(&start, &updated, "dial_flush_seconds_count{}");
    assert!(
        (1.0..=2.0).contains(&flushes),
        "two accepted updates took {flushes} group commits"
    );
    assert_eq!(grew(&start, &updated, "dial_flush_changes_sum{}"), 2.0);
    assert_eq!(sample(&updated, "dial_terminals_registered{}"), 2.0);
    assert_eq!(sample(&updated, "dial_terminals_online{}"), 1.0 + 1.0);

    // Queries: UDP answers from the fast path and the full path, TCP, transfers.
    for _ in 0..3 {
        assert_eq!(server.short("5551234.dial.example", "A"), vec!["192.0.2.1"]);
    }
    for _ in 0..2 {
        let out = server.dig(&["5550000.dial.example", "AAAA"]);
        assert_eq!(status_of(&out), "NXDOMAIN");
    }
    let soa = server.dig(&["+tcp", "+short", ZONE, "SOA"]);
    let serial: f64 = soa.split_whitespace().nth(2).unwrap().parse().unwrap();
    let txt = server.dig(&[ZONE, "TXT"]);
    assert_eq!(status_of(&txt), "NOERROR");
    let axfr = server.dig(&["-k", xfer.to_str().unwrap(), ZONE, "AXFR"]);
    assert!(axfr.contains("5551235.dial.example."), "{axfr}");
    let refused = server.dig(&[ZONE, "AXFR"]);
    assert!(refused.contains("Transfer failed"), "{refused}");
    let queried = scrape(port);
    for (key, expected) in [
        (query("A", "NOERROR", "udp"), 3.0),
        (query("AAAA", "NXDOMAIN", "udp"), 2.0),
        (query("SOA", "NOERROR", "tcp"), 1.0),
        (query("TXT", "NOERROR", "udp"), 1.0),
        (query("AXFR", "NOERROR", "tcp"), 1.0),
        (query("AXFR", "REFUSED", "tcp"), 1.0),
        (query("A", "NOERROR", "tcp"), 0.0),
        (transfer("axfr", "sent"), 1.0),
        (transfer("axfr", "refused"), 1.0),
        (transfer("ixfr", "sent"), 0.0),
    ] {
        assert_eq!(grew(&updated, &queried, &key), expected, "{key}");
    }
    let all_queries: f64 = queried
        .iter()
        .filter(|(k, _)| k.starts_with("dial_queries_total"))
        .map(|(k, v)| v - sample(&updated, k))
        .sum();
    assert_eq!(
        all_queries,
        3.0 + 2.0 + 1.0 + 1.0 + 2.0,
        "no other query counted"
    );
    assert_eq!(sample(&queried, "dial_zone_serial{}"), serial);
}

#[test]
fn rrl_drops_and_slips_are_counted() {
    const SENT: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let server = Nameserver::start(
        &tmp.path().join("data"),
        &["--metrics", &metrics, "--rate-limit", "20"],
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let before = scrape(port);
    // Queries for a missing code, far over 20 per second, paced so that no socket buffer
    // overflows (the kernel would drop them before the server sees them).
    for i in 0..SENT {
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut q = vec![(i >> 8) as u8, i as u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["5550000", "dial", "example"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        socket.send_to(&q, server.addr).unwrap();
    }
    let (mut answered, mut truncated) = (0, 0);
    let mut buf = [0u8; 512];
    while let Ok(n) = socket.recv(&mut buf) {
        assert!(n >= 12);
        answered += 1;
        truncated += usize::from(buf[2] & 0x02 != 0);
    }
    let after = scrape(port);
    let dropped = grew(
        &before,
        &after,
        "dial_rrl_responses_total{action=\"dropped\"}",
    );
    let slipped = grew(
        &before,
        &after,
        "dial_rrl_responses_total{action=\"slipped\"}",
    );
    let counted: f64 = ["NXDOMAIN", "NOERROR"]
        .iter()
        .map(|rcode| grew(&before, &after, &query("A", rcode, "udp")))
        .sum();
    assert!(
        dropped > 0.0 && slipped > 0.0,
        "dropped {dropped}, slipped {slipped}"
    );
    assert_eq!(
        counted, answered as f64,
        "every answer received was counted"
    );
    assert_eq!(
        slipped, truncated as f64,
        "every truncated slip was counted"
    );
    assert_eq!(
        counted + dropped,
        SENT as f64,
        "every query was answered or dropped"
    );
}

#[test]
fn the_metrics_endpoint_answers_only_scrapes_and_survives_bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let server = Nameserver::start(&tmp.path().join("data"), &["--metrics", &metrics]);
    let ask = |request: &[u8]| -> String {
        let mut stream = TcpStream::connect(&metrics).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(request);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    assert!(ask(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(ask(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 405"));
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(ask(huge.as_bytes()).starts_with("HTTP/1.1 431"));
    assert_eq!(
        ask(b"\xff\xfe garbage\r\n\r\n").split(' ').nth(1),
        Some("405")
    );
    // A client that connects and says nothing does not hold the endpoint.
    let _silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&metrics).unwrap())
        .collect();
    let head = ask(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(!head.contains("dial_queries"), "HEAD sent a body: {head}");
    assert!(sample(&scrape(port), "dial_zone_serial{}") >= 1.0);
    assert_eq!(server.status(&[ZONE, "SOA"]), "NOERROR");
}

#[test]
fn a_metrics_address_in_use_stops_the_start_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(support::binary("nameserver"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            &addr,
            "--data",
        ])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr} (metrics, tcp)")),
        "{err}"
    );
}
