//! The local CA (`diagproxy ca init|show|export`): an ECDSA P-256 root that names diagproxy
//! and the machine, name-constrained by default to the profile's domains so a leaked key
//! cannot impersonate anyone else. The key file is written with mode 0600.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, GeneralSubtree, IsCa, KeyPair,
    KeyUsagePurpose, NameConstraints,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::profile::Profile;

pub const CERT_FILE: &str = "diagproxy-ca.pem";
pub const KEY_FILE: &str = "diagproxy-ca-key.pem";

/// What `ca init` was asked to do.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub days: u32,
    pub unconstrained: bool,
    pub force: bool,
}

/// A loaded CA, ready to sign leaves.
pub struct LocalCa {
    /// The CA certificate as users install it.
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    /// The issuer rcgen signs with (same name and key as the file).
    pub issuer: rcgen::Certificate,
    pub key: KeyPair,
    /// The DNS names its name constraints permit (a leaf for one of them or a subdomain is
    /// accepted by clients); `None` for an unconstrained CA.
    pub permitted: Option<Vec<String>>,
}

impl LocalCa {
    /// Whether a client would accept a leaf this CA signs for `host`: any name for an
    /// unconstrained CA, else a permitted name or one of its subdomains (RFC 5280 §4.2.1.10;
    /// IP addresses are excluded by `ca init`'s constraints).
    pub fn can_sign(&self, host: &str) -> bool {
        let Some(permitted) = &self.permitted else {
            return true;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host.parse::<std::net::IpAddr>().is_err()
            && permitted.iter().any(|name| {
                let name = name.trim_start_matches('.').to_ascii_lowercase();
                host == name || host.ends_with(&format!(".{name}"))
            })
    }
}

/// What a proof of holding the CA signs: this prefix, then the asker's nonce. No
/// certificate or other signed structure starts with it, so a proof signs nothing else.
const PROOF_PREFIX: &[u8] = b"diagproxy-ca-proof\0";

/// A nonce is 32 to 64 hex digits.
pub fn is_nonce(nonce: &str) -> bool {
    (32..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_hexdigit())
}

impl LocalCa {
    /// Signs `nonce` with the CA key (ECDSA P-256, ASN.1): how a running diagproxy proves
    /// to `diagproxy browser` that it holds the CA the browser is about to trust.
    pub fn prove(&self, nonce: &str) -> Result<Vec<u8>, String> {
        if !is_nonce(nonce) {
            return Err("a nonce is 32 to 64 hex digits".into());
        }
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.key.serialize_der(),
            &rng,
        )
        .map_err(|_| "the CA key is not ECDSA P-256".to_string())?;
        let message = [PROOF_PREFIX, nonce.as_bytes()].concat();
        key.sign(&rng, &message)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| "signing failed".to_string())
    }
}

/// Whether `signature` over `nonce` was made with the key of the CA certificate `cert_pem`.
pub fn verify_proof(cert_pem: &str, nonce: &str, signature: &[u8]) -> Result<(), String> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| format!("the CA certificate is not PEM: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("the CA certificate does not parse: {e}"))?;
    let public = &cert.tbs_certificate.subject_pki.subject_public_key.data;
    let message = [PROOF_PREFIX, nonce.as_bytes()].concat();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, public)
        .verify(&message, signature)
        .map_err(|_| "the signature is not the CA's".to_string())
}

/// The certificate's SHA-256 fingerprint, as `AB:CD:…`.
pub fn fingerprint(cert_der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, cert_der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The DNS names a CA certificate's name constraints permit; `None` when it has none.
pub fn permitted_names(cert_der: &[u8]) -> Option<Vec<String>> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let mut names = None;
    for ext in cert.extensions() {
        if let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() {
            let list: &mut Vec<String> = names.get_or_insert_with(Vec::new);
            list.extend(
                nc.permitted_subtrees
                    .iter()
                    .flatten()
                    .filter_map(|s| match &s.base {
                        GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    }),
            );
        }
    }
    names
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalCa")
    }
}

/// The longest validity `ca init --days` takes (ten years).
pub const MAX_DAYS: u32 = 3650;

