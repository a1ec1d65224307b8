//! Enrollment against a real nameserver running in this process on loopback: the answer
//! every refused token gets, the failure budget, replays, and a key that works at once.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::tsig::TsigError;
use nameserver::testing::Served;
use tokio::net::UdpSocket;
use updater::enroll::{Enroll, EnrollFailure, enroll, request_message};
use updater::tls::Channel;
use zones::Directory;
use zones::directory::{CustomerChange, NewToken};
use zones::enroll::{Ephemeral, Token};
use zones::identity::Mid;
use zones::key::TsigKey;

async fn served() -> Served {
    let listen = ["127.0.0.1:0".parse().unwrap()];
    Served::start(&listen, tempfile::tempdir().unwrap(), |_| {}).await
}

fn zone() -> Name {
    Name::from_ascii("dial.example.").unwrap()
}

async fn token(directory: &Directory, kid: &str, uses: u32, expires_in: u64) -> Token {
    let now = zones::unix_now();
    let new = NewToken {
        kid: kid.parse().unwrap(),
        uses,
        expires_at: now + expires_in,
        codes: None,
        approve: false,
    };
    directory.create_token(new, now).await.unwrap().0
}

fn request(server: SocketAddr, token: &Token, mac: u8) -> Enroll {
    Enroll {
        server,
        zone: zone(),
        token: token.clone(),
        mid: Mid::derive(
            &token.kid,
            &format!("02:00:00:00:00:{mac:02x}").parse().unwrap(),
        ),
        code: None,
        timeout: Duration::from_secs(3),
        channel: Channel::Plain,
    }
}

/// An enrollment request signed with `key`, as bytes.
fn signed_request(key: &TsigKey, mid: &Mid) -> Vec<u8> {
    let request = zones::enroll::Request {
        mid: mid.clone(),
        code: None,
        public: Ephemeral::generate().unwrap().public(),
    };
    let mut message = request_message(&zone(), &request);
    let signer = key.signer(300).unwrap();
    let (signature, _) = signer.sign_message(&message, zones::unix_now()).unwrap();
    message.set_signature(signature);
    message.to_vec().unwrap()
}

async fn ask(server: SocketAddr, bytes: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

/// What an answer to a refused token shows: RCODE, TSIG error, MAC length, sections.
fn shape(answer: &Message) -> (ResponseCode, Option<TsigError>, usize, usize) {
    let tsig = answer.signature().expect("a TSIG record");
    (
        answer.metadata.response_code,
        tsig.data.error,
        tsig.data.mac.len(),
        answer.additionals.len(),
    )
}

#[tokio::test]
async fn every_refused_token_gets_the_same_answer_and_changes_nothing() {
    let served = served().await;
    let (server, directory) = (served.addrs[0], served.directory.clone());
    let mid: Mid = "0200000000aa".parse().unwrap();
    let now = zones::unix_now();

    let unknown = Token::generate("acme".parse().unwrap()).unwrap();
    let good = token(&directory, "acme", 5, 3600).await;
    let wrong = {
        // The right id and KID with another secret.
        let text = good.to_text();
        let (head, _) = text.rsplit_once('.').unwrap();
        let other = Token::generate("acme".parse().unwrap()).unwrap().to_text();
        format!("{head}.{}", other.rsplit_once('.').unwrap().1)
            .parse::<Token>()
            .unwrap()
    };
    let revoked = token(&directory, "acme", 5, 3600).await;
    directory.revoke_token(&revoked.id, now).await.unwrap();
    let expired = token(&directory, "acme", 5, 0).await;
    let used_up = token(&directory, "acme", 1, 3600).await;
    enroll(&request(server, &used_up, 1)).await.unwrap();
    let before = directory.view().len();

    let mut shapes = Vec::new();
    for (what, token) in [
        ("unknown", &unknown),
        ("wrong", &wrong),
        ("revoked", &revoked),
        ("expired", &expired),
        ("used up", &used_up),
    ] {
        let answer = ask(server, &signed_request(&token.tsig_key(&zone()), &mid)).await;
        shapes.push((what, shape(&answer)));
    }
    // The updater's words for it (two failures more: UDP, then TCP to confirm).
    let failure = enroll(&request(server, &wrong, 2)).await.unwrap_err();
    assert!(matches!(failure, EnrollFailure::TokenRefused), "{failure}");
    for (what, shape) in &shapes {
        assert_eq!(
            *shape,
            (ResponseCode::NotAuth, Some(TsigError::BadKey), 0, 0),
            "{what}"
        );
    }
    assert_eq!(directory.view().len(), before, "nothing was enrolled");
}

#[tokio::test]
async fn failed_enrollments_are_limited_per_prefix_before_any_key_is_looked_at() {
    let served = served().await;
    let (server, directory) = (served.addrs[0], served.directory.clone());
    let good = token(&directory, "acme", 5, 3600).await;
    let stranger = Token::generate("acme".parse().unwrap()).unwrap();
    let key = stranger.tsig_key(&zone());
    let mid: Mid = "0200000000aa".parse().unwrap();
    for _ in 0..nameserver::ratelimit::ENROLL_FAILURE_BURST {
        let answer = ask(server, &signed_request(&key, &mid)).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NotAuth);
    }
    // Now even a good token from this prefix is refused, and says why.
    let failure = enroll(&request(server, &good, 1)).await.unwrap_err();
    let EnrollFailure::Refused(why) = &failure else {
        panic!("not refused for the budget: {failure}");
    };
    assert!(why.contains("too many failed enrollments"), "{why}");
    assert_eq!(
        directory.tokens().unwrap()[0].1.used,
        0,
        "the good token was not used"
    );
}

