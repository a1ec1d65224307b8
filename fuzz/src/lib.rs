//! Seeds and mutations for fuzzing DNS input, shared by the in-process fuzzer (`fuzz`
//! binary) and the flood test that sends the same kind of input over real sockets.
//!
//! Seeds are real messages: the files in `fuzz/corpus/` (captured from `dig` and
//! `nsupdate`) and messages built here for every path of the server (queries, EDNS options,
//! signed and unsigned updates, transfers, NOTIFY). Mutations are the classic ones for DNS:
//! bit flips, interesting bytes (0x00, 0xff, compression pointers), truncation, insertion,
//! header counts blown up, compression loops, splices of two seeds, and plain noise.
//!
//! # Limitations
//! Not coverage-guided (cargo-fuzz and libFuzzer need a nightly toolchain): the mutations
//! are random, from a seed given on the command line so any finding can be replayed.
#![forbid(unsafe_code)]

use std::path::Path;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use zones::key::TsigKey;

pub use nameserver::testing::Rng;

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("valid seed name")
}

fn query(qname: &str, rtype: RecordType, edns: Option<Edns>) -> Message {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name(qname), rtype));
    if let Some(e) = edns {
        m.set_edns(e);
    }
    m
}

fn edns_with(code: u16, data: Vec<u8>) -> Edns {
    let mut e = Edns::new();
    e.options_mut().insert(EdnsOption::Unknown(code, data));
    e
}

fn update(owner: &str, with_lease: bool) -> Message {
    let mut m = Message::new(0x4321, MessageType::Query, OpCode::Update);
    m.add_query(Query::query(name("dial.example."), RecordType::SOA));
    let mut delete = Record::update0(name(owner), 0, RecordType::A);
    delete.dns_class = DNSClass::ANY;
    let mut absent = Record::update0(name(owner), 0, RecordType::AAAA);
    absent.dns_class = DNSClass::NONE;
    m.answers = vec![absent];
    m.authorities = vec![
        delete,
        Record::from_rdata(name(owner), 60, RData::A(A::new(192, 0, 2, 1))),
        Record::from_rdata(
            name(owner),
            60,
            RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ),
    ];
    if with_lease {
        m.set_edns(edns_with(2, 3600u32.to_be_bytes().to_vec()));
    }
    m
}

fn ixfr(serial: u32) -> Message {
    let mut m = query("dial.example.", RecordType::IXFR, None);
    let soa = SOA::new(
        name("ns1.dial.example."),
        name("h.dial.example."),
        serial,
        1,
        1,
        1,
        1,
    );
    m.authorities.push(Record::from_rdata(
        name("dial.example."),
        0,
        RData::SOA(soa),
    ));
    m
}

/// An enrollment ([`zones::enroll`]): the UPDATE with its TXT record at `_enroll`.
fn enrollment(code: Option<&str>) -> Message {
    let request = zones::enroll::Request {
        mid: "0200000000aa".parse().expect("a MID"),
        code: code.map(|c| c.parse().expect("a code")),
        public: [9; 32],
    };
    let zone = name("dial.example.");
    let mut m = Message::new(0x4343, MessageType::Query, OpCode::Update);
    m.add_query(Query::query(zone.clone(), RecordType::SOA));
    let txt = hickory_proto::rr::rdata::TXT::new(request.to_strings());
    m.authorities = vec![Record::from_rdata(
        zones::enroll::owner(&zone),
        0,
        RData::TXT(txt),
    )];
    m.set_edns(Edns::new());
    m
}

fn signed(mut m: Message, key: &TsigKey, time: u64) -> Vec<u8> {
    let signer = key.signer(300).expect("a valid key");
    let (signature, _) = signer.sign_message(&m, time).expect("signing works");
    m.set_signature(signature);
    m.to_vec().expect("encodable")
}

/// Built seeds for every path; signed ones use `key` (the terminal of code 5551234), and
/// enrollments `token` (an enrollment token's key).
pub fn built_seeds(key: &TsigKey, token: &TsigKey, now: u64) -> Vec<Vec<u8>> {
    let own = "5551234.dial.example.";
    let mut plain = vec![
        query(own, RecordType::A, None),
        query(own, RecordType::AAAA, Some(Edns::new())),
        query(own, RecordType::ANY, None),
        query(
            "dial.example.",
            RecordType::SOA,
            Some(edns_with(10, vec![1, 2, 3, 4, 5, 6, 7, 8])),
        ),
        query("dial.example.", RecordType::NS, None),
        query("whoami.dial.example.", RecordType::TXT, None),
        query("www.example.org.", RecordType::A, None),
        query("dial.example.", RecordType::AXFR, None),
        ixfr(1),
        update(own, true),
        enrollment(None),
    ];
    let mut versioned = Edns::new();
    versioned.set_version(1);
    plain.push(query(own, RecordType::A, Some(versioned)));
    let mut notify = query("dial.example.", RecordType::SOA, None);
    notify.metadata.op_code = OpCode::Notify;
    plain.push(notify);
    let mut seeds: Vec<Vec<u8>> = plain.iter().filter_map(|m| m.to_vec().ok()).collect();
    seeds.push(signed(update(own, true), key, now));
    seeds.push(signed(update("5559999.dial.example.", false), key, now));
    seeds.push(signed(query(own, RecordType::A, None), key, now));
    seeds.push(signed(ixfr(1), key, now));
    seeds.push(signed(update(own, false), key, now - 3600));
    seeds.push(signed(enrollment(None), token, now));
    seeds.push(signed(enrollment(Some("5550042")), token, now));
    // A terminal's key where a token's belongs.
    seeds.push(signed(enrollment(None), key, now));
    seeds
}

