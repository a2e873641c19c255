//! Signing in to a corporate proxy as the browser does: on a `407`, read the schemes the
//! proxy offers, pick the strongest diagproxy can do (Negotiate with the user's Kerberos
//! ticket, then NTLM with `--upstream-user`, then Basic), and answer on the same connection.
//!
//! - this file: the choices and the diagnosis, no I/O — [`Mode`], [`Scheme`], the
//!   `Proxy-Authenticate` parser, [`Settings::candidates`], the [`AuthRecord`] an event
//!   carries and the [`AuthFailure`] that names what went wrong (`proxy_auth_no_ticket`, …);
//! - [`gss`]: GSSAPI (MIT or Heimdal Kerberos), loaded when first needed, so diagproxy builds
//!   without Kerberos headers and says clearly when the library is missing;
//! - [`ntlm`]: NTLMv2 through Devolutions' `sspi`;
//! - [`sign_in`]: the handshake on a connection, for CONNECT and for plain HTTP alike.
//!
//! Tokens and passwords never leave this module: the record names the scheme, the service
//! principal and the outcome, nothing a replay could use.

pub mod gss;
pub mod ntlm;
pub mod sign_in;

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// `--upstream-auth`: which schemes diagproxy may answer a proxy's `407` with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The strongest offered that diagproxy can do.
    Auto,
    Negotiate,
    Ntlm,
    Basic,
    /// Never sign in: a `407` is the answer (what a client without credentials sees).
    None,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, String> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Mode::Auto,
            "negotiate" | "kerberos" => Mode::Negotiate,
            "ntlm" => Mode::Ntlm,
            "basic" => Mode::Basic,
            "none" => Mode::None,
            other => {
                return Err(format!(
                    "--upstream-auth {other:?}: expected auto, negotiate, ntlm, basic or none"
                ))
            }
        })
    }
}

/// A scheme diagproxy can answer with, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scheme {
    Negotiate,
    Ntlm,
    Basic,
}

impl Scheme {
    /// The name as it appears in the headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Negotiate => "Negotiate",
            Scheme::Ntlm => "NTLM",
            Scheme::Basic => "Basic",
        }
    }

    pub fn parse(name: &str) -> Option<Scheme> {
        [Scheme::Negotiate, Scheme::Ntlm, Scheme::Basic]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One challenge of a `Proxy-Authenticate` header: the scheme as the proxy spelled it and
/// its token (`NTLM TlRMTVNT…`), if it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub token: Option<String>,
}

/// The challenges in `Proxy-Authenticate` values (RFC 9110 §11.6.1: several per value,
/// comma-separated, each a scheme and then a token68 or `name=value` parameters).
pub fn challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut found: Vec<Challenge> = Vec::new();
    for value in values {
        for item in split_outside_quotes(value) {
            let item = item.trim();
            if item.is_empty() || is_param(item) {
                continue; // a parameter of the challenge before it (realm="…")
            }
            let (scheme, rest) = item.split_once(' ').unwrap_or((item, ""));
            let rest = rest.trim();
            let token = (!rest.is_empty() && !is_param(rest)).then(|| rest.to_string());
            found.push(Challenge {
                scheme: scheme.to_string(),
                token,
            });
        }
    }
    found
}

/// `name=value` (a parameter), as opposed to `Scheme …` or a token68 ending in `=`.
fn is_param(item: &str) -> bool {
    match item.split_once('=') {
        Some((name, value)) => {
            !name.is_empty()
                && !name.contains(' ')
                && !value.is_empty()
                && !value.bytes().all(|b| b == b'=')
        }
        None => false,
    }
}

fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// `--upstream-user DOMAIN\user` with its password: for NTLM (and Basic).
#[derive(Clone)]
pub struct Credentials {
    pub domain: Option<String>,
    pub user: String,
    /// From `DIAGPROXY_UPSTREAM_PASSWORD` or a prompt; never printed, never recorded.
    pub password: String,
}

