//! The verdict: one sentence that answers "is the network the cause?", led by the most
//! serious finding on an allowlisted host ("Zscaler blocks files.oaiusercontent.com: …").

use super::finding::{Finding, FindingKind};

/// What the verdict needs of one host.
pub struct HostView<'a> {
    pub host: &'a str,
    /// Whether the host is on the profile's allowlist (its findings outrank the others').
    pub allowlisted: bool,
    pub findings: &'a [Finding],
}

/// The verdict sentence over every host of a session.
pub fn sentence<'a>(hosts: impl Iterator<Item = HostView<'a>>) -> String {
    let hosts: Vec<HostView<'_>> = hosts.collect();
    let mut worst: Option<(u8, &HostView<'_>, &Finding)> = None;
    let mut count = 0;
    for host in &hosts {
        for f in host.findings {
            count += 1;
            let rank = f.kind.severity() + if host.allowlisted { 0 } else { 10 };
            if worst.is_none_or(|(r, _, _)| rank < r) {
                worst = Some((rank, host, f));
            }
        }
    }
    let Some((_, host, f)) = worst else {
        let touched = hosts.iter().filter(|h| h.allowlisted).count();
        return if touched == 0 {
            "No ChatGPT host went through the proxy in this session: point the client at it and reproduce the problem.".to_string()
        } else {
            format!("No problem seen: {touched} allowlisted host(s) answered normally through this network.")
        };
    };
    let who = f
        .vendor
        .clone()
        .unwrap_or_else(|| "The network".to_string());
    let what = match f.kind {
        FindingKind::BlockPage => "blocks".to_string(),
        FindingKind::DnsSinkhole => "sinkholes the DNS name of".to_string(),
        FindingKind::ResetAfterClientHello => "resets TLS connections to".to_string(),
        FindingKind::NonTlsInTunnel => "answers in plain HTTP for".to_string(),
        FindingKind::RedirectOffAllowlist => "redirects".to_string(),
        FindingKind::TlsInspection => "re-signs TLS for".to_string(),
        FindingKind::UntrustedCertificate => "presents an untrusted certificate for".to_string(),
        FindingKind::ClientRejectedCa => {
            "(diagproxy's interception) was refused by the client for".to_string()
        }
        kind => format!("fails ({kind}) for"),
    };
    let feature = f
        .feature
        .as_deref()
        .map_or(String::new(), |b| format!(": {b}"));
    let remedy = f
        .remedy
        .split(". ")
        .next()
        .unwrap_or("")
        .trim_end_matches('.');
    let more = if count > 1 {
        format!(" ({} more finding(s) below)", count - 1)
    } else {
        String::new()
    };
    format!("{who} {what} {}{feature} — {remedy}.{more}", host.host)
}
