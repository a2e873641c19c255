//! The command line. This file: the clap types. Beside it, one file per command that turns
//! its arguments into the library's own types and calls in (`config` builds the run's
//! `Config` before anything binds). Only `cli/` and `main.rs` see clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod auth_test;
pub mod bench;
pub mod browser;
pub mod bundle;
pub mod ca;
pub mod check;
pub mod config;
pub mod docs;
pub mod exporter;
pub mod import;
pub mod pac;
pub mod report;
pub mod run;

/// Why a command failed, and so its exit code.
#[derive(Debug)]
pub enum Failed {
    /// A bad flag or value: exit 64 (EX_USAGE).
    Usage(String),
    /// Anything else: exit 1.
    Error(String),
    /// A finding, not an error: the command said what it found; exit with this code
    /// (`check`'s 2 when a host fails).
    Found(u8, String),
}

impl Failed {
    /// An error with its whole chain of causes.
    pub fn error(e: &(dyn std::error::Error + 'static)) -> Failed {
        Failed::Error(crate::failure::error_chain(e))
    }

    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failed::Usage(_) => 64,
            Failed::Error(_) => 1,
            Failed::Found(code, _) => *code,
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Usage(e) | Failed::Error(e) | Failed::Found(_, e) => f.write_str(e),
        }
    }
}

impl From<&str> for Failed {
    fn from(e: &str) -> Failed {
        Failed::Error(e.to_string())
    }
}

impl From<String> for Failed {
    fn from(e: String) -> Failed {
        Failed::Error(e)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "diagproxy",
    version,
    about = "A local diagnostic proxy: why does ChatGPT fail on this network?"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy and record a session.
    Run(Box<RunArgs>),
    /// Manage the local CA used for interception.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Rebuild the HAR, HTML and Markdown reports of a session from its events.jsonl.
    Report(ReportArgs),
    /// The same diagnosis from a browser's own file, without a proxy: a NetLog
    /// (chrome://net-export) or a HAR, gzip or not; exit 2 when something fails, 65 for
    /// content it cannot read, 66 for a file that does not exist.
    Import(ImportArgs),
    /// Compare two sessions (company network vs hotspot): is the network the cause?
    Compare(CompareArgs),
    /// Put session folders into one zip for support, after showing what it holds and asking;
    /// or recheck a bundle's hashes (--verify FILE.zip).
    Bundle(BundleArgs),
    /// Measure diagproxy's own overhead on this machine (loopback only).
    Bench(BenchArgs),
    /// Where each profile host (or HOST) goes and why: the route source, the PAC's answer
    /// and the helper calls it made; exits 1 when a profile host would fail.
    Pac(PacArgs),
    /// Probe every host ChatGPT needs (DNS, TCP, TLS, HTTP) and the voice ports, along the
    /// browser's route; exit 2 when something fails.
    Check(CheckArgs),
    /// Serve `check` to Prometheus: /probe?target=HOST as blackbox_exporter does, for the
    /// profile's hosts only; /metrics for the exporter's own counters.
    Exporter(Box<ExporterArgs>),
    /// Try each sign-in scheme a corporate proxy offers (Negotiate, NTLM, Basic) and say
    /// which works, as cntlm -M does.
    AuthTest(AuthTestArgs),
    /// Open Chromium/Chrome through diagproxy with its CA trusted in that browser only (a
    /// temporary profile; nothing installed), with the live page in a second tab.
    Browser(BrowserArgs),
    /// Print a shell completion script: `diagproxy completions bash >
    /// /etc/bash_completion.d/diagproxy` (the .deb installs them).
    Completions(CompletionsArgs),
    /// Write the manual pages (diagproxy.1 and one per command) into a folder, or print
    /// diagproxy.1 (roff) without one (the .deb installs them).
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The folder to write diagproxy.1 and diagproxy-COMMAND.1 into [default: print
    /// diagproxy.1 on stdout].
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BrowserArgs {
    /// The page to open first.
    #[arg(default_value = "https://chatgpt.com/")]
    pub url: String,
    /// The browser to start [default: the first of chromium, google-chrome, microsoft-edge,
    /// brave-browser on PATH]. A Firefox path prints the manual steps instead.
    #[arg(long, value_name = "PATH")]
    pub browser: Option<PathBuf>,
    /// The diagproxy to use (IP:PORT or http://IP:PORT, loopback only); when nothing
    /// answers there, `diagproxy run --intercept profile` is started on it for as long as
    /// the browser is open.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    pub proxy: String,
    /// Send all of the browser's traffic through diagproxy (--proxy-server), not only the
    /// profile's hosts (its PAC file, the default): the browser's own update and sign-in
    /// hosts then appear as other traffic.
    #[arg(long)]
    pub all_traffic: bool,
    /// The CA a started `run` uses (created there if missing).
    #[arg(long, default_value = "certs", value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Start the browser headless (tests, remote machines).
    #[arg(long)]
    pub headless: bool,
    /// Do not open the live page in a second tab.
    #[arg(long)]
    pub no_live_page: bool,
    /// One more flag for the browser (repeatable), e.g. --chromium-flag=--screenshot.
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    pub chromium_flag: Vec<String>,
    /// One more argument for a `run` started here (repeatable), e.g. --run-arg=--resolve=….
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub run_arg: Vec<String>,
}

/// How to sign in to a corporate proxy: `run`'s flags, and those of the commands that go
/// out as it does.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Sign in to a corporate proxy that answers 407: auto (Negotiate with the Kerberos
    /// ticket, else NTLM, else Basic, as offered and possible), negotiate, ntlm, basic or
    /// none.
    #[arg(
        long,
        value_name = "MODE",
        default_value = "auto",
        env = "DIAGPROXY_UPSTREAM_AUTH"
    )]
    pub upstream_auth: String,

