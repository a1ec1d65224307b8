//! The updater against a real nameserver running in-process on IPv4 and IPv6 loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Name;
use nameserver::config::{LookupPolicy, Settings as ServerSettings};
use nameserver::control::{self, ControlReply, ControlRequest};
use nameserver::testing::Served;
use updater::client::{ClientError, DirectoryClient};
use updater::config::Settings;
use updater::daemon::{Synced, Terminal};
use updater::dial::{self, Call, DialError};
use updater::discover::AddressSet;
use updater::exchange::ExchangeError;
use updater::network::{Network, Watch};
use zones::Directory;
use zones::directory::Limits;
use zones::identity::Mid;
use zones::key::{Algorithm, TsigKey};

struct Directory4and6 {
    v4: SocketAddr,
    v6: SocketAddr,
    directory: Directory,
    _served: Served,
}

async fn start(limits: Limits) -> Directory4and6 {
    start_with(limits, false).await
}

/// The same, with the zone signed (DNSSEC) when `dnssec`.
async fn start_with(limits: Limits, dnssec: bool) -> Directory4and6 {
    start_configured(move |settings| {
        settings.limits = limits;
        settings.dnssec = dnssec;
    })
    .await
}

/// The same, with the settings as `configure` leaves them.
async fn start_configured(configure: impl FnOnce(&mut ServerSettings)) -> Directory4and6 {
    let listen = ["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    let served = Served::start(&listen, tempfile::tempdir().unwrap(), |settings| {
        settings.lookups = LookupPolicy::Public;
        configure(settings);
    })
    .await;
    Directory4and6 {
        v4: served.addrs[0],
        v6: served.addrs[1],
        directory: served.directory.clone(),
        _served: served,
    }
}

