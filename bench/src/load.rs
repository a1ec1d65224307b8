//! The update load generator: signed UPDATEs (replace a code's A record) from many tasks at
//! once, each with its own keys, through hickory-net's client; durable updates per second
//! (every update is acknowledged only once on disk) and latency percentiles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, Message, MessageType, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use zones::key::TsigKey;

use crate::report::UpdateFigures;
use crate::{Data, Options, Server, percentile};

/// Against the directory: each terminal's own key for its own name.
pub fn run_ours(name: &str, server: &Server, data: &Data, o: &Options) -> UpdateFigures {
    let targets = data
        .updater_codes
        .iter()
        .map(|code| {
            let text = std::fs::read_to_string(data.keys_dir.join(format!("{code}.key")))
                .expect("a key of the import");
            (
                code.clone(),
                TsigKey::from_key_file(&text).expect("a valid key"),
            )
        })
        .collect();
    generate(name, server.addr, targets, o)
}

/// Against a peer: one key allowed to update the zone, the same names.
pub fn run_peer(name: &str, server: &Server, data: &Data, o: &Options) -> UpdateFigures {
    let text = std::fs::read_to_string(&data.update_key).expect("the update key");
    let key = TsigKey::from_key_file(&text).expect("a valid key");
    let targets = data
        .updater_codes
        .iter()
        .map(|c| (c.clone(), key.clone()))
        .collect();
    generate(name, server.addr, targets, o)
}

/// The address update `n` gives: 17 bits of `n` in 198.18.0.0/15 (RFC 2544's benchmarking
/// range).
pub fn address_of(n: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(198, 18 + ((n >> 16) & 1) as u8, (n >> 8) as u8, n as u8)
}

/// A signed-to-be UPDATE that replaces `code`'s A record with [`address_of`] `n`.
pub fn update_for(code: &str, n: usize) -> Message {
    let owner = Name::from_ascii(format!("{code}.dial.example.")).expect("a name");
    let mut message = Message::new(0, MessageType::Query, OpCode::Update);
    let mut zone = Query::query(
        Name::from_ascii("dial.example.").expect("zone"),
        RecordType::SOA,
    );
    zone.set_query_class(DNSClass::IN);
    message.add_query(zone);
    let mut delete = Record::update0(owner.clone(), 0, RecordType::A);
    delete.dns_class = DNSClass::ANY;
    message.authorities = vec![
        delete,
        Record::from_rdata(owner, 60, RData::A(A(address_of(n)))),
    ];
    message
}

pub fn generate(
    name: &str,
    addr: SocketAddr,
    targets: Vec<(String, TsigKey)>,
    o: &Options,
) -> UpdateFigures {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let targets = Arc::new(targets);
    let next = Arc::new(AtomicUsize::new(0));
    let total = o.updates;
    let concurrency = o.concurrency.min(targets.len()).max(1);
    let started = Instant::now();
    let results: Vec<Counted> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for worker in 0..concurrency {
            let (targets, next) = (targets.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                // Each worker owns the targets worker, worker + C, ...: one client per key.
                let mut clients = std::collections::HashMap::new();
                let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let mine: Vec<usize> = (worker..targets.len()).step_by(concurrency).collect();
                    let index = mine[n % mine.len()];
                    let (code, key) = &targets[index];
                    let client = clients.entry(index).or_insert_with(|| {
                        let stream =
                            UdpClientStream::builder(addr, TokioRuntimeProvider::default())
                                .with_timeout(Some(Duration::from_secs(5)))
                                // A retransmission re-sends the same signed bytes, which the
                                // directory refuses as a replay once the first was applied.
                                .with_max_retries(0)
                                .with_signer(Some(key.signer(300).expect("a signer")))
                                .build();
                        let (client, background) =
                            Client::<TokioRuntimeProvider>::from_sender(stream);
                        tokio::spawn(background);
                        client
                    });
                    let mut options = DnsRequestOptions::default();
                    options.use_edns = false;
                    let sent = Instant::now();
                    let answer = client
                        .send(DnsRequest::new(update_for(code, n), options))
                        .next()
                        .await;
                    match answer {
                        Some(Ok(r)) if r.metadata.response_code == ResponseCode::NoError => {
                            ok += 1;
                            latencies.push(sent.elapsed().as_secs_f64());
                        }
                        _ => failed += 1,
                    }
                }
                (ok, failed, latencies)
            }));
        }
        joined(tasks).await
    });
    figures(name, results, started.elapsed().as_secs_f64())
}

