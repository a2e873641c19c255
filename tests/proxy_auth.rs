//! Signing in to corporate proxies: Negotiate with a real MIT KDC and a real squid
//! (`negotiate_kerberos_auth`), NTLM through the same squid (`ntlm_fake_auth`) and against a
//! test proxy that checks the password with `sspi`'s server side, and the named failures —
//! no ticket, a skewed clock, the proxy addressed by IP, a wrong password, a scheme
//! diagproxy cannot do. The Kerberos tests run the built binary so that each has its own
//! `KRB5_CONFIG` and ticket cache; the session files are searched for tokens and passwords.

mod common;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use common::kerberos::{self, Kdc, Squid};
use common::{Proxy, Running};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NTLM_PASSWORD: &str = "Corp-Password-7";

// ---------------------------------------------------------------- Negotiate through squid

#[test]
fn negotiate_through_squid_with_the_users_ticket_for_tunnels_and_plain_http() {
    if !kerberos::tools_present() {
        return;
    }
    let (kdc, squid, rt, echo) = realm(true);
    let origin = rt.block_on(common::origin());
    let run = Run::start(&kdc, &squid, &[], &[]);
    let addr = run.addr();
    rt.block_on(async {
        let reply = common::get(addr, &format!("http://127.0.0.1:{}/hello", origin.port())).await;
        assert_eq!(reply.status, 200, "{:?} {}", reply.headers, reply.text());
        assert_tunnel_echoes(addr, echo).await;
        // A second request reuses the signed-in connection.
        let again = common::get(addr, &format!("http://127.0.0.1:{}/hello", origin.port())).await;
        assert_eq!(again.status, 200);
    });
    let session = run.stop();
    let auths = session.auth_records();
    assert!(
        auths.len() >= 2,
        "a record for the request and for the tunnel: {auths:#?}"
    );
    for auth in &auths {
        assert_eq!(auth["scheme"], "Negotiate", "{auth}");
        assert_eq!(auth["spn"], "HTTP@proxy.diagproxy.test", "{auth}");
        assert_eq!(auth["outcome"], "ok", "{auth}");
        assert_eq!(auth["offered"], serde_json::json!(["Negotiate", "NTLM"]));
    }
    let signed = &session.summary["proxy_sign_in"][0];
    assert_eq!(
        signed["proxy"],
        format!("proxy.diagproxy.test:{}", squid.port)
    );
    assert_eq!(signed["principal"], "HTTP@proxy.diagproxy.test");
    assert!(signed["ok"]["Negotiate"].as_u64().unwrap() >= 2, "{signed}");
    let report = std::fs::read_to_string(session.path.join("report.md")).unwrap();
    assert!(
        report.contains("- Proxy sign-in: proxy.diagproxy.test:")
            && report.contains("Negotiate ok ×"),
        "{report}"
    );
    let log = squid.access_log();
    assert!(
        log.contains("alice@DIAGPROXY.TEST"),
        "squid saw the user: {log}"
    );
    assert!(log.contains("TCP_TUNNEL/200"), "{log}");
    session.assert_no_secrets(&[]);
}

#[test]
fn without_a_ticket_the_failure_is_no_ticket_with_its_remedy() {
    if !kerberos::tools_present() {
        return;
    }
    let (kdc, squid, rt, echo) = realm(false); // no kinit: the cache does not exist
    let run = Run::start(&kdc, &squid, &[], &[]);
    let addr = run.addr();
    let head = rt.block_on(connect_head(addr, echo));
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(head.contains("proxy_auth_no_ticket"), "{head}");
    let session = run.stop();
    let auth = &session.auth_records()[0];
    assert_eq!(auth["failure"], "proxy_auth_no_ticket", "{auth}");
    assert!(
        auth["detail"]
            .as_str()
            .unwrap()
            .contains("No Kerberos credentials"),
        "Kerberos' own reason, not SPNEGO's: {auth}"
    );
    let finding = session.finding("proxy_auth_no_ticket");
    assert!(
        finding["remedy"].as_str().unwrap().contains("kinit"),
        "{finding}"
    );
}

