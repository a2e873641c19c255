//! A [`Finding`]: one observation an administrator can act on, and its [`FindingKind`], whose
//! order of seriousness is defined here once and used by the verdict, the tables and the
//! reports.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::failure::FailureKind;
use crate::profile::Profile;
use crate::upstream::auth::AuthFailure;

/// What a finding is about. Serialised as its snake_case name (`block_page`, or a failure
/// kind such as `dns_failed`), the same strings `summary.json` has always carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// The network re-signs TLS with a locally installed root.
    TlsInspection,
    /// A chain that neither the public roots nor this machine trust.
    UntrustedCertificate,
    /// The client refused diagproxy's own certificate (interception).
    ClientRejectedCa,
    /// A security product's block page instead of the server's answer.
    BlockPage,
    /// A redirect from an allowlisted host to one outside the allowlist.
    RedirectOffAllowlist,
    /// HTML where JSON or an event stream was expected, or a body cut short.
    UnexpectedContent,
    /// A header a proxy product adds (Via, X-Cache, a vendor header).
    ProxyHeader,
    /// Cloudflare's bot challenge instead of the answer.
    CloudflareChallenge,
    /// Plaintext (often a block page) where a TLS server hello was due.
    NonTlsInTunnel,
    /// A reset right after the ClientHello: SNI filtering.
    ResetAfterClientHello,
    /// Silence after the ClientHello: a firewall that drops by SNI instead of resetting.
    NoServerHello,
    /// A DNS answer in a filter's block range.
    DnsSinkhole,
    /// An error answer from the origin or a gateway in front of it.
    UpstreamError,
    /// The PAC file could not be fetched or run, or gave no usable answer: DIRECT instead.
    PacError,
    /// The profile's hosts take different ways out (some via a proxy, some DIRECT).
    SplitRoute,
    /// DIRECT failed while the network names a proxy for other hosts.
    DirectBlocked,
    /// A proxy the route names could not be reached.
    ProxyUnreachable,
    /// A WebSocket upgrade answered without `101` by the network (a filtering proxy that
    /// drops `Upgrade`): streaming answers and voice signalling fail.
    WebsocketBlocked,
    /// Signing in to the corporate proxy failed, and why (`proxy_auth_no_ticket`, …).
    ProxyAuth(AuthFailure),
    /// A connection or exchange that failed, named by its failure kind.
    Failure(FailureKind),
}

/// Every kind a detector can produce (failures aside), for tables and tests.
pub const DETECTED: [FindingKind; 23] = [
    FindingKind::TlsInspection,
    FindingKind::UntrustedCertificate,
    FindingKind::ClientRejectedCa,
    FindingKind::BlockPage,
    FindingKind::RedirectOffAllowlist,
    FindingKind::UnexpectedContent,
    FindingKind::ProxyHeader,
    FindingKind::CloudflareChallenge,
    FindingKind::NonTlsInTunnel,
    FindingKind::ResetAfterClientHello,
    FindingKind::NoServerHello,
    FindingKind::DnsSinkhole,
    FindingKind::UpstreamError,
    FindingKind::PacError,
    FindingKind::SplitRoute,
    FindingKind::DirectBlocked,
    FindingKind::ProxyUnreachable,
    FindingKind::WebsocketBlocked,
    FindingKind::ProxyAuth(AuthFailure::NoTicket),
    FindingKind::ProxyAuth(AuthFailure::ClockSkew),
    FindingKind::ProxyAuth(AuthFailure::Spn),
    FindingKind::ProxyAuth(AuthFailure::Rejected),
    FindingKind::ProxyAuth(AuthFailure::Unsupported),
];