/// Registers `code` for this machine's first card, as the operator would with its MID.
async fn register_this_machine(d: &Directory4and6, code: &str) -> TsigKey {
    let network = Network::open(Watch::Netlink).unwrap();
    let (_, mac) = network
        .card_mac(None)
        .await
        .expect("this test needs a network card with a MAC address");
    let kid = "acme".parse().unwrap();
    let request = ControlRequest::Register {
        code: code.parse().unwrap(),
        mid: Mid::derive(&kid, &mac),
        kid,
        algorithm: Algorithm::HmacSha256,
    };
    match control::execute(request, &d.directory).await.unwrap() {
        ControlReply::Key { key_file, .. } => TsigKey::from_key_file(&key_file).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn settings(d: &Directory4and6, code: &str, key: &TsigKey, fixed: &[&str]) -> Settings {
    Settings {
        servers: vec![d.v4, d.v6],
        zone: Name::from_ascii("dial.example.").unwrap(),
        code: code.parse().unwrap(),
        key: key.clone(),
        interface: None,
        auto: false,
        fixed: fixed.iter().map(|a| a.parse().unwrap()).collect(),
        ttl: 60,
        lease: 3600,
        allow_private: false,
        keep_on_exit: false,
        recheck: Duration::from_secs(60),
        watch: Watch::Netlink,
        timeout: Duration::from_secs(2),
        tls_pin: None,
    }
}

fn client(s: &Settings) -> DirectoryClient {
    DirectoryClient {
        servers: s.servers.clone(),
        zone: s.zone.clone(),
        code: s.code.clone(),
        key: s.key.clone(),
        timeout: s.timeout,
        channel: s.channel(),
    }
}

fn v4(set: &AddressSet) -> Vec<Ipv4Addr> {
    set.v4.clone()
}

#[tokio::test]
async fn whoami_answers_over_ipv4_and_ipv6() {
    let d = start(Limits::default()).await;
    let key = register_this_machine(&d, "5550001").await;
    let seen = client(&settings(&d, "5550001", &key, &[])).whoami().await;
    assert!(seen.contains(&IpAddr::from([127, 0, 0, 1])), "{seen:?}");
    assert!(seen.contains(&"::1".parse::<IpAddr>().unwrap()), "{seen:?}");
}

#[tokio::test]
async fn lease_is_granted_refreshed_without_serial_bump_then_expires_offline() {
    let limits = Limits {
        leases: zones::lease::LeasePolicy {
            min: 1,
            max: 3600,
            default: None,
        },
        ..Limits::default()
    };
    let d = start(limits).await;
    let key = register_this_machine(&d, "5550001").await;
    let s = settings(&d, "5550001", &key, &["192.0.2.10"]);
    let c = client(&s);
    let set = AddressSet {
        v4: vec![Ipv4Addr::new(192, 0, 2, 10)],
        v6: vec![],
    };
    assert_eq!(
        c.publish(&set, 60, Some(7200)).await.unwrap(),
        Some(3600),
        "granted within the maximum"
    );
    let serial = d.directory.view().serial();
    assert_eq!(c.publish(&set, 60, Some(2)).await.unwrap(), Some(2));
    assert_eq!(
        d.directory.view().serial(),
        serial,
        "refresh without a serial increase"
    );
    assert_eq!(
        v4(&c.published().await.unwrap()),
        vec![Ipv4Addr::new(192, 0, 2, 10)]
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        c.published().await.unwrap().is_empty(),
        "expired: offline (NODATA)"
    );
}

/// DNS over TLS with the directory's pin: the address is published and read back over
/// TLS, and the same client with another pin gets no answer (the handshake is refused).
#[tokio::test]
async fn updates_and_lookups_go_over_tls_to_the_pinned_certificate() {
    let served = Served::start(
        &["127.0.0.1:0".parse().unwrap()],
        tempfile::tempdir().unwrap(),
        |settings| settings.tls_listen = vec!["127.0.0.1:0".parse().unwrap()],
    )
    .await;
    let d = Directory4and6 {
        v4: served.tls_addrs[0],
        v6: served.tls_addrs[0],
        directory: served.directory.clone(),
        _served: served,
    };
    let key = register_this_machine(&d, "5550001").await;
    let pin = d._served.tls_pin.expect("a pin");
    let mut s = settings(&d, "5550001", &key, &["192.0.2.10"]);
    s.servers = vec![d.v4];
    s.tls_pin = Some(pin);
    let terminal = Terminal::new(s.clone()).await.unwrap();
    assert!(matches!(
        terminal.sync(false).await.unwrap(),
        Synced::Published { .. }
    ));
    let published = d
        .directory
        .view()
        .terminal(&"5550001".parse().unwrap())
        .map(|h| h.addresses.v4.addrs.to_vec());
    assert_eq!(published, Some(vec![Ipv4Addr::new(192, 0, 2, 10)]));
    let over_tls = client(&s).published().await.unwrap();
    assert_eq!(over_tls.v4, vec![Ipv4Addr::new(192, 0, 2, 10)]);

    let other: zones::pin::Pin = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        .parse()
        .unwrap();
    s.tls_pin = Some(other);
    let refused = client(&s).published().await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn the_entry_heals_when_changed_elsewhere() {
    let d = start(Limits::default()).await;
    let key = register_this_machine(&d, "5550001").await;
    let s = settings(&d, "5550001", &key, &["192.0.2.10"]);
    let terminal = Terminal::new(s.clone()).await.unwrap();
    assert!(matches!(
        terminal.sync(false).await.unwrap(),
        Synced::Published { .. }
    ));
    assert_eq!(
        terminal.sync(false).await.unwrap(),
        Synced::Unchanged,
        "nothing to do"
    );
    // Someone (an operator with the key, a restore from backup) changes the entry.
    let wrong = AddressSet {
        v4: vec![Ipv4Addr::new(192, 0, 2, 99)],
        v6: vec![],
    };
    client(&s).publish(&wrong, 60, None).await.unwrap();
    let healed = terminal.sync(false).await.unwrap();
    assert!(matches!(healed, Synced::Published { .. }), "{healed:?}");
    assert_eq!(
        v4(&client(&s).published().await.unwrap()),
        vec![Ipv4Addr::new(192, 0, 2, 10)]
    );
}

#[tokio::test]
async fn a_key_for_another_machine_is_refused_before_anything_is_sent() {
    let d = start(Limits::default()).await;
    let request = ControlRequest::Register {
        code: "5550002".parse().unwrap(),
        kid: "acme".parse().unwrap(),
        mid: "0000000000000000".parse().unwrap(),
        algorithm: Algorithm::HmacSha256,
    };
    let ControlReply::Key { key_file, .. } = control::execute(request, &d.directory).await.unwrap()
    else {
        panic!()
    };
    let key = TsigKey::from_key_file(&key_file).unwrap();
    let err = Terminal::new(settings(&d, "5550002", &key, &["192.0.2.10"]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("bound to machine 0000000000000000"),
        "{err}"
    );
}

#[tokio::test]
async fn authentication_failures_say_what_to_fix() {
    let d = start(Limits::default()).await;
    let mut key = register_this_machine(&d, "5550001").await;
    key.secret = zones::key::Secret::from_bytes(vec![9; 32]);
    let s = settings(&d, "5550001", &key, &["192.0.2.10"]);
    let err = client(&s).withdraw().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Exchange(ExchangeError::BadSig { .. })),
        "{err}"
    );
    assert!(err.needs_a_person());
    assert!(err.to_string().contains("rotated"), "{err}");
    let mut unknown = key.clone();
    unknown.name = "5550009.0000000000000000.acme.key.dial.example.".into();
    let err = client(&settings(&d, "5550009", &unknown, &[]))
        .withdraw()
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Exchange(ExchangeError::BadKey { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn dial_tells_no_such_code_from_offline() {
    let d = start(Limits::default()).await;
    register_this_machine(&d, "5550001").await;
    let call = |code: &str| Call {
        servers: vec![d.v4],
        zone: Name::from_ascii("dial.example.").unwrap(),
        code: code.parse().unwrap(),
        port: 9,
        key: None,
        timeout: Duration::from_secs(2),
        channel: Default::default(),
        trust: None,
    };
    let none = dial::resolve(&call("5559999")).await.unwrap_err();
    assert!(matches!(none, DialError::NoSuchCode(_)));
    assert_eq!(none.exit_code(), 3);
    let offline = dial::resolve(&call("5550001")).await.unwrap_err();
    assert!(matches!(offline, DialError::Offline(_)));
    assert_eq!(offline.exit_code(), 4);
}

/// Answers every UDP request on `udp` with a forged, unsigned NOTAUTH/BADSIG, and passes
/// every TCP connection on `tcp` through to the real directory at `real`.
async fn forger_in_front_of(real: SocketAddr) -> SocketAddr {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::rdata::tsig::{TSIG, TsigError, make_tsig_record};
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let Ok(request) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(signature) = request.signature() else {
                continue;
            };
            let mut forged = Message::new(
                request.metadata.id,
                MessageType::Response,
                request.metadata.op_code,
            );
            forged.metadata.response_code = ResponseCode::NotAuth;
            forged.add_queries(request.queries.clone());
            let tsig = TSIG::new(
                signature.data.algorithm.clone(),
                signature.data.time,
                300,
                Vec::new(),
                request.metadata.id,
                Some(TsigError::BadSig),
                Vec::new(),
            );
            forged.set_signature(Box::new(make_tsig_record(signature.name.clone(), tsig)));
            let _ = udp.send_to(&forged.to_vec().unwrap(), from).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(real).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    addr
}

/// Regression: a forged, unsigned BADSIG answer made the updater decide its key was wrong
/// and wait an hour. Unsigned TSIG errors get a second opinion over TCP.
#[tokio::test]
async fn a_forged_unsigned_badsig_is_not_the_directorys_word() {
    let d = start(Limits::default()).await;
    let key = register_this_machine(&d, "5550001").await;
    let mut s = settings(&d, "5550001", &key, &["192.0.2.10"]);
    s.servers = vec![forger_in_front_of(d.v4).await];
    let set = AddressSet {
        v4: vec!["192.0.2.10".parse().unwrap()],
        v6: Vec::new(),
    };
    client(&s)
        .publish(&set, 60, None)
        .await
        .expect("the update goes through over TCP");
    let view = d.directory.view();
    let entry = view.terminal(&"5550001".parse().unwrap()).unwrap();
    assert_eq!(
        entry.addresses.v4.addrs.as_slice(),
        ["192.0.2.10".parse::<Ipv4Addr>().unwrap()]
    );
}

/// A stand-in for a directory that answers every question with `answers` (owner names
/// chosen by the test); returns its address.
async fn answering_with(answers: Vec<hickory_proto::rr::Record>) -> SocketAddr {
    answering(answers, ResponseCode::NoError).await
}

/// A server that answers every query with `answers` (those of the asked type) and `rcode`,
/// unsigned.
async fn answering(answers: Vec<hickory_proto::rr::Record>, rcode: ResponseCode) -> SocketAddr {
    use hickory_proto::op::{Message, MessageType};
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let Ok(request) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::new(
                request.metadata.id,
                MessageType::Response,
                request.metadata.op_code,
            );
            answer.metadata.authoritative = true;
            answer.metadata.response_code = rcode;
            answer.add_queries(request.queries.clone());
            let qtype = request.queries[0].query_type();
            answer.answers = answers
                .iter()
                .filter(|r| r.record_type() == qtype)
                .cloned()
                .collect();
            let _ = udp.send_to(&answer.to_vec().unwrap(), from).await;
        }
    });
    addr
}

/// Regression: dial connected to any A/AAAA in the answer, whatever its owner name, so an
/// answer could steer a call to an address the directory never gave for the code.
#[tokio::test]
async fn dial_uses_only_records_owned_by_the_queried_name() {
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    let a = |owner: &str, ip: [u8; 4]| {
        Record::from_rdata(
            Name::from_ascii(owner).unwrap(),
            60,
            RData::A(A::from(Ipv4Addr::from(ip))),
        )
    };
    let server = answering_with(vec![
        a("evil.dial.example.", [127, 0, 0, 99]),
        // Owner names compare case-insensitively.
        a("5550001.DIAL.example.", [127, 0, 0, 98]),
    ])
    .await;
    let call = Call {
        servers: vec![server],
        zone: Name::from_ascii("dial.example.").unwrap(),
        code: "5550001".parse().unwrap(),
        port: 9,
        key: None,
        timeout: Duration::from_secs(2),
        channel: Default::default(),
        trust: None,
    };
    let found = dial::resolve(&call).await.unwrap();
    assert_eq!(found, vec![IpAddr::from([127, 0, 0, 98])]);
    let only_foreign = answering_with(vec![a("evil.dial.example.", [127, 0, 0, 99])]).await;
    let call = Call {
        servers: vec![only_foreign],
        ..call
    };
    let err = dial::resolve(&call).await.unwrap_err();
    assert!(matches!(err, DialError::Offline(_)), "{err}");
}

/// Forwards datagrams to `upstream`, changing the address `from` into `to` in every answer
/// that carries it (an attacker on the path).
async fn altering(upstream: SocketAddr, from: [u8; 4], to: [u8; 4]) -> SocketAddr {
    proxy(upstream, |_| {}, move |answer| replace(answer, &from, &to)).await
}

/// A loopback UDP proxy to `upstream` that passes each query through `on_query` and each
/// answer through `on_answer` (an attacker on the path).
async fn proxy(
    upstream: SocketAddr,
    on_query: impl Fn(&mut Vec<u8>) + Send + 'static,
    on_answer: impl Fn(&mut Vec<u8>) + Send + 'static,
) -> SocketAddr {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = vec![0u8; 4096];
        while let Ok((n, client)) = udp.recv_from(&mut buf).await {
            let mut query = buf[..n].to_vec();
            on_query(&mut query);
            relay.send_to(&query, upstream).await.unwrap();
            let Ok(Ok(m)) =
                tokio::time::timeout(Duration::from_secs(2), relay.recv(&mut buf)).await
            else {
                continue;
            };
            let mut answer = buf[..m].to_vec();
            on_answer(&mut answer);
            let _ = udp.send_to(&answer, client).await;
        }
    });
    addr
}