    /// The account for NTLM (and Basic): DOMAIN\user or user@domain. The password comes
    /// from DIAGPROXY_UPSTREAM_PASSWORD, else a prompt on the terminal; never a flag.
    #[arg(long, value_name = "DOMAIN\\USER", env = "DIAGPROXY_UPSTREAM_USER")]
    pub upstream_user: Option<String>,

    /// Proxies besides those you named (--upstream-proxy, the environment, the desktop's
    /// manual settings) that may get --upstream-user's password: host or host:port globs,
    /// comma-separated (e.g. *.corp.example). A proxy only a PAC or WPAD file names is not
    /// sent Basic or NTLM credentials otherwise; Negotiate (Kerberos) always may.
    #[arg(long, value_name = "GLOB[,GLOB]", default_value = "")]
    pub upstream_auth_proxies: String,

    /// Trust the proxies a PAC names in the PAC server's own domain with --upstream-user's
    /// password (pac.corp.example/proxy.pac: *.corp.example).
    #[arg(long)]
    pub trust_pac_proxies: bool,
}

/// The way out and what it is judged by: `run`'s flags, shared with the commands that go out
/// as it does (`pac`, `check`, `auth-test`).
#[derive(Debug, Clone, Args)]
pub struct RouteArgs {
    /// The way out, as the browser takes it: auto (environment, desktop settings, WPAD,
    /// else direct), direct, http://[user:pass@]host:port, pac:URL or pac:FILE.
    #[arg(
        long,
        value_name = "SOURCE",
        default_value = "auto",
        env = "DIAGPROXY_UPSTREAM_PROXY"
    )]
    pub upstream_proxy: String,

    #[command(flatten)]
    pub auth: AuthArgs,
    /// Look for WPAD (http://wpad.DOMAIN/wpad.dat) in this DNS domain instead of the
    /// machine's search domains.
    #[arg(long, value_name = "DOMAIN")]
    pub wpad_domain: Option<String>,
    /// Pin HOST:PORT to ADDR (curl's meaning: for lookups, dnsResolve and the proxies);
    /// repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<String>,
    /// Profile file [default: the built-in ChatGPT profile].
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PacArgs {
    /// Hosts to look up [default: one name per profile entry].
    #[arg(value_name = "HOST")]
    pub hosts: Vec<String>,
    #[command(flatten)]
    pub route: RouteArgs,
    /// How long to wait for each proxy named to accept a connection.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    pub connect_timeout: String,
    /// One JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuthTestArgs {
    /// The host to CONNECT to through each proxy on its route, HOST or HOST:PORT
    /// [default: the profile's first host, port 443].
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
    #[command(flatten)]
    pub route: RouteArgs,
    /// How long to wait for each proxy to accept a connection.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    pub connect_timeout: String,
    /// One JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The TLS key log (`run`, `check`).
#[derive(Debug, Args)]
pub struct KeyLogArgs {
    /// Write the secrets of every TLS session diagproxy takes part in to FILE (NSS key log
    /// format: Wireshark/tshark decrypt a capture with it). Created 0600, appended. Anyone
    /// holding it can decrypt the captured traffic: never part of a bundle unless asked.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
    /// Write the key log to $SSLKEYLOGFILE (ignored without this flag, so a variable left
    /// in the environment never turns a key log on by accident).
    #[arg(long)]
    pub keylog_from_env: bool,
}

impl KeyLogArgs {
    /// The file to write keys to, if any.
    pub fn chosen(&self) -> Option<PathBuf> {
        crate::tls::keylog::chosen(self.keylog.as_deref(), self.keylog_from_env)
    }
}

/// What a probe runs with, for `check` and as the exporter's default module.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub route: RouteArgs,
    /// Each stage's time budget (the exporter's probes also stop within the scrape timeout).
    #[arg(long, default_value = "4s", value_name = "DURATION")]
    pub stage_timeout: String,
    /// The TURN server for the voice probes, HOST:PORT (STUN over UDP; TCP 443 to the
    /// profile's TURN/TLS host), or `none` [default: the profile's].
    #[arg(long, value_name = "HOST:PORT|none")]
    pub voice: Option<String>,
    /// The public trust store chains are judged against [default: Mozilla's roots].
    #[arg(long, value_name = "PEM")]
    pub public_roots: Option<PathBuf>,
    /// This machine's trust store [default: the system's].
    #[arg(long, value_name = "PEM")]
    pub system_roots: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Hosts to check, HOST or HOST:PORT [default: the profile's hosts].
    #[arg(value_name = "HOST")]
    pub hosts: Vec<String>,
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// Where check.json goes [default: sessions/<UTC timestamp>-<pid>-check].
    #[arg(long, value_name = "DIR")]
    pub session_dir: Option<PathBuf>,
    /// Write into an existing, non-empty --session-dir (its files are replaced).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub keylog: KeyLogArgs,
    /// What stdout gets: `table`, `json` (check.json's contents, as --json) or `prometheus`
    /// (the text exposition, every series with a host label: for node_exporter's textfile
    /// collector).
    #[arg(long, value_enum, default_value_t = CheckFormat::Table)]
    pub format: CheckFormat,
    /// Also push the results to a Prometheus Pushgateway at URL (PUT, so a re-run replaces
    /// the group's last result).
    #[arg(long, value_name = "URL")]
    pub push: Option<String>,
    /// The Pushgateway job name.
    #[arg(
        long,
        default_value = "diagproxy",
        value_name = "NAME",
        requires = "push"
    )]
    pub job: String,
    /// A grouping key of the push (repeatable): site or device identity, e.g. site=office.
    #[arg(long, value_name = "KEY=VALUE", requires = "push")]
    pub grouping: Vec<String>,
    /// One JSON document on stdout (check.json's contents) instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Seconds per measurement (each mode runs direct and through the proxy).
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Concurrency of the "many clients" forward test.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Idle tunnels opened for the memory test.
    #[arg(long, default_value_t = 1000)]
    pub tunnels: usize,
    /// Measure another proxy (http://host:port) through the same harness instead.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// The other proxy's CA certificate (PEM), to measure its interception too.
    #[arg(long, value_name = "PEM")]
    pub proxy_ca: Option<PathBuf>,
    /// The bench HTTPS origin's root (certificate and key, PEM) in FILE, created (0600) if it
    /// does not exist: start the other proxy trusting it upstream, then bench its interception.
    #[arg(long, value_name = "FILE")]
    pub origin_root: Option<PathBuf>,
    /// The other proxy's process ID: pinned to the proxy core, its CPU time and memory read, as for diagproxy.
    #[arg(long, value_name = "PID", requires = "proxy")]
    pub proxy_pid: Option<u32>,
    /// Run only these groups of measurements (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "GROUP")]
    pub only: Vec<BenchGroup>,
    /// A corporate proxy that asks for sign-in (http://proxy.corp:3128): adds rows for a
    /// new tunnel through it, signing in as `run` would (the Kerberos ticket, or
    /// DIAGPROXY_UPSTREAM_USER / DIAGPROXY_UPSTREAM_PASSWORD for NTLM).
    #[arg(long, value_name = "URL")]
    pub auth_proxy: Option<String>,
    /// Pin HOST:PORT to ADDR for --auth-proxy's name; repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR", requires = "auth_proxy")]
    pub resolve: Vec<String>,
    /// Print JSON instead of the table.
    /// Also print the difference against an earlier run saved with --json (the value
    /// through the proxy and the proxy's CPU per unit, row by row).
    #[arg(long, value_name = "FILE.json")]
    pub compare: Option<PathBuf>,
    /// The size of the events file the `bundle` group bundles, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65536), value_name = "MIB")]
    pub bundle_mib: u64,
    /// The size of the NetLog the `import` group imports, in MiB.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=65536), value_name = "MIB")]
    pub import_mib: u64,
    #[arg(long)]
    pub json: bool,
}

