//! Rounds: every server once per round, the order rotated from round to round, so that
//! drift on the machine (another tenant, thermal state, page cache) falls on all of them
//! alike; the report takes medians.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::report::{BackupFigures, ImportFigures, Results};
use crate::{Data, Options, Server, crash, free_port, load, measure_queries, peers, run_ok};

/// The earlier build `--servers directory-before` runs (`BENCH_BEFORE`), or an empty path.
pub fn before_build() -> std::path::PathBuf {
    std::env::var_os("BENCH_BEFORE").unwrap_or_default().into()
}

/// A server under test.
#[derive(Debug, Clone, Copy)]
pub enum Subject {
    Directory,
    /// The directory with `--metrics` on: what counting costs.
    DirectoryMetrics,
    /// The directory with `--dnssec` on.
    DirectoryDnssec,
    /// An earlier build of the directory (`BENCH_BEFORE`), for a before/after in one run.
    DirectoryBefore,
    Peer(peers::Peer),
    /// The physical floor: a responder that answers each query with its own bytes,
    /// nothing parsed (`src/bin/floor.rs`).
    Floor,
}

impl Subject {
    pub fn name(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::DirectoryMetrics => "directory+metrics",
            Self::DirectoryDnssec => "directory+dnssec",
            Self::DirectoryBefore => "directory-before",
            Self::Peer(p) => p.name(),
            Self::Floor => "floor",
        }
    }
}

/// Runs `o.rounds` rounds over `subjects` (the directory first in the first round, since
/// the peers serve the zone it exports).
pub fn run(
    nameserver: &Path,
    dir: &Path,
    data: &Data,
    subjects: &[Subject],
    o: &Options,
) -> Results {
    let mut results = Results::default();
    for round in 0..o.rounds {
        let mut order = subjects.to_vec();
        order.rotate_left(round % subjects.len().max(1));
        println!(
            "round {}: {}",
            round + 1,
            order
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for subject in order {
            match subject {
                Subject::Directory
                | Subject::DirectoryMetrics
                | Subject::DirectoryDnssec
                | Subject::DirectoryBefore => {
                    let before = before_build();
                    let ours = Ours {
                        nameserver: match subject {
                            Subject::DirectoryBefore => &before,
                            _ => nameserver,
                        },
                        name: subject.name(),
                        metrics: matches!(subject, Subject::DirectoryMetrics),
                        dnssec: matches!(subject, Subject::DirectoryDnssec),
                    };
                    directory(&ours, dir, data, o, round, &mut results);
                }
                Subject::Peer(peer) => peer_round(peer, dir, data, o, &mut results),
                Subject::Floor if o.lookups => {
                    let floor = nameserver.with_file_name("floor");
                    let server = Server::floor(&floor, free_port());
                    let startup = server.wait_answering(Duration::from_secs(10));
                    let figures = measure_queries("floor", &server, startup, data, o, false);
                    results.queries.push(figures);
                }
                Subject::Floor => {}
            }
        }
    }
    results
}

/// The directory: a fresh store, the fleet imported (timed), restarted (start-up timed),
/// then queries and updates.
/// Which build of the directory runs, and how.
struct Ours<'a> {
    nameserver: &'a Path,
    name: &'static str,
    /// With `--metrics` on a free port.
    metrics: bool,
    /// With `--dnssec`.
    dnssec: bool,
}

impl Ours<'_> {
    fn start(&self, dir: &Path, data_dir: &Path, port: u16) -> Server {
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut extra: Vec<&str> = Vec::new();
        if self.metrics {
            extra.extend(["--metrics", &metrics]);
        }
        if self.dnssec {
            extra.push("--dnssec");
        }
        Server::ours(self.nameserver, dir, data_dir, port, &extra)
    }
}

