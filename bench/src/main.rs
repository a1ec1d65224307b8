//! The benchmark harness: `cargo run --release -p bench -- [options]`.
//!
//! In one run, with the same data for everyone, over `--rounds` rounds (at least 3) in which
//! every server runs once, in an order rotated from round to round:
//!
//! 1. the directory: a fresh store, N codes provisioned with `nameserver import` (the
//!    product's bulk path; timed, with the server's peak memory), restarted; the first
//!    round exports the zone for the peers;
//! 2. each server (the directory, Knot, NSD and BIND, those installed) kept on core 1 by a
//!    cpuset cgroup ([`confine`]) while `dnsperf` runs on core 0: start-up time to the
//!    first answer, queries per second unlimited, latency p50/p99 at a fixed rate, server
//!    CPU seconds per query, peak RSS;
//! 3. signed updates: a load generator (hickory-net, many keys, configurable concurrency)
//!    against the directory (one key per terminal), BIND and Knot (one key for the zone);
//!    durable updates per second and latency p50/p99;
//! 4. with `--parts kill9`: `kill -9` during streams of signed updates from every key, three
//!    times a round, and each terminal's last acknowledged address checked after the restart
//!    (a loss fails the run) ([`crash`]);
//! 5. prints medians with the min-max spread, and ratios of medians ours/peer, and writes
//!    them to `bench/results/`. The lookups' headline is the server's CPU per answered
//!    query, beside the physical floor (`floor`: a responder on the same core that answers
//!    each query with its own bytes through the same batched socket code, nothing parsed):
//!    dnsperf on one core saturates near every server's rate, so queries/s say little.
//!
//! With `--parts enroll`, `--enrollments` terminals (10,000) enroll themselves with one
//! token from `--concurrency` clients into the directory holding the fleet ([`enroll`]):
//! durable enrollments per second, p50/p99, and the directory's CPU per enrollment.
//!
//! With `--parts cluster` (alone), a cluster of three nodes against a single server
//! ([`cluster`]): durable signed updates per second and p99, CPU per lookup on a follower,
//! and the time from the leader's loss to the first acknowledged update.
//!
//! With `--parts scale`, the directory's start-up and resident memory are taken at each
//! fleet size of `--scale-codes` ([`scale`]). Every run writes SVG charts beside its table
//! ([`plot`]): CPU per query, queries/s and p99 per server with the physical floor, durable
//! updates and enrollments per second, and start-up and RSS against the number of
//! terminals.
//!
//! The figures of every round are kept beside the table as JSON (`NAME.json`), and
//! `--replot NAME.json` draws the charts again from them.
//!
//! With `--parts backup`, `nameserver backup` of the running directory and `nameserver
//! restore` of the file are timed. `directory+metrics` (only with `--servers`) runs the
//! lookups again with `--metrics` on, for the cost of counting. `directory+dnssec` runs the
//! directory with `--dnssec` (the import then includes the first signing): lookups without
//! DO, then with DO (row `directory+dnssec DO`), and updates; `knot+dnssec` is Knot signing
//! the same zone (ECDSA P-256 CSK, NSEC3 without iterations or salt), looked up with DO
//! (row `knot+dnssec DO`) and taking updates, which it signs. `--servers` and `--parts` (lookups, updates, kill9,
//! backup; lookups and updates by default) choose what runs.
//!
//! The fleet (`--fleet`): by default as a real export comes, in no particular order, with
//! codes of 7 to 10 digits and a customer (KID) for about every 20 terminals; `ordered`
//! (code order, 7 digits, one KID) is the easy case, kept for comparison.
//!
//! Query mix (as in the issue): 80% A of existing codes, 10% AAAA of existing codes,
//! 10% names that do not exist. Loopback only; every load is bounded in time.

