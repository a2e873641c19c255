//! `RunArgs` → `Config`: every check on the command line, before anything binds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::{LogFormat, RouteArgs, RunArgs};
use crate::config::{
    bad, parse_duration, parse_proxy_auth, parse_resolve, Config, ConfigError, Intercept,
};
use crate::profile::Profile;
use crate::session::livelog::Format;
use crate::tls::roots::TrustRoots;
use crate::upstream::auth;
use crate::upstream::discover::Spec;
use crate::upstream::router::Router;

impl From<LogFormat> for Format {
    fn from(format: LogFormat) -> Format {
        match format {
            LogFormat::Human => Format::Human,
            LogFormat::Json => Format::Json,
        }
    }
}

/// The command line → the checked configuration (ripgrep's low-level args → high-level
/// config).
impl Config {
    pub fn from_run_args(args: &RunArgs) -> Result<Config, ConfigError> {
        let listen = parse_listen(&args.listen)?;
        let proxy_auth = args
            .proxy_auth
            .as_deref()
            .map(parse_proxy_auth)
            .transpose()?;
        if !listen.ip().is_loopback() {
            if !args.allow_remote {
                return Err(bad(format!(
                    "--listen {listen} is not a loopback address: other machines could use this proxy. \
                     Add --allow-remote --proxy-auth USER:PASS to accept them (e.g. a phone on the LAN)"
                )));
            }
            if proxy_auth.is_none() {
                return Err(bad("--allow-remote requires --proxy-auth USER:PASS: an open proxy on the LAN is not safe"));
            }
        }
        let upstream = Spec::parse(&args.route.upstream_proxy).map_err(ConfigError)?;
        if let Spec::Fixed(p) = &upstream {
            // Port 0 is chosen at bind; the proxy checks again then.
            if listen.port() != 0 && crate::upstream::resolve::targets(listen, &p.host, p.port) {
                return Err(bad(format!(
                    "--upstream-proxy {} is this proxy itself (--listen {listen}): that would loop",
                    p.display()
                )));
            }
        }
        let mut resolve = HashMap::new();
        for pin in &args.route.resolve {
            let (host, port, addr) = parse_resolve(pin)?;
            resolve.insert((host, port), addr);
        }
        let (profile, profile_name) = load_profile(args)?;
        let session_dir = session_dir(args)?;
        let roots = TrustRoots::load(args.public_roots.as_deref(), args.system_roots.as_deref())
            .map_err(bad)?;
        Ok(Config {
            roots,
            intercept: Intercept::parse(&args.intercept)?,
            ca_dir: args.ca_dir.clone(),
            auto_passthrough: !args.no_auto_passthrough,
            check_at_start: args.check,
            bodies: args.bodies.into(),
            include_secrets: args.include_secrets,
            loopback_only: std::env::var("DIAGPROXY_LOOPBACK_ONLY").is_ok_and(|v| v == "1"),
            dns_answers: HashMap::new(),
            listen,
            proxy_auth,
            upstream,
            wpad_domain: args.route.wpad_domain.clone(),
            upstream_auth: Arc::new(upstream_auth(args)?),
            router: Arc::new(Router::direct()),
            resolve,
            session_dir,
            profile: Arc::new(profile),
            profile_name,
            log_format: args.log_format.into(),
            verbosity: args.verbose.min(3) as i8 - args.quiet.min(3) as i8,
            connect_timeout: positive("--connect-timeout", &args.connect_timeout)?,
            response_timeout: positive("--response-timeout", &args.response_timeout)?,
            idle_timeout: parse_duration("--idle-timeout", &args.idle_timeout)?,
            header_timeout: positive("--header-timeout", &args.header_timeout)?,
            max_hosts: args.max_hosts,
            max_connections: match args.max_connections {
                0 => return Err(bad("--max-connections: at least 1")),
                n => n,
            },
            grace: parse_duration("--grace", &args.grace)?,
            live_token: match std::env::var("DIAGPROXY_LIVE_TOKEN") {
                Ok(token) => crate::config::parse_live_token(&token)?,
                Err(_) => crate::config::new_live_token(),
            },
            keylog: args.keylog.chosen(),
            metrics: args.metrics,
        })
    }
}

impl RunArgs {
    /// `diagproxy run` with no flags: every default from clap's own attributes (and the
    /// environment variables they name), so no default is written twice.
    pub(super) fn defaults() -> Result<RunArgs, ConfigError> {
        use clap::{Args, FromArgMatches};
        let matches = RunArgs::augment_args(clap::Command::new("run"))
            .try_get_matches_from(["run"])
            .map_err(|e| bad(e.to_string()))?;
        RunArgs::from_arg_matches(&matches).map_err(|e| bad(e.to_string()))
    }
}