fn directory(
    ours: &Ours,
    dir: &Path,
    data: &Data,
    o: &Options,
    round: usize,
    results: &mut Results,
) {
    let nameserver = ours.nameserver;
    let data_dir = dir.join(format!("data-{round}-{}", ours.name.replace('+', "-")));
    let port = free_port();
    let server = ours.start(dir, &data_dir, port);
    server.wait_ready(Duration::from_secs(30));
    let started = Instant::now();
    crate::import(nameserver, &data.fleet, &data_dir);
    let import = started.elapsed();
    let (_, import_peak_kib) = server.usage();
    run_ok(
        Command::new(nameserver)
            .arg("import")
            .arg(&data.updaters)
            .arg("--keys-dir")
            .arg(&data.keys_dir)
            .arg("--data")
            .arg(&data_dir),
    );
    if !data.zone_file.exists() {
        run_ok(
            Command::new(nameserver)
                .args(["export", "--output"])
                .arg(&data.zone_file)
                .arg("--data")
                .arg(&data_dir),
        );
    }
    drop(server);
    let store = data_dir.join("store");
    let per_terminal = |bytes: u64| bytes as f64 / o.codes.max(1) as f64;
    let (allocated, length) = dir_size(&store);
    let server = ours.start(dir, &data_dir, port);
    let startup = server.wait_ready(Duration::from_secs(60));
    let mut figures = ImportFigures {
        name: ours.name.to_owned(),
        import_s: import.as_secs_f64(),
        import_peak_rss_mib: import_peak_kib as f64 / 1024.0,
        bytes_per_terminal: per_terminal(allocated),
        bytes_per_terminal_after_updates: 0.0,
        file_bytes_per_terminal: per_terminal(length),
        after_fleet_updates: None,
    };
    if o.fleet_updates > 0 && !ours.dnssec && !ours.metrics {
        // The fleet's own keys, from the import's bundle beside the fleet file.
        let bundle = data.fleet.with_extension("txt.keys");
        server.reset_peak();
        let rss_before = server.rss_kib();
        results.updates.push(load::run_fleet(
            "directory, fleet updates",
            &server,
            &bundle,
            o,
        ));
        let (_, peak) = server.usage();
        figures.after_fleet_updates = Some((
            per_terminal(dir_size(&store).0),
            peak.saturating_sub(rss_before) as f64 / 1024.0,
        ));
    }
    if o.lookups {
        results
            .queries
            .push(measure_queries(ours.name, &server, startup, data, o, false));
        if ours.dnssec {
            let name = "directory+dnssec DO";
            results
                .queries
                .push(measure_queries(name, &server, startup, data, o, true));
        }
    }
    if ours.metrics {
        // Only the lookups are compared with and without metrics.
        drop(server);
        let _ = std::fs::remove_dir_all(&data_dir);
        return;
    }
    if o.updates_part {
        results
            .updates
            .push(load::run_ours(ours.name, &server, data, o));
    }
    if ours.dnssec {
        // Only lookups, updates and the import (with the first signing) are compared.
        drop(server);
        figures.bytes_per_terminal_after_updates = per_terminal(dir_size(&store).0);
        println!("{}: {figures:?}", ours.name);
        results.imports.push(figures);
        let _ = std::fs::remove_dir_all(&data_dir);
        return;
    }
    if o.enroll {
        let figures = crate::enroll::run(nameserver, &data_dir, &server, round, o);
        results.enrollments.push(figures);
    }
    if o.backup {
        results
            .backups
            .push(backup_and_restore(nameserver, dir, &data_dir));
    }
    drop(server);
    if o.kill9 {
        let start = || ours.start(dir, &data_dir, port);
        results
            .crashes
            .push(crash::run(start, data, &data.keys_dir, round));
    }
    figures.bytes_per_terminal_after_updates = per_terminal(dir_size(&store).0);
    println!("directory: {figures:?}");
    results.imports.push(figures);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// `nameserver backup` of the running server, then `nameserver restore` of that file into a
/// new directory, both timed.
fn backup_and_restore(nameserver: &Path, dir: &Path, data_dir: &Path) -> BackupFigures {
    let file = dir.join("directory.backup");
    let restored = dir.join("restored");
    let _ = std::fs::remove_dir_all(&restored);
    let started = Instant::now();
    run_ok(
        Command::new(nameserver)
            .args(["backup", "--output"])
            .arg(&file)
            .arg("--data")
            .arg(data_dir),
    );
    let backup_s = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
    let started = Instant::now();
    run_ok(
        crate::confine::on_core_one(nameserver)
            .arg("restore")
            .arg(&file)
            .arg("--data")
            .arg(&restored),
    );
    let figures = BackupFigures {
        backup_s,
        restore_s: started.elapsed().as_secs_f64(),
        file_mib: bytes as f64 / (1024.0 * 1024.0),
    };
    let _ = std::fs::remove_dir_all(&restored);
    let _ = std::fs::remove_file(&file);
    println!("directory: {figures:?}");
    figures
}

/// A peer from the exported zone file: start-up, queries, and updates where it takes them.
fn peer_round(peer: peers::Peer, dir: &Path, data: &Data, o: &Options, results: &mut Results) {
    match peers::start(peer, dir, &data.zone_file, &data.update_key) {
        Ok(server) => {
            let startup = server.wait_ready(Duration::from_secs(180));
            if o.lookups {
                let dnssec = matches!(peer, peers::Peer::KnotDnssec);
                let name = if dnssec {
                    "knot+dnssec DO"
                } else {
                    peer.name()
                };
                results
                    .queries
                    .push(measure_queries(name, &server, startup, data, o, dnssec));
            }
            if o.updates_part && peer.accepts_updates() {
                results
                    .updates
                    .push(load::run_peer(peer.name(), &server, data, o));
            }
        }
        Err(why) => println!("{}: skipped ({why})", peer.name()),
    }
    let _ = std::fs::remove_dir_all(dir.join(peer.name()));
}

/// The disk blocks allocated to the files under `path` (in bytes, as `du` counts them), and
/// the files' lengths.
fn dir_size(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(path) else {
        return (0, 0);
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => (m.blocks() * 512, m.len()),
            Err(_) => (0, 0),
        })
        .fold((0, 0), |(a, l), (b, n)| (a + b, l + n))
}