mod cluster;
mod confine;
mod crash;
mod enroll;
mod load;
mod peers;
mod plot;
mod report;
mod rounds;
mod scale;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use report::{QueryFigures, Table};
use rounds::Subject;

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Options {
    pub codes: usize,
    pub seconds: u64,
    pub rate: u32,
    pub updates: usize,
    pub concurrency: usize,
    pub keys: usize,
    pub rounds: usize,
    pub out: PathBuf,
    /// Which servers run (directory, knot, nsd, bind); all installed ones by default.
    pub servers: Vec<String>,
    /// Whether lookups and updates are measured (`--parts lookups,updates`).
    pub lookups: bool,
    pub updates_part: bool,
    /// `kill -9` during updates, at this scale, each round.
    pub kill9: bool,
    /// `nameserver backup` and `restore`, timed, each round.
    pub backup: bool,
    /// Terminals enrolling themselves with a token, each round ([`enroll`]).
    pub enroll: bool,
    /// How many enroll per round.
    pub enrollments: usize,
    /// A cluster of three against a single server ([`cluster`]); runs alone.
    pub cluster: bool,
    /// Fleet sizes for `--parts scale` (start-up and RSS against the number of terminals).
    pub scale_codes: Vec<usize>,
    /// How the fleet comes ([`Fleet`]).
    pub fleet: Fleet,
    /// Signed updates to terminals of the fleet drawn at random, each with its own key,
    /// after the import (0: none).
    pub fleet_updates: usize,
}

/// How the generated fleet comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fleet {
    /// As a real export: in no particular order, codes of 7 to 10 digits, a customer (KID)
    /// for about every 20 terminals. The default.
    Shuffled,
    /// In code order, 7-digit codes, one KID: the easy case, for comparison.
    Ordered,
}

impl Fleet {
    pub fn name(self) -> &'static str {
        match self {
            Self::Shuffled => "shuffled",
            Self::Ordered => "ordered",
        }
    }
}

/// `--replot NAME.json`: only the charts, from a run's saved figures.
fn replot_file() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--replot")?;
    Some(PathBuf::from(args.get(i + 1).expect("--replot NAME.json")))
}

fn parse_options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let num = |flag: &str, default: u64| get(flag).and_then(|v| v.parse().ok()).unwrap_or(default);
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: bench [--codes N (100000)] [--seconds S (10)] [--rate QPS (50000)] \
             [--updates N (5000)] [--concurrency C (64)] [--keys K (500)] [--rounds R (3)] \
             [--out FILE] [--servers directory,directory+metrics,knot,nsd,bind,floor] [--parts lookups,updates,kill9,backup,enroll,scale | cluster] [--enrollments N (10000)] [--scale-codes N,N,... (10000,100000,300000,1000000)] \
             [--fleet shuffled|ordered (shuffled)] [--fleet-updates N (0)]"
        );
        std::process::exit(0);
    }
    Options {
        codes: num("--codes", 100_000) as usize,
        seconds: num("--seconds", 10),
        rate: num("--rate", 50_000) as u32,
        updates: num("--updates", 5000) as usize,
        concurrency: num("--concurrency", 64) as usize,
        keys: num("--keys", 500) as usize,
        rounds: (num("--rounds", 3) as usize).max(3),
        out: get("--out")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("bench/results/latest.md")),
        servers: list(get("--servers"), "directory,knot,nsd,bind,floor"),
        lookups: list(get("--parts"), "lookups,updates").contains(&"lookups".to_string()),
        updates_part: list(get("--parts"), "lookups,updates").contains(&"updates".to_string()),
        kill9: list(get("--parts"), "lookups,updates").contains(&"kill9".to_string()),
        backup: list(get("--parts"), "lookups,updates").contains(&"backup".to_string()),
        enroll: list(get("--parts"), "lookups,updates").contains(&"enroll".to_string()),
        enrollments: num("--enrollments", 10_000) as usize,
        cluster: list(get("--parts"), "lookups,updates").contains(&"cluster".to_string()),
        scale_codes: if list(get("--parts"), "lookups,updates").contains(&"scale".to_string()) {
            list(get("--scale-codes"), "10000,100000,300000,1000000")
                .iter()
                .map(|c| c.parse().expect("--scale-codes: numbers"))
                .collect()
        } else {
            Vec::new()
        },
        fleet_updates: num("--fleet-updates", 0) as usize,
        fleet: match get("--fleet").as_deref() {
            None | Some("shuffled") => Fleet::Shuffled,
            Some("ordered") => Fleet::Ordered,
            Some(other) => {
                eprintln!("bench: --fleet {other:?}: use shuffled or ordered");
                std::process::exit(2);
            }
        },
    }
}

