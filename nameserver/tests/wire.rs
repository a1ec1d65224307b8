//! Integration tests: the server runs in-process on 127.0.0.1 port 0 and is spoken to on
//! the wire, with hickory-net's client for ordinary traffic and hand-built messages where a
//! test needs control over every byte (TSIG times, replays, garbage).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use nameserver::config::{FileConfig, LookupPolicy, ServeFlags, Settings};
use nameserver::control::{self, ControlReply, ControlRequest};
use nameserver::server;
use nameserver::testing::{self, Served};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use zones::Directory;
use zones::directory::Limits;
use zones::key::{Algorithm, TsigKey};

/// A server running in this process on a free port, with its own data directory.
struct TestServer {
    addr: SocketAddr,
    directory: Directory,
    served: Served,
}

impl TestServer {
    async fn start() -> Self {
        Self::start_with(LookupPolicy::Public, Limits::default()).await
    }

    async fn start_with(lookups: LookupPolicy, limits: Limits) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), lookups, limits).await
    }

    async fn start_in(data: tempfile::TempDir, lookups: LookupPolicy, limits: Limits) -> Self {
        Self::start_configured(data, |s| {
            s.lookups = lookups;
            s.limits = limits;
        })
        .await
    }

    async fn start_configured(
        data: tempfile::TempDir,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let loopback = ["127.0.0.1:0".parse().unwrap()];
        let served = Served::start(&loopback, data, configure).await;
        Self {
            addr: served.addrs[0],
            directory: served.directory.clone(),
            served,
        }
    }

    /// Stops the server and returns its data directory for a restart.
    async fn stop(self) -> tempfile::TempDir {
        self.served.stop().await
    }

    /// Registers a code the way `nameserver register` does, returning its key.
    async fn register(&self, code: &str) -> TsigKey {
        testing::register(&self.directory, code).await
    }

    async fn client(&self, key: Option<&TsigKey>) -> Client<TokioRuntimeProvider> {
        let signer = key.map(|k| k.signer(300).unwrap());
        let stream = UdpClientStream::builder(self.addr, TokioRuntimeProvider::default())
            .with_signer(signer)
            .build();
        let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(bg);
        client
    }

    async fn tcp_client(&self) -> Client<TokioRuntimeProvider> {
        let (future, sender) = TcpClientStream::new(
            self.addr,
            None,
            Some(Duration::from_secs(5)),
            TokioRuntimeProvider::default(),
        );
        let stream = future.await.unwrap();
        let (client, bg) = Client::<TokioRuntimeProvider>::new(stream, sender);
        tokio::spawn(bg);
        client
    }

    async fn lookup(&self, name: &str, rtype: RecordType) -> Message {
        let mut client = self.client(None).await;
        client
            .query(n(name), DNSClass::IN, rtype)
            .await
            .unwrap()
            .into_message()
    }

    /// Sends raw bytes over UDP and returns the raw answer, or None after a short wait.
    async fn exchange_raw(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(bytes, self.addr).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let got = tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await;
        got.ok().map(|r| buf[..r.unwrap()].to_vec())
    }

    async fn exchange(&self, bytes: &[u8]) -> Message {
        let raw = self.exchange_raw(bytes).await.expect("an answer");
        Message::from_vec(&raw).unwrap()
    }

    fn serial(&self) -> u32 {
        self.directory.view().serial()
    }
}

fn n(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn now() -> u64 {
    zones::unix_now()
}

fn a_record(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(n(owner), ttl, RData::A(A::from(Ipv4Addr::from(ip))))
}

fn aaaa_record(owner: &str, ttl: u32, ip: Ipv6Addr) -> Record {
    Record::from_rdata(n(owner), ttl, RData::AAAA(AAAA::from(ip)))
}

/// An UPDATE for dial.example. replacing the A RRset of `owner` with `ip`.
fn replace_a(owner: &str, ip: [u8; 4]) -> Message {
    update_message(vec![
        delete_rrset(owner, RecordType::A),
        a_record(owner, 30, ip),
    ])
}

fn update_message(updates: Vec<Record>) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
    m.add_query(Query::query(n("dial.example."), RecordType::SOA));
    m.authorities = updates;
    m
}

fn delete_rrset(owner: &str, rtype: RecordType) -> Record {
    let mut r = Record::update0(n(owner), 0, rtype);
    r.dns_class = DNSClass::ANY;
    r
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        & 0xffff) as u16
}

/// Signs `message` with `key` as of `time` and returns the bytes.
fn signed_bytes(mut message: Message, key: &TsigKey, time: u64) -> Vec<u8> {
    let signer: TSigner = key.signer(300).unwrap();
    let (signature, _) = signer.sign_message(&message, time).unwrap();
    message.set_signature(signature);
    message.to_vec().unwrap()
}

fn query_message(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(n(name), rtype));
    m
}

fn tsig_error(m: &Message) -> Option<TsigError> {
    m.signature().and_then(|s| s.data.error)
}