/// Creates the CA files; refuses to overwrite without `force`.
pub fn init(options: &InitOptions, profile: &Profile) -> Result<PathBuf, String> {
    let cert_path = options.dir.join(CERT_FILE);
    let key_path = options.dir.join(KEY_FILE);
    if !options.force && (cert_path.exists() || key_path.exists()) {
        return Err(format!("{} already exists; pass --force to replace it (clients that trust the old CA will stop trusting diagproxy)", cert_path.display()));
    }
    let (cert_pem, key_pem) = generate(options.days, !options.unconstrained, profile)?;
    fs::create_dir_all(&options.dir)
        .map_err(|e| format!("cannot create {}: {e}", options.dir.display()))?;
    write_private(&key_path, key_pem.as_bytes())?;
    write_atomically(&cert_path, cert_pem.as_bytes(), 0o644)?;
    Ok(cert_path)
}

/// A new CA certificate and key, as PEM.
pub fn generate(
    days: u32,
    constrained: bool,
    profile: &Profile,
) -> Result<(String, String), String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    let machine = machine_name();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("diagproxy local CA ({machine})"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "diagproxy");
    params.distinguished_name.push(
        DnType::OrganizationalUnitName,
        format!("made by diagproxy ca init on {machine}; for diagnosing this machine only"),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(days.clamp(1, MAX_DAYS)));
    if constrained {
        params.name_constraints = Some(constraints(profile));
    }
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Permitted DNS subtrees: the profile's domains (a DNS constraint covers the name and every
/// subdomain). Every IP address is excluded, so no IP certificate can be minted either.
pub fn constraints(profile: &Profile) -> NameConstraints {
    let mut names: Vec<String> = profile
        .entries
        .iter()
        .map(|e| e.pattern.trim_start_matches("*.").to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    // A subtree covers its subdomains: keep only names no other name already covers.
    let covered = |n: &String| names.iter().any(|other| n.ends_with(&format!(".{other}")));
    let names: Vec<String> = names.iter().filter(|n| !covered(n)).cloned().collect();
    NameConstraints {
        permitted_subtrees: names.into_iter().map(GeneralSubtree::DnsName).collect(),
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
    }
}

/// Loads the CA from `dir`.
pub fn load(dir: &Path) -> Result<LocalCa, String> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let cert_pem = fs::read_to_string(&cert_path).map_err(|e| {
        format!(
            "cannot read {}: {e}; create the CA with `diagproxy ca init`",
            cert_path.display()
        )
    })?;
    if let Some(exposed) = key_exposure(&key_path) {
        // Someone else may already have the key: refuse, rather than mint with it.
        return Err(format!("refusing to use the CA: {exposed}"));
    }
    let key_pem = fs::read_to_string(&key_path)
        .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let params = CertificateParams::from_ca_cert_der(&cert_der)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let issuer = params.self_signed(&key).map_err(|e| {
        format!(
            "{}: the key does not fit the certificate: {e}",
            key_path.display()
        )
    })?;
    let permitted = permitted_names(&cert_der);
    Ok(LocalCa {
        cert_pem,
        cert_der,
        issuer,
        key,
        permitted,
    })
}

/// What `ca show` prints about a CA certificate.
pub fn describe(cert_der: &CertificateDer<'_>) -> Result<String, String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| e.to_string())?;
    let fingerprint = fingerprint(cert_der);
    let mut permitted = Vec::new();
    let mut excluded = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() {
            let name = |g: &GeneralName| match g {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) if ip.iter().all(|b| *b == 0) && ip.len() == 8 => {
                    "every IPv4 address".to_string()
                }
                GeneralName::IPAddress(ip) if ip.iter().all(|b| *b == 0) && ip.len() == 32 => {
                    "every IPv6 address".to_string()
                }
                GeneralName::IPAddress(ip) => format!("IP range {ip:02x?}"),
                other => format!("{other:?}"),
            };
            permitted.extend(
                nc.permitted_subtrees
                    .iter()
                    .flatten()
                    .map(|s| name(&s.base)),
            );
            excluded.extend(nc.excluded_subtrees.iter().flatten().map(|s| name(&s.base)));
        }
    }
    let constraints = if permitted.is_empty() && excluded.is_empty() {
        "none (unconstrained: this CA can impersonate any site to a machine that trusts it)"
            .to_string()
    } else {
        format!(
            "permitted DNS {}; excluded {}",
            permitted.join(", "),
            if excluded.is_empty() {
                "-".into()
            } else {
                excluded.join(", ")
            }
        )
    };
    Ok(format!(
        "subject:     {}\nSHA-256:     {}\nvalid:       {} to {}\nconstraints: {}\n",
        cert.subject(),
        fingerprint,
        cert.validity().not_before,
        cert.validity().not_after,
        constraints
    ))
}

