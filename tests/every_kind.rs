//! The finding and failure kinds that were only unit-tested, produced through the proxy:
//! `redirect_off_allowlist`, `upstream_error`, `proxy_header`, `unexpected_content` (HTML for
//! the API, and a body cut short), `dns_sinkhole` (its answer injected through the test
//! resolver, so nothing dials the sinkhole) and `connect_failed` (the loopback-only guard
//! refusing that address). Each is asserted positively: its kind, its vendor, its evidence.

mod common;

use std::net::IpAddr;

use common::*;
use serde_json::Value;

/// The findings of the request for `path`, as (kind, vendor).
fn findings_of(events: &[Value], path: &str) -> Vec<(String, String)> {
    let event = events
        .iter()
        .find(|e| e["url"].as_str().is_some_and(|u| u.ends_with(path)))
        .unwrap_or_else(|| panic!("no request for {path}"));
    event["findings"]
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

fn pair(kind: &str, vendor: &str) -> (String, String) {
    (kind.to_string(), vendor.to_string())
}

#[tokio::test]
async fn answers_a_gateway_rewrites() {
    let gateway = canned_origin(vec![
        canned(
            "/login",
            302,
            &[(
                "location",
                "https://sso.corp.example/login?next=chatgpt.com",
            )],
            "",
        ),
        canned(
            "/backend-api/models",
            502,
            &[("content-type", "application/json")],
            "{\"error\":\"bad gateway\"}",
        ),
        canned(
            "/backend-api/me",
            200,
            &[
                ("content-type", "application/json"),
                ("via", "1.1 10.0.0.12 (McAfee Web Gateway 7.8.2.12.0.26493)"),
            ],
            "{\"id\":\"user-1\"}",
        ),
        canned(
            "/backend-api/conversation",
            200,
            &[("content-type", "text/html; charset=utf-8")],
            "<html><body><p>Please sign in to continue</p></body></html>",
        ),
    ])
    .await;
    let cut = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"partial\":";
    let (scripted, _) = scripted_origin(vec![(cut, true)]).await;
    let pins = [
        format!("chatgpt.com:{}:127.0.0.1", gateway.port()),
        format!("files.oaiusercontent.com:{}:127.0.0.1", scripted.port()),
    ];
    let proxy = Proxy::start(&["--resolve", &pins[0], "--resolve", &pins[1]]).await;
    let base = format!("http://chatgpt.com:{}", gateway.port());
    for path in [
        "/login",
        "/backend-api/models",
        "/backend-api/me",
        "/backend-api/conversation",
    ] {
        get(proxy.addr, &format!("{base}{path}")).await;
    }
    // The body stops at 11 of 100 bytes: the client gets an error, the session a finding.
    let cut_url = format!("http://files.oaiusercontent.com:{}/file-1", scripted.port());
    let raw = raw_exchange(
        proxy.addr,
        format!("GET {cut_url} HTTP/1.1\r\nHost: files.oaiusercontent.com\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let events = proxy.wait_events("request", 5).await;
    proxy.stop().await;

    let redirect = findings_of(&events, "/login");
    assert_eq!(redirect, vec![pair("redirect_off_allowlist", "-")]);
    let error = findings_of(&events, "/backend-api/models");
    assert_eq!(error, vec![pair("upstream_error", "-")]);
    let header = findings_of(&events, "/backend-api/me");
    assert_eq!(
        header,
        vec![pair("proxy_header", "McAfee / Skyhigh Web Gateway")]
    );
    let html = findings_of(&events, "/backend-api/conversation");
    assert_eq!(html, vec![pair("unexpected_content", "-")]);
    let cut_short = events
        .iter()
        .find(|e| e["url"] == cut_url.as_str())
        .expect("the cut request");
    let finding = &cut_short["findings"][0];
    assert_eq!(finding["kind"], "unexpected_content", "{cut_short:#}");
    assert_eq!(finding["evidence"], "Content-Length 100, 11 bytes arrived");
}

#[tokio::test]
async fn a_sinkhole_answer_is_named_and_never_dialled() {
    let sinkhole: IpAddr = "146.112.61.106".parse().unwrap();
    let proxy = Proxy::start_with(&[], |config| {
        config
            .dns_answers
            .insert("files.oaiusercontent.com".into(), vec![sinkhole]);
        config
            .dns_answers
            .insert("ab.chatgpt.com".into(), vec![sinkhole]);
    })
    .await;
    let plain = get(proxy.addr, "http://files.oaiusercontent.com/upload").await;
    assert_eq!(plain.status, 502);
    assert_eq!(plain.header("x-diagproxy-error"), Some("connect_failed"));
    let (_, head) = raw_connect(proxy.addr, "ab.chatgpt.com:443", "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(head.contains("DIAGPROXY_LOOPBACK_ONLY"), "{head}");
    proxy.wait_events("tunnel", 1).await;
    let session = proxy.stop().await;
    for (host, port) in [("files.oaiusercontent.com", 80), ("ab.chatgpt.com", 443)] {
        let h = session.host(host, port);
        assert_eq!(h["failures"]["connect_failed"], 1, "{h:#}");
        let sink = h["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "dns_sinkhole")
            .unwrap_or_else(|| panic!("{h:#}"));
        assert_eq!(sink["vendor"], "Cisco Umbrella");
        assert_eq!(
            sink["evidence"],
            format!("{host} resolved to 146.112.61.106 (in 146.112.61.0/24)")
        );
    }
}
