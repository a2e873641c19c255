//! Where the route comes from: `--upstream-proxy` ([`Spec`]), and for `auto` the order a
//! browser's platform follows — the environment, the desktop's settings (GNOME, KDE, macOS),
//! WPAD by DNS — else DIRECT. A discovered proxy or PAC that is diagproxy itself (the
//! system already points at it) is skipped with a warning.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::env::{from_env, Bypass, Manual};
use super::pac::load;
use super::resolve::targets;
pub use super::route::Spec;
use super::route::{parse_upstream_proxy, UpstreamProxy};
use super::router::{Router, Way};
use super::HostPort;
use crate::config::Config;

/// How long a desktop settings command (`gsettings`, `scutil`) may take.
const SETTINGS_TIMEOUT: Duration = Duration::from_secs(2);

/// What a desktop's settings say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Manual(Manual),
    Pac(String),
    /// "Find the proxy automatically": WPAD.
    Wpad,
}

/// The router for `config.upstream`. `listen` is diagproxy's own address (a proxy there is
/// skipped); `config.wpad_domain` replaces the machine's DNS search domains for WPAD.
pub async fn router(config: &Config, listen: SocketAddr) -> Router {
    let wpad_domain = config.wpad_domain.as_deref();
    match &config.upstream {
        Spec::Direct => Router::new(Way::Direct, "--upstream-proxy direct"),
        Spec::Fixed(p) => Router::new(Way::Fixed(p.clone().into()), "--upstream-proxy"),
        Spec::Socks(p) => Router::new(Way::Socks(p.clone().into()), "--upstream-proxy"),
        Spec::Pac(location) => pac_router(location, "--upstream-proxy", config).await,
        Spec::Auto => auto(wpad_domain, config, listen).await,
    }
}

async fn pac_router(location: &str, origin: &str, config: &Config) -> Router {
    let mut router = match load::load(location, config).await {
        Ok(pac) => Router::with_pac(Ok(pac), location, origin),
        Err((e, file)) => {
            let mut router = Router::with_pac(Err(e), location, origin);
            router.pac_file = file;
            router
        }
    };
    router.pac_trust = pac_trust(location, config);
    router
}

/// `--trust-pac-proxies`: the domain whose PAC proxies may get the password.
fn pac_trust(location: &str, config: &Config) -> Option<String> {
    config
        .upstream_auth
        .trust_pac_proxies
        .then(|| super::router::pac_domain(location))
}

async fn auto(wpad_domain: Option<&str>, config: &Config, listen: SocketAddr) -> Router {
    let mut warnings = Vec::new();
    let is_us = |p: &UpstreamProxy| targets(listen, &p.host, p.port);
    let (env, env_warnings) = from_env(|name| std::env::var(name).ok());
    warnings.extend(env_warnings);
    let mut router = None;
    if let Some(manual) = env.and_then(|m| without_us(m, "the environment", &is_us, &mut warnings))
    {
        router = Some(Router::new(Way::Manual(manual), "environment"));
    }
    if router.is_none() && wpad_domain.is_none() {
        if let Some((setting, origin)) = desktop().await {
            router = from_setting(setting, origin, config, listen, &is_us, &mut warnings).await;
        }
    }
    if router.is_none() {
        router = wpad(wpad_domain, config).await;
    }
    let mut router = router.unwrap_or_else(|| {
        Router::new(
            Way::Direct,
            "auto: no proxy in the environment, desktop settings or WPAD",
        )
    });
    router.warnings.extend(warnings);
    router
}

/// A manual setting without the proxies that are diagproxy itself; `None` when none is
/// left.
fn without_us(
    mut manual: Manual,
    from: &str,
    is_us: &(dyn Fn(&UpstreamProxy) -> bool + Sync),
    warnings: &mut Vec<String>,
) -> Option<Manual> {
    for slot in [&mut manual.https, &mut manual.http] {
        if slot.as_ref().is_some_and(|p| is_us(p)) {
            if let Some(p) = slot.take() {
                warnings.push(self_warning(from, &p.display()));
            }
        }
    }
    (!manual.is_empty()).then_some(manual)
}

