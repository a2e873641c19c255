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
async fn a_chain_resigned_on_a_proxy_route_names_the_proxy_and_its_product() {
    let world = World::new();
    // Re-signed by a CA that names no product, which this machine trusts.
    let corp_ca = TestCa::root("Corporate Web Proxy CA", "Example Corp");
    let (leaf, key) = corp_ca.leaf(&["chatgpt.com"]);
    let origin = tls_origin_with(vec![leaf], key).await;
    let (corp, _) = corporate_proxy(CorpMode::Allow).await;
    let public_pem = write_file(world.dir.path(), "public.pem", &world.public.pem());
    let system_pem = write_file(
        world.dir.path(),
        "system.pem",
        &(world.public.pem() + &corp_ca.pem()),
    );
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
    let answer = https_through(proxy.addr, "chatgpt.com", origin.port(), &corp_ca.pem()).await;
    assert!(answer.ends_with("hello over tls"), "{answer}");
    proxy.wait_events("tls_check", 1).await;
    let session = proxy.stop().await;
    let host = session.host("chatgpt.com", origin.port());
    let finding = host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "tls_inspection")
        .unwrap_or_else(|| panic!("{host:#}"));
    let detail = finding["detail"].as_str().unwrap();
    assert!(
        detail.ends_with(&format!("; re-signed by the proxy PROXY {corp}")),
        "{detail}"
    );
    assert_eq!(
        finding["vendor"], "Squid",
        "named from the proxy's Via: {finding}"
    );
    let tunnel = &session.events_of("tunnel")[0];
    assert!(
        tunnel["proxy_headers"].to_string().contains("squid/5.7"),
        "{tunnel}"
    );
    let verdict = session.summary["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("Squid re-signs TLS for chatgpt.com"),
        "{verdict}"
    );
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

