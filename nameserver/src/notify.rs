//! NOTIFY (RFC 1996) to the secondaries after each change.
//!
//! One task per secondary follows the directory's serial. After a change it waits the
//! notify delay (changes within it share one NOTIFY, as BIND's notify-delay), then sends
//! NOTIFY with the new SOA, signed with the first transfer key when there is one, and retries
//! (1 s, 2 s, 4 s, ... up to a minute apart) until the secondary answers or a newer serial
//! supersedes it, which is then notified at once. The secondary then asks for IXFR. At the
//! start, the current serial is notified at once.

use std::net::SocketAddr;
use std::sync::Arc;
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

use crate::metrics::{Metrics, NotifyOutcome};

/// How long one NOTIFY waits for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest pause between retries.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

/// The NOTIFY tasks, restarted with new secondaries, key or delay by a reload.
#[derive(Debug)]
pub struct Notifier {
    directory: Directory,
    metrics: Option<Arc<Metrics>>,
    /// The server's shutdown; each generation of tasks runs under a child of it.
    shutdown: CancellationToken,
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Notifier {
    /// Starts notifying `secondaries`, the current serial at once.
    pub fn start(
        directory: Directory,
        secondaries: Vec<SocketAddr>,
        key: Option<TsigKey>,
        delay: Duration,
        metrics: Option<Arc<Metrics>>,
        shutdown: CancellationToken,
    ) -> Self {
        let mut notifier = Self {
            directory,
            metrics,
            shutdown,
            running: None,
        };
        // As BIND and Knot do when a zone is loaded: the secondaries hear of the serial at
        // the start (a restored directory's serial jumped past theirs; a restart's is the
        // one they hold, and costs them one SOA query).
        notifier.spawn(secondaries, key, delay, true);
        notifier
    }

    fn spawn(
        &mut self,
        secondaries: Vec<SocketAddr>,
        key: Option<TsigKey>,
        delay: Duration,
        at_once: bool,
    ) {
        let stop = self.shutdown.child_token();
        let followers = Followers {
            directory: self.directory.clone(),
            key,
            delay,
            metrics: self.metrics.clone(),
            at_once,
        };
        let task = tokio::spawn(followers.notify(secondaries, stop.clone()));
        self.running = Some((stop, task));
    }

    /// Stops the running tasks and starts new ones. The new tasks notify the current
    /// serial at once, so a secondary added by a reload hears of the zone without waiting
    /// for the next change.
    pub async fn restart(
        &mut self,
        secondaries: Vec<SocketAddr>,
        key: Option<TsigKey>,
        delay: Duration,
    ) {
        self.stop().await;
        if let Some(m) = &self.metrics {
            m.keep_secondaries(&secondaries);
        }
        self.spawn(secondaries, key, delay, true);
    }

    /// Stops the running tasks.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            let _ = task.await;
        }
    }
}

/// What the task of every secondary shares.
#[derive(Clone, Debug)]
pub struct Followers {
    pub directory: Directory,
    /// Signs each NOTIFY (the first transfer key), if any.
    pub key: Option<TsigKey>,
    /// Changes within this delay share one NOTIFY.
    pub delay: Duration,
    pub metrics: Option<Arc<Metrics>>,
    /// Notify the current serial at once instead of waiting for the next change.
    pub at_once: bool,
}