/// The groups of `diagproxy bench` measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchGroup {
    /// Idle RSS and memory per idle tunnel.
    Memory,
    /// Plain HTTP/1.1 keep-alive requests.
    Forward,
    /// CONNECT bulk throughput and set-up time.
    Tunnel,
    /// HTTPS through interception.
    Intercept,
    /// PAC lookups (a 200-rule script): first and cached.
    Pac,
    /// A whole `diagproxy check` against loopback fixtures.
    Check,
    /// New tunnels through --auth-proxy, signing in each time.
    Auth,
    /// `diagproxy report` on sessions of 20,000 and 200,000 events: time and peak memory.
    Report,
    /// `diagproxy bundle` of a session with 1 GiB of events: seconds per GiB, peak memory.
    Bundle,
    /// `diagproxy import` of a 200 MiB NetLog: MB/s, peak memory.
    Import,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The session folder (holds events.jsonl).
    pub session_dir: PathBuf,
    /// Write the HAR here [default with no output flags: SESSION_DIR/session.har].
    #[arg(long, value_name = "FILE")]
    pub har: Option<PathBuf>,
    /// Write the HTML report here [default with no output flags: SESSION_DIR/report.html].
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the Markdown summary here [default with no output flags: SESSION_DIR/report.md].
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Keep credentials in the HAR instead of REDACTED (only if the session recorded them).
    #[arg(long)]
    pub include_secrets: bool,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The session folders to bundle (from `run` or `check`).
    #[arg(value_name = "SESSION_DIR", required_unless_present = "verify")]
    pub sessions: Vec<PathBuf>,
    /// The zip to write (0600; an existing file is never overwritten)
    /// [default: diagproxy-bundle-<UTC timestamp>.zip].
    #[arg(short = 'o', long = "output", value_name = "FILE.zip")]
    pub output: Option<PathBuf>,
    /// Also take what is left out by default (comma-separated or repeated): `keylog` (the
    /// session's TLS key log), `bodies` (bodies of 2xx answers), `ca-key` (the CA's
    /// private key, from --ca-dir), `secrets` (a session recorded with --include-secrets).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "WHAT")]
    pub include_sensitive: Vec<SensitiveArg>,
    /// Where the CA key is, for --include-sensitive ca-key.
    #[arg(long, default_value = "certs", value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Write without asking (scripts); the manifest records that no person reviewed it.
    /// Without it, and with no terminal to ask on, nothing is written (exit 64).
    #[arg(long)]
    pub yes: bool,
    /// The profile named in environment.json [default: the built-in ChatGPT profile].
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// The public trust store environment.json compares the machine's against.
    #[arg(long, value_name = "PEM")]
    pub public_roots: Option<PathBuf>,
    /// This machine's trust store [default: the system's].
    #[arg(long, value_name = "PEM")]
    pub system_roots: Option<PathBuf>,
    /// Recheck FILE.zip: every file against manifest.json's size and SHA-256 (exit 2 when
    /// something differs).
    #[arg(long, value_name = "FILE.zip", conflicts_with_all = ["sessions", "output", "yes", "include_sensitive"])]
    pub verify: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address to listen on. A non-loopback address needs --allow-remote and credentials.
    #[arg(long, default_value = "127.0.0.1:9471", value_name = "IP:PORT")]
    pub listen: String,
    /// Allow a non-loopback --listen (needs --auth or --bearer-token-file).
    #[arg(long)]
    pub allow_remote: bool,
    /// Require Basic credentials from every scraper.
    #[arg(long, value_name = "USER:PASS")]
    pub auth: Option<String>,
    /// Require `Authorization: Bearer TOKEN`, the token read from FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "auth")]
    pub bearer_token_file: Option<PathBuf>,
    /// A TOML file of named modules (`[modules.NAME]` with upstream_proxy, upstream_auth,
    /// stage_timeout, voice, resolve, public_roots, system_roots) that override the flags,
    /// chosen with /probe?module=NAME.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The default module: the probes' route, budgets and trust stores.
    #[command(flatten)]
    pub probe: ProbeArgs,
}

