//! Interception must not see less than a tunnel: each misbehaving network — a firewall that
//! resets after the ClientHello, a gateway that answers it in plain HTTP with a block page, a
//! corporate proxy that refuses CONNECT with a block page, a firewall that swallows the
//! ClientHello — is run once with a plain tunnel and once with `--intercept`, and the two
//! sessions must name the same findings.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The detectors' findings on a host (kind, vendor), failures aside.
fn detected(host: &Value) -> BTreeSet<(String, String)> {
    host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["vendor"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Where the misbehaving network sits: pinned as chatgpt.com's address, or as the corporate
/// proxy.
enum Network {
    Origin(SocketAddr),
    CorporateProxy(SocketAddr),
}

impl Network {
    fn args(&self, target_port: u16) -> Vec<String> {
        match self {
            Network::Origin(addr) => vec![
                "--resolve".into(),
                format!("chatgpt.com:{}:127.0.0.1", addr.port()),
            ],
            Network::CorporateProxy(addr) => vec![
                "--upstream-proxy".into(),
                format!("http://{addr}"),
                "--resolve".into(),
                format!("chatgpt.com:{target_port}:127.0.0.1"),
            ],
        }
    }

    fn port(&self) -> u16 {
        match self {
            Network::Origin(addr) => addr.port(),
            Network::CorporateProxy(_) => 443,
        }
    }
}

/// A plain tunnel: CONNECT and a ClientHello for chatgpt.com. With `linger`, the client
/// keeps waiting that long and the session ends with the tunnel still open.
async fn through_a_tunnel(network: &Network, linger: Option<Duration>) -> Session {
    let port = network.port();
    let mut args = network.args(port);
    args.extend(["--grace".to_string(), "1s".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args).await;
    let target = format!("chatgpt.com:{port}");
    match (network, linger) {
        (Network::CorporateProxy(_), _) => {
            let (_, head) = raw_connect(proxy.addr, &target, "").await;
            assert!(head.starts_with("HTTP/1.1 502"), "{head}");
            proxy.wait_events("tunnel", 1).await;
        }
        (_, Some(wait)) => {
            // The client keeps waiting while the session ends around it.
            let addr = proxy.addr;
            let hello =
                tokio::spawn(async move { hello_through(addr, &target, "chatgpt.com").await });
            tokio::time::sleep(wait).await;
            assert!(!hello.is_finished(), "no answer came");
            let session = proxy.stop().await;
            hello.abort();
            return session;
        }
        (_, None) => {
            hello_through(proxy.addr, &target, "chatgpt.com").await;
            proxy.wait_events("tunnel", 1).await;
        }
    }
    proxy.stop().await
}

/// The same through interception: one GET for chatgpt.com, answered by diagproxy's failure.
async fn through_interception(network: &Network) -> Session {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let port = network.port();
    let mut args = network.args(port);
    args.extend(["--intercept".into(), "profile".into(), "--ca-dir".into()]);
    args.push(ca_dir.to_str().unwrap().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args).await;
    let request = hyper::Request::get("/")
        .header("host", "chatgpt.com")
        .header("accept", "text/html")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = intercepted_h1(proxy.addr, "chatgpt.com", port, &ca_pem, request).await;
    assert!(response.status().as_u16() >= 500, "{}", response.status());
    proxy.wait_events("request", 1).await;
    let session = proxy.stop().await;
    drop(dir);
    session
}

/// Runs both modes and checks each names exactly `expected`.
async fn same_in_both_modes(network: Network, expected: &[(&str, &str)]) -> (Session, Session) {
    let tunnel = through_a_tunnel(&network, None).await;
    let intercepted = through_interception(&network).await;
    let port = network.port();
    let in_tunnel = detected(tunnel.host("chatgpt.com", port));
    let in_interception = detected(intercepted.host("chatgpt.com", port));
    assert_eq!(in_tunnel, set(expected), "tunnel mode");
    assert_eq!(
        in_interception, in_tunnel,
        "interception sees what a tunnel sees"
    );
    (tunnel, intercepted)
}

#[tokio::test]
async fn a_reset_after_the_client_hello() {
    let firewall = resetting_server().await;
    let (tunnel, intercepted) = same_in_both_modes(
        Network::Origin(firewall),
        &[("reset_after_client_hello", "-")],
    )
    .await;
    for session in [&tunnel, &intercepted] {
        let host = session.host("chatgpt.com", firewall.port());
        assert_eq!(host["failures"]["reset"], 1, "{host:#}");
    }
}

#[tokio::test]
async fn a_plaintext_block_page_instead_of_a_server_hello() {
    let gateway = plaintext_gateway(BLOCK_PAGE).await;
    same_in_both_modes(
        Network::Origin(gateway),
        &[
            ("non_tls_in_tunnel", "-"),
            ("block_page", "Fortinet FortiGuard"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_corporate_proxy_refusing_connect_with_a_block_page() {
    let (corp, _) = corporate_proxy(CorpMode::Block).await;
    let (_, intercepted) = same_in_both_modes(
        Network::CorporateProxy(corp),
        &[("block_page", "Fortinet FortiGuard")],
    )
    .await;
    let host = intercepted.host("chatgpt.com", 443);
    assert_eq!(host["failures"]["upstream_proxy_refused"], 1, "{host:#}");
}

#[tokio::test]
async fn silence_after_the_client_hello_in_both_modes_and_at_shutdown() {
    let firewall = silent_server().await;
    let network = Network::Origin(firewall);
    // Both wait out the 10 s rule at the same time.
    let (tunnel, intercepted) = tokio::join!(
        through_a_tunnel(&network, Some(Duration::from_millis(10_500))),
        through_interception(&network)
    );
    let expected = set(&[("no_server_hello", "-")]);
    let port = firewall.port();
    assert_eq!(detected(tunnel.host("chatgpt.com", port)), expected);
    assert_eq!(detected(intercepted.host("chatgpt.com", port)), expected);
    // The tunnel was still open when the session ended: recorded with what was known.
    let open = tunnel.events_of("tunnel");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["end"], "open_at_shutdown");
    assert_eq!(open[0]["bytes_down"], 0);
    assert_eq!(open[0]["sni"], "chatgpt.com");
    assert!(open[0]["timings"]["total_ms"].as_f64().unwrap() >= 10_000.0);
    let failure = &intercepted.events_of("request")[0]["failure"];
    assert_eq!(failure["kind"], "timeout", "{failure:#}");
    for session in [&tunnel, &intercepted] {
        let verdict = session.summary["verdict"].as_str().unwrap();
        assert!(verdict.contains("chatgpt.com"), "{verdict}");
        assert!(!verdict.starts_with("No ChatGPT host"), "{verdict}");
    }
}
