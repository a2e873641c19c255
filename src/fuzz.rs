//! Property tests with arbitrary input for every parser outside the lean path that sees
//! network (or user) bytes: the ClientHello sniffer, CONNECT targets and `host:port`, URL
//! redaction, the text escapers and the detectors. No input makes them panic, and what they
//! promise holds (escaped text has no control characters, a redacted URL no userinfo).
//! `PROPTEST_CASES` sets the cases per property (README: the long run).

use proptest::prelude::*;

use crate::inspect::detect::{answer_findings, tunnel_findings, Answer, TunnelSight};
use crate::profile::Profile;
use crate::session::redact;
use crate::text;
use crate::tls::sniff;
use crate::upstream::HostPort;

fn profile() -> &'static Profile {
    static PROFILE: std::sync::OnceLock<Profile> = std::sync::OnceLock::new();
    PROFILE.get_or_init(Profile::builtin)
}

/// A ClientHello with one byte changed, or cut: the sniffer's hard cases.
fn hello_ish() -> impl Strategy<Value = Vec<u8>> {
    let base = sniff::example_hello(Some("chatgpt.com"), &["h2", "http/1.1"]);
    let len = base.len();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        (0..len, any::<u8>(), 0..=len).prop_map(move |(at, byte, cut)| {
            let mut b = base.clone();
            b[at] = byte;
            b.truncate(cut.max(1));
            b
        }),
    ]
}

proptest! {
    #[test]
    fn the_sniffer_never_panics(bytes in hello_ish()) {
        let _ = sniff::client_hello(&bytes);
    }

    #[test]
    fn hello_names_round_trip(name in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}") {
        let hello = sniff::example_hello(Some(&name), &["h2"]);
        match sniff::client_hello(&hello) {
            sniff::Sniff::Hello(h) => prop_assert_eq!(h.sni.as_deref(), Some(name.as_str())),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn host_ports_and_hosts_never_panic(text in ".{0,80}", port in any::<u16>()) {
        if let Some(hp) = HostPort::parse(&text, port) {
            prop_assert_eq!(HostPort::parse(&hp.to_string(), 0), Some(hp));
        }
        let _ = text::is_host(&text);
    }

    #[test]
    fn redacted_urls_keep_no_userinfo(user in "[a-z]{1,8}", rest in ".{0,60}") {
        let url = format!("http://{user}:pw@a.example/{rest}");
        let shown = redact::url(&url);
        prop_assert!(!shown.contains(&format!("{user}:pw@")), "{}", shown);
        let _ = redact::strip_userinfo(&rest);
    }

    /// A secret key after any text outside strings (no `"` or `\` to open one), and that
    /// text cut anywhere (a kept body is cut at 64 KiB): the key's value never survives, and
    /// the cut never panics.
    #[test]
    fn json_bodies_are_redacted_whatever_they_hold(
        before in "[ !#-\\[\\]-~]{0,40}",
        secret in "[a-z0-9]{6,12}",
        cut in 0usize..80,
    ) {
        let text = format!("{before}{{\"access_token\": \"{secret}\"}}");
        let quoted = format!("\"{secret}\"");
        let redacted = redact::json_body(&text);
        prop_assert!(!redacted.contains(&quoted), "{}", redacted);
        let cut_at = (0..=cut.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let _ = redact::json_body(&text[..cut_at]);
    }

    #[test]
    fn arbitrary_json_text_never_panics_the_redaction(s in any::<String>()) {
        let _ = redact::json_body(&s);
    }

    #[test]
    fn escaped_text_has_no_control_characters(s in any::<String>()) {
        let shown = text::terminal(&s, false);
        prop_assert!(!shown.chars().any(|c| c.is_control()), "{:?}", shown);
        let md = text::markdown(&s);
        prop_assert!(!md.contains('<') && !md.contains('`') && !md.contains('\n'));
        let quoted = text::shell(&s);
        prop_assert!(quoted.starts_with('\'') || !quoted.contains(' '));
    }

    #[test]
    fn the_detectors_never_panic(
        status in 100u16..600,
        body in prop::collection::vec(any::<u8>(), 0..2048),
        location in ".{0,40}",
        first in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut headers = hyper::HeaderMap::new();
        if let Ok(v) = hyper::header::HeaderValue::from_str(&location) {
            headers.insert("location", v);
        }
        headers.insert("content-type", hyper::header::HeaderValue::from_static("text/html"));
        let answer = Answer {
            host: "chatgpt.com",
            path: "/",
            status,
            headers: &headers,
            body: &body,
            accept: Some("application/json"),
            declared_length: Some(body.len() as u64 + 1),
            received: Some(body.len() as u64),
            intercepted: false,
        };
        let _ = answer_findings(&answer, profile());
        let sight = TunnelSight {
            host: "chatgpt.com",
            client_hello: true,
            first_upstream: &first,
            bytes_down: first.len() as u64,
            upstream_died: first.is_empty(),
            silent_for: None,
        };
        let _ = tunnel_findings(&sight, profile());
    }
}
