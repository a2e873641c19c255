//! What `diagproxy bench` measures against: loopback origins (plain HTTP and HTTPS, a small
//! answer and an endless body), a test root for the HTTPS origin, a local CA for
//! interception, and the proxy under test as a child process (so its memory is its own).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The small answer every request-rate test fetches.
pub const SMALL: &[u8] = b"{\"ok\":true,\"detail\":\"a small JSON answer, as an API gives\"}";

/// Names the HTTPS origin answers for (all pinned to 127.0.0.1 in the proxy).
pub const HOST: &str = "bench.chatgpt.com";
/// Fresh names for "first request to a new host" (each minted once).
pub const FRESH: usize = 8;

pub struct World {
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// PEM of the root that signs the HTTPS origin (clients trust it for direct runs).
    pub origin_root: String,
    /// PEM of diagproxy's CA (clients trust it through interception).
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
    /// The live page's token of the proxy the bench starts (the slow live page sends it).
    pub live_token: String,
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

impl World {
    /// `origin_root`: the file of `--origin-root` (the HTTPS origin's root, kept across
    /// runs so another proxy can be told to trust it), or `None` for a new root each run.
    pub async fn start(origin_root: Option<&Path>) -> Result<World, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let http = serve_http().await?;
        let root = match origin_root {
            Some(path) => OriginRoot::load_or_create(path)?,
            None => OriginRoot::generate()?,
        };
        let (https, root_pem) = serve_https(&root).await?;
        let ca_dir = dir.path().join("ca");
        let options = crate::tls::ca::InitOptions {
            dir: ca_dir.clone(),
            days: 2,
            unconstrained: false,
            force: true,
        };
        crate::tls::ca::init(&options, &crate::profile::Profile::builtin())?;
        let ca_pem = std::fs::read_to_string(ca_dir.join(crate::tls::ca::CERT_FILE))
            .map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("origin-root.pem"), &root_pem).map_err(|e| e.to_string())?;
        Ok(World {
            http,
            https,
            origin_root: root_pem,
            ca_pem,
            dir,
            live_token: crate::config::new_live_token().to_string(),
        })
    }

    /// Starts `diagproxy run` as a child on 127.0.0.1:0, recording to a temp session, and
    /// returns it with its address. `threads`: its runtime's worker count (one per core it
    /// will be pinned to), or tokio's default.
    pub fn spawn_proxy(&self, threads: Option<usize>) -> Result<(Child, SocketAddr), String> {
        self.spawn_routed(threads, "session", "direct")
    }

    /// [`World::spawn_proxy`] with its own session folder (`session`) and way out
    /// (`upstream`: an `--upstream-proxy` value).
    pub fn spawn_routed(
        &self,
        threads: Option<usize>,
        session: &str,
        upstream: &str,
    ) -> Result<(Child, SocketAddr), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let roots = self.dir.path().join("origin-root.pem");
        let mut cmd = Command::new(exe);
        cmd.args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "-q",
            "--intercept",
            "*.chatgpt.com",
            "--grace",
            "1s",
        ])
        .arg("--ca-dir")
        .arg(self.dir.path().join("ca"))
        .arg("--session-dir")
        .arg(self.dir.path().join(session))
        .args(["--upstream-proxy", upstream])
        .arg("--public-roots")
        .arg(&roots)
        .arg("--system-roots")
        .arg(&roots);
        for name in std::iter::once(HOST.to_string()).chain((0..FRESH).map(fresh_name)) {
            cmd.arg("--resolve")
                .arg(format!("{name}:{}:127.0.0.1", self.https.port()));
        }
        if let Some(threads) = threads {
            cmd.env("TOKIO_WORKER_THREADS", threads.to_string());
        }
        cmd.env("DIAGPROXY_LIVE_TOKEN", &self.live_token);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the proxy: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut reader = std::io::BufReader::new(stderr);
        let mut banner = String::new();
        std::io::BufRead::read_line(&mut reader, &mut banner).map_err(|e| e.to_string())?;
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = banner
            .split("listening on http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("unexpected banner from the proxy: {banner:?}"))?;
        Ok((child, addr))
    }
}

/// Two corporate proxies on loopback for the route rows: a CONNECT-only HTTP proxy and a
/// SOCKS5 server (no authentication), each relaying to any loopback target. Minimal on
/// purpose: they are the bench's peers, not code under test.
pub async fn route_peers() -> Result<(SocketAddr, SocketAddr), String> {
    let http = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let socks = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addrs = (
        http.local_addr().map_err(|e| e.to_string())?,
        socks.local_addr().map_err(|e| e.to_string())?,
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = http.accept().await {
            tokio::spawn(peer_connect(stream));
        }
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = socks.accept().await {
            tokio::spawn(peer_socks5(stream));
        }
    });
    Ok(addrs)
}

