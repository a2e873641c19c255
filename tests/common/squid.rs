//! A real squid as a filtering corporate proxy on a loopback port, its `http_access` rules
//! given by the test (a CONNECT refused with squid's own error page, a `deny_info` redirect
//! to a block host), made fresh in a temporary folder. Nothing here leaves loopback: squid
//! is told `dns_nameservers 127.0.0.1` and only refuses.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct FilterSquid {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl FilterSquid {
    /// squid with `rules` (squid.conf lines: acls, `deny_info`, `http_access`) after its
    /// basic set-up; tried on three ports before giving up.
    pub fn start(rules: &str) -> FilterSquid {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match FilterSquid::try_start(rules) {
                Ok(squid) => return squid,
                Err(why) => failures.push(why),
            }
        }
        panic!("squid did not start: {failures:#?}");
    }

    fn try_start(rules: &str) -> Result<FilterSquid, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // squid runs as its own user when started as root: it must write its logs here.
        set_mode(dir.path(), 0o755);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let d = dir.path().display();
        let conf = format!(
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
