//! What the server counts, and its Prometheus exposition.
//!
//! Counters are plain atomics in fixed arrays indexed by small label enums, so counting a
//! query is one relaxed add with no lookup, lock or allocation. UDP workers each count into
//! a shard of their own (a cache line apart), so cores do not fight over one line. At
//! scrape time a [`Collector`] sums the shards and hands every value to prometheus-client,
//! which writes the text format. Gauges (terminals, serial) are read from the directory
//! when scraped; the flush histograms are prometheus-client's own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use zones::Directory;
use zones::observe::FlushObserver;

use crate::ratelimit::Verdict;

/// Query types counted by name; everything else is `other`.
const QTYPES: [(&str, RecordType); 15] = [
    ("A", RecordType::A),
    ("AAAA", RecordType::AAAA),
    ("SOA", RecordType::SOA),
    ("NS", RecordType::NS),
    ("ANY", RecordType::ANY),
    ("AXFR", RecordType::AXFR),
    ("IXFR", RecordType::IXFR),
    ("TXT", RecordType::TXT),
    ("CNAME", RecordType::CNAME),
    ("MX", RecordType::MX),
    ("PTR", RecordType::PTR),
    ("SRV", RecordType::SRV),
    ("DS", RecordType::DS),
    ("DNSKEY", RecordType::DNSKEY),
    ("HTTPS", RecordType::HTTPS),
];
const QTYPE_LABELS: usize = QTYPES.len() + 1;

/// Response codes counted by name; everything else is `other`.
const RCODES: [(&str, u16); 8] = [
    ("NOERROR", 0),
    ("FORMERR", 1),
    ("SERVFAIL", 2),
    ("NXDOMAIN", 3),
    ("NOTIMP", 4),
    ("REFUSED", 5),
    ("NOTAUTH", 9),
    ("BADVERS", 16),
];
const RCODE_LABELS: usize = RCODES.len() + 1;

/// How a query arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

const TRANSPORTS: [&str; 2] = ["udp", "tcp"];
const QUERY_CELLS: usize = TRANSPORTS.len() * QTYPE_LABELS * RCODE_LABELS;

/// How an update ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Applied and durable (also when it changed nothing).
    Accepted,
    /// Refused: unsigned, a prerequisite or policy failed, another name, a transfer key.
    Refused,
    /// TSIG: no such key.
    BadKey,
    /// TSIG: the MAC does not verify.
    BadSig,
    /// TSIG: signed outside the allowed time window.
    BadTime,
    /// A copy of an update already accepted, or older than the newest accepted.
    Replay,
    /// Over the key's update rate limit.
    RateLimited,
    /// Malformed (FORMERR).
    Malformed,
    /// The store failed (SERVFAIL).
    Failed,
}

/// The `outcome` label of each [`UpdateOutcome`], in its order.
const UPDATE_OUTCOMES: [&str; 9] = [
    "accepted",
    "refused",
    "badkey",
    "badsig",
    "badtime",
    "replay",
    "rate_limited",
    "malformed",
    "failed",
];

/// How an enrollment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrollOutcome {
    /// A terminal enrolled (or re-enrolled), durable.
    Accepted,
    /// The token was not accepted (unknown, wrong, expired, revoked, used up, bad time).
    TokenRefused,
    /// Refused after the token was proven: customer suspended or full, code taken or out
    /// of range, machine of another customer.
    Refused,
    /// Over the failure budget of its prefix or token.
    RateLimited,
    /// A replayed enrollment.
    Replay,
    /// Not the exchange's form (FORMERR).
    Malformed,
    /// The store failed (SERVFAIL).
    Failed,
}

impl EnrollOutcome {
    /// The outcome an enrollment refused this way is counted under.
    pub fn of(refusal: &crate::refusal::Refusal) -> Self {
        use crate::refusal::Refusal;
        match refusal {
            Refusal::TokenRefused => Self::TokenRefused,
            Refusal::EnrollLimited => Self::RateLimited,
            Refusal::Replay => Self::Replay,
            r if r.is_failure() => Self::Failed,
            r if r.rcode() == ResponseCode::FormErr => Self::Malformed,
            _ => Self::Refused,
        }
    }
}

/// The `outcome` label of each [`EnrollOutcome`], in its order.
const ENROLL_OUTCOMES: [&str; 7] = [
    "accepted",
    "token_refused",
    "refused",
    "rate_limited",
    "replay",
    "malformed",
    "failed",
];

