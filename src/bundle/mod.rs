//! `diagproxy bundle`: one zip a person can review before it leaves the machine — for each
//! session its summary, reports, HAR, events, `check.json`, the PAC script and the kept
//! bodies of answers that went wrong; `environment.json`; and `manifest.json`, written last,
//! with every file's size and SHA-256, the redaction counts, what was left out and why, the
//! gaps of a damaged session and who agreed to it.
//!
//! Three steps, so the person sees everything before a byte is written: [`plan`] reads the
//! session folders (one streaming pass per file: sizes, `REDACTED` counts, which body
//! belongs to which answer), the caller shows [`Plan::review`] and asks, [`write`] streams
//! the files into the zip hashing them on the way. [`verify`] rechecks a zip's hashes.
//! Memory stays bounded whatever the sizes: files are copied in 64 KiB pieces, the HAR and
//! `events.jsonl` are read a line at a time.

pub mod environment;
pub mod filter;
pub mod manifest;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use manifest::{
    Consent, FileEntry, Gap, LeftOut, Manifest, Mismatch, Plan, Planned, Sensitive, Transform,
};

/// The most kept bodies a bundle maps to their answers (a session keeps at most 256 MiB of
/// bodies, so far fewer in practice); bodies past it are left out and said so.
pub const MAX_BODIES: usize = 100_000;
/// The longest `events.jsonl` line read for its body reference (a longer line is copied
/// but not parsed).
const MAX_LINE: usize = 16 << 20;
/// The largest `manifest.json` `--verify` reads.
const MAX_MANIFEST: u64 = 64 << 20;

/// A session's files a bundle takes: name, what it holds, whether every session has one.
const SESSION_FILES: [(&str, &str, bool); 7] = [
    ("summary.json", "the verdict and each host's counts, findings, chains and routes", true),
    ("report.html", "the report for people: hosts, findings, remedies, waterfall", true),
    ("report.md", "the report for a ticket", true),
    ("session.har", "every request: URLs, headers (credentials REDACTED), timings, the bodies of answers that went wrong", true),
    ("events.jsonl", "every event as it happened: URLs, headers, timings, failures", true),
    ("check.json", "the check's stages for each host", false),
    (crate::session::recorder::PAC_FILE, "the PAC script the session followed", false),
];

/// What to take beyond the default.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--include-sensitive`.
    pub include: BTreeSet<Sensitive>,
    /// Where the CA key is, for `--include-sensitive ca-key`.
    pub ca_dir: Option<PathBuf>,
}

/// Why a bundle was not made, and so the exit code.
#[derive(Debug)]
pub enum BundleError {
    /// A session folder or zip that does not exist (66).
    NotFound(String),
    /// A folder that is not a session, or a zip that is not a bundle (65).
    Unreadable(String),
    /// Refused until the user says more (64).
    Refused(String),
    /// Writing failed (1).
    Io(String),
}

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleError::NotFound(e)
            | BundleError::Unreadable(e)
            | BundleError::Refused(e)
            | BundleError::Io(e) => f.write_str(e),
        }
    }
}

/// Reads the session folders and decides what goes in, without writing anything.
pub fn plan(dirs: &[PathBuf], options: &Options) -> Result<Plan, BundleError> {
    let mut plan = Plan::default();
    let mut prefixes = HashSet::new();
    for dir in dirs {
        plan_session(dir, options, &mut plan, &mut prefixes)?;
    }
    plan_ca_key(options, &mut plan)?;
    Ok(plan)
}

fn plan_session(
    dir: &Path,
    options: &Options,
    plan: &mut Plan,
    prefixes: &mut HashSet<String>,
) -> Result<(), BundleError> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BundleError::NotFound(format!("{shown}: no such folder")))
        }
        Err(e) => return Err(BundleError::Unreadable(format!("{shown}: {e}"))),
        Ok(m) if !m.is_dir() => {
            return Err(BundleError::Unreadable(format!("{shown}: not a folder")))
        }
        Ok(_) => {}
    }
    if !dir.join("events.jsonl").exists() && !dir.join("summary.json").exists() {
        return Err(BundleError::Unreadable(format!(
            "{shown}: not a session folder (neither events.jsonl nor summary.json)"
        )));
    }
    let prefix = unique_prefix(dir, prefixes);
    plan.sessions.push(dir.display().to_string());
    let summary = read_summary(dir, &prefix, plan);
    let session = summary.as_ref().map(|s| &s["session"]);
    if session.is_some_and(|s| s["include_secrets"] == true)
        && !options.include.contains(&Sensitive::Secrets)
    {
        return Err(BundleError::Refused(format!(
            "{shown} was recorded with --include-secrets: its files hold credentials in clear. \
             Bundle it only if the recipient may see them: add --include-sensitive secrets"
        )));
    }
    let owners = plan_files(dir, &prefix, options, plan)?;
    plan_bodies(dir, &prefix, &owners, options, plan);
    plan_keylog(session, &prefix, options, plan);
    if let Some(summary) = &summary {
        let route = route_evidence(summary, dir);
        plan.generated.push((
            format!("{prefix}/route.json"),
            route,
            "the route: its source, the PAC file's URL and SHA-256, the proxies each host took"
                .into(),
        ));
    }
    plan_strangers(dir, &prefix, plan);
    Ok(())
}

