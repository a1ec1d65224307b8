//! `--parts cluster`: a cluster of three nodes on this machine against a single server, in
//! the same run, alternating which goes first, over `--rounds` rounds. All of them on core 1
//! (the cpuset of [`crate::confine`]) and one disk: three nodes sharing what one server has
//! to itself, so the cluster's figures are a floor.
//!
//! Each round and each subject: a fresh data directory (three for the cluster), the fleet
//! registered in one-transaction imports of 1,000 (through a follower, relayed, for the
//! cluster), then:
//! - durable signed updates per second and p50/p99 from the update load (the leader for
//!   the cluster: every update acknowledged only once a majority holds it durably);
//! - lookups: the server's CPU per answered query (a follower for the cluster), and
//!   queries per second, with dnsperf on core 0;
//! - the cluster alone: `kill -9` of the leader, then one signed update a time to the
//!   survivors until one is acknowledged: the time from the kill to that acknowledgement.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nameserver::control::{ControlReply, ControlRequest, ImportEntry};
use zones::key::{Algorithm, TsigKey};

use crate::report::{QueryFigures, UpdateFigures};
use crate::{Data, Options, Server, free_port, load, measure_queries};

/// One subject's figures in one round.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClusterRound {
    /// `single` or `cluster`.
    pub subject: String,
    pub round: usize,
    pub updates: UpdateFigures,
    pub queries: QueryFigures,
    /// The cluster: from `kill -9` of the leader to the first acknowledged update.
    pub failover_ms: Option<f64>,
    /// CPU of every server process (all three nodes) per acknowledged update, in µs.
    pub cpu_us_per_update: f64,
}

/// CPU seconds of all `servers` so far.
fn cpu(servers: &[&Server]) -> f64 {
    servers.iter().map(|s| s.usage().0).sum()
}

/// The update load against `addr`, and the CPU all `servers` spent per acknowledged update.
fn updates(
    name: &str,
    addr: SocketAddr,
    servers: &[&Server],
    keys: Vec<(String, TsigKey)>,
    o: &Options,
) -> (UpdateFigures, f64) {
    let before = cpu(servers);
    let figures = load::generate(name, addr, keys, o);
    let spent = cpu(servers) - before;
    let per_update = spent / figures.acknowledged.max(1) as f64 * 1e6;
    (figures, per_update)
}

/// Terminals per import request.
const CHUNK: usize = 1_000;

/// Every round, both subjects.
pub fn run(nameserver: &Path, dir: &Path, data: &Data, o: &Options) -> Vec<ClusterRound> {
    let mut rounds = Vec::new();
    for round in 0..o.rounds {
        let order = if round % 2 == 0 {
            ["single", "cluster"]
        } else {
            ["cluster", "single"]
        };
        println!("cluster round {}: {}", round + 1, order.join(", "));
        for subject in order {
            let figures = match subject {
                "single" => single(nameserver, dir, data, o, round),
                _ => cluster(nameserver, dir, data, o, round),
            };
            println!("{subject}: {figures:?}");
            rounds.push(figures);
        }
    }
    rounds
}

fn single(nameserver: &Path, dir: &Path, data: &Data, o: &Options, round: usize) -> ClusterRound {
    let data_dir = dir.join(format!("single-{round}"));
    let server = Server::ours(nameserver, dir, &data_dir, free_port(), &[]);
    let startup = server.wait_ready(Duration::from_secs(60));
    let keys = register(&data_dir, data);
    let (updates, cpu_us_per_update) = updates("single", server.addr, &[&server], keys, o);
    let queries = measure_queries("single", &server, startup, data, o, false);
    ClusterRound {
        subject: "single".into(),
        round,
        updates,
        queries,
        failover_ms: None,
        cpu_us_per_update,
    }
}

/// Three nodes' directories, configs and ports.
struct Nodes {
    data: Vec<PathBuf>,
    dns: Vec<u16>,
    configs: Vec<PathBuf>,
}

