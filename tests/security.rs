//! The attacks of a hostile PAC author, a hostile local user and a hostile page, each
//! performed against diagproxy: what must not leak, or be trusted, does not.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use diagproxy::upstream::auth::{Credentials, Mode, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PASSWORD: &str = "corp-Secret-42";

/// A proxy that asks everyone to sign in (`407` offering Basic and NTLM) and keeps every
/// request head it receives.
async fn credential_thief() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                while let Some(head) = read_request_head(&mut stream).await {
                    kept.lock().unwrap().push(head);
                    let answer = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                        Proxy-Authenticate: NTLM\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n\
                        Content-Length: 0\r\n\r\n";
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

async fn read_request_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// An in-process diagproxy routed by the PAC at `pac`, with `--upstream-user CORP\bob`.
async fn with_password(pac: SocketAddr, extra: &[&str], auth_proxies: Vec<String>) -> Proxy {
    let source = format!("pac:http://{pac}/proxy.pac");
    let mut args = vec!["--upstream-proxy", source.as_str()];
    args.extend_from_slice(extra);
    let trust = args.contains(&"--trust-pac-proxies");
    let mode = if args.contains(&"basic") {
        Mode::Basic
    } else {
        Mode::Auto
    };
    Proxy::start_with(&args, move |config| {
        config.upstream_auth = Arc::new(Settings {
            mode,
            user: Some(Credentials::parse("CORP\\bob", PASSWORD.into()).unwrap()),
            auth_proxies,
            trust_pac_proxies: trust,
        });
    })
    .await
}

#[tokio::test]
async fn a_proxy_only_a_pac_names_never_gets_the_password() {
    let (thief, heads) = credential_thief().await;
    let pac = pac_server(format!(
        "function FindProxyForURL(u, h) {{ return 'PROXY 127.0.0.1:{}'; }}",
        thief.port()
    ))
    .await;
    let proxy = with_password(pac, &[], Vec::new()).await;
    // A tunnel and a plain request, the two ways a sign-in starts.
    let (_, head) = raw_connect(proxy.addr, "chatgpt.com:443", "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(head.contains("not sending your password"), "{head}");
    let reply = get(proxy.addr, "http://chatgpt.com/").await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let session = proxy.stop().await;

    let heads = heads.lock().unwrap().clone();
    assert!(
        heads.len() >= 2,
        "both requests reached the thief: {heads:?}"
    );
    for head in &heads {
        assert!(
            !head.to_ascii_lowercase().contains("proxy-authorization"),
            "a PAC-named proxy got credentials: {head}"
        );
    }
    let tunnel = &session.events_of("tunnel")[0];
    assert_eq!(tunnel["failure"]["kind"], "upstream_proxy_auth", "{tunnel}");
    let detail = tunnel["proxy_auth"]["detail"].as_str().unwrap_or_default();
    let port = thief.port();
    assert!(
        detail.contains(&format!(
            "not sending your password to 127.0.0.1:{port}, which the PAC named; add it to --upstream-auth-proxies if it is yours"
        )),
        "{tunnel}"
    );
}

#[tokio::test]
async fn a_pac_proxy_the_user_lists_gets_the_password_and_basic_is_called_plaintext() {
    let (corp, heads) = credential_thief().await;
    let pac = pac_server(format!(
        "function FindProxyForURL(u, h) {{ return 'PROXY 127.0.0.1:{}'; }}",
        corp.port()
    ))
    .await;
    let listed = vec![format!("127.0.0.1:{}", corp.port())];
    let proxy = with_password(pac, &["--upstream-auth", "basic"], listed).await;
    let (_, head) = raw_connect(proxy.addr, "chatgpt.com:443", "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let session = proxy.stop().await;
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads.iter().any(|h| h
            .to_ascii_lowercase()
            .contains("proxy-authorization: basic ")),
        "the listed proxy was asked with Basic: {heads:?}"
    );
    let auth = &session.events_of("tunnel")[0]["proxy_auth"];
    assert!(
        auth["warning"]
            .as_str()
            .unwrap_or_default()
            .contains("plain HTTP"),
        "{auth}"
    );
}

#[tokio::test]
async fn trust_pac_proxies_trusts_the_pac_servers_own_domain_only() {
    let (thief, heads) = credential_thief().await;
    // The PAC is served from 127.0.0.1: its "domain" is that address; a proxy on
    // 127.0.0.2 is outside it.
    let pac = pac_server(format!(
        "function FindProxyForURL(u, h) {{ return 'PROXY 127.0.0.1:{}'; }}",
        thief.port()
    ))
    .await;
    let proxy = with_password(pac, &["--trust-pac-proxies"], Vec::new()).await;
    let _ = raw_connect(proxy.addr, "chatgpt.com:443", "").await;
    drop(proxy.stop().await);
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads.iter().any(|h| h
            .to_ascii_lowercase()
            .contains("proxy-authorization: ntlm ")),
        "a proxy in the PAC's own domain is trusted with --trust-pac-proxies: {heads:?}"
    );
}