#[test]
fn a_clock_an_hour_ahead_is_named_as_skew() {
    if !kerberos::tools_present() || !kerberos::require_file(kerberos::FAKETIME) {
        return;
    }
    let (kdc, squid, rt, echo) = realm(true);
    let skewed = [
        ("LD_PRELOAD", kerberos::FAKETIME),
        ("FAKETIME", "+1h"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let run = Run::start(&kdc, &squid, &[], &skewed);
    let addr = run.addr();
    let head = rt.block_on(connect_head(addr, echo));
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let session = run.stop();
    let auth = &session.auth_records()[0];
    assert_eq!(auth["failure"], "proxy_auth_clock_skew", "{auth}");
    let finding = session.finding("proxy_auth_clock_skew");
    assert!(
        finding["remedy"].as_str().unwrap().contains("clock"),
        "{finding}"
    );
}

#[test]
fn a_proxy_addressed_by_ip_has_no_service_principal() {
    if !kerberos::tools_present() {
        return;
    }
    let (kdc, squid, rt, echo) = realm(true);
    let by_ip = format!("http://127.0.0.1:{}", squid.port);
    let run = Run::start_at(&kdc, &by_ip, None, &[], &[]);
    let addr = run.addr();
    let head = rt.block_on(connect_head(addr, echo));
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let session = run.stop();
    let auth = &session.auth_records()[0];
    assert_eq!(auth["failure"], "proxy_auth_spn", "{auth}");
    assert_eq!(
        auth["spn"], "HTTP@127.0.0.1",
        "the name asked for is shown: {auth}"
    );
    assert!(
        auth["detail"]
            .as_str()
            .unwrap()
            .contains("not found in Kerberos database"),
        "{auth}"
    );
}

#[test]
fn auth_test_tries_each_offered_scheme_and_says_which_works() {
    if !kerberos::tools_present() {
        return;
    }
    let (kdc, squid, _rt, echo) = realm(true); // the runtime keeps the echo server
    let target = format!("127.0.0.1:{}", echo.port());
    let run = |extra: &[&str], password: Option<&str>| {
        let mut command = common::diagproxy();
        for (name, value) in kdc.env() {
            command.env(name, value);
        }
        if let Some(p) = password {
            command.env("DIAGPROXY_UPSTREAM_PASSWORD", p);
        }
        let out = command
            .args(["auth-test", &target, "--upstream-proxy", &squid.url()])
            .args(["--resolve", &squid.pin(), "--json"])
            .args(extra)
            .output()
            .unwrap();
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), json)
    };
    let (code, json) = run(&[], None);
    assert_eq!(code, Some(0), "{json:#}");
    let proxy = &json["proxies"][0];
    assert_eq!(proxy["answer"], "407 Negotiate, NTLM", "{proxy:#}");
    assert_eq!(proxy["best"], "Negotiate", "{proxy:#}");
    let states: Vec<(&str, &str)> = proxy["schemes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["scheme"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("Negotiate", "ok"),
            ("NTLM", "skipped"),
            ("Basic", "not_offered")
        ]
    );
    // With NTLM credentials and no ticket: Negotiate fails by name, NTLM works.
    std::fs::remove_file(kdc.path("alice.cc")).unwrap();
    let (code, json) = run(&["--upstream-user", "CORP\\bob"], Some(NTLM_PASSWORD));
    assert_eq!(code, Some(0), "{json:#}");
    let proxy = &json["proxies"][0];
    assert_eq!(
        proxy["schemes"][0]["failure"], "proxy_auth_no_ticket",
        "{proxy:#}"
    );
    assert_eq!(proxy["best"], "NTLM", "{proxy:#}");
    assert!(!json.to_string().contains(NTLM_PASSWORD));
    // No ticket and no NTLM account: nothing gets through, exit 2.
    let (code, _) = run(&[], None);
    assert_eq!(code, Some(2));
}

