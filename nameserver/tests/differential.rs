//! Differential test: the same randomized queries to our request path and to a plain
//! hickory `Catalog` serving the same data (our own export, loaded into hickory's in-memory
//! zone); the answers must agree: RCODE, AA, and every section. Where the wire-level fast
//! path answers a query, its bytes must decode to the same message as the full path's,
//! question (case included), flags, sections and OPT.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, LowerName, Name, Record, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponse, ZoneType};
use nameserver::control::{self, ControlRequest, ImportEntry};
use nameserver::fast::Fast;
use nameserver::metrics::Transport;
use nameserver::pipeline::{Collected, Pipeline, Policy};
use nameserver::testing::{InProcess, Rng};
use zones::Directory;
use zones::directory::Limits;
use zones::key::Algorithm;
use zones::zone::Zone;

/// Keeps the bytes of hickory's answer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::new();
        let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(&mut bytes);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(|e| NetError::from(e.to_string()))?;
        *self.0.lock().unwrap() = bytes;
        Ok(info)
    }
}

/// Our pipeline's answer (the last message of a stream), as the listeners would send it.
async fn ask_ours(pipeline: &Pipeline, bytes: &[u8], transport: Transport) -> Message {
    let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
    let mut sink = Collected::default();
    pipeline
        .answer(bytes.to_vec(), src, transport, &mut sink)
        .await;
    Message::from_vec(sink.0.last().expect("an answer")).unwrap()
}

async fn ask(handler: &impl RequestHandler, bytes: &[u8], protocol: Protocol) -> Message {
    let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
    let request = Request::from_bytes(bytes.to_vec(), src, protocol).unwrap();
    let capture = Capture::default();
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    let bytes = capture.0.lock().unwrap().clone();
    Message::from_vec(&bytes).unwrap()
}

/// A section as a sorted list of presentation lines (names lower-cased), order-free.
fn section(records: &[Record]) -> Vec<String> {
    let mut lines: Vec<String> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.name = r.name.to_lowercase();
            r.to_string()
        })
        .collect();
    lines.sort();
    lines
}

/// The one known, intended difference: RFC 2308 §3 gives the SOA of a negative answer the
/// smaller of its TTL and its MINIMUM (as BIND and Knot do); hickory's Catalog keeps the TTL.
fn negative_ttl(authority: &[Record]) -> Vec<Record> {
    authority
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let hickory_proto::rr::RData::SOA(soa) = &r.data {
                r.ttl = r.ttl.min(soa.minimum);
            }
            r
        })
        .collect()
}

/// The other intended difference: we give minimal responses (as BIND 9.18 does by
/// default); hickory adds the zone's NS RRset and its glue to every positive answer.
fn minimal(mut m: Message, qtype: RecordType) -> Message {
    if !m.answers.is_empty() && qtype != RecordType::NS {
        m.authorities.retain(|r| r.record_type() != RecordType::NS);
        m.additionals.clear();
    }
    m
}

/// `name` with the case of each letter flipped at random (resolvers do this, RFC 5452 §9.2
/// and the "0x20" defence).
fn vary_case(name: &str, rng: &mut Rng) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() && rng.below_u64(2) == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// The fast path's answer decodes to the full path's message, exactly.
fn same_as_full_path(fast: &Message, full: &Message, what: &str) {
    assert_eq!(fast.metadata, full.metadata, "header for {what}");
    assert_eq!(
        fast.queries.len(),
        full.queries.len(),
        "question for {what}"
    );
    for (a, b) in fast.queries.iter().zip(&full.queries) {
        assert_eq!(
            a.name().to_ascii(),
            b.name().to_ascii(),
            "question case for {what}"
        );
        assert_eq!(
            (a.query_type(), a.query_class()),
            (b.query_type(), b.query_class())
        );
    }
    assert_eq!(
        section(&fast.answers),
        section(&full.answers),
        "answers for {what}"
    );
    assert_eq!(
        section(&fast.authorities),
        section(&full.authorities),
        "authority for {what}"
    );
    assert_eq!(
        fast.edns
            .as_ref()
            .map(|e| (e.max_payload(), e.version(), e.flags().dnssec_ok)),
        full.edns
            .as_ref()
            .map(|e| (e.max_payload(), e.version(), e.flags().dnssec_ok)),
        "OPT for {what}"
    );
    // The same COOKIE: the client cookie echoed and a server cookie of the same layout;
    // byte for byte when both were made in the same second (the timestamp is in it).
    match (cookie_of(fast), cookie_of(full)) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            assert_eq!(a.len(), b.len(), "cookie length for {what}");
            assert_eq!(a[..12], b[..12], "client cookie and version for {what}");
            if a[12..16] == b[12..16] {
                assert_eq!(a, b, "server cookie for {what}");
            }
        }
        (a, b) => panic!("COOKIE for {what}: fast {a:?}, full {b:?}"),
    }
}

