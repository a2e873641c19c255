//! `diagproxy browser`: a Chromium (or Chrome, Edge, Brave) with a fresh temporary profile,
//! its proxy set to this diagproxy and diagproxy's CA trusted for that browser only, through
//! `--ignore-certificate-errors-spki-list` with the CA's SPKI hash (as HTTP Toolkit does):
//! nothing is installed on the machine, and it all goes when the browser exits. Uses the
//! `run` already listening at `--proxy`, or starts one (intercepting the profile's hosts)
//! for as long as the browser is open. Firefox has no such flag: the steps are printed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{BrowserArgs, Failed};

/// How long a `run` started here may take to answer on its port.
const START_WAIT: Duration = Duration::from_secs(15);
/// How long asking a proxy for a page may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Browsers looked for on PATH, in order.
const CHROMIUMS: [&str; 7] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "microsoft-edge",
    "brave-browser",
    "chrome",
];
/// Chromium flags that stop its background requests (documented in the README).
const QUIET: [&str; 7] = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-pings",
    "--disable-domain-reliability",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
];
/// Where macOS keeps them.
const MAC_CHROMES: [&str; 2] = [
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
];

pub fn browser(args: &BrowserArgs) -> Result<(), Failed> {
    let proxy = parse_proxy(&args.proxy)?;
    let program = match &args.browser {
        Some(path) => path.clone(),
        None => find_browser().ok_or_else(|| {
            Failed::Error(
                "no Chromium, Chrome, Edge or Brave found on PATH; give one with --browser PATH"
                    .into(),
            )
        })?,
    };
    if is_firefox(&program) {
        eprint!("{}", firefox_steps(proxy));
        if !listens(proxy) {
            eprintln!(
                "Nothing answers at {proxy} yet: start `diagproxy run --listen {proxy} --intercept profile` first."
            );
        }
        return Ok(());
    }
    // The live page's token: ours for a run started here; for one already listening, only
    // if the environment gives it (its banner prints it).
    let (mut started, token) = if listens(proxy) {
        let token = std::env::var("DIAGPROXY_LIVE_TOKEN").ok();
        (None, token)
    } else {
        let token = std::env::var("DIAGPROXY_LIVE_TOKEN")
            .unwrap_or_else(|_| crate::config::new_live_token().to_string());
        (Some(start_run(proxy, args, &token)?), Some(token))
    };
    let result = trusted_ca(proxy, &args.ca_dir)
        .and_then(|pem| open(&program, proxy, &pem, token.as_deref(), args));
    if let Some(child) = started.as_mut() {
        stop_run(child);
    }
    result
}

/// `--proxy`: `IP:PORT` or curl's `http://IP:PORT`, on loopback only (the browser will
/// trust whatever answers there with the CA).
fn parse_proxy(text: &str) -> Result<SocketAddr, Failed> {
    let bare = text.strip_prefix("http://").unwrap_or(text);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    let addr: SocketAddr = bare.parse().map_err(|_| {
        Failed::Usage(format!(
            "--proxy {text:?}: expected IP:PORT or http://IP:PORT, e.g. 127.0.0.1:8080"
        ))
    })?;
    if !addr.ip().is_loopback() {
        return Err(Failed::Usage(format!(
            "--proxy {addr}: not a loopback address; diagproxy browser only uses a diagproxy on this machine"
        )));
    }
    Ok(addr)
}

/// The CA in `ca_dir` (read from disk, never from the network), once the proxy at `proxy`
/// has proved it holds its key: a program that merely answers on the port gets nothing
/// trusted.
fn trusted_ca(proxy: SocketAddr, ca_dir: &Path) -> Result<String, Failed> {
    let cert = ca_dir.join(crate::tls::ca::CERT_FILE);
    let pem = std::fs::read_to_string(&cert).map_err(|e| {
        Failed::Error(format!(
            "no CA at {} ({e}): create one with `diagproxy ca init`, or give the run's --ca-dir",
            cert.display()
        ))
    })?;
    let nonce = crate::config::new_live_token();
    let refused = |why: String| {
        Failed::Error(format!(
            "not trusting what answers at {proxy}: {why}. Is it a diagproxy run with --intercept and --ca-dir {}?",
            ca_dir.display()
        ))
    };
    let answer = ask(proxy, &format!("/api/prove?nonce={nonce}"))
        .ok_or_else(|| refused("it does not prove it holds the CA's key".into()))?;
    let signature = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(answer.trim())
            .map_err(|_| refused("its proof is not base64".into()))?
    };
    crate::tls::ca::verify_proof(&pem, &nonce, &signature).map_err(refused)?;
    Ok(pem)
}