/// A comma-separated flag value, or the default.
fn list(value: Option<String>, default: &str) -> Vec<String> {
    value
        .as_deref()
        .unwrap_or(default)
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn main() {
    if let Some(json) = replot_file() {
        // The charts again from a run's figures (`NAME.json` beside `NAME.md`).
        let text = std::fs::read_to_string(&json).expect("read the figures");
        let results: report::Results = serde_json::from_str(&text).expect("the figures");
        for chart in plot::write(&json.with_extension("md"), &results) {
            println!("chart: {}", chart.display());
        }
        return;
    }
    let options = parse_options();
    for (tool, package) in [
        ("dnsperf", "dnsperf"),
        ("taskset", "util-linux"),
        ("dig", "bind9-dnsutils"),
    ] {
        if !peers::installed(tool) {
            eprintln!("bench: `{tool}` is not installed: apt-get install {package}");
            std::process::exit(1);
        }
    }
    let nameserver = build_release();
    if let Err(e) = confine::init() {
        eprintln!("bench: cannot keep the servers on core 1: {e} (run as root on Linux)");
        std::process::exit(1);
    }
    // The harness itself (the update load generator) runs on core 0, beside dnsperf, away
    // from the servers on core 1.
    run_ok(Command::new("taskset").args(["-a", "-p", "-c", "0", &std::process::id().to_string()]));
    let work = tempfile::tempdir().expect("temporary directory");
    let dir = work.path();
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("keeping the work directory {}", dir.display());
    }
    let data = Data::generate(dir, options.codes, options.keys, options.fleet);
    if options.cluster {
        let rounds = cluster::run(&nameserver, dir, &data, &options);
        let text = cluster::render(&rounds, &options);
        println!("\n{text}");
        if let Some(parent) = options.out.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(&options.out, &text).expect("write the results");
        let figures = serde_json::to_string_pretty(&rounds).expect("the figures as JSON");
        std::fs::write(options.out.with_extension("json"), figures).expect("write the figures");
        println!("written to {}", options.out.display());
        return;
    }
    let mut subjects = Vec::new();
    if options.servers.iter().any(|s| s == "directory") {
        subjects.push(Subject::Directory);
    }
    if options.servers.iter().any(|s| s == "directory-before") {
        if !rounds::before_build().is_file() {
            eprintln!(
                "bench: `directory-before` needs BENCH_BEFORE=/path/to/an/earlier/nameserver"
            );
            std::process::exit(1);
        }
        subjects.push(Subject::DirectoryBefore);
    }
    if options.servers.iter().any(|s| s == "directory+metrics") {
        subjects.push(Subject::DirectoryMetrics);
    }
    if options.servers.iter().any(|s| s == "directory+dnssec") {
        subjects.push(Subject::DirectoryDnssec);
    }
    let floor_last = options.servers.iter().any(|s| s == "floor");
    for peer in [
        peers::Peer::Knot,
        peers::Peer::KnotDnssec,
        peers::Peer::Nsd,
        peers::Peer::Bind,
    ] {
        if !options.servers.iter().any(|s| s == peer.name()) {
            continue;
        }
        if peers::installed(peer.program()) {
            subjects.push(Subject::Peer(peer));
        } else {
            println!("{}: not installed, left out", peer.name());
        }
    }
    if floor_last {
        subjects.push(Subject::Floor);
    }
    let mut results = rounds::run(&nameserver, dir, &data, &subjects, &options);
    results.scale = scale::run(&nameserver, dir, &options);
    let table = Table::new(&options, results);
    let text = table.render();
    println!("\n{text}");
    if let Some(parent) = options.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&options.out, &text).expect("write the results");
    let figures = serde_json::to_string_pretty(table.results()).expect("the figures as JSON");
    std::fs::write(options.out.with_extension("json"), figures).expect("write the figures");
    println!("written to {}", options.out.display());
    for chart in plot::write(&options.out, table.results()) {
        println!("chart: {}", chart.display());
    }
    if std::env::var_os("BENCH_KEEP").is_some() {
        let _ = work.keep();
    }
}