/// Replaces the first occurrence of `from` in `bytes` with `to` (of the same length).
fn replace(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    if let Some(at) = bytes.windows(from.len()).position(|w| w == from) {
        bytes[at..at + to.len()].copy_from_slice(to);
    }
}

/// Turns an answer into a bare NXDOMAIN: its question kept, every record dropped.
fn bare_nxdomain(answer: &mut Vec<u8>) {
    let mut end = 12;
    while answer[end] != 0 {
        end += 1 + usize::from(answer[end]);
    }
    answer.truncate(end + 5);
    answer[3] = (answer[3] & 0xf0) | 3;
    answer[6..12].fill(0);
}

/// Imports 5550001 with the address 127.0.0.98 into a signed directory, and writes its
/// trust anchor (the DS) to `anchor_file`.
async fn signed_terminal(
    d: &Directory4and6,
    anchor_file: &std::path::Path,
) -> updater::validate::TrustAnchor {
    use zones::directory::{Addresses, Import, Registration};
    let mut addresses = Addresses::default();
    addresses.v4.ttl = 60;
    addresses.v4.addrs.push(Ipv4Addr::new(127, 0, 0, 98));
    d.directory
        .import(
            vec![Import {
                registration: Registration {
                    code: "5550001".parse().unwrap(),
                    kid: "acme".parse().unwrap(),
                    mid: "0011223344aa".parse().unwrap(),
                    algorithm: Algorithm::HmacSha256,
                },
                addresses,
            }],
            zones::unix_now(),
        )
        .await
        .unwrap();
    let zone = Name::from_ascii("dial.example.").unwrap();
    let keys = d.directory.zone_keys().unwrap();
    std::fs::write(
        anchor_file,
        nameserver::key_text::ds_lines(&keys, &zone).unwrap(),
    )
    .unwrap();
    updater::validate::TrustAnchor::load(anchor_file, &zone).unwrap()
}