/// The session's name in the zip: its folder's name, made unique.
fn unique_prefix(dir: &Path, taken: &mut HashSet<String>) -> String {
    let base: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "session".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

fn read_summary(dir: &Path, prefix: &str, plan: &mut Plan) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    match serde_json::from_str(&text) {
        Ok(value) => Some(value),
        Err(e) => {
            plan.gaps.push(Gap {
                path: format!("{prefix}/summary.json"),
                problem: format!("not valid JSON ({e})"),
            });
            None
        }
    }
}

/// The session's own files; returns which kept body belongs to which answer (from events).
fn plan_files(
    dir: &Path,
    prefix: &str,
    options: &Options,
    plan: &mut Plan,
) -> Result<HashMap<String, filter::BodyOwner>, BundleError> {
    let mut owners = HashMap::new();
    for (name, contains, expected) in SESSION_FILES {
        let source = dir.join(name);
        let Ok(meta) = std::fs::metadata(&source) else {
            if expected {
                plan.gaps.push(Gap {
                    path: format!("{prefix}/{name}"),
                    problem: "missing from the session folder".into(),
                });
            }
            continue;
        };
        let io_error = |e: io::Error| BundleError::Io(format!("{}: {e}", source.display()));
        let redactions = if name == "events.jsonl" {
            let (redactions, complete) = scan_events(&source, &mut owners).map_err(io_error)?;
            if !complete {
                plan.gaps.push(Gap {
                    path: format!("{prefix}/{name}"),
                    problem:
                        "the last line is incomplete (the session ended abruptly): bundled as it is"
                            .into(),
                });
            }
            redactions
        } else {
            count_redactions(&source).map_err(io_error)?
        };
        let transform = if name == "session.har" && !options.include.contains(&Sensitive::Bodies) {
            Transform::HarWithout2xxBodies
        } else {
            Transform::Copy
        };
        plan.files.push(Planned {
            source,
            name: format!("{prefix}/{name}"),
            size: meta.len(),
            contains: contains.into(),
            redactions,
            transform,
        });
    }
    Ok(owners)
}

/// One pass over `events.jsonl`: `REDACTED` values, the kept bodies' answers, and whether
/// the file ends with a whole line.
fn scan_events(
    path: &Path,
    owners: &mut HashMap<String, filter::BodyOwner>,
) -> io::Result<(u64, bool)> {
    let mut reader = BufReader::with_capacity(64 << 10, File::open(path)?);
    let mut counter = filter::RedactionCounter::default();
    let mut line = Vec::new();
    let mut complete = true;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        counter.feed(&line);
        complete = line.ends_with(b"\n");
        if line.len() > MAX_LINE || owners.len() >= MAX_BODIES {
            continue;
        }
        if let Some(owner) = std::str::from_utf8(&line).ok().and_then(filter::body_owner) {
            owners.insert(owner.sha256.clone(), owner);
        }
    }
    Ok((counter.count(), complete))
}

fn count_redactions(path: &Path) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let mut counter = filter::RedactionCounter::default();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(counter.count());
        }
        counter.feed(&buf[..n]);
    }
}