/// Builds the release binaries (the nameserver, the floor responder); returns the
/// nameserver's path (the floor's is beside it).
fn build_release() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for package in [
        &["-p", "nameserver"][..],
        &["-p", "bench", "--bin", "floor"],
    ] {
        run_ok(
            Command::new(&cargo)
                .args(["build", "--release", "--quiet"])
                .args(package)
                .current_dir(workspace()),
        );
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("release/nameserver")
}

/// Runs a command to completion; exits the harness if it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        eprintln!(
            "bench: {cmd:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nameserver import FILE` into the server whose data directory is `data_dir`.
pub fn import(nameserver: &Path, file: &Path, data_dir: &Path) {
    run_ok(
        Command::new(nameserver)
            .arg("import")
            .arg(file)
            .arg("--data")
            .arg(data_dir),
    );
}

pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The generated inputs.
#[derive(Debug)]
pub struct Data {
    pub fleet: PathBuf,
    pub updaters: PathBuf,
    pub queries: PathBuf,
    pub zone_file: PathBuf,
    pub update_key: PathBuf,
    pub keys_dir: PathBuf,
    pub updater_codes: Vec<String>,
}

impl Data {
    fn generate(dir: &Path, codes: usize, keys: usize, shape: Fleet) -> Self {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let updater_codes: Vec<String> = (0..keys).map(|i| format!("{}", 7_000_000 + i)).collect();
        let fleet_codes = fleet_codes(codes, shape, &updater_codes, &mut rng);
        let mut fleet = String::with_capacity(codes * 48);
        for (i, code) in fleet_codes.iter().enumerate() {
            let v6 = if i % 10 == 0 {
                format!(" 2001:db8::{:x}:{:x}", i >> 16, i & 0xffff)
            } else {
                String::new()
            };
            let kid = match shape {
                Fleet::Shuffled => format!("cust{:06}", i / 20),
                Fleet::Ordered => "fleet".to_owned(),
            };
            fleet.push_str(&format!(
                "{code} {kid} {i:016x} 10.{}.{}.{}{v6}\n",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            ));
        }
        let updaters: String = updater_codes
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} bench {:016x} 192.0.2.1\n", 0x00be_0000_0000 + i))
            .collect();
        // The mix: 80% A, 10% AAAA (codes that have one: every tenth line), 10% names that
        // do not exist (codes of the same lengths, not in the fleet).
        let taken: std::collections::HashSet<&str> =
            fleet_codes.iter().map(String::as_str).collect();
        let mut queries = String::new();
        for n in 0..200_000u64 {
            let r = rng.next() as usize;
            let line = match n % 10 {
                0 => format!(
                    "{}.dial.example AAAA\n",
                    fleet_codes[(r % codes.max(10) / 10) * 10 % codes.max(1)]
                ),
                1 => loop {
                    let code = random_code(&mut rng, shape);
                    if !taken.contains(code.as_str()) {
                        break format!("{code}.dial.example A\n");
                    }
                },
                _ => format!("{}.dial.example A\n", fleet_codes[r % codes.max(1)]),
            };
            queries.push_str(&line);
        }
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write bench data");
            path
        };
        let key = format!(
            "key \"bench-updates\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
            "YmVuY2htYXJrLXVwZGF0ZS1rZXktMzItYnl0ZXMhISE="
        );
        Self {
            fleet: write("fleet.txt", &fleet),
            updaters: write("updaters.txt", &updaters),
            queries: write("queries.txt", &queries),
            zone_file: dir.join("dial.example.zone"),
            update_key: write("bench-updates.key", &key),
            keys_dir: dir.join("keys"),
            updater_codes,
        }
    }
}

