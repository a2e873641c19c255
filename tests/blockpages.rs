//! Block pages written from each product's public template (`tests/fixtures/blockpages`,
//! sources in its SOURCES.md), served through diagproxy the ways gateways send them: as is,
//! with the marker past the first 4 KiB, chunked so every marker is split, gzip, deflate,
//! br, and Latin-1 — in forwarding and in interception mode. And the answers that must not
//! be block pages: an API's JSON 403, the app's own login page, a chat answer about blocked
//! websites, Cloudflare's own error pages, a redirect inside the allowlist.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A fixture: its file, the status and headers the gateway sends, and the vendor expected
/// (`None`: a block page by an unknown product).
struct Fixture {
    file: &'static str,
    html: &'static str,
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    vendor: Option<&'static str>,
}

macro_rules! fixture {
    ($file:literal, $status:expr, $headers:expr, $vendor:expr) => {
        Fixture {
            file: $file,
            html: include_str!(concat!("fixtures/blockpages/", $file)),
            status: $status,
            headers: $headers,
            vendor: $vendor,
        }
    };
}

const FIXTURES: &[Fixture] = &[
    fixture!("fortiguard.html", 403, &[], Some("Fortinet FortiGuard")),
    fixture!(
        "mcafee.html",
        403,
        &[],
        Some("McAfee / Skyhigh Web Gateway")
    ),
    fixture!("umbrella.html", 403, &[], Some("Cisco Umbrella")),
    fixture!(
        "bluecoat.html",
        403,
        &[],
        Some("Broadcom Symantec / Blue Coat")
    ),
    fixture!(
        "zscaler-200.html",
        200,
        &[("server", "Zscaler/6.2")],
        Some("Zscaler")
    ),
    fixture!("zscaler-web-page-blocked.html", 403, &[], Some("Zscaler")),
    fixture!(
        "barracuda.html",
        200,
        &[],
        Some("Barracuda Web Security Gateway")
    ),
    fixture!("cisco-wsa.html", 403, &[], Some("Cisco WSA")),
    fixture!("forcepoint.html", 403, &[], Some("Forcepoint")),
    fixture!("panos.html", 503, &[], Some("Palo Alto Networks PAN-DB")),
    fixture!(
        "cloudflare-gateway.html",
        403,
        &[],
        Some("Cloudflare Gateway")
    ),
    fixture!("iboss.html", 403, &[], Some("iboss")),
    fixture!("sophos.html", 403, &[], Some("Sophos Firewall")),
    fixture!("access-denied.html", 403, &[], None),
];

/// How a gateway delivers the page.
const DELIVERIES: [&str; 7] = [
    "plain", "padded", "chunked", "gzip", "deflate", "br", "latin1",
];

/// The whole HTTP/1.1 answer for `fixture` delivered as `how`.
fn answer(fixture: &Fixture, how: &str) -> Vec<u8> {
    let mut html = fixture.html.to_string();
    if how == "padded" {
        // Inline CSS as real block pages carry, so every marker sits past the first 4 KiB.
        let css = ".x{margin:0;padding:0}\n".repeat(240);
        html = html.replacen("<head>", &format!("<head><style>{css}</style>"), 1);
        html = html.replacen("<HEAD>", &format!("<HEAD><style>{css}</style>"), 1);
        assert!(html.len() > 4096 + fixture.html.len() / 2);
    }
    let mut content_type = "text/html; charset=utf-8";
    let mut encoding = None;
    let body: Vec<u8> = match how {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(html.as_bytes()).unwrap();
            encoding = Some("gzip");
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(html.as_bytes()).unwrap();
            encoding = Some("deflate");
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            let params = brotli::enc::BrotliEncoderParams {
                quality: 5,
                ..Default::default()
            };
            brotli::BrotliCompress(&mut html.as_bytes(), &mut out, &params).unwrap();
            encoding = Some("br");
            out
        }
        "latin1" => {
            content_type = "text/html; charset=ISO-8859-1";
            html.chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect()
        }
        _ => html.into_bytes(),
    };
    let mut head = format!("HTTP/1.1 {} Blocked\r\n", fixture.status);
    head.push_str(&format!(
        "Content-Type: {content_type}\r\nConnection: close\r\n"
    ));
    for (name, value) in fixture.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(coding) = encoding {
        head.push_str(&format!("Content-Encoding: {coding}\r\n"));
    }
    if how != "chunked" {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        return [head.into_bytes(), body].concat();
    }
    head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    let mut out = head.into_bytes();
    for piece in body.chunks(7) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The answer for a request path `/<fixture index>/<delivery>`.
