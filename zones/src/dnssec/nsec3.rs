//! NSEC3 (RFC 5155) with the parameters RFC 9276 asks for: SHA-1, no extra iterations, no
//! salt, no opt-out. The chain is every name that holds records (or lies between the apex
//! and such a name), ordered by the hash of the name; each name's NSEC3 names the next hash
//! and the types its owner holds. The chain itself is kept in [`super::chain`].

use hickory_proto::dnssec::Nsec3HashAlgorithm;
use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC3, NSEC3PARAM};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// A SHA-1 hash of an owner name.
pub type Hash = [u8; 20];

/// RFC 9276 §3.1: no extra iterations.
const ITERATIONS: u16 = 0;

/// The hash of `name` (RFC 5155 §5).
pub fn hash(name: &Name) -> Hash {
    let digest = Nsec3HashAlgorithm::SHA1
        .hash(&[], name, ITERATIONS)
        .expect("a name hashes with SHA-1");
    let mut out = [0; 20];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Sorts `entries` by hash. A million at a start: compared by their first 8 bytes as one
/// integer, and by the whole hash only when those are equal (a 20-byte `memcmp` per
/// comparison takes three times as long).
pub fn sort_by_hash<T>(entries: &mut [(Hash, T)]) {
    let prefix = |hash: &Hash| u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
    entries.sort_unstable_by(|(a, _), (b, _)| prefix(a).cmp(&prefix(b)).then_with(|| a.cmp(b)));
}

/// The owner name of the NSEC3 record for `hash`: its base32hex form under the apex.
pub fn owner(hash: &Hash, origin: &Name) -> Name {
    let label = data_encoding::BASE32HEX_NOPAD
        .encode(hash)
        .to_ascii_lowercase();
    Name::from_ascii(&label)
        .and_then(|l| l.append_domain(origin))
        .expect("a hash label under the zone is a valid name")
}

/// The NSEC3 record at `hash`, pointing to `next`, for an owner with `types`.
pub fn record(hash: &Hash, next: &Hash, types: &[RecordType], ttl: u32, origin: &Name) -> Record {
    let data = NSEC3::new(
        Nsec3HashAlgorithm::SHA1,
        false,
        ITERATIONS,
        Vec::new(),
        next.to_vec(),
        types.iter().copied(),
    );
    Record::from_rdata(
        owner(hash, origin),
        ttl,
        RData::DNSSEC(DNSSECRData::NSEC3(data)),
    )
}

/// The TTL of the NSEC3PARAM record (RFC 5155 §4 leaves it open; BIND and Knot use 0).
const PARAM_TTL: u32 = 0;

/// The apex's NSEC3PARAM record.
pub fn param_record(origin: &Name) -> Record {
    let data = NSEC3PARAM::new(Nsec3HashAlgorithm::SHA1, false, ITERATIONS, Vec::new());
    Record::from_rdata(
        origin.clone(),
        PARAM_TTL,
        RData::DNSSEC(DNSSECRData::NSEC3PARAM(data)),
    )
}

/// The types a terminal's NSEC3 lists: its address families, and RRSIG.
pub fn terminal_types(v4: bool, v6: bool) -> Vec<RecordType> {
    let mut types = Vec::with_capacity(3);
    if v4 {
        types.push(RecordType::A);
    }
    if v6 {
        types.push(RecordType::AAAA);
    }
    if !types.is_empty() {
        types.push(RecordType::RRSIG);
    }
    types
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_sort_as_their_bytes_do_when_their_first_eight_are_equal_too() {
        let hash = |first: u8, last: u8| {
            let mut h = [7u8; 20];
            h[0] = first;
            h[19] = last;
            h
        };
        let mut entries = vec![
            (hash(2, 0), 'a'),
            (hash(1, 9), 'b'),
            (hash(1, 3), 'c'),
            (hash(0xff, 0), 'd'),
            (hash(1, 5), 'e'),
        ];
        let mut expected = entries.clone();
        expected.sort();
        sort_by_hash(&mut entries);
        assert_eq!(entries, expected);
    }

    #[test]
    fn hashes_match_rfc_5155s_example_when_given_its_parameters() {
        // RFC 5155 Appendix A uses 12 iterations and salt aabbccdd: H(example) is
        // 0p9mhaveqvm6t7vbl5lop2u3t2rp3tom. Ours differ only in those two parameters.
        let name = Name::from_ascii("example.").unwrap();
        let digest = Nsec3HashAlgorithm::SHA1
            .hash(&[0xaa, 0xbb, 0xcc, 0xdd], &name, 12)
            .unwrap();
        let mut h = [0; 20];
        h.copy_from_slice(digest.as_ref());
        let origin = Name::root();
        assert_eq!(
            owner(&h, &origin).to_string(),
            "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom."
        );
        // With RFC 9276's parameters, the same name hashes differently, once.
        assert_ne!(hash(&name), h);
    }
}
