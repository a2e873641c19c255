//! The route to a host: direct, or through the corporate proxy. Where the route source
//! (a fixed proxy today; PAC and system settings next) is parsed and consulted.

use base64::Engine;

use super::addr::HostPort;

/// This diagproxy's `Via` entry (RFC 9110 §7.6.3), added to every request it forwards and
/// every CONNECT it sends a corporate proxy. A request that already carries it has come
/// round in a loop (a proxy setting or a PAC that points back here) and is refused.
pub fn via() -> &'static str {
    static VIA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VIA.get_or_init(|| format!("1.1 diagproxy-{}", std::process::id()))
}

/// Whether `headers` carry this diagproxy's own `Via` entry.
pub fn came_through_us(headers: &hyper::HeaderMap) -> bool {
    let ours = via().as_bytes();
    headers.get_all(hyper::header::VIA).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|entry| entry.trim_ascii() == ours)
    })
}

/// How diagproxy reaches one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// A TCP connection straight to the host.
    Direct,
    /// CONNECT (or an absolute-form request) through this corporate proxy.
    Proxy(&'a UpstreamProxy),
}

impl<'a> Route<'a> {
    /// The route for every host when the source is one fixed proxy, or none.
    pub fn fixed(proxy: Option<&'a UpstreamProxy>) -> Route<'a> {
        proxy.map_or(Route::Direct, Route::Proxy)
    }
}

/// The corporate proxy: where it is and what to tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamProxy {
    pub host: String,
    pub port: u16,
    /// `Basic …`, sent as `Proxy-Authorization`.
    pub authorization: Option<String>,
}

impl UpstreamProxy {
    /// `http://host:port`, or `http://user:***@host:port`: safe to log and record.
    pub fn display(&self) -> String {
        let creds = if self.authorization.is_some() {
            "***@"
        } else {
            ""
        };
        format!(
            "http://{creds}{}",
            HostPort::new(self.host.as_str(), self.port)
        )
    }
}

pub fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// `http://[user:pass@]host[:port][/]`; user and password may be percent-encoded.
pub fn parse_upstream_proxy(url: &str) -> Result<UpstreamProxy, String> {
    // Never echo a password: the userinfo, if any, is shown as `***`.
    let shown = match url
        .split_once("://")
        .and_then(|(s, r)| Some((s, r.rsplit_once('@')?.1)))
    {
        Some((scheme, rest)) => format!("{scheme}://***@{rest}"),
        None => url.to_string(),
    };
    let err = |why: &str| {
        format!("--upstream-proxy {shown:?}: {why}; expected http://[user:pass@]host:port")
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| err("only http:// proxies are supported"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(err("a proxy URL has no path"));
    }
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let authorization = match userinfo {
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            Some(basic(&format!(
                "{}:{}",
                percent_decode(user),
                percent_decode(pass)
            )))
        }
        None => None,
    };
    let HostPort { host, port } =
        HostPort::parse(hostport, 80).ok_or_else(|| err("bad host or port"))?;
    Ok(UpstreamProxy {
        host,
        port,
        authorization,
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_proxy_urls() {
        let p = parse_upstream_proxy("http://corp:3128").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.authorization),
            ("corp", 3128, None)
        );
        let p = parse_upstream_proxy("http://u%40x:p%3Aw@10.1.2.3:8080/").unwrap();
        let expected = basic("u@x:p:w");
        assert_eq!(p.authorization.as_deref(), Some(expected.as_str()));
        assert_eq!(p.display(), "http://***@10.1.2.3:8080");
        assert_eq!(
            parse_upstream_proxy("http://[::1]:3128").unwrap().host,
            "::1"
        );
        assert!(parse_upstream_proxy("https://corp:3128").is_err());
        assert!(parse_upstream_proxy("corp:3128").is_err());
        assert!(parse_upstream_proxy("http://corp:notaport").is_err());
        let e = parse_upstream_proxy("http://u:PW@corp:notaport").unwrap_err();
        assert!(!e.contains("PW") && e.contains("***@corp:notaport"), "{e}");
    }
}
