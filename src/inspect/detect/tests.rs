//! Detector tests: one realistic fixture per vendor (from the field notes), and the answers
//! that must not become findings.

use super::*;

fn profile() -> Profile {
    Profile::builtin()
}

fn headers(list: &[(&str, &str)]) -> HeaderMap {
    list.iter()
        .map(|(n, v)| {
            (
                HeaderName::from_bytes(n.as_bytes()).expect("fixture header name"),
                HeaderValue::from_str(v).expect("fixture header value"),
            )
        })
        .collect()
}

/// Runs every response detector on one answer.
fn check(host: &str, path: &str, status: u16, head: &[(&str, &str)], body: &str) -> Vec<Finding> {
    let h = headers(head);
    let a = Answer {
        host,
        path,
        status,
        headers: &h,
        body: body.as_bytes(),
        accept: None,
        declared_length: None,
        received: None,
        intercepted: false,
    };
    answer_findings(&a, &profile())
}

fn only(found: &[Finding]) -> (&str, Option<&str>) {
    assert_eq!(found.len(), 1, "{found:#?}");
    (found[0].kind.as_str(), found[0].vendor.as_deref())
}

#[test]
fn mcafee_web_gateway() {
    let body = "<html><head><title>McAfee Web Gateway - Notification</title><link rel=\"stylesheet\" href=\"/mwg-internal/de5fs23hu73ds/files/default/stylesheet.css\"></head><!-- Message.TemplateName: urlblocked --><body>This website was blocked because of the site's category and/or reputation.</body></html>";
    let found = check(
        "chatgpt.com",
        "/",
        403,
        &[
            ("Via", "1.1 10.0.0.1 (McAfee Web Gateway 7.8.2.5.0.27349)"),
            ("Content-Type", "text/html"),
        ],
        body,
    );
    assert_eq!(
        only(&found),
        ("block_page", Some("McAfee / Skyhigh Web Gateway"))
    );
    assert!(
        found[0].evidence.contains("McAfee Web Gateway"),
        "{}",
        found[0].evidence
    );
    assert!(
        found[0].remedy.contains("chatgpt.com") && found[0].remedy.contains("McAfee"),
        "{}",
        found[0].remedy
    );
    assert_eq!(
        found[0].feature.as_deref(),
        Some("Everything: the app does not load or shows \"network error\"")
    );
}

#[test]
fn cisco_umbrella_page_and_redirect() {
    let body = "<html><body>This site has been blocked by the network administrator. <a href=\"https://block.opendns.com/?url=chatgpt.com\">more</a></body></html>";
    assert_eq!(
        only(&check(
            "chatgpt.com",
            "/",
            403,
            &[("Content-Type", "text/html")],
            body
        )),
        ("block_page", Some("Cisco Umbrella"))
    );
    let found = check(
        "files.oaiusercontent.com",
        "/upload",
        302,
        &[(
            "Location",
            "https://block.opendns.com/?url=files.oaiusercontent.com&server=ams",
        )],
        "",
    );
    assert_eq!(only(&found), ("block_page", Some("Cisco Umbrella")));
    assert_eq!(
        found[0].feature.as_deref(),
        Some("Uploads fail with \"a network problem was identified\"")
    );
}

#[test]
fn symantec_blue_coat() {
    let redirect = check(
        "chatgpt.com",
        "/",
        302,
        &[(
            "Location",
            "http://notify.bluecoat.com/notify-NotifyUser1?http%3A%2F%2Fchatgpt.com%2F",
        )],
        "",
    );
    assert_eq!(
        only(&redirect),
        ("block_page", Some("Broadcom Symantec / Blue Coat"))
    );
    let body = "<html><title>Access Denied</title><body>Your request was denied because of its content categorization: \"Artificial Intelligence\"<br>content_filter_denied</body></html>";
    assert_eq!(
        only(&check("chatgpt.com", "/", 403, &[], body)),
        ("block_page", Some("Broadcom Symantec / Blue Coat"))
    );
}

#[test]
fn palo_alto_pan_db_503() {
    let body = "<html><head><title>Web Page Blocked</title></head><body><p>Access to the web page you were trying to visit has been blocked in accordance with company policy. Please contact your system administrator if you believe this is in error.</p><p><b>User:</b> corp\\alice</p><p><b>URL:</b> chatgpt.com/</p><p><b>Category:</b> artificial-intelligence</p></body></html>";
    let found = check(
        "chatgpt.com",
        "/",
        503,
        &[("Content-Type", "text/html")],
        body,
    );
    assert_eq!(
        only(&found),
        ("block_page", Some("Palo Alto Networks PAN-DB")),
        "a block page is not an upstream_error"
    );
}