/// Whether anything accepts connections at `proxy`.
fn listens(proxy: SocketAddr) -> bool {
    TcpStream::connect_timeout(&proxy, ASK_TIMEOUT).is_ok()
}

/// Opens the browser against the proxy at `proxy`, trusting `pem` (read from disk and
/// proved), and waits until it exits.
fn open(
    program: &Path,
    proxy: SocketAddr,
    pem: &str,
    token: Option<&str>,
    args: &BrowserArgs,
) -> Result<(), Failed> {
    let spki = spki_sha256_base64(pem)?;
    let profile = private_profile()?;
    let live = live_page(profile.path(), proxy, token)?;
    let flags = chromium_flags(profile.path(), proxy, &spki, live.as_deref(), args);
    eprintln!(
        "diagproxy: starting {} with its own profile, proxy {proxy}, trusting diagproxy's CA \
         (SPKI {spki}) in that browser only",
        program.display()
    );
    let status = Command::new(program)
        .args(&flags)
        .status()
        .map_err(|e| Failed::Error(format!("cannot start {}: {e}", program.display())))?;
    eprintln!("diagproxy: the browser exited ({status}); its profile is removed");
    if !status.success() {
        return Err(Failed::Error(format!(
            "{} ended with {status}: it may not have started (as root Chromium needs \
             --no-sandbox, which --headless adds; without a display it needs --headless); its \
             own message is above",
            program.display()
        )));
    }
    Ok(())
}

