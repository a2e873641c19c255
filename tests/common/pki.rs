//! Certificates made at test time: a [`TestCa`] whose key never leaves memory, diagproxy's
//! own CA in a temporary folder, and files written for a test.

#![allow(dead_code)]

pub(super) fn rustls_pemfile_certs(
    reader: &mut dyn std::io::BufRead,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let mut text = String::new();
    let _ = reader.read_to_string(&mut text);
    rustls::pki_types::CertificateDer::pem_slice_iter(text.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// A CA made at test time (its key never leaves memory).
pub struct TestCa {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

impl TestCa {
    pub fn root(cn: &str, org: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        TestCa { cert, key }
    }

    pub fn intermediate(&self, cn: &str, org: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("cert");
        TestCa { cert, key }
    }

    /// A leaf for `names` (and 127.0.0.1) signed by this CA.
    pub fn leaf(
        &self,
        names: &[&str],
    ) -> (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let mut sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        sans.push("127.0.0.1".into());
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(sans)
            .expect("params")
            .signed_by(&key, &self.cert, &self.key)
            .expect("cert");
        let der_key =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        (cert.der().clone(), der_key)
    }

    /// A leaf for `names` as PEM: (certificate, private key), for servers that read files.
    pub fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &self.cert, &self.key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A root with a full distinguished name as products write theirs: `(type, value)` pairs.
    pub fn root_named(dn: &[(rcgen::DnType, &str)]) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        for (kind, value) in dn {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        TestCa { cert, key }
    }

    /// A leaf for `names` shaped by `shape` (validity, extensions) before it is signed.
    pub fn leaf_shaped(
        &self,
        names: &[&str],
        shape: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        shape(&mut params);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("cert");
        let der_key =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        (cert.der().clone(), der_key)
    }
}

pub fn write_file(dir: &std::path::Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path.to_str().expect("utf-8").to_string()
}

/// A local CA made by `ca init` (name-constrained, as users get it) in `dir/ca`: its folder
/// and its certificate in PEM.
pub fn local_ca(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let ca_dir = dir.join("ca");
    let options = diagproxy::tls::ca::InitOptions {
        dir: ca_dir.clone(),
        days: 30,
        unconstrained: false,
        force: false,
    };
    diagproxy::tls::ca::init(&options, &diagproxy::profile::Profile::builtin()).expect("ca init");
    let pem = std::fs::read_to_string(ca_dir.join(diagproxy::tls::ca::CERT_FILE)).expect("ca pem");
    (ca_dir, pem)
}