/// `check --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Table,
    Json,
    Prometheus,
}

/// What `--include-sensitive` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SensitiveArg {
    Keylog,
    Bodies,
    CaKey,
    Secrets,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// NetLog or HAR files (the format is told from the content; .gz is undone). Each
    /// becomes a session folder, so two files (office, hotspot) feed `compare`.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The session folder [default: sessions/TIME-PID-import]; with several files, the
    /// folder that holds one per file (named after the file).
    #[arg(long, value_name = "DIR")]
    pub session_dir: Option<PathBuf>,
    /// Profile file [default: the built-in ChatGPT profile].
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// The public trust store a chain must verify against to be public [default: the
    /// built-in Mozilla set].
    #[arg(long, value_name = "PEM")]
    pub public_roots: Option<PathBuf>,
    /// The trust store that stands in for the browser's when the file has a chain but not
    /// the browser's decision on it (a capture cut off mid-handshake) [default: the
    /// system's].
    #[arg(long, value_name = "PEM")]
    pub system_roots: Option<PathBuf>,
    /// Print summary.json instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The first session (e.g. on the company network).
    pub a: PathBuf,
    /// The second session (e.g. on a mobile hotspot).
    pub b: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write an HTML page here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the CA (ECDSA P-256, name-constrained to the profile's domains by default).
    Init(CaInitArgs),
    /// Print subject, fingerprint, constraints, validity and how to trust it.
    Show(CaDirArgs),
    /// Write the CA certificate (never the key) to stdout or a file.
    Export(CaExportArgs),
}

