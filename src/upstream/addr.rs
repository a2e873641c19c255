//! `HostPort`: one host and port, with the IPv6 bracket rules in one place. Every
//! `host:port` diagproxy parses or prints goes through here.

use std::fmt;

/// A host (a DNS name or an IP literal, stored without brackets) and a port.
///
/// `H` is `String` for an owned value and `&str` to print one without allocating.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort<H = String> {
    /// The name or address, never bracketed.
    pub host: H,
    pub port: u16,
}

impl<H: AsRef<str>> HostPort<H> {
    pub fn new(host: H, port: u16) -> HostPort<H> {
        HostPort { host, port }
    }
}

impl HostPort<String> {
    /// `host:port` or `[v6]:port` → the host without brackets and the port; `default`
    /// when no port is given. `None` for an empty host or one with whitespace, `/` or `@`.
    pub fn parse(text: &str, default: u16) -> Option<HostPort> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            match after.strip_prefix(':') {
                Some(p) => (host, p.parse().ok()?),
                None if after.is_empty() => (host, default),
                None => return None,
            }
        } else {
            match text.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()?),
                None => (text, default),
            }
        };
        let bracketed = text.starts_with('[');
        let bad = |c: char| c.is_whitespace() || "/@[]".contains(c) || (c == ':' && !bracketed);
        if host.is_empty() || host.contains(bad) {
            return None;
        }
        Some(HostPort::new(host.to_string(), port))
    }
}

/// `host:port`, with brackets around IPv6 literals.
impl<H: AsRef<str>> fmt::Display for HostPort<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.as_ref();
        if host.contains(':') {
            write!(f, "[{host}]:{}", self.port)
        } else {
            write!(f, "{host}:{}", self.port)
        }
    }
}

/// `host:port` for a borrowed host (brackets around IPv6 literals).
pub fn join(host: &str, port: u16) -> String {
    HostPort::new(host, port).to_string()
}

/// A host as a URL authority writes it: an IPv6 literal in brackets.
pub fn bracket(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

/// A host as it may appear in a URL authority (`[::1]`) without its brackets.
pub fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// An authority (`user:pass@host:port`) without its userinfo, which is never forwarded.
pub fn without_userinfo(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, hostport)| hostport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        let hp = |h: &str, p| Some(HostPort::new(h.to_string(), p));
        assert_eq!(HostPort::parse("a.b:443", 80), hp("a.b", 443));
        assert_eq!(HostPort::parse("a.b", 80), hp("a.b", 80));
        assert_eq!(HostPort::parse("[::1]:8", 80), hp("::1", 8));
        assert_eq!(HostPort::parse("[::1]", 80), hp("::1", 80));
        assert_eq!(HostPort::parse(":443", 80), None);
        assert_eq!(HostPort::parse("a b:1", 80), None);
        assert_eq!(HostPort::parse("u@h:1", 80), None);
        assert_eq!(HostPort::parse("[::1]x", 80), None);
        // Found by the fuzzer: a bracket or colon outside the bracket form is no host.
        assert_eq!(HostPort::parse("]::0", 0), None);
        assert_eq!(HostPort::parse("::1:80", 0), None);
        assert_eq!(HostPort::parse("a]:80", 0), None);
    }

    #[test]
    fn printing() {
        assert_eq!(join("::1", 8), "[::1]:8");
        assert_eq!(join("a.b", 8), "a.b:8");
        assert_eq!(unbracket("[::1]"), "::1");
        assert_eq!(unbracket("a.b"), "a.b");
        assert_eq!(unbracket("[x"), "[x");
        assert_eq!(without_userinfo("u:p@a.b:80"), "a.b:80");
        assert_eq!(without_userinfo("a.b:80"), "a.b:80");
    }
}