/// A temporary profile folder only this user can enter (it holds the live page's key).
fn private_profile() -> Result<tempfile::TempDir, Failed> {
    let profile = tempfile::Builder::new()
        .prefix("diagproxy-browser-")
        .tempdir()
        .map_err(|e| Failed::Error(format!("cannot make a temporary browser profile: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(profile.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Failed::Error(format!("cannot make the profile private: {e}")))?;
    }
    Ok(profile)
}

/// The live page to open: a file in the private profile that forwards to the URL with the
/// token, so the token is never on the browser's command line (which `ps` shows to every
/// user). Without a token (a run started elsewhere), none: its banner has the URL.
fn live_page(
    profile: &Path,
    proxy: SocketAddr,
    token: Option<&str>,
) -> Result<Option<String>, Failed> {
    let Some(token) = token else {
        eprintln!(
            "diagproxy: open the live page from the run's banner (http://{proxy}/?token=…); \
             set DIAGPROXY_LIVE_TOKEN to have it opened here"
        );
        return Ok(None);
    };
    let url = format!("http://{proxy}/?token={token}");
    let html = format!(
        "<!doctype html><meta http-equiv=\"refresh\" content=\"0;url={url}\"><a href=\"{url}\">diagproxy live page</a>\n"
    );
    let path = profile.join("diagproxy-live.html");
    crate::files::replace(&path, 0o600, |f| f.write_all(html.as_bytes()))
        .map_err(|e| Failed::Error(format!("cannot write {}: {e}", path.display())))?;
    Ok(Some(format!("file://{}", path.display())))
}

/// The flags: a throw-away profile, the proxy for every scheme, the CA's SPKI trusted,
/// no first-run dialogs, the URL and the live page.
fn chromium_flags(
    profile: &Path,
    proxy: SocketAddr,
    spki: &str,
    live: Option<&str>,
    args: &BrowserArgs,
) -> Vec<String> {
    let mut flags = vec![
        // Chromium honours the SPKI list only with its own user-data-dir: never the
        // user's everyday profile.
        format!("--user-data-dir={}", profile.display()),
        // Only the profile's hosts through diagproxy (its PAC), unless --all-traffic: the
        // browser's own background hosts stay out of the session.
        match args.all_traffic {
            true => format!("--proxy-server=http://{proxy}"),
            false => format!("--proxy-pac-url=http://{proxy}/proxy.pac"),
        },
        format!("--ignore-certificate-errors-spki-list={spki}"),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        // QUIC would go around an HTTP proxy on some builds; ChatGPT works over TCP.
        "--disable-quic".into(),
    ];
    // The browser's own background traffic (updates, sync, sign-in, safe browsing lists)
    // would fill the session with Google hosts that have nothing to do with ChatGPT.
    flags.extend(QUIET.iter().map(|f| f.to_string()));
    if args.headless {
        flags.extend([
            "--headless".into(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
        ]);
    }
    flags.extend(args.chromium_flag.iter().cloned());
    flags.push(args.url.clone());
    if let Some(live) = live.filter(|_| !args.no_live_page) {
        // Loopback is never sent through the proxy, so the page comes from diagproxy itself.
        flags.push(live.to_string());
    }
    flags
}

/// Firefox has no per-launch trust flag: how to do it by hand, in a profile of its own.
fn firefox_steps(proxy: SocketAddr) -> String {
    format!(
        "Firefox has no flag that trusts one CA for one launch. In a new profile \
         (firefox -P → Create Profile):\n\
         1. Settings → Network Settings → Manual proxy configuration: HTTP Proxy {ip}, Port {port}, \
         \"Also use this proxy for HTTPS\" (or Automatic proxy configuration URL http://{proxy}/proxy.pac).\n\
         2. Settings → Privacy & Security → Certificates → View Certificates → Authorities → Import \
         http://{proxy}/ca.pem (download it first), \"Trust this CA to identify websites\".\n\
         3. Open http://{proxy}/ for the live page. Delete the profile when done.\n",
        ip = proxy.ip(),
        port = proxy.port()
    )
}

fn is_firefox(program: &Path) -> bool {
    program
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().contains("firefox"))
}

/// The first Chromium-family browser on PATH (then macOS's usual places).
fn find_browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let on_path = CHROMIUMS.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| MAC_CHROMES.iter().map(PathBuf::from).find(|p| p.is_file()))
}