#[test]
fn zscaler_redirect_and_server_header() {
    let location = "https://gateway.zscalerthree.net/block?url=chatgpt.com&reason=Not+allowed+to+browse+Generative+AI+category&reasoncode=CATEGORY_DENIED&zsq=abc";
    assert_eq!(
        only(&check(
            "chatgpt.com",
            "/",
            307,
            &[("Location", location)],
            ""
        )),
        ("block_page", Some("Zscaler"))
    );
    let refusal = check(
        "chatgpt.com",
        "/",
        403,
        &[("Server", "Zscaler/6.2"), ("Content-Type", "text/html")],
        "<html><body>Sorry, you don't have permission</body></html>",
    );
    assert_eq!(only(&refusal), ("block_page", Some("Zscaler")));
}

#[test]
fn sophos_redirect_to_8090() {
    let found = check("chatgpt.com", "/", 307, &[("Location", "https://192.168.1.1:8090/ips/block/webcat?cat=123&pl=1&lu=0&url=aHR0cHM6Ly9jaGF0Z3B0LmNvbS8="), ("Content-Length", "0")], "");
    assert_eq!(only(&found), ("block_page", Some("Sophos Firewall")));
}

#[test]
fn barracuda_block_page_served_with_200() {
    let body = "<html><body><p>The link you are accessing has been blocked by the Barracuda Web Filter</p></body></html>";
    let found = check(
        "chatgpt.com",
        "/",
        200,
        &[("Via", "1.1 bwf (http_scan_byf/3.5.16)")],
        body,
    );
    assert_eq!(
        only(&found),
        ("block_page", Some("Barracuda Web Security Gateway"))
    );
}

#[test]
fn fortiguard_with_403_and_with_200() {
    let body = "<html><head><title>Web Filter Violation</title></head><body><h1>FortiGuard Intrusion Prevention - Access Blocked</h1><h3>Web Page Blocked</h3><p>You have tried to access a web page that is in violation of your Internet usage policy.</p><p>Category: Artificial Intelligence Technology</p><p>URL Source: Local URLfilter Block</p></body></html>";
    assert_eq!(
        only(&check("chatgpt.com", "/", 403, &[], body)),
        ("block_page", Some("Fortinet FortiGuard"))
    );
    assert_eq!(
        only(&check(
            "chatgpt.com",
            "/backend-api/conversation",
            200,
            &[("Content-Type", "text/html")],
            body
        )),
        ("block_page", Some("Fortinet FortiGuard"))
    );
}

#[test]
fn cisco_wsa_forcepoint_cloudflare_gateway() {
    let wsa = check("chatgpt.com", "/", 403, &[("Via", "1.1 wsa.corp:80 (Cisco-WSA/12.5.1-043)")], "<html><head><title>Notification: Policy: URL Filtering</title></head><body>This Page Cannot Be Displayed</body></html>");
    assert_eq!(only(&wsa), ("block_page", Some("Cisco WSA")));
    let forcepoint = check(
        "chatgpt.com",
        "/",
        403,
        &[],
        "<html><head><title>Access to this site is blocked</title></head></html>",
    );
    // A title other products use too: the vendor is a guess, and says so.
    assert_eq!(
        only(&forcepoint),
        ("block_page", Some("possibly Forcepoint"))
    );
    assert!(forcepoint[0].detail.contains("possibly Forcepoint"));
    assert!(forcepoint[0].remedy.contains("(possibly Forcepoint)"));
    let gateway = check(
        "chatgpt.com",
        "/",
        403,
        &[],
        "<html><body><h1>This site is blocked</h1><p>Cloudflare Gateway</p></body></html>",
    );
    assert_eq!(only(&gateway), ("block_page", Some("Cloudflare Gateway")));
}

#[test]
fn redirects_off_the_allowlist_and_inside_it() {
    assert!(
        check(
            "chat.openai.com",
            "/",
            301,
            &[("Location", "https://chatgpt.com/")],
            ""
        )
        .is_empty(),
        "inside the allowlist"
    );
    let away = check(
        "chatgpt.com",
        "/",
        302,
        &[(
            "Location",
            "https://login.corp.example/sso?next=chatgpt.com",
        )],
        "",
    );
    assert_eq!(only(&away), ("redirect_off_allowlist", None));
    let private = check(
        "chatgpt.com",
        "/",
        302,
        &[("Location", "http://10.1.2.3/portal")],
        "",
    );
    assert_eq!(only(&private), ("redirect_off_allowlist", None));
    assert!(private[0].detail.contains("private address"));
    let port = check(
        "chatgpt.com",
        "/",
        302,
        &[("Location", "https://chatgpt.com:6082/php/uid.php?vsys=1")],
        "",
    );
    assert_eq!(
        only(&port).0,
        "block_page",
        "the PAN captive portal path is a block page"
    );
    let port = check(
        "chatgpt.com",
        "/",
        302,
        &[("Location", "https://chatgpt.com:6081/continue")],
        "",
    );
    assert_eq!(
        only(&port),
        ("block_page", Some("Palo Alto Networks PAN-DB")),
        "PAN's continue page port"
    );
    let port = check(
        "chatgpt.com",
        "/",
        302,
        &[("Location", "https://chatgpt.com:8090/login")],
        "",
    );
    assert_eq!(only(&port), ("redirect_off_allowlist", None));
    assert!(port[0].detail.contains("block-page port"));
    assert!(
        check(
            "example.org",
            "/",
            302,
            &[("Location", "https://elsewhere.example/")],
            ""
        )
        .is_empty(),
        "hosts outside the profile may redirect anywhere"
    );
    assert!(
        check("chatgpt.com", "/", 302, &[("Location", "/auth/login")], "").is_empty(),
        "relative redirects stay on the host"
    );
}

