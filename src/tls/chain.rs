//! The verdict on a presented certificate chain. Pure: no I/O, so each rule is unit-tested
//! with hierarchies made at test time.
//!
//! - `public`: verifies (name, time, chain) against the public roots;
//! - `inspected`: fails the public roots but verifies against this machine's store — a
//!   locally installed root re-signs the traffic: corporate TLS inspection;
//! - `untrusted`: verifies against neither (unknown issuer, expired, wrong name, self-signed).
//!
//! The vendor is named afterwards from the issuer and root names; it never decides the verdict.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;
use serde::{Deserialize, Serialize};

use super::roots::TrustRoots;
use crate::clock;
use crate::profile::Profile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Public,
    Inspected,
    Untrusted,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Public => "public",
            Verdict::Inspected => "inspected",
            Verdict::Untrusted => "untrusted",
        }
    }
}

/// `hosts[].tls` of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsVerdict {
    pub verdict: Verdict,
    /// Why the public roots rejected the chain (`UnknownIssuer`, `Expired`, `NotValidForName`…).
    pub reason: Option<String>,
    /// The leaf's issuer DN.
    pub issuer: String,
    /// The top of the presented chain: the issuer of its last certificate.
    pub root: String,
    pub vendor: Option<String>,
    pub chain: Vec<CertInfo>,
    /// Whether the leaf carries embedded SCTs (a private CA cannot get them).
    pub scts: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
    pub spki_sha256: String,
    /// SHA-256 of the whole certificate (what `openssl x509 -fingerprint -sha256` and
    /// blackbox_exporter's `probe_ssl_last_chain_info` show).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint_sha256: String,
    /// `not_after` in seconds since 1970, for `probe_ssl_earliest_cert_expiry`.
    #[serde(default, skip_serializing)]
    pub not_after_unix: i64,
}

/// The embedded SCT list extension (RFC 6962 §3.3).
const SCT_LIST_OID: &str = "1.3.6.1.4.1.11129.2.4.2";

/// Judges the chain presented for `server_name`.
pub fn judge(
    chain: &[CertificateDer<'_>],
    server_name: &str,
    roots: &TrustRoots,
    profile: &Profile,
    now: UnixTime,
) -> Result<TlsVerdict, String> {
    let presented = Presented::read(chain, server_name)?;
    let (verdict, reason) = match presented.verify(&roots.public, now) {
        Ok(()) => (Verdict::Public, None),
        Err(public_reason) => match presented.verify(&roots.system, now) {
            Ok(()) => (Verdict::Inspected, Some(public_reason)),
            Err(_) => (Verdict::Untrusted, Some(public_reason)),
        },
    };
    Ok(presented.verdict(verdict, reason, profile))
}

/// What another verifier decided about a chain: a browser's own verification read from its
/// NetLog ([`judge_accepted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The browser accepted the chain.
    Yes,
    /// The browser rejected it because the name does not match (`ERR_CERT_COMMON_NAME_INVALID`).
    NameMismatch,
    /// The browser rejected it for another reason (unknown issuer, dates, revocation).
    No,
}

/// Judges a chain another verifier (a browser) already accepted or rejected: public when it
/// verifies against `public` (as [`judge`]); otherwise the browser's trust store stands in
/// for this machine's — accepted means a locally installed root re-signs it (`inspected`),
/// rejected means `untrusted` (a name mismatch is said so in the reason).
pub fn judge_accepted(
    chain: &[CertificateDer<'_>],
    server_name: &str,
    public: &Arc<RootCertStore>,
    accepted: Accepted,
    profile: &Profile,
    now: UnixTime,
) -> Result<TlsVerdict, String> {
    let presented = Presented::read(chain, server_name)?;
    let (verdict, reason) = match (presented.verify(public, now), accepted) {
        (Ok(()), Accepted::Yes) => (Verdict::Public, None),
        (Ok(()), Accepted::NameMismatch) | (Err(_), Accepted::NameMismatch) => (
            Verdict::Untrusted,
            Some(
                "NotValidForName (name mismatch: the browser said ERR_CERT_COMMON_NAME_INVALID)"
                    .into(),
            ),
        ),
        (Ok(()), Accepted::No) => (
            Verdict::Untrusted,
            Some("the browser rejected a chain the public roots accept".into()),
        ),
        (Err(why), Accepted::Yes) => (Verdict::Inspected, Some(why)),
        (Err(why), Accepted::No) => (Verdict::Untrusted, Some(why)),
    };
    Ok(presented.verdict(verdict, reason, profile))
}

/// A presented chain read once for both judges: the leaf, the rest, the name it must
/// match, each certificate described, whether the leaf carries SCTs.
struct Presented<'c, 'd> {
    leaf: &'c CertificateDer<'d>,
    intermediates: &'c [CertificateDer<'d>],
    name: ServerName<'static>,
    infos: Vec<CertInfo>,
    scts: bool,
}

