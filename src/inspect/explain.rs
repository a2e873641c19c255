//! Findings that are not detected in bytes but follow from what the proxy already named: a
//! failure, a chain verdict, a client's refusal of diagproxy's certificate, and the findings
//! a failure itself carries (a sinkhole DNS answer, a block page in a proxy's refusal).

use super::detect;
use super::finding::{Finding, FindingKind};
use super::reproduce;
use crate::failure::Failure;
use crate::profile::Profile;
use crate::tls::chain::{TlsVerdict, Verdict};
use crate::upstream::route::Taken;

/// The finding a failure becomes: what failed, and the profile's next check and remedy.
pub fn finding_for(profile: &Profile, host: &str, failure: &Failure) -> Finding {
    let mut remedy = String::new();
    if let Some(hint) = profile.hint(failure.kind) {
        remedy.push_str(&hint.check.replace("HOST", &crate::text::shell(host)));
    }
    // The allowlist's remedy is for the network; a client's own failure has none there.
    let entry = profile
        .match_host(host)
        .filter(|_| !failure.kind.is_client());
    if let Some(entry) = entry {
        if !remedy.is_empty() {
            remedy.push_str(". ");
        }
        remedy.push_str(&format!(
            "{} ({}): {}",
            entry.pattern, entry.breaks, entry.remedy
        ));
    }
    let evidence = match failure.proxy_status {
        Some(status) => format!("{} (the corporate proxy answered {status})", failure.detail),
        None => failure.detail.clone(),
    };
    let mut finding = Finding::new(
        profile,
        FindingKind::Failure(failure.kind),
        host,
        None,
        evidence,
        failure.to_string(),
    );
    finding.remedy = remedy;
    finding
}

/// What one connection's route shows: the PAC that gave no answer (`pac_error`), proxies
/// that could not be reached (`proxy_unreachable`, whether the connection then fell back or
/// failed), and DIRECT failing where the network names a proxy for other hosts
/// (`direct_blocked`).
pub fn route_findings(
    profile: &Profile,
    host: &str,
    taken: &Taken,
    failure: Option<&Failure>,
    names_proxies: bool,
) -> Vec<Finding> {
    let mut found = Vec::new();
    let finding = |kind, evidence: String, detail: String| {
        Finding::new(profile, kind, host, None, evidence, detail)
    };
    if let Some(why) = &taken.pac_error {
        let detail = format!("{host} went DIRECT because the PAC gave no answer");
        found.push(finding(FindingKind::PacError, why.clone(), detail));
    }
    if let Some(auth) = &taken.proxy_auth {
        if let Some(why) = auth.failure {
            let scheme = auth.scheme.as_deref().unwrap_or("no scheme");
            let whom = auth.spn.as_deref().or(auth.user.as_deref());
            let whom = whom.map_or(String::new(), |w| format!(" ({w})"));
            let detail = format!(
                "{host}: signing in to {} with {scheme}{whom} failed",
                auth.proxy
            );
            let evidence = auth.detail.clone().unwrap_or_default();
            found.push(finding(FindingKind::ProxyAuth(why), evidence, detail));
        }
    }
    let hop = taken
        .hop
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    for failed in taken
        .route_failed
        .iter()
        .filter(|f| crate::upstream::route::hop_proxy(f).is_some())
    {
        let detail = format!("{host}: fell back to {hop}");
        found.push(finding(
            FindingKind::ProxyUnreachable,
            failed.clone(),
            detail,
        ));
    }
    let Some(failure) = failure.filter(|f| f.is_unreachable()) else {
        return found;
    };
    if crate::upstream::route::hop_proxy(&hop).is_some() {
        let detail = format!("{host}: {hop} did not answer, and no other way was left");
        found.push(finding(
            FindingKind::ProxyUnreachable,
            format!("{hop}: {}", failure.detail),
            detail,
        ));
    } else if hop == "DIRECT" && names_proxies {
        let detail = format!("{host} went DIRECT and failed, while this network names a proxy");
        found.push(finding(
            FindingKind::DirectBlocked,
            failure.detail.clone(),
            detail,
        ));
    }
    found
}