fn self_warning(from: &str, what: &str) -> String {
    format!(
        "{from} points at diagproxy itself ({what}), skipped: give the corporate proxy or PAC \
         explicitly, e.g. --upstream-proxy pac:http://pac.corp/proxy.pac"
    )
}

async fn from_setting(
    setting: Setting,
    origin: &str,
    config: &Config,
    listen: SocketAddr,
    is_us: &(dyn Fn(&UpstreamProxy) -> bool + Sync),
    warnings: &mut Vec<String>,
) -> Option<Router> {
    match setting {
        Setting::Manual(m) => {
            without_us(m, origin, is_us, warnings).map(|m| Router::new(Way::Manual(m), origin))
        }
        Setting::Pac(url) if pac_is_us(&url, listen) => {
            warnings.push(self_warning(origin, &url));
            None
        }
        Setting::Pac(url) => Some(pac_router(&url, origin, config).await),
        Setting::Wpad => wpad(None, config).await,
    }
}

/// Whether a PAC URL is diagproxy's own `/proxy.pac`.
fn pac_is_us(url: &str, listen: SocketAddr) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    HostPort::parse(authority, 80).is_some_and(|hp| targets(listen, &hp.host, hp.port))
}

/// WPAD by DNS: `http://wpad.<domain>/wpad.dat` for the given domain, else each of the
/// machine's DNS search domains, walking up to two labels (never `wpad.<tld>`).
/// Skipped (without a given domain) under the loopback-only guard: it would ask real DNS.
async fn wpad(domain: Option<&str>, config: &Config) -> Option<Router> {
    let domains = match domain {
        Some(d) => vec![d.to_string()],
        None if config.loopback_only => return None,
        None => search_domains(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
    };
    // All candidates at once (at most 8), the most specific preferred: a network without
    // WPAD costs start-up one fetch time-out, not one per candidate.
    let candidates: Vec<String> = wpad_hosts(&domains).into_iter().take(8).collect();
    let fetches: Vec<_> = candidates
        .iter()
        .map(|candidate| {
            let (url, config) = (format!("http://{candidate}/wpad.dat"), config.clone());
            tokio::spawn(async move { load::load(&url, &config).await.ok().map(|pac| (pac, url)) })
        })
        .collect();
    for (candidate, fetch) in candidates.iter().zip(fetches) {
        if let Ok(Some((pac, url))) = fetch.await {
            let mut router = Router::with_pac(Ok(pac), &url, format!("WPAD {candidate}"));
            router.pac_trust = pac_trust(&url, config);
            return Some(router);
        }
    }
    None
}

/// `search`/`domain` lines of resolv.conf.
pub fn search_domains(resolv_conf: &str) -> Vec<String> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            matches!(words.next(), Some("search" | "domain"))
                .then(|| words.map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .filter(|d| d.contains('.') || !d.is_empty())
        .collect()
}

/// `wpad.a.b.corp`, `wpad.b.corp` for `a.b.corp`: up the tree, never above two labels.
pub fn wpad_hosts(domains: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for domain in domains {
        let labels: Vec<&str> = domain
            .trim_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
            .collect();
        for start in 0..labels.len().saturating_sub(1) {
            let host = format!("wpad.{}", labels[start..].join("."));
            if !out.contains(&host) {
                out.push(host);
            }
        }
    }
    out
}

/// The desktop's proxy setting, if it has one: GNOME, then KDE, then macOS.
async fn desktop() -> Option<(Setting, &'static str)> {
    if let Some(s) = gnome().await {
        return Some((s, "GNOME settings"));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let config_dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".config")));
    if let Some(text) = config_dir.and_then(|d| std::fs::read_to_string(d.join("kioslaverc")).ok())
    {
        if let Some(s) = kde(&text) {
            return Some((s, "KDE settings"));
        }
    }
    if cfg!(target_os = "macos") {
        let out = command("scutil", &["--proxy"]).await?;
        return macos(&out).map(|s| (s, "macOS settings"));
    }
    None
}

/// `gsettings` output without its quoting: `'manual'` → `manual`.
async fn gsetting(schema: &str, key: &str) -> Option<String> {
    let out = command("gsettings", &["get", schema, key]).await?;
    Some(out.trim().trim_matches('\'').to_string())
}