/// docs/performance.md's `bench --only auth --auth-proxy URL --resolve …` against the Kerberos
/// squid: new tunnels through it, each signing in with the user's ticket; the rows say the
/// whole set-up and the sign-in part of it, which is smaller.
#[test]
fn bench_auth_opens_tunnels_that_sign_in_with_negotiate() {
    if !kerberos::tools_present() {
        return;
    }
    let (kdc, squid, _rt, _echo) = realm(true);
    let mut command = common::diagproxy();
    for (name, value) in kdc.env() {
        command.env(name, value);
    }
    let out = command
        .args(["bench", "--only", "auth", "--auth-proxy", &squid.url()])
        .args(["--resolve", &squid.pin(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let value = |mode: &str| {
        rows.iter()
            .find(|r| r["mode"] == mode)
            .and_then(|r| r["proxy"].as_f64())
            .unwrap_or_else(|| panic!("no row {mode:?}: {report:#}"))
    };
    let all = value("new tunnel through a proxy with Negotiate: all of it");
    let signing = value("  of which signing in (407 to 200)");
    assert!(signing > 0.0 && signing < all, "{signing} of {all}");
}

// ---------------------------------------------------------------- NTLM

#[test]
fn ntlm_through_squid_on_one_kept_connection() {
    if !kerberos::tools_present() {
        return;
    }
    let (kdc, squid, rt, echo) = realm(false);
    let origin = rt.block_on(common::origin());
    let args = [
        OsStr::new("--upstream-auth"),
        OsStr::new("ntlm"),
        OsStr::new("--upstream-user"),
        OsStr::new("CORP\\bob"),
    ];
    let run = Run::start(
        &kdc,
        &squid,
        &args,
        &[("DIAGPROXY_UPSTREAM_PASSWORD", NTLM_PASSWORD)],
    );
    let addr = run.addr();
    rt.block_on(async {
        let reply = common::get(addr, &format!("http://127.0.0.1:{}/hello", origin.port())).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_tunnel_echoes(addr, echo).await;
    });
    let session = run.stop();
    for auth in session.auth_records() {
        assert_eq!(auth["scheme"], "NTLM", "{auth}");
        assert_eq!(auth["user"], "CORP\\bob", "{auth}");
        assert_eq!(auth["outcome"], "ok", "{auth}");
        assert_eq!(auth["rounds"], 2, "negotiate, then authenticate: {auth}");
    }
    let log = squid.access_log();
    assert!(log.contains("TCP_TUNNEL/200"), "{log}");
    session.assert_no_secrets(&[NTLM_PASSWORD]);
}

#[tokio::test]
async fn ntlm_password_checked_by_the_proxy_right_and_wrong() {
    let echo = common::echo_server().await;
    let proxy = ntlm_proxy(Offer::Ntlm).await;
    for (password, works) in [(NTLM_PASSWORD, true), ("wrong-password", false)] {
        let diag = signing_in(proxy, "CORP\\bob", password).await;
        let (mut stream, head) =
            common::raw_connect(diag.addr, &format!("127.0.0.1:{}", echo.port()), "").await;
        if works {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            stream.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        } else {
            assert!(head.starts_with("HTTP/1.1 502"), "{head}");
            assert!(head.contains("proxy_auth_rejected"), "{head}");
        }
        drop(stream);
        let session = diag.stop().await;
        let tunnel = &session.events_of("tunnel")[0];
        let auth = &tunnel["proxy_auth"];
        assert_eq!(auth["scheme"], "NTLM", "{auth}");
        if works {
            assert_eq!(auth["outcome"], "ok", "{auth}");
        } else {
            assert_eq!(auth["failure"], "proxy_auth_rejected", "{auth}");
            let summary = session.summary.to_string();
            assert!(summary.contains("proxy_auth_rejected"), "{summary}");
        }
        assert_no_secret_in(session.folder.path(), &[password]);
    }
}

#[tokio::test]
async fn a_small_post_is_sent_again_while_signing_in_with_ntlm() {
    let proxy = ntlm_proxy(Offer::Ntlm).await;
    let diag = signing_in(proxy, "CORP\\bob", NTLM_PASSWORD).await;
    let mut client = common::Client::connect(diag.addr).await;
    let request = hyper::Request::post("http://origin.test/form")
        .header("content-type", "text/plain")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"hello-body",
        )))
        .unwrap();
    let reply = client.send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "hello-body",
        "the body went with the signed-in request"
    );
    drop(client);
    let session = diag.stop().await;
    let request = &session.events_of("request")[0];
    assert_eq!(request["proxy_auth"]["outcome"], "ok", "{request}");
    assert_eq!(request["proxy_auth"]["rounds"], 2, "{request}");
}