/// Each interception product's CA, named as the product names it (field-notes §2, not the
/// profile's tokens), re-signing a ChatGPT host the machine trusts: judged `inspected` with
/// the product named, end to end through the side handshake of a tunnel.
#[tokio::test]
async fn every_vendor_in_the_table_is_named_from_a_realistic_chain() {
    use rcgen::DnType::{CommonName as CN, OrganizationName as O, OrganizationalUnitName as OU};
    let vendors: Vec<(&str, Vec<(rcgen::DnType, &str)>)> = vec![
        (
            "Zscaler",
            vec![
                (CN, "Zscaler Root CA"),
                (O, "Zscaler Inc."),
                (OU, "Zscaler Inc."),
            ],
        ),
        (
            "Netskope",
            vec![(CN, "caadmin.netskope.com"), (O, "Netskope Inc.")],
        ),
        (
            "Palo Alto Networks",
            vec![(CN, "Forward-Trust-CA"), (O, "Example Corp")],
        ),
        (
            "Fortinet",
            vec![
                (CN, "FG121GTK23000612"),
                (O, "Fortinet"),
                (OU, "Certificate Authority"),
            ],
        ),
        (
            "Cisco Umbrella",
            vec![(CN, "Cisco Umbrella Secondary SubCA ams-SG"), (O, "Cisco")],
        ),
        (
            "Broadcom Symantec",
            vec![
                (CN, "Cloud Services Root CA"),
                (O, "BlueCoat Systems, Inc."),
            ],
        ),
        (
            "McAfee / Skyhigh",
            vec![(CN, "Skyhigh Security Web Gateway CA"), (O, "Example Corp")],
        ),
        (
            "Sophos",
            vec![(CN, "Sophos SSL CA_C4E3F2A1"), (O, "Sophos"), (OU, "NSG")],
        ),
        (
            "Check Point",
            vec![
                (CN, "Outbound Inspection CA"),
                (O, "Check Point"),
                (OU, "R&D"),
            ],
        ),
        (
            "Cloudflare Gateway",
            vec![
                (
                    CN,
                    "Gateway CA - Cloudflare Managed G1 0f3c2a9b8d7e6f5a4b3c2d1e0f9a8b7c",
                ),
                (O, "Cloudflare, Inc."),
            ],
        ),
        (
            "Kaspersky",
            vec![
                (CN, "Kaspersky Anti-Virus Personal Root Certificate"),
                (O, "AO Kaspersky Lab"),
            ],
        ),
        (
            "ESET",
            vec![(CN, "ESET SSL Filter CA"), (O, "ESET, spol. s r. o.")],
        ),
        (
            "Avast / AVG / Norton",
            vec![
                (CN, "Avast Web/Mail Shield Root"),
                (OU, "generated by Avast Antivirus for SSL/TLS scanning"),
            ],
        ),
        (
            "Bitdefender",
            vec![
                (CN, "Bitdefender Personal CA.Net-Defender"),
                (O, "Bitdefender"),
            ],
        ),
        (
            "Fiddler (developer tool)",
            vec![(CN, "DO_NOT_TRUST_FiddlerRoot"), (O, "DO_NOT_TRUST")],
        ),
        (
            "mitmproxy (developer tool)",
            vec![(CN, "mitmproxy"), (O, "mitmproxy")],
        ),
        (
            "Charles (developer tool)",
            vec![
                (CN, "Charles Proxy CA (2 Dec 2026, laptop)"),
                (O, "XK72 Ltd"),
            ],
        ),
        (
            "Burp Suite (developer tool)",
            vec![(CN, "PortSwigger CA"), (O, "PortSwigger")],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let mut system = public.pem();
    let mut pins = Vec::new();
    let mut origins = Vec::new();
    for (i, (vendor, dn)) in vendors.iter().enumerate() {
        let root = TestCa::root_named(dn);
        system.push_str(&root.pem());
        let name = format!("v{i}.chatgpt.com");
        let (leaf, key) = root.leaf(&[&name]);
        let origin = tls_origin_with(vec![leaf], key).await;
        pins.push(format!("{name}:{}:127.0.0.1", origin.port()));
        origins.push((name, origin, *vendor));
    }
    let public_pem = write_file(dir.path(), "public.pem", &public.pem());
    let system_pem = write_file(dir.path(), "system.pem", &system);
    let mut args = vec!["--public-roots", &public_pem, "--system-roots", &system_pem];
    for pin in &pins {
        args.extend(["--resolve", pin.as_str()]);
    }
    let proxy = Proxy::start(&args).await;
    for (name, origin, _) in &origins {
        hello_through(proxy.addr, &format!("{name}:{}", origin.port()), name).await;
    }
    proxy.wait_events("tls_check", origins.len()).await;
    let session = proxy.stop().await;
    for (name, origin, vendor) in &origins {
        let tls = &session.host(name, origin.port())["tls"];
        assert_eq!(tls["verdict"], "inspected", "{name}: {tls:#}");
        assert_eq!(tls["vendor"], *vendor, "{name}: {tls:#}");
    }
}

/// One public root, leaves that are wrong in each way a real chain can be: each judged
/// with the reason a browser would give, and a leaf with embedded SCTs said to have them.
#[tokio::test]
async fn expired_not_yet_valid_wrong_name_missing_intermediate_and_scts() {
    let dir = tempfile::tempdir().unwrap();
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let issuing = public.intermediate("Test Issuing CA 1", "Public CA Inc.");
    let ago = |days| time::OffsetDateTime::now_utc() - time::Duration::days(days);
    let ahead = |days| time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let sct = rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2],
        vec![0x04, 0x02, 0x00, 0x00],
    );
    type Shape = Box<dyn FnOnce(&mut rcgen::CertificateParams)>;
    let cases: Vec<(&str, &str, Shape, bool)> = vec![
        (
            "expired.chatgpt.com",
            "untrusted",
            Box::new(move |p| {
                p.not_before = ago(400);
                p.not_after = ago(10);
            }),
            true,
        ),
        (
            "early.chatgpt.com",
            "untrusted",
            Box::new(move |p| {
                p.not_before = ahead(10);
                p.not_after = ahead(400);
            }),
            true,
        ),
        (
            "sct.chatgpt.com",
            "public",
            Box::new(move |p| p.custom_extensions.push(sct)),
            true,
        ),
        ("orphan.chatgpt.com", "untrusted", Box::new(|_| {}), false),
    ];
    let mut origins = Vec::new();
    for (name, verdict, shape, send_intermediate) in cases {
        let (leaf, key) = issuing.leaf_shaped(&[name], shape);
        let mut chain = vec![leaf];
        if send_intermediate {
            chain.push(issuing.cert.der().clone());
        }
        origins.push((name, verdict, tls_origin_with(chain, key).await));
    }
    // A leaf for another name than the one asked for.
    let (leaf, key) = issuing.leaf_shaped(&["elsewhere.example"], |_| {});
    let wrong = tls_origin_with(vec![leaf, issuing.cert.der().clone()], key).await;
    origins.push(("wrongname.chatgpt.com", "untrusted", wrong));
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    let pins: Vec<String> = origins
        .iter()
        .map(|(name, _, o)| format!("{name}:{}:127.0.0.1", o.port()))
        .collect();
    let mut args = vec!["--public-roots", &roots, "--system-roots", &roots];
    for pin in &pins {
        args.extend(["--resolve", pin.as_str()]);
    }
    let proxy = Proxy::start(&args).await;
    for (name, _, origin) in &origins {
        hello_through(proxy.addr, &format!("{name}:{}", origin.port()), name).await;
    }
    proxy.wait_events("tls_check", origins.len()).await;
    let session = proxy.stop().await;
    let reason = |name: &str, port: u16| {
        let tls = session.host(name, port)["tls"].clone();
        (
            tls["verdict"].as_str().unwrap_or("-").to_string(),
            tls["reason"].to_string(),
            tls,
        )
    };
    for (name, verdict, origin) in &origins {
        let (got, why, tls) = reason(name, origin.port());
        assert_eq!(got, *verdict, "{name}: {tls:#}");
        let expected = match *name {
            "expired.chatgpt.com" => "Expired",
            "early.chatgpt.com" => "NotValidYet",
            "orphan.chatgpt.com" => "UnknownIssuer",
            "wrongname.chatgpt.com" => "NotValidForName",
            _ => "",
        };
        assert!(why.contains(expected), "{name}: {why}");
        if *name == "sct.chatgpt.com" {
            assert_eq!(tls["scts"], true, "{tls:#}");
        } else {
            assert_eq!(tls["scts"], false, "{name}: {tls:#}");
        }
    }
}

