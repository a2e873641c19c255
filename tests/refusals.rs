//! A filtering proxy's refusals named from their own headers and pages, against a real
//! squid (Debian's; CI installs `squid`): a CONNECT denied with squid's error page and
//! `X-Squid-Error`, and one answered with a `deny_info` redirect to a block host.

mod common;

use common::kerberos;
use common::squid::FilterSquid;
use common::*;

fn squid_present() -> bool {
    require_tool("squid")
}

const RULES: &str = "acl blocked dstdomain .chatgpt.com
acl sent_away dstdomain files.oaiusercontent.com
deny_info http://block.corp.example/denied sent_away
http_access deny sent_away
http_access deny blocked
http_access allow all";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squids_refusal_is_named_from_its_headers_and_its_redirect_is_a_block() {
    if !squid_present() {
        return;
    }
    let squid = FilterSquid::start(RULES);
    let proxy = Proxy::start(&["--upstream-proxy", &squid.url()]).await;
    let (_, head) = raw_connect(proxy.addr, "chatgpt.com:443", "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let (_, head) = raw_connect(proxy.addr, "files.oaiusercontent.com:443", "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let session = proxy.stop().await;

    let tunnels = session.events_of("tunnel");
    let of = |host: &str| {
        tunnels
            .iter()
            .find(|t| t["host"] == host)
            .unwrap_or_else(|| panic!("no tunnel to {host}: {tunnels:#?}"))
    };
    let denied = of("chatgpt.com");
    let headers = denied["failure"]["proxy_headers"].to_string();
    assert!(
        headers.contains("x-squid-error") && headers.contains("ERR_ACCESS_DENIED"),
        "{denied}"
    );
    assert!(
        headers.contains("squid/"),
        "Server or Via names squid: {denied}"
    );
    let finding = &denied["findings"][0];
    assert_eq!(finding["kind"], "block_page", "{denied}");
    assert_eq!(finding["vendor"], "Squid", "{denied}");

    let away = of("files.oaiusercontent.com");
    let location = away["failure"]["proxy_headers"].to_string();
    assert!(location.contains("block.corp.example/denied"), "{away}");
    let finding = &away["findings"][0];
    assert_eq!(finding["kind"], "redirect_off_allowlist", "{away}");
    assert!(
        finding["evidence"]
            .as_str()
            .unwrap_or_default()
            .contains("Location: http://block.corp.example/denied"),
        "{away}"
    );
    let verdict = session.summary["verdict"].as_str().unwrap();
    assert!(verdict.starts_with("Squid blocks"), "{verdict}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_through_a_bumping_squid_is_websocket_blocked() {
    if !squid_present() || !kerberos::require_file(common::squid::CERTGEN) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let origin = https_origin(vec![leaf], key).await;
    // squid re-signs with its own CA, which this machine trusts (TLS inspection).
    let squid_ca = TestCa::root("Squid Bump CA", "Example Corp");
    let squid = FilterSquid::bumping(
        &format!("{}{}", squid_ca.pem(), squid_ca.key.serialize_pem()),
        "127.0.0.1 chatgpt.com\n",
        "http_access allow all",
    );
    let public_pem = write_file(dir.path(), "public.pem", &public.pem());
    let system_pem = write_file(dir.path(), "system.pem", &(public.pem() + &squid_ca.pem()));
    let proxy = Proxy::start(&[
        "--intercept",
        "profile",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--public-roots",
        &public_pem,
        "--system-roots",
        &system_pem,
        "--upstream-proxy",
        &squid.url(),
    ])
    .await;
    let request = hyper::Request::get("/ws")
        .header("host", "chatgpt.com")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = intercepted_h1(proxy.addr, "chatgpt.com", origin.port(), &ca_pem, request).await;
    let status = response.status().as_u16();
    assert_ne!(status, 101, "squid's bump drops the Upgrade");
    drop(http_body_util::BodyExt::collect(response.into_body()).await);
    proxy.wait_events("request", 1).await;
    let session = proxy.stop().await;
    let request = &session.events_of("request")[0];
    let finding = request["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "websocket_blocked")
        .unwrap_or_else(|| panic!("{request:#}"));
    assert!(
        finding["evidence"].as_str().unwrap().starts_with(&format!(
            "status {status} to a WebSocket upgrade, through the proxy PROXY 127.0.0.1:{}",
            squid.port
        )),
        "{finding}"
    );
    // The chain squid presented is inspection, and it is said to be the proxy's.
    let host = session.host("chatgpt.com", origin.port());
    let kinds: Vec<&str> = host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"tls_inspection"), "{kinds:?}");
}