fn v4_answers(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- lookups

#[tokio::test]
async fn unknown_code_is_nxdomain_with_soa() {
    let s = TestServer::start().await;
    let m = s.lookup("5550000.dial.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(!m.metadata.recursion_available);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].ttl, 30, "negative TTL is the SOA minimum");
}

#[tokio::test]
async fn registered_code_without_address_is_nodata() {
    let s = TestServer::start().await;
    s.register("5551234").await;
    for rtype in [RecordType::A, RecordType::AAAA] {
        let m = s.lookup("5551234.dial.example.", rtype).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    }
}

#[tokio::test]
async fn apex_has_soa_and_ns_with_glue() {
    let s = TestServer::start().await;
    let soa = s.lookup("dial.example.", RecordType::SOA).await;
    assert_eq!(soa.answers.len(), 1);
    assert!(soa.metadata.authoritative);
    let ns = s.lookup("dial.example.", RecordType::NS).await;
    assert_eq!(ns.answers.len(), 1);
    assert_eq!(ns.additionals.len(), 1, "glue for ns1.dial.example.");
}

#[tokio::test]
async fn names_outside_the_zone_are_refused() {
    let s = TestServer::start().await;
    let m = s.lookup("www.example.org.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
}

#[tokio::test]
async fn lookups_work_over_tcp() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let bytes = signed_bytes(
        replace_a("5551234.dial.example.", [192, 0, 2, 9]),
        &key,
        now(),
    );
    assert_eq!(
        s.exchange(&bytes).await.metadata.response_code,
        ResponseCode::NoError
    );
    let mut tcp = s.tcp_client().await;
    let m = tcp
        .query(n("5551234.dial.example."), DNSClass::IN, RecordType::A)
        .await
        .unwrap();
    assert_eq!(v4_answers(&m), vec![Ipv4Addr::new(192, 0, 2, 9)]);
}

#[tokio::test]
async fn edns_is_answered_and_unknown_versions_get_badvers() {
    let s = TestServer::start().await;
    let mut q = query_message("dial.example.", RecordType::SOA);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    q.set_edns(edns.clone());
    let m = s.exchange(&q.to_vec().unwrap()).await;
    let opt = m.edns.expect("OPT in the response");
    assert_eq!(opt.max_payload(), 1232);
    let mut q = query_message("dial.example.", RecordType::SOA);
    edns.set_version(1);
    q.set_edns(edns);
    let m = s.exchange(&q.to_vec().unwrap()).await;
    // RCODE 16 is both BADVERS (with OPT) and BADSIG (with TSIG); hickory names it BADSIG.
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert_eq!(m.edns.expect("OPT with BADVERS").version(), 0);
}

/// Regression: a DNSKEY (or NSEC3PARAM, or RRSIG) query without the DO bit got NOERROR with
/// no records, where RFC 3225 leaves security records out only "unless explicitly queried
/// for" (Zonemaster's DNSSEC11 then takes the zone for unsigned); an apex ANY left the
/// DNSKEY out too.
#[tokio::test]
async fn dnssec_records_asked_for_are_answered_without_do() {
    let s = TestServer::start_configured(tempfile::tempdir().unwrap(), |s| s.dnssec = true).await;
    let key = s.register("5551234").await;
    let update = signed_bytes(
        replace_a("5551234.dial.example.", [192, 0, 2, 9]),
        &key,
        now(),
    );
    assert_eq!(
        s.exchange(&update).await.metadata.response_code,
        ResponseCode::NoError
    );
    let ask = |name: &str, rtype: RecordType| {
        let mut q = query_message(name, rtype);
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        q.set_edns(edns);
        q.to_vec().unwrap()
    };
    let types =
        |m: &Message| -> Vec<RecordType> { m.answers.iter().map(Record::record_type).collect() };
    for (name, rtype) in [
        ("dial.example.", RecordType::DNSKEY),
        ("dial.example.", RecordType::NSEC3PARAM),
    ] {
        let m = s.exchange(&ask(name, rtype)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(!m.answers.is_empty(), "{rtype}: {m:?}");
        assert!(
            types(&m).iter().all(|t| *t == rtype),
            "no RRSIG without DO: {m:?}"
        );
    }
    for name in ["dial.example.", "5551234.dial.example."] {
        let m = s.exchange(&ask(name, RecordType::RRSIG)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(!m.answers.is_empty(), "RRSIG at {name}: {m:?}");
        assert!(types(&m).iter().all(|t| *t == RecordType::RRSIG), "{m:?}");
    }
    let any = s.exchange(&ask("dial.example.", RecordType::ANY)).await;
    assert!(types(&any).contains(&RecordType::DNSKEY), "{any:?}");
    // An unsigned zone has none of them.
    let unsigned = TestServer::start().await;
    let m = unsigned
        .exchange(&ask("dial.example.", RecordType::DNSKEY))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

#[tokio::test]
async fn large_udp_answers_are_truncated_with_tc() {
    let limits = Limits {
        max_addresses_per_family: 64,
        ..Limits::default()
    };
    let s = TestServer::start_with(LookupPolicy::Public, limits).await;
    let key = s.register("5551234").await;
    let owner = "5551234.dial.example.";
    let updates = (1..=60u16)
        .map(|i| aaaa_record(owner, 30, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)))
        .collect();
    let reply = s
        .exchange(&signed_bytes(update_message(updates), &key, now()))
        .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    let plain = query_message(owner, RecordType::AAAA);
    let m = s.exchange(&plain.to_vec().unwrap()).await;
    assert!(
        m.metadata.truncation,
        "60 AAAA records do not fit 512 bytes"
    );
    let mut tcp = s.tcp_client().await;
    let full = tcp
        .query(n(owner), DNSClass::IN, RecordType::AAAA)
        .await
        .unwrap();
    assert_eq!(full.answers.len(), 60);
    assert!(!full.metadata.truncation);
}

#[tokio::test]
async fn whoami_returns_the_source_address() {
    let s = TestServer::start().await;
    let m = s.lookup("whoami.dial.example.", RecordType::A).await;
    assert_eq!(v4_answers(&m), vec![Ipv4Addr::LOCALHOST]);
    let txt = s.lookup("whoami.dial.example.", RecordType::TXT).await;
    assert!(matches!(&txt.answers[0].data, RData::TXT(t) if t.to_string().contains("127.0.0.1")));
    let v6 = s.lookup("whoami.dial.example.", RecordType::AAAA).await;
    assert!(v6.answers.is_empty(), "an IPv4 client has no AAAA");
}

#[tokio::test]
async fn garbage_never_kills_the_server() {
    let s = TestServer::start().await;
    let samples: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0; 11],
        vec![0xff; 12],
        // One question whose name is a compression pointer to itself.
        vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        // Claims 65535 answers, has none.
        vec![0, 2, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0],
        // A response (QR set): must be dropped, never answered.
        vec![0, 3, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    for sample in &samples {
        let _ = s.exchange_raw(sample).await;
    }
    let qr = s.exchange_raw(&samples[6]).await;
    assert!(qr.is_none(), "responses are not answered");
    let m = s.lookup("dial.example.", RecordType::SOA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

// ---------------------------------------------------------------- signed updates

#[tokio::test]
async fn signed_update_is_visible_to_the_next_query_and_response_is_signed() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let owner = "5551234.dial.example.";
    let serial = s.serial();
    // hickory-net's client signs the update and verifies our signed response.
    let mut client = s.client(Some(&key)).await;
    let record = a_record(owner, 30, [192, 0, 2, 10]);
    let response = client
        .append(record, n("dial.example."), false)
        .await
        .unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    let m = s.lookup(owner, RecordType::A).await;
    assert_eq!(v4_answers(&m), vec![Ipv4Addr::new(192, 0, 2, 10)]);
    assert_eq!(s.serial(), serial.wrapping_add(1));
    assert!(m.metadata.authoritative);
}

#[tokio::test]
async fn one_message_replaces_both_families_atomically() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let owner = "5551234.dial.example.";
    let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let updates = vec![
        delete_rrset(owner, RecordType::A),
        delete_rrset(owner, RecordType::AAAA),
        a_record(owner, 30, [192, 0, 2, 7]),
        aaaa_record(owner, 30, v6),
    ];
    let reply = s
        .exchange(&signed_bytes(update_message(updates), &key, now()))
        .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(
        reply.signature().is_some(),
        "the response to a signed update is signed"
    );
    let m = s.lookup(owner, RecordType::AAAA).await;
    assert!(matches!(&m.answers[0].data, RData::AAAA(a) if a.0 == v6));
}

#[tokio::test]
async fn unsigned_update_is_refused() {
    let s = TestServer::start().await;
    s.register("5551234").await;
    let m = s
        .exchange(
            &replace_a("5551234.dial.example.", [192, 0, 2, 1])
                .to_vec()
                .unwrap(),
        )
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(
        s.lookup("5551234.dial.example.", RecordType::A)
            .await
            .answers
            .is_empty()
    );
}

#[tokio::test]
async fn unknown_key_is_notauth_badkey() {
    let s = TestServer::start().await;
    s.register("5551234").await;
    let stranger = TsigKey::from_key_file(
        "key \"stranger.\" { algorithm hmac-sha256; secret \"3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=\"; };",
    )
    .unwrap();
    let serial = s.serial();
    let m = s
        .exchange(&signed_bytes(
            replace_a("5551234.dial.example.", [192, 0, 2, 1]),
            &stranger,
            now(),
        ))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(tsig_error(&m), Some(TsigError::BadKey));
    assert!(
        m.signature().unwrap().data.mac.is_empty(),
        "BADKEY answers are unsigned"
    );
    assert_eq!(s.serial(), serial);
}

#[tokio::test]
async fn wrong_mac_is_notauth_badsig() {
    let s = TestServer::start().await;
    let mut key = s.register("5551234").await;
    key.secret = zones::key::Secret::from_bytes(vec![7; 32]);
    let serial = s.serial();
    let m = s
        .exchange(&signed_bytes(
            replace_a("5551234.dial.example.", [192, 0, 2, 1]),
            &key,
            now(),
        ))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(tsig_error(&m), Some(TsigError::BadSig));
    assert_eq!(s.serial(), serial);
    assert!(
        s.lookup("5551234.dial.example.", RecordType::A)
            .await
            .answers
            .is_empty()
    );
}

#[tokio::test]
async fn time_outside_the_fudge_is_badtime_signed_with_server_time() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let signed_at = now() - 3600;
    let m = s
        .exchange(&signed_bytes(
            replace_a("5551234.dial.example.", [192, 0, 2, 1]),
            &key,
            signed_at,
        ))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NotAuth);
    let tsig = &m.signature().expect("TSIG in a BADTIME answer").data;
    assert_eq!(tsig.error, Some(TsigError::BadTime));
    assert!(!tsig.mac.is_empty(), "BADTIME answers are signed");
    assert_eq!(tsig.time, signed_at, "Time Signed echoes the request's");
    assert_eq!(
        tsig.other.len(),
        6,
        "Other Data holds the server's 48-bit time"
    );
    let mut server_time = [0u8; 8];
    server_time[2..].copy_from_slice(&tsig.other);
    assert!(u64::from_be_bytes(server_time).abs_diff(now()) <= 2);
    assert!(
        s.lookup("5551234.dial.example.", RecordType::A)
            .await
            .answers
            .is_empty()
    );
}

#[tokio::test]
async fn a_replayed_update_is_rejected_and_changes_nothing() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let owner = "5551234.dial.example.";
    let first = signed_bytes(replace_a(owner, [192, 0, 2, 1]), &key, now());
    assert_eq!(
        s.exchange(&first).await.metadata.response_code,
        ResponseCode::NoError
    );
    let second = signed_bytes(replace_a(owner, [192, 0, 2, 2]), &key, now());
    assert_eq!(
        s.exchange(&second).await.metadata.response_code,
        ResponseCode::NoError
    );
    let serial = s.serial();
    // An attacker replays the first message to move the terminal back.
    let replay = s.exchange(&first).await;
    assert_eq!(replay.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(tsig_error(&replay), Some(TsigError::BadTime));
    assert_eq!(
        v4_answers(&s.lookup(owner, RecordType::A).await),
        vec![Ipv4Addr::new(192, 0, 2, 2)]
    );
    assert_eq!(s.serial(), serial);
}

#[tokio::test]
async fn updates_outside_the_keys_own_a_and_aaaa_are_refused() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    s.register("5559999").await;
    let own = "5551234.dial.example.";
    let txt = Record::from_rdata(n(own), 30, RData::TXT(TXT::new(vec!["hi".into()])));
    let cname = Record::from_rdata(n(own), 30, RData::CNAME(CNAME(n("elsewhere.example."))));
    let forbidden = vec![
        (
            "another code",
            a_record("5559999.dial.example.", 30, [192, 0, 2, 1]),
        ),
        ("the apex", a_record("dial.example.", 30, [192, 0, 2, 1])),
        ("SOA", delete_rrset("dial.example.", RecordType::SOA)),
        ("NS", delete_rrset("dial.example.", RecordType::NS)),
        ("TXT", txt),
        ("CNAME", cname),
    ];
    let serial = s.serial();
    for (what, record) in forbidden {
        // The forbidden record comes after an allowed one: nothing at all may be applied.
        let message = update_message(vec![a_record(own, 30, [192, 0, 2, 50]), record]);
        let m = s.exchange(&signed_bytes(message, &key, now())).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{what}");
    }
    assert_eq!(s.serial(), serial);
    assert!(s.lookup(own, RecordType::A).await.answers.is_empty());
    assert!(
        s.lookup("5559999.dial.example.", RecordType::A)
            .await
            .answers
            .is_empty()
    );
    assert_eq!(
        s.lookup("dial.example.", RecordType::NS)
            .await
            .answers
            .len(),
        1
    );
}

#[tokio::test]
async fn ttls_are_clamped_and_too_many_addresses_are_refused() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let own = "5551234.dial.example.";
    let m = s
        .exchange(&signed_bytes(
            update_message(vec![a_record(own, 86400, [192, 0, 2, 1])]),
            &key,
            now(),
        ))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(s.lookup(own, RecordType::A).await.answers[0].ttl, 60);
    let nine: Vec<Record> = (1..=9).map(|i| a_record(own, 30, [192, 0, 2, i])).collect();
    let m = s
        .exchange(&signed_bytes(update_message(nine), &key, now()))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(
        v4_answers(&s.lookup(own, RecordType::A).await),
        vec![Ipv4Addr::new(192, 0, 2, 1)]
    );
}