/// The kept bodies: those of answers that went wrong go in; 2xx bodies only when asked.
fn plan_bodies(
    dir: &Path,
    prefix: &str,
    owners: &HashMap<String, filter::BodyOwner>,
    options: &Options,
    plan: &mut Plan,
) {
    let Ok(entries) = std::fs::read_dir(dir.join("bodies")) else {
        return;
    };
    let mut successes = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = owners.get(&name).filter(|_| filter::is_body_name(&name)) else {
            plan.left_out.push(LeftOut {
                what: format!("{prefix}/bodies/{name}"),
                why: "no request in events.jsonl names this body".into(),
            });
            continue;
        };
        if owner.is_success() && !options.include.contains(&Sensitive::Bodies) {
            successes += 1;
            continue;
        }
        let status = owner.status.map_or("no".to_string(), |s| s.to_string());
        plan.files.push(Planned {
            source: entry.path(),
            name: format!("{prefix}/bodies/{name}"),
            size: entry.metadata().map(|m| m.len()).unwrap_or(0),
            contains: format!("the body of a {status} answer from {}", owner.host),
            redactions: count_redactions(&entry.path()).unwrap_or(0),
            transform: Transform::Copy,
        });
    }
    if successes > 0 {
        plan.left_out.push(LeftOut {
            what: match successes {
                1 => format!("{prefix}/bodies: 1 body of a 2xx answer"),
                n => format!("{prefix}/bodies: {n} bodies of 2xx answers"),
            },
            why: "personal data (conversations, files); --include-sensitive bodies adds them"
                .into(),
        });
    }
}

fn plan_keylog(session: Option<&Value>, prefix: &str, options: &Options, plan: &mut Plan) {
    let Some(path) = session.and_then(|s| s["keylog"].as_str()) else {
        return;
    };
    let source = PathBuf::from(path);
    if !options.include.contains(&Sensitive::Keylog) {
        plan.left_out.push(LeftOut {
            what: format!("the TLS key log {path}"),
            why: "it decrypts every capture of the session; --include-sensitive keylog adds it"
                .into(),
        });
        return;
    }
    match std::fs::metadata(&source) {
        Ok(meta) => plan.files.push(Planned {
            source,
            name: format!("{prefix}/keylog.txt"),
            size: meta.len(),
            contains: "TLS SECRETS: decrypts every capture of the session (asked for with --include-sensitive keylog)".into(),
            redactions: 0,
            transform: Transform::Copy,
        }),
        Err(e) => plan.gaps.push(Gap {
            path: path.to_string(),
            problem: format!("the key log cannot be read: {e}"),
        }),
    }
}

fn plan_ca_key(options: &Options, plan: &mut Plan) -> Result<(), BundleError> {
    if !options.include.contains(&Sensitive::CaKey) {
        plan.left_out.push(LeftOut {
            what: "the local CA's private key".into(),
            why: "whoever holds it can impersonate any site to a machine that trusts the CA; never bundled unless --include-sensitive ca-key".into(),
        });
        return Ok(());
    }
    let dir = options
        .ca_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("certs"));
    let source = dir.join(crate::tls::ca::KEY_FILE);
    let meta = std::fs::metadata(&source)
        .map_err(|e| BundleError::NotFound(format!("{}: {e}", source.display())))?;
    plan.files.push(Planned {
        source,
        name: format!("ca/{}", crate::tls::ca::KEY_FILE),
        size: meta.len(),
        contains: "THE CA'S PRIVATE KEY (asked for with --include-sensitive ca-key)".into(),
        redactions: 0,
        transform: Transform::Copy,
    });
    Ok(())
}

/// Files in the folder that are not a session's: left out, and listed.
fn plan_strangers(dir: &Path, prefix: &str, plan: &mut Plan) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let known = SESSION_FILES.iter().any(|(n, _, _)| *n == name) || name == "bodies";
        if !known {
            plan.left_out.push(LeftOut {
                what: format!("{prefix}/{name}"),
                why: "not a file diagproxy writes in a session folder".into(),
            });
        }
    }
}

