//! Signing RRsets: RRSIGs made with the zone key and kept compact.
//!
//! A stored signature ([`Sig`]) holds only what differs between signatures: the validity
//! window, the key tag and the 64 bytes of the ECDSA signature. The rest of the RRSIG (type
//! covered, algorithm, labels, original TTL, signer) follows from the RRset it covers, so
//! [`Signer::rrsig`] rebuilds the record when an answer needs it.
//!
//! Validity: signatures start an hour before they are made (clocks of validators run
//! behind) and end [`VALIDITY`] later.

use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::sig::SigInput;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, RRSIG};
use hickory_proto::dnssec::{Algorithm, SigningKey, TBS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use serde::{Deserialize, Serialize};

use super::key::{KeyError, ZoneKey};
use crate::identity::CallingCode;
use crate::model::Addresses;

/// How long a signature is valid after it is made.
pub const VALIDITY: u32 = 14 * 24 * 3600;
/// How far before its making a signature's validity starts.
pub const INCEPTION_SKEW: u32 = 3600;
/// Length of a P-256 signature (r and s, 32 bytes each).
const SIGNATURE_LEN: usize = 64;

/// One RRSIG, compact: what is not implied by the RRset it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sig {
    pub inception: u32,
    pub expiration: u32,
    pub key_tag: u16,
    #[serde(with = "serde_bytes_64")]
    pub signature: [u8; SIGNATURE_LEN],
}

