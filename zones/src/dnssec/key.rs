//! The zone's keys, ECDSA P-256/SHA-256 (algorithm 13), kept in the store with the other
//! secrets. `Debug` never shows a private half.
//!
//! The first is a combined signing key (CSK, flags 257), generated at the first start with
//! DNSSEC on. A rollover ([`crate::directory::Directory::start_rollover`]) brings in a
//! zone-signing key (ZSK, flags 256) by pre-publication; the CSK then signs only the DNSKEY
//! RRset (it becomes the KSK, so the DS at the parent never changes), and later rollovers
//! replace the ZSK.

use std::fmt;

use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, SigningKey};
use hickory_proto::rr::Name;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};

/// DNSKEY flags of a key-signing (or combined) key: zone key (bit 7) and secure entry point
/// (bit 15).
const SEP_FLAGS: u16 = 257;
/// DNSKEY flags of a zone-signing key: zone key only.
const ZSK_FLAGS: u16 = 256;

/// Why a key could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a DNSSEC key: {0}")]
    Generate(String),
    #[error("the stored DNSSEC key is unusable: {0}")]
    Unusable(String),
}

/// What a key signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRole {
    /// Everything (combined signing key).
    Csk,
    /// The DNSKEY RRset (key-signing key).
    Ksk,
    /// Everything but the DNSKEY RRset (zone-signing key).
    Zsk,
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Csk => "CSK",
            Self::Ksk => "KSK",
            Self::Zsk => "ZSK",
        })
    }
}

/// Where a key is in its life (RFC 6781 §4.1.1.1, pre-publication).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// In the DNSKEY RRset, not signing yet: resolvers are learning it.
    Published,
    /// In the DNSKEY RRset and signing.
    Active,
    /// In the DNSKEY RRset, no longer signing: signatures by it may still be cached.
    Retired,
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Published => "published",
            Self::Active => "active",
            Self::Retired => "retired",
        })
    }
}

/// A zone key as stored: the private key in PKCS#8 DER, when it was made, what it signs,
/// its state and since when.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneKey {
    pkcs8: Vec<u8>,
    /// Unix seconds.
    pub created: u64,
    pub role: KeyRole,
    pub state: KeyState,
    /// Unix seconds when it entered its state.
    pub since: u64,
}

impl fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneKey")
            .field("private", &"<secret>")
            .field("created", &self.created)
            .field("role", &self.role)
            .field("state", &self.state)
            .field("since", &self.since)
            .finish()
    }
}

impl ZoneKey {
    /// A fresh combined signing key, active, from the operating system's random source.
    pub fn generate(now: u64) -> Result<Self, KeyError> {
        Self::fresh(now, KeyRole::Csk, KeyState::Active)
    }

    /// A fresh zone-signing key, published but not signing yet (a rollover's first step).
    pub fn generate_zsk(now: u64) -> Result<Self, KeyError> {
        Self::fresh(now, KeyRole::Zsk, KeyState::Published)
    }

    fn fresh(now: u64, role: KeyRole, state: KeyState) -> Result<Self, KeyError> {
        let der = EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let key = Self {
            pkcs8: der.secret_pkcs8_der().to_vec(),
            created: now,
            role,
            state,
            since: now,
        };
        key.signing_key()?;
        Ok(key)
    }

    /// A key from its PKCS#8 DER private key and its life (a backup's), checked.
    pub fn from_pkcs8(
        pkcs8: Vec<u8>,
        created: u64,
        role: KeyRole,
        state: KeyState,
        since: u64,
    ) -> Result<Self, KeyError> {
        let key = Self {
            pkcs8,
            created,
            role,
            state,
            since,
        };
        key.signing_key()?;
        Ok(key)
    }

    /// True if it signs the zone's RRsets now.
    pub fn signs_zone(&self) -> bool {
        self.state == KeyState::Active && matches!(self.role, KeyRole::Csk | KeyRole::Zsk)
    }

    /// True if it signs the DNSKEY RRset now.
    pub fn signs_keys(&self) -> bool {
        self.state == KeyState::Active && matches!(self.role, KeyRole::Csk | KeyRole::Ksk)
    }

    /// The private key in PKCS#8 DER (for a backup, which is kept owner-only).
    pub fn private_pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key pair, for signing.
    pub fn signing_key(&self) -> Result<EcdsaSigningKey, KeyError> {
        let der = PrivatePkcs8KeyDer::from(self.pkcs8.as_slice());
        EcdsaSigningKey::from_pkcs8(&der, Algorithm::ECDSAP256SHA256)
            .map_err(|e| KeyError::Unusable(e.to_string()))
    }

    /// The public half as the zone publishes it.
    pub fn dnskey(&self) -> Result<DNSKEY, KeyError> {
        let public = self
            .signing_key()?
            .to_public_key()
            .map_err(|e| KeyError::Unusable(e.to_string()))?;
        let flags = match self.role {
            KeyRole::Csk | KeyRole::Ksk => SEP_FLAGS,
            KeyRole::Zsk => ZSK_FLAGS,
        };
        Ok(DNSKEY::with_flags(flags, public))
    }

    /// The key tag (RFC 4034 Appendix B) that signatures name.
    pub fn key_tag(&self) -> Result<u16, KeyError> {
        self.dnskey()?
            .calculate_key_tag()
            .map_err(|e| KeyError::Unusable(e.to_string()))
    }

    /// The DS record for the parent zone, with a SHA-256 digest (RFC 4509).
    pub fn ds(&self, origin: &Name) -> Result<DS, KeyError> {
        let dnskey = self.dnskey()?;
        let digest = dnskey
            .to_digest(origin, DigestType::SHA256)
            .map_err(|e| KeyError::Unusable(e.to_string()))?;
        Ok(DS::new(
            self.key_tag()?,
            Algorithm::ECDSAP256SHA256,
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::dnssec::Verifier;

    use super::*;

    #[test]
    fn a_generated_key_is_a_p256_csk_whose_debug_hides_the_private_half() {
        let key = ZoneKey::generate(1).unwrap();
        let dnskey = key.dnskey().unwrap();
        assert_eq!(dnskey.flags(), 257);
        assert!(dnskey.zone_key() && dnskey.secure_entry_point());
        assert_eq!(dnskey.algorithm(), Algorithm::ECDSAP256SHA256);
        let shown = format!("{key:?}");
        assert!(shown.contains("<secret>"));
        assert!(!shown.contains(&format!("{:?}", key.pkcs8)));
        let ds = key.ds(&Name::from_ascii("dial.example.").unwrap()).unwrap();
        assert_eq!(ds.key_tag(), key.key_tag().unwrap());
        assert_eq!(ds.digest().len(), 32);
    }
}