#[test]
fn html_where_the_api_answers_json() {
    let found = check(
        "chatgpt.com",
        "/backend-api/conversation",
        200,
        &[("Content-Type", "text/html; charset=utf-8")],
        "<html><body>Please sign in to the corporate portal</body></html>",
    );
    assert_eq!(only(&found), ("unexpected_content", None));
    let h = headers(&[("Content-Type", "application/json")]);
    let cut = Answer {
        host: "chatgpt.com",
        path: "/x",
        status: 200,
        headers: &h,
        body: b"",
        accept: None,
        declared_length: Some(1000),
        received: Some(512),
        intercepted: false,
    };
    assert_eq!(
        only(&answer_findings(&cut, &profile())),
        ("unexpected_content", None)
    );
    let h = headers(&[("Content-Type", "text/html")]);
    let sse = Answer {
        host: "chatgpt.com",
        path: "/c/abc",
        status: 200,
        headers: &h,
        body: b"<html>",
        accept: Some("text/event-stream"),
        declared_length: None,
        received: None,
        intercepted: false,
    };
    assert_eq!(
        only(&answer_findings(&sse, &profile())),
        ("unexpected_content", None)
    );
}

#[test]
fn legitimate_answers_are_not_findings() {
    assert!(check(
        "chat.openai.com",
        "/",
        301,
        &[("Location", "https://chatgpt.com/")],
        ""
    )
    .is_empty());
    let json_error = "{\"detail\":\"Unauthorized - Access token is missing\"}";
    assert!(check(
        "chatgpt.com",
        "/backend-api/me",
        401,
        &[("Content-Type", "application/json")],
        json_error
    )
    .is_empty());
    let home = "<!DOCTYPE html><html><head><title>ChatGPT</title></head><body><div id=\"__next\"></div></body></html>";
    assert!(check(
        "chatgpt.com",
        "/",
        200,
        &[("Content-Type", "text/html")],
        home
    )
    .is_empty());
    assert!(check(
        "cdn.oaistatic.com",
        "/assets/app.js",
        200,
        &[("Content-Type", "application/javascript")],
        ""
    )
    .is_empty());
}

#[test]
fn proxy_headers_on_ordinary_answers() {
    let found = check(
        "chatgpt.com",
        "/backend-api/me",
        200,
        &[
            ("Content-Type", "application/json"),
            ("Via", "1.1 10.0.0.1 (McAfee Web Gateway 7.8.2)"),
        ],
        "{}",
    );
    assert_eq!(
        only(&found),
        ("proxy_header", Some("McAfee / Skyhigh Web Gateway"))
    );
    let found = check(
        "chatgpt.com",
        "/",
        200,
        &[("X-Barracuda-WF-Category", "ai")],
        "{}",
    );
    assert_eq!(
        only(&found),
        ("proxy_header", Some("Barracuda Web Security Gateway"))
    );
    assert!(check("chatgpt.com", "/", 200, &[("Via", "1.1 varnish")], "{}").is_empty());
}

/// Two products' headers on one answer: the profile's order decides, not the answer's (the
/// McAfee `Via` entry comes before Sophos's header in the profile).
#[test]
fn of_two_proxy_headers_the_profiles_first_entry_is_named() {
    let found = check(
        "chatgpt.com",
        "/",
        200,
        &[
            ("X-Sophos-Filter", "1"),
            ("Via", "1.1 varnish"),
            ("Via", "1.1 proxy (McAfee Web Gateway 7.8.2)"),
        ],
        "{}",
    );
    assert_eq!(
        only(&found),
        ("proxy_header", Some("McAfee / Skyhigh Web Gateway"))
    );
    assert!(
        found[0].evidence.contains("McAfee Web Gateway 7.8.2"),
        "{:?}",
        found[0].evidence
    );
    // A name that only ends like a known one is not it.
    assert!(check(
        "chatgpt.com",
        "/",
        200,
        &[("X-Via", "McAfee Web Gateway")],
        "{}"
    )
    .is_empty());
}

