//! `Config`: the checked configuration of one `diagproxy run`, and the parsers of its
//! values (durations, pins, globs). `cli` builds it from the command line before anything
//! binds, so a bad flag is an exit-64 message and never a half-started proxy. No clap here.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::profile::Profile;
use crate::session::livelog::Format;
use crate::tls::roots::TrustRoots;
use crate::upstream::route::{basic, Route, Spec};
use crate::upstream::router::Router;

/// The checked configuration of one `diagproxy run`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (the caller binds it; tests bind port 0 instead).
    pub listen: SocketAddr,
    /// The expected `Proxy-Authorization` value, when downstreams must authenticate.
    pub proxy_auth: Option<String>,
    /// Where routes come from (`--upstream-proxy`: auto, direct, a proxy, a PAC).
    pub upstream: Spec,
    /// The DNS domain WPAD looks in instead of the machine's search domains.
    pub wpad_domain: Option<String>,
    /// How to sign in to a corporate proxy that answers `407` (`--upstream-auth`,
    /// `--upstream-user`).
    pub upstream_auth: Arc<crate::upstream::auth::Settings>,
    /// The route of every host, built from `upstream` when the proxy starts (DIRECT until
    /// then).
    pub router: Arc<Router>,
    /// `--resolve` pins: (lower-case host, port) → address.
    pub resolve: HashMap<(String, u16), IpAddr>,
    /// Where the session files go.
    pub session_dir: PathBuf,
    /// The allowlist and remedies.
    pub profile: Arc<Profile>,
    /// How the profile is named in the summary (`built-in:chatgpt` or the file path).
    pub profile_name: String,
    /// Live log format.
    pub log_format: Format,
    /// -v minus -q.
    pub verbosity: i8,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a downstream may take to send a whole request head (or finish the TLS
    /// handshake of an intercepted tunnel), and how long it may sit idle between requests.
    pub header_timeout: Duration,
    /// Host:port rows outside the profile beyond this many share one summary row.
    pub max_hosts: usize,
    /// At most this many downstream connections open at once; more are refused.
    pub max_connections: usize,
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
    /// `run --check`: probe every profile host as the session starts.
    pub check_at_start: bool,
    /// Keep credentials in the session files (opt-in).
    pub include_secrets: bool,
    /// Which answers' bodies the session folder keeps (`--bodies`).
    pub bodies: Bodies,
    /// Refuse to dial any address outside 127.0.0.0/8 and ::1 (`DIAGPROXY_LOOPBACK_ONLY=1`):
    /// how the test suite guarantees that nothing it starts leaves the machine. A refused
    /// address is a `connect_failed` that says why; no packet is sent. Names are not looked
    /// up either (only `--resolve` pins, test answers and `localhost` resolve).
    pub loopback_only: bool,
    /// Answers the resolver gives for these names (lower case) instead of asking DNS, judged
    /// like real answers (unlike `--resolve` pins). Tests only: a sinkhole answer can be
    /// injected, and with `loopback_only` it is never dialled.
    pub dns_answers: HashMap<String, Vec<IpAddr>>,
    /// The live page's key: every page and API but `/proxy.pac` and `/ca.pem` wants it
    /// (`?token=` once, then a cookie), so another local user cannot read the session.
    /// Random per session, or `DIAGPROXY_LIVE_TOKEN` (how `diagproxy browser` knows it).
    pub live_token: Arc<str>,
    /// `--keylog` (or `SSLKEYLOGFILE` with `--keylog-from-env`): where TLS secrets go. The
    /// command installs it (`tls::keylog::install`) before any TLS config is built; the
    /// session records the path so a bundle can leave the file out by name.
    pub keylog: Option<PathBuf>,
    /// `--metrics`: the proxy's listener also answers `/metrics` (Prometheus text, behind the
    /// live page's token), for a proxy left running in a lab or an office.
    pub metrics: bool,
}

/// Random per session: 128 bits as 32 hex digits.
pub fn new_live_token() -> Arc<str> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // ring's system source only fails when the OS has no randomness; then the clock and
    // pid still make the token unguessable enough for loopback, and it is said nowhere.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
        bytes.copy_from_slice(&digest.as_ref()[..16]);
    }
    Arc::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// `DIAGPROXY_LIVE_TOKEN`: 16 to 128 letters, digits, `-` or `_`.
pub fn parse_live_token(text: &str) -> Result<Arc<str>, ConfigError> {
    let shape = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !(16..=128).contains(&text.len()) || !shape {
        return Err(bad(
            "DIAGPROXY_LIVE_TOKEN: 16 to 128 letters, digits, - or _",
        ));
    }
    Ok(Arc::from(text))
}

impl Config {
    /// This configuration with its route discovered (`upstream::discover::router`, the one
    /// part known only after start-up I/O): a new value, the configuration is never
    /// assigned to after it is built.
    pub fn with_router(self, router: Router) -> Config {
        Config {
            router: Arc::new(router),
            ..self
        }
    }