async fn command(program: &str, args: &[&str]) -> Option<String> {
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(SETTINGS_TIMEOUT, run)
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// GNOME's `org.gnome.system.proxy`: mode `manual` (host and port per scheme,
/// `ignore-hosts`) or `auto` (`autoconfig-url`, WPAD when empty).
async fn gnome() -> Option<Setting> {
    const BASE: &str = "org.gnome.system.proxy";
    match gsetting(BASE, "mode").await?.as_str() {
        "auto" => {
            let url = gsetting(BASE, "autoconfig-url").await.unwrap_or_default();
            Some(if url.is_empty() {
                Setting::Wpad
            } else {
                Setting::Pac(url)
            })
        }
        "manual" => {
            let mut manual = Manual::default();
            for (scheme, slot, from) in [
                ("https", 0, "GNOME settings (https)"),
                ("http", 1, "GNOME settings (http)"),
            ] {
                let schema = format!("{BASE}.{scheme}");
                let host = gsetting(&schema, "host").await.unwrap_or_default();
                let port = gsetting(&schema, "port")
                    .await
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0u16);
                let proxy = (!host.is_empty() && port != 0).then(|| {
                    UpstreamProxy {
                        host,
                        port,
                        authorization: None,
                        tls: false,
                        chosen: true,
                    }
                    .into()
                });
                if slot == 0 {
                    (manual.https, manual.https_from) = (proxy, from.into());
                } else {
                    (manual.http, manual.http_from) = (proxy, from.into());
                }
            }
            let ignore = gsetting(BASE, "ignore-hosts").await.unwrap_or_default();
            let list = ignore.trim_matches(['[', ']']).replace('\'', "");
            manual.bypass = Bypass::parse(&list, "GNOME ignore-hosts");
            (!manual.is_empty()).then_some(Setting::Manual(manual))
        }
        _ => None,
    }
}

/// KDE's `kioslaverc` `[Proxy Settings]`: `ProxyType` 1 manual, 2 PAC (`Proxy Config
/// Script`), 3 WPAD (0 none and 4 environment add nothing here).
pub fn kde(text: &str) -> Option<Setting> {
    let mut in_section = false;
    let mut keys = std::collections::HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[Proxy Settings]";
        } else if let Some((k, v)) = line.split_once('=').filter(|_| in_section) {
            keys.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let get = |k: &str| keys.get(k).map(String::as_str).unwrap_or_default();
    match get("ProxyType") {
        "2" if !get("Proxy Config Script").is_empty() => {
            Some(Setting::Pac(get("Proxy Config Script").to_string()))
        }
        "3" => Some(Setting::Wpad),
        "1" => {
            // `http://proxy.corp 8080` (KDE's form) or `http://proxy.corp:8080`.
            let proxy = |v: &str| -> Option<std::sync::Arc<UpstreamProxy>> {
                let v = v.trim().replacen(' ', ":", 1);
                let url = if v.contains("://") {
                    v
                } else {
                    format!("http://{v}")
                };
                parse_upstream_proxy(&url).ok().map(Into::into)
            };
            let manual = Manual {
                https: proxy(get("httpsProxy")),
                http: proxy(get("httpProxy")),
                bypass: Bypass::parse(get("NoProxyFor"), "KDE NoProxyFor"),
                https_from: "KDE settings (httpsProxy)".into(),
                http_from: "KDE settings (httpProxy)".into(),
            };
            (!manual.is_empty()).then_some(Setting::Manual(manual))
        }
        _ => None,
    }
}

