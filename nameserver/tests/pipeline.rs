//! The request pipeline without sockets: these bytes get this answer. Each test pins one
//! point of the stage order (classify, EDNS, authenticate, admit, handle, finish) that a
//! reordering would break.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nameserver::metrics::{Metrics, Transport};
use nameserver::pipeline::{Collected, Outcome, Pipeline, Policy};
use nameserver::testing::{self, InProcess};
use zones::Directory;
use zones::key::TsigKey;

const XFER: &str = "key \"xfer.\" { algorithm hmac-sha256; secret \"3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=\"; };";

struct Fixture {
    pipeline: Pipeline,
    directory: Directory,
    metrics: Arc<Metrics>,
    key: TsigKey,
    _data: tempfile::TempDir,
}

async fn fixture(policy: Policy) -> Fixture {
    let InProcess {
        directory, data, ..
    } = InProcess::open(Policy::default());
    let key = testing::register(&directory, "5551234").await;
    let metrics = Arc::new(Metrics::new(1));
    let pipeline = Pipeline::new(directory.clone(), policy).with_metrics(Some(metrics.clone()));
    Fixture {
        pipeline,
        directory,
        metrics,
        key,
        _data: data,
    }
}

fn src() -> SocketAddr {
    "192.0.2.7:5353".parse().unwrap()
}

fn question(op: OpCode, name: &str, rtype: RecordType) -> Message {
    let mut m = Message::new(7, MessageType::Query, op);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m
}

fn signed(mut m: Message, key: &TsigKey, time: u64) -> Vec<u8> {
    let signer = key.signer(300).unwrap();
    let (signature, _) = signer.sign_message(&m, time).unwrap();
    m.set_signature(signature);
    m.to_vec().unwrap()
}

fn update(address: [u8; 4]) -> Message {
    let mut m = question(OpCode::Update, "dial.example.", RecordType::SOA);
    let name = Name::from_ascii("5551234.dial.example.").unwrap();
    m.add_authority(Record::from_rdata(
        name,
        60,
        RData::A(A::from(std::net::Ipv4Addr::from(address))),
    ));
    m
}

async fn ask(f: &Fixture, bytes: Vec<u8>, transport: Transport) -> (Outcome, Vec<Message>) {
    let mut sink = Collected::default();
    let outcome = f.pipeline.answer(bytes, src(), transport, &mut sink).await;
    let messages = sink
        .0
        .iter()
        .map(|b| Message::from_vec(b).unwrap())
        .collect();
    (outcome, messages)
}

fn metric(f: &Fixture, line_start: &str) -> String {
    let registry = nameserver::metrics::registry(f.metrics.clone(), f.directory.clone(), None);
    let text = nameserver::metrics::render(&registry);
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .collect::<Vec<_>>()
        .join("\n")
}

/// EDNS comes before TSIG: an unknown EDNS version gets BADVERS, unsigned, even with a
/// key the server does not know (which would otherwise be NOTAUTH BADKEY).
#[tokio::test]
async fn badvers_is_decided_before_the_tsig_is_read() {
    let f = fixture(Policy::default()).await;
    let mut m = question(OpCode::Query, "5551234.dial.example.", RecordType::A);
    let mut opt = Edns::new();
    opt.set_version(1);
    m.set_edns(opt);
    let stranger = TsigKey::from_key_file(XFER).unwrap();
    let (outcome, answers) = ask(&f, signed(m, &stranger, zones::unix_now()), Transport::Udp).await;
    assert_eq!(outcome, Outcome::Sent);
    // 16 is BADVERS in an OPT's extended RCODE (RFC 6891 §6.1.3); hickory reads it back as
    // BADSIG, its other meaning.
    assert_eq!(u16::from(answers[0].metadata.response_code), 16);
    assert!(answers[0].signature().is_none(), "{:?}", answers[0]);
}

