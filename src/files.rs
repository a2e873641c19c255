//! The files diagproxy writes for its user: private to their owner, and replaced whole.
//! Used by the session writer, the reports and the CA alike.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// A new (or truncated) file only its owner can read (0600 on Unix): session files hold
/// URLs, and credentials with `--include-secrets`. A symlink in its place is not followed
/// (`O_NOFOLLOW`: the open fails), so a planted link cannot redirect the write.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    }
    let file = options.open(path)?;
    // An existing file keeps its mode through open(2): set it.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

/// A folder only its owner can enter (0700 on Unix), with its parents. An existing one is
/// used only if it is a real folder (not a symlink) owned by the user running diagproxy:
/// one another user made (say in /tmp, for root to fill) is refused.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        ours(dir)?;
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    }
    Ok(())
}

/// Whether `dir` itself (not what a symlink points at) is a folder this user owns.
#[cfg(unix)]
fn ours(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: {why}; refusing to write into it", dir.display()),
        ))
    };
    if !meta.is_dir() {
        return refuse("a symlink or a file, not a folder".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return refuse(format!(
            "owned by uid {}, not by you (uid {me})",
            meta.uid()
        ));
    }
    Ok(())
}

/// Replaces `path` whole: `fill` writes a temporary file beside it (`<name>.<pid>.tmp`,
/// created exclusively with `mode`, so nothing already there is followed or reused), which
/// is then renamed over `path`. A reader sees the old file or the new one, never half of
/// one; on failure the temporary file is removed.
pub fn replace(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = Path::new(&tmp);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let written = options
        .open(tmp)
        .and_then(|mut file| fill(&mut file))
        .and_then(|()| fs::rename(tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(tmp);
    }
    written
}

/// The files under `dir` (one level of subfolders, as a session folder has) and their bytes:
/// what the session's end reports as its size.
pub fn folder_size(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let Ok(entries) = fs::read_dir(dir) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (f, b) = folder_size_flat(&entry.path());
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}

fn folder_size_flat(dir: &Path) -> (u64, u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .fold((0, 0), |(f, b), m| (f + 1, b + m.len()))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_planted_symlink_is_neither_followed_nor_chmodded() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o755)).unwrap();
        let session = dir.path().join("session");
        create_private_dir(&session).unwrap();
        std::os::unix::fs::symlink(&elsewhere, session.join("bodies")).unwrap();
        let err = create_private_dir(&session.join("bodies")).unwrap_err();
        assert!(err.to_string().contains("not a folder"), "{err}");
        let mode = fs::metadata(&elsewhere).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "the link's target was not chmodded");
        let target = elsewhere.join("x");
        std::os::unix::fs::symlink(&target, session.join("events.jsonl")).unwrap();
        assert!(create_private(&session.join("events.jsonl")).is_err());
        assert!(!target.exists(), "nothing written through the link");
    }

    #[test]
    fn a_folder_another_user_made_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let required = std::env::var("DIAGPROXY_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "only root can give a folder to another user (CI runs as root)"
            );
            eprintln!("SKIPPED: only root can give a folder to another user here");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let err = create_private_dir(&theirs).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }
}