#[test]
fn cloudflare_challenges_and_the_interception_hint() {
    let body = "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body><script src=\"/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1\"></script></body></html>";
    let found = check(
        "chatgpt.com",
        "/",
        403,
        &[("Server", "cloudflare"), ("cf-mitigated", "challenge")],
        body,
    );
    assert_eq!(only(&found), ("cloudflare_challenge", Some("Cloudflare")));
    assert!(!found[0].detail.contains("intercepted"));
    let h = headers(&[("Server", "cloudflare")]);
    let a = Answer {
        host: "chatgpt.com",
        path: "/",
        status: 403,
        headers: &h,
        body: body.as_bytes(),
        accept: None,
        declared_length: None,
        received: None,
        intercepted: true,
    };
    let found = answer_findings(&a, &profile());
    assert_eq!(only(&found).0, "cloudflare_challenge");
    assert!(
        found[0].detail.contains("tunnel this host"),
        "{}",
        found[0].detail
    );
}

#[test]
fn upstream_5xx_is_separate_from_blocks() {
    let found = check(
        "chatgpt.com",
        "/backend-api/conversation",
        502,
        &[("Content-Type", "application/json")],
        "{\"error\":\"bad gateway\"}",
    );
    assert_eq!(only(&found), ("upstream_error", None));
}

#[test]
fn plaintext_in_a_tunnel_with_a_block_page_inside() {
    let bytes = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html><head><title>Web Filter Violation</title></head></html>";
    let sight = TunnelSight {
        host: "chatgpt.com",
        client_hello: true,
        first_upstream: bytes,
        bytes_down: bytes.len() as u64,
        upstream_died: false,
        silent_for: None,
    };
    let found = tunnel_findings(&sight, &profile());
    let kinds: Vec<&str> = found.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, vec!["non_tls_in_tunnel", "block_page"]);
    assert_eq!(found[1].vendor.as_deref(), Some("Fortinet FortiGuard"));
    assert!(found[0].evidence.contains("HTTP/1.1 403 Forbidden"));
}

#[test]
fn reset_right_after_the_client_hello() {
    let sight = TunnelSight {
        host: "chatgpt.com",
        client_hello: true,
        first_upstream: b"",
        bytes_down: 0,
        upstream_died: true,
        silent_for: None,
    };
    assert_eq!(
        only(&tunnel_findings(&sight, &profile())),
        ("reset_after_client_hello", None)
    );
    let fine = TunnelSight {
        host: "chatgpt.com",
        client_hello: true,
        first_upstream: b"\x16\x03\x03",
        bytes_down: 3,
        upstream_died: true,
        silent_for: None,
    };
    assert!(tunnel_findings(&fine, &profile()).is_empty());
    let no_tls = TunnelSight {
        host: "x",
        client_hello: false,
        first_upstream: b"",
        bytes_down: 0,
        upstream_died: true,
        silent_for: None,
    };
    assert!(tunnel_findings(&no_tls, &profile()).is_empty());
}

#[test]
fn silence_after_the_client_hello() {
    let silent = |secs: u64, died: bool, down: u64| TunnelSight {
        host: "chatgpt.com",
        client_hello: true,
        first_upstream: b"",
        bytes_down: down,
        upstream_died: died,
        silent_for: Some(std::time::Duration::from_secs(secs)),
    };
    let found = tunnel_findings(&silent(12, false, 0), &profile());
    assert_eq!(only(&found), ("no_server_hello", None));
    assert!(found[0].evidence.contains("12 s"), "{}", found[0].evidence);
    assert!(tunnel_findings(&silent(9, false, 0), &profile()).is_empty());
    assert!(tunnel_findings(&silent(30, false, 5), &profile()).is_empty());
    // A silence that ends in a reset is the reset's finding, not two.
    assert_eq!(
        only(&tunnel_findings(&silent(12, true, 0), &profile())),
        ("reset_after_client_hello", None)
    );
}

#[test]
fn block_page_in_a_corporate_proxy_refusal() {
    let found = proxy_refusal(
        "files.oaiusercontent.com",
        403,
        &[],
        "<html><title>Web Filter Violation</title></html>",
        &profile(),
    )
    .unwrap();
    assert_eq!(
        (found.kind.as_str(), found.vendor.as_deref()),
        ("block_page", Some("Fortinet FortiGuard"))
    );
    assert!(proxy_refusal("x", 403, &[], "denied", &profile()).is_none());
}

fn html() -> Vec<(String, String)> {
    vec![("content-type".into(), "text/html".into())]
}

