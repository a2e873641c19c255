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

/// The verdict sentence over every host of a session: about the profile's hosts only.
/// Other traffic (a browser's own update and sign-in hosts) is never the verdict; when it
/// had problems and ChatGPT's hosts did not, one neutral clause says so.
pub fn sentence<'a>(hosts: impl Iterator<Item = HostView<'a>>) -> String {
    let hosts: Vec<HostView<'_>> = hosts.collect();
    let (ours, others): (Vec<&HostView<'_>>, Vec<&HostView<'_>>) =
        hosts.iter().partition(|h| h.allowlisted);
    if ours.is_empty() {
        return nothing_of_chatgpt(&others);
    }
    let mut worst: Option<(u8, &HostView<'_>, &Finding)> = None;
    let mut count = 0;
    for host in &ours {
        for f in counted(host) {
            count += 1;
            if worst.is_none_or(|(r, _, _)| f.kind.severity() < r) {
                worst = Some((f.kind.severity(), host, f));
            }
        }
    }
    let touched = ours.len();
    let Some((_, host, f)) = worst else {
        return format!(
            "No problem seen: {touched} allowlisted host(s) answered normally through this network.{}",
            other_problems(&others)
        );
    };
    let remedy = f
        .remedy
        .split(". ")
        .next()
        .unwrap_or("")
        .trim_end_matches('.');
    if !f.kind.is_error() {
        return format!(
            "Nothing that stops ChatGPT: {touched} allowlisted host(s) went through this network; worth a look: {} on {} — {remedy}.",
            f.label(),
            host.host
        );
    }
    let who = f
        .vendor
        .clone()
        .unwrap_or_else(|| "The network".to_string());
    let what = match f.kind {
        FindingKind::BlockPage => "blocks".to_string(),
        FindingKind::DnsSinkhole => "sinkholes the DNS name of".to_string(),
        FindingKind::ResetAfterClientHello => "resets TLS connections to".to_string(),
        FindingKind::NoServerHello => "silently drops TLS connections to".to_string(),
        FindingKind::NonTlsInTunnel => "answers in plain HTTP for".to_string(),
        FindingKind::RedirectOffAllowlist => "redirects".to_string(),
        FindingKind::TlsInspection => "re-signs TLS for".to_string(),
        FindingKind::UntrustedCertificate => "presents an untrusted certificate for".to_string(),
        kind => format!("fails ({kind}) for"),
    };
    let feature = f
        .feature
        .as_deref()
        .map_or(String::new(), |b| format!(": {b}"));
    let more = if count > 1 {
        format!(" ({} more finding(s) below)", count - 1)
    } else {
        String::new()
    };
    format!("{who} {what} {}{feature} — {remedy}.{more}", host.host)
}

/// The findings that count for the verdict: a client refusing diagproxy's own CA is about
/// this tool's set-up, not the network (listed in the tables and reports, never here).
fn counted<'a>(host: &'a HostView<'_>) -> impl Iterator<Item = &'a Finding> {
    host.findings
        .iter()
        .filter(|f| f.kind != FindingKind::ClientRejectedCa)
}

/// ` N other host(s) outside the profile had problems (…): not ChatGPT's.`, or nothing.
fn other_problems(others: &[&HostView<'_>]) -> String {
    let troubled = others
        .iter()
        .filter(|h| counted(h).any(|f| f.kind.is_error()))
        .count();
    if troubled == 0 {
        return String::new();
    }
    format!(
        " {troubled} other host(s) outside the profile had problems (see Other traffic); they are not ChatGPT's."
    )
}

/// The verdict when no profile host went through: say so, and that other traffic did (a
/// failure on some other host is not "the network fails ChatGPT").
fn nothing_of_chatgpt(others: &[&HostView<'_>]) -> String {
    let lead = "No ChatGPT host went through the proxy in this session";
    let hint = "point the client at it and reproduce the problem.";
    if others.is_empty() {
        return format!("{lead}: {hint}");
    }
    let troubled = others
        .iter()
        .filter(|h| counted(h).any(|f| f.kind.is_error()))
        .count();
    let seen = match troubled {
        0 => String::new(),
        n => format!(", {n} of them with problems (see Other traffic)"),
    };
    format!(
        "{lead}; {} other host(s) did{seen}. To test ChatGPT, {hint}",
        others.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;
    use crate::profile::Profile;

    fn finding(kind: FindingKind, host: &str) -> Finding {
        Finding::new(
            &Profile::builtin(),
            kind,
            host,
            None,
            "e".into(),
            "d".into(),
        )
    }

    #[test]
    fn a_failure_outside_the_profile_is_not_the_networks_verdict_on_chatgpt() {
        let dns = [finding(
            FindingKind::Failure(FailureKind::DnsFailed),
            "example.invalid",
        )];
        let hosts = [HostView {
            host: "example.invalid",
            allowlisted: false,
            findings: &dns,
        }];
        let text = sentence(hosts.into_iter());
        assert!(
            text.starts_with("No ChatGPT host went through the proxy"),
            "{text}"
        );
        assert!(
            text.contains("1 other host(s) did, 1 of them with problems (see Other traffic)"),
            "{text}"
        );
        assert!(!text.contains("The network fails"), "{text}");
        assert!(sentence(std::iter::empty()).ends_with("reproduce the problem."));
    }

    #[test]
    fn other_traffic_never_leads_when_chatgpt_worked() {
        let dns = [finding(
            FindingKind::Failure(FailureKind::DnsFailed),
            "accounts.google.com",
        )];
        let rejected = [finding(FindingKind::ClientRejectedCa, "chatgpt.com")];
        let hosts = [
            HostView {
                host: "chatgpt.com",
                allowlisted: true,
                findings: &rejected,
            },
            HostView {
                host: "accounts.google.com",
                allowlisted: false,
                findings: &dns,
            },
        ];
        let text = sentence(hosts.into_iter());
        assert_eq!(
            text,
            "No problem seen: 1 allowlisted host(s) answered normally through this network. 1 other host(s) outside the profile had problems (see Other traffic); they are not ChatGPT's."
        );
        // A ChatGPT finding leads, and other traffic's findings are not counted with it.
        let blocked = [finding(FindingKind::BlockPage, "chatgpt.com")];
        let hosts = [
            HostView {
                host: "chatgpt.com",
                allowlisted: true,
                findings: &blocked,
            },
            HostView {
                host: "accounts.google.com",
                allowlisted: false,
                findings: &dns,
            },
        ];
        let text = sentence(hosts.into_iter());
        assert!(text.starts_with("The network blocks chatgpt.com"), "{text}");
        assert!(!text.contains("more finding"), "{text}");
    }

    #[test]
    fn more_findings_point_where_they_are_listed() {
        let two = [
            finding(FindingKind::BlockPage, "chatgpt.com"),
            finding(FindingKind::TlsInspection, "chatgpt.com"),
        ];
        let hosts = [HostView {
            host: "chatgpt.com",
            allowlisted: true,
            findings: &two,
        }];
        let text = sentence(hosts.into_iter());
        assert!(text.starts_with("The network blocks chatgpt.com"), "{text}");
        assert!(text.ends_with("(1 more finding(s) below)"), "{text}");
    }

    #[test]
    fn one_finding_says_nothing_more_and_the_first_of_equals_is_named() {
        let one = [finding(FindingKind::BlockPage, "chatgpt.com")];
        let other = [finding(FindingKind::BlockPage, "cdn.oaistatic.com")];
        let hosts = [
            HostView {
                host: "chatgpt.com",
                allowlisted: true,
                findings: &one,
            },
            HostView {
                host: "cdn.oaistatic.com",
                allowlisted: true,
                findings: &other,
            },
        ];
        let text = sentence(hosts.iter().map(|h| HostView { ..*h }));
        assert!(text.starts_with("The network blocks chatgpt.com"), "{text}");
        assert!(text.ends_with("(1 more finding(s) below)"), "{text}");
        let [first, _] = hosts;
        let text = sentence(std::iter::once(first));
        assert!(!text.contains("more finding"), "{text}");
    }

    #[test]
    fn a_warning_is_not_called_a_failure_and_silence_is_named() {
        let header = [finding(FindingKind::ProxyHeader, "chatgpt.com")];
        let hosts = [HostView {
            host: "chatgpt.com",
            allowlisted: true,
            findings: &header,
        }];
        let text = sentence(hosts.into_iter());
        assert!(text.starts_with("Nothing that stops ChatGPT"), "{text}");
        assert!(
            text.contains("worth a look: proxy_header on chatgpt.com"),
            "{text}"
        );
        let silent = [finding(FindingKind::NoServerHello, "chatgpt.com")];
        let hosts = [HostView {
            host: "chatgpt.com",
            allowlisted: true,
            findings: &silent,
        }];
        let text = sentence(hosts.into_iter());
        assert!(
            text.starts_with("The network silently drops TLS connections to chatgpt.com"),
            "{text}"
        );
    }
}