/// The COOKIE option's data of a message, if it has one.
fn cookie_of(message: &Message) -> Option<Vec<u8>> {
    match message.edns.as_ref()?.option(EdnsCode::Cookie)? {
        EdnsOption::Unknown(_, data) => Some(data.clone()),
        other => panic!("COOKIE decoded as {other:?}"),
    }
}

/// Imports `count` terminals: one IPv4 address, one IPv6 address, or both families (with
/// a second IPv4 address when `two_v4`), in turn.
async fn import_fleet(directory: &Directory, count: u64, two_v4: bool) {
    let entries = (0..count)
        .map(|i| {
            let mut both = vec![format!("203.0.113.{}", i % 250).parse().unwrap()];
            if two_v4 {
                both.push(format!("203.0.113.{}", i % 250 + 1).parse().unwrap());
            }
            both.push(format!("2001:db8::1:{i:x}").parse().unwrap());
            ImportEntry {
                code: format!("{}", 5_550_000 + i).parse().unwrap(),
                kid: "fleet".parse().unwrap(),
                mid: format!("{i:016x}").parse().unwrap(),
                addresses: match i % 3 {
                    0 => vec![format!("198.51.100.{}", i % 250).parse().unwrap()],
                    1 => vec![format!("2001:db8::{i:x}").parse().unwrap()],
                    _ => both,
                },
            }
        })
        .collect();
    control::execute(
        ControlRequest::Import {
            entries,
            algorithm: Algorithm::HmacSha256,
        },
        directory,
    )
    .await
    .unwrap();
}

/// A signed directory in `data` with a fleet imported as [`import_fleet`] makes it.
async fn signed_fleet(data: &std::path::Path, count: u64, two_v4: bool) -> Directory {
    let directory = Directory::open_signed(
        data,
        Zone::embedded_default(),
        Limits::default(),
        zones::unix_now(),
    )
    .unwrap();
    import_fleet(&directory, count, two_v4).await;
    directory
}

/// A signed directory of six terminals in `data`, opened again up to the first step of its
/// signed start (its signatures not yet in force).
async fn signed_start_of_a_fleet(
    data: &std::path::Path,
) -> (Directory, zones::directory::SignedStart) {
    drop(signed_fleet(data, 6, false).await);
    Directory::open_signing(
        data,
        Zone::embedded_default(),
        Limits::default(),
        zones::unix_now(),
    )
    .unwrap()
}