#[tokio::test]
async fn a_replayed_enrollment_is_refused_and_changes_nothing() {
    let served = served().await;
    let (server, directory) = (served.addrs[0], served.directory.clone());
    let good = token(&directory, "acme", 5, 3600).await;
    let mid: Mid = "0200000000aa".parse().unwrap();
    let bytes = signed_request(&good.tsig_key(&zone()), &mid);
    let first = ask(server, &bytes).await;
    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    let terminal = |d: &Directory| {
        let code = d.view().len();
        let entries: Vec<_> = d.tokens().unwrap();
        (code, entries[0].1.used)
    };
    let after_first = terminal(&directory);
    let replay = ask(server, &bytes).await;
    assert_eq!(replay.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(
        replay.signature().and_then(|t| t.data.error),
        Some(TsigError::BadTime),
        "a replay is answered as one (RFC 8945 §5.2.3)"
    );
    assert_eq!(
        terminal(&directory),
        after_first,
        "the replay used no token and made no key"
    );
}

#[tokio::test]
async fn an_enrolled_key_updates_at_once_and_a_suspended_customer_is_refused() {
    let served = served().await;
    let (server, directory) = (served.addrs[0], served.directory.clone());
    let good = token(&directory, "acme", 5, 3600).await;
    let enrolled = enroll(&request(server, &good, 1)).await.unwrap();
    let client = updater::client::DirectoryClient {
        servers: vec![server],
        zone: zone(),
        code: enrolled.code.clone(),
        key: enrolled.key.clone(),
        timeout: Duration::from_secs(3),
        channel: Channel::Plain,
    };
    let mut set = updater::discover::AddressSet::default();
    set.v4.push("192.0.2.44".parse().unwrap());
    client.publish(&set, 60, None).await.unwrap();
    let published = directory
        .view()
        .terminal(&enrolled.code)
        .map(|h| h.addresses.v4.addrs.to_vec());
    assert_eq!(published, Some(vec!["192.0.2.44".parse().unwrap()]));

    let suspend = CustomerChange {
        suspended: Some(true),
        ..CustomerChange::default()
    };
    directory
        .change_customer(&"acme".parse().unwrap(), suspend, zones::unix_now())
        .await
        .unwrap();
    let refused = client.publish(&set, 60, None).await;
    assert!(
        refused.is_err(),
        "a suspended customer's key updated: {refused:?}"
    );
    let failure = enroll(&request(server, &good, 2)).await.unwrap_err();
    let EnrollFailure::Refused(why) = &failure else {
        panic!("not refused as suspended: {failure}");
    };
    assert!(why.contains("acme is suspended"), "{why}");
}

/// `updater enroll --tls-pin`: the whole exchange over DNS over TLS to the pinned key.
#[tokio::test]
async fn enrollment_goes_over_tls_to_the_pinned_certificate() {
    let listen = ["127.0.0.1:0".parse().unwrap()];
    let served = Served::start(&listen, tempfile::tempdir().unwrap(), |settings| {
        settings.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    })
    .await;
    let good = token(&served.directory, "acme", 5, 3600).await;
    let mut over_tls = request(served.tls_addrs[0], &good, 1);
    over_tls.channel = Channel::tls(served.tls_pin.expect("a pin"));
    let enrolled = enroll(&over_tls).await.unwrap();
    assert!(served.directory.terminal(&enrolled.code).unwrap().is_some());
    // Another pin: no handshake, no enrollment.
    let mut wrong = request(served.tls_addrs[0], &good, 2);
    wrong.channel = Channel::tls(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            .parse()
            .unwrap(),
    );
    assert!(enroll(&wrong).await.is_err());
    assert_eq!(served.directory.tokens().unwrap()[0].1.used, 1);
}