#[tokio::test]
async fn prerequisites_are_enforced_on_the_wire() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let own = "5551234.dial.example.";
    // "RRset does not exist" (class NONE) holds at first...
    let mut absent = Record::update0(n(own), 0, RecordType::A);
    absent.dns_class = DNSClass::NONE;
    let mut m = update_message(vec![a_record(own, 30, [192, 0, 2, 1])]);
    m.answers = vec![absent.clone()];
    assert_eq!(
        s.exchange(&signed_bytes(m, &key, now()))
            .await
            .metadata
            .response_code,
        ResponseCode::NoError
    );
    // ...and fails once the A RRset exists: YXRRSET, nothing applied.
    let mut m = update_message(vec![a_record(own, 30, [192, 0, 2, 2])]);
    m.answers = vec![absent];
    assert_eq!(
        s.exchange(&signed_bytes(m, &key, now()))
            .await
            .metadata
            .response_code,
        ResponseCode::YXRRSet
    );
    // Exact RRset equality (§3.2.3): compare-and-swap on the current value.
    let mut client = s.client(Some(&key)).await;
    let current = a_record(own, 30, [192, 0, 2, 1]);
    let next = a_record(own, 30, [192, 0, 2, 3]);
    let r = client
        .compare_and_swap(current.clone(), next, n("dial.example."))
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let stale = client
        .compare_and_swap(
            current,
            a_record(own, 30, [192, 0, 2, 4]),
            n("dial.example."),
        )
        .await
        .unwrap();
    assert_eq!(stale.metadata.response_code, ResponseCode::NXRRSet);
    assert_eq!(
        v4_answers(&s.lookup(own, RecordType::A).await),
        vec![Ipv4Addr::new(192, 0, 2, 3)]
    );
}