fn answer_for(path: &str) -> Vec<u8> {
    let mut parts = path.trim_start_matches('/').split('/');
    let index: usize = parts
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap_or(usize::MAX);
    let how = parts.next().unwrap_or("plain");
    match FIXTURES.get(index) {
        Some(f) => answer(f, how),
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    }
}

/// Reads one request head and writes the fixture it names, in pieces when chunked.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let reply = answer_for(path);
    // Several writes, so the marker's halves can arrive in different reads.
    for piece in reply.chunks(512) {
        if stream.write_all(piece).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
        tokio::task::yield_now().await;
    }
    let _ = stream.shutdown().await;
}

/// A fake gateway answering fixtures in plain HTTP.
async fn gateway() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_one(stream));
        }
    });
    addr
}

/// The same gateway behind TLS with a certificate from `ca` (for interception).
async fn tls_gateway(ca: &TestCa) -> SocketAddr {
    let (leaf, key) = ca.leaf(&["chatgpt.com"]);
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![leaf], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve_one(tls).await;
                }
            });
        }
    });
    addr
}

/// The block-page finding of the request for `path`, if any.
fn block_finding<'a>(events: &'a [&'a Value], path: &str) -> Option<&'a Value> {
    let event = events
        .iter()
        .find(|e| e["url"].as_str().is_some_and(|u| u.ends_with(path)))
        .unwrap_or_else(|| panic!("no request event for {path}"));
    event["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "block_page")
}

fn assert_vendor(fixture: &Fixture, how: &str, finding: Option<&Value>) {
    let finding = finding.unwrap_or_else(|| panic!("{} {how}: no block_page", fixture.file));
    assert_eq!(
        finding["vendor"].as_str(),
        fixture.vendor,
        "{} {how}: {finding:#}",
        fixture.file
    );
    let excerpt = finding["excerpt"].as_str().unwrap_or("");
    assert!(
        excerpt.len() > 20 && !excerpt.contains('<') && !excerpt.contains("&nbsp;"),
        "{} {how}: the excerpt is the page's text: {excerpt:?}",
        fixture.file
    );
}

#[tokio::test]
async fn every_product_page_in_every_delivery_through_forwarding() {
    let gateway = gateway().await;
    let pin = format!("chatgpt.com:{}:127.0.0.1", gateway.port());
    let proxy = Proxy::start(&["--resolve", &pin]).await;
    let mut asked = 0;
    for (index, fixture) in FIXTURES.iter().enumerate() {
        for how in DELIVERIES {
            let url = format!("http://chatgpt.com:{}/{index}/{how}", gateway.port());
            // The gateway closes after each answer: one connection per request.
            let reply = get(proxy.addr, &url).await;
            assert_eq!(reply.status, fixture.status, "{url}");
            assert_eq!(
                reply.body,
                payload(fixture, how),
                "{url}: the body reaches the client as sent (diagproxy decodes only its copy)"
            );
            asked += 1;
        }
    }
    proxy.wait_events("request", asked).await;
    let session = proxy.stop().await;
    let events = session.events_of("request");
    for (index, fixture) in FIXTURES.iter().enumerate() {
        for how in DELIVERIES {
            let path = format!("/{index}/{how}");
            assert_vendor(fixture, how, block_finding(&events, &path));
        }
    }
    what_the_user_saw_is_in_every_output(&session);
}

/// The excerpt of the Zscaler 200 page is in the HTML and Markdown reports, and its decoded
/// body is the HAR's `content.text` for that response (and only block pages have one).
fn what_the_user_saw_is_in_every_output(session: &Session) {
    let dir = session.folder.path().join("session");
    let seen = "Website blocked Not allowed to browse Generative AI category";
    for report in ["report.html", "report.md"] {
        let text = std::fs::read_to_string(dir.join(report)).unwrap();
        assert!(text.contains(seen), "{report} lacks the excerpt");
    }
    let har: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("session.har")).unwrap()).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    let zscaler = FIXTURES
        .iter()
        .position(|f| f.file == "zscaler-200.html")
        .unwrap();
    let gzip = entries
        .iter()
        .find(|e| {
            e["request"]["url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{zscaler}/gzip"))
        })
        .unwrap();
    let text = gzip["response"]["content"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("<!DOCTYPE HTML") && text.contains("Not allowed to browse"),
        "{text}"
    );
    let with_text = entries
        .iter()
        .filter(|e| e["response"]["content"]["text"].is_string())
        .count();
    assert_eq!(with_text, FIXTURES.len() * DELIVERIES.len());
}

/// The body bytes a client should receive for `fixture` delivered as `how`.
fn payload(fixture: &Fixture, how: &str) -> Vec<u8> {
    let whole = answer(fixture, how);
    let at = whole.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    if how == "chunked" {
        dechunk(&whole[at..])
    } else {
        whole[at..].to_vec()
    }
}

