//! The SPKI pin of a TLS certificate (RFC 7858 §4.2): the SHA-256 of its
//! SubjectPublicKeyInfo, written in base64. The directory logs its own; a terminal that
//! reaches it over DNS over TLS trusts the certificate with that pin and no other.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// A certificate's public-key pin.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin([u8; 32]);

/// Why a pin or a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error(
        "TLS pin {0:?} is not valid: give the base64 SHA-256 of the certificate's public key (44 characters, as the directory logs it)"
    )]
    Text(String),
    #[error("cannot read the certificate's public key: {0}")]
    Certificate(String),
}

impl Pin {
    /// The pin of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Result<Self, PinError> {
        let (_, parsed) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| PinError::Certificate(e.to_string()))?;
        Ok(Self(
            Sha256::digest(parsed.tbs_certificate.subject_pki.raw).into(),
        ))
    }
}

impl std::str::FromStr for Pin {
    type Err = PinError;

    fn from_str(text: &str) -> Result<Self, PinError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| PinError::Text(text.to_owned()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| PinError::Text(text.to_owned()))?;
        Ok(Self(bytes))
    }
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pin({self})")
    }
}

impl<'de> serde::Deserialize<'de> for Pin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_reads_back_as_written_and_a_short_one_is_refused() {
        let text = "VotdS3YxGpx+Dx0vlULHHNO10Ptrl3VNY4/pw0DKAOs=";
        let pin: Pin = text.parse().unwrap();
        assert_eq!(pin.to_string(), text);
        let short = "VotdS3YxGpx+Dx0v".parse::<Pin>().unwrap_err();
        assert!(short.to_string().contains("44 characters"), "{short}");
    }
}
