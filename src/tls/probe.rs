//! The side handshake: for a tunnelled host:port, diagproxy opens its own connection along
//! the same path (through `--upstream-proxy` when set), sends a ClientHello with the same
//! SNI, and keeps the chain the network presents. It accepts any chain (it only looks), has
//! a bounded time, and never touches the user's tunnel.

use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};

pub use super::look::look_only_config;
use crate::config::Config;
use crate::upstream::dial;

/// How long a side handshake may take, connect included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The chain presented for `sni` at `host:port`, as seen along the proxy's own path.
pub async fn presented_chain(
    host: &str,
    port: u16,
    sni: &str,
    config: &Config,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let work = async {
        let upstream = dial::open_tunnel(host, port, config)
            .await
            .1
            .map_err(|f| f.to_string())?;
        let name = ServerName::try_from(sni.to_string())
            .map_err(|_| format!("{sni:?} is not a server name"))?;
        let connector = tokio_rustls::TlsConnector::from(look_only_config(true));
        let tls = connector
            .connect(name, upstream.io.into_io())
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
        Ok(chain.iter().map(|c| c.clone().into_owned()).collect())
    };
    tokio::time::timeout(PROBE_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no TLS answer from {host}:{port} in {PROBE_TIMEOUT:?}"
            ))
        })
}