/// The payload of a chunked body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}

#[tokio::test]
async fn every_product_page_through_interception() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let gateway = tls_gateway(&public).await;
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    let pin = format!("chatgpt.com:{}:127.0.0.1", gateway.port());
    let proxy = Proxy::start(&[
        "--intercept",
        "profile",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--public-roots",
        &roots,
        "--system-roots",
        &roots,
        "--resolve",
        &pin,
    ])
    .await;
    let deliveries = ["plain", "chunked", "gzip", "br"];
    for index in 0..FIXTURES.len() {
        for how in deliveries {
            let request = hyper::Request::get(format!("/{index}/{how}"))
                .header("host", "chatgpt.com")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let response =
                intercepted_h1(proxy.addr, "chatgpt.com", gateway.port(), &ca_pem, request).await;
            drop(http_body_util::BodyExt::collect(response.into_body()).await);
        }
    }
    proxy
        .wait_events("request", FIXTURES.len() * deliveries.len())
        .await;
    let session = proxy.stop().await;
    let events = session.events_of("request");
    for (index, fixture) in FIXTURES.iter().enumerate() {
        for how in deliveries {
            let found = block_finding(&events, &format!("/{index}/{how}"));
            assert_vendor(fixture, how, found);
        }
    }
}

#[tokio::test]
async fn answers_that_are_not_block_pages() {
    let chat = "data: {\"message\":{\"content\":{\"parts\":[\"Zscaler or Palo Alto can show a page titled Web Page Blocked; 'Not allowed to browse' means the category is blocked.\"]}}}\n\n";
    let origin = canned_origin(vec![
        canned(
            "/backend-api/conversation",
            403,
            &[("content-type", "application/json")],
            "{\"detail\":\"Access denied: this request was blocked by our security policy.\"}",
        ),
        canned(
            "/auth/login",
            401,
            &[("content-type", "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><head><title>Log in | ChatGPT</title></head><body><h1>Welcome back</h1><form><input name=\"email\"><button>Continue</button></form><footer><a href=\"/policies/terms-of-use\">Terms of use</a> | <a href=\"/policies/privacy-policy\">Privacy policy</a></footer></body></html>",
        ),
        canned(
            "/backend-api/f/conversation",
            200,
            &[("content-type", "text/event-stream")],
            chat,
        ),
        canned(
            "/cdn-cgi/rate",
            429,
            &[
                ("content-type", "text/html"),
                ("server", "cloudflare"),
                ("cf-ray", "8f1c2a3b4d5e6f70-AMS"),
            ],
            "<!DOCTYPE html><html><head><title>Access denied | chatgpt.com used Cloudflare to restrict access</title></head><body><h1>Error 1015</h1><p>You are being rate limited</p></body></html>",
        ),
        canned(
            "/cdn-cgi/waf",
            403,
            &[
                ("content-type", "text/html"),
                ("server", "cloudflare"),
                ("cf-ray", "8f1c2a3b4d5e6f71-AMS"),
            ],
            "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body><h1>Sorry, you have been blocked</h1><p>You are unable to access chatgpt.com</p></body></html>",
        ),
        canned("/moved", 301, &[("location", "https://chatgpt.com/")], ""),
    ])
    .await;
    let pins = [
        format!("chatgpt.com:{}:127.0.0.1", origin.port()),
        format!("chat.openai.com:{}:127.0.0.1", origin.port()),
    ];
    let proxy = Proxy::start(&["--resolve", &pins[0], "--resolve", &pins[1]]).await;
    let base = format!("http://chatgpt.com:{}", origin.port());
    let urls = [
        format!("{base}/backend-api/conversation"),
        format!("{base}/auth/login"),
        format!("{base}/backend-api/f/conversation"),
        format!("{base}/cdn-cgi/rate"),
        format!("{base}/cdn-cgi/waf"),
        format!("http://chat.openai.com:{}/moved", origin.port()),
    ];
    for url in &urls {
        let reply = get(proxy.addr, url).await;
        assert_ne!(reply.status, 404, "{url}");
    }
    let events = proxy.wait_events("request", urls.len()).await;
    proxy.stop().await;
    for url in &urls {
        let event = events
            .iter()
            .find(|e| e["url"] == url.as_str())
            .unwrap_or_else(|| panic!("no event for {url}"));
        assert!(event["status"].as_u64().is_some(), "{event:#}");
        assert_eq!(
            event["findings"].as_array().map(Vec::len),
            Some(0),
            "{url} is not a finding: {:#}",
            event["findings"]
        );
    }
}