/// The failure of a TLS handshake with `at`, named from what the upstream sent first
/// (`first`), whether it dropped the connection (`died`) and the handshake's error (`None`:
/// nothing came for [`detect::NO_SERVER_HELLO`]): silence is `timeout`, plaintext HTTP is
/// `tls_failed` quoting its status line, a drop before any byte is `reset`.
pub fn handshake_failure(
    at: &str,
    first: &[u8],
    died: bool,
    error: Option<&std::io::Error>,
) -> Failure {
    use crate::failure::{FailureKind, Side};
    let (kind, detail) = match error {
        None => (
            FailureKind::Timeout,
            format!(
                "no answer to the TLS ClientHello for {at} in {} s",
                detect::NO_SERVER_HELLO.as_secs()
            ),
        ),
        Some(_) if first.starts_with(b"HTTP/") => {
            let line =
                String::from_utf8_lossy(first.split(|b| *b == b'\r').next().unwrap_or_default())
                    .into_owned();
            let line = crate::text::terminal(&line, false).into_owned();
            (
                FailureKind::TlsFailed,
                format!(
                    "the upstream answered the TLS ClientHello for {at} in plain HTTP ({line:?})"
                ),
            )
        }
        Some(e) if first.is_empty() && died => (
            FailureKind::Reset,
            format!("the upstream dropped the connection to {at} right after the ClientHello: {e}"),
        ),
        Some(e) => (
            FailureKind::TlsFailed,
            format!("TLS handshake with {at}: {e}"),
        ),
    };
    Failure::new(kind, Side::Upstream, detail)
}

/// `tls_inspection` or `untrusted_certificate` for a chain that is not public.
pub fn tls_finding(profile: &Profile, host: &str, port: u16, tls: &TlsVerdict) -> Option<Finding> {
    let kind = match tls.verdict {
        Verdict::Public => return None,
        Verdict::Inspected => FindingKind::TlsInspection,
        Verdict::Untrusted => FindingKind::UntrustedCertificate,
    };
    let by = tls
        .vendor
        .as_deref()
        .map_or(String::new(), |v| format!(" ({v})"));
    let why = tls.reason.as_deref().unwrap_or("-");
    let detail = match tls.verdict {
        Verdict::Inspected => format!(
            "TLS for {host}:{port} is re-signed by {}{by}: the public roots reject it ({why}) but this machine's trust store accepts it",
            tls.issuer
        ),
        _ => format!("TLS for {host}:{port} is signed by {}{by}, which neither the public roots nor this machine trust ({why})", tls.issuer),
    };
    let mismatch = if why.starts_with("NotValidForName") {
        "; name mismatch"
    } else {
        ""
    };
    let evidence = format!("issuer {}; root {}{mismatch}", tls.issuer, tls.root);
    Some(Finding::new(
        profile,
        kind,
        host,
        tls.vendor.clone(),
        evidence,
        detail,
    ))
}

/// A re-signed (or untrusted) chain on a host whose route is a corporate proxy: the proxy
/// is where it happens, so the finding says so ("re-signed by the proxy PROXY host:port"),
/// and names the product from the proxy's own headers (`Via: … (squid/5.7)`) when the
/// issuer named none. Once per finding.
pub fn resigned_by_proxy(
    finding: &mut Finding,
    hop: &str,
    proxy_headers: &[(String, String)],
    profile: &Profile,
) {
    let chain = matches!(
        finding.kind,
        FindingKind::TlsInspection | FindingKind::UntrustedCertificate
    );
    let proxied = crate::upstream::route::hop_proxy(hop).is_some();
    if !chain || !proxied || finding.detail.contains("by the proxy") {
        return;
    }
    finding
        .detail
        .push_str(&format!("; re-signed by the proxy {hop}"));
    if finding.vendor.is_none() {
        finding.vendor = proxy_product(proxy_headers, profile);
        if let Some(vendor) = &finding.vendor {
            finding
                .evidence
                .push_str(&format!("; the proxy's own headers name {vendor}"));
        }
    }
}

/// The product a proxy's headers name: the profile's security-product headers, then the
/// header markers of its block-page signatures (squid's `Via`).
fn proxy_product(headers: &[(String, String)], profile: &Profile) -> Option<String> {
    let has = |name: &str, part: &str| {
        headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case(name)
                && v.to_ascii_lowercase().contains(&part.to_ascii_lowercase())
        })
    };
    let named = profile
        .proxy_headers
        .iter()
        .find(|h| !h.contains.is_empty() && has(&h.header, &h.contains))
        .map(|h| h.vendor.clone());
    named.or_else(|| {
        profile
            .block_signatures
            .iter()
            .find(|sig| sig.headers.iter().any(|(n, v)| !v.is_empty() && has(n, v)))
            .map(|sig| sig.vendor.clone())
    })
}