impl<'c, 'd> Presented<'c, 'd> {
    fn read(chain: &'c [CertificateDer<'d>], server_name: &str) -> Result<Self, String> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or("the server presented no certificate")?;
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| format!("{server_name:?} is not a server name"))?;
        let infos: Vec<CertInfo> = chain
            .iter()
            .map(|c| describe(c))
            .collect::<Result<_, _>>()?;
        Ok(Presented {
            leaf,
            intermediates,
            name,
            infos,
            scts: has_scts(leaf),
        })
    }

    fn verify(&self, roots: &Arc<RootCertStore>, now: UnixTime) -> Result<(), String> {
        verify(roots, self.leaf, self.intermediates, &self.name, now)
    }

    /// The verdict with its issuer, root and vendor filled in from the chain.
    fn verdict(self, verdict: Verdict, reason: Option<String>, profile: &Profile) -> TlsVerdict {
        verdict_of(self.infos, verdict, reason, self.scts, profile)
    }
}

fn verdict_of(
    infos: Vec<CertInfo>,
    verdict: Verdict,
    reason: Option<String>,
    scts: bool,
    profile: &Profile,
) -> TlsVerdict {
    let issuer = infos.first().map_or_else(String::new, |c| c.issuer.clone());
    let root = infos.last().map_or_else(String::new, |c| c.issuer.clone());
    let vendor = match verdict {
        Verdict::Public => None,
        _ => profile.vendor_for(&issuer, &root).map(|v| v.name.clone()),
    };
    TlsVerdict {
        verdict,
        reason,
        issuer,
        root,
        vendor,
        chain: infos,
        scts,
    }
}

fn verify(
    roots: &Arc<RootCertStore>,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), String> {
    if roots.is_empty() {
        return Err("NoRootsToCheck".into());
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), super::provider())
        .build()
        .map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(leaf, intermediates, name, &[], now)
        .map(|_| ())
        .map_err(|e| reason(&e))
}

/// `UnknownIssuer`, `Expired`, `NotValidForName`, … from a rustls error.
fn reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let text = format!("{c:?}");
            let head = text
                .split(|ch: char| !ch.is_alphanumeric())
                .next()
                .unwrap_or(&text);
            head.trim_end_matches("Context").to_string()
        }
        other => other.to_string(),
    }
}

/// Subject, issuer, validity and SPKI hash of one certificate.
pub fn describe(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let validity = cert.validity();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: timestamp(validity.not_before.timestamp()),
        not_after: timestamp(validity.not_after.timestamp()),
        spki_sha256: crate::text::sha256_hex(cert.public_key().raw),
        fingerprint_sha256: crate::text::sha256_hex(der),
        not_after_unix: validity.not_after.timestamp(),
    })
}

fn has_scts(der: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| {
            cert.extensions()
                .iter()
                .any(|e| e.oid.to_id_string() == SCT_LIST_OID)
        })
        .unwrap_or(false)
}

