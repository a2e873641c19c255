//! Findings on loopback: fake gateways serve vendor block pages (403, 503, 200, redirects),
//! a corporate proxy refuses CONNECT with a block page, a gateway answers a tunnel in plain
//! text, a firewall resets after the ClientHello — each asserted in summary.json, in tunnel
//! and in interception mode where the mode can see it.

mod common;

use common::*;

const FORTI: &str = "<html><head><title>Web Filter Violation</title></head><body><h1>FortiGuard Intrusion Prevention - Access Blocked</h1><p>You have tried to access a web page that is in violation of your Internet usage policy.</p></body></html>";
const PANOS: &str = "<html><head><title>Web Page Blocked</title></head><body>Access to the web page you were trying to visit has been blocked in accordance with company policy. Please contact your system administrator if you believe this is in error.</body></html>";
const BARRACUDA: &str = "<html><body><p>The link you are accessing has been blocked by the Barracuda Web Filter</p></body></html>";

fn kinds(host: &serde_json::Value) -> Vec<(String, String)> {
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

#[tokio::test]
async fn block_pages_redirects_and_rewrites_over_plain_http() {
    let gateway = canned_origin(vec![
        canned("/forti", 403, &[("content-type", "text/html")], FORTI),
        canned("/panos", 503, &[("content-type", "text/html")], PANOS),
        canned(
            "/barracuda",
            200,
            &[
                ("content-type", "text/html"),
                ("via", "1.1 bwf (http_scan_byf/3.5.16)"),
            ],
            BARRACUDA,
        ),
        canned(
            "/umbrella",
            302,
            &[(
                "location",
                "https://block.opendns.com/?url=chatgpt.com&server=ams",
            )],
            "",
        ),
        canned(
            "/backend-api/conversation",
            200,
            &[("content-type", "text/html")],
            "<html><body>Sign in to the corporate portal</body></html>",
        ),
        canned("/moved", 301, &[("location", "https://chatgpt.com/")], ""),
        canned(
            "/backend-api/me",
            401,
            &[("content-type", "application/json")],
            "{\"detail\":\"Unauthorized\"}",
        ),
        canned(
            "/",
            200,
            &[("content-type", "text/html")],
            "<!doctype html><html><head><title>ChatGPT</title></head></html>",
        ),
    ])
    .await;
    let pins = [
        format!("chatgpt.com:{}:127.0.0.1", gateway.port()),
        format!("chat.openai.com:{}:127.0.0.1", gateway.port()),
    ];
    let proxy = Proxy::start(&["--resolve", &pins[0], "--resolve", &pins[1]]).await;
    let base = format!("http://chatgpt.com:{}", gateway.port());
    for path in [
        "/forti",
        "/panos",
        "/barracuda",
        "/umbrella",
        "/backend-api/conversation",
        "/backend-api/me",
        "/",
    ] {
        get(proxy.addr, &format!("{base}{path}")).await;
    }
    get(
        proxy.addr,
        &format!("http://chat.openai.com:{}/moved", gateway.port()),
    )
    .await;
    proxy.wait_events("request", 8).await;
    // The live status page leads each host with its most serious finding.
    let status = raw_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n",
    )
    .await;
    let row = status
        .lines()
        .find(|l| l.contains(&format!("<td>chatgpt.com:{}</td>", gateway.port())))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(row.starts_with("<tr class=\"fail\">"), "{row}");
    assert!(
        row.contains("<td>block_page (Fortinet FortiGuard)</td>"),
        "{row}"
    );
    let session = proxy.stop().await;

    let found = kinds(session.host("chatgpt.com", gateway.port()));
    for expected in [
        ("block_page", "Fortinet FortiGuard"),
        ("block_page", "Palo Alto Networks PAN-DB"),
        ("block_page", "Barracuda Web Security Gateway"),
        ("block_page", "Cisco Umbrella"),
        ("unexpected_content", "-"),
    ] {
        assert!(
            found.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} missing from {found:?}"
        );
    }
    assert!(
        !found.iter().any(|(k, _)| k == "upstream_error"),
        "a 503 block page is not an upstream error: {found:?}"
    );
    assert!(
        kinds(session.host("chat.openai.com", gateway.port())).is_empty(),
        "a redirect inside the allowlist is fine"
    );
    let legitimate = [format!("{base}/backend-api/me"), format!("{base}/")];
    for event in session.events_of("request") {
        if legitimate.iter().any(|u| event["url"] == u.as_str()) {
            assert!(
                event["findings"].as_array().unwrap().is_empty(),
                "{}: {}",
                event["url"],
                event["findings"]
            );
        }
    }
    let forti = session
        .events_of("request")
        .into_iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("/forti"))
        .unwrap();
    let finding = &forti["findings"][0];
    assert_eq!(
        finding["evidence"],
        "status 403 page that names \"FortiGuard\""
    );
    assert_eq!(
        finding["feature"],
        "Everything: the app does not load or shows \"network error\""
    );
    assert!(
        finding["remedy"].as_str().unwrap().contains("allowlist"),
        "{finding:#}"
    );
    let reproduce = finding["reproduce"].as_str().unwrap();
    assert!(
        reproduce.contains(&format!(
            "--resolve chatgpt.com:{}:127.0.0.1",
            gateway.port()
        )) && reproduce.ends_with("/forti'"),
        "{reproduce}"
    );
    let verdict = session.summary["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("Fortinet FortiGuard blocks chatgpt.com: Everything"),
        "{verdict}"
    );
    // Each finding's command, run as pasted, shows the same status without diagproxy.
    for event in session.events_of("request") {
        for finding in event["findings"].as_array().unwrap() {
            let command = finding["reproduce"].as_str().unwrap();
            assert!(
                command.contains("'http://"),
                "the original scheme: {command}"
            );
            let Some(status) = reproduce_status(command, "").await else {
                return;
            };
            assert_eq!(status, event["status"].to_string(), "{command}");
        }
    }
}

