//! Canned answers: origins and gateways that answer what a test scripted (block pages, a
//! PAC file, a plaintext answer to a ClientHello).

#![allow(dead_code)]

use super::*;

/// One canned answer: path → status, headers, body.
#[derive(Clone)]
pub struct Canned {
    pub path: &'static str,
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: &'static str,
}

pub fn canned(
    path: &'static str,
    status: u16,
    headers: &[(&'static str, &'static str)],
    body: &'static str,
) -> Canned {
    Canned {
        path,
        status,
        headers: headers.to_vec(),
        body,
    }
}

pub(super) async fn answer_canned(
    req: Request<Incoming>,
    routes: Arc<Vec<Canned>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let found = routes.iter().find(|c| c.path == req.uri().path());
    let mut builder = Response::builder();
    let response = match found {
        Some(c) => {
            builder = builder.status(c.status);
            for (name, value) in &c.headers {
                builder = builder.header(*name, *value);
            }
            builder.body(Full::new(Bytes::from_static(c.body.as_bytes())))
        }
        None => builder
            .status(404)
            .body(Full::new(Bytes::from_static(b"not found"))),
    };
    Ok(response.expect("response"))
}

/// A plain-HTTP server answering `/proxy.pac` with `script` (its lifetime is the test's).
pub async fn pac_server(script: String) -> SocketAddr {
    let script: &'static str = Box::leak(script.into_boxed_str());
    let headers = &[("content-type", "application/x-ns-proxy-autoconfig")];
    canned_origin(vec![canned("/proxy.pac", 200, headers, script)]).await
}

/// A plain-HTTP origin answering `routes` (a fake gateway's block pages).
pub async fn canned_origin(routes: Vec<Canned>) -> SocketAddr {
    canned_origin_at("127.0.0.1:0", routes).await
}

/// An HTTPS origin answering `routes`, with the given chain.
pub async fn canned_https_origin(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    routes: Vec<Canned>,
) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let routes = Arc::new(routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, routes) = (acceptor.clone(), routes.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req| answer_canned(req, routes.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A gateway that answers whatever arrives (a ClientHello) with a plaintext HTTP block page.
pub async fn plaintext_gateway(page: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let reply = format!("HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}", page.len());
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    addr
}

/// A canned plain-HTTP origin on a chosen address (127.0.0.2 for a second "network").
pub async fn canned_origin_at(addr: &str, routes: Vec<Canned>) -> SocketAddr {
    let routes = Arc::new(routes);
    let listener = TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let routes = routes.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer_canned(req, routes.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
