//! TLS: the trust stores a chain is judged against (`roots`), the verdict on a presented
//! chain (`chain`, pure), and the side handshake that learns the chain a tunnelled host
//! presents (`probe`), the key log every TLS config writes to when asked (`keylog`), and the
//! ClientHello's SNI and ALPN read from a tunnel's first bytes (`sniff`, pure).

pub mod ca;
pub mod chain;
pub mod keylog;
pub mod look;
pub mod mint;
pub mod probe;
pub mod roots;
pub mod sniff;

use std::sync::{Arc, Once};

/// The one crypto provider diagproxy uses (ring), installed once for the process.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    Arc::new(rustls::crypto::ring::default_provider())
}
