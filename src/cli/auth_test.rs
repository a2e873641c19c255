//! `diagproxy auth-test`: for each proxy on the route of one host, what a bare CONNECT
//! gets (`407` and the schemes offered, or `200`: no sign-in needed), then each offered
//! scheme diagproxy can do, tried alone on a new connection — as `cntlm -M` does. Exit 0
//! when every proxy lets diagproxy through with some scheme, 2 when one does not.

use std::sync::Arc;

use serde::Serialize;

use super::{AuthTestArgs, Failed};
use crate::config::Config;
use crate::upstream::auth::{AuthFailure, AuthRecord, Mode, Outcome, Scheme, Settings};
use crate::upstream::route::{Hop, SocksProxy, UpstreamProxy};
use crate::upstream::{dial, discover, HostPort};

/// The whole answer, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Answer {
    /// `chatgpt.com:443`.
    target: String,
    /// Where the route comes from.
    source: String,
    /// The route's hops, in order.
    route: Vec<String>,
    proxies: Vec<ProxyTest>,
}

/// One proxy: its answer without credentials, then each scheme.
#[derive(Debug, Serialize)]
struct ProxyTest {
    proxy: String,
    /// `407 Negotiate, NTLM`, `200: no sign-in needed`, or why it could not be asked.
    answer: String,
    offered: Vec<String>,
    schemes: Vec<SchemeTest>,
    /// The scheme `run --upstream-auth auto` would use here, if one works.
    #[serde(skip_serializing_if = "Option::is_none")]
    best: Option<String>,
}

#[derive(Debug, Serialize)]
struct SchemeTest {
    scheme: String,
    /// `ok`, `failed`, `skipped` (cannot be tried here), `not_offered`.
    state: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<AuthFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ms: Option<f64>,
}

pub fn auth_test(args: &AuthTestArgs) -> Result<(), Failed> {
    let config = super::pac::route_config(&args.route, &args.connect_timeout, [None, None])?;
    let target = target(args, &config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::error(&e))?;
    let answer = runtime.block_on(test(&target, config));
    if args.json {
        let text = serde_json::to_string_pretty(&answer).map_err(|e| Failed::error(&e))?;
        println!("{text}");
    } else {
        print!("{}", crate::text::terminal(&table(&answer), true));
    }
    let stuck = answer.proxies.iter().filter(|p| !passes(p)).count();
    if stuck > 0 {
        return Err(Failed::Found(
            crate::check::stage::EXIT_FAILING,
            format!("{stuck} proxy(ies) would not let diagproxy through"),
        ));
    }
    Ok(())
}

fn target(args: &AuthTestArgs, config: &Config) -> Result<HostPort, Failed> {
    let given = match &args.host {
        Some(host) => host.clone(),
        None => config
            .profile
            .entries
            .iter()
            .flat_map(|e| e.probe_hosts())
            .next()
            .unwrap_or("chatgpt.com")
            .to_string(),
    };
    HostPort::parse(&given, 443)
        .ok_or_else(|| Failed::Usage(format!("auth-test {given:?}: expected HOST or HOST:PORT")))
}

async fn test(target: &HostPort, config: Config) -> Answer {
    let router = discover::router(&config, config.listen).await;
    let config = config.with_router(router);
    let route = config
        .route(target.port != 80, &target.host, target.port, "")
        .await;
    let mut proxies = Vec::new();
    for hop in &route.hops {
        match hop {
            Hop::Proxy(proxy) => proxies.push(test_proxy(proxy, target, &config).await),
            Hop::Socks(proxy) => proxies.push(test_socks(proxy, target, &config).await),
            Hop::Direct => {}
        }
    }
    Answer {
        target: target.to_string(),
        source: config.router.source(),
        route: route.hops.iter().map(ToString::to_string).collect(),
        proxies,
    }
}

async fn test_proxy(proxy: &UpstreamProxy, target: &HostPort, config: &Config) -> ProxyTest {
    let name = HostPort::new(proxy.host.as_str(), proxy.port).to_string();
    let asked = dial::ask(proxy, (&target.host, target.port), config).await;
    let (status, offered) = match asked {
        Ok(answer) => answer,
        Err(failure) => return unanswered(name, failure.detail),
    };
    let offered: Vec<String> = offered.into_iter().map(|c| c.scheme).collect();
    if status != 407 {
        let answer = match status {
            200..=299 => format!("{status}: no sign-in needed"),
            _ => format!("{status}: refused before any sign-in"),
        };
        return ProxyTest {
            proxy: name,
            answer,
            offered,
            schemes: Vec::new(),
            best: None,
        };
    }
    let mut schemes = Vec::new();
    for scheme in [Scheme::Negotiate, Scheme::Ntlm, Scheme::Basic] {
        let is_offered = offered.iter().any(|o| Scheme::parse(o) == Some(scheme));
        schemes.push(match is_offered {
            true => try_scheme(scheme, proxy, target, config).await,
            false => SchemeTest {
                scheme: scheme.to_string(),
                state: "not_offered",
                detail: String::new(),
                failure: None,
                ms: None,
            },
        });
    }
    ProxyTest {
        proxy: name,
        answer: format!("407 {}", offered.join(", ")),
        best: schemes
            .iter()
            .find(|s| s.state == "ok")
            .map(|s| s.scheme.clone()),
        offered,
        schemes,
    }
}