fn timestamp(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    clock::rfc3339(t)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    /// A CA (root or intermediate) made at test time.
    pub struct Ca {
        pub cert: rcgen::Certificate,
        pub key: KeyPair,
    }

    pub fn root(cn: &str, org: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn intermediate(cn: &str, org: &str, parent: &Ca) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &parent.cert, &parent.key).unwrap();
        Ca { cert, key }
    }

    pub fn leaf(name: &str, parent: &Ca) -> (rcgen::Certificate, KeyPair) {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &parent.cert, &parent.key).unwrap();
        (cert, key)
    }

    fn store(cas: &[&Ca]) -> Arc<RootCertStore> {
        let mut s = RootCertStore::empty();
        for ca in cas {
            s.add(ca.cert.der().clone()).unwrap();
        }
        Arc::new(s)
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn a_public_chain_names_no_vendor_its_scts_and_dates_are_read() {
        // A public CA whose name a vendor signature would match is still just public.
        let public = root("Zscaler Root CA", "Zscaler Inc.");
        let roots = TrustRoots {
            public: store(&[&public]),
            system: store(&[&public]),
        };
        let mut params = CertificateParams::new(vec!["chatgpt.com".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2099, 1, 2);
        // The SCT list extension (RFC 6962 §3.3), with an empty list: only its presence counts.
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2],
                vec![0x04, 0x02, 0x00, 0x00],
            ));
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &public.cert, &public.key).unwrap();
        let v = judge(
            &[leaf.der().clone()],
            "chatgpt.com",
            &roots,
            &Profile::builtin(),
            now(),
        )
        .unwrap();
        assert_eq!((v.verdict, v.vendor.as_deref()), (Verdict::Public, None));
        assert!(v.scts, "the leaf carries embedded SCTs");
        assert_eq!(v.chain[0].not_after, "2099-01-02T00:00:00.000Z");
        let info = describe(leaf.der()).unwrap();
        assert_eq!(info.not_after, "2099-01-02T00:00:00.000Z");
    }

    #[test]
    fn public_inspected_and_untrusted() {
        let public = root("Test Public Root", "Public CA Inc.");
        let corp_root = root("Zscaler Root CA", "Zscaler Inc.");
        let corp_int = intermediate(
            "Zscaler Intermediate Root CA (zscalerthree.net) (t) ",
            "Zscaler Inc.",
            &corp_root,
        );
        let roots = TrustRoots {
            public: store(&[&public]),
            system: store(&[&public, &corp_root]),
        };
        let profile = Profile::builtin();

        let (good, _) = leaf("chatgpt.com", &public);
        let v = judge(
            &[good.der().clone()],
            "chatgpt.com",
            &roots,
            &profile,
            now(),
        )
        .unwrap();
        assert_eq!(
            (v.verdict, v.reason.as_deref(), v.vendor.as_deref()),
            (Verdict::Public, None, None)
        );
        assert!(v.issuer.contains("Test Public Root"));

        let (resigned, _) = leaf("chatgpt.com", &corp_int);
        let chain = [resigned.der().clone(), corp_int.cert.der().clone()];
        let v = judge(&chain, "chatgpt.com", &roots, &profile, now()).unwrap();
        assert_eq!(v.verdict, Verdict::Inspected);
        assert_eq!(v.reason.as_deref(), Some("UnknownIssuer"));
        assert_eq!(v.vendor.as_deref(), Some("Zscaler"));
        assert!(v.root.contains("CN=Zscaler Root CA"), "{}", v.root);
        assert_eq!(v.chain.len(), 2);
        assert_eq!(v.chain[0].spki_sha256.len(), 64);
        assert!(!v.scts);

        let stranger = root("Some Box", "Unknown Org");
        let (selfish, _) = leaf("chatgpt.com", &stranger);
        let v = judge(
            &[selfish.der().clone()],
            "chatgpt.com",
            &roots,
            &profile,
            now(),
        )
        .unwrap();
        assert_eq!(
            (v.verdict, v.reason.as_deref(), v.vendor.as_deref()),
            (Verdict::Untrusted, Some("UnknownIssuer"), None)
        );
    }

    #[test]
    fn wrong_name_and_expired_are_untrusted_with_reason() {
        let public = root("Test Public Root", "Public CA Inc.");
        let roots = TrustRoots {
            public: store(&[&public]),
            system: store(&[&public]),
        };
        let profile = Profile::builtin();
        let (other, _) = leaf("example.org", &public);
        let v = judge(
            &[other.der().clone()],
            "chatgpt.com",
            &roots,
            &profile,
            now(),
        )
        .unwrap();
        assert_eq!(
            (v.verdict, v.reason.as_deref()),
            (Verdict::Untrusted, Some("NotValidForName"))
        );

        let mut params = CertificateParams::new(vec!["chatgpt.com".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let expired = params
            .signed_by(&KeyPair::generate().unwrap(), &public.cert, &public.key)
            .unwrap();
        let v = judge(
            &[expired.der().clone()],
            "chatgpt.com",
            &roots,
            &profile,
            now(),
        )
        .unwrap();
        assert_eq!(
            (v.verdict, v.reason.as_deref()),
            (Verdict::Untrusted, Some("Expired"))
        );
    }

    #[test]
    fn an_empty_chain_is_an_error_not_a_verdict() {
        let public = root("R", "O");
        let roots = TrustRoots {
            public: store(&[&public]),
            system: store(&[&public]),
        };
        assert!(judge(&[], "chatgpt.com", &roots, &Profile::builtin(), now()).is_err());
    }
}