#[derive(Debug, Args)]
pub struct CaDirArgs {
    /// Where the CA lives.
    #[arg(long, default_value = "certs", value_name = "DIR")]
    pub ca_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CaInitArgs {
    #[command(flatten)]
    pub dir: CaDirArgs,
    /// Validity in days (1 to 3650).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Do not restrict the CA to the profile's domains (it could then impersonate any site).
    #[arg(long)]
    pub unconstrained: bool,
    /// Replace an existing CA.
    #[arg(long)]
    pub force: bool,
    /// Profile whose domains the CA is constrained to [default: built-in].
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CaExportArgs {
    #[command(flatten)]
    pub dir: CaDirArgs,
    #[arg(long, value_enum, default_value_t = CertFormat::Pem)]
    pub format: CertFormat,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertFormat {
    Pem,
    Der,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address to listen on. A non-loopback address needs --allow-remote.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,

    /// Allow listening on a non-loopback address (needs --proxy-auth).
    #[arg(long)]
    pub allow_remote: bool,

    /// Require Basic proxy credentials from every downstream.
    #[arg(long, value_name = "USER:PASS")]
    pub proxy_auth: Option<String>,

    #[command(flatten)]
    pub route: RouteArgs,

    /// Session folder [default: sessions/<UTC timestamp>-<process id>]
    #[arg(long, value_name = "DIR")]
    pub session_dir: Option<PathBuf>,

    /// Write into an existing, non-empty --session-dir (its files are replaced).
    #[arg(long)]
    pub force: bool,

    /// Live log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// More output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less output (-q: failures only in the live log).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Give up on a TCP connect after this long (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub connect_timeout: String,

    /// Give up waiting for an upstream's response head after this long.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub response_timeout: String,

    /// Close a downstream connection that has not sent a whole request head (or, when
    /// intercepted, finished its TLS handshake) this long after it opened or after its last
    /// answer (an idle keep-alive connection included).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub header_timeout: String,

    /// Fold host:port rows outside the profile beyond this many into one `other hosts` row.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub max_hosts: usize,

    /// Refuse new downstream connections beyond this many open at once (503 `overloaded`).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,

    /// Close a tunnel after no byte moved either way for this long.
    #[arg(long, default_value = "300s", value_name = "DURATION")]
    pub idle_timeout: String,

    /// Which CONNECT hosts to intercept: none, profile, all, or GLOB[,GLOB…] (e.g. *.chatgpt.com).
    #[arg(long, default_value = "none", value_name = "WHICH")]
    pub intercept: String,

    /// Where the local CA lives (for --intercept).
    #[arg(long, default_value = "certs", value_name = "DIR")]
    pub ca_dir: PathBuf,

    /// Keep intercepting a host even after its client rejected diagproxy's certificate.
    #[arg(long)]
    pub no_auto_passthrough: bool,

    /// Run `diagproxy check` at the start of the session: every profile host tested, not
    /// only those the client touches (its rows are marked in the report).
    #[arg(long)]
    pub check: bool,

    /// Record credentials (Authorization, cookies, tokens in URLs) instead of REDACTED.
    #[arg(long)]
    pub include_secrets: bool,

    #[command(flatten)]
    pub keylog: KeyLogArgs,

    /// Serve Prometheus counters at /metrics on the proxy's own listener (requests, tunnels,
    /// failures and bytes per profile host, every other host as host="other"). Behind the
    /// session's token, as the live page: send it as `Authorization: Bearer TOKEN` (fix it
    /// with DIAGPROXY_LIVE_TOKEN so a scrape config can hold it).
    #[arg(long)]
    pub metrics: bool,

    /// Which answers' bodies to keep in the session folder (first 64 KiB each): `problems`
    /// (a failure or a finding: block pages, error JSON), `text` (also every text/JSON/event
    /// stream), `all` (also binary), `none`. Bodies of ChatGPT conversations are personal
    /// data: keep `problems` unless you need more, and treat the folder accordingly.
    #[arg(long, value_enum, default_value = "problems", value_name = "WHICH")]
    pub bodies: BodiesArg,

    /// Judge chains against these roots instead of Mozilla's (PEM file).
    #[arg(long, value_name = "PEM")]
    pub public_roots: Option<PathBuf>,

    /// Use these roots as the machine's trust store (PEM file).
    #[arg(long, value_name = "PEM")]
    pub system_roots: Option<PathBuf>,

    /// On Ctrl-C or SIGTERM, let open work finish for this long before writing the summary.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub grace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BodiesArg {
    None,
    Problems,
    Text,
    All,
}

impl From<BodiesArg> for crate::config::Bodies {
    fn from(arg: BodiesArg) -> Self {
        match arg {
            BodiesArg::None => crate::config::Bodies::None,
            BodiesArg::Problems => crate::config::Bodies::Problems,
            BodiesArg::Text => crate::config::Bodies::Text,
            BodiesArg::All => crate::config::Bodies::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One aligned line per tunnel and request.
    Human,
    /// One JSON object per line.
    Json,
}