/// A small, fixed pseudo-random sequence (xorshift64*): the same data in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A code as the fleet has them: 7 to 10 digits when shuffled, 7 when ordered.
fn random_code(rng: &mut Rng, shape: Fleet) -> String {
    let digits = match shape {
        Fleet::Shuffled => 7 + (rng.next() % 4) as u32,
        Fleet::Ordered => 7,
    };
    let low = 10u64.pow(digits - 1);
    format!("{}", low + rng.next() % (9 * low))
}

/// `count` distinct codes (none of them an updater's): shuffled, of several lengths, or in
/// code order from 5,000,000.
fn fleet_codes(count: usize, shape: Fleet, updaters: &[String], rng: &mut Rng) -> Vec<String> {
    if shape == Fleet::Ordered {
        return (0..count).map(|i| format!("{}", 5_000_000 + i)).collect();
    }
    let reserved: std::collections::HashSet<&str> = updaters.iter().map(String::as_str).collect();
    let mut seen = std::collections::HashSet::with_capacity(count);
    let mut codes = Vec::with_capacity(count);
    while codes.len() < count {
        let code = random_code(rng, shape);
        if !reserved.contains(code.as_str()) && seen.insert(code.clone()) {
            codes.push(code);
        }
    }
    // Already in no order: drawn at random.
    codes
}