/// An RSA-2048 key made by openssl at test time (rcgen's ring backend signs with RSA but
/// cannot generate RSA keys), as rcgen's key pair.
fn rsa_key(dir: &std::path::Path, name: &str) -> rcgen::KeyPair {
    let path = dir.join(name);
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pem = std::fs::read_to_string(&path).unwrap();
    rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).expect("RSA key")
}

#[tokio::test]
async fn rsa_2048_chains_are_judged_like_ecdsa_ones() {
    if !require_tool("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A public root and a Zscaler-named corporate root, both RSA-2048, each signing an RSA leaf.
    let root = |cn: &str, org: &str, key: rcgen::KeyPair| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert, key)
    };
    let (public, public_key) = root(
        "RSA Public Root",
        "Public CA Inc.",
        rsa_key(dir.path(), "p.pem"),
    );
    let (zscaler, zscaler_key) = root(
        "Zscaler Root CA",
        "Zscaler Inc.",
        rsa_key(dir.path(), "z.pem"),
    );
    let leaf = |name: &str, ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair, file: &str| {
        let key = rsa_key(dir.path(), file);
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, ca, ca_key)
            .unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (cert.der().clone(), der)
    };
    let (cert, key) = leaf("chatgpt.com", &public, &public_key, "l1.pem");
    let public_origin = tls_origin_with(vec![cert], key).await;
    let (cert, key) = leaf("cdn.oaistatic.com", &zscaler, &zscaler_key, "l2.pem");
    let inspected_origin = tls_origin_with(vec![cert], key).await;

    let public_pem = write_file(dir.path(), "public.pem", &public.pem());
    let system_pem = write_file(dir.path(), "system.pem", &(public.pem() + &zscaler.pem()));
    let pins = [
        format!("chatgpt.com:{}:127.0.0.1", public_origin.port()),
        format!("cdn.oaistatic.com:{}:127.0.0.1", inspected_origin.port()),
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
    ])
    .await;
    let _ = hello_through(
        proxy.addr,
        &format!("chatgpt.com:{}", public_origin.port()),
        "chatgpt.com",
    )
    .await;
    let _ = hello_through(
        proxy.addr,
        &format!("cdn.oaistatic.com:{}", inspected_origin.port()),
        "cdn.oaistatic.com",
    )
    .await;
    proxy.wait_events("tls_check", 2).await;
    let session = proxy.stop().await;
    let public = session.host("chatgpt.com", public_origin.port());
    assert_eq!(public["tls"]["verdict"], "public", "{public:#}");
    let inspected = session.host("cdn.oaistatic.com", inspected_origin.port());
    assert_eq!(inspected["tls"]["verdict"], "inspected", "{inspected:#}");
    assert_eq!(inspected["tls"]["vendor"], "Zscaler");
}
