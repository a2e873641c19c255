//! Whether a client refuses diagproxy's certificate for a host:port — concluded only from
//! what proves it: a certificate alert the client sends during the handshake, or
//! [`QUIET_CLOSES`] quick request-less closes in a row on a host:port where no request was
//! ever served. A browser's spare (preconnect) connections that close unused, or one curl
//! without `--cacert`, no longer switch interception off for everyone else; a refusal
//! switches that host:port (not the host on every port) to a plain tunnel.

use std::sync::Mutex;

use rustls::AlertDescription;

use crate::lru::LruMap;

/// Quick closes without a request, in a row, that count as a refusal.
pub const QUIET_CLOSES: u32 = 3;
/// How many host:port pairs are remembered (the least recently used is forgotten).
const REMEMBERED: usize = 2000;

type Key = (String, u16);

/// What the session has seen of clients' trust, per host:port.
#[derive(Debug)]
pub struct ClientTrust {
    /// Quick request-less closes in a row, and whether a request was ever served.
    seen: Mutex<LruMap<Key, (u32, bool)>>,
    /// Host:port pairs tunnelled untouched since a client refused the certificate.
    passthrough: Mutex<LruMap<Key, ()>>,
}

impl Default for ClientTrust {
    fn default() -> Self {
        ClientTrust {
            seen: Mutex::new(LruMap::new(REMEMBERED)),
            passthrough: Mutex::new(LruMap::new(REMEMBERED)),
        }
    }
}

fn key(host: &str, port: u16) -> Key {
    (host.to_ascii_lowercase(), port)
}

impl ClientTrust {
    /// A request was served on an intercepted connection to `host:port`: its clients trust
    /// the certificate, and request-less closes there are spare connections.
    pub fn served(&self, host: &str, port: u16) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(key(host, port), (0, true));
        }
    }

    /// A connection closed quickly without a request; true when that makes a refusal.
    pub fn quiet_close(&self, host: &str, port: u16) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        let k = key(host, port);
        let (quiet, served) = seen.get(&k).unwrap_or((0, false));
        if served {
            return false;
        }
        seen.insert(k, (quiet + 1, false));
        quiet + 1 >= QUIET_CLOSES
    }

    /// From now on `host:port` is tunnelled untouched.
    pub fn pass_through(&self, host: &str, port: u16) {
        if let Ok(mut p) = self.passthrough.lock() {
            p.insert(key(host, port), ());
        }
    }

    /// The host:port pairs tunnelled untouched now, sorted.
    pub fn passthrough_list(&self) -> Vec<(String, u16)> {
        let mut list: Vec<Key> = self
            .passthrough
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        list.sort();
        list
    }

    /// Intercepts `host:port` again (the user installed the CA, or wants to retry); its
    /// count of quiet closes starts over. True when it was passed through.
    pub fn reenable(&self, host: &str, port: u16) -> bool {
        let k = key(host, port);
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&k);
        }
        self.passthrough.lock().is_ok_and(|mut p| p.remove(&k))
    }

    /// Whether `host:port` is tunnelled untouched because a client refused the certificate.
    pub fn passes_through(&self, host: &str, port: u16) -> bool {
        self.passthrough
            .lock()
            .is_ok_and(|mut p| p.get(&key(host, port)).is_some())
    }
}

/// Whether a TLS alert from the client says it does not trust the certificate.
pub fn refuses_certificate(alert: &AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_connections_are_not_a_refusal_but_repeated_quiet_closes_are() {
        let trust = ClientTrust::default();
        assert!(!trust.quiet_close("chatgpt.com", 443));
        assert!(!trust.quiet_close("chatgpt.com", 443));
        assert!(trust.quiet_close("ChatGPT.com", 443), "the third in a row");
        // Where a request was served, closes are spare connections.
        trust.served("cdn.oaistatic.com", 443);
        for _ in 0..10 {
            assert!(!trust.quiet_close("cdn.oaistatic.com", 443));
        }
    }

    #[test]
    fn passthrough_is_per_host_and_port() {
        let trust = ClientTrust::default();
        trust.pass_through("chatgpt.com", 443);
        assert!(trust.passes_through("chatgpt.com", 443));
        assert!(!trust.passes_through("chatgpt.com", 8443));
    }

    #[test]
    fn only_certificate_alerts_are_refusals() {
        assert!(refuses_certificate(&AlertDescription::UnknownCA));
        assert!(refuses_certificate(&AlertDescription::BadCertificate));
        assert!(!refuses_certificate(&AlertDescription::CloseNotify));
        assert!(!refuses_certificate(&AlertDescription::ProtocolVersion));
    }
}