/// The captured messages in `dir` (`*.bin`).
pub fn corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// The corpus shipped in this crate.
pub fn shipped_corpus() -> Vec<Vec<u8>> {
    corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"))
}

/// Produces mutated inputs from seeds.
#[derive(Debug, Clone)]
pub struct Mutator {
    seeds: Vec<Vec<u8>>,
    rng: Rng,
}

impl Mutator {
    pub fn new(seeds: Vec<Vec<u8>>, seed: u64) -> Self {
        assert!(!seeds.is_empty(), "the mutator needs seeds");
        Self {
            seeds,
            rng: Rng::new(seed),
        }
    }

    /// One input: a seed with one to four mutations, or (one time in ten) noise.
    pub fn next_input(&mut self) -> Vec<u8> {
        if self.rng.below(10) == 0 {
            let len = self.rng.below(600);
            return (0..len).map(|_| self.rng.byte()).collect();
        }
        let mut input = self.seeds[self.rng.below(self.seeds.len())].clone();
        for _ in 0..=self.rng.below(4) {
            self.mutate(&mut input);
        }
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        if input.is_empty() {
            input.push(self.rng.byte());
            return;
        }
        let at = self.rng.below(input.len());
        match self.rng.below(9) {
            0 => input[at] ^= 1 << self.rng.below(8),
            1 => input[at] = [0x00, 0xff, 0xc0, 0x3f, 0x40, 0x80][self.rng.below(6)],
            2 => input.truncate(at),
            3 => {
                let chunk: Vec<u8> = (0..=self.rng.below(32)).map(|_| self.rng.byte()).collect();
                input.splice(at..at, chunk);
            }
            4 => {
                // Header counts (QD, AN, NS, AR) blown up.
                if input.len() >= 12 {
                    let field = 4 + 2 * self.rng.below(4);
                    input[field] = self.rng.byte();
                    input[field + 1] = self.rng.byte();
                }
            }
            5 => {
                // A compression pointer to itself, or to just before it.
                if at + 1 < input.len() {
                    let target = (at - at.min(self.rng.below(3))) as u16;
                    input[at] = 0xc0 | (target >> 8) as u8;
                    input[at + 1] = target as u8;
                }
            }
            6 => {
                // Splice: the head of this input, the tail of another seed.
                let other = &self.seeds[self.rng.below(self.seeds.len())];
                let from = self.rng.below(other.len().max(1)).min(other.len());
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            7 => {
                let end = (at + 1 + self.rng.below(16)).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(at..at, copy);
            }
            _ => input[at] = self.rng.byte(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TsigKey {
        TsigKey::from_key_file(
            "key \"5551234.3f9a0c1d22e4b7a8.acme.key.dial.example.\" { algorithm hmac-sha256; secret \"3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=\"; };",
        )
        .unwrap()
    }

    #[test]
    fn seeds_are_valid_messages() {
        let seeds = built_seeds(&key(), &key(), 1_800_000_000);
        assert!(seeds.len() > 10);
        for s in &seeds {
            assert!(Message::from_vec(s).is_ok());
        }
        assert!(
            shipped_corpus().len() >= 5,
            "the captured dig and nsupdate messages"
        );
    }

    #[test]
    fn mutations_are_reproducible_and_varied() {
        let seeds = built_seeds(&key(), &key(), 1_800_000_000);
        let a: Vec<Vec<u8>> = {
            let mut m = Mutator::new(seeds.clone(), 7);
            (0..100).map(|_| m.next_input()).collect()
        };
        let b: Vec<Vec<u8>> = {
            let mut m = Mutator::new(seeds.clone(), 7);
            (0..100).map(|_| m.next_input()).collect()
        };
        assert_eq!(a, b, "same seed, same inputs");
        let distinct: std::collections::HashSet<&Vec<u8>> = a.iter().collect();
        assert!(distinct.len() > 90);
    }
}
