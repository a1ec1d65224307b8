//! `kill -9` at the benchmark's scale (`--parts kill9`): while signed updates stream in from
//! every key, the directory is killed at a moment that differs from round to round, started
//! again on the same data, and every terminal must hold its last acknowledged address (or
//! the one sent after it, whose answer the kill cut off). A loss fails the run.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use zones::key::TsigKey;

use crate::load::{address_of, update_for};
use crate::report::CrashFigures;
use crate::{Data, Server};

/// Kills per run.
const KILLS: usize = 3;

/// One terminal's stream: the newest acknowledged update, and the one in flight.
#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    acknowledged: Option<usize>,
    in_flight: Option<usize>,
}

/// Runs the kills against the directory that `start` starts (on the same data each time);
/// returns the figures. `round` makes the addresses differ from round to round.
pub fn run(start: impl Fn() -> Server, data: &Data, keys_dir: &Path, round: usize) -> CrashFigures {
    let targets: Arc<Vec<(String, TsigKey)>> = Arc::new(
        data.updater_codes
            .iter()
            .map(|code| {
                let text = std::fs::read_to_string(keys_dir.join(format!("{code}.key")))
                    .expect("a key of the import");
                (code.clone(), TsigKey::from_key_file(&text).expect("a key"))
            })
            .collect(),
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (mut acknowledged, mut checked, mut startups) = (0, 0, Vec::new());
    let mut server = start();
    server.wait_ready(Duration::from_secs(120));
    for kill in 0..KILLS {
        // Sequence numbers differ from round to round, so an old address never passes.
        let base = (round * KILLS + kill) * 100_000;
        let streams = Arc::new(Mutex::new(vec![Stream::default(); targets.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let load = runtime.spawn(stream_updates(
            server.addr,
            targets.clone(),
            streams.clone(),
            stop.clone(),
            base,
        ));
        let jitter = u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_millis(),
        );
        std::thread::sleep(Duration::from_millis(1000 + jitter % 1000));
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        runtime.block_on(load).expect("the update streams");
        let streams = streams.lock().expect("streams").clone();
        acknowledged += streams
            .iter()
            .filter_map(|s| s.acknowledged.map(|n| n - base + 1))
            .sum::<usize>();
        server = start();
        startups.push(server.wait_ready(Duration::from_secs(120)).as_secs_f64());
        for (i, stream) in streams.iter().enumerate() {
            let Some(last) = stream.acknowledged else {
                continue;
            };
            let allowed: Vec<Ipv4Addr> = [Some(last), stream.in_flight]
                .into_iter()
                .flatten()
                .map(address_of)
                .collect();
            let found = runtime.block_on(lookup(server.addr, &targets[i].0));
            assert!(
                found.len() == 1 && allowed.contains(&found[0]),
                "kill -9 lost an acknowledged update: {} holds {found:?}, expected one of {allowed:?}",
                targets[i].0
            );
            checked += 1;
        }
        println!(
            "kill -9 {}: {} terminals had updates acknowledged before the kill; each one's last is present",
            kill + 1,
            streams.iter().filter(|s| s.acknowledged.is_some()).count()
        );
    }
    drop(server);
    CrashFigures {
        kills: KILLS,
        acknowledged,
        checked,
        lost: 0,
        restarts_s: startups,
    }
}

/// Each terminal's updates in order (one at a time per key), all keys at once, until `stop`.
async fn stream_updates(
    addr: SocketAddr,
    targets: Arc<Vec<(String, TsigKey)>>,
    streams: Arc<Mutex<Vec<Stream>>>,
    stop: Arc<AtomicBool>,
    base: usize,
) {
    let mut tasks = Vec::new();
    for (i, (code, key)) in targets.iter().enumerate() {
        let (code, key, streams, stop) = (code.clone(), key.clone(), streams.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
                .with_timeout(Some(Duration::from_secs(1)))
                .with_max_retries(0)
                .with_signer(Some(key.signer(300).expect("a signer")))
                .build();
            let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
            tokio::spawn(background);
            let mut n = base;
            while !stop.load(Ordering::SeqCst) {
                streams.lock().expect("streams")[i].in_flight = Some(n);
                let mut options = DnsRequestOptions::default();
                options.use_edns = false;
                let answer = client
                    .send(DnsRequest::new(update_for(&code, n), options))
                    .next()
                    .await;
                match answer {
                    Some(Ok(r)) if r.metadata.response_code == ResponseCode::NoError => {
                        let mut all = streams.lock().expect("streams");
                        all[i].acknowledged = Some(n);
                        all[i].in_flight = None;
                    }
                    Some(Ok(r)) => {
                        panic!("{code}: update {n} refused: {}", r.metadata.response_code)
                    }
                    // No answer (lost in a burst, or the kill): the updater sends it again,
                    // freshly signed, as a real one would; what was in flight stays recorded
                    // as possibly applied.
                    _ => continue,
                }
                n += 1;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// The A records of `code` as the directory answers them.
async fn lookup(addr: SocketAddr, code: &str) -> Vec<Ipv4Addr> {
    let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
        .with_timeout(Some(Duration::from_secs(2)))
        .build();
    let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(background);
    let name = Name::from_ascii(format!("{code}.dial.example.")).expect("a name");
    let answer = client
        .query(name, DNSClass::IN, RecordType::A)
        .await
        .expect("an answer after the restart");
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}