/// A SOCKS server: what it says to no sign-in, then (SOCKS5) username/password, with the
/// credentials `run` would send it (the URL's, or `--upstream-user` where the rule allows).
async fn test_socks(proxy: &SocksProxy, target: &HostPort, config: &Config) -> ProxyTest {
    let name = format!(
        "{} {}",
        proxy.version.pac_name(),
        HostPort::new(proxy.host.as_str(), proxy.port)
    );
    let bare_config = Config {
        upstream_auth: Arc::new(Settings {
            user: None,
            ..Settings::clone(&config.upstream_auth)
        }),
        ..config.clone()
    };
    let bare = SocksProxy {
        credentials: None,
        ..proxy.clone()
    };
    let granted = |answer: &str, schemes: Vec<SchemeTest>, best: &str| ProxyTest {
        proxy: name.clone(),
        answer: answer.to_string(),
        offered: vec!["username/password".into()]
            .into_iter()
            .filter(|_| !schemes.is_empty())
            .collect(),
        schemes,
        best: Some(best.to_string()),
    };
    let failure = match dial::through_socks(&bare, &target.host, target.port, &bare_config).await {
        Ok(_) => return granted("granted without a sign-in", Vec::new(), "no sign-in"),
        Err(f) if f.kind == crate::failure::FailureKind::SocksAuthFailed => f,
        Err(f) => return unanswered(name, f.detail),
    };
    let started = std::time::Instant::now();
    let signed = dial::through_socks(proxy, &target.host, target.port, config).await;
    let mut test = SchemeTest {
        scheme: "username/password".into(),
        state: "ok",
        detail: String::new(),
        failure: None,
        ms: Some(crate::clock::ms(started.elapsed())),
    };
    match signed {
        Ok(_) => {
            return granted(
                "wants a username and password",
                vec![test],
                "username/password",
            )
        }
        Err(f) if f.kind == crate::failure::FailureKind::SocksAuthFailed => {
            let has = proxy.credentials.is_some() || config.upstream_auth.user.is_some();
            test.state = if has { "failed" } else { "skipped" };
            test.detail = if has {
                f.detail
            } else {
                "needs socks5://user:pass@host:port or --upstream-user".into()
            };
        }
        Err(f) => {
            test.state = "failed";
            test.detail = format!("{}; without a sign-in: {}", f.detail, failure.detail);
        }
    }
    ProxyTest {
        proxy: name,
        answer: "wants a username and password".into(),
        offered: vec!["username/password".into()],
        schemes: vec![test],
        best: None,
    }
}

fn unanswered(proxy: String, why: String) -> ProxyTest {
    ProxyTest {
        proxy,
        answer: format!("no answer: {why}"),
        offered: Vec::new(),
        schemes: Vec::new(),
        best: None,
    }
}

/// `scheme` alone, on a new connection.
async fn try_scheme(
    scheme: Scheme,
    proxy: &UpstreamProxy,
    target: &HostPort,
    config: &Config,
) -> SchemeTest {
    let mut alone = config.clone();
    let mode = match scheme {
        Scheme::Negotiate => Mode::Negotiate,
        Scheme::Ntlm => Mode::Ntlm,
        Scheme::Basic => Mode::Basic,
    };
    alone.upstream_auth = Arc::new(Settings {
        mode,
        ..Settings::clone(&config.upstream_auth)
    });
    let mut record = None;
    let result = dial::through(proxy, &target.host, target.port, &alone, &mut record).await;
    judge(scheme, result.err(), record, &target.to_string())
}

/// What one scheme's attempt came to (no I/O). The question is the sign-in: a scheme that
/// got past the `407` (any other answer from the proxy) works, whatever the proxy could then
/// do for `target`.
fn judge(
    scheme: Scheme,
    failed: Option<crate::failure::Failure>,
    record: Option<AuthRecord>,
    target: &str,
) -> SchemeTest {
    let mut test = SchemeTest {
        scheme: scheme.to_string(),
        state: "ok",
        detail: String::new(),
        failure: None,
        ms: None,
    };
    let Some(record) = record else {
        test.state = if failed.is_some() { "failed" } else { "ok" };
        test.detail = failed.map_or_else(|| "no 407 this time".into(), |f| f.detail);
        return test;
    };
    test.ms = Some(record.ms);
    test.failure = record.failure;
    test.detail = match (&record.spn, &record.user) {
        (Some(spn), _) => spn.clone(),
        (None, Some(user)) => user.clone(),
        (None, None) => String::new(),
    };
    match (record.outcome, record.failure, failed) {
        (Outcome::Ok, _, None) => {}
        (Outcome::Ok, _, Some(after)) => {
            let status = after
                .proxy_status
                .map_or_else(|| after.kind.to_string(), |s| s.to_string());
            test.detail = format!("signed in; the proxy then could not reach {target} ({status})");
        }
        (Outcome::Failed, Some(AuthFailure::Unsupported), _) => {
            test.state = "skipped";
            test.detail = record.detail.unwrap_or_default();
        }
        (Outcome::Failed, _, _) => {
            test.state = "failed";
            let why = record.detail.unwrap_or_default();
            test.detail = if test.detail.is_empty() {
                why
            } else {
                format!("{}: {why}", test.detail)
            };
        }
    }
    test
}