/// A server process under test, pinned to core 1.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub spawned: Instant,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Kills the server with SIGKILL, as a crash or a power cut would stop it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn ours(
        nameserver: &Path,
        dir: &Path,
        data_dir: &Path,
        port: u16,
        extra: &[&str],
    ) -> Self {
        let child = confine::on_core_one(nameserver)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data_dir)
            .args(["--rate-limit", "0", "--update-rate-limit", "0"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join(format!(
                    "nameserver-{}.log",
                    data_dir.file_name().map_or("x".into(), |n| n.to_string_lossy())
                )))
                .map_or(Stdio::null(), Stdio::from),
            )
            .spawn()
            .expect("start the nameserver");
        Self::new(child, port)
    }

    /// The floor responder ([`rounds::Subject::Floor`]) on `port`.
    fn floor(floor: &Path, port: u16) -> Self {
        let child = confine::on_core_one(floor)
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the floor responder");
        Self::new(child, port)
    }

    /// Waits until any answer comes back (the floor answers with the query's own bytes).
    fn wait_answering(&self, limit: Duration) -> Duration {
        self.wait_for(limit, |answer| answer[2] & 0x80 != 0)
    }

    pub fn new(child: Child, port: u16) -> Self {
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            spawned: Instant::now(),
        }
    }

    /// Waits until the zone's SOA is answered to a query with DO (a signed zone: with its
    /// signatures in force); returns the time since the process started.
    pub fn wait_ready(&self, limit: Duration) -> Duration {
        // NOERROR with an answer: the zone is loaded.
        self.wait_for(limit, |answer| answer[3] & 0x0f == 0 && answer[7] > 0)
    }

    /// Asks for the SOA until an answer of more than a header passes `accept`, checking
    /// then that the server kept to core 1; returns the time since the process started.
    fn wait_for(&self, limit: Duration, accept: impl Fn(&[u8]) -> bool) -> Duration {
        let query = soa_query();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        while self.spawned.elapsed() < limit {
            let _ = socket.send_to(&query, self.addr);
            if socket
                .recv(&mut buf)
                .is_ok_and(|n| n > 12 && accept(&buf[..n]))
            {
                let elapsed = self.spawned.elapsed();
                if let Err(e) = confine::check(&process_tree(self.child.id())) {
                    eprintln!("bench: a server left core 1: {e}");
                    std::process::exit(1);
                }
                return elapsed;
            }
        }
        eprintln!("bench: a server did not answer within {limit:?}");
        std::process::exit(1);
    }

    /// Starts the peak resident size (VmHWM) afresh from the current one, for the process
    /// and its descendants (`clear_refs` 5, Linux; as root).
    pub fn reset_peak(&self) {
        for pid in process_tree(self.child.id()) {
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
    }

    /// The resident size now, in KiB, over the process and its descendants.
    pub fn rss_kib(&self) -> u64 {
        process_tree(self.child.id())
            .iter()
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// (CPU seconds used, peak RSS in KiB) from /proc, over the process and its descendants
    /// (NSD answers from forked children; taskset execs into the server).
    pub fn usage(&self) -> (f64, u64) {
        let mut cpu = 0.0;
        let mut peak = 0;
        for pid in process_tree(self.child.id()) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            // utime and stime are fields 14 and 15 of stat: 11 and 12 after the command name.
            cpu += (ticks(11) + ticks(12)) / 100.0;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            peak += status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        (cpu, peak)
    }
}

/// `dial.example. SOA`, id 0x4242.
fn soa_query() -> Vec<u8> {
    let mut q = vec![0x42, 0x42, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in ["dial", "example"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 6, 0, 1]);
    // OPT: root owner, type 41, 1232-byte payload, DO set, no options.
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    q
}

/// dnsperf on core 0 against a server on core 1: unlimited, then at a fixed rate; with
/// `dnssec_ok`, every query has the DO bit (`dnsperf -D`).
pub fn measure_queries(
    name: &str,
    server: &Server,
    startup: Duration,
    data: &Data,
    o: &Options,
    dnssec_ok: bool,
) -> QueryFigures {
    let port = server.addr.port().to_string();
    let with_do = |args: &[&'static str]| -> Vec<&'static str> {
        let mut all = args.to_vec();
        if dnssec_ok {
            all.push("-D");
        }
        all
    };
    let (cpu_before, _) = server.usage();
    let unlimited = dnsperf(&port, o.seconds, &data.queries, &with_do(&["-q", "500"]));
    let (cpu_after, _) = server.usage();
    let qps = stat(&unlimited, "Queries per second:");
    let completed = stat(&unlimited, "Queries completed:");
    let rate = o.rate.to_string();
    let mut fixed_args = vec!["-Q", rate.as_str(), "-v"];
    if dnssec_ok {
        fixed_args.push("-D");
    }
    let fixed = dnsperf(&port, o.seconds, &data.queries, &fixed_args);
    let mut latencies: Vec<f64> = fixed
        .lines()
        .filter(|l| l.starts_with("> ") && !l.starts_with("> T "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let lost = stat(&fixed, "Queries lost:");
    let (_, peak_rss) = server.usage();
    let figures = QueryFigures {
        name: name.to_owned(),
        qps,
        p50_us: percentile(&latencies, 0.50) * 1e6,
        p99_us: percentile(&latencies, 0.99) * 1e6,
        lost_at_rate: lost,
        cpu_us_per_query: if completed > 0.0 {
            (cpu_after - cpu_before) / completed * 1e6
        } else {
            0.0
        },
        peak_rss_mib: peak_rss as f64 / 1024.0,
        startup_s: startup.as_secs_f64(),
    };
    println!("{name}: {figures:?}");
    figures
}

/// dnsperf on core 0 for `seconds` against 127.0.0.1:`port` with 8 clients, plus `extra`.
fn dnsperf(port: &str, seconds: u64, queries: &Path, extra: &[&str]) -> String {
    let seconds = seconds.to_string();
    run_ok(
        Command::new("taskset")
            .args([
                "-c",
                "0",
                "dnsperf",
                "-s",
                "127.0.0.1",
                "-p",
                port,
                "-l",
                &seconds,
                "-c",
                "8",
            ])
            .args(extra)
            .arg("-d")
            .arg(queries),
    )
}

/// A number after `label` in dnsperf's statistics.
fn stat(output: &str, label: &str) -> f64 {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `root` and every process descending from it.
fn process_tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}
