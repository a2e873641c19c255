//! HAR 1.2 (Chrome/Edge DevTools, Firefox, Playwright, diagproxy's own `session.har`),
//! streamed one entry at a time. A HAR holds requests and answers: hosts, statuses, the
//! browser's error for a failed request (`_error`, `_failureText`), bodies when they were
//! exported (block pages), headers a proxy added. It holds no certificate chain, route or
//! DNS answer: those are in [`Source::cannot_tell`], never guessed.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::fields::{decode, header_map, request_event, target_of_url, Exchange};
use super::neterror::{self, Meaning};
use super::stream::{Input, Meter};
use super::{Context, Source};
use crate::failure::{Failure, FailureKind, Side};
use crate::inspect::detect::{self, Answer};
use crate::inspect::{explain, Finding, FindingKind};
use crate::session::event::Event;
use crate::upstream::route::Taken;

/// What a HAR cannot show, said in every report of an imported HAR.
pub const CANNOT_TELL: [&str; 3] = [
    "TLS inspection: cannot tell from this file (a HAR holds no certificate chain)",
    "the route: a HAR does not say which proxy or PAC the browser used",
    "DNS: a HAR does not hold the addresses names resolved to",
];

/// Reads a HAR from `input` into `sink`; fills `source`.
pub fn read(
    input: &mut Input,
    ctx: &Context,
    source: &mut Source,
    sink: &mut dyn FnMut(Event),
) -> Result<(), String> {
    let meter = input.meter.clone();
    let mut reader = Reader {
        ctx,
        sink,
        records: 0,
        browser: None,
    };
    let result = {
        let mut de = serde_json::Deserializer::from_reader(&mut *input);
        Top {
            reader: &mut reader,
            meter: &meter,
        }
        .deserialize(&mut de)
    };
    source.records = reader.records;
    source.browser = reader.browser.take();
    source.cannot_tell = CANNOT_TELL.iter().map(|s| s.to_string()).collect();
    match result {
        Ok(()) => Ok(()),
        Err(e) if reader.records > 0 => {
            source.stopped = Some(format!(
                "reading stopped at byte {}: {}; read up to the last complete entry",
                input.offset(),
                crate::text::terminal(&e.to_string(), false)
            ));
            Ok(())
        }
        Err(e) => Err(crate::text::terminal(&e.to_string(), false).into_owned()),
    }
}

struct Reader<'a> {
    ctx: &'a Context,
    sink: &'a mut dyn FnMut(Event),
    records: u64,
    browser: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Creator {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct NameValue {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Default, Deserialize)]
struct HarRequest {
    #[serde(default)]
    method: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    headers: Vec<NameValue>,
}

#[derive(Debug, Default, Deserialize)]
struct Content {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct HarResponse {
    #[serde(default)]
    status: i64,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(rename = "_error", default)]
    error: Option<String>,
    #[serde(rename = "_failureText", default)]
    failure_text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SecurityDetails {
    #[serde(default)]
    issuer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct DiagproxyExtension {
    #[serde(default)]
    failure: Option<Failure>,
}

/// One entry, as far as an import reads it.
#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(rename = "startedDateTime", default)]
    started: String,
    #[serde(default)]
    request: HarRequest,
    #[serde(default)]
    response: HarResponse,
    #[serde(rename = "serverIPAddress", default)]
    server_ip: Option<String>,
    #[serde(rename = "_securityDetails", default)]
    security: Option<SecurityDetails>,
    #[serde(rename = "_error", default)]
    error: Option<String>,
    #[serde(rename = "_failureText", default)]
    failure_text: Option<String>,
    #[serde(rename = "_diagproxy", default)]
    diagproxy: Option<DiagproxyExtension>,
    #[serde(rename = "_route", default)]
    route: Option<Taken>,
}

impl Reader<'_> {
    fn entry(&mut self, entry: Entry) {
        self.records += 1;
        let Some((host, port)) = target_of_url(&entry.request.url) else {
            return;
        };
        let status = u16::try_from(entry.response.status).ok().filter(|s| *s > 0);
        let failure = failure_of(&entry, status);
        let request: Vec<(String, String)> = pairs(&entry.request.headers);
        let response: Vec<(String, String)> = pairs(&entry.response.headers);
        let route = entry.route.clone().unwrap_or_default();
        let findings = self.findings(&entry, (&host, status), &route, failure.as_ref(), &response);
        let exchange = Exchange {
            ts: entry.started.clone(),
            method: entry.request.method.clone(),
            url: entry.request.url.clone(),
            target: (host, port),
            recorded_by: "browser (HAR)",
            request: &request,
            response: &response,
            status,
            bytes_down: 0,
            server_ip: entry.server_ip.clone().filter(|ip| !ip.is_empty()),
        };
        let event = request_event(exchange, &self.ctx.profile, route, failure, findings);
        (self.sink)(Event::Request(Box::new(event)));
    }

