//! What `diagproxy pac` concludes from the routes of the profile's hosts: which host would
//! fail (no answer from the PAC, nothing but ways diagproxy cannot take, every proxy
//! unreachable), and what to fix in the script (a split between ChatGPT's hosts).

use serde::Serialize;

/// One host's route as the route source gave it.
#[derive(Debug, Clone, Serialize)]
pub struct HostRoute {
    pub host: String,
    /// `PROXY a:3128; DIRECT`.
    pub route: String,
    /// The PAC script's own answer, when a PAC gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The helper calls the script made (`dnsResolve("chatgpt.com") = "…"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<String>,
    /// Why the route source gave no answer (the route is then DIRECT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Filled in by [`judge`]: whether a connection to this host would fail.
    pub fails: bool,
}

/// A problem with the routes, in words, and the host it is about (if one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lint {
    /// `pac_error`, `unsupported`, `proxy_unreachable`, `split_route`.
    pub kind: &'static str,
    pub text: String,
}

/// Marks the hosts that would fail and lists what is wrong. `unreachable`: the proxies
/// (`PROXY host:port`) that did not accept a connection, with why.
pub fn judge(hosts: &mut [HostRoute], unreachable: &[(String, String)]) -> Vec<Lint> {
    let mut lints = Vec::new();
    for (proxy, why) in unreachable {
        lints.push(Lint {
            kind: "proxy_unreachable",
            text: format!("{proxy} does not answer: {why}"),
        });
    }
    for host in hosts.iter_mut() {
        if let Some(e) = &host.error {
            lints.push(Lint {
                kind: "pac_error",
                text: format!("{}: {e}", host.host),
            });
            host.fails = true;
            continue;
        }
        let hops: Vec<&str> = host.route.split("; ").collect();
        let usable = |hop: &&str| {
            *hop == "DIRECT"
                || (crate::upstream::route::hop_proxy(hop).is_some()
                    && !unreachable.iter().any(|(p, _)| p == hop))
        };
        if !hops.iter().any(usable) {
            host.fails = true;
            let kind = if hops
                .iter()
                .any(|h| crate::upstream::route::hop_proxy(h).is_some())
            {
                "proxy_unreachable"
            } else {
                "unsupported"
            };
            lints.push(Lint {
                kind,
                text: format!(
                    "{}: no way out diagproxy can take ({})",
                    host.host, host.route
                ),
            });
        }
    }
    if let Some(split) = split(hosts) {
        lints.push(split);
    }
    lints
}

/// The profile's hosts grouped by their first hop, when there is more than one group.
fn split(hosts: &[HostRoute]) -> Option<Lint> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for host in hosts {
        let first = host.route.split("; ").next().unwrap_or_default();
        match groups.iter_mut().find(|(hop, _)| *hop == first) {
            Some((_, names)) => names.push(&host.host),
            None => groups.push((first, vec![&host.host])),
        }
    }
    if groups.len() < 2 {
        return None;
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(hop, names)| {
            let shown: Vec<&str> = names.iter().take(3).copied().collect();
            let more = names.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{}{more} → {hop}", shown.join(", "))
        })
        .collect();
    Some(Lint {
        kind: "split_route",
        text: format!(
            "ChatGPT's hosts take different ways out: {}",
            parts.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, route: &str, error: Option<&str>) -> HostRoute {
        HostRoute {
            host: name.into(),
            route: route.into(),
            answer: None,
            calls: Vec::new(),
            error: error.map(str::to_string),
            fails: false,
        }
    }

    #[test]
    fn hosts_fail_on_pac_errors_unsupported_hops_and_dead_proxies() {
        let mut hosts = vec![
            host("chatgpt.com", "PROXY a:1; PROXY b:2", None),
            host("openai.com", "PROXY a:1; DIRECT", None),
            host("oaistatic.com", "SOCKS5 s:1", None),
            host("x.com", "DIRECT", Some("the PAC script does not run")),
            host("y.com", "PROXY a:1", None),
            host("z.com", "QUIC q:443", None),
        ];
        let dead = vec![("PROXY a:1".to_string(), "refused".to_string())];
        let lints = judge(&mut hosts, &dead);
        let fails: Vec<bool> = hosts.iter().map(|h| h.fails).collect();
        // A SOCKS5 server is a way out like a proxy; an unknown kind is not.
        assert_eq!(fails, [false, false, false, true, true, true]);
        let kinds: Vec<&str> = lints.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            [
                "proxy_unreachable",
                "pac_error",
                "proxy_unreachable",
                "unsupported",
                "split_route"
            ]
        );
        assert!(
            lints[4]
                .text
                .contains("chatgpt.com, openai.com, y.com → PROXY a:1"),
            "{}",
            lints[4].text
        );
    }

    #[test]
    fn two_ways_out_are_a_split_and_long_groups_are_shortened() {
        let mut hosts: Vec<HostRoute> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| host(n, "PROXY p:1", None))
            .collect();
        hosts.push(host("cdn", "DIRECT", None));
        let lints = judge(&mut hosts, &[]);
        assert_eq!(lints.len(), 1, "{lints:?}");
        assert_eq!(
            lints[0].text,
            "ChatGPT's hosts take different ways out: a, b, c and 2 more → PROXY p:1; cdn → DIRECT"
        );
    }

    #[test]
    fn one_way_out_is_not_a_split() {
        let mut hosts = vec![
            host("a", "PROXY p:1", None),
            host("b", "PROXY p:1; DIRECT", None),
        ];
        assert!(judge(&mut hosts, &[]).is_empty());
        assert!(hosts.iter().all(|h| !h.fails));
    }
}