#[test]
fn a_refusal_is_named_from_its_own_headers_and_words() {
    let p = profile();
    // tinyproxy's filter answer (src/reqs.c, data/templates/default.html).
    let tiny = "<html><head><title>403 Filtered</title></head><body><h1>Filtered</h1><p>The request you made has been filtered</p><hr /><p><em>Generated by <a href=\"https://tinyproxy.github.io/\">tinyproxy</a>.</em></p></body></html>";
    let found = proxy_refusal("chatgpt.com", 403, &html(), tiny, &p).unwrap();
    assert_eq!(found.vendor.as_deref(), Some("tinyproxy"), "{found:?}");
    // The same words from an unknown product: a block page, no vendor.
    let unknown = "<html><head><title>403 Filtered</title></head><body><h1>Filtered</h1><p>Request filtered.</p></body></html>";
    let found = proxy_refusal("chatgpt.com", 403, &html(), unknown, &p).unwrap();
    assert_eq!(
        (found.kind, found.vendor.as_deref()),
        (FindingKind::BlockPage, None)
    );
    // squid's header alone names it on its HTML error page.
    let mut squid = html();
    squid.push(("x-squid-error".into(), "ERR_ACCESS_DENIED 0".into()));
    let page = "<html><head><title>ERROR: The requested URL could not be retrieved</title></head><body><p><b>Access Denied.</b></p></body></html>";
    let found = proxy_refusal("chatgpt.com", 403, &squid, page, &p).unwrap();
    assert_eq!(found.vendor.as_deref(), Some("Squid"), "{found:?}");
    // A redirect with no body to a block host.
    let away = vec![("location".into(), "http://block.corp.example/?u=x".into())];
    let found = proxy_refusal("chatgpt.com", 302, &away, "", &p).unwrap();
    assert_eq!(found.kind, FindingKind::RedirectOffAllowlist);
    assert!(found
        .evidence
        .contains("Location: http://block.corp.example/?u=x"));
    // An unknown proxy's plain 403 stays a refusal, never a wrong vendor.
    assert!(proxy_refusal("chatgpt.com", 403, &html(), "<p>Forbidden</p>", &p).is_none());
}

#[test]
fn evidence_headers_are_kept_cut_and_named() {
    let mut headers = HeaderMap::new();
    headers.insert("server", "squid/5.7".parse().unwrap());
    headers.insert("x-squid-error", "ERR_ACCESS_DENIED 0".parse().unwrap());
    headers.insert("set-cookie", "secret=1".parse().unwrap());
    headers.insert("via", "x".repeat(1000).parse().unwrap());
    let kept = evidence_headers(&headers);
    let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["server", "via", "x-squid-error"]);
    assert!(kept[1].1.len() < 400 && kept[1].1.contains("truncated"));
}

#[test]
fn dns_sinkholes() {
    let p = profile();
    let umbrella = dns_sinkhole("chatgpt.com", &["146.112.61.104".parse().unwrap()], &p).unwrap();
    assert_eq!(
        (umbrella.kind.as_str(), umbrella.vendor.as_deref()),
        ("dns_sinkhole", Some("Cisco Umbrella"))
    );
    assert!(umbrella.remedy.contains("Cisco Umbrella"));
    assert_eq!(
        dns_sinkhole("chatgpt.com", &["0.0.0.0".parse().unwrap()], &p)
            .unwrap()
            .vendor,
        None
    );
    assert!(dns_sinkhole("chatgpt.com", &["127.0.0.1".parse().unwrap()], &p).is_some());
    assert!(dns_sinkhole("chatgpt.com", &["::1".parse().unwrap()], &p).is_some());
    assert!(dns_sinkhole("chatgpt.com", &["104.18.32.47".parse().unwrap()], &p).is_none());
    assert!(dns_sinkhole("chatgpt.com", &["146.112.62.1".parse().unwrap()], &p).is_none());
    assert!(dns_sinkhole("localhost", &["127.0.0.1".parse().unwrap()], &p).is_none());
}

