//! A real squid as a filtering corporate proxy on a loopback port, its `http_access` rules
//! given by the test (a CONNECT refused with squid's own error page, a `deny_info` redirect
//! to a block host), made fresh in a temporary folder. Nothing here leaves loopback: squid
//! is told `dns_nameservers 127.0.0.1` and only refuses.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's certificate generator for `ssl_bump` (package `squid-openssl`).
pub const CERTGEN: &str = "/usr/lib/squid/security_file_certgen";

pub struct FilterSquid {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl FilterSquid {
    /// squid with `rules` (squid.conf lines: acls, `deny_info`, `http_access`) after its
    /// basic set-up; tried on three ports before giving up.
    pub fn start(rules: &str) -> FilterSquid {
        FilterSquid::start_with("http_port", "", |_| String::new(), rules)
    }

    /// squid as an HTTPS proxy (`https_port`: TLS to the proxy, then CONNECT inside) with
    /// `cert_pem` (its certificate and key, PEM).
    pub fn https(cert_pem: &str, rules: &str) -> FilterSquid {
        let cert_pem = cert_pem.to_string();
        let set_up = move |dir: &Path| {
            std::fs::write(dir.join("squid-ca.pem"), &cert_pem).expect("squid's certificate");
            set_mode(&dir.join("squid-ca.pem"), 0o644);
            String::new()
        };
        FilterSquid::start_with("https_port", "tls-cert=SQUID_CA", set_up, rules)
    }

    /// squid with `ssl_bump` (Debian's `squid-openssl`): CONNECTs are decrypted and re-signed
    /// with `ca_pem` (certificate and key, PEM), names resolve through `hosts` (a hosts
    /// file's lines), and the origin's certificate is not verified.
    pub fn bumping(ca_pem: &str, hosts: &str, rules: &str) -> FilterSquid {
        let (ca_pem, hosts) = (ca_pem.to_string(), hosts.to_string());
        let set_up = move |dir: &Path| {
            std::fs::write(dir.join("squid-ca.pem"), &ca_pem).expect("squid's CA");
            std::fs::write(dir.join("hosts"), &hosts).expect("hosts");
            let db = dir.join("ssl_db");
            let made = Command::new(CERTGEN)
                .args(["-c", "-s"])
                .arg(&db)
                .args(["-M", "4MB"])
                .output()
                .expect("security_file_certgen");
            assert!(made.status.success(), "{made:?}");
            // squid's helpers run as squid's user when started as root.
            let _ = Command::new("chmod")
                .args(["-R", "a+rwX"])
                .arg(&db)
                .status();
            let d = dir.display();
            format!(
                "sslcrtd_program {CERTGEN} -s {d}/ssl_db -M 4MB
sslcrtd_children 2
hosts_file {d}/hosts
tls_outgoing_options flags=DONT_VERIFY_PEER
sslproxy_cert_error allow all
ssl_bump bump all
"
            )
        };
        FilterSquid::start_with(
            "http_port",
            "ssl-bump tls-cert=SQUID_CA generate-host-certificates=on dynamic_cert_mem_cache_size=4MB",
            set_up,
            rules,
        )
    }

    fn start_with(
        directive: &str,
        port_options: &str,
        set_up: impl Fn(&Path) -> String,
        rules: &str,
    ) -> FilterSquid {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match FilterSquid::try_start((directive, port_options), &set_up, rules) {
                Ok(squid) => return squid,
                Err(why) => failures.push(why),
            }
        }
        panic!("squid did not start: {failures:#?}");
    }

    fn try_start(
        (directive, port_options): (&str, &str),
        set_up: &impl Fn(&Path) -> String,
        rules: &str,
    ) -> Result<FilterSquid, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // squid runs as its own user when started as root: it must write its logs here.
        set_mode(dir.path(), 0o755);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let d = dir.path().display();
        let extra = set_up(dir.path());
        let options = port_options.replace("SQUID_CA", &format!("{d}/squid-ca.pem"));
        let conf = format!(
            "{directive} 127.0.0.1:{port} {options}
{extra}pid_filename {d}/squid.pid
cache_log {d}/squid-cache.log
access_log stdio:{d}/squid-access.log
cache deny all
cache_mem 8 MB
coredump_dir {d}
pinger_enable off
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
{rules}
"
        );
        std::fs::write(dir.path().join("squid.conf"), conf).map_err(|e| e.to_string())?;
        for log in ["squid-cache.log", "squid-access.log"] {
            let path = dir.path().join(log);
            std::fs::write(&path, "").map_err(|e| e.to_string())?;
            set_mode(&path, 0o666);
        }
        let child = Command::new("squid")
            .args(["-N", "-n", &format!("diagproxyfilter{port}"), "-f"])
            .arg(dir.path().join("squid.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut squid = FilterSquid { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = squid.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(squid.dir.path().join("squid-cache.log"));
                return Err(format!(
                    "port {port}, exit {exited:?}: {}",
                    log.unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(squid)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// squid's own log (`cache_log`) and access log, for a failing test's message.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        read("squid-cache.log") + &read("squid-access.log")
    }

    /// squid's process (run with `-N`: the one that serves).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FilterSquid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let prefix = format!("diagproxyfilter{}-", self.port);
        for entry in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}
