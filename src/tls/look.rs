//! A TLS client that only looks: it accepts any chain (still checking the handshake's
//! signatures, so the chain is the peer's own) and leaves the verdict to `chain::judge`.
//! Used by the side handshake, interception's upstream and the TLS to an HTTPS proxy.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A client config that accepts any certificate (the chain is judged afterwards, not here),
/// offering h2 and HTTP/1.1, or HTTP/1.1 only. Built once per process, not per connection.
pub fn look_only_config(offer_h2: bool) -> Arc<rustls::ClientConfig> {
    static BOTH: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    static HTTP1: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if offer_h2 {
        BOTH.get_or_init(|| build_look_only(&[b"h2", b"http/1.1"]))
            .clone()
    } else {
        HTTP1
            .get_or_init(|| build_look_only(&[b"http/1.1"]))
            .clone()
    }
}

fn build_look_only(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = super::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(LookOnly(provider)))
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| {
            // The ring provider supports the default versions; this branch cannot be taken.
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if let Some(log) = super::keylog::sink() {
        config.key_log = log;
    }
    Arc::new(config)
}

/// Accepts every chain but still checks handshake signatures, so the chain is the peer's own.
#[derive(Debug)]
struct LookOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for LookOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
