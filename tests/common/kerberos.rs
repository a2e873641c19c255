//! A real MIT Kerberos KDC and a real squid that signs users in with Negotiate (its
//! `negotiate_kerberos_auth` helper) and NTLM (`ntlm_fake_auth`), both on loopback ports,
//! made fresh for each test in a temporary folder: realm `DIAGPROXY.TEST`, the proxy's
//! principal `HTTP/proxy.diagproxy.test` in a keytab, the user `alice` with a password and
//! a ticket in the folder's own cache. Nothing here reads or changes the machine's Kerberos
//! set-up: every program gets `KRB5_CONFIG`, `KRB5_KDC_PROFILE` and `KRB5CCNAME`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REALM: &str = "DIAGPROXY.TEST";
pub const PROXY_NAME: &str = "proxy.diagproxy.test";
pub const USER: &str = "alice";
const PASSWORD: &str = "alice-password-9";

/// Debian's squid helpers (package squid).
pub const NEGOTIATE_HELPER: &str = "/usr/lib/squid/negotiate_kerberos_auth";
pub const NTLM_HELPER: &str = "/usr/lib/squid/ntlm_fake_auth";
/// Debian's libfaketime (package faketime).
pub const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Whether everything the Kerberos tests start is installed (CI: krb5-kdc,
/// krb5-admin-server, krb5-user, squid); a skip is a failure under
/// `DIAGPROXY_REQUIRE_TOOLS=1`.
pub fn tools_present() -> bool {
    let programs = ["krb5kdc", "kdb5_util", "kadmin.local", "kinit", "squid"];
    programs.iter().all(|p| super::require_tool(p))
        && [NEGOTIATE_HELPER, NTLM_HELPER]
            .iter()
            .all(|f| require_file(f))
}

/// Like `require_tool`, for a file that is not a command on PATH.
pub fn require_file(path: &str) -> bool {
    let found = Path::new(path).exists();
    if !found {
        if std::env::var("DIAGPROXY_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("{path} is required (DIAGPROXY_REQUIRE_TOOLS=1) but was not found");
        }
        eprintln!("SKIPPED: {path} is not installed");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A KDC for `DIAGPROXY.TEST` on a loopback port, and `alice`'s ticket cache.
pub struct Kdc {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Kdc {
    pub fn start() -> Kdc {
        let dir = tempfile::tempdir().expect("temp dir");
        // squid's helper runs as squid's user (`proxy` when started as root): it must read
        // the keytab and krb5.conf in here. Test secrets only.
        set_mode(dir.path(), 0o755);
        let port = free_port();
        let d = dir.path().display().to_string();
        write(dir.path(), "krb5.conf", &krb5_conf(&d, port));
        write(dir.path(), "kdc.conf", &kdc_conf(&d, port));
        let kdc = Kdc {
            child: Command::new("true").spawn().expect("true"),
            dir,
            port,
        };
        kdc.admin(&["kdb5_util", "create", "-s", "-r", REALM, "-P", "master-9"]);
        let keytab = kdc.path("http.keytab");
        for query in [
            format!("addprinc -pw {PASSWORD} {USER}"),
            format!("addprinc -randkey HTTP/{PROXY_NAME}"),
            format!("ktadd -k {} HTTP/{PROXY_NAME}", keytab.display()),
        ] {
            kdc.admin(&["kadmin.local", "-q", &query]);
        }
        set_mode(&keytab, 0o644);
        let child = kdc
            .command("krb5kdc")
            .args(["-n", "-P"])
            .arg(kdc.path("kdc.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start krb5kdc");
        let mut kdc = kdc;
        kdc.child = child;
        wait_for_port(port);
        kdc
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command with this realm's configuration and `alice`'s cache.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        for (name, value) in self.env() {
            command.env(name, value);
        }
        command
    }

    /// `KRB5_CONFIG`, `KRB5_KDC_PROFILE`, `KRB5CCNAME` for a process of this realm.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KRB5_CONFIG", self.path("krb5.conf").display().to_string()),
            (
                "KRB5_KDC_PROFILE",
                self.path("kdc.conf").display().to_string(),
            ),
            (
                "KRB5CCNAME",
                format!("FILE:{}", self.path("alice.cc").display()),
            ),
        ]
    }

    fn admin(&self, argv: &[&str]) {
        let out = self
            .command(argv[0])
            .args(&argv[1..])
            .output()
            .expect("run a Kerberos admin command");
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kinit alice` into the test's cache.
    pub fn kinit(&self) {
        use std::io::Write;
        let mut child = self
            .command("kinit")
            .arg(USER)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kinit");
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{PASSWORD}").expect("password to kinit");
        drop(stdin);
        let out = child.wait_with_output().expect("kinit ends");
        assert!(
            out.status.success(),
            "kinit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn krb5_conf(dir: &str, port: u16) -> String {
    format!(
        "[libdefaults]
  default_realm = {REALM}
  dns_lookup_kdc = false
  dns_lookup_realm = false
  dns_canonicalize_hostname = false
  rdns = false
  udp_preference_limit = 1
  kdc_timesync = false
[realms]
  {REALM} = {{
    kdc = 127.0.0.1:{port}
  }}
[domain_realm]
  .diagproxy.test = {REALM}
[logging]
  kdc = FILE:{dir}/kdc.log
"
    )
}

fn kdc_conf(dir: &str, port: u16) -> String {
    format!(
        "[kdcdefaults]
  kdc_listen = 127.0.0.1:{port}
  kdc_tcp_listen = 127.0.0.1:{port}
[realms]
  {REALM} = {{
    database_name = {dir}/principal
    key_stash_file = {dir}/stash
    acl_file = {dir}/kadm5.acl
  }}
"
    )
}

/// squid on a loopback port that lets through only users signed in with Negotiate or NTLM.
pub struct Squid {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl Squid {
    /// Started on a fresh port; a start that does not listen within 10 s (the port taken
    /// meanwhile, say) is tried again on another, three times in all.
    pub fn start(kdc: &Kdc) -> Squid {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Squid::try_start(kdc) {
                Ok(squid) => return squid,
                Err(why) => failures.push(why),
            }
        }
        panic!("squid did not start: {failures:#?}");
    }

    fn try_start(kdc: &Kdc) -> Result<Squid, String> {
        let port = free_port();
        let dir = kdc.dir.path().to_path_buf();
        write(&dir, "squid.conf", &squid_conf(&dir, port));
        for log in ["squid-cache.log", "squid-access.log"] {
            write(&dir, log, "");
            set_mode(&dir.join(log), 0o666);
        }
        // Each squid its own service name: squids that share one share their shared-memory
        // segment names, and two starting at once collide.
        let child = kdc
            .command("squid")
            .env("KRB5_KTNAME", kdc.path("http.keytab"))
            .args(["-N", "-n", &format!("diagproxytest{port}"), "-f"])
            .arg(dir.join("squid.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start squid");
        let mut squid = Squid { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = squid.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(squid.dir.join("squid-cache.log"));
                return Err(format!(
                    "port {port}, exit {exited:?}: {}",
                    log.unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(squid)
    }

    /// `http://proxy.diagproxy.test:PORT` and the pin that makes the name loopback.
    pub fn url(&self) -> String {
        format!("http://{PROXY_NAME}:{}", self.port)
    }

    pub fn pin(&self) -> String {
        format!("{PROXY_NAME}:{}:127.0.0.1", self.port)
    }

    /// squid's access log so far (one line per request, with the user it signed in).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("squid-access.log")).unwrap_or_default()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its helpers end when their pipes close; its shared-memory segments, named after
        // its service name, are left by a kill and removed here.
        let prefix = format!("diagproxytest{}-", self.port);
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

fn squid_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
cache_log {d}/squid-cache.log
access_log stdio:{d}/squid-access.log
cache deny all
cache_mem 8 MB
coredump_dir {d}
pinger_enable off
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
auth_param negotiate program {NEGOTIATE_HELPER} -s HTTP/{PROXY_NAME}@{REALM}
auth_param negotiate children 2
auth_param negotiate keep_alive on
auth_param ntlm program {NTLM_HELPER}
auth_param ntlm children 2
acl signed_in proxy_auth REQUIRED
http_access allow signed_in
http_access deny all
"
    )
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} after 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write a test file");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