/// How to trust the CA on each platform.
pub fn trust_instructions(cert_path: &Path) -> String {
    let shown = cert_path.display().to_string();
    let p = crate::text::shell(&shown);
    format!(
        "To trust it (and to stop trusting it, remove it the same way when done):\n\
         - macOS:   sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {p}\n\
         - Windows: certutil -addstore -f Root {p}   (or double-click it → Install → Local Machine → Trusted Root)\n\
         - Linux:   sudo cp {p} /usr/local/share/ca-certificates/diagproxy-ca.crt && sudo update-ca-certificates\n\
         - Chromium/Firefox on Linux (NSS; certutil is in the libnss3-tools package; the first line makes the database of a fresh profile):\n\
         \x20   mkdir -p \"$HOME/.pki/nssdb\" && [ -f \"$HOME/.pki/nssdb/cert9.db\" ] || certutil -d sql:\"$HOME/.pki/nssdb\" -N --empty-password\n\
         \x20   certutil -d sql:\"$HOME/.pki/nssdb\" -A -t C,, -n diagproxy -i {p}\n\
         - curl:    curl --cacert {p} -x http://127.0.0.1:8080 https://chatgpt.com/\n\
         - iOS:     open http://<laptop>:8080/ca.pem in Safari, install the profile, then Settings → General → About → Certificate Trust Settings → enable it\n\
         - Android: Settings → Security → Encryption & credentials → Install a certificate → CA certificate (apps ignore user CAs unless they opt in)\n"
    )
}

/// Replaces `path` with `contents` (mode `mode`), synced, through `files::replace`; `path`
/// itself may not be a symlink (another user could point it at a file of theirs).
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!(
            "{} is a symbolic link; refusing to write the CA through it",
            path.display()
        ));
    }
    crate::files::replace(path, mode, |file| {
        file.write_all(contents)?;
        file.sync_all()
    })
    .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The CA key: only its owner may read it.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    write_atomically(path, contents, 0o600)
}

