//! The profile: which hosts ChatGPT needs, what each is for, what breaks when it fails, and
//! what to change. It is data (`chatgpt.json`, compiled in; `--profile FILE` loads another) so
//! an administrator can read, diff and extend it.
//!
//! Matching: `*.example.com` covers every subdomain **and** the apex `example.com` (the
//! published list plainly means `chatgpt.com` to be covered by `*.chatgpt.com`); any other
//! pattern matches exactly that name. When several entries match, the most specific wins: an
//! exact entry, then the wildcard with the longest suffix.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::failure::FailureKind;

/// The built-in ChatGPT profile's JSON (its SHA-256 identifies it in a bundle's environment.json).
pub const BUILTIN: &str = include_str!("chatgpt.json");

/// A loaded profile with its lookup index.
#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    /// Short name shown in the session summary.
    pub name: String,
    /// Where the data comes from, for people reading the file.
    #[serde(default)]
    pub description: String,
    /// The hosts, in the order a report lists them.
    pub entries: Vec<Entry>,
    /// What users can do with ChatGPT, each with the allowlist entries it needs: the
    /// report's first page shows one tile per capability.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// What each failure kind means and what to check next.
    #[serde(default)]
    pub failures: BTreeMap<FailureKind, FailureHint>,
    /// Interception products, recognised by strings in a chain's issuer or root name.
    #[serde(default)]
    pub vendors: Vec<Vendor>,
    /// What each finding kind (`tls_inspection`, …) means and its remedy.
    #[serde(default)]
    pub findings: BTreeMap<String, FindingHint>,
    /// The generic rule for block pages no signature names.
    #[serde(default)]
    pub block_rule: BlockRule,
    /// Block pages of security products: body, header and redirect markers.
    #[serde(default)]
    pub block_signatures: Vec<BlockSignature>,
    /// Headers security products add to answers.
    #[serde(default)]
    pub proxy_headers: Vec<ProxyHeader>,
    /// Address ranges DNS filters answer blocked names with.
    #[serde(default)]
    pub sinkholes: Vec<Sinkhole>,
    /// Ports block pages are served on; a redirect there is a block.
    #[serde(default)]
    pub block_page_ports: Vec<u16>,
    /// Where `diagproxy check` tests voice (LiveKit's TURN server and its ports).
    #[serde(default)]
    pub voice: Option<VoiceProbe>,
    /// Which hosts `diagproxy check` tries more on.
    #[serde(default)]
    pub check: CheckHints,
    /// Lower-case exact names → entry index.
    #[serde(skip)]
    exact: HashMap<String, usize>,
    /// Lower-case wildcard suffixes (without `*.`) → entry index.
    #[serde(skip)]
    wildcard: HashMap<String, usize>,
}

/// Hosts `diagproxy check` tries a WebSocket upgrade on, and hosts whose Cloudflare trace
/// it reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckHints {
    #[serde(default)]
    pub websocket: Vec<String>,
    #[serde(default)]
    pub cloudflare_trace: Vec<String>,
    /// `host/path` of event-stream test endpoints (none public for ChatGPT).
    #[serde(default)]
    pub event_stream: Vec<String>,
    #[serde(default)]
    pub source: String,
}

/// LiveKit's published firewall ports, for the voice probes of `diagproxy check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceProbe {
    /// The TURN server for UDP (STUN on `stun_port`) and ICE over TCP (7881).
    pub host: String,
    /// STUN/TURN over UDP (3478).
    pub stun_port: u16,
    /// The TURN-over-TLS server (TCP 443), reached along the route like any HTTPS host.
    pub tls_host: String,
    /// ICE over TCP (7881), direct.
    pub tcp_port: u16,
    /// The UDP media range, as `first`–`last`.
    pub media_udp: [u16; 2],
    pub source: String,
}

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// `*.example.com` or `host.example.com`, as published.
    pub pattern: String,
    /// What the host is for.
    pub purpose: String,
    /// What the user sees when it fails.
    pub breaks: String,
    /// What the administrator should change.
    pub remedy: String,
    /// `published` (the allowlist itself) or `guidance` (named elsewhere in the guidance).
    #[serde(default)]
    pub source: String,
    /// Concrete names to look up for a wildcard entry (`*.chatgpt.com` → `chatgpt.com`,
    /// `ab.chatgpt.com`, `ws.chatgpt.com`; the hosts the field notes name). Empty: the
    /// pattern without its `*.`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe: Vec<String>,
}

