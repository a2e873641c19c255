//! A real dante SOCKS server (Debian's `dante-server`, `danted` in the foreground) on a
//! loopback port, made fresh in a temporary folder: no authentication, SOCKS4 and SOCKS5,
//! and a `socks block` rule for 127.0.0.3 (dante matches `to:` rules by address, so the
//! blocked host has a loopback address of its own).

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The account dante's username method checks (a system account it makes, without a home
/// or a shell).
pub const SOCKS_USER: &str = "diagsocks";
pub const SOCKS_PASSWORD: &str = "socks-Pass-7";

/// The address dante refuses (reply 0x02, "connection not allowed by ruleset").
pub const BLOCKED: &str = "127.0.0.3";

pub struct Dante {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Dante {
    pub fn start() -> Dante {
        Dante::start_with("none")
    }

    /// dante asking for a username and password (RFC 1929), checked against this machine's
    /// accounts: [`SOCKS_USER`] is created with [`SOCKS_PASSWORD`] (root only; CI is root).
    pub fn with_password() -> Dante {
        let exists = Command::new("id")
            .arg(SOCKS_USER)
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            let made = Command::new("useradd")
                .args(["-M", "-s", "/usr/sbin/nologin", SOCKS_USER])
                .status()
                .expect("useradd");
            assert!(made.success(), "useradd {SOCKS_USER}");
        }
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        use std::io::Write;
        let set = format!("{SOCKS_USER}:{SOCKS_PASSWORD}\n");
        chpasswd
            .stdin
            .take()
            .expect("stdin")
            .write_all(set.as_bytes())
            .expect("password");
        assert!(chpasswd.wait().expect("chpasswd").success());
        Dante::start_with("username")
    }

    fn start_with(method: &str) -> Dante {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Dante::try_start(method) {
                Ok(d) => return d,
                Err(why) => failures.push(why),
            }
        }
        panic!("danted did not start: {failures:#?}");
    }

    fn try_start(method: &str) -> Result<Dante, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let d = dir.path().display();
        let conf = format!(
            "logoutput: {d}/danted.log
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: {method}
user.privileged: root
user.unprivileged: nobody
client pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
}}
socks block {{
  from: 0.0.0.0/0 to: {BLOCKED}/32
  log: connect error
}}
socks pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
}}
"
        );
        std::fs::write(dir.path().join("danted.conf"), conf).map_err(|e| e.to_string())?;
        let child = Command::new("danted")
            .arg("-f")
            .arg(dir.path().join("danted.conf"))
            .arg("-p")
            .arg(dir.path().join("danted.pid"))
            .args(["-N", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut dante = Dante { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = dante.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(dante.dir.path().join("danted.log"));
                return Err(format!(
                    "port {port}, exit {exited:?}: {}",
                    log.unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(dante)
    }

    /// dante's log so far (one line per blocked or passed connection).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("danted.log")).unwrap_or_default()
    }
}

impl Drop for Dante {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
