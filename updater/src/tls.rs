//! DNS over TLS (RFC 7858) to the directory, trusting the one certificate whose SPKI pin the
//! operator gave (`--tls-pin`, as the directory logs it): no certificate authority is
//! involved, as with `kdig +tls-pin`. The handshake's signatures are still checked, so only
//! the holder of the pinned key can answer.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zones::pin::Pin;

/// How requests reach the directory.
#[derive(Clone, Debug, Default)]
pub enum Channel {
    /// UDP, and TCP when an answer is truncated.
    #[default]
    Plain,
    /// DNS over TLS to a certificate with this pin.
    Tls(Arc<Pinned>),
}

impl Channel {
    /// DNS over TLS to the certificate whose pin is `pin`.
    pub fn tls(pin: Pin) -> Self {
        Self::Tls(Arc::new(Pinned::new(pin)))
    }
}

/// A TLS client that trusts one public key.
pub struct Pinned {
    pin: Pin,
    connector: TlsConnector,
}

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pinned({})", self.pin)
    }
}

impl Pinned {
    fn new(pin: Pin) -> Self {
        // ring, as the rest of the tree uses (see the nameserver's `tls`).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedKey {
            pin,
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"dot".to_vec()];
        Self {
            pin,
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// A TLS connection to `server`, its certificate the pinned one.
    pub async fn connect(&self, server: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let stream = TcpStream::connect(server).await?;
        let _ = stream.set_nodelay(true);
        let name = ServerName::IpAddress(server.ip().into());
        self.connector.connect(name, stream).await
    }
}

/// Accepts the certificate whose public key has the pin, and no other.
#[derive(Debug)]
struct PinnedKey {
    pin: Pin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match Pin::of_certificate(end_entity) {
            Ok(pin) if pin == self.pin => Ok(ServerCertVerified::assertion()),
            Ok(pin) => Err(rustls::Error::General(format!(
                "the directory's certificate has pin {pin}, not the pinned {}",
                self.pin
            ))),
            Err(e) => Err(rustls::Error::General(e.to_string())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