impl FindingKind {
    /// The contract name, as in `summary.json` and the profile's `findings` table.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::TlsInspection => "tls_inspection",
            FindingKind::UntrustedCertificate => "untrusted_certificate",
            FindingKind::ClientRejectedCa => "client_rejected_ca",
            FindingKind::BlockPage => "block_page",
            FindingKind::RedirectOffAllowlist => "redirect_off_allowlist",
            FindingKind::UnexpectedContent => "unexpected_content",
            FindingKind::ProxyHeader => "proxy_header",
            FindingKind::CloudflareChallenge => "cloudflare_challenge",
            FindingKind::NonTlsInTunnel => "non_tls_in_tunnel",
            FindingKind::ResetAfterClientHello => "reset_after_client_hello",
            FindingKind::NoServerHello => "no_server_hello",
            FindingKind::DnsSinkhole => "dns_sinkhole",
            FindingKind::UpstreamError => "upstream_error",
            FindingKind::PacError => "pac_error",
            FindingKind::SplitRoute => "split_route",
            FindingKind::DirectBlocked => "direct_blocked",
            FindingKind::ProxyUnreachable => "proxy_unreachable",
            FindingKind::WebsocketBlocked => "websocket_blocked",
            FindingKind::ProxyAuth(why) => why.as_str(),
            FindingKind::Failure(kind) => kind.as_str(),
        }
    }

    /// The kind named `name`, a detector's or a failure's.
    pub fn parse(name: &str) -> Option<FindingKind> {
        Some(match name {
            "tls_inspection" => FindingKind::TlsInspection,
            "untrusted_certificate" => FindingKind::UntrustedCertificate,
            "client_rejected_ca" => FindingKind::ClientRejectedCa,
            "block_page" => FindingKind::BlockPage,
            "redirect_off_allowlist" => FindingKind::RedirectOffAllowlist,
            "unexpected_content" => FindingKind::UnexpectedContent,
            "proxy_header" => FindingKind::ProxyHeader,
            "cloudflare_challenge" => FindingKind::CloudflareChallenge,
            "non_tls_in_tunnel" => FindingKind::NonTlsInTunnel,
            "reset_after_client_hello" => FindingKind::ResetAfterClientHello,
            "no_server_hello" => FindingKind::NoServerHello,
            "dns_sinkhole" => FindingKind::DnsSinkhole,
            "upstream_error" => FindingKind::UpstreamError,
            "pac_error" => FindingKind::PacError,
            "split_route" => FindingKind::SplitRoute,
            "direct_blocked" => FindingKind::DirectBlocked,
            "proxy_unreachable" => FindingKind::ProxyUnreachable,
            "websocket_blocked" => FindingKind::WebsocketBlocked,
            other => match AuthFailure::parse(other) {
                Some(why) => FindingKind::ProxyAuth(why),
                None => FindingKind::Failure(FailureKind::parse(other)?),
            },
        })
    }

    /// Lower is more serious: what stops ChatGPT outright comes first.
    pub fn severity(self) -> u8 {
        use FailureKind as F;
        use FindingKind as K;
        match self {
            K::BlockPage
            | K::DnsSinkhole
            | K::ResetAfterClientHello
            | K::NoServerHello
            | K::NonTlsInTunnel => 0,
            K::Failure(
                F::UpstreamProxyRefused
                | F::UpstreamProxyAuth
                | F::SocksRefused
                | F::SocksAuthFailed
                | F::ProxyTlsFailed,
            )
            | K::WebsocketBlocked
            | K::RedirectOffAllowlist
            | K::ProxyAuth(_)
            | K::DirectBlocked => 1,
            K::UntrustedCertificate | K::TlsInspection | K::ProxyUnreachable | K::PacError => 2,
            K::Failure(
                F::DnsFailed
                | F::ConnectRefused
                | F::ConnectTimeout
                | F::ConnectFailed
                | F::Reset
                | F::TlsFailed
                | F::Timeout,
            ) => 3,
            K::UnexpectedContent | K::CloudflareChallenge | K::ClientRejectedCa | K::SplitRoute => {
                4
            }
            K::ProxyHeader | K::UpstreamError | K::Failure(F::HttpError) => 5,
            K::Failure(F::ClientNotTls | F::ClientHandshakeFailed | F::ClientHandshakeTimeout) => 6,
        }
    }
}

impl FindingKind {
    /// Whether the kind means ChatGPT (or part of it) fails on this network — a block,
    /// inspection, a reset, a silent drop, a failed connection — rather than a warning
    /// (unexpected content, a challenge, a proxy's header, a 5xx) or the client's own doing.
    pub fn is_error(self) -> bool {
        self.severity() <= 3
    }