/// Signs RRsets of one zone with its keys: the DNSKEY RRset with the key-signing key (or
/// the CSK), everything else with the zone-signing key (or the CSK).
pub struct Signer {
    key: EcdsaSigningKey,
    key_tag: u16,
    /// Signs the DNSKEY RRset.
    dnskey_signer: EcdsaSigningKey,
    dnskey_signer_tag: u16,
    /// Every key in the zone's DNSKEY RRset (published, active and retired).
    dnskeys: Vec<DNSKEY>,
    origin: Name,
    /// The origin in canonical wire form (uncompressed, lower case), for
    /// [`Signer::sign_addresses`].
    origin_wire: Vec<u8>,
    /// Signatures made by [`Signer::sign`] (per answer: whoami, compact denial, the SOA).
    made: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_tag", &self.key_tag)
            .field("dnskey_signer_tag", &self.dnskey_signer_tag)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Why an RRset could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign {name} {rtype}: {message}")]
pub struct SignError {
    name: String,
    rtype: RecordType,
    message: String,
}

impl Signer {
    /// The signer of `keys`: one must sign the zone and one the DNSKEY RRset (the same CSK,
    /// or a ZSK and a KSK).
    pub fn new(keys: &[ZoneKey], origin: &Name) -> Result<Self, KeyError> {
        let zone = keys
            .iter()
            .find(|k| k.signs_zone())
            .ok_or_else(|| KeyError::Unusable("no active key signs the zone".into()))?;
        let dnskey = keys
            .iter()
            .find(|k| k.signs_keys())
            .ok_or_else(|| KeyError::Unusable("no active key signs the DNSKEY RRset".into()))?;
        Ok(Self {
            key: zone.signing_key()?,
            key_tag: zone.key_tag()?,
            dnskey_signer: dnskey.signing_key()?,
            dnskey_signer_tag: dnskey.key_tag()?,
            dnskeys: keys.iter().map(ZoneKey::dnskey).collect::<Result<_, _>>()?,
            origin: origin.clone(),
            origin_wire: canonical_wire(origin)
                .map_err(|e| KeyError::Unusable(format!("the origin {origin}: {e}")))?,
            made: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many RRsets [`Signer::sign`] has signed.
    pub fn signatures_made(&self) -> u64 {
        self.made.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn key_tag(&self) -> u16 {
        self.key_tag
    }

    /// Which keys sign and are published: the zone-signing key's tag, the DNSKEY signer's,
    /// then every published key's. Signatures stored with another identity were made for
    /// another DNSKEY RRset or by another key.
    pub fn identity(&self) -> Vec<u16> {
        let published = self.dnskeys.iter().map(DNSKEY::calculate_key_tag);
        [Ok(self.key_tag), Ok(self.dnskey_signer_tag)]
            .into_iter()
            .chain(published)
            .map(|tag| tag.unwrap_or_default())
            .collect()
    }

    /// The zone's DNSKEY RRset.
    pub fn dnskey_records(&self, ttl: u32) -> Vec<Record> {
        self.dnskeys
            .iter()
            .map(|key| {
                let data = RData::DNSSEC(DNSSECRData::DNSKEY(key.clone()));
                Record::from_rdata(self.origin.clone(), ttl, data)
            })
            .collect()
    }

    /// Signs the RRset `records` (one owner, one type, one TTL; not empty) at `now`.
    pub fn sign(&self, records: &[Record], now: u64) -> Result<Sig, SignError> {
        let first = records.first().expect("an RRset to sign is not empty");
        self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (key, key_tag) = if first.record_type() == RecordType::DNSKEY {
            (&self.dnskey_signer, self.dnskey_signer_tag)
        } else {
            (&self.key, self.key_tag)
        };
        let now = now as u32;
        let mut sig = Sig {
            inception: now.wrapping_sub(INCEPTION_SKEW),
            expiration: now.wrapping_add(VALIDITY),
            key_tag,
            signature: [0; SIGNATURE_LEN],
        };
        let fail = |message: String| SignError {
            name: first.name.to_string(),
            rtype: first.record_type(),
            message,
        };
        let input = self.input(&first.name, first.record_type(), first.ttl, &sig);
        let tbs = TBS::from_input(&first.name, DNSClass::IN, &input, records.iter())
            .map_err(|e| fail(e.to_string()))?;
        let bytes = key.sign(&tbs).map_err(|e| fail(e.to_string()))?;
        if bytes.len() != SIGNATURE_LEN {
            return Err(fail(format!("a signature of {} bytes", bytes.len())));
        }
        sig.signature.copy_from_slice(&bytes);
        Ok(sig)
    }

    /// Signs the A or AAAA RRset (`rtype`) of a terminal `code` with `addresses` (that
    /// family not empty) at `now`: what [`Signer::sign`] makes of the same records, with the
    /// signed data (RFC 4034 §3.1.8.1) written straight from the addresses, as every address
    /// change needs it once.
    pub fn sign_addresses(
        &self,
        code: &CallingCode,
        addresses: &Addresses,
        rtype: RecordType,
        now: u64,
    ) -> Result<Sig, SignError> {
        let fail = |message: String| SignError {
            name: format!("{}.{}", code.as_str(), self.origin),
            rtype,
            message,
        };
        // The family's addresses, the length of one, and the RRset's TTL.
        let (mut rdata, len, ttl): (smallvec::SmallVec<[[u8; 16]; 2]>, usize, u32) = match rtype {
            RecordType::A => {
                let octets = addresses
                    .v4
                    .addrs
                    .iter()
                    .map(|a| address_bytes(&a.octets()));
                (octets.collect(), 4, addresses.v4.ttl)
            }
            RecordType::AAAA => {
                let octets = addresses
                    .v6
                    .addrs
                    .iter()
                    .map(|a| address_bytes(&a.octets()));
                (octets.collect(), 16, addresses.v6.ttl)
            }
            _ => return Err(fail("not an address type".into())),
        };
        if rdata.is_empty() {
            return Err(fail("no address to sign".into()));
        }
        // Canonical order: by RDATA, as unsigned bytes (RFC 4034 §6.3).
        rdata.sort_unstable();
        let now = now as u32;
        let mut sig = Sig {
            inception: now.wrapping_sub(INCEPTION_SKEW),
            expiration: now.wrapping_add(VALIDITY),
            key_tag: self.key_tag,
            signature: [0; SIGNATURE_LEN],
        };
        let tbs = self.address_signed_data(code, rtype, ttl, &sig, &rdata, len);
        let bytes = self
            .key
            .sign(&TBS::from(tbs.as_slice()))
            .map_err(|e| fail(e.to_string()))?;
        if bytes.len() != SIGNATURE_LEN {
            return Err(fail(format!("a signature of {} bytes", bytes.len())));
        }
        sig.signature.copy_from_slice(&bytes);
        Ok(sig)
    }

    /// The signed data of a terminal's address RRset (RFC 4034 §3.1.8.1): the RRSIG RDATA
    /// without its signature, then each record in canonical form, `rdata` (each address's
    /// `len` octets) in canonical order.
    fn address_signed_data(
        &self,
        code: &CallingCode,
        rtype: RecordType,
        ttl: u32,
        sig: &Sig,
        rdata: &[[u8; 16]],
        len: usize,
    ) -> Vec<u8> {
        let label = code.as_str().as_bytes();
        let mut tbs = Vec::with_capacity(64 + rdata.len() * (32 + self.origin_wire.len()));
        tbs.extend_from_slice(&u16::from(rtype).to_be_bytes());
        tbs.push(u8::from(Algorithm::ECDSAP256SHA256));
        // The owner's labels: the code's under the origin's (a name has at most 127).
        tbs.push(self.origin.num_labels().saturating_add(1));
        tbs.extend_from_slice(&ttl.to_be_bytes());
        tbs.extend_from_slice(&sig.expiration.to_be_bytes());
        tbs.extend_from_slice(&sig.inception.to_be_bytes());
        tbs.extend_from_slice(&sig.key_tag.to_be_bytes());
        tbs.extend_from_slice(&self.origin_wire);
        for data in rdata {
            // A calling code is digits: its label is its own lower case.
            tbs.push(label.len() as u8);
            tbs.extend_from_slice(label);
            tbs.extend_from_slice(&self.origin_wire);
            tbs.extend_from_slice(&u16::from(rtype).to_be_bytes());
            tbs.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
            tbs.extend_from_slice(&ttl.to_be_bytes());
            tbs.extend_from_slice(&(len as u16).to_be_bytes());
            tbs.extend_from_slice(&data[..len]);
        }
        tbs
    }

    /// The RRSIG record of `sig` over the RRset `owner`/`rtype` with TTL `ttl`.
    pub fn rrsig(&self, owner: &Name, rtype: RecordType, ttl: u32, sig: &Sig) -> Record {
        let input = self.input(owner, rtype, ttl, sig);
        let rrsig = RRSIG::from_sig(input, sig.signature.to_vec());
        Record::from_rdata(owner.clone(), ttl, RData::DNSSEC(DNSSECRData::RRSIG(rrsig)))
    }

    fn input(&self, owner: &Name, rtype: RecordType, ttl: u32, sig: &Sig) -> SigInput {
        SigInput {
            type_covered: rtype,
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: owner.num_labels(),
            original_ttl: ttl,
            sig_expiration: SerialNumber::new(sig.expiration),
            sig_inception: SerialNumber::new(sig.inception),
            key_tag: sig.key_tag,
            signer_name: self.origin.clone(),
        }
    }
}

/// `name` as signed data holds it: uncompressed, in lower case (RFC 4034 §6.2).
fn canonical_wire(name: &Name) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let mut wire = Vec::new();
    let mut encoder = BinEncoder::new(&mut wire);
    let mut lower = encoder.with_name_encoding(NameEncoding::UncompressedLowercase);
    name.emit(&mut lower)?;
    drop(lower);
    Ok(wire)
}

/// An address's octets, left-aligned in 16 bytes (sorting these sorts the RDATA).
fn address_bytes(octets: &[u8]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..octets.len()].copy_from_slice(octets);
    out
}

/// serde for the fixed 64-byte signature (serde derives arrays only up to 32): written as
/// bytes, one length and 64 bytes (in postcard, the same encoding as a sequence of 64
/// bytes), and read as one slice rather than byte by byte.
mod serde_bytes_64 {
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        d.deserialize_bytes(Signature)
    }

    struct Signature;

    impl<'de> Visitor<'de> for Signature {
        type Value = [u8; 64];

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a signature of 64 bytes")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<[u8; 64], E> {
            bytes
                .try_into()
                .map_err(|_| E::custom("a signature is 64 bytes"))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 64], A::Error> {
            let mut out = [0; 64];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(i, &self))?;
            }
            if seq.next_element::<u8>()?.is_some() {
                return Err(de::Error::custom("a signature is 64 bytes"));
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::dnssec::Verifier;
    use hickory_proto::rr::rdata::A;

    use super::*;

    /// The stored form is unchanged by reading the signature as one slice: what a byte
    /// sequence wrote is read, and written again byte for byte (postcard), and JSON's array
    /// of numbers reads too.
    #[test]
    fn a_stored_signature_reads_as_written_by_a_byte_sequence() {
        #[derive(serde::Serialize)]
        struct AsSequence {
            inception: u32,
            expiration: u32,
            key_tag: u16,
            signature: Vec<u8>,
        }
        let stored = AsSequence {
            inception: 1_800_000_000,
            expiration: 1_801_209_600,
            key_tag: 40983,
            signature: (0..64).collect(),
        };
        let bytes = postcard::to_stdvec(&stored).unwrap();
        let sig: Sig = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(sig.signature.to_vec(), stored.signature);
        assert_eq!(postcard::to_stdvec(&sig).unwrap(), bytes);
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(serde_json::from_str::<Sig>(&json).unwrap(), sig);
        let short = AsSequence {
            signature: vec![1; 63],
            ..stored
        };
        assert!(postcard::from_bytes::<Sig>(&postcard::to_stdvec(&short).unwrap()).is_err());
    }

    /// The signed data written straight from the addresses is the data hickory builds from
    /// the records: the signature verifies over the records, with addresses given out of
    /// canonical order, one or two of a family, and an origin in mixed case.
    #[test]
    fn an_address_rrset_signed_from_the_addresses_verifies_over_its_records() {
        use std::net::Ipv6Addr;

        use crate::model::Addresses;

        let key = ZoneKey::generate(1_800_000_000).unwrap();
        let origin = Name::from_ascii("Dial.Example.").unwrap();
        let signer = Signer::new(std::slice::from_ref(&key), &origin).unwrap();
        let dnskey = key.dnskey().unwrap();
        let code: crate::identity::CallingCode = "4915112345678".parse().unwrap();
        let owner = Name::from_ascii("4915112345678.dial.example.").unwrap();
        let mut two = Addresses::default();
        two.v4.ttl = 60;
        two.v4.addrs.push(Ipv4Addr::new(198, 51, 100, 7));
        two.v4.addrs.push(Ipv4Addr::new(192, 0, 2, 200));
        two.v6.ttl = 300;
        two.v6
            .addrs
            .push("2001:db8::2".parse::<Ipv6Addr>().unwrap());
        two.v6
            .addrs
            .push("2001:db8::1".parse::<Ipv6Addr>().unwrap());
        let mut one = Addresses::default();
        one.v4.ttl = 30;
        one.v4.addrs.push(Ipv4Addr::new(203, 0, 113, 1));
        one.v6.ttl = 30;
        one.v6
            .addrs
            .push("2001:db8::9".parse::<Ipv6Addr>().unwrap());
        for addresses in [&two, &one] {
            for rtype in [RecordType::A, RecordType::AAAA] {
                let sig = signer
                    .sign_addresses(&code, addresses, rtype, 1_800_000_000)
                    .unwrap();
                let rrset = crate::update::address_records(&owner, addresses, rtype);
                let ttl = rrset[0].ttl;
                let record = signer.rrsig(&owner, rtype, ttl, &sig);
                let RData::DNSSEC(DNSSECRData::RRSIG(rrsig)) = &record.data else {
                    panic!("an RRSIG")
                };
                dnskey
                    .verify_rrsig(&owner, DNSClass::IN, rrsig, rrset.iter())
                    .unwrap_or_else(|e| panic!("{rtype} of {addresses:?}: {e}"));
                let mut other = rrset.clone();
                other.pop();
                if !other.is_empty() {
                    assert!(
                        dnskey
                            .verify_rrsig(&owner, DNSClass::IN, rrsig, other.iter())
                            .is_err()
                    );
                }
            }
        }
        let none = Addresses::default();
        assert!(
            signer
                .sign_addresses(&code, &none, RecordType::A, 1_800_000_000)
                .is_err()
        );
    }

    #[test]
    fn a_signature_rebuilt_from_its_compact_form_verifies_with_the_dnskey() {
        let key = ZoneKey::generate(1_800_000_000).unwrap();
        let origin = Name::from_ascii("dial.example.").unwrap();
        let signer = Signer::new(std::slice::from_ref(&key), &origin).unwrap();
        let owner = Name::from_ascii("4711.dial.example.").unwrap();
        let rrset: Vec<Record> = [1, 2]
            .map(|i| {
                Record::from_rdata(owner.clone(), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, i))))
            })
            .to_vec();
        let sig = signer.sign(&rrset, 1_800_000_000).unwrap();
        assert_eq!(sig.expiration - sig.inception, VALIDITY + INCEPTION_SKEW);
        let record = signer.rrsig(&owner, RecordType::A, 60, &sig);
        let RData::DNSSEC(DNSSECRData::RRSIG(rrsig)) = &record.data else {
            panic!("an RRSIG")
        };
        let dnskey = key.dnskey().unwrap();
        dnskey
            .verify_rrsig(&owner, DNSClass::IN, rrsig, rrset.iter())
            .unwrap();
        let mut altered = rrset.clone();
        altered[1].data = RData::A(A(Ipv4Addr::new(192, 0, 2, 9)));
        assert!(
            dnskey
                .verify_rrsig(&owner, DNSClass::IN, rrsig, altered.iter())
                .is_err()
        );
        let round = postcard::from_bytes::<Sig>(&postcard::to_stdvec(&sig).unwrap()).unwrap();
        assert_eq!(round, sig);
    }
}