#[tokio::test]
async fn a_proxy_offering_only_digest_is_unsupported_and_says_what_it_offers() {
    let echo = common::echo_server().await;
    let proxy = ntlm_proxy(Offer::DigestOnly).await;
    let diag = signing_in(proxy, "CORP\\bob", NTLM_PASSWORD).await;
    let (_, head) = common::raw_connect(diag.addr, &format!("127.0.0.1:{}", echo.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let session = diag.stop().await;
    let auth = &session.events_of("tunnel")[0]["proxy_auth"];
    assert_eq!(auth["failure"], "proxy_auth_unsupported", "{auth}");
    assert_eq!(auth["offered"], serde_json::json!(["Digest"]));
    assert!(
        auth["detail"]
            .as_str()
            .unwrap()
            .contains("the proxy offers Digest"),
        "{auth}"
    );
}

#[tokio::test]
async fn upstream_auth_none_leaves_the_407_as_the_answer() {
    let echo = common::echo_server().await;
    let proxy = ntlm_proxy(Offer::Ntlm).await;
    let url = format!("http://127.0.0.1:{}", proxy.port());
    let diag = Proxy::start(&["--upstream-proxy", &url, "--upstream-auth", "none"]).await;
    let (_, head) = common::raw_connect(diag.addr, &format!("127.0.0.1:{}", echo.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(head.contains("upstream_proxy_auth"), "{head}");
    let session = diag.stop().await;
    assert!(session.events_of("tunnel")[0].get("proxy_auth").is_none());
}

// ---------------------------------------------------------------- helpers

/// A KDC (with `alice`'s ticket when `kinit`), squid signing users in against it, a runtime
/// and an echo server to tunnel to.
fn realm(kinit: bool) -> (Kdc, Squid, tokio::runtime::Runtime, SocketAddr) {
    let kdc = Kdc::start();
    if kinit {
        kdc.kinit();
    }
    let squid = Squid::start(&kdc);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt.block_on(common::echo_server());
    (kdc, squid, rt, echo)
}

/// The built binary, with the realm's environment, routed through `squid` by name.
struct Run {
    running: Running,
    /// Taken by `stop`, which hands the folder to what it returns.
    dir: Option<tempfile::TempDir>,
}

impl Run {
    fn start(kdc: &Kdc, squid: &Squid, args: &[&OsStr], env: &[(&str, &str)]) -> Run {
        Run::start_at(kdc, &squid.url(), Some(squid.pin()), args, env)
    }

    fn start_at(
        kdc: &Kdc,
        url: &str,
        pin: Option<String>,
        args: &[&OsStr],
        env: &[(&str, &str)],
    ) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let session = dir.path().join("s");
        let mut argv: Vec<&OsStr> = vec![
            OsStr::new("--session-dir"),
            session.as_os_str(),
            OsStr::new("--upstream-proxy"),
            OsStr::new(url),
        ];
        if let Some(pin) = &pin {
            argv.extend([OsStr::new("--resolve"), OsStr::new(pin.as_str())]);
        }
        argv.extend_from_slice(args);
        let realm = kdc.env();
        let mut all: Vec<(&str, &str)> = realm.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(env);
        let running = common::run_binary_with(&argv, &all);
        Run {
            running,
            dir: Some(dir),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.running.addr.parse().unwrap()
    }

    fn stop(mut self) -> Finished {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.running.child.id().to_string()])
            .status();
        let _ = self.running.child.wait();
        let folder = self.dir.take().expect("stopped once");
        let dir = folder.path().join("s");
        let summary = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
        Finished {
            summary: serde_json::from_str(&summary).unwrap(),
            events: common::read_events(&dir),
            _dir: folder,
            path: dir,
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // A test that failed before `stop` must not leave the process (and its hold on the
        // test's output) behind.
        let _ = self.running.child.kill();
        let _ = self.running.child.wait();
    }
}

struct Finished {
    summary: Value,
    events: Vec<Value>,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Finished {
    fn auth_records(&self) -> Vec<Value> {
        let records: Vec<Value> = self
            .events
            .iter()
            .filter_map(|e| e.get("proxy_auth").cloned())
            .collect();
        assert!(!records.is_empty(), "no proxy_auth in {:#?}", self.events);
        records
    }

    /// The summary's finding of `kind`, on any host.
    fn finding(&self, kind: &str) -> Value {
        let hosts = self.summary["hosts"].as_array().unwrap();
        hosts
            .iter()
            .flat_map(|h| h["findings"].as_array().cloned().unwrap_or_default())
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} finding in {:#}", self.summary))
    }

    fn assert_no_secrets(&self, secrets: &[&str]) {
        assert_no_secret_in(&self.path, secrets);
    }
}

/// No file of the session holds a password, a Negotiate or NTLM token, or a
/// `Proxy-Authorization` value.
fn assert_no_secret_in(dir: &Path, secrets: &[&str]) {
    let tokens = [
        "Negotiate YII",
        "NTLM TlRMTVNT",
        "TlRMTVNTUAAD",
        "YIIC",
        "YIID",
    ];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for secret in secrets.iter().chain(tokens.iter()) {
            assert!(
                !text.contains(secret),
                "{} holds {secret:?}",
                entry.path().display()
            );
        }
    }
}

/// The head of diagproxy's answer to a CONNECT to the echo server.
async fn connect_head(proxy: SocketAddr, echo: SocketAddr) -> String {
    common::raw_connect(proxy, &format!("127.0.0.1:{}", echo.port()), "")
        .await
        .1
}

/// A CONNECT through `proxy` to the echo server carries bytes both ways.
async fn assert_tunnel_echoes(proxy: SocketAddr, echo: SocketAddr) {
    let (mut stream, head) =
        common::raw_connect(proxy, &format!("127.0.0.1:{}", echo.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

/// An in-process diagproxy routed through `proxy`, signing in as `user` with `password`.
async fn signing_in(proxy: SocketAddr, user: &str, password: &str) -> Proxy {
    let url = format!("http://127.0.0.1:{}", proxy.port());
    let credentials =
        diagproxy::upstream::auth::Credentials::parse(user, password.to_string()).unwrap();
    Proxy::start_with(&["--upstream-proxy", &url], move |config| {
        config.upstream_auth = Arc::new(diagproxy::upstream::auth::Settings {
            mode: diagproxy::upstream::auth::Mode::Auto,
            user: Some(credentials),
            ..Default::default()
        });
    })
    .await
}

#[derive(Clone, Copy)]
enum Offer {
    /// NTLM, checking the password `NTLM_PASSWORD` of `CORP\bob` with `sspi`'s server.
    Ntlm,
    /// Only `Digest`, which diagproxy does not do.
    DigestOnly,
}

/// A proxy that signs users in with NTLM (or offers only Digest) on each kept connection,
/// then tunnels CONNECTs.
async fn ntlm_proxy(offer: Offer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(ntlm_connection(stream, offer));
        }
    });
    addr
}

async fn ntlm_connection(mut stream: TcpStream, offer: Offer) {
    let mut server = NtlmServer::new();
    loop {
        let Some(head) = read_request_head(&mut stream).await else {
            return;
        };
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let target = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let token = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("Proxy-Authorization: NTLM ")
                    .or_else(|| l.strip_prefix("proxy-authorization: NTLM "))
            })
            .and_then(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t.trim())
                    .ok()
            });
        let challenge = match (offer, token) {
            (Offer::DigestOnly, _) => "Digest realm=\"corp\", nonce=\"abc\"".to_string(),
            (Offer::Ntlm, None) => "NTLM".to_string(),
            (Offer::Ntlm, Some(token)) => match server.step(&token) {
                Step::Challenge(reply) => format!(
                    "NTLM {}",
                    base64::engine::general_purpose::STANDARD.encode(reply)
                ),
                Step::Done if !head.starts_with("CONNECT ") => {
                    // A plain request, signed in: its body comes back.
                    let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    server = NtlmServer::new();
                    continue;
                }
                Step::Done => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    if let Ok(mut upstream) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                    }
                    return;
                }
                Step::Refused => {
                    server = NtlmServer::new();
                    "NTLM".to_string()
                }
            },
        };
        let reply = format!(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: {challenge}\r\nContent-Length: 0\r\n\r\n"
        );
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_request_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