#[tokio::test]
async fn our_answers_match_a_hickory_catalog_over_the_same_data() {
    const TERMINALS: u64 = 300;
    // Our directory, with terminals that have addresses (a registered terminal without any
    // owns no records, so a zone file cannot show it: see the transfer limitations).
    let InProcess {
        directory,
        data: _data,
        ..
    } = InProcess::open(Policy::default());
    import_fleet(&directory, TERMINALS, false).await;
    let exported = match control::execute(ControlRequest::Export, &directory)
        .await
        .unwrap()
    {
        control::ControlReply::Zone { text } => text,
        other => panic!("{other:?}"),
    };
    let ours = Pipeline::new(directory, Policy::default());

    // hickory's catalog over the exported zone.
    let (origin, sets) = Parser::new(
        exported,
        None,
        Some(Name::from_ascii("dial.example.").unwrap()),
    )
    .parse()
    .unwrap();
    let records: BTreeMap<RrKey, RecordSet> = sets;
    let zone = InMemoryZoneHandler::<hickory_server::net::runtime::TokioRuntimeProvider>::new(
        origin.clone(),
        records,
        ZoneType::Primary,
        AxfrPolicy::Deny,
        None,
    )
    .unwrap();
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);

    let names = |rng: &mut Rng| -> String {
        match rng.below_u64(9) {
            8 => "outside.example.".into(),
            0 => "dial.example.".into(),
            1 => "ns1.dial.example.".into(),
            2 => format!(
                "{}.dial.example.",
                5_550_000 + TERMINALS + rng.below_u64(1000)
            ),
            3 => format!("x.{}.dial.example.", 5_550_000 + rng.below_u64(TERMINALS)),
            4 => "nothing.dial.example.".into(),
            _ => format!("{}.DIAL.example.", 5_550_000 + rng.below_u64(TERMINALS)),
        }
    };
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SOA,
        RecordType::NS,
        RecordType::TXT,
        RecordType::MX,
    ];
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let (mut compared, mut fast_answers, mut rcodes) = (0, 0, BTreeMap::new());
    let mut out = Vec::new();
    let mut server_cookie: Option<Vec<u8>> = None;
    let mut fast_cookies = 0;
    for id in 0..10_000u16 {
        let name = vary_case(&names(&mut rng), &mut rng);
        let rtype = types[rng.below_u64(types.len() as u64) as usize];
        let mut q = Message::new(id, MessageType::Query, OpCode::Query);
        let mut malformed_cookie = false;
        q.metadata.recursion_desired = rng.below_u64(2) == 0;
        q.metadata.checking_disabled = rng.below_u64(8) == 0;
        let mut query = Query::query(Name::from_ascii(&name).unwrap(), rtype);
        if rng.below_u64(50) == 0 {
            query.set_query_class(DNSClass::CH);
        }
        q.add_query(query);
        match rng.below_u64(8) {
            0..=3 => {}
            4..=6 => {
                let mut edns = Edns::new();
                edns.set_max_payload(256 + rng.below_u64(4000) as u16);
                edns.set_dnssec_ok(rng.below_u64(4) == 0);
                // RFC 7873 cookies: a client cookie alone, one with the server cookie we
                // were given last (valid), or an option of a length the RFC forbids.
                let client_cookie = rng.below_u64(u64::MAX).to_be_bytes().to_vec();
                let cookie = match rng.below_u64(6) {
                    0 | 1 => Some(client_cookie),
                    2 | 3 => server_cookie.clone(),
                    4 if rng.below_u64(4) == 0 => {
                        malformed_cookie = true;
                        Some(vec![7; 12])
                    }
                    _ => None,
                };
                if let Some(data) = cookie {
                    edns.options_mut()
                        .insert(EdnsOption::Unknown(u16::from(EdnsCode::Cookie), data));
                }
                q.set_edns(edns);
            }
            _ => {
                let mut edns = Edns::new();
                edns.set_version(1);
                q.set_edns(edns);
            }
        }
        if rng.below_u64(100) == 0 {
            q.metadata.op_code = OpCode::Status;
        }
        let (protocol, transport) = if rng.below_u64(2) == 0 {
            (Protocol::Udp, Transport::Udp)
        } else {
            (Protocol::Tcp, Transport::Tcp)
        };
        let bytes = q.to_vec().unwrap();
        let what = format!("{name} {rtype} {protocol:?} edns={:?}", q.edns);
        let a = ask_ours(&ours, &bytes, transport).await;
        if let Some(cookie) = cookie_of(&a) {
            server_cookie = Some(cookie);
        }
        let src: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        if matches!(
            ours.answer_fast(&bytes, src, &mut out),
            Fast::Answered { .. }
        ) {
            let fast = Message::from_vec(&out).unwrap();
            same_as_full_path(&fast, &a, &what);
            fast_answers += 1;
            fast_cookies += usize::from(cookie_of(&fast).is_some());
        }
        *rcodes
            .entry(u16::from(a.metadata.response_code))
            .or_insert(0) += 1;
        let b = ask(&catalog, &bytes, protocol).await;
        if a.metadata.op_code != OpCode::Query
            || a.metadata.response_code == ResponseCode::BADVERS
            || a.metadata.response_code == ResponseCode::Refused
            || (malformed_cookie && a.metadata.response_code == ResponseCode::FormErr)
        {
            // Intended differences, as BIND answers: NOTIMP for opcodes we do not serve,
            // BADVERS for EDNS versions above 0, REFUSED for classes and zones we do not
            // serve, FORMERR for a COOKIE of a forbidden length (RFC 7873 §5.2.2).
            // hickory's Catalog answers some of these otherwise; ours are checked
            // against the RFCs in wire.rs.
            compared += 1;
            continue;
        }
        assert_eq!(
            a.metadata.response_code, b.metadata.response_code,
            "RCODE for {what}"
        );
        assert_eq!(
            a.metadata.authoritative, b.metadata.authoritative,
            "AA for {what}"
        );
        assert_eq!(
            section(&a.answers),
            section(&b.answers),
            "answers for {what}"
        );
        let b = minimal(b, rtype);
        assert_eq!(
            section(&a.authorities),
            section(&negative_ttl(&b.authorities)),
            "authority for {what}"
        );
        assert_eq!(
            section(&a.additionals),
            section(&b.additionals),
            "additional for {what}"
        );
        compared += 1;
    }
    println!(
        "differential: {compared} randomized queries; RCODEs (by value) {rcodes:?}; the fast path answered {fast_answers} ({fast_cookies} with a cookie), each identical to the full path"
    );
    assert!(
        fast_cookies > 100,
        "the fast path answered {fast_cookies} cookies"
    );
    assert!(
        fast_answers > 1000,
        "the fast path was exercised: {fast_answers}"
    );
    // NOERROR, NXDOMAIN, NOTIMP, REFUSED, BADVERS (FORMERR and the TSIG errors: wire.rs).
    for rcode in [0, 3, 4, 5, 16] {
        assert!(
            rcodes.contains_key(&rcode),
            "no RCODE {rcode} among {rcodes:?}"
        );
    }
}