/// A warning when the CA key at `path` can be read by others (its group or everyone).
pub fn key_exposure(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Some(format!(
                "{} is readable by others (mode {mode:o}): anyone who reads it can impersonate the hosts it may sign; run chmod 600 on it",
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    None
}

fn machine_name() -> String {
    let name = fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok());
    name.map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    use std::sync::Arc;

    fn verifier_trusting(der: &CertificateDer<'_>) -> Arc<rustls::client::WebPkiServerVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone().into_owned()).unwrap();
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crate::tls::provider(),
        )
        .build()
        .unwrap()
    }

    fn leaf_for(ca: &LocalCa, name: &str) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .signed_by(&key, &ca.issuer, &ca.key)
            .unwrap()
            .der()
            .clone()
    }

    #[test]
    fn a_proof_verifies_with_its_own_ca_only() {
        let dir = tempfile::tempdir().unwrap();
        let options = |d: &Path| InitOptions {
            dir: d.to_path_buf(),
            days: 30,
            unconstrained: false,
            force: false,
        };
        let profile = Profile::builtin();
        init(&options(&dir.path().join("a")), &profile).unwrap();
        init(&options(&dir.path().join("b")), &profile).unwrap();
        let a = load(&dir.path().join("a")).unwrap();
        let b = load(&dir.path().join("b")).unwrap();
        let nonce = "0123456789abcdef0123456789abcdef";
        let proof = a.prove(nonce).unwrap();
        assert_eq!(verify_proof(&a.cert_pem, nonce, &proof), Ok(()));
        assert!(verify_proof(&b.cert_pem, nonce, &proof).is_err());
        let other = "f123456789abcdef0123456789abcdef";
        assert!(verify_proof(&a.cert_pem, other, &proof).is_err());
        assert!(a.prove("short").is_err());
        assert!(a.prove(&"g".repeat(32)).is_err());
    }

    #[test]
    #[cfg(unix)]
    fn the_key_is_never_written_through_a_symlink_and_exposure_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("someone-elses-file");
        fs::write(&elsewhere, "theirs").unwrap();
        let ca_dir = dir.path().join("ca");
        fs::create_dir(&ca_dir).unwrap();
        std::os::unix::fs::symlink(&elsewhere, ca_dir.join(KEY_FILE)).unwrap();
        let options = InitOptions {
            dir: ca_dir.clone(),
            days: 30,
            unconstrained: false,
            force: true,
        };
        let e = init(&options, &Profile::builtin()).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "theirs");
        fs::remove_file(ca_dir.join(KEY_FILE)).unwrap();
        init(&options, &Profile::builtin()).unwrap();
        let leftovers: Vec<_> = fs::read_dir(&ca_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let key = ca_dir.join(KEY_FILE);
        assert_eq!(key_exposure(&key), None);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let warning = key_exposure(&key).unwrap();
        assert!(warning.contains("chmod 600"), "{warning}");
        let refused = load(&ca_dir).err().unwrap_or_default();
        assert!(
            refused.starts_with("refusing to use the CA") && refused.contains("chmod 600"),
            "{refused}"
        );
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&ca_dir).is_ok());
    }

    #[test]
    fn init_writes_a_private_key_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let options = InitOptions {
            dir: dir.path().to_path_buf(),
            days: 30,
            unconstrained: false,
            force: false,
        };
        init(&options, &Profile::builtin()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = init(&options, &Profile::builtin()).unwrap_err();
        assert!(again.contains("--force"), "{again}");
        init(
            &InitOptions {
                force: true,
                ..options
            },
            &Profile::builtin(),
        )
        .unwrap();
        let ca = load(dir.path()).unwrap();
        let text = describe(&ca.cert_der).unwrap();
        assert!(text.contains("diagproxy local CA"), "{text}");
        assert!(
            text.contains("permitted DNS") && text.contains("chatgpt.com"),
            "{text}"
        );
    }

    #[test]
    fn name_constraints_are_enforced_by_a_verifying_client() {
        let dir = tempfile::tempdir().unwrap();
        let options = InitOptions {
            dir: dir.path().to_path_buf(),
            days: 30,
            unconstrained: false,
            force: false,
        };
        init(&options, &Profile::builtin()).unwrap();
        let ca = load(dir.path()).unwrap();
        let verifier = verifier_trusting(&ca.cert_der);
        let inside = leaf_for(&ca, "files.oaiusercontent.com");
        let name = ServerName::try_from("files.oaiusercontent.com").unwrap();
        verifier
            .verify_server_cert(&inside, &[], &name, &[], UnixTime::now())
            .expect("a profile host verifies");
        let outside = leaf_for(&ca, "bank.example.com");
        let name = ServerName::try_from("bank.example.com").unwrap();
        let err = verifier
            .verify_server_cert(&outside, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        assert!(format!("{err:?}").contains("NameConstraint"), "{err:?}");
    }

    #[test]
    fn unconstrained_is_an_explicit_choice() {
        let dir = tempfile::tempdir().unwrap();
        let options = InitOptions {
            dir: dir.path().to_path_buf(),
            days: 30,
            unconstrained: true,
            force: false,
        };
        init(&options, &Profile::builtin()).unwrap();
        let ca = load(dir.path()).unwrap();
        assert!(describe(&ca.cert_der).unwrap().contains("unconstrained"));
        let verifier = verifier_trusting(&ca.cert_der);
        let outside = leaf_for(&ca, "bank.example.com");
        let name = ServerName::try_from("bank.example.com").unwrap();
        verifier
            .verify_server_cert(&outside, &[], &name, &[], UnixTime::now())
            .unwrap();
    }
}