#[tokio::test]
async fn updates_for_another_zone_are_notauth() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
    m.add_query(Query::query(n("other.example."), RecordType::SOA));
    m.authorities = vec![a_record("5551234.other.example.", 30, [192, 0, 2, 1])];
    let reply = s.exchange(&signed_bytes(m, &key, now())).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NotAuth);
}

#[tokio::test]
async fn rotated_keys_stop_working_at_once() {
    let s = TestServer::start().await;
    let old = s.register("5551234").await;
    let ControlReply::Key { key_file, .. } = control::execute(
        ControlRequest::RotateKey {
            code: "5551234".parse().unwrap(),
        },
        &s.directory,
    )
    .await
    .unwrap() else {
        panic!()
    };
    let new = TsigKey::from_key_file(&key_file).unwrap();
    let own = "5551234.dial.example.";
    let m = s
        .exchange(&signed_bytes(replace_a(own, [192, 0, 2, 1]), &old, now()))
        .await;
    assert_eq!(tsig_error(&m), Some(TsigError::BadSig));
    let m = s
        .exchange(&signed_bytes(replace_a(own, [192, 0, 2, 1]), &new, now()))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn updates_and_registrations_survive_a_restart() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let own = "5551234.dial.example.";
    let m = s
        .exchange(&signed_bytes(replace_a(own, [192, 0, 2, 44]), &key, now()))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let serial = s.serial();
    let data = s.stop().await;
    let s = TestServer::start_in(data, LookupPolicy::Public, Limits::default()).await;
    assert_eq!(
        v4_answers(&s.lookup(own, RecordType::A).await),
        vec![Ipv4Addr::new(192, 0, 2, 44)]
    );
    assert_eq!(s.serial(), serial);
}

// ---------------------------------------------------------------- signed lookups (claim 3)

#[tokio::test]
async fn signed_lookup_mode_refuses_unsigned_and_signs_answers() {
    let s = TestServer::start_with(LookupPolicy::Signed, Limits::default()).await;
    let key = s.register("5551234").await;
    let caller = s.register("5550001").await;
    let own = "5551234.dial.example.";
    let m = s
        .exchange(&signed_bytes(replace_a(own, [192, 0, 2, 5]), &key, now()))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let unsigned = s.lookup(own, RecordType::A).await;
    assert_eq!(unsigned.metadata.response_code, ResponseCode::Refused);
    assert!(unsigned.answers.is_empty());
    // Another registered terminal's key may look the code up (hickory's client signs only
    // updates and transfers, so the query is signed here), and the answer's MAC verifies.
    let request = signed_bytes(query_message(own, RecordType::A), &caller, now());
    let request_mac = Message::from_vec(&request)
        .unwrap()
        .signature()
        .unwrap()
        .data
        .mac
        .clone();
    let raw = s.exchange_raw(&request).await.expect("an answer");
    let signer = caller.signer(300).unwrap();
    signer
        .verify_message_byte(&raw, Some(&request_mac), true)
        .expect("answer signed by the caller's key");
    let m = Message::from_vec(&raw).unwrap();
    assert_eq!(v4_answers(&m), vec![Ipv4Addr::new(192, 0, 2, 5)]);
}

