//! Leaves for intercepted hosts, signed by the local CA. One leaf key is made at start-up;
//! each host's server config is made once and cached, so only the first request to a new
//! host pays for a signature.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use super::ca::LocalCa;
use crate::lru::LruMap;

/// How many hosts' leaves are kept (a new host beyond it forgets the least recently used).
pub const CACHED: usize = 1000;

/// Mints and caches per-host server configs.
pub struct Minter {
    ca: LocalCa,
    /// The one leaf key of this run.
    leaf_key: KeyPair,
    /// host → server config with a leaf for it; the [`CACHED`] most recently used.
    cache: Mutex<LruMap<String, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Minter")
    }
}

impl Minter {
    pub fn new(ca: LocalCa) -> Result<Minter, String> {
        let leaf_key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
        Ok(Minter {
            ca,
            leaf_key,
            cache: Mutex::new(LruMap::new(CACHED)),
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The CA leaves are signed with.
    pub fn ca(&self) -> &LocalCa {
        &self.ca
    }

    /// The server config presenting a leaf for `host` (a DNS name or an IP address).
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, String> {
        let host = host.to_ascii_lowercase();
        if let Some(config) = self.cache.lock().ok().and_then(|mut c| c.get(&host)) {
            return Ok(config);
        }
        let leaf = self.mint(&host)?;
        let key =
            PrivateKeyDer::try_from(self.leaf_key.serialize_der()).map_err(|e| e.to_string())?;
        let mut config = ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![leaf, self.ca.cert_der.clone()], key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if let Some(log) = super::keylog::sink() {
            config.key_log = log;
        }
        let config = Arc::new(config);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(host, config.clone());
        }
        Ok(config)
    }

    fn mint(&self, host: &str) -> Result<CertificateDer<'static>, String> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.subject_alt_names = vec![match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(|e| format!("{host:?}: {e}"))?),
        }];
        params.distinguished_name.push(DnType::CommonName, host);
        params.distinguished_name.push(
            DnType::OrganizationName,
            "diagproxy (intercepted for diagnosis)",
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(30);
        let cert = params
            .signed_by(&self.leaf_key, &self.ca.issuer, &self.ca.key)
            .map_err(|e| e.to_string())?;
        Ok(cert.der().clone())
    }
}
