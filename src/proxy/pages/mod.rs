//! The proxy's own pages, for requests addressed to it directly: `/` and what it uses (the
//! live page, in `live`), `/summary.json` (the live summary), `/proxy.pac` (routes the
//! profile's hosts through this proxy) and `/ca.pem`. Every page first checks `Host`.
//! [`answer`] holds the answers diagproxy gives in its own name on every path (the 502/504
//! that explain a failure, the 400/407/508 refusals).

pub(super) mod answer;
pub(super) mod live;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, SET_COOKIE};
use hyper::{Request, Response, StatusCode};

use self::answer::plain;
use self::live::REENABLE;
use crate::profile::Profile;
use crate::proxy::body::{full, Body};
use crate::proxy::Shared;
use crate::shutdown::Shutdown;
use crate::upstream::addr::join as host_port;

pub async fn serve(req: &Request<Incoming>, state: &Shared, shutdown: Shutdown) -> Response<Body> {
    let host = req.headers().get(HOST).and_then(|h| h.to_str().ok());
    if !host.is_none_or(|h| addresses_us(h, state.listen)) {
        // DNS rebinding: a web page that made its own name point at 127.0.0.1 must not
        // read the session through the browser.
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "diagproxy: its pages answer only to an IP address, localhost or the listen address in Host\n".into(),
        );
    }
    let path = req.uri().path();
    if matches!(path, "/proxy.pac" | "/ca.pem" | PROVE) {
        return public(req, state);
    }
    let key = key(req, &state.config.live_token, state.listen.port());
    if key == Key::Missing {
        return plain(
            StatusCode::FORBIDDEN,
            "diagproxy: this page needs the session's token: open the live-page URL diagproxy \
             printed when it started (http://127.0.0.1:PORT/?token=…)\n"
                .into(),
        );
    }
    let mut response = keyed(req, state, shutdown).await;
    if key == Key::Query {
        // The token once in the URL, then a cookie for the page's own requests (as Jupyter
        // does); one cookie per port, so two sessions on one machine do not mix.
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            cookie_name(state.listen.port()),
            state.config.live_token
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(SET_COOKIE, value);
        }
    }
    response
}

/// The pages anyone on the machine may read: a browser needs the PAC, and a device the CA,
/// before it can be given a token.
fn public(req: &Request<Incoming>, state: &Shared) -> Response<Body> {
    if req.uri().path() == PROVE {
        return prove(req, state);
    }
    if req.uri().path() == "/proxy.pac" {
        let proxy = pac_proxy_address(req, state);
        return page(
            pac(&state.config.profile, &proxy),
            "application/x-ns-proxy-autoconfig",
        );
    }
    match std::fs::read_to_string(state.config.ca_dir.join(crate::tls::ca::CERT_FILE)) {
        Ok(pem) => page(pem, "application/x-x509-ca-cert"),
        Err(_) => plain(
            StatusCode::NOT_FOUND,
            "diagproxy: no local CA yet; create one with `diagproxy ca init`\n".into(),
        ),
    }
}

/// `GET /api/prove?nonce=HEX`: the nonce signed with the CA key (base64), so `diagproxy
/// browser` trusts the CA in its `--ca-dir` only for a proxy that holds it. Public: it
/// tells nothing about the session, and signs only `diagproxy-ca-proof\0` + nonce.
const PROVE: &str = "/api/prove";

fn prove(req: &Request<Incoming>, state: &Shared) -> Response<Body> {
    use base64::Engine;
    let Some(minter) = &state.minter else {
        return plain(
            StatusCode::NOT_FOUND,
            "diagproxy: not intercepting, so no CA to prove\n".into(),
        );
    };
    let nonce = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("nonce="))
        .unwrap_or_default();
    match minter.ca().prove(nonce) {
        Ok(sig) => page(
            base64::engine::general_purpose::STANDARD.encode(sig),
            "text/plain",
        ),
        Err(why) => plain(StatusCode::BAD_REQUEST, format!("diagproxy: {why}\n")),
    }
}

