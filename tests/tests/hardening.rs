//! Hostile input against the running binary: 100,000 random and mutated packets over UDP
//! and TCP, then checks that it still answers correctly and its memory stayed bounded.

mod support;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use support::{Nameserver, text};

const UDP_PACKETS: usize = 100_000;
const TCP_CONNECTIONS: usize = 200;
const TCP_FRAMES_EACH: usize = 50;

#[test]
fn a_flood_of_malformed_packets_leaves_the_server_answering_correctly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Nameserver::start(&tmp.path().join("data"), &[]);
    let key_path = server.register("5551234", "acme", "3f9a0c1d22e4b7a8", tmp.path());
    let script = "zone dial.example\nupdate add 5551234.dial.example 60 A 192.0.2.10\nsend\n";
    assert!(server.nsupdate(Some(&key_path), script).status.success());
    let key =
        zones::key::TsigKey::from_key_file(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    // An enrollment token too: its seeds enroll once, and every copy in the flood is a replay.
    let out = server.admin(&["token", "create", "--kid", "acme", "--uses", "10"]);
    assert!(out.status.success(), "{}", text(&out));
    let token: zones::enroll::Token = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let zone = zones::Zone::embedded_default();
    let mut seeds = fuzz::built_seeds(&key, &token.tsig_key(zone.origin()), zones::unix_now());
    seeds.extend(fuzz::shipped_corpus());
    // Each seed once, as its legitimate sender would (one is a valid signed update); then the
    // terminal's own address again. In the flood, every copy of a signed update is a replay.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4096];
    for seed in &seeds {
        udp.send_to(seed, server.addr).unwrap();
        let _ = udp.recv(&mut buf);
    }
    let script = "zone dial.example\nupdate delete 5551234.dial.example A\nupdate add 5551234.dial.example 60 A 192.0.2.10\nsend\n";
    assert!(server.nsupdate(Some(&key_path), script).status.success());
    let mut mutator = fuzz::Mutator::new(seeds, 0x5eed);
    // Warm up, then take the baseline.
    udp.set_nonblocking(true).unwrap();
    send_udp(&udp, &server, &mut mutator, 5_000);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = server.rss_kib();

    send_udp(&udp, &server, &mut mutator, UDP_PACKETS);
    let mut tcp_frames = 0;
    for _ in 0..TCP_CONNECTIONS {
        let Ok(mut stream) = TcpStream::connect(server.addr) else {
            continue;
        };
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        for _ in 0..TCP_FRAMES_EACH {
            let input = mutator.next_input();
            // Sometimes a lying length prefix, as a hostile client would send.
            let len = if tcp_frames % 7 == 0 {
                input.len() as u16 ^ 0x00ff
            } else {
                input.len() as u16
            };
            let mut frame = len.to_be_bytes().to_vec();
            frame.extend_from_slice(&input);
            if stream.write_all(&frame).is_err() {
                break;
            }
            tcp_frames += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(server.alive(), "the server died:\n{}", server.log());
    let after = server.rss_kib();
    println!(
        "flood: {UDP_PACKETS} UDP packets and {tcp_frames} TCP frames on {TCP_CONNECTIONS} connections; crashes: 0; RSS {baseline} KiB before, {after} KiB after"
    );
    assert!(
        after < baseline + 64 * 1024,
        "memory grew from {baseline} KiB to {after} KiB"
    );

    // Still correct, over UDP (after the rate limit refills) and TCP; no replay took effect.
    assert_eq!(
        server.short("5551234.dial.example", "A"),
        vec!["192.0.2.10"]
    );
    assert_eq!(
        server
            .dig(&["+tcp", "+short", "5551234.dial.example", "A"])
            .trim(),
        "192.0.2.10"
    );
    assert_eq!(server.status(&["nothing.dial.example", "A"]), "NXDOMAIN");
    let script = "zone dial.example\nupdate delete 5551234.dial.example A\nupdate add 5551234.dial.example 60 A 192.0.2.11\nsend\n";
    let out = server.nsupdate(Some(&key_path), script);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        server.short("5551234.dial.example", "A"),
        vec!["192.0.2.11"]
    );
}

fn send_udp(socket: &UdpSocket, server: &Nameserver, mutator: &mut fuzz::Mutator, count: usize) {
    let mut buf = [0u8; 4096];
    for i in 0..count {
        let input = mutator.next_input();
        // Loopback never drops for lack of buffer if we pace a little and drain answers.
        while socket.send_to(&input, server.addr).is_err() {
            std::thread::sleep(Duration::from_micros(50));
        }
        if i % 64 == 0 {
            while socket.recv(&mut buf).is_ok() {}
        }
    }
}