    /// Route findings (diagproxy's own HAR keeps the route), a proxy's refusal, what the
    /// answer shows (block pages when the body was exported), a suspected vendor from
    /// Playwright's `_securityDetails`.
    fn findings(
        &self,
        entry: &Entry,
        (host, status): (&str, Option<u16>),
        route: &Taken,
        failure: Option<&Failure>,
        response: &[(String, String)],
    ) -> Vec<Finding> {
        let profile = &self.ctx.profile;
        let mut found = explain::route_findings(profile, host, route, failure, false);
        if let Some(f) = failure {
            let path = crate::inspect::reproduce::Path::default();
            found.extend(explain::failure_findings(
                profile,
                host,
                f,
                &entry.request.url,
                &path,
            ));
        }
        if let Some(status) = status {
            let body = body_of(entry.response.content.as_ref());
            let map = header_map(response);
            let path = hyper::Uri::try_from(entry.request.url.as_str())
                .ok()
                .map(|u| u.path().to_string())
                .unwrap_or_default();
            found.extend(detect::answer_findings(
                &Answer::page(host, &path, status, &map, &body),
                profile,
            ));
        }
        found.extend(rejected_certificate(profile, host, entry));
        let issuer = entry.security.as_ref().and_then(|s| s.issuer.as_deref());
        if let Some(vendor) = issuer.and_then(|i| profile.vendor_for(i, i)) {
            let issuer = crate::text::terminal(issuer.unwrap_or_default(), false);
            found.push(Finding::new(
                profile,
                FindingKind::TlsInspection,
                host,
                Some(vendor.name.clone()),
                format!("issuer {issuer} (the HAR's _securityDetails; the chain itself is not in the file)"),
                format!("{host}'s certificate was issued by {issuer}, a name {} uses for TLS inspection: suspected, not verified", vendor.name),
            ));
        }
        found
    }
}

/// The first 64 KiB of an exported body (base64 undone).
fn body_of(content: Option<&Content>) -> Vec<u8> {
    let Some(text) = content.and_then(|c| c.text.as_deref()) else {
        return Vec::new();
    };
    let base64 = content.and_then(|c| c.encoding.as_deref()) == Some("base64");
    let mut body = if base64 {
        decode(text)
    } else {
        text.as_bytes().to_vec()
    };
    body.truncate(super::assemble::MAX_BODY);
    body
}

fn pairs(list: &[NameValue]) -> Vec<(String, String)> {
    list.iter()
        .filter(|h| !h.name.starts_with(':'))
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect()
}

/// The browser's error for an entry (`_error`, `_failureText`), sanitised, and what it means.
fn browser_error(entry: &Entry) -> Option<(String, Meaning)> {
    let text = [
        &entry.response.error,
        &entry.response.failure_text,
        &entry.error,
        &entry.failure_text,
    ]
    .into_iter()
    .find_map(|t| t.as_deref().filter(|t| !t.is_empty()))?;
    let text = crate::text::terminal(text, false).into_owned();
    let name = text.split_whitespace().next().unwrap_or(&text);
    let meaning = neterror::meaning(Some(name), 0)?;
    Some((text, meaning))
}