/// A signed zone: queries with DO whose answers the fast path writes (addresses and their
/// RRSIG) decode to exactly the full path's message; the others it leaves to the full path.
#[tokio::test]
async fn signed_answers_of_the_fast_path_match_the_full_path() {
    const TERMINALS: u64 = 60;
    let data = tempfile::tempdir().unwrap();
    let directory = signed_fleet(data.path(), TERMINALS, true).await;
    let ours = Pipeline::new(directory, Policy::default());
    let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
    let (mut fast_signed, mut declined) = (0, 0);
    let mut out = Vec::new();
    for id in 0..2_000u16 {
        let code = 5_550_000 + rng.below_u64(TERMINALS + 20);
        let name = vary_case(&format!("{code}.dial.example."), &mut rng);
        let rtype = [RecordType::A, RecordType::AAAA][rng.below_u64(2) as usize];
        let mut q = Message::new(id, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(Name::from_ascii(&name).unwrap(), rtype));
        let mut edns = Edns::new();
        edns.set_max_payload(512 + rng.below_u64(1000) as u16);
        edns.set_dnssec_ok(rng.below_u64(4) != 0);
        if rng.below_u64(3) == 0 {
            let cookie = rng.below_u64(u64::MAX).to_be_bytes().to_vec();
            edns.options_mut()
                .insert(EdnsOption::Unknown(u16::from(EdnsCode::Cookie), cookie));
        }
        q.set_edns(edns);
        let bytes = q.to_vec().unwrap();
        let what = format!("{name} {rtype} edns={:?}", q.edns);
        let full = ask_ours(&ours, &bytes, Transport::Udp).await;
        let src: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        match ours.answer_fast(&bytes, src, &mut out) {
            Fast::Answered { .. } => {
                let fast = Message::from_vec(&out).unwrap();
                same_as_full_path(&fast, &full, &what);
                let signed = fast
                    .answers
                    .iter()
                    .any(|r| r.record_type() == RecordType::RRSIG);
                fast_signed += usize::from(signed);
            }
            _ => declined += 1,
        }
    }
    println!(
        "signed differential: {fast_signed} signed fast answers, {declined} left to the full path"
    );
    assert!(
        fast_signed > 500,
        "the signed fast path was exercised: {fast_signed}"
    );
    assert!(
        declined > 100,
        "negative answers with DO take the full path: {declined}"
    );
}

/// While a signed start reads its stored signatures, queries without DO are answered (the
/// fast path too) and queries with DO get SERVFAIL from the full path, never an unsigned
/// answer; once the signatures are in force, the same query with DO is answered signed.
#[tokio::test]
async fn while_a_signed_start_reads_its_signatures_only_answers_without_do_are_given() {
    let data = tempfile::tempdir().unwrap();
    let (directory, start) = signed_start_of_a_fleet(data.path()).await;
    let ours = Pipeline::new(directory.clone(), Policy::default());
    let query = |dnssec_ok: bool| {
        let mut q = Message::new(7, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            Name::from_ascii("5550000.dial.example.").unwrap(),
            RecordType::A,
        ));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(dnssec_ok);
        q.set_edns(edns);
        q.to_vec().unwrap()
    };
    let src: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let mut out = Vec::new();
    let address = |m: &Message| {
        m.answers
            .iter()
            .any(|r| r.data.to_string() == "198.51.100.0")
    };
    let rrsig = |m: &Message| {
        m.answers
            .iter()
            .any(|r| r.record_type() == RecordType::RRSIG)
    };

    let plain = ask_ours(&ours, &query(false), Transport::Udp).await;
    assert_eq!(plain.response_code, ResponseCode::NoError);
    assert!(address(&plain) && !rrsig(&plain), "{plain:?}");
    assert!(matches!(
        ours.answer_fast(&query(false), src, &mut out),
        Fast::Answered { .. }
    ));
    assert!(!matches!(
        ours.answer_fast(&query(true), src, &mut out),
        Fast::Answered { .. }
    ));
    let early = ask_ours(&ours, &query(true), Transport::Udp).await;
    assert_eq!(early.response_code, ResponseCode::ServFail, "{early:?}");
    assert!(early.answers.is_empty());
    // RFC 8914 "Not Ready" (info code 14) says why.
    assert!(not_ready(&early), "{early:?}");

    tokio::task::spawn_blocking(move || start.finish())
        .await
        .unwrap()
        .unwrap();
    let signed = ask_ours(&ours, &query(true), Transport::Udp).await;
    assert_eq!(signed.response_code, ResponseCode::NoError);
    assert!(address(&signed) && rrsig(&signed), "{signed:?}");
    assert!(matches!(
        ours.answer_fast(&query(true), src, &mut out),
        Fast::Answered { .. }
    ));
}