impl Credentials {
    /// `DOMAIN\user`, `user@domain` or `user`.
    pub fn parse(user: &str, password: String) -> Result<Credentials, String> {
        let user = user.trim();
        let (domain, name) = match (user.split_once('\\'), user.rsplit_once('@')) {
            (Some((d, u)), _) => (Some(d), u),
            (None, Some((u, d))) => (Some(d), u),
            (None, None) => (None, user),
        };
        if name.is_empty() || domain == Some("") {
            return Err(format!(
                "--upstream-user {user:?}: expected DOMAIN\\user, user@domain or user"
            ));
        }
        Ok(Credentials {
            domain: domain.map(str::to_string),
            user: name.to_string(),
            password,
        })
    }

    /// `DOMAIN\user`, safe to show.
    pub fn display(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}\\{}", self.user),
            None => self.user.clone(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, password ***)", self.display())
    }
}

/// How diagproxy signs in to corporate proxies, for the whole session.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// `--upstream-user`: NTLM needs it; Basic uses it when the proxy URL has none.
    pub user: Option<Credentials>,
    /// `--upstream-auth-proxies`: globs (`*.corp.example`, `proxy:3128`) of proxies that
    /// may get `--upstream-user`'s password besides those the user named; a PAC or WPAD
    /// file is written by whoever controls the network, so its proxies are not trusted.
    pub auth_proxies: Vec<String>,
    /// `--trust-pac-proxies`: a PAC's proxies in the PAC server's own domain count as
    /// named by the user (the router marks them when it parses the answer).
    pub trust_pac_proxies: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            mode: Mode::Auto,
            user: None,
            auth_proxies: Vec::new(),
            trust_pac_proxies: false,
        }
    }
}

/// At most this many `--upstream-auth-proxies` globs (a list, not a database).
pub const MAX_AUTH_PROXIES: usize = 64;

/// `--upstream-auth-proxies GLOB[,GLOB]`: host or `host:port` globs, lower-cased.
pub fn parse_auth_proxies(text: &str) -> Result<Vec<String>, String> {
    let globs: Vec<String> = text
        .split(',')
        .map(|g| g.trim().to_ascii_lowercase())
        .filter(|g| !g.is_empty())
        .collect();
    if globs.len() > MAX_AUTH_PROXIES {
        return Err(format!(
            "--upstream-auth-proxies: at most {MAX_AUTH_PROXIES} globs"
        ));
    }
    let shape = |g: &str| {
        g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.*:[]_".contains(&b))
    };
    match globs.iter().find(|g| !shape(g)) {
        Some(bad) => Err(format!(
            "--upstream-auth-proxies {bad:?}: a glob is a host or host:port with * in it (e.g. *.corp.example, proxy.corp:3128)"
        )),
        None => Ok(globs),
    }
}

/// What this process can do beyond what `Settings` says: whether GSSAPI loaded, and
/// whether the proxy URL carries Basic credentials.
#[derive(Debug, Clone)]
pub struct Can {
    /// `Err(why)` when the Kerberos library could not be loaded.
    pub negotiate: Result<(), String>,
    /// The proxy URL had `user:pass@`.
    pub url_basic: bool,
    /// `Err(why)` when `--upstream-user`'s password must not go to this proxy (a PAC
    /// named it; see [`Settings::password_to`]).
    pub password: Result<(), String>,
}

impl Settings {
    /// Whether `--upstream-user`'s password (Basic, NTLM) may go to the proxy at
    /// `host:port`: the user named it (`chosen`), or `--upstream-auth-proxies` does.
    /// Negotiate needs no such check: a Kerberos ticket is bound to the proxy's name.
    pub fn password_to(&self, host: &str, port: u16, chosen: bool) -> Result<(), String> {
        let host = crate::upstream::addr::unbracket(host).to_ascii_lowercase();
        let hostport = crate::upstream::addr::join(&host, port);
        let listed = self
            .auth_proxies
            .iter()
            .any(|g| crate::text::glob_match(g, &host) || crate::text::glob_match(g, &hostport));
        if chosen || listed {
            return Ok(());
        }
        Err(format!(
            "not sending your password to {hostport}, which the PAC named; add it to --upstream-auth-proxies if it is yours"
        ))
    }

    /// Whether `user:pass@` in a proxy URL is sent before any `407` (Basic is then the
    /// scheme the user chose by writing it).
    pub fn sends_url_basic(&self) -> bool {
        matches!(self.mode, Mode::Auto | Mode::Basic)
    }

