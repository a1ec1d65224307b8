//! `cargo run --release -p fuzz -- TARGET [--seconds N] [--seed S]`
//!
//! Targets:
//! - `request`: the whole request path in-process (decoding, TSIG, queries, updates,
//!   transfers, cookies, EDNS), over UDP and TCP framing, against a directory with a
//!   registered terminal and a transfer key;
//! - `update`: the RFC 2136 engine (zone section, prerequisites, prescan, policy, apply).
//!
//! Runs for the given time, then prints how many inputs it tried. A panic saves the input
//! to `fuzz/crashes/` and exits non-zero.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fuzz::{Mutator, built_seeds, shipped_corpus};
use hickory_proto::op::Message;
use hickory_proto::rr::{LowerName, RData, RecordType};
use nameserver::metrics::Transport;
use nameserver::pipeline::{Outcome, Policy};
use nameserver::testing::{self, InProcess};
use zones::directory::{Addresses, Limits};
use zones::key::TsigKey;
use zones::update::{UpdateMessage, ZoneContents, ZoneSection};
use zones::zone::Zone;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = args.first().cloned().unwrap_or_default();
    let value = |flag: &str, default: u64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = value("--seconds", 60);
    let seed = value("--seed", zones::unix_now());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let outcome = match target.as_str() {
        "request" => fuzz_request(deadline, seed),
        "update" => fuzz_update(deadline, seed),
        _ => {
            eprintln!("usage: fuzz request|update [--seconds N] [--seed S]");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(tried) => {
            println!("fuzz {target}: {tried} inputs in {seconds} s (seed {seed}), 0 crashes");
            ExitCode::SUCCESS
        }
        Err(path) => {
            eprintln!(
                "fuzz {target}: a panic; the input is saved in {} (seed {seed})",
                path.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Runs `one` on mutated inputs until the deadline; a panic saves the input.
fn run(
    deadline: Instant,
    seeds: Vec<Vec<u8>>,
    seed: u64,
    target: &str,
    mut one: impl FnMut(&[u8]),
) -> Result<u64, PathBuf> {
    let mut mutator = Mutator::new(seeds, seed);
    let mut tried = 0;
    while Instant::now() < deadline {
        let input = mutator.next_input();
        if catch_unwind(AssertUnwindSafe(|| one(&input))).is_err() {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crashes");
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{target}-{seed}-{tried}.bin"));
            let _ = std::fs::write(&path, &input);
            return Err(path);
        }
        tried += 1;
    }
    Ok(tried)
}

/// Keeps the size of every answer (the pipeline has encoded it, as for a socket).
#[derive(Default)]
struct Sink(usize);

#[async_trait::async_trait]
impl nameserver::pipeline::Sink for Sink {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0 += bytes.len();
        Ok(())
    }
}

const XFER: &str = "key \"xfer.\" { algorithm hmac-sha256; secret \"3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=\"; };";

fn fuzz_request(deadline: Instant, seed: u64) -> Result<u64, PathBuf> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let policy = Policy {
        transfer_keys: vec![TsigKey::from_key_file(XFER).expect("transfer key")],
        ..Policy::default()
    };
    let InProcess {
        pipeline,
        directory,
        data: _data,
    } = InProcess::open(policy);
    let key = runtime.block_on(testing::register_as(
        &directory,
        "5551234",
        "acme",
        "3f9a0c1d22e4b7a8",
    ));
    // A token with uses enough for every enrollment that stays valid after mutation.
    let new = zones::directory::NewToken {
        kid: "acme".parse().expect("a KID"),
        uses: u32::MAX,
        expires_at: u64::MAX,
        codes: None,
        approve: false,
    };
    let (token, _) = runtime
        .block_on(directory.create_token(new, zones::unix_now()))
        .expect("a token");
    let origin = directory.zone().origin().clone();
    let mut seeds = built_seeds(&key, &token.tsig_key(&origin), zones::unix_now());
    seeds.extend(shipped_corpus());
    let mut tcp = false;
    let (mut handled, mut fast) = (0u64, 0u64);
    let mut out = Vec::new();
    let mut sent = 0u32;
    let result = run(deadline, seeds, seed, "request", |input| {
        tcp = !tcp;
        // Each input from a /24 of its own in turn, so that no budget (RRL, failed
        // enrollments) keeps later inputs from the paths behind it.
        sent = sent.wrapping_add(1);
        let [_, a, b, _] = sent.to_be_bytes();
        let src = SocketAddr::from(([10, a, b, 1], 5353));
        // UDP requests meet the wire-level fast path first, as on the socket.
        if !tcp && pipeline.answer_datagram(input, src.ip(), 0, &mut out) != Outcome::Deferred {
            fast += 1;
            return;
        }
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let mut sink = Sink::default();
        let outcome = runtime.block_on(pipeline.answer(input.to_vec(), src, transport, &mut sink));
        if outcome != Outcome::Dropped {
            handled += 1;
        }
    });
    println!("fuzz request: {handled} inputs answered by the pipeline, {fast} by the fast path");
    result
}

/// Zone contents for the update engine: a map of RRsets.
struct Contents(HashMap<(LowerName, RecordType), Vec<RData>>);

impl ZoneContents for Contents {
    fn rrset(&self, name: &LowerName, rtype: RecordType) -> Vec<RData> {
        self.0
            .get(&(name.clone(), rtype))
            .cloned()
            .unwrap_or_default()
    }
    fn name_in_use(&self, name: &LowerName) -> bool {
        self.0.keys().any(|(n, _)| n == name)
    }
}

fn fuzz_update(deadline: Instant, seed: u64) -> Result<u64, PathBuf> {
    let zone = Zone::embedded_default();
    let key = TsigKey::from_key_file(XFER).expect("key");
    let mut seeds = built_seeds(&key, &key, zones::unix_now());
    seeds.extend(shipped_corpus());
    let code = "5551234".parse().expect("code");
    let owner = LowerName::new(
        &hickory_proto::rr::Name::from_ascii("5551234.dial.example.").expect("name"),
    );
    let mut map = HashMap::new();
    map.insert(
        (owner, RecordType::A),
        vec![RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1))],
    );
    let contents = Contents(map);
    let limits = Limits::default();
    run(deadline, seeds, seed, "update", |input| {
        let Ok(message) = Message::from_vec(input) else {
            return;
        };
        let zone_section: Vec<ZoneSection> = message
            .queries
            .iter()
            .map(|q| ZoneSection {
                name: q.name().clone(),
                rtype: q.query_type(),
                class: q.query_class(),
            })
            .collect();
        let update = UpdateMessage {
            zone: &zone_section,
            prerequisites: &message.answers,
            updates: &message.authorities,
        };
        let _ = zones::update::plan(
            &zone,
            &contents,
            &code,
            &Addresses::default(),
            &update,
            &limits,
        );
    })
}