/// An administrative change to enrollment, from the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminEvent {
    TokenCreated,
    TokenRevoked,
    Approved,
    Suspended,
    Resumed,
    LimitSet,
}

const ADMIN_EVENTS: [&str; 6] = [
    "token_created",
    "token_revoked",
    "approved",
    "suspended",
    "resumed",
    "limit_set",
];

/// How a zone transfer request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    Sent,
    Refused,
    Failed,
}

const TRANSFER_KINDS: [&str; 2] = ["axfr", "ixfr"];
const TRANSFER_OUTCOMES: [&str; 3] = ["sent", "refused", "failed"];

/// A NOTIFY round's attempt: answered by the secondary, or not (it is retried).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyOutcome {
    Answered,
    Unanswered,
}

const NOTIFY_OUTCOMES: [&str; 2] = ["answered", "unanswered"];

/// One worker's query counters, on cache lines of their own.
#[repr(align(128))]
#[derive(Debug)]
struct Shard([AtomicU64; QUERY_CELLS]);

impl Default for Shard {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Every counter the server keeps.
#[derive(Debug)]
pub struct Metrics {
    /// One shard per UDP worker, then one for everything else.
    queries: Box<[Shard]>,
    rrl: [AtomicU64; 2],
    updates: [AtomicU64; UPDATE_OUTCOMES.len()],
    enrollments: [AtomicU64; ENROLL_OUTCOMES.len()],
    admin: [AtomicU64; ADMIN_EVENTS.len()],
    transfers: [[AtomicU64; TRANSFER_OUTCOMES.len()]; TRANSFER_KINDS.len()],
    notifies: [AtomicU64; NOTIFY_OUTCOMES.len()],
    leases_expired: AtomicU64,
    /// Each secondary's newest serial it answered a NOTIFY for.
    secondaries: Mutex<BTreeMap<SocketAddr, u32>>,
}

impl Metrics {
    /// Counters for `workers` UDP workers (each gets a shard) and the rest of the server.
    pub fn new(workers: usize) -> Self {
        Self {
            queries: (0..=workers).map(|_| Shard::default()).collect(),
            rrl: Default::default(),
            updates: Default::default(),
            enrollments: Default::default(),
            admin: Default::default(),
            transfers: Default::default(),
            notifies: Default::default(),
            leases_expired: AtomicU64::new(0),
            secondaries: Mutex::default(),
        }
    }

    /// The shard for requests not answered by a UDP worker's own loop.
    pub fn shared_shard(&self) -> usize {
        self.queries.len() - 1
    }

    /// A query answered (or dropped by RRL, with the RCODE it would have had).
    pub fn query(&self, shard: usize, transport: Transport, qtype: u16, rcode: u16) {
        let t = match transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
        };
        let q = QTYPES
            .iter()
            .position(|(_, rt)| u16::from(*rt) == qtype)
            .unwrap_or(QTYPES.len());
        let r = RCODES
            .iter()
            .position(|(_, code)| *code == rcode)
            .unwrap_or(RCODES.len());
        let shard = &self.queries[shard.min(self.queries.len() - 1)];
        shard.0[(t * QTYPE_LABELS + q) * RCODE_LABELS + r].fetch_add(1, Ordering::Relaxed);
    }

    /// The same, with hickory's types.
    pub fn query_answered(&self, transport: Transport, qtype: RecordType, rcode: ResponseCode) {
        self.query(
            self.shared_shard(),
            transport,
            u16::from(qtype),
            u16::from(rcode),
        );
    }