    /// The schemes to try against `offered`, strongest first, or why none can be.
    pub fn candidates(&self, offered: &[Challenge], can: &Can) -> Result<Vec<Scheme>, String> {
        let wanted: Vec<Scheme> = match self.mode {
            Mode::None => return Err("--upstream-auth none: diagproxy does not sign in".into()),
            Mode::Auto => vec![Scheme::Negotiate, Scheme::Ntlm, Scheme::Basic],
            Mode::Negotiate => vec![Scheme::Negotiate],
            Mode::Ntlm => vec![Scheme::Ntlm],
            Mode::Basic => vec![Scheme::Basic],
        };
        let names: Vec<&str> = offered.iter().map(|c| c.scheme.as_str()).collect();
        let is_offered = |s: Scheme| names.iter().any(|n| Scheme::parse(n) == Some(s));
        let mut usable = Vec::new();
        let mut why_not = Vec::new();
        for scheme in wanted.into_iter().filter(|s| is_offered(*s)) {
            match self.lacks(scheme, can) {
                None => usable.push(scheme),
                Some(why) => why_not.push(format!("{scheme}: {why}")),
            }
        }
        if !usable.is_empty() {
            return Ok(usable);
        }
        let offered = if names.is_empty() {
            "no scheme".to_string()
        } else {
            names.join(", ")
        };
        let mut why = format!("the proxy offers {offered}");
        if why_not.is_empty() {
            why.push_str(&format!(
                "; diagproxy signs in with {}",
                self.mode_schemes()
            ));
        } else {
            why.push_str(&format!("; {}", why_not.join("; ")));
        }
        Err(why)
    }

    /// What `scheme` still needs here, if anything.
    fn lacks(&self, scheme: Scheme, can: &Can) -> Option<String> {
        match scheme {
            Scheme::Negotiate => can.negotiate.clone().err(),
            Scheme::Ntlm if self.user.is_none() => {
                Some("needs --upstream-user DOMAIN\\user (password from DIAGPROXY_UPSTREAM_PASSWORD or a prompt)".into())
            }
            Scheme::Ntlm => can.password.clone().err(),
            Scheme::Basic if can.url_basic => None,
            Scheme::Basic if self.user.is_none() => {
                Some("needs user:pass@ in the proxy URL or --upstream-user".into())
            }
            Scheme::Basic => can.password.clone().err(),
        }
    }

    fn mode_schemes(&self) -> &'static str {
        match self.mode {
            Mode::Auto => "Negotiate, NTLM or Basic",
            Mode::Negotiate => "Negotiate only (--upstream-auth negotiate)",
            Mode::Ntlm => "NTLM only (--upstream-auth ntlm)",
            Mode::Basic => "Basic only (--upstream-auth basic)",
            Mode::None => "nothing (--upstream-auth none)",
        }
    }
}