#[tokio::test]
async fn a_corporate_proxy_refusing_connect_with_a_block_page() {
    let (corp, _) = corporate_proxy(CorpMode::Block).await;
    let upstream = format!("http://{corp}");
    let proxy = Proxy::start(&["--upstream-proxy", &upstream]).await;
    let (_, head) = raw_connect(proxy.addr, "files.oaiusercontent.com:443", "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let session = proxy.stop().await;
    let host = session.host("files.oaiusercontent.com", 443);
    // One observation, one finding: the refusal is the block page's evidence, and the
    // failure is still counted.
    assert_eq!(
        kinds(host),
        vec![("block_page".to_string(), "Fortinet FortiGuard".to_string())]
    );
    assert_eq!(host["failures"]["upstream_proxy_refused"], 1, "{host:#}");
    let block = host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "block_page")
        .unwrap();
    assert!(
        block["evidence"]
            .as_str()
            .unwrap()
            .starts_with("the corporate proxy refused with status 403"),
        "{block:#}"
    );
    assert_eq!(
        block["feature"],
        "Uploads fail with \"a network problem was identified\""
    );
    assert_eq!(
        block["reproduce"],
        format!("curl -sv -o /dev/null -x http://{corp} 'https://files.oaiusercontent.com:443/'")
    );
    let verdict = session.summary["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("Fortinet FortiGuard blocks files.oaiusercontent.com: Uploads fail"),
        "{verdict}"
    );
}

#[tokio::test]
async fn a_gateway_answering_a_tunnel_in_plain_text() {
    let gateway = plaintext_gateway(FORTI).await;
    let pin = format!("chatgpt.com:{}:127.0.0.1", gateway.port());
    let proxy = Proxy::start(&["--resolve", &pin]).await;
    let error = hello_through(
        proxy.addr,
        &format!("chatgpt.com:{}", gateway.port()),
        "chatgpt.com",
    )
    .await;
    assert!(
        error.to_lowercase().contains("corrupt")
            || error.contains("InvalidContentType")
            || error.contains("received"),
        "the client sees garbage: {error}"
    );
    proxy.wait_events("tunnel", 1).await;
    let session = proxy.stop().await;
    let found = kinds(session.host("chatgpt.com", gateway.port()));
    assert!(
        found.contains(&("non_tls_in_tunnel".into(), "-".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&("block_page".into(), "Fortinet FortiGuard".into())),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_reset_right_after_the_client_hello() {
    let firewall = resetting_server().await;
    let pin = format!("chatgpt.com:{}:127.0.0.1", firewall.port());
    let proxy = Proxy::start(&["--resolve", &pin]).await;
    hello_through(
        proxy.addr,
        &format!("chatgpt.com:{}", firewall.port()),
        "chatgpt.com",
    )
    .await;
    let tunnels = proxy.wait_events("tunnel", 1).await;
    assert_eq!(tunnels[0]["end"], "upstream_reset");
    let session = proxy.stop().await;
    let host = session.host("chatgpt.com", firewall.port());
    let found = kinds(host);
    assert!(
        found.contains(&("reset_after_client_hello".into(), "-".into())),
        "{found:?}"
    );
    assert_eq!(host["failures"]["reset"], 1);
    assert!(session.summary["verdict"]
        .as_str()
        .unwrap()
        .starts_with("The network resets TLS connections to chatgpt.com"));
}

#[tokio::test]
async fn block_pages_and_challenges_seen_through_interception() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let challenge = "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body><script src=\"/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1\"></script></body></html>";
    let origin = canned_https_origin(
        vec![leaf],
        key,
        vec![
            canned("/forti", 200, &[("content-type", "text/html")], FORTI),
            canned(
                "/challenge",
                403,
                &[
                    ("content-type", "text/html"),
                    ("server", "cloudflare"),
                    ("cf-mitigated", "challenge"),
                ],
                challenge,
            ),
        ],
    )
    .await;
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    let pin = format!("chatgpt.com:{}:127.0.0.1", origin.port());
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
    for path in ["/forti", "/challenge"] {
        let request = hyper::Request::get(path)
            .header("host", "chatgpt.com")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let response =
            intercepted_h1(proxy.addr, "chatgpt.com", origin.port(), &ca_pem, request).await;
        drop(http_body_util::BodyExt::collect(response.into_body()).await);
    }
    proxy.wait_events("request", 2).await;
    let session = proxy.stop().await;
    let host = session.host("chatgpt.com", origin.port());
    let found = kinds(host);
    assert!(
        found.contains(&("block_page".into(), "Fortinet FortiGuard".into())),
        "a 200 block page: {found:?}"
    );
    assert!(
        found.contains(&("cloudflare_challenge".into(), "Cloudflare".into())),
        "{found:?}"
    );
    let challenge = host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "cloudflare_challenge")
        .unwrap();
    // The intercepted host's commands keep the path and the pin, and show the same status.
    for event in session.events_of("request") {
        let finding = &event["findings"][0];
        let command = finding["reproduce"].as_str().unwrap();
        assert!(command.contains(&format!("--resolve {pin}")), "{command}");
        assert!(
            command.ends_with(&format!("{}'", event["url"].as_str().unwrap())),
            "{command}"
        );
        let Some(status) = reproduce_status(command, &format!("--cacert {roots}")).await else {
            break;
        };
        assert_eq!(status, event["status"].to_string(), "{command}");
    }
    assert!(
        challenge["detail"]
            .as_str()
            .unwrap()
            .contains("tunnel this host"),
        "{challenge:#}"
    );
}
