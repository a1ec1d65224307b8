//! DNS over TLS (RFC 7858) for `--tls-listen`: the certificate, the server's TLS settings,
//! and the SPKI pin clients check. Connections are then TCP's ([`crate::tcp`]: limits,
//! framing, timeouts) with a handshake first, and their requests go through the same
//! [`crate::pipeline`].
//!
//! The certificate is the PEM files `tls_cert` and `tls_key`, or else a self-signed ECDSA
//! P-256 one made at the first start and kept in `DATA/tls/` (the key owner-only), so that
//! its pin does not change across restarts. Either way the pin (base64 of the SHA-256 of the
//! certificate's SubjectPublicKeyInfo, RFC 7858 §4.2) is logged at start, as Knot does, for
//! `kdig +tls-pin=` and other pinning clients.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::admin::write_key_file;

/// Why DNS over TLS cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS certificate {path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot make a self-signed TLS certificate in {path}: {reason}")]
    Generate { path: PathBuf, reason: String },
    #[error("the TLS certificate and key do not go together: {0}")]
    Config(String),
    #[error("cannot read the TLS certificate's public key: {0}")]
    PublicKey(String),
    #[error(
        "give both tls_cert and tls_key (--tls-cert, --tls-key), or neither for a self-signed one"
    )]
    HalfGiven,
}

/// What the TLS listeners need: the acceptor, and the pin to tell clients.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// The certificate's SPKI pin.
    pub pin: zones::pin::Pin,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

/// The certificate from `cert` and `key` (PEM), or the self-signed one in `data`.
pub fn load(cert: Option<&Path>, key: Option<&Path>, data: &Path) -> Result<Tls, TlsError> {
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert.to_path_buf(), key.to_path_buf()),
        (None, None) => self_signed(&data.join("tls"))?,
        _ => return Err(TlsError::HalfGiven),
    };
    let read = |what, path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| read("certificate", &cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read("certificate", &cert, &e))?;
    let first = chain
        .first()
        .ok_or_else(|| TlsError::NoCertificate { path: cert.clone() })?;
    let pin =
        zones::pin::Pin::of_certificate(first).map_err(|e| TlsError::PublicKey(e.to_string()))?;
    let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| read("key", &key, &e))?;
    // ring, as the rest of the tree (hickory's DNSSEC and TSIG) uses: rustls marks it
    // deprecated for lacking post-quantum key exchange, whose provider (aws-lc-rs) would
    // add a C and CMake build. Classical ECDHE protects the lookups and updates here.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // RFC 7858 §3.2 and the ALPN registry: "dot".
    config.alpn_protocols = vec![b"dot".to_vec()];
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        pin,
    })
}

/// The self-signed certificate and key in `dir`, made on the first call.
fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let failed = |reason: String| TlsError::Generate {
        path: dir.to_path_buf(),
        reason,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed(e.to_string()))?;
    let pair = rcgen::KeyPair::generate().map_err(|e| failed(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .map_err(|e| failed(e.to_string()))?;
    let made = params
        .self_signed(&pair)
        .map_err(|e| failed(e.to_string()))?;
    // Owner-only and atomic, as key files are; the key first, so a certificate found at the
    // next start always has its key.
    write_key_file(&key, &pair.serialize_pem()).map_err(|e| failed(e.to_string()))?;
    write_key_file(&cert, &made.pem()).map_err(|e| failed(e.to_string()))?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_keeps_its_pin() {
        let data = tempfile::tempdir().unwrap();
        let first = load(None, None, data.path()).unwrap();
        let again = load(None, None, data.path()).unwrap();
        assert_eq!(first.pin, again.pin, "the same key across restarts");
        let mode = std::fs::metadata(data.path().join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key is owner-only");
    }

    #[test]
    fn half_a_certificate_is_refused_with_what_to_give() {
        let data = tempfile::tempdir().unwrap();
        let error = load(Some(Path::new("cert.pem")), None, data.path()).unwrap_err();
        assert!(error.to_string().contains("tls_key"), "{error}");
        let missing = load(
            Some(&data.path().join("none.pem")),
            Some(&data.path().join("none.key")),
            data.path(),
        )
        .unwrap_err();
        assert!(missing.to_string().contains("none.pem"), "{missing}");
    }
}