    /// The kind in words, for people who do not read identifiers (the report's first page).
    pub fn in_words(self) -> &'static str {
        use FailureKind as F;
        use FindingKind as K;
        match self {
            K::TlsInspection => "TLS re-signed (inspection)",
            K::UntrustedCertificate => "untrusted certificate",
            K::ClientRejectedCa => "the client refused diagproxy's CA",
            K::BlockPage => "blocked (block page)",
            K::RedirectOffAllowlist => "redirected off the allowlist",
            K::UnexpectedContent => "unexpected answer (rewritten or cut)",
            K::ProxyHeader => "passes a security proxy",
            K::CloudflareChallenge => "Cloudflare challenge",
            K::NonTlsInTunnel => "plain-HTTP answer where TLS was due",
            K::ResetAfterClientHello => "reset after the host was named (SNI filter)",
            K::NoServerHello => "silently dropped after the host was named",
            K::DnsSinkhole => "DNS answers with a block address",
            K::UpstreamError => "server error (5xx)",
            K::PacError => "the proxy script (PAC) failed",
            K::SplitRoute => "hosts take different ways out",
            K::DirectBlocked => "direct connection blocked (the network wants its proxy)",
            K::ProxyUnreachable => "a corporate proxy does not answer",
            K::WebsocketBlocked => "WebSocket upgrade refused by the network",
            K::ProxyAuth(AuthFailure::NoTicket) => "proxy sign-in: no Kerberos ticket",
            K::ProxyAuth(AuthFailure::ClockSkew) => "proxy sign-in: clocks differ too much",
            K::ProxyAuth(AuthFailure::Spn) => "proxy sign-in: proxy name unknown to Kerberos",
            K::ProxyAuth(AuthFailure::Rejected) => "proxy sign-in: credentials refused",
            K::ProxyAuth(AuthFailure::Unsupported) => "proxy sign-in: no usable scheme",
            K::Failure(F::DnsFailed) => "name does not resolve",
            K::Failure(F::ConnectRefused) => "connection refused",
            K::Failure(F::ConnectTimeout) => "connection timed out",
            K::Failure(F::ConnectFailed) => "connection failed",
            K::Failure(F::Reset) => "connection reset",
            K::Failure(F::UpstreamProxyRefused) => "refused by the corporate proxy",
            K::Failure(F::UpstreamProxyAuth) => "the corporate proxy wants sign-in",
            K::Failure(F::TlsFailed) => "TLS handshake failed",
            K::Failure(F::HttpError) => "broken HTTP answer",
            K::Failure(F::Timeout) => "no answer in time",
            K::Failure(F::SocksRefused) => "refused by the SOCKS proxy",
            K::Failure(F::SocksAuthFailed) => "the SOCKS proxy refused the sign-in",
            K::Failure(F::ProxyTlsFailed) => "TLS to the HTTPS proxy failed",
            K::Failure(F::ClientNotTls) => "the client spoke no TLS after CONNECT",
            K::Failure(F::ClientHandshakeFailed) => "the client's TLS handshake failed",
            K::Failure(F::ClientHandshakeTimeout) => "the client's TLS handshake timed out",
        }
    }
}

/// The most serious of `findings` (the first seen among equals).
pub fn worst<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> Option<&'a Finding> {
    findings
        .into_iter()
        .fold(None, |worst: Option<&Finding>, f| match worst {
            Some(w) if w.kind.severity() <= f.kind.severity() => Some(w),
            _ => Some(f),
        })
}

impl Finding {
    /// The kind in words, with the vendor ("blocked (block page) by Zscaler").
    pub fn in_words(&self) -> String {
        match &self.vendor {
            Some(v) => format!("{} — {v}", self.kind.in_words()),
            None => self.kind.in_words().to_string(),
        }
    }