// ---------------------------------------------------------------- leases (RFC 9664)

fn with_lease(mut message: Message, lease: u32) -> Message {
    use hickory_proto::rr::rdata::opt::EdnsOption;
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(EdnsOption::Unknown(2, lease.to_be_bytes().to_vec()));
    message.set_edns(edns);
    message
}

fn granted_lease(m: &Message) -> Option<u32> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    match m.edns.as_ref()?.option(EdnsCode::UL)? {
        EdnsOption::Unknown(_, data) => zones::lease::decode(data),
        _ => None,
    }
}

#[tokio::test]
async fn leases_are_granted_refreshed_without_serial_bump_and_expire_to_nodata() {
    let limits = Limits {
        leases: zones::lease::LeasePolicy {
            min: 1,
            max: 3600,
            default: None,
        },
        ..Limits::default()
    };
    let s = TestServer::start_with(LookupPolicy::Public, limits).await;
    let key = s.register("5551234").await;
    let own = "5551234.dial.example.";
    let m = s
        .exchange(&signed_bytes(
            with_lease(replace_a(own, [192, 0, 2, 1]), 7200),
            &key,
            now(),
        ))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        granted_lease(&m),
        Some(3600),
        "clamped to the maximum and returned"
    );
    let serial = s.serial();
    let refresh = s
        .exchange(&signed_bytes(
            with_lease(replace_a(own, [192, 0, 2, 1]), 2),
            &key,
            now(),
        ))
        .await;
    assert_eq!(granted_lease(&refresh), Some(2));
    assert_eq!(
        s.serial(),
        serial,
        "a refresh that changes nothing keeps the serial"
    );
    assert_eq!(
        v4_answers(&s.lookup(own, RecordType::A).await),
        vec![Ipv4Addr::new(192, 0, 2, 1)]
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let offline = s.lookup(own, RecordType::A).await;
    assert_eq!(
        offline.metadata.response_code,
        ResponseCode::NoError,
        "offline is NODATA, not NXDOMAIN"
    );
    assert!(offline.answers.is_empty());
    assert_eq!(
        s.serial(),
        serial.wrapping_add(1),
        "expiry is a change the secondaries must see"
    );
}

#[tokio::test]
async fn updates_without_the_option_get_the_default_no_expiry() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let m = s
        .exchange(&signed_bytes(
            replace_a("5551234.dial.example.", [192, 0, 2, 1]),
            &key,
            now(),
        ))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(granted_lease(&m), None);
    let view = s.directory.view();
    let entry = view.terminal(&"5551234".parse().unwrap()).unwrap();
    assert_eq!(entry.lease_expires, None);
}

#[tokio::test]
async fn a_malformed_lease_option_is_formerr() {
    use hickory_proto::rr::rdata::opt::EdnsOption;
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let mut m = replace_a("5551234.dial.example.", [192, 0, 2, 1]);
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(EdnsOption::Unknown(2, vec![1, 2, 3]));
    m.set_edns(edns);
    let reply = s.exchange(&signed_bytes(m, &key, now())).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
}

// ---------------------------------------------------------------- transfers

const XFER: &str = "key \"xfer.\" { algorithm hmac-sha256; secret \"3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=\"; };";

async fn with_transfer_key(journal_depth: usize) -> (TestServer, TsigKey) {
    let key = TsigKey::from_key_file(XFER).unwrap();
    let transfer = key.clone();
    let s = TestServer::start_configured(tempfile::tempdir().unwrap(), move |settings| {
        settings.transfer_keys = vec![transfer];
        settings.limits.journal_depth = journal_depth;
    })
    .await;
    (s, key)
}

fn ixfr_request(serial: u32) -> Message {
    use hickory_proto::rr::rdata::SOA;
    let mut m = query_message("dial.example.", RecordType::IXFR);
    let soa = SOA::new(
        n("ns1.dial.example."),
        n("hostmaster.dial.example."),
        serial,
        0,
        0,
        0,
        0,
    );
    m.authorities
        .push(Record::from_rdata(n("dial.example."), 0, RData::SOA(soa)));
    m
}

async fn tcp_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<Message> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut messages = Vec::new();
    let mut soas = 0;
    // A transfer ends with the second appearance of the current SOA (or one SOA alone).
    loop {
        let mut len = [0u8; 2];
        if tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut len))
            .await
            .is_err()
        {
            break;
        }
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        soas += m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        let done =
            m.metadata.response_code != ResponseCode::NoError || m.answers.len() == 1 && soas == 1;
        messages.push(m);
        if done
            || soas >= 2
                && messages
                    .last()
                    .unwrap()
                    .answers
                    .last()
                    .unwrap()
                    .record_type()
                    == RecordType::SOA
        {
            break;
        }
    }
    messages
}

/// Regression: AXFR and IXFR skipped the EDNS version check every other request gets.
#[tokio::test]
async fn transfers_with_an_unknown_edns_version_get_badvers() {
    let (s, xfer) = with_transfer_key(8).await;
    let mut edns = Edns::new();
    edns.set_version(1);
    for mut request in [
        query_message("dial.example.", RecordType::AXFR),
        ixfr_request(1),
    ] {
        request.set_edns(edns.clone());
        let bytes = signed_bytes(request, &xfer, now());
        let replies = tcp_exchange(s.addr, &bytes).await;
        assert_eq!(replies.len(), 1);
        // RCODE 16 is BADVERS with an OPT (hickory names it BADSIG).
        assert_eq!(u16::from(replies[0].metadata.response_code), 16);
        assert_eq!(
            replies[0]
                .edns
                .as_ref()
                .expect("OPT with BADVERS")
                .version(),
            0
        );
        assert!(replies[0].answers.is_empty(), "no zone data");
    }
}