/// The client refused diagproxy's own certificate (`client_rejected_ca`).
pub fn client_rejected(
    profile: &Profile,
    host: &str,
    user_agent: Option<&str>,
    evidence: &str,
) -> Finding {
    let client = user_agent.unwrap_or("unknown client");
    let detail = format!("the client ({client}) refused diagproxy's certificate for {host}");
    Finding::new(
        profile,
        FindingKind::ClientRejectedCa,
        host,
        None,
        evidence.to_string(),
        detail,
    )
}

/// Findings that a failure itself shows: a sinkhole DNS answer, a block page in the
/// corporate proxy's refusal; each with the command that reproduces it along `path`.
pub fn failure_findings(
    profile: &Profile,
    host: &str,
    failure: &Failure,
    url: &str,
    path: &reproduce::Path<'_>,
) -> Vec<Finding> {
    let mut found: Vec<_> = detect::dns_sinkhole(host, &failure.dns_answer, profile)
        .into_iter()
        .collect();
    if let Some(status) = failure.proxy_status {
        let body = failure.proxy_body.as_deref().unwrap_or_default();
        let headers = &failure.proxy_headers;
        found.extend(detect::proxy_refusal(host, status, headers, body, profile));
    }
    let command = reproduce::command(url, path);
    found
        .into_iter()
        .map(|f| f.with_reproduce(Some(command.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{FailureKind, Side};

    #[test]
    fn a_chain_resigned_on_a_proxy_route_names_the_proxy_and_its_product() {
        let profile = Profile::builtin();
        let inspected = |vendor: Option<&str>| {
            let mut f = Finding::new(
                &profile,
                FindingKind::TlsInspection,
                "chatgpt.com",
                vendor.map(str::to_string),
                "issuer CN=Corp Proxy CA".into(),
                "TLS for chatgpt.com:443 is re-signed by CN=Corp Proxy CA".into(),
            );
            f.vendor = vendor.map(str::to_string);
            f
        };
        let via = vec![("via".to_string(), "1.1 proxy (squid/5.7)".to_string())];
        let mut f = inspected(None);
        resigned_by_proxy(&mut f, "PROXY 10.0.0.1:3128", &via, &profile);
        assert!(
            f.detail
                .ends_with("; re-signed by the proxy PROXY 10.0.0.1:3128"),
            "{}",
            f.detail
        );
        assert_eq!(f.vendor.as_deref(), Some("Squid"));
        assert!(f.evidence.contains("the proxy's own headers name Squid"));
        resigned_by_proxy(&mut f, "PROXY 10.0.0.1:3128", &via, &profile);
        assert_eq!(f.detail.matches("by the proxy").count(), 1, "once");
        // The issuer's vendor stays; a DIRECT route says nothing; unknown headers name none.
        let mut named = inspected(Some("Zscaler"));
        resigned_by_proxy(&mut named, "PROXY p:1", &via, &profile);
        assert_eq!(named.vendor.as_deref(), Some("Zscaler"));
        let mut direct = inspected(None);
        resigned_by_proxy(&mut direct, "DIRECT", &via, &profile);
        assert!(!direct.detail.contains("by the proxy"));
        let mut https = inspected(None);
        resigned_by_proxy(&mut https, "HTTPS p:443", &[], &profile);
        assert!(
            https.detail.ends_with("re-signed by the proxy HTTPS p:443"),
            "{}",
            https.detail
        );
        let mut unknown = inspected(None);
        resigned_by_proxy(&mut unknown, "PROXY p:1", &[], &profile);
        assert_eq!(unknown.vendor, None);
    }

    #[test]
    fn a_failures_remedy_is_the_check_then_the_entrys_remedy() {
        let profile = Profile::builtin();
        let refused = Failure::new(FailureKind::ConnectRefused, Side::Upstream, "refused");
        let on_chatgpt = finding_for(&profile, "chatgpt.com", &refused);
        let check = profile
            .hint(FailureKind::ConnectRefused)
            .unwrap()
            .check
            .clone();
        let (first, rest) = on_chatgpt.remedy.split_once(". *.chatgpt.com (").unwrap();
        assert_eq!(first, check.replace("HOST", "chatgpt.com"));
        assert!(rest.contains("Allowlist *.chatgpt.com"), "{rest}");
        // Outside the profile: the check alone, nothing joined to it.
        let elsewhere = finding_for(&profile, "example.org", &refused);
        assert_eq!(elsewhere.remedy, check.replace("HOST", "example.org"));
    }
}