/// How a request to the session's pages showed the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// `?token=…` in the URL: the answer sets the cookie.
    Query,
    /// The cookie, `X-Diagproxy-Token` or `Authorization: Bearer` (scripts, Prometheus).
    Kept,
    Missing,
}

fn cookie_name(port: u16) -> String {
    format!("diagproxy_token_{port}")
}

fn key(req: &Request<Incoming>, token: &str, port: u16) -> Key {
    let in_query = req.uri().query().is_some_and(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .any(|(k, v)| k == "token" && crate::text::same_secret(v.as_bytes(), token.as_bytes()))
    });
    if in_query {
        return Key::Query;
    }
    let name = cookie_name(port);
    let in_cookie = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| k == name && crate::text::same_secret(v.as_bytes(), token.as_bytes()));
    let in_header = req
        .headers()
        .get("x-diagproxy-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| crate::text::same_secret(v.as_bytes(), token.as_bytes()));
    let in_bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|v| crate::text::same_secret(v.trim().as_bytes(), token.as_bytes()));
    if in_cookie || in_header || in_bearer {
        Key::Kept
    } else {
        Key::Missing
    }
}

/// The pages behind the token.
async fn keyed(req: &Request<Incoming>, state: &Shared, shutdown: Shutdown) -> Response<Body> {
    let path = req.uri().path();
    if path == REENABLE {
        return reenable(req, state);
    }
    if let Some(asset) = live::asset(path) {
        return asset;
    }
    if let Some(id) = path.strip_prefix("/api/event/") {
        return live::event(state, id);
    }
    if let Some(sha) = path.strip_prefix("/api/body/") {
        return live::body(state, sha).await;
    }
    match path {
        "/" => live::page(state),
        "/events" => live::events(req, state, shutdown),
        "/api/overview" => live::overview_page(state),
        "/session.har" | "/report.html" | "/bundle.zip" => live::download(state, path).await,
        "/summary.json" => page(summary_json(state), "application/json"),
        "/metrics" if state.config.metrics => page(metrics(state), crate::metrics::CONTENT_TYPE),
        path => plain(
            StatusCode::NOT_FOUND,
            format!(
                "diagproxy: no page {path}. Pages: / (live) /events /summary.json /session.har /report.html /bundle.zip /metrics (with --metrics) /proxy.pac /ca.pem.\n\
                 To use the proxy, configure it as the HTTP and HTTPS proxy (e.g. curl -x http://{}).\n",
                state.listen
            ),
        ),
    }
}

/// `/metrics` (`run --metrics`): the session's counters, folded from the live summary.
fn metrics(state: &Shared) -> String {
    let summary = match state.summary.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    crate::metrics::proxy::exposition(
        &summary,
        state.open.load(std::sync::atomic::Ordering::Relaxed),
        state.recorder.dropped(),
    )
}

/// `POST /passthrough/reenable?host=H&port=P`: intercept a passed-through host:port again,
/// then back to `/`. Only from this proxy's own page or a non-browser client: a request a
/// browser sends from another site (its `Origin` or `Sec-Fetch-Site` says so) is refused.
fn reenable(req: &Request<Incoming>, state: &Shared) -> Response<Body> {
    if req.method() != hyper::Method::POST {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "diagproxy: POST only\n".into(),
        );
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let cross_site = header("origin").is_some_and(|o| !is_own_origin(o, state.listen))
        || header("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none");
    if cross_site {
        return plain(
            StatusCode::FORBIDDEN,
            "diagproxy: not from another site\n".into(),
        );
    }
    let query = req.uri().query().unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let (Some(host), Some(port)) = (param("host"), param("port").and_then(|p| p.parse().ok()))
    else {
        return plain(
            StatusCode::BAD_REQUEST,
            "diagproxy: needs ?host=H&port=P\n".into(),
        );
    };
    if !state.trust.reenable(&host, port) {
        return plain(
            StatusCode::NOT_FOUND,
            format!("diagproxy: {} is not passed through\n", escape(&host)),
        );
    }
    let mut response = plain(StatusCode::SEE_OTHER, "intercepting again\n".into());
    response
        .headers_mut()
        .insert(hyper::header::LOCATION, HeaderValue::from_static("/"));
    response
}

