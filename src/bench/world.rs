//! What `diagproxy bench` measures against: loopback origins (plain HTTP and HTTPS, a small
//! answer and an endless body), a test root for the HTTPS origin, a local CA for
//! interception, and the proxy under test as a child process (so its memory is its own).

use std::convert::Infallible;
use std::net::SocketAddr;
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
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

impl World {
    pub async fn start() -> Result<World, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let http = serve_http().await?;
        let (https, origin_root) = serve_https().await?;
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
        std::fs::write(dir.path().join("origin-root.pem"), &origin_root)
            .map_err(|e| e.to_string())?;
        Ok(World {
            http,
            https,
            origin_root,
            ca_pem,
            dir,
        })
    }

    /// Starts `diagproxy run` as a child on 127.0.0.1:0, recording to a temp session, and
    /// returns it with its address. `threads`: its runtime's worker count (one per core it
    /// will be pinned to), or tokio's default.
    pub fn spawn_proxy(&self, threads: Option<usize>) -> Result<(Child, SocketAddr), String> {
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
        .arg(self.dir.path().join("session"))
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

async fn serve_https() -> Result<(SocketAddr, String), String> {
    let mut root_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    root_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "diagproxy bench public root");
    root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let root_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let root = root_params
        .self_signed(&root_key)
        .map_err(|e| e.to_string())?;
    let names = vec!["chatgpt.com".to_string(), "*.chatgpt.com".to_string()];
    let leaf_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let leaf = rcgen::CertificateParams::new(names)
        .map_err(|e| e.to_string())?
        .signed_by(&leaf_key, &root, &root_key)
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
    Ok((addr, root.pem()))
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