enum Step {
    Challenge(Vec<u8>),
    Done,
    Refused,
}

/// `sspi`'s NTLM server side for `CORP\bob` with [`NTLM_PASSWORD`].
struct NtlmServer {
    ntlm: sspi::Ntlm,
    credentials: <sspi::Ntlm as sspi::SspiImpl>::CredentialsHandle,
}

impl NtlmServer {
    fn new() -> NtlmServer {
        use sspi::{AuthIdentity, CredentialUse, Ntlm, Sspi, Username};
        let identity = AuthIdentity {
            username: Username::new("bob", Some("CORP")).unwrap(),
            password: NTLM_PASSWORD.to_string().into(),
        };
        let mut ntlm = Ntlm::new();
        let acquired = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Inbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)
            .unwrap();
        NtlmServer {
            ntlm,
            credentials: acquired.credentials_handle,
        }
    }

    fn step(&mut self, token: &[u8]) -> Step {
        use sspi::{
            BufferType, DataRepresentation, SecurityBuffer, SecurityStatus, ServerRequestFlags,
            Sspi, SspiImpl,
        };
        let mut input = vec![SecurityBuffer::new(token.to_vec(), BufferType::Token)];
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let builder = self
            .ntlm
            .accept_security_context()
            .with_credentials_handle(&mut self.credentials)
            .with_context_requirements(ServerRequestFlags::ALLOCATE_MEMORY)
            .with_target_data_representation(DataRepresentation::Native)
            .with_input(&mut input)
            .with_output(&mut output);
        let result = self
            .ntlm
            .accept_security_context_impl(builder)
            .and_then(|mut g| g.resolve_to_result());
        match result {
            Ok(r) if r.status == SecurityStatus::ContinueNeeded => {
                Step::Challenge(output.remove(0).buffer)
            }
            Ok(_) => {
                if self.ntlm.complete_auth_token(&mut output).is_err() {
                    return Step::Refused;
                }
                Step::Done
            }
            Err(_) => Step::Refused,
        }
    }
}