/// Why signing in to a proxy failed, as a finding names it (remedies in the profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthFailure {
    /// No Kerberos ticket (no `kinit`, an expired ticket, no domain login).
    #[serde(rename = "proxy_auth_no_ticket")]
    NoTicket,
    /// This machine's clock and the KDC's (or the proxy's) differ by more than Kerberos allows.
    #[serde(rename = "proxy_auth_clock_skew")]
    ClockSkew,
    /// The KDC does not know `HTTP/<proxy name>`: the proxy was addressed by IP or alias.
    #[serde(rename = "proxy_auth_spn")]
    Spn,
    /// The proxy refused what diagproxy sent (a wrong password, a ticket it cannot read).
    #[serde(rename = "proxy_auth_rejected")]
    Rejected,
    /// The proxy offers only schemes diagproxy cannot do here.
    #[serde(rename = "proxy_auth_unsupported")]
    Unsupported,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 5] = [
        AuthFailure::NoTicket,
        AuthFailure::ClockSkew,
        AuthFailure::Spn,
        AuthFailure::Rejected,
        AuthFailure::Unsupported,
    ];

    /// The finding's name, as in `summary.json` and the profile's `findings` table.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::NoTicket => "proxy_auth_no_ticket",
            AuthFailure::ClockSkew => "proxy_auth_clock_skew",
            AuthFailure::Spn => "proxy_auth_spn",
            AuthFailure::Rejected => "proxy_auth_rejected",
            AuthFailure::Unsupported => "proxy_auth_unsupported",
        }
    }

    pub fn parse(name: &str) -> Option<AuthFailure> {
        AuthFailure::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Kerberos error codes (MIT's `krb5_err.h`, the same numbers in Heimdal) that name a cause.
mod krb5 {
    const BASE: i64 = -1_765_328_384;
    pub const S_PRINCIPAL_UNKNOWN: i64 = BASE + 7;
    pub const TKT_EXPIRED: i64 = BASE + 32;
    pub const TKT_NYV: i64 = BASE + 33;
    pub const SKEW: i64 = BASE + 37;
    pub const CC_NOTFOUND: i64 = BASE + 141;
    pub const KDC_UNREACH: i64 = BASE + 156;
    pub const FCC_NOFILE: i64 = BASE + 195;
}

/// Names a GSSAPI failure from its minor status (a Kerberos error code) and, where a
/// mechanism hides the code, from its message.
pub fn classify_gss(minor: u32, message: &str) -> AuthFailure {
    match i64::from(minor as i32) {
        krb5::SKEW => return AuthFailure::ClockSkew,
        krb5::S_PRINCIPAL_UNKNOWN => return AuthFailure::Spn,
        krb5::TKT_EXPIRED | krb5::CC_NOTFOUND | krb5::FCC_NOFILE | krb5::KDC_UNREACH => {
            return AuthFailure::NoTicket
        }
        krb5::TKT_NYV => return AuthFailure::ClockSkew,
        _ => {}
    }
    let m = message.to_ascii_lowercase();
    if m.contains("clock skew") || m.contains("not yet valid") {
        AuthFailure::ClockSkew
    } else if m.contains("not found in kerberos database") || m.contains("server not found") {
        AuthFailure::Spn
    } else {
        // No credentials cache, an expired ticket, "SPNEGO cannot find mechanisms to
        // negotiate" (no mechanism had credentials): there was no ticket to send.
        AuthFailure::NoTicket
    }
}

/// Kerberos' default tolerance (`clockskew` in krb5.conf, and Active Directory's).
pub const KERBEROS_SKEW: Duration = Duration::from_secs(300);

/// How far this machine's clock is from the proxy's `Date`, when more than Kerberos allows.
pub fn skew(date: &str, now: SystemTime) -> Option<Duration> {
    let theirs = httpdate::parse_http_date(date.trim()).ok()?;
    let apart = match now.duration_since(theirs) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    (apart > KERBEROS_SKEW).then_some(apart)
}

/// Whether the sign-in worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Ok,
    Failed,
}

/// What signing in to one proxy took, for the event: never a token, never a password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AuthRecord {
    /// `host:port` as the route names the proxy.
    pub proxy: String,
    /// The schemes its `407` offered, as spelled.
    pub offered: Vec<String>,
    /// The scheme that worked, or the last one tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The Kerberos service principal asked for (`HTTP@proxy.corp.example`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spn: Option<String>,
    /// `DOMAIN\user` for NTLM and Basic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<AuthFailure>,
    /// What happened, in words (the GSSAPI message, the proxy's second 407).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Schemes tried before the last that could not be used here (`Negotiate: no ticket`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// What the user should know even when it worked: Basic sent the password over plain
    /// HTTP to the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Requests sent after the first `407`.
    pub rounds: u8,
    /// From the first `407` to the proxy's final answer.
    pub ms: f64,
}

impl AuthRecord {
    /// One line for the live log and reports: `Negotiate as HTTP@proxy ok in 3.1 ms`.
    pub fn line(&self) -> String {
        let scheme = self.scheme.as_deref().unwrap_or("no scheme");
        let mut line = format!("{} sign-in with {scheme}", self.proxy);
        if let Some(spn) = &self.spn {
            line.push_str(&format!(" ({spn})"));
        }
        if let Some(user) = &self.user {
            line.push_str(&format!(" as {user}"));
        }
        match (self.outcome, self.failure) {
            (Outcome::Ok, _) => line.push_str(&format!(": ok in {:.1} ms", self.ms)),
            (Outcome::Failed, failure) => {
                let name = failure.map_or("failed", AuthFailure::as_str);
                line.push_str(&format!(": {name}"));
                if let Some(d) = &self.detail {
                    line.push_str(&format!(" — {d}"));
                }
            }
        }
        if let Some(w) = &self.warning {
            line.push_str(&format!(" (warning: {w})"));
        }
        line
    }
}

#[cfg(test)]
mod tests;