/// One signed update of `code` to [`address_of`] `n` at `addr`; whether it was
/// acknowledged (NOERROR) within two seconds.
pub async fn one_update(addr: SocketAddr, code: &str, key: &TsigKey, n: usize) -> bool {
    let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
        .with_timeout(Some(Duration::from_secs(2)))
        .with_max_retries(0)
        .with_signer(Some(key.signer(300).expect("a signer")))
        .build();
    let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
    let background = tokio::spawn(background);
    let mut options = DnsRequestOptions::default();
    options.use_edns = false;
    let answer = client
        .send(DnsRequest::new(update_for(code, n), options))
        .next()
        .await;
    background.abort();
    matches!(answer, Some(Ok(r)) if r.metadata.response_code == ResponseCode::NoError)
}

/// `o.fleet_updates` signed updates to terminals of the imported fleet drawn at random, each
/// with its own key (from the import's key bundle `bundle`), `o.concurrency` at once: what a
/// real fleet's address changes do to the store. One socket per worker; each message signed
/// as it is sent.
pub fn run_fleet(
    name: &str,
    server: &Server,
    bundle: &std::path::Path,
    o: &Options,
) -> UpdateFigures {
    let text = std::fs::read_to_string(bundle).expect("the import's key bundle");
    let targets: Vec<(String, TsigKey)> = text
        .split("key \"")
        .filter(|clause| !clause.trim().is_empty())
        .map(|clause| {
            let key = TsigKey::from_key_file(&format!("key \"{clause}")).expect("a valid key");
            let code = key.name.split('.').next().unwrap_or_default().to_owned();
            (code, key)
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (targets, next) = (Arc::new(targets), Arc::new(AtomicUsize::new(0)));
    let (total, addr) = (o.fleet_updates, server.addr);
    let started = Instant::now();
    let results: Vec<Counted> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for worker in 0..o.concurrency.max(1) {
            let (targets, next) = (targets.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
                    .await
                    .expect("socket");
                socket.connect(addr).await.expect("connect");
                let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
                let mut buf = vec![0u8; 4096];
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (worker as u64 + 1);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let (code, key) = &targets[rng as usize % targets.len()];
                    let mut message = update_for(code, n);
                    let id = (n & 0xffff) as u16;
                    message.metadata.id = id;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let signer = key.signer(300).expect("a signer");
                    let (signature, _) = signer.sign_message(&message, now).expect("signed");
                    message.set_signature(signature);
                    let bytes = message.to_vec().expect("encoded");
                    let sent = Instant::now();
                    let _ = socket.send(&bytes).await;
                    let answered = loop {
                        match tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
                            .await
                        {
                            // An answer to an earlier, timed-out request: not this one's.
                            Ok(Ok(len)) if len >= 12 && buf[..2] != id.to_be_bytes() => continue,
                            Ok(Ok(len)) if len >= 12 => break buf[3] & 0x0f == 0,
                            _ => break false,
                        }
                    };
                    if answered {
                        ok += 1;
                        latencies.push(sent.elapsed().as_secs_f64());
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed, latencies)
            }));
        }
        joined(tasks).await
    });
    figures(name, results, started.elapsed().as_secs_f64())
}

/// What one load worker counted: acknowledged, failed, and the latencies in seconds.
pub type Counted = (usize, usize, Vec<f64>);

/// Every worker's count, once all have finished.
pub async fn joined(tasks: Vec<tokio::task::JoinHandle<Counted>>) -> Vec<Counted> {
    let mut all = Vec::with_capacity(tasks.len());
    for t in tasks {
        all.push(t.await.expect("a worker"));
    }
    all
}

/// The workers' counts put together: acknowledged, failed, and the latencies sorted.
pub fn tally(results: Vec<Counted>) -> (usize, usize, Vec<f64>) {
    let ok = results.iter().map(|r| r.0).sum();
    let failed = results.iter().map(|r| r.1).sum();
    let mut latencies: Vec<f64> = results.into_iter().flat_map(|r| r.2).collect();
    latencies.sort_by(f64::total_cmp);
    (ok, failed, latencies)
}

/// What each worker counted, put together over `elapsed` seconds.
fn figures(name: &str, results: Vec<Counted>, elapsed: f64) -> UpdateFigures {
    let (ok, failed, latencies) = tally(results);
    let figures = UpdateFigures {
        name: name.to_owned(),
        updates_per_s: ok as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.50) * 1e3,
        p99_ms: percentile(&latencies, 0.99) * 1e3,
        acknowledged: ok,
        failed,
    };
    println!("{name}: {figures:?}");
    figures
}