impl Entry {
    /// The names that stand for this entry when a route or a check needs real hosts.
    pub fn probe_hosts(&self) -> Vec<&str> {
        if self.probe.is_empty() {
            vec![self.pattern.strip_prefix("*.").unwrap_or(&self.pattern)]
        } else {
            self.probe.iter().map(String::as_str).collect()
        }
    }
}

/// A capability ("Voice") and the allowlist entries (patterns, as in `entries`) it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    pub name: String,
    pub entries: Vec<String>,
    pub source: String,
}

/// What a failure kind means, and the next thing to check (`HOST` is replaced by the host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureHint {
    pub meaning: String,
    pub check: String,
}

/// A product that re-signs TLS, and how its CA names look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vendor {
    /// The name shown to the user ("Zscaler").
    pub name: String,
    pub product: String,
    /// Case-insensitive substrings of the issuer or root distinguished name.
    pub issuer_contains: Vec<String>,
    /// Where the signature comes from.
    pub source: String,
}

/// How one product's block page looks. A match on `body`, `titles`, `location`, a header
/// or a name identifies the product; a match on `generic` alone only says "possibly".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockSignature {
    pub vendor: String,
    pub source: String,
    /// Strings only this product's pages carry (phrases, asset paths, its own hosts),
    /// matched in any case against the decoded markup and the visible text.
    #[serde(default)]
    pub body: Vec<Marker>,
    /// Page titles only this product uses (whole title, any case).
    #[serde(default)]
    pub titles: Vec<Marker>,
    /// Titles or phrases other products use too: alone, they make the vendor a guess.
    #[serde(default)]
    pub generic: Vec<Marker>,
    /// The product's names as its pages print them ("Zscaler"): on a refusal, or a page
    /// that reads as a block (see [`BlockRule`]), they name the vendor.
    #[serde(default)]
    pub names: Vec<Marker>,
    /// `[header, substring]`; an empty substring means "present at all". Counts on an HTML
    /// refusal or an HTML page that reads as a block.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Case-insensitive substrings of a redirect's Location.
    #[serde(default)]
    pub location: Vec<String>,
}

/// A block-page marker (a phrase, a title, a product's name) as the profile writes it, with
/// the forms a page is searched in, made once when the profile is read instead of for every
/// answer (they were three allocations per marker per answer: 140 of the ~200 a forwarded
/// request cost). Written back to JSON as the plain string it was read from.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Marker {
    /// As written in the profile: what a finding's evidence quotes.
    pub raw: String,
    /// Whitespace collapsed, ASCII lower case: searched in a page's markup, and a title
    /// compared with it ignoring ASCII case.
    pub ascii_lower: String,
    /// Whitespace collapsed, lower case (Unicode): searched in a page's visible text.
    pub lower: String,
}

impl From<String> for Marker {
    fn from(raw: String) -> Marker {
        let collapsed = crate::text::collapse_whitespace(&raw);
        Marker {
            ascii_lower: collapsed.to_ascii_lowercase(),
            lower: collapsed.to_lowercase(),
            raw,
        }
    }
}

impl From<&str> for Marker {
    fn from(raw: &str) -> Marker {
        Marker::from(raw.to_string())
    }
}

impl From<Marker> for String {
    fn from(marker: Marker) -> String {
        marker.raw
    }
}

/// Prints as the string it was written as, so evidence reads `body marker "…"`.
impl std::fmt::Debug for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

/// The generic block-page rule: an HTML answer from an allowlisted host with one of these
/// statuses (or a 200 where JSON or an event stream was expected), whose title or first text
/// has one of these words, is a block page by an unknown product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BlockRule {
    pub source: String,
    pub statuses: Vec<u16>,
    /// Lower-case words or phrases that make a page read as a block.
    pub words: Vec<String>,
    /// `[header, substring]` of an answer from the origin's own CDN, which the rule leaves
    /// alone (Cloudflare's own error pages carry `cf-ray`).
    #[serde(default)]
    pub origin_headers: Vec<(String, String)>,
}

/// A header a security product adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyHeader {
    /// Lower-case header name; a name ending in a product prefix matches it too.
    pub header: String,
    /// Case-insensitive substring of the value ("" = any value).
    pub contains: String,
    pub vendor: String,
}