/// The configuration of a command that looks routes up (`pac`, `check`, `auth-test`, the
/// exporter, `bench`): its route flags, its connect timeout (`None`: run's) and trust
/// stores, run's defaults for the rest, checked as `run` checks them. Built from values: a
/// route flag added to [`RouteArgs`] reaches every such command without being listed here.
pub fn route_config(
    route: &RouteArgs,
    connect_timeout: Option<&str>,
    [public_roots, system_roots]: [Option<&Path>; 2],
) -> Result<Config, ConfigError> {
    let defaults = RunArgs::defaults()?;
    let run = RunArgs {
        route: route.clone(),
        connect_timeout: connect_timeout.map_or(defaults.connect_timeout.clone(), str::to_string),
        public_roots: public_roots.map(Path::to_path_buf),
        system_roots: system_roots.map(Path::to_path_buf),
        ..defaults
    };
    Config::from_run_args(&run)
}

/// `--upstream-auth` and `--upstream-user`, with the password from
/// `DIAGPROXY_UPSTREAM_PASSWORD` or, on a terminal, a prompt (never from the command line,
/// where `ps` would show it).
fn upstream_auth(args: &RunArgs) -> Result<auth::Settings, ConfigError> {
    let flags = &args.route.auth;
    let settings = auth::Settings {
        mode: auth::Mode::parse(&flags.upstream_auth).map_err(bad)?,
        user: None,
        auth_proxies: auth::parse_auth_proxies(&flags.upstream_auth_proxies).map_err(bad)?,
        trust_pac_proxies: flags.trust_pac_proxies,
    };
    let Some(user) = flags.upstream_user.as_deref() else {
        return Ok(settings);
    };
    let password = match std::env::var("DIAGPROXY_UPSTREAM_PASSWORD") {
        Ok(p) => p,
        Err(_) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            rpassword::prompt_password(format!("Password for {user} (corporate proxy): "))
                .map_err(|e| bad(format!("--upstream-user: reading the password: {e}")))?
        }
        Err(_) => {
            return Err(bad(format!(
                "--upstream-user {user}: set DIAGPROXY_UPSTREAM_PASSWORD (no terminal to ask on)"
            )))
        }
    };
    let user = auth::Credentials::parse(user, password).map_err(bad)?;
    Ok(auth::Settings {
        user: Some(user),
        ..settings
    })
}

/// `--profile FILE`, or the built-in profile; and how the summary names it.
fn load_profile(args: &RunArgs) -> Result<(Profile, String), ConfigError> {
    chosen_profile(args.route.profile.as_deref()).map_err(bad)
}

/// `--profile FILE`, or the built-in profile: the profile and the name sessions record
/// (the path, or `built-in:NAME`).
pub(super) fn chosen_profile(path: Option<&Path>) -> Result<(Profile, String), String> {
    match path {
        Some(path) => Profile::load(path)
            .map(|p| (p, path.display().to_string()))
            .map_err(|e| format!("--profile {}: {e}", path.display())),
        None => {
            let p = Profile::builtin();
            let name = format!("built-in:{}", p.name);
            Ok((p, name))
        }
    }
}

/// `--session-dir`, or a new name; a used folder only with `--force`.
fn session_dir(args: &RunArgs) -> Result<PathBuf, ConfigError> {
    let session_dir = match &args.session_dir {
        Some(dir) => dir.clone(),
        // The process id makes two sessions started in the same second differ.
        None => PathBuf::from("sessions").join(format!(
            "{}-{}",
            crate::clock::compact(SystemTime::now()),
            std::process::id()
        )),
    };
    if !args.force && holds_files(&session_dir) {
        return Err(bad(format!(
            "--session-dir {}: the folder exists and is not empty; pick another or add --force to replace its files",
            session_dir.display()
        )));
    }
    Ok(session_dir)
}

/// `IP:PORT`, or `localhost:PORT` (which listens on 127.0.0.1).
fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    let err = || {
        bad(format!(
            "--listen {text:?}: expected IP:PORT, e.g. 127.0.0.1:8080"
        ))
    };
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let hp = crate::upstream::HostPort::parse(text, 0).ok_or_else(err)?;
    if hp.host.eq_ignore_ascii_case("localhost") && text.contains(':') {
        return Ok(SocketAddr::from(([127, 0, 0, 1], hp.port)));
    }
    Err(err())
}

