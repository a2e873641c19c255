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
/// header markers of its block-page signatures (squid's `Via`). A marker with no value
/// (`X-BlueCoat-Via`) names its product by the header's presence, as it does on answers.
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
        .find(|h| has(&h.header, &h.contains))
        .map(|h| h.vendor.clone());
    named.or_else(|| {
        profile
            .block_signatures
            .iter()
            .find(|sig| sig.headers.iter().any(|(n, v)| has(n, v)))
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
    fn a_proxy_header_without_a_value_names_its_product_by_presence() {
        let profile = Profile::builtin();
        let headers = |name: &str, value: &str| vec![(name.to_string(), value.to_string())];
        let named = |h: Vec<(String, String)>| proxy_product(&h, &profile);
        assert_eq!(
            named(headers("X-BlueCoat-Via", "3c1a9a0a")).as_deref(),
            Some("Broadcom Symantec / Blue Coat")
        );
        assert_eq!(
            named(headers("via", "1.1 mwg (McAfee Web Gateway 11.2)")).as_deref(),
            Some("McAfee / Skyhigh Web Gateway")
        );
        // squid's `Via` is a block-page signature's marker, not a product header.
        assert_eq!(
            named(headers("via", "1.1 proxy (squid/5.7)")).as_deref(),
            Some("Squid")
        );
        assert_eq!(named(headers("via", "1.1 varnish")), None);
        assert_eq!(named(Vec::new()), None);
    }

    fn taken(hop: &str, failed: &[&str], pac_error: Option<&str>) -> Taken {
        Taken {
            hop: Some(hop.into()),
            route_failed: failed.iter().map(|f| f.to_string()).collect(),
            pac_error: pac_error.map(str::to_string),
            ..Taken::default()
        }
    }

    fn kinds(found: &[Finding]) -> Vec<FindingKind> {
        found.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_route_names_the_pac_that_gave_no_answer_and_the_proxies_that_did_not_answer() {
        let profile = Profile::builtin();
        let refused = Failure::new(FailureKind::ConnectRefused, Side::Upstream, "refused");
        let find = |t: &Taken, f: Option<&Failure>, names: bool| {
            route_findings(&profile, "chatgpt.com", t, f, names)
        };
        // Nothing to say about a DIRECT route that worked.
        assert!(find(&taken("DIRECT", &[], None), None, true).is_empty());

        let pac = find(
            &taken("DIRECT", &[], Some("ReferenceError: x")),
            None,
            false,
        );
        assert_eq!(kinds(&pac), [FindingKind::PacError]);
        assert_eq!(pac[0].evidence, "ReferenceError: x");
        assert_eq!(
            pac[0].detail,
            "chatgpt.com went DIRECT because the PAC gave no answer"
        );

        // A proxy tried first that did not answer, then DIRECT worked; a failed entry that is
        // not a proxy (an older file's text) is not one.
        let fell = taken(
            "DIRECT",
            &["PROXY a:3128: connection refused", "DIRECT: timed out"],
            None,
        );
        let found = find(&fell, None, true);
        assert_eq!(kinds(&found), [FindingKind::ProxyUnreachable]);
        assert_eq!(found[0].evidence, "PROXY a:3128: connection refused");
        assert_eq!(found[0].detail, "chatgpt.com: fell back to DIRECT");

        // The last proxy did not answer either.
        let last = find(&taken("PROXY b:8080", &[], None), Some(&refused), false);
        assert_eq!(kinds(&last), [FindingKind::ProxyUnreachable]);
        assert_eq!(last[0].evidence, "PROXY b:8080: refused");
        assert_eq!(
            last[0].detail,
            "chatgpt.com: PROXY b:8080 did not answer, and no other way was left"
        );
    }

    #[test]
    fn direct_failing_is_blocked_only_where_the_network_names_a_proxy() {
        let profile = Profile::builtin();
        let refused = Failure::new(FailureKind::ConnectRefused, Side::Upstream, "refused");
        let direct = taken("DIRECT", &[], None);
        let find = |f: &Failure, names: bool| {
            kinds(&route_findings(
                &profile,
                "chatgpt.com",
                &direct,
                Some(f),
                names,
            ))
        };
        assert_eq!(find(&refused, true), [FindingKind::DirectBlocked]);
        assert!(find(&refused, false).is_empty());
        // A failure after the server was reached is not the route's.
        let tls = Failure::new(FailureKind::TlsFailed, Side::Upstream, "bad record");
        assert!(find(&tls, true).is_empty());
        // Nor is a proxy's own refusal (it answered).
        let mut denied = refused.clone();
        denied.proxy_status = Some(403);
        assert!(find(&denied, true).is_empty());
        let through = taken("PROXY p:3128", &[], None);
        let proxied = route_findings(&profile, "chatgpt.com", &through, Some(&refused), true);
        assert_eq!(kinds(&proxied), [FindingKind::ProxyUnreachable]);
    }

    #[test]
    fn a_failed_handshake_is_named_from_what_the_upstream_sent() {
        let error = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad record");
        let at = "chatgpt.com:443";
        let silent = handshake_failure(at, b"", false, None);
        assert_eq!(silent.kind, FailureKind::Timeout);
        assert!(silent
            .detail
            .starts_with("no answer to the TLS ClientHello for chatgpt.com:443 in "));

        let http = b"HTTP/1.1 403 Forbidden\r\nServer: proxy\r\n\r\n";
        let plain = handshake_failure(at, http, true, Some(&error));
        assert_eq!(plain.kind, FailureKind::TlsFailed);
        assert_eq!(
            plain.detail,
            "the upstream answered the TLS ClientHello for chatgpt.com:443 in plain HTTP (\"HTTP/1.1 403 Forbidden\")"
        );

        let dropped = handshake_failure(at, b"", true, Some(&error));
        assert_eq!(dropped.kind, FailureKind::Reset);
        assert_eq!(
            dropped.detail,
            "the upstream dropped the connection to chatgpt.com:443 right after the ClientHello: bad record"
        );
        // Bytes that are not HTTP, or an error without a drop: the handshake's own error.
        for (first, died) in [(&b"\x15\x03\x03"[..], true), (&b""[..], false)] {
            let failed = handshake_failure(at, first, died, Some(&error));
            assert_eq!(failed.kind, FailureKind::TlsFailed, "{first:?} {died}");
            assert_eq!(
                failed.detail,
                "TLS handshake with chatgpt.com:443: bad record"
            );
        }
        assert!(handshake_failure(at, b"", true, Some(&error)).side == Side::Upstream);
    }

    fn verdict(verdict: Verdict, reason: Option<&str>, vendor: Option<&str>) -> TlsVerdict {
        TlsVerdict {
            verdict,
            reason: reason.map(str::to_string),
            issuer: "CN=Corp CA".into(),
            root: "CN=Corp Root".into(),
            vendor: vendor.map(str::to_string),
            chain: Vec::new(),
            scts: false,
        }
    }

    #[test]
    fn a_chain_that_is_not_public_is_inspection_or_untrusted() {
        let profile = Profile::builtin();
        let judge = |v: &TlsVerdict| tls_finding(&profile, "chatgpt.com", 443, v);
        assert_eq!(judge(&verdict(Verdict::Public, None, None)), None);

        let inspected = judge(&verdict(
            Verdict::Inspected,
            Some("UnknownIssuer"),
            Some("Zscaler"),
        ));
        let inspected = inspected.unwrap();
        assert_eq!(inspected.kind, FindingKind::TlsInspection);
        assert_eq!(inspected.vendor.as_deref(), Some("Zscaler"));
        assert_eq!(
            inspected.detail,
            "TLS for chatgpt.com:443 is re-signed by CN=Corp CA (Zscaler): the public roots reject it (UnknownIssuer) but this machine's trust store accepts it"
        );
        assert_eq!(inspected.evidence, "issuer CN=Corp CA; root CN=Corp Root");

        let untrusted = judge(&verdict(Verdict::Untrusted, Some("NotValidForName"), None));
        let untrusted = untrusted.unwrap();
        assert_eq!(untrusted.kind, FindingKind::UntrustedCertificate);
        assert_eq!(
            untrusted.detail,
            "TLS for chatgpt.com:443 is signed by CN=Corp CA, which neither the public roots nor this machine trust (NotValidForName)"
        );
        assert_eq!(
            untrusted.evidence,
            "issuer CN=Corp CA; root CN=Corp Root; name mismatch"
        );
    }

    #[test]
    fn a_failure_shows_its_sinkhole_and_its_block_page_each_with_the_command() {
        let profile = Profile::builtin();
        let path = reproduce::Path {
            proxy: Some(("http://proxy.corp:3128", false)),
            pin: None,
        };
        let url = "https://chatgpt.com/";
        let mut sunk = Failure::new(FailureKind::ConnectRefused, Side::Upstream, "refused");
        sunk.dns_answer = vec!["146.112.61.106".parse().unwrap()];
        let found = failure_findings(&profile, "chatgpt.com", &sunk, url, &path);
        assert_eq!(kinds(&found), [FindingKind::DnsSinkhole]);
        let command = reproduce::command(url, &path);
        assert_eq!(found[0].reproduce.as_deref(), Some(command.as_str()));

        let mut refused = Failure::new(FailureKind::UpstreamProxyRefused, Side::Upstream, "403");
        refused.proxy_status = Some(403);
        refused.proxy_headers = vec![("x-squid-error".into(), "ERR_ACCESS_DENIED 0".into())];
        refused.proxy_body =
            Some("<html><title>ERROR: The requested URL could not be retrieved</title>".into());
        let found = failure_findings(&profile, "chatgpt.com", &refused, url, &path);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .evidence
                .starts_with("the corporate proxy refused with "),
            "{:?}",
            found[0]
        );
        assert_eq!(found[0].reproduce.as_deref(), Some(command.as_str()));
        // Neither: nothing.
        let plain = Failure::new(FailureKind::ConnectRefused, Side::Upstream, "refused");
        assert!(failure_findings(&profile, "chatgpt.com", &plain, url, &path).is_empty());
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