/// Whether diagproxy gets through this proxy.
fn passes(proxy: &ProxyTest) -> bool {
    proxy.best.is_some() || proxy.answer.starts_with('2')
}

fn table(answer: &Answer) -> String {
    let mut out = format!(
        "auth-test: CONNECT {} along {} ({})\n",
        answer.target,
        answer.route.join("; "),
        answer.source
    );
    if answer.proxies.is_empty() {
        out.push_str("no proxy on this route: nothing to sign in to\n");
    }
    for proxy in &answer.proxies {
        out.push_str(&format!("\n{}: {}\n", proxy.proxy, proxy.answer));
        for s in &proxy.schemes {
            let ms = s.ms.map_or(String::new(), |ms| format!("{ms:>8.1} ms"));
            let state = match s.failure {
                Some(f) if s.state == "failed" => f.as_str(),
                _ => s.state,
            };
            let line = format!("  {:<10} {:<24} {ms:>11}  {}", s.scheme, state, s.detail);
            out.push_str(line.trim_end());
            out.push('\n');
        }
        match (&proxy.best, passes(proxy)) {
            (Some(best), _) => out.push_str(&format!(
                "  => diagproxy run signs in with {best} (--upstream-auth auto)\n"
            )),
            (None, true) => {}
            (None, false) => out.push_str("  => no scheme works: diagproxy cannot get through\n"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: Outcome, failure: Option<AuthFailure>, detail: &str) -> AuthRecord {
        AuthRecord {
            proxy: "p:3128".into(),
            spn: Some("HTTP@p".into()),
            outcome,
            failure,
            detail: Some(detail.into()),
            ms: 3.0,
            ..AuthRecord::default()
        }
    }

    #[test]
    fn judge_names_ok_failed_and_skipped() {
        let t = "chatgpt.com:443";
        let refusal = |status: u16| {
            let mut f = crate::failure::Failure::new(
                crate::failure::FailureKind::UpstreamProxyRefused,
                crate::failure::Side::UpstreamProxy,
                format!("refused {status}"),
            );
            f.proxy_status = Some(status);
            Some(f)
        };
        let ok = judge(
            Scheme::Negotiate,
            None,
            Some(record(Outcome::Ok, None, "")),
            t,
        );
        assert_eq!((ok.state, ok.detail.as_str()), ("ok", "HTTP@p"));
        let no_ticket = record(Outcome::Failed, Some(AuthFailure::NoTicket), "no cache");
        let failed = judge(Scheme::Negotiate, refusal(407), Some(no_ticket), t);
        assert_eq!(failed.state, "failed");
        assert_eq!(failed.detail, "HTTP@p: no cache");
        let mut lacks = record(
            Outcome::Failed,
            Some(AuthFailure::Unsupported),
            "needs --upstream-user",
        );
        lacks.spn = None;
        let skipped = judge(Scheme::Ntlm, refusal(407), Some(lacks), t);
        assert_eq!(
            (skipped.state, skipped.detail.as_str()),
            ("skipped", "needs --upstream-user")
        );
        // Signed in, then the proxy could not reach the target: the sign-in works.
        let after = judge(
            Scheme::Basic,
            refusal(503),
            Some(record(Outcome::Ok, None, "")),
            t,
        );
        assert_eq!(
            (after.state, after.detail.as_str()),
            (
                "ok",
                "signed in; the proxy then could not reach chatgpt.com:443 (503)"
            )
        );
    }

    #[test]
    fn table_says_what_run_would_use_or_that_nothing_works() {
        let proxy = |best: Option<&str>| ProxyTest {
            proxy: "proxy.corp:3128".into(),
            answer: "407 Negotiate, NTLM".into(),
            offered: vec!["Negotiate".into(), "NTLM".into()],
            schemes: vec![judge(
                Scheme::Negotiate,
                None,
                Some(record(Outcome::Ok, None, "")),
                "chatgpt.com:443",
            )],
            best: best.map(str::to_string),
        };
        let answer = Answer {
            target: "chatgpt.com:443".into(),
            source: "fixed".into(),
            route: vec!["PROXY proxy.corp:3128".into()],
            proxies: vec![proxy(Some("Negotiate")), proxy(None)],
        };
        let text = table(&answer);
        assert!(
            text.contains("diagproxy run signs in with Negotiate"),
            "{text}"
        );
        assert!(text.contains("no scheme works"), "{text}");
        assert!(passes(&answer.proxies[0]) && !passes(&answer.proxies[1]));
    }
}
