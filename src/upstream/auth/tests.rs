use super::*;

fn names(values: &[&str]) -> Vec<(String, Option<String>)> {
    challenges(values.iter().copied())
        .into_iter()
        .map(|c| (c.scheme, c.token))
        .collect()
}

#[test]
fn challenges_one_per_header_and_several_per_header() {
    assert_eq!(
        names(&["Negotiate", "NTLM", r#"Basic realm="Squid, proxy""#]),
        vec![
            ("Negotiate".into(), None),
            ("NTLM".into(), None),
            ("Basic".into(), None)
        ]
    );
    assert_eq!(
        names(&[r#"Basic realm="a,b", charset="UTF-8", NTLM TlRMTVNTUAACAAAA=="#]),
        vec![
            ("Basic".into(), None),
            ("NTLM".into(), Some("TlRMTVNTUAACAAAA==".into()))
        ]
    );
    assert_eq!(
        names(&["Negotiate oYG3MIG0oAMKAQ="]),
        vec![("Negotiate".into(), Some("oYG3MIG0oAMKAQ=".into()))]
    );
    assert!(names(&["", " , "]).is_empty());
}

fn offered(schemes: &[&str]) -> Vec<Challenge> {
    schemes
        .iter()
        .map(|s| Challenge {
            scheme: s.to_string(),
            token: None,
        })
        .collect()
}

fn user() -> Option<Credentials> {
    Some(Credentials::parse("CORP\\bob", "pw".into()).unwrap())
}

#[test]
fn candidates_strongest_first_and_only_what_can_be_done() {
    let all = offered(&["basic", "NTLM", "Negotiate"]);
    let can = Can {
        negotiate: Ok(()),
        url_basic: false,
        password: Ok(()),
    };
    let auto = Settings {
        mode: Mode::Auto,
        user: user(),
        ..Settings::default()
    };
    assert_eq!(
        auto.candidates(&all, &can).unwrap(),
        vec![Scheme::Negotiate, Scheme::Ntlm, Scheme::Basic]
    );
    let no_user = Settings::default();
    assert_eq!(
        no_user.candidates(&all, &can).unwrap(),
        vec![Scheme::Negotiate]
    );
    let no_gss = Can {
        negotiate: Err("libgssapi_krb5.so.2 not found".into()),
        url_basic: false,
        password: Ok(()),
    };
    let why = no_user.candidates(&all, &no_gss).unwrap_err();
    assert!(why.contains("libgssapi_krb5.so.2 not found"), "{why}");
    assert!(why.contains("--upstream-user"), "{why}");
    let ntlm = Settings {
        mode: Mode::Ntlm,
        user: user(),
        ..Settings::default()
    };
    assert_eq!(ntlm.candidates(&all, &can).unwrap(), vec![Scheme::Ntlm]);
    let why = auto.candidates(&offered(&["Digest"]), &can).unwrap_err();
    assert_eq!(
        why,
        "the proxy offers Digest; diagproxy signs in with Negotiate, NTLM or Basic"
    );
    let none = Settings {
        mode: Mode::None,
        user: user(),
        ..Settings::default()
    };
    assert!(none.candidates(&all, &can).is_err());
}

#[test]
fn the_password_goes_only_to_proxies_the_user_named_or_listed() {
    let listed = Settings {
        user: user(),
        auth_proxies: parse_auth_proxies("*.corp.example, 10.0.0.1:3128").unwrap(),
        ..Settings::default()
    };
    assert!(listed.password_to("evil.example", 8080, true).is_ok());
    assert!(listed
        .password_to("proxy.CORP.example", 8080, false)
        .is_ok());
    assert!(listed.password_to("10.0.0.1", 3128, false).is_ok());
    let why = listed.password_to("10.0.0.1", 8080, false).unwrap_err();
    assert_eq!(
        why,
        "not sending your password to 10.0.0.1:8080, which the PAC named; add it to --upstream-auth-proxies if it is yours"
    );
    let can = |password| Can {
        negotiate: Ok(()),
        url_basic: false,
        password,
    };
    let all = offered(&["Negotiate", "NTLM", "Basic"]);
    // A PAC's proxy: Negotiate still may (a ticket is bound to the proxy's name).
    assert_eq!(
        listed.candidates(&all, &can(Err("no".into()))).unwrap(),
        vec![Scheme::Negotiate]
    );
    let why = listed
        .candidates(&offered(&["NTLM", "Basic"]), &can(Err("not yours".into())))
        .unwrap_err();
    assert!(
        why.contains("NTLM: not yours") && why.contains("Basic: not yours"),
        "{why}"
    );
    assert!(parse_auth_proxies("a b").is_err());
    assert!(parse_auth_proxies(&"a,".repeat(65)).is_err());
    assert_eq!(parse_auth_proxies("").unwrap(), Vec::<String>::new());
}

#[test]
fn credentials_forms_and_no_password_in_debug() {
    let c = Credentials::parse("CORP\\bob", "s3cret".into()).unwrap();
    assert_eq!(
        (c.domain.as_deref(), c.user.as_str()),
        (Some("CORP"), "bob")
    );
    let c = Credentials::parse("bob@corp.example", "s3cret".into()).unwrap();
    assert_eq!(c.display(), "corp.example\\bob");
    assert!(!format!("{c:?}").contains("s3cret"));
    assert!(Credentials::parse("CORP\\", String::new()).is_err());
    assert!(Credentials::parse("\\bob", String::new()).is_err());
}

#[test]
fn gss_failures_named_by_code_then_by_message() {
    let code = |c: i64| (c as i32) as u32;
    assert_eq!(classify_gss(code(krb5::SKEW), ""), AuthFailure::ClockSkew);
    assert_eq!(
        classify_gss(code(krb5::S_PRINCIPAL_UNKNOWN), ""),
        AuthFailure::Spn
    );
    assert_eq!(
        classify_gss(code(krb5::FCC_NOFILE), ""),
        AuthFailure::NoTicket
    );
    assert_eq!(
        classify_gss(
            0,
            "Server HTTP/10.0.0.1@CORP not found in Kerberos database"
        ),
        AuthFailure::Spn
    );
    assert_eq!(
        classify_gss(0, "Clock skew too great"),
        AuthFailure::ClockSkew
    );
    assert_eq!(
        classify_gss(0, "SPNEGO cannot find mechanisms to negotiate"),
        AuthFailure::NoTicket
    );
}

#[test]
fn skew_beyond_kerberos_tolerance_only() {
    let date = "Wed, 02 Dec 2026 08:00:00 GMT";
    let at = httpdate::parse_http_date(date).unwrap();
    assert_eq!(skew(date, at + Duration::from_secs(299)), None);
    assert_eq!(
        skew(date, at + Duration::from_secs(3600)),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        skew(date, at - Duration::from_secs(600)),
        Some(Duration::from_secs(600))
    );
    assert_eq!(skew("yesterday", at), None);
}

#[test]
fn record_line_names_the_failure() {
    let mut r = AuthRecord {
        proxy: "proxy.corp:3128".into(),
        offered: vec!["Negotiate".into()],
        scheme: Some("Negotiate".into()),
        spn: Some("HTTP@proxy.corp".into()),
        ms: 2.04,
        ..AuthRecord::default()
    };
    assert_eq!(
        r.line(),
        "proxy.corp:3128 sign-in with Negotiate (HTTP@proxy.corp): ok in 2.0 ms"
    );
    r.outcome = Outcome::Failed;
    r.failure = Some(AuthFailure::NoTicket);
    r.detail = Some("no credentials cache".into());
    assert_eq!(
        r.line(),
        "proxy.corp:3128 sign-in with Negotiate (HTTP@proxy.corp): proxy_auth_no_ticket — no credentials cache"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["failure"], "proxy_auth_no_ticket");
    assert_eq!(json["outcome"], "failed");
}
