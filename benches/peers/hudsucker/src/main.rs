//! hudsucker 0.25's `noop` example, changed only so `diagproxy bench --proxy` can measure it:
//! - the CA is generated at start and written to a file (the bench trusts it, as it trusts
//!   diagproxy's), instead of the example's bundled key;
//! - the upstream trusts only the bench origin's root (the bench writes it with
//!   `--origin-root`);
//! - every name resolves to 127.0.0.1 (the bench's names are pinned to loopback; nothing
//!   leaves the machine).
//!
//! Usage: `hudsucker-peer PORT CA_OUT.pem ORIGIN_ROOT.pem`

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hudsucker::certificate_authority::RcgenAuthority;
use hudsucker::hyper_util::client::legacy::connect::dns::Name;
use hudsucker::hyper_util::client::legacy::connect::HttpConnector;
use hudsucker::rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use hudsucker::rustls::crypto::aws_lc_rs;
use hudsucker::rustls::{ClientConfig, RootCertStore};
use hudsucker::Proxy;

/// Answers 127.0.0.1 for every name.
#[derive(Clone)]
struct Loopback;

impl tower_service::Service<Name> for Loopback {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        Box::pin(async { Ok(vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))].into_iter()) })
    }
}

type Failed = Box<dyn std::error::Error>;

fn main() -> Result<(), Failed> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, ca_out, origin_root] = &args[..] else {
        return Err("usage: hudsucker-peer PORT CA_OUT.pem ORIGIN_ROOT.pem".into());
    };
    let port: u16 = port.parse()?;
    let issuer = new_ca(ca_out)?;
    let ca = RcgenAuthority::new(issuer, 1_000, aws_lc_rs::default_provider());
    let connector = https_to(origin_root)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let proxy = Proxy::builder()
                .with_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                .with_ca(ca)
                .with_http_connector(connector)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .build()?;
            proxy.start().await?;
            Ok(())
        })
}

/// A new CA, its certificate written to `out` (PEM).
fn new_ca(out: &str) -> Result<Issuer<'static, KeyPair>, Failed> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "hudsucker bench CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key)?;
    std::fs::write(out, cert.pem())?;
    Ok(Issuer::new(params, key))
}

/// HTTP and HTTPS upstream over loopback, trusting only the root in `root_pem`.
fn https_to(
    root_pem: &str,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector<Loopback>>, Failed> {
    let mut roots = RootCertStore::empty();
    let mut pem = std::io::BufReader::new(std::fs::File::open(root_pem)?);
    for cert in rustls_pemfile::certs(&mut pem) {
        roots.add(cert?)?;
    }
    let tls = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(Loopback);
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}