/// `scutil --proxy` (macOS): a PAC URL when enabled, else WPAD, else the manual proxies.
pub fn macos(text: &str) -> Option<Setting> {
    let mut keys = std::collections::HashMap::new();
    let mut exceptions = Vec::new();
    let mut in_exceptions = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("ExceptionsList") {
            in_exceptions = true;
        } else if line == "}" {
            in_exceptions = false;
        } else if let Some((k, v)) = line.split_once(" : ") {
            if in_exceptions {
                exceptions.push(v.trim().to_string());
            } else {
                keys.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    let get = |k: &str| keys.get(k).map(String::as_str).unwrap_or_default();
    if get("ProxyAutoConfigEnable") == "1" && !get("ProxyAutoConfigURLString").is_empty() {
        return Some(Setting::Pac(get("ProxyAutoConfigURLString").to_string()));
    }
    if get("ProxyAutoDiscoveryEnable") == "1" {
        return Some(Setting::Wpad);
    }
    let proxy = |scheme: &str| -> Option<std::sync::Arc<UpstreamProxy>> {
        if get(&format!("{scheme}Enable")) != "1" {
            return None;
        }
        let host = get(&format!("{scheme}Proxy")).to_string();
        let port = get(&format!("{scheme}Port")).parse().ok()?;
        Some(
            UpstreamProxy {
                host,
                port,
                authorization: None,
                tls: false,
                chosen: true,
            }
            .into(),
        )
    };
    let manual = Manual {
        https: proxy("HTTPS"),
        http: proxy("HTTP"),
        bypass: Bypass::parse(&exceptions.join(","), "macOS ExceptionsList"),
        https_from: "macOS settings (HTTPSProxy)".into(),
        http_from: "macOS settings (HTTPProxy)".into(),
    };
    (!manual.is_empty()).then_some(Setting::Manual(manual))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wpad_walks_up_the_search_domains_but_not_to_the_tld() {
        let domains = search_domains(
            "nameserver 10.0.0.1\nsearch eu.corp.test corp.test\ndomain lab.example\n",
        );
        assert_eq!(domains, ["eu.corp.test", "corp.test", "lab.example"]);
        assert_eq!(
            wpad_hosts(&domains),
            ["wpad.eu.corp.test", "wpad.corp.test", "wpad.lab.example"]
        );
        assert!(wpad_hosts(&["test".to_string()]).is_empty());
    }

    #[test]
    fn kde_settings() {
        let pac = "[General]\nx=1\n[Proxy Settings]\nProxyType=2\nProxy Config Script=http://pac.corp/p.pac\n";
        assert_eq!(kde(pac), Some(Setting::Pac("http://pac.corp/p.pac".into())));
        assert_eq!(kde("[Proxy Settings]\nProxyType=3\n"), Some(Setting::Wpad));
        assert_eq!(kde("[Proxy Settings]\nProxyType=0\n"), None);
        let manual = "[Proxy Settings]\nProxyType=1\nhttpsProxy=http://proxy.corp 8080\nNoProxyFor=.local,chatgpt.com\n";
        let Some(Setting::Manual(m)) = kde(manual) else {
            panic!("manual")
        };
        let p = m.https.clone().unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 8080));
        assert_eq!(m.route(true, "ab.chatgpt.com", 443).0, None);
        assert!(kde("[Other]\nProxyType=2\nProxy Config Script=x\n").is_none());
    }

    #[test]
    fn macos_settings() {
        let pac = "<dictionary> {\n  ProxyAutoConfigEnable : 1\n  ProxyAutoConfigURLString : http://pac.corp/p.pac\n}\n";
        assert_eq!(
            macos(pac),
            Some(Setting::Pac("http://pac.corp/p.pac".into()))
        );
        let manual = "<dictionary> {\n  ExceptionsList : <array> {\n    0 : *.local\n    1 : chatgpt.com\n  }\n  HTTPSEnable : 1\n  HTTPSPort : 3128\n  HTTPSProxy : proxy.corp\n}\n";
        let Some(Setting::Manual(m)) = macos(manual) else {
            panic!("manual")
        };
        assert_eq!(m.https.as_ref().unwrap().port, 3128);
        assert!(m.http.is_none());
        assert_eq!(m.route(true, "chatgpt.com", 443).0, None);
        assert!(m.route(true, "openai.com", 443).0.is_some());
        assert_eq!(macos("<dictionary> {\n  HTTPEnable : 0\n}\n"), None);
    }

    #[test]
    fn a_pac_url_at_our_own_address_is_us() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(pac_is_us("http://127.0.0.1:8080/proxy.pac", listen));
        assert!(pac_is_us("http://localhost:8080/proxy.pac", listen));
        assert!(!pac_is_us("http://pac.corp/proxy.pac", listen));
        assert!(!pac_is_us("/etc/proxy.pac", listen));
    }
}