    /// RRL decided to drop or slip an answer.
    pub fn rate_limited(&self, verdict: Verdict) {
        let i = match verdict {
            Verdict::Answer => return,
            Verdict::Drop => 0,
            Verdict::Slip => 1,
        };
        self.rrl[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn update(&self, outcome: UpdateOutcome) {
        self.updates[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn enroll(&self, outcome: EnrollOutcome) {
        self.enrollments[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn admin(&self, event: AdminEvent) {
        self.admin[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn transfer(&self, kind: RecordType, outcome: TransferOutcome) {
        let k = usize::from(kind == RecordType::IXFR);
        let o = outcome as usize;
        self.transfers[k][o].fetch_add(1, Ordering::Relaxed);
    }

    pub fn notify(&self, secondary: SocketAddr, serial: u32, outcome: NotifyOutcome) {
        self.notifies[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if outcome == NotifyOutcome::Answered {
            let mut acked = self.secondaries.lock().unwrap_or_else(|p| p.into_inner());
            acked.insert(secondary, serial);
        }
    }

    /// Forgets the acknowledged serials of secondaries no longer notified (a reload).
    pub fn keep_secondaries(&self, secondaries: &[SocketAddr]) {
        let mut acked = self.secondaries.lock().unwrap_or_else(|p| p.into_inner());
        acked.retain(|s, _| secondaries.contains(s));
    }

    pub fn leases_expired(&self, count: usize) {
        self.leases_expired
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    fn query_totals(&self) -> [u64; QUERY_CELLS] {
        let mut totals = [0u64; QUERY_CELLS];
        for shard in &*self.queries {
            for (total, cell) in totals.iter_mut().zip(&shard.0) {
                *total += cell.load(Ordering::Relaxed);
            }
        }
        totals
    }
}

/// Flush sizes and times, from the store's group commits.
#[derive(Debug)]
pub struct FlushMetrics {
    seconds: Histogram,
    changes: Histogram,
}

impl FlushObserver for FlushMetrics {
    fn flushed(&self, took: Duration, changes: usize) {
        self.seconds.observe(took.as_secs_f64());
        self.changes.observe(changes as f64);
    }
}

/// A cluster node's state, as a scrape shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterGauges {
    pub node: u64,
    /// This node makes the changes.
    pub leads: bool,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    pub term: u64,
    /// The newest log index applied to its store.
    pub applied: Option<u64>,
    /// The newest log index it holds.
    pub last_log: Option<u64>,
}

/// What a scrape asks a cluster node.
pub trait ClusterObserved: Send + Sync + std::fmt::Debug {
    fn gauges(&self) -> ClusterGauges;
}

/// The registry a scrape encodes: the counters, the directory's gauges, the flush
/// histograms, and a cluster node's state (`cluster`).
pub fn registry(
    metrics: Arc<Metrics>,
    directory: Directory,
    cluster: Option<Arc<dyn ClusterObserved>>,
) -> Registry {
    let mut registry = Registry::default();
    let flushes = Arc::new(FlushMetrics {
        // 100 µs to about 3.3 s.
        seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
        // 1 to 16,384 changes per group commit.
        changes: Histogram::new(exponential_buckets(1.0, 2.0, 15)),
    });
    registry.register(
        "dial_flush_seconds",
        "Time of one group commit: one transaction and one fdatasync",
        flushes.seconds.clone(),
    );
    registry.register(
        "dial_flush_changes",
        "Changes made durable by one group commit",
        flushes.changes.clone(),
    );
    directory.observe_flushes(flushes);
    registry.register_collector(Box::new(Scrape {
        metrics,
        directory,
        cluster,
    }));
    registry
}

/// Reads the counters and the directory when scraped.
#[derive(Debug)]
struct Scrape {
    metrics: Arc<Metrics>,
    directory: Directory,
    cluster: Option<Arc<dyn ClusterObserved>>,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        let queries = m.query_totals();
        let mut family = encoder.encode_descriptor(
            "dial_queries",
            "Queries answered, by query type, response code and transport.",
            None,
            MetricType::Counter,
        )?;
        for (t, transport) in TRANSPORTS.iter().enumerate() {
            for q in 0..QTYPE_LABELS {
                let qtype = QTYPES.get(q).map_or("other", |(name, _)| name);
                for r in 0..RCODE_LABELS {
                    let value = queries[(t * QTYPE_LABELS + q) * RCODE_LABELS + r];
                    if value == 0 {
                        continue;
                    }
                    let rcode = RCODES.get(r).map_or("other", |(name, _)| name);
                    let labels = [("type", qtype), ("rcode", rcode), ("transport", transport)];
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let rrl = [("dropped", &m.rrl[0]), ("slipped", &m.rrl[1])];
        counters(
            &mut encoder,
            "dial_rrl_responses",
            "UDP answers held back by response rate limiting.",
            "action",
            rrl.into_iter(),
        )?;
        counters(
            &mut encoder,
            "dial_updates",
            "Dynamic updates (RFC 2136), by outcome.",
            "outcome",
            UPDATE_OUTCOMES.iter().copied().zip(&m.updates),
        )?;
        counters(
            &mut encoder,
            "dial_enrollments",
            "Enrollments of terminals with a token, by outcome.",
            "outcome",
            ENROLL_OUTCOMES.iter().copied().zip(&m.enrollments),
        )?;
        counters(
            &mut encoder,
            "dial_enrollment_admin",
            "Changes to tokens, approvals and customers, by event.",
            "event",
            ADMIN_EVENTS.iter().copied().zip(&m.admin),
        )?;
        let mut family = encoder.encode_descriptor(
            "dial_transfers",
            "Zone transfer requests, by kind and outcome.",
            None,
            MetricType::Counter,
        )?;
        for (kind, row) in TRANSFER_KINDS.iter().zip(&m.transfers) {
            for (outcome, value) in TRANSFER_OUTCOMES.iter().zip(row) {
                let labels = [("kind", *kind), ("outcome", *outcome)];
                ConstCounter::new(value.load(Ordering::Relaxed))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        counters(
            &mut encoder,
            "dial_notifies",
            "NOTIFY messages sent to secondaries, by whether they were answered.",
            "outcome",
            NOTIFY_OUTCOMES.iter().copied().zip(&m.notifies),
        )?;
        let acked = m
            .secondaries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut family = encoder.encode_descriptor(
            "dial_secondary_acknowledged_serial",
            "The newest zone serial each secondary answered a NOTIFY for.",
            None,
            MetricType::Gauge,
        )?;
        for (secondary, serial) in acked {
            let shown = secondary.to_string();
            let labels = [("secondary", shown.as_str())];
            ConstGauge::new(i64::from(serial)).encode(family.encode_family(&labels)?)?;
        }
        let expired = ConstCounter::new(m.leases_expired.load(Ordering::Relaxed));
        expired.encode(encoder.encode_descriptor(
            "dial_leases_expired",
            "Terminals taken offline because their update lease ran out.",
            None,
            MetricType::Counter,
        )?)?;
        let (registered, online, serial) = {
            let view = self.directory.view();
            (view.len(), view.online(), view.serial())
        };
        for (name, help, value) in [
            (
                "dial_terminals_registered",
                "Registered terminals.",
                registered as i64,
            ),
            (
                "dial_terminals_online",
                "Registered terminals that publish at least one address.",
                online as i64,
            ),
            (
                "dial_zone_serial",
                "The zone's SOA serial as served.",
                i64::from(serial),
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        if let Some(cluster) = &self.cluster {
            let g = cluster.gauges();
            let index = |i: Option<u64>| i.map_or(-1, |i| i as i64);
            for (name, help, value) in [
                (
                    "dial_cluster_node",
                    "This node's id in the cluster.",
                    g.node as i64,
                ),
                (
                    "dial_cluster_leading",
                    "1 when this node is the cluster's leader (it makes the changes), else 0.",
                    i64::from(g.leads),
                ),
                (
                    "dial_cluster_leader",
                    "The id of the leader this node knows of (0: none known).",
                    g.leader.unwrap_or(0) as i64,
                ),
                ("dial_cluster_term", "The consensus term.", g.term as i64),
                (
                    "dial_cluster_applied_index",
                    "The newest log index applied to this node's store (-1: none).",
                    index(g.applied),
                ),
                (
                    "dial_cluster_log_index",
                    "The newest log index this node holds (-1: none).",
                    index(g.last_log),
                ),
            ] {
                let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(value).encode(metric)?;
            }
        }
        Ok(())
    }
}

/// One counter family with a single label.
fn counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, &'a AtomicU64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value_label, value) in values {
        let labels = [(label, value_label)];
        ConstCounter::new(value.load(Ordering::Relaxed)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The registry in Prometheus text format (version 0.0.4).
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_queries_appear_with_their_labels_summed_over_shards() {
        let m = Metrics::new(2);
        m.query(0, Transport::Udp, 1, 0);
        m.query(1, Transport::Udp, 1, 0);
        m.query_answered(Transport::Tcp, RecordType::NULL, ResponseCode::Refused);
        let totals = m.query_totals();
        assert_eq!(totals[0], 2, "A NOERROR udp from two shards");
        assert_eq!(totals.iter().sum::<u64>(), 3);
    }

    #[test]
    fn an_update_outcome_is_counted_once() {
        let m = Metrics::new(1);
        m.update(UpdateOutcome::BadSig);
        m.update(UpdateOutcome::Accepted);
        m.update(UpdateOutcome::Accepted);
        let get = |o: UpdateOutcome| m.updates[o as usize].load(Ordering::Relaxed);
        assert_eq!(get(UpdateOutcome::Accepted), 2);
        assert_eq!(get(UpdateOutcome::BadSig), 1);
        assert_eq!(get(UpdateOutcome::Replay), 0);
    }
}