/// An address range DNS filters answer blocked names with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sinkhole {
    /// `146.112.61.0/24`
    pub cidr: String,
    pub vendor: Option<String>,
    pub source: String,
}

/// What a finding kind means and what to change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingHint {
    pub meaning: String,
    pub remedy: String,
    /// Where the remedy comes from, when it is more than general practice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Why a profile could not be loaded.
#[derive(Debug)]
pub enum ProfileError {
    Read(std::io::Error),
    Parse(serde_json::Error),
    BadPattern(String),
}

impl std::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProfileError::Read(e) => write!(f, "cannot read the profile: {e}"),
            ProfileError::Parse(e) => write!(
                f,
                "the profile is not valid JSON of the expected shape: {e}"
            ),
            ProfileError::BadPattern(p) => {
                write!(
                    f,
                    "profile pattern {p:?} is not a host name or '*.' followed by one"
                )
            }
        }
    }
}

impl std::error::Error for ProfileError {}

impl Profile {
    /// The compiled-in ChatGPT profile.
    pub fn builtin() -> Profile {
        // The built-in data is checked by a unit test, so this cannot fail in a release.
        Profile::from_json(BUILTIN).unwrap_or_else(|e| panic!("built-in profile is invalid: {e}"))
    }

    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(ProfileError::Read)?;
        Profile::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Profile, ProfileError> {
        let mut profile: Profile = serde_json::from_str(text).map_err(ProfileError::Parse)?;
        // The detectors compare without allocating: header names and substrings lower case.
        for known in &mut profile.proxy_headers {
            known.header.make_ascii_lowercase();
            known.contains.make_ascii_lowercase();
        }
        for (i, entry) in profile.entries.iter().enumerate() {
            let pattern = entry.pattern.to_ascii_lowercase();
            let (map, name) = match pattern.strip_prefix("*.") {
                Some(suffix) => (&mut profile.wildcard, suffix.to_string()),
                None => (&mut profile.exact, pattern.clone()),
            };
            if name.is_empty() || name.contains('*') || name.contains('/') || name.contains(' ') {
                return Err(ProfileError::BadPattern(entry.pattern.clone()));
            }
            map.entry(name).or_insert(i);
        }
        for capability in &profile.capabilities {
            if let Some(missing) = capability
                .entries
                .iter()
                .find(|p| !profile.entries.iter().any(|e| &e.pattern == *p))
            {
                return Err(ProfileError::BadPattern(format!(
                    "{missing} (capability {:?} names it, but no entry has that pattern)",
                    capability.name
                )));
            }
        }
        Ok(profile)
    }

    /// The most specific entry covering `host`, if any.
    pub fn match_host(&self, host: &str) -> Option<&Entry> {
        let host = ascii_lowercase(host.trim_end_matches('.'));
        let host = host.as_ref();
        if let Some(&i) = self.exact.get(host) {
            return Some(&self.entries[i]);
        }
        let mut suffix = host;
        loop {
            if let Some(&i) = self.wildcard.get(suffix) {
                return Some(&self.entries[i]);
            }
            match suffix.split_once('.') {
                Some((_, rest)) => suffix = rest,
                None => return None,
            }
        }
    }

    /// The interception product whose CA names match the issuer or root, if any. It names
    /// the product; it never decides whether the chain is intercepted.
    pub fn vendor_for(&self, issuer: &str, root: &str) -> Option<&Vendor> {
        let issuer = issuer.to_ascii_lowercase();
        let root = root.to_ascii_lowercase();
        self.vendors.iter().find(|v| {
            v.issuer_contains.iter().any(|needle| {
                let needle = needle.to_ascii_lowercase();
                issuer.contains(&needle) || root.contains(&needle)
            })
        })
    }

    /// What a finding kind means and its remedy, if the profile says.
    pub fn finding(&self, kind: &str) -> Option<&FindingHint> {
        self.findings.get(kind)
    }

    /// What a failure kind means and what to check, if the profile says.
    pub fn hint(&self, kind: FailureKind) -> Option<&FailureHint> {
        self.failures.get(&kind)
    }
}