/// True when `message` carries the Extended DNS Error (option 15, RFC 8914) "Not Ready"
/// (info code 14) and no text.
fn not_ready(message: &Message) -> bool {
    let ede = message
        .edns
        .as_ref()
        .and_then(|e| e.option(EdnsCode::Unknown(15)));
    ede == Some(&EdnsOption::Unknown(15, vec![0, 14]))
}

/// A handler for `directory` that allows transfers with one key, and an AXFR of the zone
/// signed with that key (with EDNS when `edns`).
fn transfer_handler_and_axfr(directory: &Directory, edns: bool) -> (Pipeline, Vec<u8>) {
    use hickory_proto::rr::TSigner;
    let xfer = zones::key::TsigKey::from_key_file(
        "key \"xfer.\" { algorithm hmac-sha256; secret \"3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=\"; };",
    )
    .unwrap();
    let policy = Policy {
        transfer_keys: vec![xfer.clone()],
        ..Policy::default()
    };
    let mut axfr = Message::new(9, MessageType::Query, OpCode::Query);
    axfr.add_query(Query::query(
        Name::from_ascii("dial.example.").unwrap(),
        RecordType::AXFR,
    ));
    if edns {
        axfr.set_edns(Edns::new());
    }
    let signer: TSigner = xfer.signer(300).unwrap();
    let (signature, _) = signer.sign_message(&axfr, zones::unix_now()).unwrap();
    axfr.set_signature(signature);
    (
        Pipeline::new(directory.clone(), policy),
        axfr.to_vec().unwrap(),
    )
}

/// A transfer that waited the longest a signed start is allowed (30 s, on a paused clock)
/// gets SERVFAIL with the Extended DNS Error 14 "Not Ready" (RFC 8914), as a query with DO
/// does meanwhile, so that the secondary's log says why.
#[tokio::test(start_paused = true)]
async fn a_transfer_that_outwaits_a_signed_start_gets_servfail_not_ready() {
    let data = tempfile::tempdir().unwrap();
    let (directory, start) = signed_start_of_a_fleet(data.path()).await;
    let (ours, axfr) = transfer_handler_and_axfr(&directory, true);
    let waited = tokio::time::Instant::now();
    let sent = ask_ours(&ours, &axfr, Transport::Tcp).await;
    assert!(waited.elapsed() >= std::time::Duration::from_secs(30));
    assert_eq!(sent.response_code, ResponseCode::ServFail, "{sent:?}");
    assert!(not_ready(&sent), "{sent:?}");
    drop(start);
}

/// A transfer asked while a signed start puts its signatures in force waits for them,
/// rather than fail (SERVFAIL would send the secondary to its retry timer, or NSD to a
/// full transfer next time); once they are, it is sent, signed.
#[tokio::test]
async fn a_transfer_during_a_signed_start_waits_for_its_signatures() {
    let data = tempfile::tempdir().unwrap();
    let (directory, start) = signed_start_of_a_fleet(data.path()).await;
    let (ours, bytes) = transfer_handler_and_axfr(&directory, false);
    let ours = Arc::new(ours);
    let asking = {
        let ours = ours.clone();
        tokio::spawn(async move { ask_ours(ours.as_ref(), &bytes, Transport::Tcp).await })
    };
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !asking.is_finished(),
        "the transfer waits for the signatures"
    );
    tokio::task::spawn_blocking(move || start.finish())
        .await
        .unwrap()
        .unwrap();
    let sent = asking.await.unwrap();
    assert_eq!(sent.response_code, ResponseCode::NoError, "{sent:?}");
    assert!(
        sent.answers
            .iter()
            .any(|r| r.record_type() == RecordType::RRSIG),
        "{sent:?}"
    );
}