/// Whether an `Origin` is this proxy's own page: `http://` and the listener's port, on a
/// loopback address, `localhost` or the listen address (a page of another local server,
/// on another port, is another site).
fn is_own_origin(origin: &str, listen: std::net::SocketAddr) -> bool {
    let Some(authority) = origin.strip_prefix("http://") else {
        return false;
    };
    let Some(hp) = crate::upstream::HostPort::parse(authority, 80) else {
        return false;
    };
    let host = crate::upstream::addr::unbracket(&hp.host);
    let local = host.eq_ignore_ascii_case("localhost")
        || host == listen.ip().to_string()
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    hp.port == listen.port() && local
}

/// Whether a `Host` names this proxy as only a local user would: an IP literal,
/// `localhost`, or the listen address.
fn addresses_us(host: &str, listen: std::net::SocketAddr) -> bool {
    let name = crate::upstream::HostPort::parse(host, listen.port()).map(|hp| hp.host);
    match name {
        Some(name) => {
            name.parse::<std::net::IpAddr>().is_ok()
                || name.eq_ignore_ascii_case("localhost")
                || name == listen.ip().to_string()
        }
        None => false,
    }
}

fn page(body: String, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn summary_json(state: &Shared) -> String {
    match state.summary.lock() {
        Ok(summary) => summary.to_json(),
        Err(poisoned) => poisoned.into_inner().to_json(),
    }
}

/// The address a PAC file should name: the listen address, or the one the client used to
/// reach us when listening on every interface.
fn pac_proxy_address(req: &Request<Incoming>, state: &Shared) -> String {
    if !state.listen.ip().is_unspecified() {
        return state.listen.to_string();
    }
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .map_or_else(
            || host_port("127.0.0.1", state.listen.port()),
            str::to_string,
        )
}

/// A PAC file sending the profile's hosts through `proxy`, everything else DIRECT.
pub fn pac(profile: &Profile, proxy: &str) -> String {
    let mut tests = Vec::new();
    for entry in &profile.entries {
        let pattern = entry.pattern.to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) => tests.push(format!(
                "host == \"{suffix}\" || dnsDomainIs(host, \".{suffix}\")"
            )),
            None => tests.push(format!("host == \"{pattern}\"")),
        }
    }
    format!(
        "// diagproxy: send the {} profile's hosts through diagproxy, everything else direct.\n\
         function FindProxyForURL(url, host) {{\n  host = host.toLowerCase();\n  if ({}) {{\n    return \"PROXY {proxy}\";\n  }}\n  return \"DIRECT\";\n}}\n",
        profile.name,
        tests.join(" ||\n      ")
    )
}

fn escape(text: &str) -> String {
    crate::text::html(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pac_routes_profile_hosts_only() {
        let text = pac(&Profile::builtin(), "127.0.0.1:8080");
        assert!(text.contains("host == \"chatgpt.com\" || dnsDomainIs(host, \".chatgpt.com\")"));
        assert!(text.contains("host == \"js.stripe.com\""));
        assert!(text.contains("return \"PROXY 127.0.0.1:8080\";"));
        assert!(text.trim_end().ends_with('}'));
        assert!(text.contains("return \"DIRECT\";"));
    }

    #[test]
    fn escape_html() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("CN=EVIL\x1b]0;x\x07"), "CN=EVIL\\x1b]0;x\\x07");
    }

    #[test]
    fn only_the_listeners_own_origin_is_same_site() {
        let listen: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            assert!(is_own_origin(ok, listen), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:8081",
            "http://127.0.0.1",
            "http://10.1.2.3:8080",
            "https://127.0.0.1:8080",
            "http://evil.example:8080",
            "null",
        ] {
            assert!(!is_own_origin(bad, listen), "{bad}");
        }
    }

    #[test]
    fn pages_answer_only_to_local_names() {
        let listen: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "192.168.1.5:8080",
        ] {
            assert!(addresses_us(ok, listen), "{ok}");
        }
        for bad in ["evil.example:8080", "rebind.attacker.test", "", "a b"] {
            assert!(!addresses_us(bad, listen), "{bad}");
        }
    }
}
