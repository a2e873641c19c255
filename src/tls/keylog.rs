//! The TLS key log (`--keylog FILE`): every TLS session diagproxy takes part in — both legs of
//! interception (browser ↔ diagproxy, diagproxy ↔ origin), the side handshake, the TLS to an
//! HTTPS proxy and `check`'s TLS stages — writes its secrets in the NSS key log format
//! (`CLIENT_RANDOM` for TLS 1.2, `CLIENT_HANDSHAKE_TRAFFIC_SECRET` … for TLS 1.3), which
//! Wireshark and tshark read (`-o tls.keylog_file:FILE`).
//!
//! A key log decrypts everything captured while it was written, so it is never on by
//! accident (RFC 9850): only `--keylog FILE`, or `SSLKEYLOGFILE` when `--keylog-from-env`
//! says so. It is installed once per process, before the first TLS config is built (the
//! configs are built once and shared), and every config built after reads it from here.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The process's key log, once installed.
static SINK: OnceLock<Arc<KeyLogFile>> = OnceLock::new();

/// Opens (or creates, `0600`) the key log and makes every TLS config built from now on write
/// to it. A second call with another file is refused: one process writes one key log.
pub fn install(path: &Path) -> io::Result<()> {
    let log = Arc::new(KeyLogFile::open(path)?);
    let installed = SINK.get_or_init(|| log);
    if installed.path != path {
        return Err(io::Error::other(format!(
            "a key log is already being written to {}",
            installed.path.display()
        )));
    }
    Ok(())
}

/// The key log to put in a TLS config, if one is installed.
pub fn sink() -> Option<Arc<dyn rustls::KeyLog>> {
    SINK.get().map(|log| log.clone() as Arc<dyn rustls::KeyLog>)
}

/// The key log's path, if one is installed (the banner and the session record say where).
pub fn path() -> Option<&'static Path> {
    SINK.get().map(|log| log.path.as_path())
}

/// Which file to write keys to: `--keylog FILE`, else `SSLKEYLOGFILE` when
/// `--keylog-from-env` allows it (an empty variable counts as unset).
pub fn chosen(flag: Option<&Path>, from_env: bool) -> Option<PathBuf> {
    if let Some(path) = flag {
        return Some(path.to_path_buf());
    }
    if !from_env {
        return None;
    }
    std::env::var_os("SSLKEYLOGFILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The line the banner prints while keys are written.
pub fn banner_line(path: &Path) -> String {
    format!(
        "keylog: TLS session keys are being written to {} — anyone holding that file can \
         decrypt every capture of this session's traffic; delete it when done",
        path.display()
    )
}

/// An append-only NSS key log file.
struct KeyLogFile {
    /// Where it is (said in the banner and recorded in the session).
    path: PathBuf,
    /// The open file; the mutex keeps this process's lines whole, an `flock` around each
    /// write keeps them whole against another diagproxy appending to the same file.
    file: Mutex<File>,
}

impl KeyLogFile {
    /// Opens for appending: created `0600`; an existing file must be a regular file (no
    /// symlink is followed) that only its owner can read, or it is refused.
    fn open(path: &Path) -> io::Result<KeyLogFile> {
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
        }
        let file = options
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(io::Error::other(format!(
                    "{} is not a regular file",
                    path.display()
                )));
            }
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(io::Error::other(format!(
                    "{} can be read by other users (mode {:o}): a key log must be 0600 \
                     (chmod 600 it, or name a new file)",
                    path.display(),
                    meta.permissions().mode() & 0o777
                )));
            }
            // SAFETY: geteuid has no preconditions.
            if meta.uid() != unsafe { libc::geteuid() } {
                return Err(io::Error::other(format!(
                    "{} belongs to another user",
                    path.display()
                )));
            }
        }
        Ok(KeyLogFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }
}

impl std::fmt::Debug for KeyLogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyLogFile({})", self.path.display())
    }
}

impl rustls::KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = line(label, client_random, secret);
        let Ok(mut file) = self.file.lock() else {
            return;
        };
        let _lock = Flock::exclusive(&file);
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!("cannot write the key log {}: {e}", self.path.display());
        }
    }
}

/// One key log line: `LABEL CLIENT_RANDOM_HEX SECRET_HEX\n`.
fn line(label: &str, client_random: &[u8], secret: &[u8]) -> String {
    let mut line =
        String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
    line.push_str(label);
    line.push(' ');
    crate::text::push_hex(&mut line, client_random);
    line.push(' ');
    crate::text::push_hex(&mut line, secret);
    line.push('\n');
    line
}

/// An exclusive `flock` on a descriptor, held while it lives (a no-op where there is none).
struct Flock(#[allow(dead_code)] i32);

impl Flock {
    fn exclusive(file: &File) -> Flock {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            // SAFETY: the descriptor is open; the caller holds the file until this drops.
            unsafe { libc::flock(fd, libc::LOCK_EX) };
            Flock(fd)
        }
        #[cfg(not(unix))]
        {
            let _ = file;
            Flock(-1)
        }
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        // SAFETY: as above; unlocking a descriptor that is still open.
        #[cfg(unix)]
        unsafe {
            libc::flock(self.0, libc::LOCK_UN)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_nss_format() {
        assert_eq!(
            line("CLIENT_RANDOM", &[0x01, 0xab], &[0xff, 0x00, 0x10]),
            "CLIENT_RANDOM 01ab ff0010\n"
        );
    }

    #[test]
    fn the_file_is_private_and_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        std::fs::write(&path, "# earlier\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let log = KeyLogFile::open(&path).unwrap();
        rustls::KeyLog::log(&log, "CLIENT_TRAFFIC_SECRET_0", &[1], &[2]);
        rustls::KeyLog::log(&log, "SERVER_TRAFFIC_SECRET_0", &[1], &[3]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# earlier\nCLIENT_TRAFFIC_SECRET_0 01 02\nSERVER_TRAFFIC_SECRET_0 01 03\n"
        );
        let fresh = dir.path().join("new.log");
        drop(KeyLogFile::open(&fresh).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_file_or_a_symlink_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open.log");
        std::fs::write(&open, "").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = KeyLogFile::open(&open).unwrap_err().to_string();
        assert!(e.contains("can be read by other users"), "{e}");
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(dir.path().join("target.log"), &link).unwrap();
        assert!(KeyLogFile::open(&link).is_err());
        assert!(!dir.path().join("target.log").exists());
    }

    #[test]
    fn the_environment_counts_only_when_allowed() {
        let flag = Path::new("/tmp/x.log");
        assert_eq!(chosen(Some(flag), false), Some(flag.to_path_buf()));
        // SSLKEYLOGFILE may or may not be set where the tests run: without the permission
        // it never counts.
        assert_eq!(chosen(None, false), None);
    }
}