/// A refusal is counted once, under its own label: an unsigned update is `refused`, a
/// stranger's key `badkey`, and neither changes the terminal.
#[tokio::test]
async fn each_refused_update_is_counted_once_under_its_reason() {
    let f = fixture(Policy::default()).await;
    let (_, answers) = ask(&f, update([192, 0, 2, 9]).to_vec().unwrap(), Transport::Udp).await;
    assert_eq!(answers[0].metadata.response_code, ResponseCode::Refused);
    let stranger = TsigKey::from_key_file(XFER).unwrap();
    let bytes = signed(update([192, 0, 2, 9]), &stranger, zones::unix_now());
    let (_, answers) = ask(&f, bytes, Transport::Tcp).await;
    assert_eq!(answers[0].metadata.response_code, ResponseCode::NotAuth);
    let counted = metric(&f, "dial_updates_total");
    assert!(counted.contains("outcome=\"refused\"} 1"), "{counted}");
    assert!(counted.contains("outcome=\"badkey\"} 1"), "{counted}");
    let lookup = question(OpCode::Query, "5551234.dial.example.", RecordType::A);
    let (_, answers) = ask(&f, lookup.to_vec().unwrap(), Transport::Tcp).await;
    assert!(answers[0].answers.is_empty(), "nothing was applied");
}

/// A terminal's signed update is applied and answered signed; the same bytes again are a
/// replay: NOTAUTH with TSIG error BADTIME, signed with the terminal's key.
#[tokio::test]
async fn a_replayed_update_is_answered_badtime_signed() {
    let f = fixture(Policy::default()).await;
    let bytes = signed(update([192, 0, 2, 9]), &f.key, zones::unix_now());
    let (_, first) = ask(&f, bytes.clone(), Transport::Udp).await;
    assert_eq!(first[0].metadata.response_code, ResponseCode::NoError);
    assert!(first[0].signature().is_some());
    let (_, again) = ask(&f, bytes, Transport::Udp).await;
    assert_eq!(again[0].metadata.response_code, ResponseCode::NotAuth);
    let tsig = again[0].signature().expect("signed");
    assert_eq!(
        tsig.data.error,
        Some(hickory_proto::rr::rdata::tsig::TsigError::BadTime)
    );
    assert!(!tsig.data.mac.is_empty(), "signed with the terminal's key");
    let counted = metric(&f, "dial_updates_total");
    assert!(counted.contains("outcome=\"accepted\"} 1"), "{counted}");
    assert!(counted.contains("outcome=\"replay\"} 1"), "{counted}");
}

/// RRL is decided once, after authentication and before any handler: over the limit,
/// refusals are dropped like answers, and a terminal's signed request is never limited.
#[tokio::test]
async fn rate_limiting_covers_refusals_and_spares_signed_requests() {
    let policy = Policy {
        rate_limit: 1,
        ..Policy::default()
    };
    let f = fixture(policy).await;
    let notimp = question(OpCode::Notify, "dial.example.", RecordType::SOA)
        .to_vec()
        .unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        outcomes.push(ask(&f, notimp.clone(), Transport::Udp).await.0);
    }
    assert!(outcomes.contains(&Outcome::Dropped), "{outcomes:?}");
    for i in 0..5u8 {
        let bytes = signed(
            update([192, 0, 2, 10 + i]),
            &f.key,
            zones::unix_now() + u64::from(i),
        );
        let (outcome, answers) = ask(&f, bytes, Transport::Udp).await;
        assert_eq!(outcome, Outcome::Sent, "update {i}");
        assert_eq!(answers[0].metadata.response_code, ResponseCode::NoError);
    }
}