    /// `kind (vendor)`, as tables show a finding in one cell.
    pub fn label(&self) -> String {
        match &self.vendor {
            Some(v) => format!("{} ({v})", self.kind),
            None => self.kind.to_string(),
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for FindingKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for FindingKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FindingKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        FindingKind::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown finding kind {name:?}")))
    }
}

/// An observation, the product responsible when known, the evidence, what breaks, what to
/// change, and how to see the same thing without diagproxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub host: String,
    pub vendor: Option<String>,
    /// The status, header or marker that matched.
    pub evidence: String,
    /// What breaks for the user (from the profile entry), when the host is in the profile.
    pub feature: Option<String>,
    /// One sentence saying what was seen.
    pub detail: String,
    pub remedy: String,
    /// The curl command that shows the same thing through the same path.
    pub reproduce: Option<String>,
    /// What the user saw, for a block page: its title and first 300 characters of text
    /// (tags stripped, control characters and URL secrets removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

impl Finding {
    /// A finding of `kind` for `host`, with the feature and remedy from the profile
    /// (`HOST` and `VENDOR` in the remedy are filled in).
    pub fn new(
        profile: &Profile,
        kind: FindingKind,
        host: &str,
        vendor: Option<String>,
        evidence: String,
        detail: String,
    ) -> Finding {
        let vendor_name = vendor.as_deref().unwrap_or("the security product");
        let remedy = profile
            .finding(kind.as_str())
            .map_or_else(String::new, |h| {
                h.remedy
                    .replace("HOST", host)
                    .replace("VENDOR", vendor_name)
            });
        let feature = profile.match_host(host).map(|e| e.breaks.clone());
        Finding {
            kind,
            host: host.to_string(),
            vendor,
            evidence,
            feature,
            detail,
            remedy,
            reproduce: None,
            excerpt: None,
        }
    }

    pub fn with_reproduce(mut self, command: Option<String>) -> Finding {
        self.reproduce = command;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_equals_its_contract_name_only() {
        assert!(FindingKind::BlockPage == "block_page");
        assert!(FindingKind::BlockPage != "dns_sinkhole");
        let failure = FindingKind::Failure(FailureKind::Reset);
        assert!(failure == "reset" && failure != "block_page");
    }

    #[test]
    fn names_round_trip() {
        for kind in DETECTED {
            assert_eq!(FindingKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<FindingKind>(&json).unwrap(), kind);
        }
        let failure = FindingKind::Failure(FailureKind::DnsFailed);
        assert_eq!(serde_json::to_string(&failure).unwrap(), "\"dns_failed\"");
        assert_eq!(FindingKind::parse("dns_failed"), Some(failure));
        assert_eq!(FindingKind::parse("no_such_kind"), None);
    }

    #[test]
    fn worst_is_the_most_serious_and_the_first_among_equals() {
        let p = Profile::builtin();
        let f = |kind, vendor: &str| {
            Finding::new(
                &p,
                kind,
                "chatgpt.com",
                Some(vendor.into()),
                String::new(),
                String::new(),
            )
        };
        let found = [
            f(FindingKind::ProxyHeader, "a"),
            f(FindingKind::TlsInspection, "b"),
            f(FindingKind::BlockPage, "c"),
            f(FindingKind::NoServerHello, "d"),
        ];
        assert_eq!(
            worst(&found).map(|w| w.label()),
            Some("block_page (c)".into())
        );
        assert_eq!(
            worst(&found[..2]).map(|w| w.kind),
            Some(FindingKind::TlsInspection)
        );
        assert!(worst(&[]).is_none());
        assert!(FindingKind::TlsInspection.is_error());
        assert!(FindingKind::NoServerHello.is_error());
        assert!(FindingKind::Failure(FailureKind::ConnectTimeout).is_error());
        assert!(!FindingKind::ProxyHeader.is_error());
        assert!(!FindingKind::ClientRejectedCa.is_error());
        assert!(!FindingKind::UpstreamError.is_error());
    }

    #[test]
    fn what_stops_chatgpt_outright_is_most_serious() {
        assert!(FindingKind::BlockPage.severity() < FindingKind::TlsInspection.severity());
        assert!(
            FindingKind::TlsInspection.severity()
                < FindingKind::Failure(FailureKind::ConnectTimeout).severity()
        );
        assert!(
            FindingKind::Failure(FailureKind::UpstreamProxyAuth).severity()
                < FindingKind::UnexpectedContent.severity()
        );
    }
}