    /// How diagproxy reaches `host:port` (`path`: what a PAC sees of an `http:` URL).
    pub async fn route(&self, https: bool, host: &str, port: u16, path: &str) -> Arc<Route> {
        self.router.route(https, host, port, path).await
    }
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
    pub(crate) fn parse(text: &str) -> Result<Intercept, ConfigError> {
        Ok(match text.trim() {
            "none" => Intercept::None,
            "profile" => Intercept::Profile,
            "all" => Intercept::All,
            "" => {
                return Err(bad(
                    "--intercept: expected none, profile, all or GLOB[,GLOB…]",
                ))
            }
            globs => {
                let globs: Vec<String> = globs
                    .split(',')
                    .map(|g| g.trim().to_ascii_lowercase())
                    .filter(|g| !g.is_empty())
                    .collect();
                // A glob is a host name with `*` in it: anything else can never match.
                let name_like = |g: &String| {
                    g.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"*.-_:[]".contains(&b))
                };
                if let Some(bad_glob) = globs.iter().find(|g| !name_like(g)) {
                    return Err(bad(format!(
                        "--intercept {bad_glob:?}: a glob is a host name with * in it (e.g. *.chatgpt.com)"
                    )));
                }
                Intercept::Globs(globs)
            }
        })
    }

    /// A warning when `--intercept` globs cover none of the profile's hosts (a typo such as
    /// `profle`), naming the closest of the words and hosts it could have meant.
    pub fn unmatched_warning(&self, profile: &Profile) -> Option<String> {
        let Intercept::Globs(globs) = self else {
            return None;
        };
        // A profile entry's host: `*.chatgpt.com` → `chatgpt.com` (its apex is covered too).
        let hosts: Vec<String> = profile
            .entries
            .iter()
            .map(|e| e.pattern.trim_start_matches("*.").to_ascii_lowercase())
            .collect();
        let covered = hosts.iter().any(|h| {
            globs
                .iter()
                .any(|g| glob_match(g, h) || glob_match(g, &format!("x.{h}")))
        });
        if covered {
            return None;
        }
        let typed = globs.join(",");
        let words = ["profile", "all", "none"].map(String::from);
        let candidates = words
            .iter()
            .chain(profile.entries.iter().map(|e| &e.pattern));
        let closest = candidates.min_by_key(|c| edit_distance(&typed, c))?;
        Some(format!(
            "--intercept {typed:?} matches none of the profile's hosts: nothing of ChatGPT will be intercepted; did you mean {closest:?}?"
        ))
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

/// Levenshtein distance in characters (short strings: a flag's value against a few words).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut last = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (last + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            last = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

pub use crate::text::glob_match;

/// A command-line problem; `main` prints it and exits 64.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// `USER:PASS` → the `Basic …` header value.
pub(crate) fn parse_proxy_auth(text: &str) -> Result<String, ConfigError> {
    match text.split_once(':') {
        Some((user, _)) if !user.is_empty() => Ok(basic(text)),
        _ => Err(bad("--proxy-auth: expected USER:PASS")),
    }
}

/// `HOST:PORT:ADDR`, ADDR being IPv4, IPv6 or `[IPv6]`.
pub(crate) fn parse_resolve(pin: &str) -> Result<(String, u16, IpAddr), ConfigError> {
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

    /// The obvious backtracking matcher, as a reference.
    fn reference(pattern: &str, text: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == text,
            Some((head, tail)) => text.strip_prefix(head).is_some_and(|rest| {
                (0..=rest.len())
                    .filter(|&i| rest.is_char_boundary(i))
                    .any(|i| reference(tail, &rest[i..]))
            }),
        }
    }

    #[test]
    fn globs_match_as_the_reference_does() {
        // Every pattern of up to 5 symbols from {a, b, *} against every text of up to 5
        // letters from {a, b}.
        let words = |alphabet: &[char], max: usize| {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                    .collect();
                all.extend(last.iter().cloned());
            }
            all
        };
        let texts = words(&['a', 'b'], 5);
        for pattern in words(&['a', 'b', '*'], 5) {
            for text in &texts {
                assert_eq!(
                    glob_match(&pattern, text),
                    reference(&pattern, text),
                    "{pattern:?} {text:?}"
                );
            }
        }
        assert!(glob_match("*.chatgpt.com", "ab.chatgpt.com"));
        assert!(!glob_match("*.chatgpt.com", "chatgpt.com"));
    }

    #[test]
    fn an_intercept_glob_that_covers_nothing_is_named_with_the_closest_word() {
        let p = Profile::builtin();
        let typo = Intercept::parse("profle").unwrap();
        let warning = typo.unmatched_warning(&p).unwrap();
        assert!(warning.ends_with("did you mean \"profile\"?"), "{warning}");
        let host_typo = Intercept::parse("*.chatgtp.com").unwrap();
        let warning = host_typo.unmatched_warning(&p).unwrap();
        assert!(
            warning.contains("did you mean \"*.chatgpt.com\""),
            "{warning}"
        );
        for fine in [
            "*.chatgpt.com",
            "chatgpt.com",
            "*.openai.com,example.org",
            "profile",
        ] {
            let i = Intercept::parse(fine).unwrap();
            assert_eq!(i.unmatched_warning(&p), None, "{fine}");
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_hostile_glob_does_not_backtrack() {
        // Exponential for the reference; one pass here (a timed test would be flaky, so
        // this only shows it finishes and answers right).
        let pattern = "*a".repeat(30) + "z";
        let text = "a".repeat(5000);
        assert!(!glob_match(&pattern, &text));
        assert!(glob_match(&pattern, &(text + "z")));
    }
}

/// `--bodies`: which answers' bodies (their first [`KEPT_BODY`] bytes) go into the session
/// folder. Bodies of ChatGPT conversations are personal data: the default keeps only the
/// bodies of answers that went wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Bodies {
    /// None at all (the detectors still read block pages; nothing is written).
    None,
    /// Answers with a failure or a finding: block pages, unexpected HTML, error JSON.
    #[default]
    Problems,
    /// Also every text, JSON and event-stream answer.
    Text,
    /// Also binary answers.
    All,
}

/// The most of one body the session folder keeps.
pub const KEPT_BODY: usize = 64 * 1024;
