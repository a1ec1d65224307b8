//! Differential test: the same randomized queries to our request path and to a plain
//! hickory `Catalog` serving the same data (our own export, loaded into hickory's in-memory
//! zone); the answers must agree: RCODE, AA, and every section.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{LowerName, Name, Record, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponse, ZoneType};
use nameserver::control::{self, ControlRequest, ImportEntry};
use nameserver::handler::{Handler, Policy};
use zones::Directory;
use zones::directory::Limits;
use zones::key::Algorithm;
use zones::zone::Zone;

/// Keeps the bytes of the answer.
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
        let (info, bytes) = nameserver::response::encode_response(response, u16::MAX)?;
        *self.0.lock().unwrap() = bytes;
        Ok(info)
    }
}

async fn ask(handler: &impl RequestHandler, bytes: &[u8]) -> Message {
    let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
    let request = Request::from_bytes(bytes.to_vec(), src, Protocol::Tcp).unwrap();
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

/// A tiny reproducible generator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test]
async fn our_answers_match_a_hickory_catalog_over_the_same_data() {
    const TERMINALS: u64 = 300;
    // Our directory, with terminals that have addresses (a registered terminal without any
    // owns no records, so a zone file cannot show it: see the transfer limitations).
    let data = tempfile::tempdir().unwrap();
    let directory =
        Directory::open(data.path(), Zone::embedded_default(), Limits::default()).unwrap();
    let entries = (0..TERMINALS)
        .map(|i| ImportEntry {
            code: format!("{}", 5_550_000 + i).parse().unwrap(),
            kid: "fleet".parse().unwrap(),
            mid: format!("{i:016x}").parse().unwrap(),
            addresses: match i % 3 {
                0 => vec![format!("198.51.100.{}", i % 250).parse().unwrap()],
                1 => vec![format!("2001:db8::{i:x}").parse().unwrap()],
                _ => vec![
                    format!("203.0.113.{}", i % 250).parse().unwrap(),
                    format!("2001:db8::1:{i:x}").parse().unwrap(),
                ],
            },
        })
        .collect();
    control::execute(
        ControlRequest::Import {
            entries,
            algorithm: Algorithm::HmacSha256,
        },
        &directory,
    )
    .await
    .unwrap();
    let exported = match control::execute(ControlRequest::Export, &directory)
        .await
        .unwrap()
    {
        control::ControlReply::Zone { text } => text,
        other => panic!("{other:?}"),
    };
    let ours = Handler::new(directory, Policy::default());

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
        match rng.below(8) {
            0 => "dial.example.".into(),
            1 => "ns1.dial.example.".into(),
            2 => format!("{}.dial.example.", 5_550_000 + TERMINALS + rng.below(1000)),
            3 => format!("x.{}.dial.example.", 5_550_000 + rng.below(TERMINALS)),
            4 => "nothing.dial.example.".into(),
            _ => format!("{}.DIAL.example.", 5_550_000 + rng.below(TERMINALS)),
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
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut compared = 0;
    for id in 0..3000u16 {
        let name = names(&mut rng);
        let rtype = types[rng.below(types.len() as u64) as usize];
        let mut q = Message::new(id, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(Name::from_ascii(&name).unwrap(), rtype));
        let bytes = q.to_vec().unwrap();
        let (a, b) = (ask(&ours, &bytes).await, ask(&catalog, &bytes).await);
        let what = format!("{name} {rtype}");
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
    println!("differential: {compared} randomized queries, identical answers");
}
