//! The two trust stores a chain is judged against: the public roots (Mozilla's, as bundled by
//! webpki-roots, or `--public-roots PEM`) and this machine's store (rustls-native-certs, or
//! `--system-roots PEM`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// Both stores, loaded once per run.
#[derive(Debug, Clone)]
pub struct TrustRoots {
    /// What a browser anywhere trusts: passing here means no one re-signed the chain.
    pub public: Arc<RootCertStore>,
    /// What this machine trusts: passing here but not above means a locally installed root.
    pub system: Arc<RootCertStore>,
}

impl TrustRoots {
    /// Loads the stores; a PEM path replaces the built-in or machine set.
    pub fn load(
        public_pem: Option<&Path>,
        system_pem: Option<&Path>,
    ) -> Result<TrustRoots, String> {
        let public = match public_pem {
            Some(path) => from_pem_file(path, "--public-roots")?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let system = match system_pem {
            Some(path) => from_pem_file(path, "--system-roots")?,
            None => native(),
        };
        Ok(TrustRoots {
            public: Arc::new(public),
            system: Arc::new(system),
        })
    }

    /// Public ∪ system: what a browser on this machine accepts.
    pub fn union(&self) -> Arc<RootCertStore> {
        let mut all = RootCertStore {
            roots: self.public.roots.clone(),
        };
        all.roots.extend(self.system.roots.iter().cloned());
        Arc::new(all)
    }
}

fn from_pem_file(path: &Path, flag: &str) -> Result<RootCertStore, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "{flag} {}: no usable CA certificate in the file",
            path.display()
        ));
    }
    Ok(store)
}

fn native() -> RootCertStore {
    let loaded = rustls_native_certs::load_native_certs();
    for e in &loaded.errors {
        tracing::debug!("machine trust store: {e}");
    }
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(loaded.certs);
    store
}