/// The block-page fixtures (written from each product's template, `tests/fixtures/blockpages`)
/// with the status and headers they are served with and the vendor expected (`None`: the
/// generic rule). The integration test serves them through the proxy; here they run
/// straight through the detectors, so a broken rule fails the unit tests too.
/// A fixture: the page, its status, extra headers, the vendor expected.
type Fixture = (
    &'static str,
    u16,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

const FIXTURES: [Fixture; 14] = [
    (
        include_str!("../../../tests/fixtures/blockpages/fortiguard.html"),
        403,
        &[],
        Some("Fortinet FortiGuard"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/mcafee.html"),
        403,
        &[],
        Some("McAfee / Skyhigh Web Gateway"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/umbrella.html"),
        403,
        &[],
        Some("Cisco Umbrella"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/bluecoat.html"),
        403,
        &[],
        Some("Broadcom Symantec / Blue Coat"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/zscaler-200.html"),
        200,
        &[("server", "Zscaler/6.2")],
        Some("Zscaler"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/zscaler-web-page-blocked.html"),
        403,
        &[],
        Some("Zscaler"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/barracuda.html"),
        200,
        &[],
        Some("Barracuda Web Security Gateway"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/cisco-wsa.html"),
        403,
        &[],
        Some("Cisco WSA"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/forcepoint.html"),
        403,
        &[],
        Some("Forcepoint"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/panos.html"),
        503,
        &[],
        Some("Palo Alto Networks PAN-DB"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/cloudflare-gateway.html"),
        403,
        &[],
        Some("Cloudflare Gateway"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/iboss.html"),
        403,
        &[],
        Some("iboss"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/sophos.html"),
        403,
        &[],
        Some("Sophos Firewall"),
    ),
    (
        include_str!("../../../tests/fixtures/blockpages/access-denied.html"),
        403,
        &[],
        None,
    ),
];

#[test]
fn every_fixture_is_one_block_page_with_its_vendor_and_excerpt() {
    for (html, status, head, vendor) in FIXTURES {
        let mut head = head.to_vec();
        head.push(("content-type", "text/html"));
        let found = check("chatgpt.com", "/", status, &head, html);
        assert_eq!(only(&found), ("block_page", vendor), "{html:.80}");
        let excerpt = found[0].excerpt.as_deref().unwrap_or_default();
        assert!(excerpt.len() > 20 && !excerpt.contains('<'), "{excerpt}");
        // The same page from a host outside the profile: a vendor's page is still one, the
        // generic rule (no vendor) only speaks for allowlisted hosts.
        let elsewhere = check("intranet.example", "/", status, &head, html);
        match vendor {
            Some(v) => assert_eq!(only(&elsewhere), ("block_page", Some(v))),
            None => assert!(elsewhere.is_empty(), "{elsewhere:#?}"),
        }
    }
}

#[test]
fn the_generic_rule_needs_an_allowlisted_html_refusal_that_says_block() {
    let html = |title: &str, text: &str| {
        format!("<html><head><title>{title}</title></head><body><p>{text}</p></body></html>")
    };
    let denied = html("Access Denied", "Blocked by the security policy.");
    let kinds = |host: &str, path: &str, status: u16, head: &[(&str, &str)], body: &str| {
        check(host, path, status, head, body)
            .iter()
            .map(|f| (f.kind.as_str().to_string(), f.vendor.clone()))
            .collect::<Vec<_>>()
    };
    let html_type = [("content-type", "text/html")];
    let block = vec![("block_page".to_string(), None)];
    for status in [401, 403, 407, 451, 503] {
        assert_eq!(
            kinds("chatgpt.com", "/", status, &html_type, &denied),
            block,
            "{status}"
        );
    }
    // A 200 page only where the app expects JSON or an event stream.
    assert_eq!(
        kinds("chatgpt.com", "/backend-api/me", 200, &html_type, &denied)[0],
        block[0]
    );
    assert!(kinds("chatgpt.com", "/", 200, &html_type, &denied).is_empty());
    // Not from a host outside the profile, not from the origin's own CDN, not JSON, not
    // without a word that says block, not for a status outside the rule.
    assert!(kinds("example.org", "/", 403, &html_type, &denied).is_empty());
    let cdn = [("content-type", "text/html"), ("cf-ray", "8f00-AMS")];
    assert!(kinds("chatgpt.com", "/", 403, &cdn, &denied).is_empty());
    let cloudflare = [("content-type", "text/html"), ("server", "cloudflare")];
    assert!(kinds("chatgpt.com", "/", 403, &cloudflare, &denied).is_empty());
    let json = [("content-type", "application/json")];
    let api = "{\"detail\":\"Access denied: blocked by policy\"}";
    assert!(kinds("chatgpt.com", "/x", 403, &json, api).is_empty());
    let login = html(
        "Log in | ChatGPT",
        "Welcome back. Terms of use | Privacy policy",
    );
    assert!(kinds("chatgpt.com", "/auth/login", 401, &html_type, &login).is_empty());
    assert!(kinds("chatgpt.com", "/", 404, &html_type, &denied).is_empty());
}

#[test]
fn a_vendor_mark_outranks_a_shared_title_and_a_shared_title_says_possibly() {
    let page = |title: &str, text: &str| {
        format!("<html><head><title>{title}</title></head><body><p>{text}</p></body></html>")
    };
    let head = [("content-type", "text/html")];
    let named = check(
        "chatgpt.com",
        "/",
        403,
        &head,
        &page("Web Page Blocked", "Policy enforced by Zscaler."),
    );
    assert_eq!(only(&named), ("block_page", Some("Zscaler")));
    let shared = check(
        "chatgpt.com",
        "/",
        403,
        &head,
        &page("Web Page Blocked", "Go away."),
    );
    assert_eq!(
        only(&shared),
        ("block_page", Some("possibly Palo Alto Networks PAN-DB"))
    );
    // A product's own phrase beats another's shared title.
    let phrase = check(
        "chatgpt.com",
        "/",
        503,
        &head,
        &page(
            "Access to this site is blocked",
            "has been blocked in accordance with company policy",
        ),
    );
    assert_eq!(
        only(&phrase),
        ("block_page", Some("Palo Alto Networks PAN-DB"))
    );
    // A shared phrase in the body, not the title, is a guess too.
    let heading = check(
        "chatgpt.com",
        "/",
        403,
        &head,
        "<html><head><title>Notice</title></head><body><h1>This Page Cannot Be Displayed</h1></body></html>",
    );
    assert_eq!(only(&heading), ("block_page", Some("possibly Cisco WSA")));
    // A refusal that names its product is that product's, block words or not (Zscaler's
    // "Internet Security by Zscaler" 403).
    let refusal = check(
        "chatgpt.com",
        "/",
        403,
        &head,
        &page(
            "Internet Security by Zscaler",
            "Sorry, you don't have permission to visit this site.",
        ),
    );
    assert_eq!(only(&refusal), ("block_page", Some("Zscaler")));
    // A vendor's name on a page that does not read as a block, with a 200: not a block page.
    let mention = check(
        "chatgpt.com",
        "/",
        200,
        &head,
        &page("Docs", "Configure Zscaler for ChatGPT."),
    );
    assert!(
        mention.iter().all(|f| f.kind != FindingKind::BlockPage),
        "{mention:#?}"
    );
}

#[test]
fn a_body_is_cut_only_when_fewer_bytes_came_than_declared() {
    let headers = headers(&[("content-type", "application/json")]);
    let answer = |received| Answer {
        host: "chatgpt.com",
        path: "/backend-api/me",
        status: 200,
        headers: &headers,
        body: b"",
        accept: None,
        declared_length: Some(100),
        received: Some(received),
        intercepted: false,
    };
    assert!(unexpected_content(&answer(99), &profile()).is_some());
    assert!(unexpected_content(&answer(100), &profile()).is_none());
}

#[test]
fn the_app_expects_json_by_path_or_by_an_accept_without_html() {
    let headers = headers(&[("content-type", "text/html")]);
    let expects = |path: &str, accept: Option<&str>| {
        let a = Answer {
            host: "chatgpt.com",
            path,
            status: 200,
            headers: &headers,
            body: b"<html></html>",
            accept,
            declared_length: None,
            received: None,
            intercepted: false,
        };
        unexpected_content(&a, &profile()).is_some()
    };
    assert!(expects("/backend-api/x", None));
    assert!(expects("/api/x", None));
    assert!(expects("/v1/x", None));
    assert!(expects("/x", Some("application/json")));
    assert!(expects("/x", Some("text/event-stream")));
    assert!(!expects("/x", Some("application/json, text/html")));
    assert!(!expects("/x", Some("text/html")));
    assert!(!expects("/x", None));
}

#[test]
fn an_excerpt_loses_control_characters_and_url_secrets() {
    let page = "<html><head><title>Blocked\u{1b}[31m</title></head><body><p>Denied by policy: \
                https://chatgpt.com/c?access_token=sk-secret-1 was blocked.</p></body></html>";
    let found = check(
        "chatgpt.com",
        "/",
        403,
        &[("content-type", "text/html")],
        page,
    );
    let excerpt = found[0].excerpt.as_deref().unwrap();
    assert!(
        !excerpt.contains('\u{1b}') && !excerpt.contains("sk-secret-1"),
        "{excerpt}"
    );
    assert!(excerpt.contains("access_token=REDACTED"), "{excerpt}");
    assert!(excerpt.starts_with("Blocked"), "{excerpt}");
}

#[test]
fn each_redirect_says_why_it_is_off_the_allowlist() {
    let redirect = |to: &str| check("chatgpt.com", "/", 302, &[("location", to)], "");
    let outside = redirect("https://sso.corp.example/login");
    assert!(
        outside[0]
            .detail
            .ends_with("a host outside the allowlist (sso.corp.example)"),
        "{}",
        outside[0].detail
    );
    let private = redirect("http://10.1.2.3/login");
    assert!(
        private[0].detail.contains("a private address (10.1.2.3)"),
        "{}",
        private[0].detail
    );
    let port = redirect("https://chatgpt.com:8090/ips/block");
    assert!(
        port[0].detail.contains("a block-page port"),
        "{}",
        port[0].detail
    );
}

#[test]
fn a_challenge_needs_cloudflare_and_a_refusal_status_or_the_header() {
    let page = "<html><head><title>Just a moment...</title></head><body><script src=\"/cdn-cgi/challenge-platform/x\"></script></body></html>";
    let kinds = |status: u16, head: &[(&str, &str)]| {
        let mut head = head.to_vec();
        head.push(("content-type", "text/html"));
        check("chatgpt.com", "/", status, &head, page)
            .iter()
            .map(|f| f.kind.as_str().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(403, &[("server", "cloudflare")]),
        ["cloudflare_challenge"]
    );
    assert!(kinds(200, &[("server", "cloudflare")]).is_empty());
    assert!(!kinds(403, &[("server", "nginx")]).contains(&"cloudflare_challenge".to_string()));
    assert_eq!(
        kinds(200, &[("cf-mitigated", "challenge")]),
        ["cloudflare_challenge"]
    );
}

#[test]
fn every_5xx_is_an_upstream_error_and_4xx_is_not() {
    let json = [("content-type", "application/json")];
    for status in [500, 502, 599] {
        let found = check("chatgpt.com", "/backend-api/x", status, &json, "{}");
        assert_eq!(only(&found), ("upstream_error", None), "{status}");
    }
    assert!(check("chatgpt.com", "/backend-api/x", 499, &json, "{}").is_empty());
}

#[test]
fn a_plaintext_answers_headers_name_its_product() {
    let reply = b"HTTP/1.1 403 Forbidden\r\nServer: Zscaler/6.2\r\nContent-Type: text/html\r\n\r\n<html><head><title>Blocked</title></head><body>This site is blocked.</body></html>";
    let sight = TunnelSight {
        host: "chatgpt.com",
        client_hello: true,
        first_upstream: reply,
        bytes_down: reply.len() as u64,
        upstream_died: false,
        silent_for: None,
    };
    let found = tunnel_findings(&sight, &profile());
    let block = found
        .iter()
        .find(|f| f.kind == FindingKind::BlockPage)
        .unwrap();
    assert_eq!(block.vendor.as_deref(), Some("Zscaler"), "{found:#?}");
}

#[test]
fn private_addresses_and_cidr_ranges() {
    for ip in [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.1.1",
        "::1",
        "fd12::1",
        "fc00::2",
    ] {
        assert!(is_private(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["8.8.8.8", "104.18.32.47", "2606:4700::1", "fe80::1"] {
        assert!(!is_private(ip.parse().unwrap()), "{ip}");
    }
    let has = |cidr: &str, ip: &str| cidr_contains(cidr, ip.parse().unwrap());
    assert!(has("146.112.61.0/24", "146.112.61.106"));
    assert!(!has("146.112.61.0/24", "146.112.62.1"));
    assert!(has("146.112.61.104/32", "146.112.61.104"));
    assert!(!has("146.112.61.104/32", "146.112.61.105"));
    assert!(has("0.0.0.0/0", "203.0.113.9"));
    assert!(has("2001:db8::/32", "2001:db8:ffff::1"));
    assert!(!has("2001:db8::/32", "2001:db9::1"));
    assert!(has("::/0", "2606:4700::1"));
    assert!(has("2001:db8::1/128", "2001:db8::1"));
    assert!(!has("2001:db8::1/128", "2001:db8::2"));
    assert!(
        !has("1.2.3.0/33", "1.2.3.4"),
        "a v4 prefix past 32 bits is no range"
    );
    assert!(
        !has("::/129", "::1"),
        "a v6 prefix past 128 bits is no range"
    );
    assert!(!has("146.112.61.0/24", "::1"), "families do not mix");
    assert!(!has("146.112.61.0", "146.112.61.0"), "no prefix length");
    assert!(!has("nonsense/8", "10.0.0.1"));
}

#[test]
fn a_websocket_refused_is_the_networks_only_with_a_middlebox_in_the_way() {
    let p = profile();
    let proxy = Some("the proxy PROXY 10.0.0.1:3128");
    let found = websocket_refused("ws.chatgpt.com", "/ws", 502, proxy, &p).unwrap();
    assert_eq!(found.kind, FindingKind::WebsocketBlocked);
    assert_eq!(
        found.evidence,
        "status 502 to a WebSocket upgrade, through the proxy PROXY 10.0.0.1:3128"
    );
    // Nothing in the way: the server's own answer. A 101, a 401, another host: nothing.
    assert!(websocket_refused("ws.chatgpt.com", "/ws", 403, None, &p).is_none());
    assert!(websocket_refused("ws.chatgpt.com", "/ws", 101, proxy, &p).is_none());
    assert!(websocket_refused("ws.chatgpt.com", "/ws", 401, proxy, &p).is_none());
    assert!(websocket_refused("example.org", "/ws", 400, proxy, &p).is_none());
}

#[test]
fn privoxys_blocked_page_is_named_by_its_name() {
    // Privoxy answers "403 Request blocked by Privoxy" with a page that names it
    // (filters.c block_url); this page is modelled on its `blocked` template, not captured.
    let page = "<html><head><title>Request blocked (Privoxy@localhost)</title></head><body><h2>Request for blocked URL</h2><p>Your request for http://chatgpt.com/ was blocked.</p></body></html>";
    let found = proxy_refusal("chatgpt.com", 403, &html(), page, &profile()).unwrap();
    assert_eq!(found.vendor.as_deref(), Some("Privoxy"), "{found:?}");
}