/// `name` in ASCII lower case, copied only when it has upper case in it (names off the wire
/// rarely do, and this runs for every request).
pub fn ascii_lowercase(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profile_parses_and_has_the_published_list() {
        let p = Profile::builtin();
        assert_eq!(p.name, "chatgpt");
        for pattern in [
            "*.chatgpt.com",
            "humb.apple.com",
            "tcr9i.chat.openai.com",
            "workos.imgix.net",
        ] {
            assert!(
                p.entries.iter().any(|e| e.pattern == pattern),
                "{pattern} missing"
            );
        }
        assert_eq!(
            p.entries.iter().filter(|e| e.source == "published").count(),
            34
        );
        for entry in &p.entries {
            assert!(
                !entry.remedy.is_empty() && !entry.breaks.is_empty(),
                "{entry:?}"
            );
        }
    }

    #[test]
    fn every_failure_kind_has_a_hint() {
        let p = Profile::builtin();
        for kind in FailureKind::ALL {
            assert!(p.hint(kind).is_some(), "no hint for {kind}");
        }
    }

    #[test]
    fn wildcard_covers_apex_and_subdomains() {
        let p = Profile::builtin();
        assert_eq!(
            p.match_host("chatgpt.com").map(|e| e.pattern.as_str()),
            Some("*.chatgpt.com")
        );
        assert_eq!(
            p.match_host("ws.chatgpt.com").map(|e| e.pattern.as_str()),
            Some("*.chatgpt.com")
        );
        assert_eq!(
            p.match_host("A.B.ChatGPT.com.").map(|e| e.pattern.as_str()),
            Some("*.chatgpt.com")
        );
        assert_eq!(p.match_host("notchatgpt.com"), None);
        assert_eq!(p.match_host("chatgpt.com.evil.example"), None);
    }

    #[test]
    fn most_specific_entry_wins() {
        let p = Profile::builtin();
        let m = |h: &str| p.match_host(h).map(|e| e.pattern.clone());
        assert_eq!(
            m("files.oaiusercontent.com").as_deref(),
            Some("files.oaiusercontent.com")
        );
        assert_eq!(
            m("x.oaiusercontent.com").as_deref(),
            Some("*.oaiusercontent.com")
        );
        assert_eq!(m("chat.openai.com").as_deref(), Some("chat.openai.com"));
        assert_eq!(m("x.auth.openai.com").as_deref(), Some("*.auth.openai.com"));
        assert_eq!(m("api.openai.com").as_deref(), Some("*.openai.com"));
        assert_eq!(
            m("chatgpt.livekit.cloud").as_deref(),
            Some("chatgpt.livekit.cloud")
        );
        assert_eq!(
            m("x.host.livekit.cloud").as_deref(),
            Some("*.livekit.cloud")
        );
    }

    #[test]
    fn exact_entries_do_not_cover_subdomains() {
        let p = Profile::builtin();
        assert_eq!(
            p.match_host("js.stripe.com").map(|e| e.pattern.as_str()),
            Some("js.stripe.com")
        );
        assert_eq!(p.match_host("api.stripe.com"), None);
        assert_eq!(p.match_host("x.humb.apple.com"), None);
    }

    #[test]
    fn vendors_are_named_from_issuer_or_root() {
        let p = Profile::builtin();
        let zscaler =
            "C=US, O=Zscaler Inc., CN=Zscaler Intermediate Root CA (zscalerthree.net) (t) ";
        assert_eq!(
            p.vendor_for(zscaler, "").map(|v| v.name.as_str()),
            Some("Zscaler")
        );
        let forti = "C=US, O=Fortinet, OU=Certificate Authority, CN=FG121GTK23000612";
        assert_eq!(
            p.vendor_for("CN=whatever", forti).map(|v| v.name.as_str()),
            Some("Fortinet")
        );
        assert_eq!(
            p.vendor_for("C=US, O=Let's Encrypt, CN=R11", "CN=ISRG Root X1")
                .map(|v| v.name.as_str()),
            None
        );
        assert!(
            p.finding("tls_inspection").is_some() && p.finding("untrusted_certificate").is_some()
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        let text =
            r#"{"name":"t","entries":[{"pattern":"*.*.x","purpose":"","breaks":"","remedy":""}]}"#;
        assert!(matches!(
            Profile::from_json(text),
            Err(ProfileError::BadPattern(_))
        ));
        assert!(matches!(
            Profile::from_json("{"),
            Err(ProfileError::Parse(_))
        ));
    }
}