/// A certificate the browser rejected: `untrusted_certificate`, as `run` and a NetLog
/// record it (not a failure of its own), with "name mismatch" for -200. The chain itself is
/// not in a HAR, so issuer and vendor stay unknown.
fn rejected_certificate(
    profile: &crate::profile::Profile,
    host: &str,
    entry: &Entry,
) -> Option<Finding> {
    let (text, Meaning::Certificate { name_mismatch }) = browser_error(entry)? else {
        return None;
    };
    let mismatch = if name_mismatch { "; name mismatch" } else { "" };
    Some(Finding::new(
        profile,
        FindingKind::UntrustedCertificate,
        host,
        None,
        format!("the browser rejected the certificate: {text}{mismatch} (the chain is not in a HAR)"),
        format!("the browser did not trust {host}'s certificate ({text}); a HAR holds no chain, so its issuer cannot be named"),
    ))
}

/// The failure of an entry: diagproxy's own record, else the browser's error name.
fn failure_of(entry: &Entry, status: Option<u16>) -> Option<Failure> {
    if let Some(f) = entry.diagproxy.as_ref().and_then(|d| d.failure.clone()) {
        return Some(f);
    }
    if status == Some(407) {
        return Some(proxy_asked(&entry.response.headers));
    }
    let (text, meaning) = browser_error(entry)?;
    let failure = match meaning {
        Meaning::Failure(kind, side) => Failure::new(kind, side, text),
        Meaning::TunnelRefused => {
            Failure::new(FailureKind::UpstreamProxyRefused, Side::UpstreamProxy, text)
        }
        Meaning::ProxyAuth => {
            Failure::new(FailureKind::UpstreamProxyAuth, Side::UpstreamProxy, text)
        }
        Meaning::ProxyUnreachable => {
            Failure::new(FailureKind::ConnectFailed, Side::UpstreamProxy, text)
        }
        Meaning::TlsProtocol => Failure::new(FailureKind::TlsFailed, Side::Upstream, text),
        Meaning::Certificate { .. } | Meaning::PacError | Meaning::NotAFailure => return None,
    };
    (status.is_none() || failure.kind != FailureKind::HttpError).then_some(failure)
}

/// A 407 (only a proxy sends one; the browser shows it when the sign-in was cancelled):
/// `upstream_proxy_auth`, with the schemes the proxy offered.
fn proxy_asked(headers: &[NameValue]) -> Failure {
    let proxy_headers: Vec<(String, String)> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("proxy-authenticate"))
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                crate::text::terminal(&h.value, false).into_owned(),
            )
        })
        .collect();
    let offered: Vec<&str> = proxy_headers.iter().map(|(_, v)| v.as_str()).collect();
    let detail = match offered.is_empty() {
        true => "the proxy answered 407: it wants credentials".to_string(),
        false => format!(
            "the proxy answered 407: it wants credentials ({})",
            offered.join(", ")
        ),
    };
    let mut failure = Failure::new(FailureKind::UpstreamProxyAuth, Side::UpstreamProxy, detail);
    failure.proxy_status = Some(407);
    failure.proxy_headers = proxy_headers;
    failure
}

/// `{"log": {…}}`.
struct Top<'a, 'b> {
    reader: &'a mut Reader<'b>,
    meter: &'a Meter,
}

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a HAR object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "log" {
                map.next_value_seed(Log {
                    reader: &mut *self.reader,
                    meter: self.meter,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// `log`: `creator` (and `browser`) named, `entries` streamed, the rest skipped.
struct Log<'a, 'b> {
    reader: &'a mut Reader<'b>,
    meter: &'a Meter,
}

impl<'de> DeserializeSeed<'de> for Log<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Log<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a HAR log")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            self.meter.mark();
            match key.as_str() {
                "creator" | "browser" => {
                    let who: Creator = map.next_value()?;
                    let named = format!(
                        "{} {}",
                        who.name.unwrap_or_default(),
                        who.version.unwrap_or_default()
                    );
                    let named = crate::text::terminal(named.trim(), false).into_owned();
                    if key == "browser" || self.reader.browser.is_none() {
                        self.reader.browser = Some(named);
                    }
                }
                "entries" => map.next_value_seed(Entries {
                    reader: &mut *self.reader,
                    meter: self.meter,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct Entries<'a, 'b> {
    reader: &'a mut Reader<'b>,
    meter: &'a Meter,
}

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of HAR entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.meter.mark();
        while let Some(entry) = seq.next_element::<Entry>()? {
            self.reader.entry(entry);
            self.meter.mark();
        }
        Ok(())
    }
}