impl Followers {
    /// Notifies every secondary of every change until `shutdown`.
    pub async fn notify(self, secondaries: Vec<SocketAddr>, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for secondary in secondaries {
            tasks.spawn(self.clone().follow(secondary, shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }
    /// One secondary: wait for a change, coalesce, notify until answered. A change that
    /// arrives during a round (while a NOTIFY waits for its answer or between retries)
    /// starts the next round with the newest serial, so the newest serial is always
    /// notified.
    async fn follow(self, secondary: SocketAddr, shutdown: CancellationToken) {
        let Self {
            directory,
            key,
            delay,
            metrics,
            at_once,
        } = self;
        let mut serials = directory.subscribe();
        let mut superseded = at_once;
        loop {
            if !superseded {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = serials.changed() => if changed.is_err() { return },
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let serial = *serials.borrow_and_update();
            let round = notify_until_answered(
                &directory,
                secondary,
                key.as_ref(),
                serial,
                &mut serials,
                metrics.as_deref(),
                &shutdown,
            )
            .await;
            superseded = match round {
                Round::Answered => false,
                Round::Superseded => true,
                Round::Shutdown => return,
            };
        }
    }
}

/// How a round of notifying one serial ended.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    Answered,
    /// A newer serial arrived while retrying: notify that one at once.
    Superseded,
    Shutdown,
}

async fn notify_until_answered(
    directory: &Directory,
    secondary: SocketAddr,
    key: Option<&TsigKey>,
    serial: u32,
    serials: &mut watch::Receiver<u32>,
    metrics: Option<&Metrics>,
    shutdown: &CancellationToken,
) -> Round {
    let mut pause = Duration::from_secs(1);
    for attempt in 1.. {
        let sent = send_notify(directory, secondary, key, serial).await;
        if let Some(m) = metrics {
            let outcome = match sent {
                Ok(()) => NotifyOutcome::Answered,
                Err(_) => NotifyOutcome::Unanswered,
            };
            m.notify(secondary, serial, outcome);
        }
        match sent {
            Ok(()) => {
                info!(%secondary, serial, attempt, outcome = "answered", "notify");
                return Round::Answered;
            }
            Err(error) => {
                warn!(%secondary, serial, attempt, %error, "notify not answered; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Round::Shutdown,
            changed = serials.changed() => {
                return if changed.is_ok() { Round::Superseded } else { Round::Shutdown };
            }
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
    Round::Shutdown
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::Message;
    use tokio::net::UdpSocket;
    use zones::directory::{Addresses, Import, Limits, Registration};
    use zones::key::Algorithm;

    use super::*;

    async fn change(directory: &Directory, code: &str, mid: &str, last: u8) -> u32 {
        let mut addresses = Addresses::default();
        addresses.v4.ttl = 30;
        addresses.v4.addrs = vec![Ipv4Addr::new(192, 0, 2, last)].into();
        let import = Import {
            registration: Registration {
                code: code.parse().unwrap(),
                kid: "acme".parse().unwrap(),
                mid: mid.parse().unwrap(),
                algorithm: Algorithm::HmacSha256,
            },
            addresses,
        };
        directory.import(vec![import], 1).await.unwrap();
        directory.view().serial()
    }

    /// The serial of a NOTIFY, and the bytes that answer it.
    fn notified(raw: &[u8]) -> (u32, Vec<u8>) {
        let notify = Message::from_vec(raw).unwrap();
        let serial = match &notify.answers[0].data {
            hickory_proto::rr::RData::SOA(soa) => soa.serial,
            other => panic!("not an SOA: {other:?}"),
        };
        let mut answer = Message::new(notify.metadata.id, MessageType::Response, OpCode::Notify);
        answer.metadata.authoritative = true;
        answer.add_queries(notify.queries.clone());
        (serial, answer.to_vec().unwrap())
    }

    /// Regression: a change made while a NOTIFY was being retried was never notified (the
    /// retry loop consumed the serial change and then waited for another).
    #[tokio::test]
    async fn a_change_during_notify_retries_is_notified() {
        let tmp = tempfile::tempdir().unwrap();
        let directory = Directory::open(
            tmp.path(),
            zones::Zone::embedded_default(),
            Limits::default(),
        )
        .unwrap();
        let secondary = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let followers = Followers {
            directory: directory.clone(),
            key: None,
            delay: Duration::from_millis(10),
            metrics: None,
            at_once: false,
        };
        let task =
            tokio::spawn(followers.notify(vec![secondary.local_addr().unwrap()], shutdown.clone()));
        let first = change(&directory, "5551234", "3f9a0c1d22e4b7a8", 1).await;
        let mut buf = vec![0u8; 4096];
        let (n, _) = secondary.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            notified(&buf[..n]).0,
            first,
            "the first NOTIFY, left unanswered"
        );
        let newest = change(&directory, "5559999", "3f9a0c1d22e4b7a9", 2).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while !seen.contains(&newest) {
            let received = tokio::time::timeout_at(deadline, secondary.recv_from(&mut buf)).await;
            let Ok(Ok((n, from))) = received else {
                panic!("serial {newest} was never notified; saw {seen:?}");
            };
            let (serial, answer) = notified(&buf[..n]);
            seen.push(serial);
            // The first serial is never answered: only a superseding round can reach us.
            if serial != first {
                secondary.send_to(&answer, from).await.unwrap();
            }
        }
        shutdown.cancel();
        task.await.unwrap();
    }
}
