//! A filtering proxy's refusals named from their own headers and pages, against a real
//! squid (Debian's; CI installs `squid`): a CONNECT denied with squid's error page and
//! `X-Squid-Error`, and one answered with a `deny_info` redirect to a block host.

mod common;

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
