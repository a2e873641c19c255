//! `environment.json`: the machine a bundle comes from, as far as a diagnosis needs it — the
//! OS and its version, diagproxy's version and build, the profile, which proxy-related
//! environment variables are set (names only: values hold proxies' passwords), and the trust
//! store (its size and the subjects of the roots that are not public: the ones an
//! inspecting product installs).

use serde::Serialize;

use crate::tls::roots::TrustRoots;

/// The variables that change where traffic goes or what TLS trusts. Only whether each is set
/// is recorded.
pub const VARIABLES: [&str; 14] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "SSLKEYLOGFILE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "DIAGPROXY_UPSTREAM_PROXY",
    "DIAGPROXY_UPSTREAM_AUTH",
    "DIAGPROXY_UPSTREAM_USER",
];

#[derive(Debug, Serialize)]
pub struct Environment {
    pub os: Os,
    pub diagproxy: Build,
    pub profile: ProfileId,
    /// Each variable of [`VARIABLES`]: set or not (never its value).
    pub variables: Vec<Variable>,
    pub trust_store: TrustStore,
}

#[derive(Debug, Serialize)]
pub struct Os {
    /// `linux`, `macos`, `windows`.
    pub family: &'static str,
    pub arch: &'static str,
    /// `/etc/os-release`'s `PRETTY_NAME` (Linux).
    pub name: Option<String>,
    /// The kernel's release (`uname -r`).
    pub kernel: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Build {
    pub version: &'static str,
    /// `release` or `debug`.
    pub profile: &'static str,
    pub features: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct ProfileId {
    pub name: String,
    /// Of the profile's JSON as loaded.
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct Variable {
    pub name: &'static str,
    pub set: bool,
}

#[derive(Debug, Serialize)]
pub struct TrustStore {
    /// Roots this machine trusts (`--system-roots` or the system's store).
    pub roots: usize,
    /// Subjects of the machine's roots that are not among the public ones.
    pub not_public: Vec<String>,
}

/// Collects the facts. `profile` is the name and the JSON text of the profile in use.
pub fn collect(profile: (&str, &str), roots: &TrustRoots) -> Environment {
    Environment {
        os: Os {
            family: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            name: os_release(),
            kernel: kernel(),
        },
        diagproxy: Build {
            version: env!("CARGO_PKG_VERSION"),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            features: if cfg!(feature = "negotiate") {
                vec!["negotiate"]
            } else {
                vec![]
            },
        },
        profile: ProfileId {
            name: profile.0.to_string(),
            sha256: crate::text::sha256_hex(profile.1.as_bytes()),
        },
        variables: VARIABLES
            .iter()
            .map(|&name| Variable {
                name,
                set: std::env::var_os(name).is_some_and(|v| !v.is_empty()),
            })
            .collect(),
        trust_store: trust_store(roots),
    }
}

/// `environment.json` as a file of the bundle: its name, contents and what it holds.
pub fn file(profile: (&str, &str), roots: &TrustRoots) -> (String, String, String) {
    let json = serde_json::to_string_pretty(&collect(profile, roots)).unwrap_or_default();
    (
        "environment.json".into(),
        json,
        "this machine: OS, diagproxy's build, the profile, which proxy variables are set \
         (names only), the trust store's non-public roots"
            .into(),
    )
}

/// The JSON of the profile a session names (`built-in:…` or a file's path), for its SHA-256;
/// empty when the file is gone.
pub fn profile_text(name: &str) -> String {
    if name.starts_with("built-in:") {
        return crate::profile::BUILTIN.to_string();
    }
    std::fs::read_to_string(name).unwrap_or_default()
}

fn trust_store(roots: &TrustRoots) -> TrustStore {
    let not_public = roots
        .system
        .roots
        .iter()
        .filter(|root| {
            !roots.public.roots.iter().any(|p| {
                p.subject.as_ref() == root.subject.as_ref()
                    && p.subject_public_key_info.as_ref() == root.subject_public_key_info.as_ref()
            })
        })
        .map(|root| subject_text(root.subject.as_ref()))
        .collect();
    TrustStore {
        roots: roots.system.roots.len(),
        not_public,
    }
}

/// A trust anchor's subject (the Name's contents, without its SEQUENCE header) as text.
fn subject_text(contents: &[u8]) -> String {
    let mut der = vec![0x30];
    let len = contents.len();
    if len < 0x80 {
        der.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        der.push(0x80 | bytes.len() as u8);
        der.extend(bytes);
    }
    der.extend_from_slice(contents);
    use x509_parser::prelude::FromDer;
    match x509_parser::x509::X509Name::from_der(&der) {
        Ok((_, name)) => crate::text::bounded(name.to_string()),
        Err(_) => format!("(unreadable subject, {len} bytes)"),
    }
}

fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

fn kernel() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_root_is_named_and_a_public_one_is_not() {
        let public = self_signed("Public Root");
        let local = self_signed("Zscaler Root CA");
        let store = |certs: &[&rcgen::Certificate]| {
            let mut store = rustls::RootCertStore::empty();
            for c in certs {
                store.add(c.der().clone()).unwrap();
            }
            std::sync::Arc::new(store)
        };
        let roots = TrustRoots {
            public: store(&[&public]),
            system: store(&[&public, &local]),
        };
        let found = trust_store(&roots);
        assert_eq!(found.roots, 2);
        assert_eq!(found.not_public.len(), 1);
        assert!(found.not_public[0].contains("Zscaler Root CA"), "{found:?}");
    }

    fn self_signed(cn: &str) -> rcgen::Certificate {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap()
    }

    #[test]
    fn variables_are_names_and_flags_only() {
        let env = collect(
            ("chatgpt", "{}"),
            &TrustRoots {
                public: std::sync::Arc::new(rustls::RootCertStore::empty()),
                system: std::sync::Arc::new(rustls::RootCertStore::empty()),
            },
        );
        let json = serde_json::to_value(&env).unwrap();
        for v in json["variables"].as_array().unwrap() {
            assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
            assert!(v["set"].is_boolean());
        }
        assert_eq!(json["profile"]["sha256"], crate::text::sha256_hex(b"{}"));
    }
}