/// A call to `code` through `server`, validated from `trust` when given.
fn dial_call(
    server: SocketAddr,
    code: &str,
    trust: Option<updater::validate::TrustAnchor>,
) -> Call {
    Call {
        servers: vec![server],
        zone: Name::from_ascii("dial.example.").unwrap(),
        code: code.parse().unwrap(),
        port: 9,
        key: None,
        timeout: Duration::from_secs(2),
        channel: Default::default(),
        trust,
    }
}

#[tokio::test]
async fn dial_with_a_trust_anchor_takes_only_addresses_that_validate() {
    use updater::validate::TrustAnchor;

    let d = start_with(Limits::default(), true).await;
    let dir = tempfile::tempdir().unwrap();
    let anchor_file = dir.path().join("anchor");
    let anchor = signed_terminal(&d, &anchor_file).await;
    let zone = anchor.zone().clone();
    let keys = d.directory.zone_keys().unwrap();
    let call = |server: SocketAddr, trust: Option<TrustAnchor>| dial_call(server, "5550001", trust);
    // Straight from the directory: the address validates.
    let found = dial::resolve(&call(d.v4, Some(anchor.clone())))
        .await
        .unwrap();
    assert_eq!(found, vec![IpAddr::from([127, 0, 0, 98])]);

    // On a path that alters the address: without the anchor the call would go to the
    // attacker's address; with it, the answer is refused.
    let path = altering(d.v4, [127, 0, 0, 98], [127, 0, 0, 99]).await;
    let misled = dial::resolve(&call(path, None)).await.unwrap();
    assert_eq!(misled, vec![IpAddr::from([127, 0, 0, 99])]);
    let refused = dial::resolve(&call(path, Some(anchor.clone())))
        .await
        .unwrap_err();
    assert!(matches!(refused, DialError::Bogus(_)), "{refused}");
    assert_eq!(refused.exit_code(), 7);

    // Negative answers count only when the zone's signed denial proves them (NSEC3): a
    // code that is not registered is "no such code"...
    let unknown = dial_call(d.v4, "5559999", Some(anchor.clone()));
    let err = dial::resolve(&unknown).await.unwrap_err();
    assert!(matches!(err, DialError::NoSuchCode(_)), "{err}");
    // ... but a bare NXDOMAIN put in the way of a registered one is refused, where without
    // the anchor dial would believe the code does not exist.
    let path = proxy(d.v4, |_| {}, bare_nxdomain).await;
    let denied = dial::resolve(&call(path, None)).await.unwrap_err();
    assert!(matches!(denied, DialError::NoSuchCode(_)), "{denied}");
    // (So is a real, signed denial of another code passed off as this one's.)
    forged_denials_are_refused(d.v4, &anchor).await;

    // An anchor for another key: the zone's keys are not trusted at all.
    let other = zones::dnssec::ZoneKey::generate(1).unwrap();
    std::fs::write(
        &anchor_file,
        nameserver::key_text::ds_lines(&[other], &zone).unwrap(),
    )
    .unwrap();
    let stranger = TrustAnchor::load(&anchor_file, &zone).unwrap();
    let refused = dial::resolve(&call(d.v4, Some(stranger)))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("matches the trust anchor"),
        "{refused}"
    );

    // A DNSKEY line works as the anchor too.
    let dnskey = nameserver::key_text::key_lines(&keys, &zone).unwrap();
    let dnskey: String = dnskey.lines().filter(|l| l.contains("DNSKEY")).collect();
    std::fs::write(&anchor_file, dnskey).unwrap();
    let by_key = TrustAnchor::load(&anchor_file, &zone).unwrap();
    assert!(dial::resolve(&call(d.v4, Some(by_key))).await.is_ok());
}