/// Whether `dir` exists and has anything in it.
fn holds_files(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// A duration that must not be zero (a zero timeout would close every connection).
fn positive(flag: &str, text: &str) -> Result<std::time::Duration, ConfigError> {
    let d = parse_duration(flag, text)?;
    if d.is_zero() {
        return Err(bad(format!("{flag} {text:?}: must be more than zero")));
    }
    Ok(d)
}

/// The configuration of `diagproxy run ARGS`, for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn for_tests(args: &[&str]) -> Result<Config, ConfigError> {
    use clap::Parser;
    let mut argv = vec!["diagproxy", "run"];
    argv.extend_from_slice(args);
    match super::Cli::try_parse_from(argv)
        .map_err(|e| bad(e.to_string()))?
        .command
    {
        super::Command::Run(run) => Config::from_run_args(&run),
        _ => Err(bad("not a run command")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::glob_match;
    use std::net::IpAddr;
    use std::time::Duration;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        super::for_tests(args)
    }

    #[test]
    fn a_route_config_is_built_from_values_with_runs_defaults_for_the_rest() {
        let defaults = RunArgs::defaults().unwrap();
        let route = RouteArgs {
            upstream_proxy: "direct".into(),
            resolve: vec!["chatgpt.com:443:127.0.0.9".into()],
            wpad_domain: Some("corp.example".into()),
            ..defaults.route.clone()
        };
        let mut auth = route.auth.clone();
        auth.trust_pac_proxies = true;
        let route = RouteArgs { auth, ..route };
        let built = route_config(&route, Some("2s"), [None, None]).unwrap();
        assert_eq!(built.connect_timeout, Duration::from_secs(2));
        assert_eq!(built.wpad_domain.as_deref(), Some("corp.example"));
        assert!(built.upstream_auth.trust_pac_proxies);
        let pinned = built.resolve.get(&("chatgpt.com".to_string(), 443));
        assert_eq!(pinned, Some(&"127.0.0.9".parse::<IpAddr>().unwrap()));
        // Everything else as `run` with no flags has it.
        let run = config(&["--upstream-proxy", "direct"]).unwrap();
        let default_timeout = route_config(&route, None, [None, None]).unwrap();
        assert_eq!(default_timeout.connect_timeout, run.connect_timeout);
        assert_eq!(built.listen, run.listen);
        assert_eq!(built.response_timeout, run.response_timeout);
        // And checked as run checks: a bad pin is refused.
        let bad_pin = RouteArgs {
            resolve: vec!["nonsense".into()],
            ..route
        };
        assert!(route_config(&bad_pin, None, [None, None]).is_err());
    }

    #[test]
    fn zero_timeouts_bad_globs_and_localhost() {
        for args in [
            &["--connect-timeout", "0"][..],
            &["--response-timeout", "0s"],
            &["--header-timeout", "0ms"],
            &["--intercept", "*.chatgpt.com,a b"],
            &["--intercept", "https://chatgpt.com/"],
            &["--max-connections", "0"],
            &["--listen", "example.com:8080"],
        ] {
            assert!(config(args).is_err(), "{args:?}");
        }
        let c = config(&["--listen", "localhost:8081"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8081".parse().unwrap());
        assert!(config(&["--intercept", "*.chatgpt.com,cdn.oaistatic.com"]).is_ok());
    }

    #[test]
    fn defaults_are_safe() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(c.proxy_auth.is_none());
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert!(c.session_dir.starts_with("sessions"));
        assert_eq!(c.profile_name, "built-in:chatgpt");
    }

    #[test]
    fn remote_listen_needs_allow_remote_and_auth() {
        let e = config(&["--listen", "0.0.0.0:8080"]).unwrap_err();
        assert!(e.0.contains("--allow-remote"), "{e}");
        let e = config(&["--listen", "0.0.0.0:8080", "--allow-remote"]).unwrap_err();
        assert!(e.0.contains("--proxy-auth"), "{e}");
        let c = config(&[
            "--listen",
            "0.0.0.0:8080",
            "--allow-remote",
            "--proxy-auth",
            "me:secret",
        ])
        .unwrap();
        assert_eq!(c.proxy_auth.as_deref(), Some("Basic bWU6c2VjcmV0"));
        assert!(config(&["--listen", "[::1]:8080"]).is_ok());
    }

    #[test]
    fn resolve_pins() {
        assert_eq!(
            parse_resolve("ChatGPT.com:443:127.0.0.1").unwrap(),
            ("chatgpt.com".to_string(), 443, "127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_resolve("a:80:[::1]").unwrap().2,
            "::1".parse::<IpAddr>().unwrap()
        );
        assert!(parse_resolve("a:80").is_err());
        assert!(parse_resolve("a:x:127.0.0.1").is_err());
        assert!(config(&["--resolve", "nonsense"]).is_err());
    }

    #[test]
    fn intercept_rules() {
        let p = Profile::builtin();
        assert!(!Intercept::parse("none").unwrap().covers("chatgpt.com", &p));
        assert!(Intercept::parse("profile")
            .unwrap()
            .covers("ws.chatgpt.com", &p));
        assert!(!Intercept::parse("profile")
            .unwrap()
            .covers("example.org", &p));
        assert!(Intercept::parse("all").unwrap().covers("example.org", &p));
        let globs = Intercept::parse("*.chatgpt.com, files.oaiusercontent.com").unwrap();
        assert!(globs.covers("ab.chatgpt.com", &p) && globs.covers("FILES.oaiusercontent.com", &p));
        assert!(!globs.covers("chatgpt.com", &p) && !globs.covers("x.oaiusercontent.com", &p));
        assert!(glob_match("a*b*c", "aXXbYc") && !glob_match("a*b", "ab-"));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("f", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("f", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_duration("f", "1.5").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_duration("f", "soon").is_err());
        assert!(parse_duration("f", "-1s").is_err());
        assert!(parse_duration("f", "5h").is_err());
    }

    #[test]
    fn bad_listen_and_profile_are_errors() {
        assert!(config(&["--listen", "localhost"])
            .unwrap_err()
            .0
            .contains("IP:PORT"));
        let e = config(&["--profile", "/nonexistent/profile.json"]).unwrap_err();
        assert!(e.0.contains("cannot read"), "{e}");
    }
}