/// `route.json`: where the session's routes came from and what they were.
fn route_evidence(summary: &Value, dir: &Path) -> String {
    let session = &summary["session"];
    let pac_kept = dir.join(crate::session::recorder::PAC_FILE);
    let kept_sha = std::fs::read(&pac_kept)
        .ok()
        .map(|bytes| crate::text::sha256_hex(&bytes));
    let proxies: Vec<Value> = summary["hosts"]
        .as_array()
        .map(|hosts| {
            hosts
                .iter()
                .map(|h| {
                    serde_json::json!({
                        "host": h["host"], "port": h["port"], "routes": h["routes"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let route = serde_json::json!({
        "route_source": session["route_source"],
        "upstream_proxy": session["upstream_proxy"],
        "pac": session["pac"],
        "pac_file_in_bundle": kept_sha.as_ref().map(|_| crate::session::recorder::PAC_FILE),
        "pac_file_sha256": kept_sha,
        "hosts": proxies,
    });
    serde_json::to_string_pretty(&route).unwrap_or_default()
}

/// Writes the zip (`0600`, never over an existing file) and returns its manifest. A failure
/// removes the half-written zip.
pub fn write(plan: &Plan, out: &Path, consent: Consent) -> Result<Manifest, BundleError> {
    let file = create_new(out).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => BundleError::Refused(format!(
            "{}: the file exists; bundles are never overwritten (name another with -o)",
            out.display()
        )),
        _ => BundleError::Io(format!("{}: {e}", out.display())),
    })?;
    let written = write_zip(plan, file, consent);
    if written.is_err() {
        let _ = std::fs::remove_file(out);
    }
    written.map_err(|e| BundleError::Io(format!("{}: {e}", out.display())))
}

fn create_new(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn write_zip(plan: &Plan, file: File, consent: Consent) -> io::Result<Manifest> {
    let mut zip = zip::ZipWriter::new(io::BufWriter::with_capacity(64 << 10, file));
    let mut entries = Vec::new();
    for planned in &plan.files {
        let (size, sha256) = add_file(&mut zip, planned)?;
        entries.push(FileEntry {
            path: planned.name.clone(),
            size,
            sha256,
            contains: planned.contains.clone(),
            redactions: planned.redactions,
        });
    }
    for (name, contents, contains) in &plan.generated {
        let mut sink = Hashing::new(start(&mut zip, name, contents.len() as u64)?);
        sink.write_all(contents.as_bytes())?;
        let (size, sha256) = sink.finish();
        entries.push(FileEntry {
            path: name.clone(),
            size,
            sha256,
            contains: contains.clone(),
            redactions: 0,
        });
    }
    let redactions = plan.redactions();
    let manifest = Manifest {
        version: manifest::VERSION,
        diagproxy: env!("CARGO_PKG_VERSION").into(),
        created_at: crate::clock::rfc3339(std::time::SystemTime::now()),
        sessions: plan.sessions.clone(),
        files: entries,
        redactions_total: redactions.values().sum(),
        redactions,
        left_out: plan.left_out.clone(),
        gaps: plan.gaps.clone(),
        consent,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(io::Error::other)?;
    start(&mut zip, "manifest.json", text.len() as u64)?.write_all(text.as_bytes())?;
    zip.finish()?.flush()?;
    Ok(manifest)
}

type Zip = zip::ZipWriter<io::BufWriter<File>>;

/// Starts an entry: deflate at its fastest level (text shrinks 5–10× even so, at a speed
/// that keeps a 1 GB session to seconds), zip64 when it may pass 4 GiB.
fn start<'a>(zip: &'a mut Zip, name: &str, size: u64) -> io::Result<&'a mut Zip> {
    let options = zip::write::SimpleFileOptions::default()
        .last_modified_time(now())
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .unix_permissions(0o600)
        .large_file(size >= u32::MAX as u64 / 2);
    zip.start_file(name, options).map_err(io::Error::other)?;
    Ok(zip)
}

/// The zip's timestamp for its entries: now, in UTC (zip's format has no zone).
fn now() -> zip::DateTime {
    let t = time::OffsetDateTime::now_utc();
    zip::DateTime::from_date_and_time(
        u16::try_from(t.year()).unwrap_or(1980),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    )
    .unwrap_or_default()
}

/// Streams one planned file into the zip: its size and SHA-256 as written.
fn add_file(zip: &mut Zip, planned: &Planned) -> io::Result<(u64, String)> {
    let mut source = File::open(&planned.source)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", planned.source.display())))?;
    let mut sink = Hashing::new(start(zip, &planned.name, planned.size)?);
    match planned.transform {
        Transform::Copy => {
            io::copy(&mut source, &mut sink)?;
        }
        Transform::HarWithout2xxBodies => {
            let mut reader = BufReader::with_capacity(64 << 10, source);
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    break;
                }
                let (body, newline) = match line.strip_suffix('\n') {
                    Some(body) => (body, "\n"),
                    None => (line.as_str(), ""),
                };
                let (kept, _) = filter::har_line(body);
                sink.write_all(kept.as_bytes())?;
                sink.write_all(newline.as_bytes())?;
            }
        }
    }
    Ok(sink.finish())
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W: Write> {
    inner: W,
    digest: ring::digest::Context,
    size: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            size: 0,
        }
    }

    fn finish(self) -> (u64, String) {
        let mut hex = String::with_capacity(64);
        crate::text::push_hex(&mut hex, self.digest.finish().as_ref());
        (self.size, hex)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Rechecks a bundle: every file against the manifest's size and SHA-256, nothing added,
/// nothing missing.
pub fn verify(path: &Path) -> Result<(Manifest, Vec<Mismatch>), BundleError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            BundleError::NotFound(format!("{}: no such file", path.display()))
        }
        _ => BundleError::Unreadable(format!("{}: {e}", path.display())),
    })?;
    let unreadable = |e: String| BundleError::Unreadable(format!("{}: {e}", path.display()));
    let mut zip =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| unreadable(e.to_string()))?;
    let manifest = read_manifest(&mut zip).map_err(unreadable)?;
    let mut found = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| unreadable(e.to_string()))?;
        let name = entry
            .name()
            .map_err(|e| unreadable(e.to_string()))?
            .into_owned();
        if name == "manifest.json" {
            continue;
        }
        let mut sink = Hashing::new(io::sink());
        io::copy(&mut entry, &mut sink).map_err(|e| unreadable(format!("{name}: {e}")))?;
        let (size, sha256) = sink.finish();
        found.push((name, size, sha256));
    }
    let problems = manifest.compare(&found);
    Ok((manifest, problems))
}