/// Regression: `updater dial --zone dial.example --trust-anchor FILE` said the anchor "holds
/// no DS or DNSKEY record of dial.example"; only `dial.example.` worked.
#[tokio::test]
async fn a_zone_named_without_the_final_dot_is_the_same_zone() {
    use updater::validate::TrustAnchor;

    let d = start_with(Limits::default(), true).await;
    let dir = tempfile::tempdir().unwrap();
    let anchor_file = dir.path().join("anchor");
    signed_terminal(&d, &anchor_file).await;
    let bare = Name::from_ascii("dial.example").unwrap();
    let anchor = TrustAnchor::load(&anchor_file, &bare).unwrap();
    let zone = zones::zone::zone_name("dial.example").unwrap();
    assert_eq!(zone, zones::zone::zone_name("dial.example.").unwrap());
    assert!(zone.is_fqdn());
    let call = Call {
        zone,
        ..dial_call(d.v4, "5550001", Some(anchor))
    };
    let found = dial::resolve(&call).await.unwrap();
    assert_eq!(found, vec![IpAddr::from([127, 0, 0, 98])]);
}

/// With compact denial (RFC 9824), dial proves negative answers from the NSEC at the name
/// itself: NXNAME for a code that is not registered, a type map without AAAA for an IPv4
/// terminal; a bare NXDOMAIN or another code's denial renamed on the path is refused.
#[tokio::test]
async fn dial_with_a_trust_anchor_proves_compact_denials() {
    let d = start_configured(|settings| {
        settings.dnssec = true;
        settings.denial = nameserver::config::Denial::Compact;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let anchor = signed_terminal(&d, &dir.path().join("anchor")).await;
    let found = dial::resolve(&dial_call(d.v4, "5550001", Some(anchor.clone())))
        .await
        .unwrap();
    assert_eq!(found, vec![IpAddr::from([127, 0, 0, 98])]);
    let err = dial::resolve(&dial_call(d.v4, "5559999", Some(anchor.clone())))
        .await
        .unwrap_err();
    assert!(matches!(err, DialError::NoSuchCode(_)), "{err}");
    forged_denials_are_refused(d.v4, &anchor).await;
}

/// Through paths to `upstream` that forge a denial of 5550001, dial with `anchor` refuses
/// the answer (exit 7): a bare NXDOMAIN, and a real, signed denial of 5559999 passed off as
/// 5550001's (the path asks for 5559999 and renames the answer back).
async fn forged_denials_are_refused(upstream: SocketAddr, anchor: &updater::validate::TrustAnchor) {
    let bare = proxy(upstream, |_| {}, bare_nxdomain).await;
    let renamed = proxy(
        upstream,
        |q| replace(q, b"5550001", b"5559999"),
        |a| replace(a, b"5559999", b"5550001"),
    )
    .await;
    for path in [bare, renamed] {
        let refused = dial::resolve(&dial_call(path, "5550001", Some(anchor.clone())))
            .await
            .unwrap_err();
        assert!(matches!(refused, DialError::Bogus(_)), "{refused}");
        assert_eq!(refused.exit_code(), 7);
    }
}

/// A cluster node that cannot reach its leader answers an update SERVFAIL, unsigned: not
/// the directory's word, so the updater asks its next server.
#[tokio::test]
async fn an_update_a_node_without_a_leader_fails_goes_to_the_next_server() {
    let d = start(Limits::default()).await;
    let key = register_this_machine(&d, "5550003").await;
    let mut s = settings(&d, "5550003", &key, &["192.0.2.30"]);
    s.servers
        .insert(0, answering(Vec::new(), ResponseCode::ServFail).await);
    let set = AddressSet {
        v4: vec![Ipv4Addr::new(192, 0, 2, 30)],
        v6: vec![],
    };
    client(&s).publish(&set, 60, None).await.unwrap();
    assert_eq!(
        v4(&client(&s).published().await.unwrap()),
        vec![Ipv4Addr::new(192, 0, 2, 30)]
    );
}