fn cluster(nameserver: &Path, dir: &Path, data: &Data, o: &Options, round: usize) -> ClusterRound {
    let nodes = configure(dir, round);
    let servers: Vec<Server> = (0..3)
        .map(|i| {
            let config = nodes.configs[i].to_str().expect("a path").to_owned();
            Server::ours(
                nameserver,
                dir,
                &nodes.data[i],
                nodes.dns[i],
                &["--config", &config],
            )
        })
        .collect();
    let startup = servers[0].wait_ready(Duration::from_secs(60));
    for server in &servers[1..] {
        server.wait_ready(Duration::from_secs(60));
    }
    let leader = leader(nameserver, &nodes.data[0], Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    let keys = register(&nodes.data[follower], data);
    let all: Vec<&Server> = servers.iter().collect();
    let (updates, cpu_us_per_update) =
        updates("cluster", servers[leader].addr, &all, keys.clone(), o);
    let queries = measure_queries(
        "cluster follower",
        &servers[follower],
        startup,
        data,
        o,
        false,
    );
    let failover_ms = failover(servers, leader, &keys);
    ClusterRound {
        subject: "cluster".into(),
        round,
        updates,
        queries,
        failover_ms: Some(failover_ms),
        cpu_us_per_update,
    }
}

fn configure(dir: &Path, round: usize) -> Nodes {
    let key = dir.join("cluster.key");
    if !key.is_file() {
        std::fs::write(
            &key,
            "key \"cluster\" {\n\talgorithm hmac-sha256;\n\tsecret \"YmVuY2ggY2x1c3RlciBrZXkgb2YgMzIgYnl0ZXMgISE=\";\n};\n",
        )
        .expect("write the cluster key");
    }
    let raft: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<String> = raft
        .iter()
        .enumerate()
        .map(|(i, p)| format!("\"{}=127.0.0.1:{p}\"", i + 1))
        .collect();
    let mut nodes = Nodes {
        data: Vec::new(),
        dns: Vec::new(),
        configs: Vec::new(),
    };
    for (i, port) in raft.iter().enumerate() {
        let config = dir.join(format!("cluster-{round}-{}.toml", i + 1));
        std::fs::write(
            &config,
            format!(
                "[cluster]\nnode = {}\nlisten = \"127.0.0.1:{port}\"\npeers = [{}]\nkey_file = \"{}\"\n",
                i + 1,
                peers.join(", "),
                key.display()
            ),
        )
        .expect("write a node's config");
        nodes.configs.push(config);
        nodes
            .data
            .push(dir.join(format!("cluster-{round}-{}", i + 1)));
        nodes.dns.push(free_port());
    }
    nodes
}

/// The leader's index (0..3), as node 1 sees it.
fn leader(nameserver: &Path, data: &Path, limit: Duration) -> usize {
    let start = Instant::now();
    while start.elapsed() < limit {
        let out = Command::new(nameserver)
            .args(["cluster", "status", "--data"])
            .arg(data)
            .output()
            .expect("run nameserver cluster status");
        let text = String::from_utf8_lossy(&out.stdout);
        let leaders: Vec<usize> = text
            .lines()
            .skip(2)
            .filter(|l| l.split_whitespace().nth(2) == Some("leader"))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        if let [one] = leaders[..] {
            return one - 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("bench: the cluster elected no leader");
}

/// Registers the fleet and the updaters' codes in one-transaction imports through the
/// server at `data_dir`; returns the updaters' keys.
fn register(data_dir: &Path, data: &Data) -> Vec<(String, TsigKey)> {
    let socket = nameserver::control::socket_path(data_dir, None);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut keys = Vec::new();
    let wanted: std::collections::HashSet<&str> =
        data.updater_codes.iter().map(String::as_str).collect();
    for file in [&data.fleet, &data.updaters] {
        let text = std::fs::read_to_string(file).expect("the fleet");
        let entries: Vec<ImportEntry> = text.lines().filter_map(entry).collect();
        for chunk in entries.chunks(CHUNK) {
            let request = ControlRequest::Import {
                entries: chunk.to_vec(),
                algorithm: Algorithm::HmacSha256,
            };
            let reply = runtime
                .block_on(nameserver::control::call(data_dir, &socket, &request))
                .unwrap_or_else(|e| {
                    let dir = data_dir.parent().expect("the work directory");
                    let mut logs = String::new();
                    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if name.starts_with("nameserver-") {
                            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                            logs.push_str(&format!("== {name}\n{text}"));
                        }
                    }
                    let _ = std::fs::write("/tmp/bench-cluster-failure.log", logs);
                    panic!("bench: import: {e} (the nodes' logs: /tmp/bench-cluster-failure.log)")
                });
            let ControlReply::Keys { keys: issued } = reply else {
                panic!("bench: unexpected answer to an import");
            };
            for (code, text) in issued {
                if wanted.contains(code.as_str()) {
                    let key = TsigKey::from_key_file(&text).expect("an issued key");
                    keys.push((code.as_str().to_owned(), key));
                }
            }
        }
    }
    keys
}

/// `CODE KID MID [ADDRESS ...]`.
fn entry(line: &str) -> Option<ImportEntry> {
    let mut fields = line.split_whitespace();
    Some(ImportEntry {
        code: fields.next()?.parse().ok()?,
        kid: fields.next()?.parse().ok()?,
        mid: fields.next()?.parse().ok()?,
        addresses: fields.filter_map(|a| a.parse().ok()).collect(),
    })
}

/// Kills the leader; returns the milliseconds until a survivor acknowledges an update.
fn failover(mut servers: Vec<Server>, leader: usize, keys: &[(String, TsigKey)]) -> f64 {
    let survivors: Vec<SocketAddr> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| servers[i].addr)
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let killed = Instant::now();
    servers[leader].kill9();
    let mut n = 0;
    while killed.elapsed() < Duration::from_secs(30) {
        let (code, key) = &keys[n % keys.len()];
        let addr = survivors[n % 2];
        n += 1;
        let acknowledged = runtime.block_on(load::one_update(addr, code, key, 1_000_000 + n));
        if acknowledged {
            return killed.elapsed().as_secs_f64() * 1e3;
        }
    }
    panic!("bench: no update acknowledged within 30 s of the leader's loss");
}

/// A row of the table: its name, its decimals, and its figure in a round.
type Row<'a> = (&'a str, usize, &'a dyn Fn(&ClusterRound) -> Option<f64>);

/// Medians and spreads of the rounds, as a Markdown table.
pub fn render(rounds: &[ClusterRound], o: &Options) -> String {
    let of = |subject: &str, f: &dyn Fn(&ClusterRound) -> Option<f64>| -> Vec<f64> {
        let mut v: Vec<f64> = rounds
            .iter()
            .filter(|r| r.subject == subject)
            .filter_map(f)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let cell = |v: &[f64], digits: usize| -> String {
        match v {
            [] => "-".into(),
            _ => format!(
                "{:.digits$} ({:.digits$}–{:.digits$})",
                v[v.len() / 2],
                v[0],
                v[v.len() - 1]
            ),
        }
    };
    let rows: [Row; 6] = [
        ("durable signed updates/s", 0, &|r| {
            Some(r.updates.updates_per_s)
        }),
        ("server CPU per update, all nodes (µs)", 0, &|r| {
            Some(r.cpu_us_per_update)
        }),
        ("update p99 (ms)", 1, &|r| Some(r.updates.p99_ms)),
        ("update p50 (ms)", 1, &|r| Some(r.updates.p50_ms)),
        ("lookups: server CPU per query (µs)", 2, &|r| {
            Some(r.queries.cpu_us_per_query)
        }),
        ("leader loss to first acknowledged update (ms)", 0, &|r| {
            r.failover_ms
        }),
    ];
    let mut text = format!(
        "# A cluster of three nodes against a single server\n\n\
         `cargo run --release -p bench -- --parts cluster --codes {} --keys {} --updates {} --concurrency {} --rounds {} --seconds {}`\n\n\
         Medians of {} rounds (min–max), the subjects alternating which goes first. All nodes\n\
         and the single server on core 1 and one disk; dnsperf and the update load on core 0.\n\
         Updates go to the leader, lookups to a follower. Fleet: {} ({} codes).\n\n\
         | | single | cluster of 3 | cluster / single |\n|---|---|---|---|\n",
        o.codes,
        o.keys,
        o.updates,
        o.concurrency,
        o.rounds,
        o.seconds,
        o.rounds,
        o.fleet.name(),
        o.codes
    );
    for (name, digits, f) in rows {
        let (single, cluster) = (of("single", f), of("cluster", f));
        let ratio = match (single.get(single.len() / 2), cluster.get(cluster.len() / 2)) {
            (Some(s), Some(c)) if *s > 0.0 => format!("{:.2}", c / s),
            _ => "-".into(),
        };
        text.push_str(&format!(
            "| {name} | {} | {} | {ratio} |\n",
            cell(&single, digits),
            cell(&cluster, digits)
        ));
    }
    text
}