/// Base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo: what Chromium's
/// `--ignore-certificate-errors-spki-list` takes.
pub fn spki_sha256_base64(pem: &str) -> Result<String, Failed> {
    use base64::Engine;
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| Failed::Error(format!("the CA certificate is not PEM: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Failed::Error(format!("the CA certificate does not parse: {e}")))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

/// A page of the diagproxy at `proxy` (`Host: 127.0.0.1`), or `None` when nothing answers
/// with a 200.
fn ask(proxy: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&proxy, ASK_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(ASK_TIMEOUT)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.take(1 << 20).read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8(answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Starts `diagproxy run` on `proxy`, intercepting the profile's hosts with the CA in
/// `--ca-dir` (made if there is none), and waits until it answers.
fn start_run(proxy: SocketAddr, args: &BrowserArgs, token: &str) -> Result<Child, Failed> {
    let exe = std::env::current_exe().map_err(|e| Failed::Error(e.to_string()))?;
    let ca_dir = args.ca_dir.to_string_lossy().to_string();
    if !args.ca_dir.join(crate::tls::ca::CERT_FILE).exists() {
        let made = Command::new(&exe)
            .args(["ca", "init", "--ca-dir", &ca_dir])
            .status();
        if !made.is_ok_and(|s| s.success()) {
            return Err(Failed::Error(format!("cannot create the CA in {ca_dir}")));
        }
    }
    let listen = proxy.to_string();
    let mut run_args = vec![
        "run",
        "--listen",
        &listen,
        "--intercept",
        "profile",
        "--ca-dir",
        &ca_dir,
    ];
    run_args.extend(args.run_arg.iter().map(String::as_str));
    let mut child = Command::new(&exe)
        .args(&run_args)
        .env("DIAGPROXY_LIVE_TOKEN", token)
        .spawn()
        .map_err(|e| Failed::Error(format!("cannot start diagproxy run: {e}")))?;
    let start = Instant::now();
    while ask(proxy, "/ca.pem").is_none() {
        if start.elapsed() > START_WAIT || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            return Err(Failed::Error(format!(
                "diagproxy run did not start on {proxy}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// Ends the `run` started here as Ctrl-C would, so it writes its reports.
fn stop_run(child: &mut Child) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(pid, libc::SIGINT) };
    }
    #[cfg(not(unix))]
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(headless: bool) -> BrowserArgs {
        BrowserArgs {
            url: "https://chatgpt.com/".into(),
            browser: None,
            proxy: "127.0.0.1:8080".into(),
            ca_dir: "certs".into(),
            headless,
            no_live_page: false,
            all_traffic: false,
            chromium_flag: vec![],
            run_arg: vec![],
        }
    }

    #[test]
    fn the_browser_gets_its_own_profile_the_proxy_and_the_cas_spki_only() {
        let proxy: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let live = Some("file:///tmp/p/diagproxy-live.html");
        let flags = chromium_flags(Path::new("/tmp/p"), proxy, "AbC=", live, &args(false));
        let mut expected = vec![
            "--user-data-dir=/tmp/p",
            "--proxy-pac-url=http://127.0.0.1:8080/proxy.pac",
            "--ignore-certificate-errors-spki-list=AbC=",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-quic",
        ];
        expected.extend(QUIET);
        expected.extend(["https://chatgpt.com/", "file:///tmp/p/diagproxy-live.html"]);
        assert_eq!(flags, expected);
        assert!(
            !flags.iter().any(|f| f == "--ignore-certificate-errors"),
            "never every certificate"
        );
        assert!(
            chromium_flags(Path::new("/p"), proxy, "x", None, &args(true))
                .contains(&"--headless".to_string())
        );
        assert!(
            !flags.iter().any(|f| f.contains("token")),
            "the token never on the command line"
        );
    }

    #[test]
    #[cfg(unix)]
    fn the_temporary_profile_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let profile = private_profile().unwrap();
        let mode = std::fs::metadata(profile.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        let live = live_page(profile.path(), "127.0.0.1:9".parse().unwrap(), Some("tok"))
            .unwrap()
            .unwrap();
        let file = live.strip_prefix("file://").unwrap();
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the file holding the token");
        assert!(std::fs::read_to_string(file)
            .unwrap()
            .contains("/?token=tok"));
    }

    #[test]
    fn proxy_forms_and_loopback_only() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(parse_proxy("127.0.0.1:8080").ok(), Some(addr));
        assert_eq!(parse_proxy("http://127.0.0.1:8080/").ok(), Some(addr));
        assert!(parse_proxy("[::1]:8080").is_ok());
        assert!(matches!(
            parse_proxy("192.168.1.2:8080"),
            Err(Failed::Usage(_))
        ));
        assert!(matches!(parse_proxy("localhost"), Err(Failed::Usage(_))));
    }

    #[test]
    fn the_spki_hash_is_chromiums_base64_of_sha256() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let spki = spki_sha256_base64(&cert.pem()).unwrap();
        use base64::Engine;
        let expected = base64::engine::general_purpose::STANDARD
            .encode(ring::digest::digest(&ring::digest::SHA256, &key.public_key_der()).as_ref());
        assert_eq!(spki, expected);
        assert!(spki_sha256_base64("not a pem").is_err());
    }

    #[test]
    fn firefox_gets_steps_naming_the_proxy() {
        let steps = firefox_steps("127.0.0.1:8080".parse().unwrap());
        assert!(steps.contains("HTTP Proxy 127.0.0.1, Port 8080") && steps.contains("/ca.pem"));
        assert!(
            is_firefox(Path::new("/usr/bin/firefox-esr")) && !is_firefox(Path::new("chromium"))
        );
    }
}