/// A transfer is a kind of its own: over UDP with the transfer key it gets only the SOA,
/// over TCP the whole zone as a stream of signed messages; with no key, REFUSED, counted
/// as a refused transfer.
#[tokio::test]
async fn transfers_stream_over_tcp_and_get_the_soa_over_udp() {
    let xfer = TsigKey::from_key_file(XFER).unwrap();
    let policy = Policy {
        transfer_keys: vec![xfer.clone()],
        ..Policy::default()
    };
    let f = fixture(policy).await;
    let axfr = || question(OpCode::Query, "dial.example.", RecordType::AXFR);
    let (outcome, answers) =
        ask(&f, signed(axfr(), &xfer, zones::unix_now()), Transport::Tcp).await;
    assert_eq!(outcome, Outcome::Stream(answers.len()));
    let records: Vec<_> = answers.iter().flat_map(|m| m.answers.iter()).collect();
    assert_eq!(records.first().unwrap().record_type(), RecordType::SOA);
    assert_eq!(records.last().unwrap().record_type(), RecordType::SOA);
    assert!(answers.iter().all(|m| m.signature().is_some()));
    let ixfr = question(OpCode::Query, "dial.example.", RecordType::IXFR);
    let (_, answers) = ask(&f, signed(ixfr, &xfer, zones::unix_now()), Transport::Udp).await;
    assert_eq!(answers[0].answers.len(), 1);
    assert_eq!(answers[0].answers[0].record_type(), RecordType::SOA);
    let (_, answers) = ask(&f, axfr().to_vec().unwrap(), Transport::Tcp).await;
    assert_eq!(answers[0].metadata.response_code, ResponseCode::Refused);
    let counted = metric(&f, "dial_transfers_total");
    assert!(
        counted.contains("kind=\"axfr\",outcome=\"refused\"} 1"),
        "{counted}"
    );
    assert!(
        counted.contains("kind=\"axfr\",outcome=\"sent\"} 1"),
        "{counted}"
    );
}

/// Bytes that are not a request are never answered; a readable header with an unreadable
/// rest gets a bare FORMERR.
#[tokio::test]
async fn responses_and_headerless_bytes_are_ignored_and_the_rest_gets_formerr() {
    let f = fixture(Policy::default()).await;
    let mut response = question(OpCode::Query, "dial.example.", RecordType::SOA);
    response.metadata.message_type = MessageType::Response;
    assert_eq!(
        ask(&f, response.to_vec().unwrap(), Transport::Udp).await.0,
        Outcome::Dropped
    );
    assert_eq!(
        ask(&f, vec![1, 2, 3], Transport::Tcp).await.0,
        Outcome::Dropped
    );
    let mut cut = question(OpCode::Query, "dial.example.", RecordType::SOA)
        .to_vec()
        .unwrap();
    cut.truncate(16);
    let (outcome, answers) = ask(&f, cut, Transport::Udp).await;
    assert_eq!(outcome, Outcome::Sent);
    assert_eq!(answers[0].metadata.response_code, ResponseCode::FormErr);
    assert_eq!(answers[0].metadata.id, 7);
}

/// Regression: the fast path slipped a negative answer (RRL's truncated answer) with
/// RCODE NOERROR, where the full path keeps the answer's NXDOMAIN; a resolver retrying over
/// TCP saw the two differ (and the full path's slip dropped AA). Both now slip NXDOMAIN
/// with AA for a code nobody registered.
#[tokio::test]
async fn a_slipped_nxdomain_keeps_its_rcode_and_aa_on_both_paths() {
    let policy = Policy {
        rate_limit: 1,
        rate_limit_slip: 1,
        ..Policy::default()
    };
    let f = fixture(policy).await;
    let query = question(OpCode::Query, "5559999.dial.example.", RecordType::A)
        .to_vec()
        .unwrap();
    let mut slips = 0;
    let mut out = Vec::new();
    for _ in 0..20 {
        match f.pipeline.answer_datagram(&query, src().ip(), 0, &mut out) {
            Outcome::Sent => {
                let m = Message::from_vec(&out).unwrap();
                assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
                slips += usize::from(m.metadata.truncation);
            }
            other => panic!("the fast path answers every one, slipped or not: {other:?}"),
        }
    }
    assert!(slips > 0, "some answers were over the limit and slipped");
    // The full path's slip of the same query says the same.
    let mut full_slips = 0;
    for _ in 0..20 {
        if let (Outcome::Sent, answers) = ask(&f, query.clone(), Transport::Udp).await {
            let m = &answers[0];
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
            assert!(m.metadata.authoritative, "{m:?}");
            full_slips += usize::from(m.metadata.truncation);
        }
    }
    assert!(full_slips > 0, "the full path slipped some too");
}
