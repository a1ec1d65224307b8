//! The enrollment load: `o.enrollments` terminals enroll themselves with one token, from
//! `o.concurrency` clients at once (each enrollment its own UDP socket, its own X25519 key
//! pair, as separate terminals would), against the directory holding the imported fleet.
//! Enrollments per second, latency p50/p99, and the directory's CPU per enrollment; every
//! enrollment counted is acknowledged, which the directory does only once it is durable,
//! and the token's use count is checked against them afterwards.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;
use updater::enroll::{Enroll, enroll};
use updater::tls::Channel;
use zones::enroll::Token;
use zones::identity::{MacAddress, Mid};

use crate::load::{Counted, joined, tally};
use crate::report::EnrollFigures;
use crate::{Options, Server, percentile, run_ok};

/// One round of enrollments against `server`, whose data directory is `data_dir`.
pub fn run(
    nameserver: &Path,
    data_dir: &Path,
    server: &Server,
    round: usize,
    o: &Options,
) -> EnrollFigures {
    let total = o.enrollments;
    let uses = total.to_string();
    let text = run_ok(
        Command::new(nameserver)
            .args([
                "token",
                "create",
                "--kid",
                "bench",
                "--uses",
                &uses,
                "--expires",
                "1h",
            ])
            .arg("--data")
            .arg(data_dir),
    );
    let token: Token = text.trim().parse().expect("a token");
    let zone = Name::from_ascii("dial.example.").expect("the zone");
    let addr: SocketAddr = server.addr;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let next = Arc::new(AtomicUsize::new(0));
    let (cpu_before, _) = server.usage();
    let started = Instant::now();
    let results: Vec<Counted> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..o.concurrency.max(1) {
            let (next, token, zone) = (next.clone(), token.clone(), zone.clone());
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let request = Enroll {
                        server: addr,
                        zone: zone.clone(),
                        token: token.clone(),
                        mid: Mid::derive(&token.kid, &mac_of(round, n)),
                        code: None,
                        timeout: Duration::from_secs(5),
                        channel: Channel::Plain,
                    };
                    let sent = Instant::now();
                    match enroll(&request).await {
                        Ok(_) => {
                            ok += 1;
                            latencies.push(sent.elapsed().as_secs_f64());
                        }
                        Err(e) => {
                            if failed == 0 {
                                eprintln!("enrollment {n} failed: {e}");
                            }
                            failed += 1;
                        }
                    }
                }
                (ok, failed, latencies)
            }));
        }
        joined(tasks).await
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_after, _) = server.usage();
    let (ok, failed, latencies) = tally(results);
    // The directory's own count: every acknowledged enrollment used the token once.
    let listed = run_ok(
        Command::new(nameserver)
            .args(["token", "list", "--data"])
            .arg(data_dir),
    );
    let used = listed
        .lines()
        .find(|l| l.contains(token.id.as_str()))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|u| u.split('/').next())
        .and_then(|u| u.parse::<usize>().ok())
        .unwrap_or(0);
    assert_eq!(
        used, ok,
        "the token's use count is not the acknowledged enrollments"
    );
    let figures = EnrollFigures {
        name: "directory".into(),
        per_s: ok as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.50) * 1e3,
        p99_ms: percentile(&latencies, 0.99) * 1e3,
        cpu_us_per_enrollment: (cpu_after - cpu_before) / ok.max(1) as f64 * 1e6,
        enrolled: ok,
        failed,
    };
    println!("enroll: {figures:?}");
    figures
}

/// A distinct locally administered MAC for enrollment `n` of round `round`.
fn mac_of(round: usize, n: usize) -> MacAddress {
    let text = format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        round & 0xff,
        (n >> 24) & 0xff,
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    );
    text.parse().expect("a MAC")
}
