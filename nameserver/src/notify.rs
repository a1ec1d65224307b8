//! NOTIFY (RFC 1996) to the secondaries after each change.
//!
//! One task per secondary follows the directory's serial. After a change it waits the
//! notify delay (changes within it share one NOTIFY, as BIND's notify-delay), then sends
//! NOTIFY with the new SOA, signed with the first transfer key when there is one, and retries
//! (1 s, 2 s, 4 s, ... up to a minute apart) until the secondary answers or a newer serial
//! supersedes it. The secondary then asks for IXFR.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, Message, MessageType, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{DNSClass, RecordType};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zones::Directory;
use zones::key::TsigKey;

/// How long one NOTIFY waits for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest pause between retries.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

/// Notifies every secondary of every change until `shutdown`.
pub async fn notify_secondaries(
    directory: Directory,
    secondaries: Vec<SocketAddr>,
    key: Option<TsigKey>,
    delay: Duration,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for secondary in secondaries {
        tasks.spawn(follow(
            directory.clone(),
            secondary,
            key.clone(),
            delay,
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// One secondary: wait for a change, coalesce, notify until answered.
async fn follow(
    directory: Directory,
    secondary: SocketAddr,
    key: Option<TsigKey>,
    delay: Duration,
    shutdown: CancellationToken,
) {
    let mut serials = directory.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = serials.changed() => if changed.is_err() { return },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        let serial = *serials.borrow_and_update();
        notify_until_answered(
            &directory,
            secondary,
            key.as_ref(),
            serial,
            &mut serials,
            &shutdown,
        )
        .await;
    }
}

async fn notify_until_answered(
    directory: &Directory,
    secondary: SocketAddr,
    key: Option<&TsigKey>,
    serial: u32,
    serials: &mut watch::Receiver<u32>,
    shutdown: &CancellationToken,
) {
    let mut pause = Duration::from_secs(1);
    for attempt in 1.. {
        match send_notify(directory, secondary, key, serial).await {
            Ok(()) => {
                info!(%secondary, serial, attempt, outcome = "answered", "notify");
                return;
            }
            Err(error) => {
                warn!(%secondary, serial, attempt, %error, "notify not answered; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // A newer change: the caller notifies that one instead.
            _ = serials.changed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// One NOTIFY (AA set, the new SOA in the answer section) and its answer.
async fn send_notify(
    directory: &Directory,
    secondary: SocketAddr,
    key: Option<&TsigKey>,
    serial: u32,
) -> Result<(), String> {
    let signer = key
        .map(|k| k.signer(300))
        .transpose()
        .map_err(|e| e.to_string())?;
    let stream = UdpClientStream::builder(secondary, TokioRuntimeProvider::default())
        .with_timeout(Some(ANSWER_TIMEOUT))
        .with_signer(signer)
        .build();
    let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
    let background = tokio::spawn(background);
    let zone = directory.zone();
    let mut message = Message::new(0, MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    let mut question = Query::query(zone.origin().clone(), RecordType::SOA);
    question.set_query_class(DNSClass::IN);
    message.add_query(question);
    message.answers.push(zone.soa_record(serial));
    let mut options = DnsRequestOptions::default();
    options.use_edns = false;
    let answer = client.send(DnsRequest::new(message, options)).next().await;
    background.abort();
    match answer {
        Some(Ok(response)) if response.metadata.response_code == ResponseCode::NoError => Ok(()),
        Some(Ok(response)) => Err(format!("answered {}", response.metadata.response_code)),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no answer".into()),
    }
}