fn read_manifest(zip: &mut zip::ZipArchive<BufReader<File>>) -> Result<Manifest, String> {
    let entry = zip
        .by_name("manifest.json")
        .map_err(|_| "no manifest.json: not a diagproxy bundle".to_string())?;
    let mut text = String::new();
    entry
        .take(MAX_MANIFEST)
        .read_to_string(&mut text)
        .map_err(|e| format!("manifest.json: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("manifest.json: {e}"))
}

/// The bundle of a session still running (the live page's Download bundle): its events and
/// kept bodies copied as they are now into a private temporary folder of the same name,
/// the summary and reports rebuilt there as `diagproxy report` would, then bundled with
/// the consent of the person who pressed the button. Returns the zip's bytes (the caller
/// bounds the session's size first).
pub fn running(
    dir: &Path,
    environment: (String, String, String),
    consent: Consent,
) -> Result<Vec<u8>, String> {
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let name = dir.file_name().unwrap_or(std::ffi::OsStr::new("session"));
    let snapshot = temp.path().join(name);
    crate::files::create_private_dir(&snapshot).map_err(|e| e.to_string())?;
    copy_snapshot(dir, &snapshot).map_err(|e| e.to_string())?;
    let session = crate::report::Session::load(&snapshot)?;
    let summary = session.summary.to_json();
    crate::files::replace(&snapshot.join("summary.json"), 0o600, |f| {
        f.write_all(summary.as_bytes())
    })
    .map_err(|e| e.to_string())?;
    crate::report::write(&session, &crate::report::Outputs::in_folder(&snapshot))?;
    let mut plan = plan(&[snapshot], &Options::default()).map_err(|e| e.to_string())?;
    plan.sessions = vec![dir.display().to_string()];
    plan.generated.insert(0, environment);
    let out = temp.path().join("bundle.zip");
    write(&plan, &out, consent).map_err(|e| e.to_string())?;
    std::fs::read(&out).map_err(|e| e.to_string())
}

/// The files a running session has so far (events, kept bodies, PAC, check), copied.
fn copy_snapshot(dir: &Path, snapshot: &Path) -> io::Result<()> {
    for name in [
        "events.jsonl",
        "check.json",
        crate::session::recorder::PAC_FILE,
    ] {
        let source = dir.join(name);
        if source.exists() {
            copy_private(&source, &snapshot.join(name))?;
        }
    }
    let Ok(bodies) = std::fs::read_dir(dir.join("bodies")) else {
        return Ok(());
    };
    crate::files::create_private_dir(&snapshot.join("bodies"))?;
    for entry in bodies.flatten() {
        let name = entry.file_name();
        if filter::is_body_name(&name.to_string_lossy()) {
            copy_private(&entry.path(), &snapshot.join("bodies").join(name))?;
        }
    }
    Ok(())
}

fn copy_private(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    let mut target = crate::files::create_private(to)?;
    io::copy(&mut source, &mut target).map(|_| ())
}
