//! Chain verdicts on loopback with hierarchies made at test time: a "public" root (given as
//! --public-roots), a corporate root named like Zscaler's (given as --system-roots) and a
//! stranger's self-signed CA.

mod common;

use common::*;

struct World {
    public: TestCa,
    zscaler: TestCa,
    stranger: TestCa,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World {
            public: TestCa::root("Test Public Root", "Public CA Inc."),
            zscaler: TestCa::root("Zscaler Root CA", "Zscaler Inc."),
            stranger: TestCa::root("Box In The Middle", "Nobody"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// --public-roots and --system-roots files: the machine trusts the corporate root too.
    fn root_flags(&self) -> (String, String) {
        let public = write_file(self.dir.path(), "public.pem", &self.public.pem());
        let system = write_file(
            self.dir.path(),
            "system.pem",
            &(self.public.pem() + &self.zscaler.pem()),
        );
        (public, system)
    }
}

#[tokio::test]
async fn tunnel_mode_gives_public_inspected_and_untrusted_verdicts() {
    let world = World::new();
    let (leaf, key) = world.public.leaf(&["chatgpt.com"]);
    let public_origin = tls_origin_with(vec![leaf], key).await;
    let zscaler_int = world.zscaler.intermediate(
        "Zscaler Intermediate Root CA (zscalerthree.net) (t) ",
        "Zscaler Inc.",
    );
    let (leaf, key) = zscaler_int.leaf(&["files.oaiusercontent.com"]);
    let inspected_origin = tls_origin_with(vec![leaf, zscaler_int.cert.der().clone()], key).await;
    let (leaf, key) = world.stranger.leaf(&["ab.chatgpt.com"]);
    let untrusted_origin = tls_origin_with(vec![leaf], key).await;

    let (public_pem, system_pem) = world.root_flags();
    let pins = [
        format!("chatgpt.com:{}:127.0.0.1", public_origin.port()),
        format!(
            "files.oaiusercontent.com:{}:127.0.0.1",
            inspected_origin.port()
        ),
        format!("ab.chatgpt.com:{}:127.0.0.1", untrusted_origin.port()),
    ];
    let proxy = Proxy::start(&[
        "--public-roots",
        &public_pem,
        "--system-roots",
        &system_pem,
        "--resolve",
        &pins[0],
        "--resolve",
        &pins[1],
        "--resolve",
        &pins[2],
    ])
    .await;

    // The user's own tunnels work whatever the verdict: diagproxy only looks.
    let answer = https_through(
        proxy.addr,
        "chatgpt.com",
        public_origin.port(),
        &world.public.pem(),
    )
    .await;
    assert!(answer.ends_with("hello over tls"), "{answer}");
    let answer = https_through(
        proxy.addr,
        "files.oaiusercontent.com",
        inspected_origin.port(),
        &world.zscaler.pem(),
    )
    .await;
    assert!(answer.ends_with("hello over tls"), "{answer}");
    let answer = https_through(
        proxy.addr,
        "ab.chatgpt.com",
        untrusted_origin.port(),
        &world.stranger.pem(),
    )
    .await;
    assert!(answer.ends_with("hello over tls"), "{answer}");
    // A second tunnel to the same host:port does not check again.
    https_through(
        proxy.addr,
        "chatgpt.com",
        public_origin.port(),
        &world.public.pem(),
    )
    .await;

    proxy.wait_events("tls_check", 3).await;
    proxy.wait_events("tunnel", 4).await;
    let session = proxy.stop().await;
    assert_eq!(
        session.events_of("tls_check").len(),
        3,
        "once per host:port"
    );

    let tls = |host: &str, port: u16| session.host(host, port)["tls"].clone();
    let public = tls("chatgpt.com", public_origin.port());
    assert_eq!(public["verdict"], "public", "{public:#}");
    assert!(public["reason"].is_null());
    assert!(public["vendor"].is_null());
    assert!(public["issuer"]
        .as_str()
        .unwrap()
        .contains("Test Public Root"));

    let inspected = tls("files.oaiusercontent.com", inspected_origin.port());
    assert_eq!(inspected["verdict"], "inspected", "{inspected:#}");
    assert_eq!(inspected["reason"], "UnknownIssuer");
    assert_eq!(inspected["vendor"], "Zscaler");
    assert!(inspected["issuer"]
        .as_str()
        .unwrap()
        .contains("Zscaler Intermediate Root CA"));
    assert!(inspected["root"]
        .as_str()
        .unwrap()
        .contains("CN=Zscaler Root CA"));
    assert_eq!(inspected["chain"].as_array().unwrap().len(), 2);
    assert_eq!(inspected["scts"], false);
    let findings = &session.host("files.oaiusercontent.com", inspected_origin.port())["findings"];
    assert_eq!(findings[0]["kind"], "tls_inspection");
    assert!(findings[0]["remedy"]
        .as_str()
        .unwrap()
        .contains("SSL inspection"));

    let untrusted = tls("ab.chatgpt.com", untrusted_origin.port());
    assert_eq!(untrusted["verdict"], "untrusted", "{untrusted:#}");
    assert_eq!(untrusted["reason"], "UnknownIssuer");
    assert!(untrusted["vendor"].is_null());
    assert_eq!(
        session.host("ab.chatgpt.com", untrusted_origin.port())["findings"][0]["kind"],
        "untrusted_certificate"
    );
}

#[tokio::test]
async fn the_side_handshake_goes_through_the_corporate_proxy() {
    let world = World::new();
    let (leaf, key) = world.public.leaf(&["chatgpt.com"]);
    let origin = tls_origin_with(vec![leaf], key).await;
    let (corp, log) = corporate_proxy(CorpMode::Allow).await;
    let (public_pem, system_pem) = world.root_flags();
    let upstream = format!("http://{corp}");
    let proxy = Proxy::start(&[
        "--public-roots",
        &public_pem,
        "--system-roots",
        &system_pem,
        "--upstream-proxy",
        &upstream,
    ])
    .await;

    let answer = https_through(
        proxy.addr,
        "chatgpt.com",
        origin.port(),
        &world.public.pem(),
    )
    .await;
    assert!(answer.ends_with("hello over tls"), "{answer}");
    let checks = proxy.wait_events("tls_check", 1).await;
    assert_eq!(checks[0]["tls"]["verdict"], "public", "{:#}", checks[0]);
    assert_eq!(checks[0]["via"], "side_handshake");
    let connects = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(&format!("CONNECT chatgpt.com:{}", origin.port())))
        .count();
    assert_eq!(
        connects, 2,
        "the user's tunnel and the side handshake both went through the corporate proxy"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_failed_side_handshake_is_recorded_not_guessed() {
    let echo = echo_server().await; // speaks no TLS
    let pin = format!("chatgpt.com:{}:127.0.0.1", echo.port());
    let proxy = Proxy::start(&["--resolve", &pin]).await;
    let (stream, head) = raw_connect(proxy.addr, &format!("chatgpt.com:{}", echo.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A ClientHello from a real TLS client; the echo server just echoes it back.
    let world = World::new();
    let client = tokio::spawn(async move {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(world.public.cert.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("chatgpt.com").unwrap();
        let _ = connector.connect(name, stream).await;
    });
    let checks = proxy.wait_events("tls_check", 1).await;
    assert!(checks[0]["tls"].is_null());
    assert!(
        checks[0]["error"]
            .as_str()
            .unwrap()
            .contains("TLS handshake"),
        "{:#}",
        checks[0]
    );
    let _ = client.await;
    let session = proxy.stop().await;
    assert!(session.host("chatgpt.com", echo.port())["tls_error"].is_string());
}
