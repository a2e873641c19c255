//! SOCKS routes against a real dante (Debian's `dante-server`; CI installs it): tunnels and
//! plain HTTP through SOCKS5 and SOCKS4, a refusal by dante's rules named with its reply
//! code, and a PAC whose dead SOCKS server falls back to the next hop.

mod common;

use common::dante::{Dante, BLOCKED, SOCKS_PASSWORD, SOCKS_USER};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn dante_present() -> bool {
    require_tool("danted")
}

async fn echoes(proxy: std::net::SocketAddr, target: &str) {
    let (mut stream, head) = raw_connect(proxy, target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{target}: {head}");
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_and_plain_http_go_through_socks5_and_a_refusal_is_named() {
    if !dante_present() {
        return;
    }
    let dante = Dante::start();
    let echo = echo_server().await;
    let plain = origin().await;
    let url = format!("socks5://127.0.0.1:{}", dante.port);
    let proxy = Proxy::start(&["--upstream-proxy", &url]).await;
    echoes(proxy.addr, &format!("127.0.0.1:{}", echo.port())).await;
    let reply = get(proxy.addr, &format!("http://{plain}/headers")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (_, head) = raw_connect(proxy.addr, &format!("{BLOCKED}:443"), "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(head.contains("socks_refused"), "{head}");
    let session = proxy.stop().await;

    let tunnels = session.events_of("tunnel");
    let hop = format!("SOCKS5 127.0.0.1:{}", dante.port);
    assert!(
        tunnels.iter().all(|t| t["route"] == hop.as_str()),
        "{tunnels:#?}"
    );
    let blocked = tunnels
        .iter()
        .find(|t| t["host"] == BLOCKED)
        .expect("the blocked tunnel");
    assert_eq!(blocked["failure"]["kind"], "socks_refused", "{blocked}");
    assert_eq!(blocked["failure"]["side"], "upstream_proxy");
    let detail = blocked["failure"]["detail"].as_str().unwrap();
    assert!(
        detail.ends_with("reply 0x02, connection not allowed by ruleset"),
        "{detail}"
    );
    let host = session.host(BLOCKED, 443);
    assert!(
        host["findings"]
            .to_string()
            .contains(&format!("--socks5-hostname 127.0.0.1:{}", dante.port)),
        "the reproduce command takes the same SOCKS route: {host}"
    );
    assert!(dante.log().contains("block"), "dante itself refused it");
    let request = &session.events_of("request")[0];
    assert_eq!(request["route"], hop.as_str(), "{request}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks4_resolves_here_and_a_pac_falls_back_past_a_dead_socks_server() {
    if !dante_present() {
        return;
    }
    let dante = Dante::start();
    let echo = echo_server().await;
    // SOCKS4 carries an address: chatgpt.com resolves here, through the pin.
    let url = format!("socks4://127.0.0.1:{}", dante.port);
    let pin = format!("chatgpt.com:{}:127.0.0.1", echo.port());
    let proxy = Proxy::start(&["--upstream-proxy", &url, "--resolve", &pin]).await;
    echoes(proxy.addr, &format!("chatgpt.com:{}", echo.port())).await;
    let session = proxy.stop().await;
    let tunnel = &session.events_of("tunnel")[0];
    assert_eq!(tunnel["route"], format!("SOCKS4 127.0.0.1:{}", dante.port));

    // A PAC: a dead SOCKS5 server first, then dante as SOCKS (SOCKS4 in Chromium's reading),
    // then a corporate proxy, then DIRECT.
    let (corp, _) = corporate_proxy(CorpMode::Allow).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pac = pac_server(format!(
        "function FindProxyForURL(u, h) {{ return 'SOCKS5 127.0.0.1:{dead}; SOCKS 127.0.0.1:{}; PROXY {corp}; DIRECT'; }}",
        dante.port
    ))
    .await;
    let source = format!("pac:http://{pac}/proxy.pac");
    let proxy = Proxy::start(&["--upstream-proxy", &source]).await;
    echoes(proxy.addr, &format!("127.0.0.1:{}", echo.port())).await;
    let session = proxy.stop().await;
    let tunnel = &session.events_of("tunnel")[0];
    assert_eq!(
        tunnel["route"],
        format!("SOCKS4 127.0.0.1:{}", dante.port),
        "{tunnel}"
    );
    let failed = tunnel["route_failed"].to_string();
    assert!(
        failed.contains(&format!("SOCKS5 127.0.0.1:{dead}")),
        "{tunnel}"
    );
    let kinds: Vec<&str> = session.host("127.0.0.1", echo.port())["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"proxy_unreachable"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_proxy_is_reached_over_tls_and_an_untrusted_one_is_proxy_tls_failed() {
    if !require_tool("squid") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let corp = TestCa::root("Corp Proxy Root", "Example Corp");
    let (leaf, key) = corp.leaf_pem(&["proxy.corp.test"]);
    let squid = common::squid::FilterSquid::https(&format!("{leaf}{key}"), "http_access allow all");
    let trusted = write_file(dir.path(), "system.pem", &corp.pem());
    let url = format!("https://proxy.corp.test:{}", squid.port);
    let pin = format!("proxy.corp.test:{}:127.0.0.1", squid.port);
    let proxy = Proxy::start(&[
        "--upstream-proxy",
        &url,
        "--resolve",
        &pin,
        "--system-roots",
        &trusted,
    ])
    .await;
    echoes(proxy.addr, &format!("127.0.0.1:{}", echo.port())).await;
    // Plain HTTP goes inside the TLS too, in absolute form.
    let plain = origin().await;
    let reply = get(proxy.addr, &format!("http://{plain}/hello")).await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "hello"));
    let session = proxy.stop().await;
    let tunnel = &session.events_of("tunnel")[0];
    let hop = format!("HTTPS proxy.corp.test:{}", squid.port);
    assert_eq!(tunnel["route"], hop.as_str(), "{tunnel}");
    assert_eq!(session.events_of("request")[0]["route"], hop.as_str());
    // The proxy's own chain is judged like any: signed by a root only this machine trusts,
    // it is inspection on the proxy's row (other traffic), never ChatGPT's verdict.
    let proxy_row = session.host("proxy.corp.test", squid.port);
    assert_eq!(proxy_row["tls"]["verdict"], "inspected", "{proxy_row}");
    assert!(proxy_row["allowlist"].is_null());
    assert!(
        proxy_row["findings"].to_string().contains("tls_inspection"),
        "{proxy_row}"
    );

    // The same proxy for a machine that does not trust its CA.
    let proxy = Proxy::start(&["--upstream-proxy", &url, "--resolve", &pin]).await;
    let (_, head) = raw_connect(proxy.addr, &format!("127.0.0.1:{}", echo.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let session = proxy.stop().await;
    let failure = &session.events_of("tunnel")[0]["failure"];
    assert_eq!(failure["kind"], "proxy_tls_failed", "{failure}");
    assert!(
        failure["detail"]
            .as_str()
            .unwrap()
            .contains("issued by CN=Corp Proxy Root"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_through_diagproxy_reaches_a_host_the_pac_sends_through_socks() {
    if !dante_present() || !require_tool("chromium") {
        return;
    }
    let dante = Dante::start();
    let plain = origin().await;
    let pac = pac_server(format!(
        "function FindProxyForURL(u, h) {{ return 'SOCKS 127.0.0.1:{}; DIRECT'; }}",
        dante.port
    ))
    .await;
    let source = format!("pac:http://{pac}/proxy.pac");
    // Not a ChatGPT name: chatgpt.com is HSTS-preloaded, so Chromium would ask for HTTPS.
    let pin = format!("origin.socks.test:{}:127.0.0.1", plain.port());
    let proxy = Proxy::start(&["--upstream-proxy", &source, "--resolve", &pin]).await;
    let url = format!("http://origin.socks.test:{}/hello", plain.port());
    let server = format!("--proxy-server=http://{}", proxy.addr);
    let browser_proxy = proxy.addr;
    let loaded = tokio::task::spawn_blocking(move || {
        let _ = browser_proxy;
        let mut browser = common::chromium::Browser::open(&url, &[&server]);
        browser.wait_for(
            "document.body && document.body.innerText.includes('hello')",
            std::time::Duration::from_secs(10),
        )
    })
    .await
    .unwrap();
    assert!(loaded, "the page loads through diagproxy and dante");
    let session = proxy.stop().await;
    let request = session
        .events_of("request")
        .into_iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with("/hello")))
        .unwrap_or_else(|| panic!("{:#?}", session.events));
    assert_eq!(request["status"], 200, "{request}");
    assert_eq!(
        request["route"],
        format!("SOCKS4 127.0.0.1:{}", dante.port),
        "{request}"
    );
    let host = session.host("origin.socks.test", plain.port());
    assert!(host["routes"].to_string().contains("SOCKS4"), "{host}");
}

/// An in-process diagproxy with `--upstream-user` (and its password) over `args`.
async fn with_account(args: &[&str]) -> Proxy {
    Proxy::start_with(args, |config| {
        config.upstream_auth = std::sync::Arc::new(diagproxy::upstream::auth::Settings {
            user: Some(
                diagproxy::upstream::auth::Credentials::parse(SOCKS_USER, SOCKS_PASSWORD.into())
                    .unwrap(),
            ),
            ..Default::default()
        });
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_username_and_password_from_the_url_or_upstream_user_and_never_to_a_pac() {
    if !dante_present() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("DIAGPROXY_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "dante's username method needs a system account, which only root can make"
        );
        eprintln!("SKIPPED: dante's username method needs a system account (root only)");
        return;
    }
    let dante = Dante::with_password();
    let echo = echo_server().await;
    let target = format!("127.0.0.1:{}", echo.port());
    let at = format!("127.0.0.1:{}", dante.port);
    // In the URL: in; a wrong password or none: socks_auth_failed.
    let good = format!("socks5://{SOCKS_USER}:{SOCKS_PASSWORD}@{at}");
    let proxy = Proxy::start(&["--upstream-proxy", &good]).await;
    echoes(proxy.addr, &target).await;
    proxy.stop().await;
    for url in [
        format!("socks5://{SOCKS_USER}:wrong@{at}"),
        format!("socks5://{at}"),
    ] {
        let proxy = Proxy::start(&["--upstream-proxy", &url]).await;
        let (_, head) = raw_connect(proxy.addr, &target, "").await;
        assert!(head.contains("socks_auth_failed"), "{url}: {head}");
        let session = proxy.stop().await;
        let text = session.events_of("tunnel")[0].to_string();
        assert!(
            !text.contains("wrong") && !text.contains(SOCKS_PASSWORD),
            "{text}"
        );
    }
    // --upstream-user for the SOCKS server the user named: in.
    let named = format!("socks5://{at}");
    let proxy = with_account(&["--upstream-proxy", &named]).await;
    echoes(proxy.addr, &target).await;
    proxy.stop().await;
    // The same server named only by a PAC: the password is not sent.
    let pac = pac_server(format!(
        "function FindProxyForURL(u, h) {{ return 'SOCKS5 {at}'; }}"
    ))
    .await;
    let source = format!("pac:http://{pac}/proxy.pac");
    let proxy = with_account(&["--upstream-proxy", &source]).await;
    let (_, head) = raw_connect(proxy.addr, &target, "").await;
    assert!(head.contains("socks_auth_failed"), "{head}");
    proxy.stop().await;

    // auth-test: username/password works with the account, is skipped without one (exit 2).
    let auth_test = |user: Option<&str>| {
        let mut command = diagproxy();
        command.args(["auth-test", &target, "--upstream-proxy", &named, "--json"]);
        if let Some(user) = user {
            command
                .args(["--upstream-user", user])
                .env("DIAGPROXY_UPSTREAM_PASSWORD", SOCKS_PASSWORD);
        }
        let out = command.output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), json)
    };
    let (code, json) = auth_test(Some(SOCKS_USER));
    assert_eq!(code, Some(0), "{json:#}");
    let socks = &json["proxies"][0];
    assert_eq!(socks["answer"], "wants a username and password", "{json:#}");
    assert_eq!(socks["schemes"][0]["state"], "ok", "{json:#}");
    let (code, json) = auth_test(None);
    assert_eq!(code, Some(2), "{json:#}");
    assert_eq!(
        json["proxies"][0]["schemes"][0]["state"], "skipped",
        "{json:#}"
    );
}
