//! A fake corporate proxy that allows, asks for sign-in (407) or blocks with a FortiGuard-style
//! page; the real ones (squid, dante, an MIT KDC) are in their own modules.

#![allow(dead_code)]

use super::*;

/// How the fake corporate proxy behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CorpMode {
    /// Tunnels every CONNECT to 127.0.0.1 on the requested port; answers plain requests itself.
    Allow,
    /// 407 unless `Proxy-Authorization: Basic dXNlcjpwYXNz` (user:pass) is sent.
    RequireAuth,
    /// 403 with a FortiGuard-style block page.
    Block,
}

/// What the fake corporate proxy saw: request lines and Proxy-Authorization values.
pub type CorpLog = Arc<Mutex<Vec<String>>>;

pub const BLOCK_PAGE: &str = "<html><head><title>Web Filter Violation</title></head><body><h1>FortiGuard Intrusion Prevention - Access Blocked</h1><p>You have tried to access a web page that is in violation of your Internet usage policy.</p></body></html>";

pub async fn corporate_proxy(mode: CorpMode) -> (SocketAddr, CorpLog) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log: CorpLog = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| corp_handle(req, mode, seen.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, log)
}

pub(super) async fn corp_handle(
    req: Request<Incoming>,
    mode: CorpMode,
    seen: CorpLog,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let auth = req
        .headers()
        .get("proxy-authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    if let Ok(mut log) = seen.lock() {
        log.push(format!("{} {} auth={auth}", req.method(), req.uri()));
    }
    let reply = |status: u16, body: &str| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("response")
    };
    match mode {
        CorpMode::RequireAuth if auth != "Basic dXNlcjpwYXNz" => {
            let mut r = reply(407, "proxy authentication required");
            r.headers_mut().insert(
                "proxy-authenticate",
                hyper::header::HeaderValue::from_static("Basic realm=\"corp\""),
            );
            return Ok(r);
        }
        CorpMode::Block => return Ok(reply(403, BLOCK_PAGE)),
        _ => {}
    }
    if req.method() != hyper::Method::CONNECT {
        return Ok(reply(200, &format!("corp proxy forwarded {}", req.uri())));
    }
    let port = req.uri().port_u16().unwrap_or(443);
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return Ok(reply(502, "corp proxy could not connect"));
    };
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let mut upgraded = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut upgraded, &mut upstream).await;
        }
    });
    // A squid says who it is in its CONNECT answer's Via.
    let mut ok = reply(200, "");
    ok.headers_mut().insert(
        "via",
        hyper::header::HeaderValue::from_static("1.1 corp-proxy (squid/5.7)"),
    );
    Ok(ok)
}