/// `CONNECT a.b.c.d:port` answered `200`, then bytes both ways.
async fn peer_connect(mut client: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let target = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut upstream = tokio::net::TcpStream::connect(target).await?;
    client.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// SOCKS5 without authentication: CONNECT to an IPv4 address or a name, then bytes both
/// ways (RFC 1928, the fixed-size replies only).
async fn peer_socks5(mut client: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut greeting = [0u8; 2];
    client.read_exact(&mut greeting).await?;
    let mut methods = vec![0u8; usize::from(greeting[1])];
    client.read_exact(&mut methods).await?;
    client.write_all(&[5, 0]).await?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => return Ok(()),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    let mut upstream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

pub fn fresh_name(i: usize) -> String {
    format!("new{i}.chatgpt.com")
}

async fn serve_http() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The root that signs the HTTPS origin's certificate: made for the run, or read from (or
/// written to) `--origin-root`.
pub struct OriginRoot {
    /// The root as an issuer (rcgen signs with a certificate object; its DN and key matter).
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    /// The PEM clients trust: the file's own certificate when it came from one.
    pem: String,
}

const CERT_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const CERT_END: &str = "-----END CERTIFICATE-----";

impl OriginRoot {
    fn generate() -> Result<OriginRoot, String> {
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "diagproxy bench public root");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let pem = cert.pem();
        Ok(OriginRoot { cert, key, pem })
    }

    /// Reads `path` (the root's certificate and key, PEM), or creates it (`0600`) when it
    /// does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<OriginRoot, String> {
        let cannot = |e: &dyn std::fmt::Display| format!("--origin-root {}: {e}", path.display());
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let root = OriginRoot::generate()?;
                let mut file = crate::files::create_private(path).map_err(|e| cannot(&e))?;
                let both = format!("{}{}", root.pem, root.key.serialize_pem());
                std::io::Write::write_all(&mut file, both.as_bytes()).map_err(|e| cannot(&e))?;
                return Ok(root);
            }
            Err(e) => return Err(cannot(&e)),
        };
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let der = CertificateDer::from_pem_slice(&text).map_err(|e| cannot(&format!("{e:?}")))?;
        let key_der =
            PrivateKeyDer::from_pem_slice(&text).map_err(|e| cannot(&format!("{e:?}")))?;
        let key = rcgen::KeyPair::try_from(&key_der).map_err(|e| cannot(&e))?;
        let params = rcgen::CertificateParams::from_ca_cert_der(&der).map_err(|e| cannot(&e))?;
        let cert = params.self_signed(&key).map_err(|e| cannot(&e))?;
        // Clients trust the file's certificate itself (the one the other proxy was given).
        let text = String::from_utf8_lossy(&text);
        let pem = text
            .find(CERT_BEGIN)
            .and_then(|at| {
                let end = text[at..].find(CERT_END)? + at + CERT_END.len();
                Some(format!("{}\n", &text[at..end]))
            })
            .ok_or_else(|| cannot(&"no CERTIFICATE block"))?;
        Ok(OriginRoot { cert, key, pem })
    }
}

async fn serve_https(root: &OriginRoot) -> Result<(SocketAddr, String), String> {
    let names = vec!["chatgpt.com".to_string(), "*.chatgpt.com".to_string()];
    let leaf_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let leaf = rcgen::CertificateParams::new(names)
        .map_err(|e| e.to_string())?
        .signed_by(&leaf_key, &root.cert, &root.key)
        .map_err(|e| e.to_string())?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
        .map_err(|e| e.to_string())?;
    let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(tls), service_fn(answer))
                    .await;
            });
        }
    });
    Ok((addr, root.pem.clone()))
}

async fn answer(req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let endless = matches!(req.uri().path(), "/endless" | "/endless-length");
    let body = match endless {
        true => Endless(Bytes::from(vec![0u8; 64 * 1024])).boxed(),
        false => Full::new(Bytes::from_static(SMALL)).boxed(),
    };
    let mut response = Response::new(body);
    if req.uri().path() == "/endless-length" {
        // A length no reader reaches (1 TiB): the body is framed by Content-Length, not
        // chunked, as a large download usually is.
        response.headers_mut().insert(
            hyper::header::CONTENT_LENGTH,
            hyper::header::HeaderValue::from_static("1099511627776"),
        );
    }
    let kind = if endless {
        "application/octet-stream"
    } else {
        "application/json"
    };
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    Ok(response)
}

/// A body that never ends: the tunnel throughput test reads it for a fixed time.
struct Endless(Bytes);

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(self.0.clone()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::load::{self, Via};

    /// `--origin-root`: the first run writes the root (0600), a later run signs its origin
    /// with it, and a client that trusts only the file's certificate reaches that origin.
    #[tokio::test]
    async fn a_root_kept_in_a_file_signs_the_origin_of_a_later_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("origin-root.pem");
        let first = OriginRoot::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let later = OriginRoot::load_or_create(&path).unwrap();
        assert_eq!(later.pem, first.pem);
        let (addr, pem) = serve_https(&later).await.unwrap();
        assert_eq!(pem, first.pem);
        let trust = load::trusting(&first.pem).unwrap();
        load::one_request(addr, HOST, &trust, Via::Direct)
            .await
            .unwrap();
        // A root made afresh is another root: the same client refuses its origin.
        let (other, _) = serve_https(&OriginRoot::generate().unwrap()).await.unwrap();
        assert!(load::one_request(other, HOST, &trust, Via::Direct)
            .await
            .is_err());
    }

    #[test]
    fn a_file_that_is_not_a_root_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = OriginRoot::load_or_create(&path).err().unwrap();
        assert!(err.starts_with("--origin-root "), "{err}");
        assert!(err.contains("root.pem"), "{err}");
    }
}
