//! `Config::from_run_args`: every check on the command line happens here, before anything
//! binds, so a bad flag is an exit-64 message and never a half-started proxy.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cli::{LogFormat, RunArgs};
use crate::profile::Profile;
use crate::tls::roots::TrustRoots;
use crate::upstream::route::{basic, parse_upstream_proxy, UpstreamProxy};

/// The checked configuration of one `diagproxy run`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (the caller binds it; tests bind port 0 instead).
    pub listen: SocketAddr,
    /// The expected `Proxy-Authorization` value, when downstreams must authenticate.
    pub proxy_auth: Option<String>,
    /// The corporate proxy everything is chained through.
    pub upstream_proxy: Option<UpstreamProxy>,
    /// `--resolve` pins: (lower-case host, port) → address.
    pub resolve: HashMap<(String, u16), IpAddr>,
    /// Where the session files go.
    pub session_dir: PathBuf,
    /// The allowlist and remedies.
    pub profile: Arc<Profile>,
    /// How the profile is named in the summary (`built-in:chatgpt` or the file path).
    pub profile_name: String,
    /// Live log format.
    pub log_format: LogFormat,
    /// -v minus -q.
    pub verbosity: i8,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long open work may finish after a shutdown signal.
    pub grace: Duration,
    /// The public and machine trust stores chains are judged against.
    pub roots: TrustRoots,
    /// Which CONNECT hosts are intercepted instead of tunnelled.
    pub intercept: Intercept,
    /// Where the local CA is, for interception and `/ca.pem`.
    pub ca_dir: PathBuf,
    /// Tunnel a host untouched once its client rejected our certificate.
    pub auto_passthrough: bool,
    /// Keep credentials in the session files (opt-in).
    pub include_secrets: bool,
}

/// `--intercept`: which hosts get a minted certificate instead of a byte tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intercept {
    None,
    /// Every host the profile covers.
    Profile,
    All,
    /// Hosts matching any of these globs (`*` matches any run of characters).
    Globs(Vec<String>),
}

impl Intercept {
    fn parse(text: &str) -> Result<Intercept, ConfigError> {
        Ok(match text.trim() {
            "none" => Intercept::None,
            "profile" => Intercept::Profile,
            "all" => Intercept::All,
            "" => {
                return Err(bad(
                    "--intercept: expected none, profile, all or GLOB[,GLOB…]",
                ))
            }
            globs => Intercept::Globs(
                globs
                    .split(',')
                    .map(|g| g.trim().to_ascii_lowercase())
                    .filter(|g| !g.is_empty())
                    .collect(),
            ),
        })
    }

    /// Whether CONNECTs to `host` are intercepted.
    pub fn covers(&self, host: &str, profile: &Profile) -> bool {
        match self {
            Intercept::None => false,
            Intercept::All => true,
            Intercept::Profile => profile.match_host(host).is_some(),
            Intercept::Globs(globs) => {
                let host = host.to_ascii_lowercase();
                globs.iter().any(|g| glob_match(g, &host))
            }
        }
    }
}

/// `*` matches any run of characters (dots included); everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob_match(tail, &rest[i..]))
        }
    }
}

/// A command-line problem; `main` prints it and exits 64.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl Config {
    pub fn from_run_args(args: &RunArgs) -> Result<Config, ConfigError> {
        let listen: SocketAddr = args.listen.parse().map_err(|_| {
            bad(format!(
                "--listen {:?}: expected IP:PORT, e.g. 127.0.0.1:8080",
                args.listen
            ))
        })?;
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
        let upstream_proxy = args
            .upstream_proxy
            .as_deref()
            .map(|url| parse_upstream_proxy(url).map_err(ConfigError))
            .transpose()?;
        let mut resolve = HashMap::new();
        for pin in &args.resolve {
            let (host, port, addr) = parse_resolve(pin)?;
            resolve.insert((host, port), addr);
        }
        let (profile, profile_name) = match &args.profile {
            Some(path) => {
                let p = Profile::load(path)
                    .map_err(|e| bad(format!("--profile {}: {e}", path.display())))?;
                (p, path.display().to_string())
            }
            None => {
                let p = Profile::builtin();
                let name = format!("built-in:{}", p.name);
                (p, name)
            }
        };
        let session_dir = match &args.session_dir {
            Some(dir) => dir.clone(),
            None => PathBuf::from("sessions").join(crate::clock::compact(SystemTime::now())),
        };
        let roots = TrustRoots::load(args.public_roots.as_deref(), args.system_roots.as_deref())
            .map_err(bad)?;
        Ok(Config {
            roots,
            intercept: Intercept::parse(&args.intercept)?,
            ca_dir: args.ca_dir.clone(),
            auto_passthrough: !args.no_auto_passthrough,
            include_secrets: args.include_secrets,
            listen,
            proxy_auth,
            upstream_proxy,
            resolve,
            session_dir,
            profile: Arc::new(profile),
            profile_name,
            log_format: args.log_format,
            verbosity: args.verbose.min(3) as i8 - args.quiet.min(3) as i8,
            connect_timeout: parse_duration("--connect-timeout", &args.connect_timeout)?,
            response_timeout: parse_duration("--response-timeout", &args.response_timeout)?,
            idle_timeout: parse_duration("--idle-timeout", &args.idle_timeout)?,
            grace: parse_duration("--grace", &args.grace)?,
        })
    }
}

/// `USER:PASS` → the `Basic …` header value.
fn parse_proxy_auth(text: &str) -> Result<String, ConfigError> {
    match text.split_once(':') {
        Some((user, _)) if !user.is_empty() => Ok(basic(text)),
        _ => Err(bad("--proxy-auth: expected USER:PASS")),
    }
}

/// `HOST:PORT:ADDR`, ADDR being IPv4, IPv6 or `[IPv6]`.
fn parse_resolve(pin: &str) -> Result<(String, u16, IpAddr), ConfigError> {
    let err = || {
        bad(format!(
            "--resolve {pin:?}: expected HOST:PORT:ADDR, e.g. chatgpt.com:443:127.0.0.1"
        ))
    };
    let mut parts = pin.splitn(3, ':');
    let host = parts.next().filter(|h| !h.is_empty()).ok_or_else(err)?;
    let port: u16 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
    let addr = parts.next().ok_or_else(err)?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr: IpAddr = addr.parse().map_err(|_| err())?;
    Ok((host.to_ascii_lowercase(), port, addr))
}

/// `10s`, `500ms`, `2m`, or a plain number of seconds (`0.5`).
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration, ConfigError> {
    let err = || {
        bad(format!(
            "{flag} {text:?}: expected a duration such as 10s, 500ms or 2m"
        ))
    };
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number.trim().parse().map_err(|_| err())?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(err()),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["diagproxy", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)
            .map_err(|e| bad(e.to_string()))?
            .command
        {
            Command::Run(run) => Config::from_run_args(&run),
            _ => Err(bad("not a run command")),
        }
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