/// Regression: a UDP IXFR during a signed start waited (up to 30 s) for the signatures,
/// holding a UDP worker and the answers batched with it; over UDP it only ever gets the SOA.
#[tokio::test]
async fn a_udp_ixfr_during_a_signed_start_is_answered_at_once() {
    let data = tempfile::tempdir().unwrap();
    let xfer = TsigKey::from_key_file(XFER).unwrap();
    let flags = ServeFlags {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        data: Some(data.path().to_path_buf()),
        dnssec: true,
        ..ServeFlags::default()
    };
    let mut settings = Settings::merge(FileConfig::default(), &flags).unwrap();
    settings.transfer_keys = vec![xfer.clone()];
    // The signed start is held unfinished: its signatures are not in force.
    let (directory, start) = Directory::open_signing(
        &data.path().join("store"),
        settings.zone.clone(),
        settings.limits.clone(),
        now(),
    )
    .unwrap();
    let listeners = server::bind_sockets(&settings).await.unwrap();
    let addr = listeners.local_addrs()[0];
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::run(
        directory.clone(),
        listeners,
        server::RunOptions::from(&settings),
        shutdown.clone(),
    ));
    assert!(directory.view().signatures_pending());
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let started = std::time::Instant::now();
    socket
        .send_to(&signed_bytes(ixfr_request(1), &xfer, now()), addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let len = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .expect("answered at once, not after the start")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let reply = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    let soa: Vec<_> = reply.answers.iter().map(Record::record_type).collect();
    assert_eq!(soa, vec![RecordType::SOA], "the current SOA alone");
    tokio::task::spawn_blocking(move || start.finish().unwrap())
        .await
        .unwrap();
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn ixfr_sends_deltas_up_to_date_soa_or_the_full_zone() {
    let (s, xfer) = with_transfer_key(2).await;
    let key = s.register("5551234").await;
    let own = "5551234.dial.example.";
    let start = s.serial();
    for (i, ip) in [[192, 0, 2, 1], [192, 0, 2, 2]].iter().enumerate() {
        let m = s
            .exchange(&signed_bytes(replace_a(own, *ip), &key, now() + i as u64))
            .await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    // From one change back: SOA, SOA(old), -192.0.2.1, SOA(new), +192.0.2.2, SOA.
    let ixfr = tcp_exchange(s.addr, &signed_bytes(ixfr_request(start + 1), &xfer, now())).await;
    let records: Vec<&Record> = ixfr.iter().flat_map(|m| m.answers.iter()).collect();
    let types: Vec<RecordType> = records.iter().map(|r| r.record_type()).collect();
    use RecordType::{A as RA, SOA as RS};
    assert_eq!(types, vec![RS, RS, RA, RS, RA, RS], "{records:?}");
    // Up to date: the current SOA alone.
    let current = tcp_exchange(
        s.addr,
        &signed_bytes(ixfr_request(s.serial()), &xfer, now()),
    )
    .await;
    assert_eq!(current[0].answers.len(), 1);
    // Older than the journal (depth 2: registration, two updates): the whole zone.
    let full = tcp_exchange(s.addr, &signed_bytes(ixfr_request(start - 1), &xfer, now())).await;
    let all: Vec<&Record> = full.iter().flat_map(|m| m.answers.iter()).collect();
    assert_eq!(all.first().unwrap().record_type(), RecordType::SOA);
    assert!(
        all.iter()
            .any(|r| matches!(&r.data, RData::A(a) if a.0 == Ipv4Addr::new(192, 0, 2, 2)))
    );
    assert!(all.iter().any(|r| r.record_type() == RecordType::NS));
    // Over UDP: the current SOA only, so the secondary comes back over TCP.
    let udp = s
        .exchange(&signed_bytes(ixfr_request(start), &xfer, now()))
        .await;
    assert_eq!(udp.answers.len(), 1);
    assert_eq!(udp.answers[0].record_type(), RecordType::SOA);
    // AXFR over UDP is not allowed; a transfer key cannot update.
    let axfr_udp = s
        .exchange(&signed_bytes(
            query_message("dial.example.", RecordType::AXFR),
            &xfer,
            now(),
        ))
        .await;
    assert_eq!(axfr_udp.metadata.response_code, ResponseCode::FormErr);
    let by_transfer_key = s
        .exchange(&signed_bytes(replace_a(own, [192, 0, 2, 3]), &xfer, now()))
        .await;
    assert_eq!(
        by_transfer_key.metadata.response_code,
        ResponseCode::Refused
    );
}

// ---------------------------------------------------------------- floods and limits

async fn start_with_settings(configure: impl FnOnce(&mut Settings)) -> TestServer {
    TestServer::start_configured(tempfile::tempdir().unwrap(), configure).await
}

/// Sends `count` queries from one socket as fast as it can; returns (full answers, TC slips).
async fn blast(addr: SocketAddr, count: usize, edns: Option<Edns>) -> (usize, usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..count {
        let mut q = query_message("dial.example.", RecordType::SOA);
        if let Some(e) = &edns {
            q.set_edns(e.clone());
        }
        socket.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
    }
    let (mut full, mut slipped) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await
    {
        let m = Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation && m.answers.is_empty() {
            slipped += 1;
        } else {
            full += 1;
        }
    }
    (full, slipped)
}

/// Regression: `whoami` answers with DO were signed per query, and compact denial signed
/// every new name, before RRL decided to drop the answer: a spoofed flood cost a signature
/// (about 40 µs) per packet. Here 400 such queries over a limit of 5 a second.
#[tokio::test]
async fn answers_over_the_rate_limit_are_never_signed() {
    let s = start_with_settings(|c| {
        c.dnssec = true;
        c.denial = nameserver::config::Denial::Compact;
        c.rate_limit = 5;
    })
    .await;
    let made = || s.directory.view().signed().unwrap().signatures_made();
    let before = made();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.flags_mut().dnssec_ok = true;
    for i in 0..200u32 {
        for (name, rtype) in [
            (format!("{}.dial.example.", 9_000_000 + i), RecordType::A),
            ("whoami.dial.example.".to_owned(), RecordType::A),
        ] {
            let mut q = query_message(&name, rtype);
            q.set_edns(edns.clone());
            socket.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
        }
    }
    let (mut full, mut slipped) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await
    {
        let m = Message::from_vec(&buf[..n]).unwrap();
        match m.metadata.truncation && m.answers.is_empty() && m.authorities.is_empty() {
            true => slipped += 1,
            false => full += 1,
        }
    }
    assert!(full < 40, "the limit held: {full} full answers");
    assert!(slipped > 0, "some slipped");
    let signed = made() - before;
    assert!(
        signed <= full as u64 + 2,
        "{signed} signatures made for {full} full answers ({slipped} slips)"
    );
}

#[tokio::test]
async fn rrl_limits_udp_answers_per_prefix_and_slips() {
    let s = start_with_settings(|c| c.rate_limit = 20).await;
    let (full, slipped) = blast(s.addr, 300, None).await;
    println!("RRL at 20/s: 300 queries gave {full} answers and {slipped} truncated slips");
    assert!((20..=30).contains(&full), "{full} full answers");
    assert!(slipped >= 100, "about half the excess slips: {slipped}");
    assert!(full + slipped < 300, "the rest is dropped");
    // TCP is not rate limited: a real client still gets its answer.
    let mut tcp = s.tcp_client().await;
    let m = tcp
        .query(n("dial.example."), DNSClass::IN, RecordType::SOA)
        .await
        .unwrap();
    assert_eq!(m.answers.len(), 1);
}

fn cookie_of(m: &Message) -> Option<Vec<u8>> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    match m.edns.as_ref()?.option(EdnsCode::Cookie)? {
        EdnsOption::Unknown(_, data) => Some(data.clone()),
        _ => None,
    }
}

fn with_cookie(data: Vec<u8>) -> Edns {
    use hickory_proto::rr::rdata::opt::EdnsOption;
    let mut edns = Edns::new();
    edns.options_mut().insert(EdnsOption::Unknown(10, data));
    edns
}

#[tokio::test]
async fn cookies_are_answered_and_a_valid_one_skips_rrl() {
    let s = start_with_settings(|c| c.rate_limit = 5).await;
    let mut q = query_message("dial.example.", RecordType::SOA);
    q.set_edns(with_cookie(vec![1, 2, 3, 4, 5, 6, 7, 8]));
    let m = s.exchange(&q.to_vec().unwrap()).await;
    let cookie = cookie_of(&m).expect("a server cookie in the answer");
    assert_eq!(cookie.len(), 24);
    assert_eq!(&cookie[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    // With our server cookie the source is proven: no rate limit.
    let (full, _) = blast(s.addr, 100, Some(with_cookie(cookie))).await;
    assert_eq!(full, 100, "valid cookies are exempt from RRL");
    // A malformed cookie (wrong length) is FORMERR.
    let mut bad = query_message("dial.example.", RecordType::SOA);
    bad.set_edns(with_cookie(vec![1, 2, 3]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        s.exchange(&bad.to_vec().unwrap())
            .await
            .metadata
            .response_code,
        ResponseCode::FormErr
    );
}

#[tokio::test]
async fn tcp_connections_are_limited_per_client_and_idle_ones_closed() {
    use tokio::io::AsyncReadExt;
    let s = start_with_settings(|c| {
        c.tcp.max_per_client = 2;
        c.tcp.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let mut first = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the third connection is closed at once: {closed:?}"
    );
    let idle = tokio::time::timeout(Duration::from_secs(3), first.read(&mut buf)).await;
    assert!(
        matches!(idle, Ok(Ok(0)) | Ok(Err(_))),
        "an idle connection is closed: {idle:?}"
    );
}

#[tokio::test]
async fn a_tcp_client_that_does_not_read_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = Limits {
        max_addresses_per_family: 64,
        ..Limits::default()
    };
    let s = start_with_settings(move |c| {
        c.limits = limits;
        c.tcp.write_timeout = Duration::from_millis(500);
        c.tcp.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let key = s.register("5551234").await;
    let owner = "5551234.dial.example.";
    let updates = (1..=60u16)
        .map(|i| aaaa_record(owner, 30, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)))
        .collect();
    s.exchange(&signed_bytes(update_message(updates), &key, now()))
        .await;
    // Thousands of pipelined queries for a 2 KB answer, and never a read.
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let query = query_message(owner, RecordType::AAAA).to_vec().unwrap();
    let mut batch = Vec::new();
    for _ in 0..4000 {
        batch.extend_from_slice(&(query.len() as u16).to_be_bytes());
        batch.extend_from_slice(&query);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&batch)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut answers = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answers)).await;
    assert!(read.is_ok(), "the server closed the connection");
    let got = answers.len() / 2000;
    println!("slow reader: about {got} of 4000 answers sent before the cut-off");
    assert!(got < 4000, "the slow reader was served in full");
}

#[tokio::test]
async fn updates_beyond_the_per_key_rate_are_refused() {
    let s = start_with_settings(|c| c.update_rate_limit = 2).await;
    let key = s.register("5551234").await;
    let own = "5551234.dial.example.";
    let mut refused = 0;
    for i in 0..10u8 {
        let m = s
            .exchange(&signed_bytes(
                replace_a(own, [192, 0, 2, i + 1]),
                &key,
                now(),
            ))
            .await;
        refused += usize::from(m.metadata.response_code == ResponseCode::Refused);
    }
    assert!(
        refused >= 5,
        "a burst of 4 at 2 per second, then refusals: {refused} refused"
    );
    let a = v4_answers(&s.lookup(own, RecordType::A).await);
    assert_eq!(a.len(), 1);
    assert!(
        a[0].octets()[3] <= 5,
        "a refused update changed nothing: {a:?}"
    );
}

#[tokio::test]
async fn tcp_connections_are_limited_in_total() {
    use tokio::io::AsyncReadExt;
    let s = start_with_settings(|c| {
        c.tcp.max_connections = 3;
        c.tcp.max_per_client = 100;
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(tokio::net::TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a fourth connection is closed: {closed:?}"
    );
    // When one closes, a new one is served.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut tcp = s.tcp_client().await;
    let m = tcp
        .query(n("dial.example."), DNSClass::IN, RecordType::SOA)
        .await
        .unwrap();
    assert_eq!(m.answers.len(), 1);
}

// ---------------------------------------------------------------- denial by strangers

/// Sends `bytes` `count` times from one socket; returns (full answers, TC slips).
async fn blast_raw(addr: SocketAddr, bytes: &[u8], count: usize) -> (usize, usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..count {
        socket.send_to(bytes, addr).await.unwrap();
    }
    let (mut full, mut slipped) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await
    {
        let truncated = buf[2] & 0x02 != 0;
        let counts_empty = n >= 12 && buf[6..10] == [0, 0, 0, 0];
        if truncated && counts_empty {
            slipped += 1;
        } else {
            full += 1;
        }
    }
    (full, slipped)
}

/// Regression: each replay of a captured update took a token from the key's update rate
/// limit before the freshness check, so 30 replays locked the real terminal out.
#[tokio::test]
async fn replays_cost_the_key_no_update_budget() {
    let s = start_with_settings(|c| c.update_rate_limit = 10).await;
    let key = s.register("5551234").await;
    let owner = "5551234.dial.example.";
    let captured = signed_bytes(replace_a(owner, [192, 0, 2, 1]), &key, now());
    assert_eq!(
        s.exchange(&captured).await.metadata.response_code,
        ResponseCode::NoError
    );
    for _ in 0..30 {
        let replay = s.exchange(&captured).await;
        assert_eq!(tsig_error(&replay), Some(TsigError::BadTime));
    }
    let fresh = signed_bytes(replace_a(owner, [192, 0, 2, 2]), &key, now());
    assert_eq!(
        s.exchange(&fresh).await.metadata.response_code,
        ResponseCode::NoError,
        "the terminal's own update after 30 replays"
    );
}

/// Regression: BADKEY answers, unsigned UPDATEs, NOTIFYs and malformed cookies were
/// answered at full rate with no slip: a reflector for forged sources.
#[tokio::test]
async fn rrl_limits_error_answers_too() {
    let s = start_with_settings(|c| c.rate_limit = 20).await;
    let stranger = TsigKey {
        name: "nobody.key.dial.example.".into(),
        algorithm: Algorithm::HmacSha256,
        secret: zones::key::Secret::generate().unwrap(),
    };
    let bad_key = signed_bytes(
        query_message("dial.example.", RecordType::SOA),
        &stranger,
        now(),
    );
    let unsigned_update = replace_a("5551234.dial.example.", [192, 0, 2, 1])
        .to_vec()
        .unwrap();
    let mut notify = query_message("dial.example.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    let notify = notify.to_vec().unwrap();
    let mut bad_cookie = query_message("dial.example.", RecordType::SOA);
    bad_cookie.set_edns(with_cookie(vec![1, 2, 3]));
    let bad_cookie = bad_cookie.to_vec().unwrap();
    for (what, bytes) in [
        ("BADKEY", bad_key),
        ("unsigned UPDATE", unsigned_update),
        ("NOTIFY", notify),
        ("malformed cookie", bad_cookie),
    ] {
        // Each kind from the same prefix: the bucket refills at 20/s between kinds.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (full, slipped) = blast_raw(s.addr, &bytes, 300).await;
        println!("{what}: 300 requests gave {full} answers and {slipped} slips");
        assert!(full <= 30, "{what}: {full} full answers at 20/s");
        assert!(full + slipped < 300, "{what}: the excess is dropped");
    }
}

/// Regression: RFC 8945 algorithm names are case-insensitive; `HMAC-SHA256.` got BADKEY.
#[tokio::test]
async fn tsig_algorithm_names_are_case_insensitive() {
    let s = TestServer::start().await;
    let key = s.register("5551234").await;
    let mut bytes = signed_bytes(
        replace_a("5551234.dial.example.", [192, 0, 2, 1]),
        &key,
        now(),
    );
    let name = b"\x0bhmac-sha256";
    let at = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("the algorithm name in the TSIG record");
    bytes[at + 1..at + name.len()].make_ascii_uppercase();
    let answer = s.exchange(&bytes).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        v4_answers(&s.lookup("5551234.dial.example.", RecordType::A).await),
        vec![Ipv4Addr::new(192, 0, 2, 1)]
    );
}

/// A TCP connection from `src` that gets an answer (true) or is closed unanswered.
async fn tcp_answered(server: SocketAddr, src: &str) -> (bool, Option<tokio::net::TcpStream>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let Ok(mut stream) = socket.connect(server).await else {
        return (false, None);
    };
    let query = query_message("dial.example.", RecordType::SOA)
        .to_vec()
        .unwrap();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend(query);
    if stream.write_all(&framed).await.is_err() {
        return (false, None);
    }
    let mut len = [0u8; 2];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut len)).await;
    match read {
        Ok(Ok(_)) => {
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            let _ = stream.read_exact(&mut body).await;
            (true, Some(stream))
        }
        _ => (false, None),
    }
}

/// Regression: the per-client TCP limit counted single addresses, so the addresses of one
/// network held every slot. Now it counts /24 and /56 prefixes, and the last slots are
/// kept for prefixes that hold none.
#[tokio::test]
async fn tcp_limits_count_prefixes_and_keep_slots_for_others() {
    let s = start_with_settings(|c| {
        c.tcp.max_connections = 16;
        c.tcp.max_per_client = 4;
    })
    .await;
    let mut held = Vec::new();
    let mut from_one_prefix = 0;
    for host in 2..12 {
        let (answered, stream) = tcp_answered(s.addr, &format!("127.0.0.{host}")).await;
        from_one_prefix += usize::from(answered);
        held.extend(stream);
    }
    assert_eq!(from_one_prefix, 4, "one /24 holds at most max_per_client");
    // Three more busy prefixes fill what is not kept in reserve.
    let mut busy = 0;
    for net in 1..4 {
        for host in 2..8 {
            let (answered, stream) = tcp_answered(s.addr, &format!("127.0.{net}.{host}")).await;
            busy += usize::from(answered);
            held.extend(stream);
        }
    }
    assert!(
        busy < 12,
        "the reserve is not given to prefixes that hold slots"
    );
    let (answered, stream) = tcp_answered(s.addr, "127.0.9.9").await;
    assert!(answered, "a client of another prefix still gets a slot");
    held.extend(stream);
}
