//! The common lookups allocate nothing: A and AAAA of a registered code (addresses or
//! NODATA) and NXDOMAIN, with and without EDNS, with and without a DNS cookie, counted by
//! dhat's heap profiler (in testing mode) as the process's global allocator.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use nameserver::control::{self, ControlRequest, ImportEntry};
use nameserver::fast::Fast;
use nameserver::pipeline::{Pipeline, Policy};
use nameserver::testing::InProcess;
use zones::key::Algorithm;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// The query bytes for `name` `rtype`, with an OPT and a COOKIE option when asked.
fn query(id: u16, name: &str, rtype: RecordType, edns: bool, cookie: Option<Vec<u8>>) -> Vec<u8> {
    let mut q = Message::new(id, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        if let Some(data) = cookie {
            opt.options_mut()
                .insert(EdnsOption::Unknown(u16::from(EdnsCode::Cookie), data));
        }
        q.set_edns(opt);
    }
    q.to_vec().unwrap()
}

#[test]
fn the_fast_path_allocates_nothing() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let InProcess {
        directory,
        data: _data,
        ..
    } = InProcess::open(Policy::default());
    let entries = vec![
        ImportEntry {
            code: "5550001".parse().unwrap(),
            kid: "fleet".parse().unwrap(),
            mid: "0000000000000001".parse().unwrap(),
            addresses: vec!["198.51.100.1".parse().unwrap()],
        },
        ImportEntry {
            code: "5550002".parse().unwrap(),
            kid: "fleet".parse().unwrap(),
            mid: "0000000000000002".parse().unwrap(),
            addresses: vec![
                "198.51.100.2".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            ],
        },
    ];
    runtime
        .block_on(control::execute(
            ControlRequest::Import {
                entries,
                algorithm: Algorithm::HmacSha256,
            },
            &directory,
        ))
        .unwrap();
    let handler = Pipeline::new(directory, Policy::default());
    let src: std::net::IpAddr = "192.0.2.1".parse().unwrap();

    // Every common case, built before counting; a valid server cookie from a first answer.
    let mut out = Vec::with_capacity(4096);
    let first = query(
        1,
        "5550001.dial.example.",
        RecordType::A,
        true,
        Some(vec![9; 8]),
    );
    assert!(matches!(
        handler.answer_fast(&first, src, &mut out),
        Fast::Answered { .. }
    ));
    let answer = Message::from_vec(&out).unwrap();
    let server_cookie = match answer.edns.unwrap().option(EdnsCode::Cookie) {
        Some(EdnsOption::Unknown(_, data)) => data.clone(),
        other => panic!("no cookie in the answer: {other:?}"),
    };
    let mut requests = Vec::new();
    for name in [
        "5550001.dial.example.",
        "5550002.DIAL.example.",
        "5559999.dial.example.",
    ] {
        for rtype in [RecordType::A, RecordType::AAAA] {
            requests.push(query(2, name, rtype, false, None));
            requests.push(query(3, name, rtype, true, None));
            requests.push(query(4, name, rtype, true, Some(vec![5; 8])));
            requests.push(query(5, name, rtype, true, Some(server_cookie.clone())));
        }
    }

    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get();
    for request in &requests {
        for _ in 0..100 {
            let answered = handler.answer_fast(request, src, &mut out);
            assert!(matches!(answered, Fast::Answered { .. }), "{answered:?}");
        }
    }
    let after = dhat::HeapStats::get();
    assert_eq!(
        after.total_blocks - before.total_blocks,
        0,
        "{} allocations for {} answers",
        after.total_blocks - before.total_blocks,
        requests.len() * 100
    );
}
