//! The installed package: `.ci/run` builds the .deb (`packaging/deb.sh`, cargo-deb),
//! installs it with `dpkg -i` and sets `DIAGPROXY_INSTALLED=/usr/bin/diagproxy`; this runs
//! that binary from where the package put it — its version, the man pages and completions
//! beside it, and one whole `check` of a loopback HTTPS origin that passes every stage.
//! Skipped without `DIAGPROXY_INSTALLED` (a fresh machine builds no package); under
//! `DIAGPROXY_REQUIRE_TOOLS=1` the skip is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn installed() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DIAGPROXY_INSTALLED") {
        return Some(PathBuf::from(path));
    }
    if std::env::var("DIAGPROXY_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!(
            "DIAGPROXY_INSTALLED is required (DIAGPROXY_REQUIRE_TOOLS=1): install the .deb first"
        );
    }
    eprintln!("SKIPPED: no installed package (DIAGPROXY_INSTALLED is not set)");
    None
}

#[test]
fn the_installed_binary_has_its_version_manuals_and_completions_and_checks_an_origin() {
    let Some(bin) = installed() else { return };
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("diagproxy {}", env!("CARGO_PKG_VERSION"))
    );
    for file in [
        "/usr/share/man/man1/diagproxy.1.gz",
        "/usr/share/man/man1/diagproxy-check.1.gz",
        "/usr/share/man/man1/diagproxy-import.1.gz",
        "/usr/share/bash-completion/completions/diagproxy",
        "/usr/share/zsh/vendor-completions/_diagproxy",
        "/usr/share/fish/vendor_completions.d/diagproxy.fish",
    ] {
        assert!(Path::new(file).is_file(), "{file} is not installed");
    }
    let mut manual = String::new();
    let gz = std::fs::File::open("/usr/share/man/man1/diagproxy-check.1.gz").unwrap();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut manual).unwrap();
    assert!(manual.contains("stage\\-timeout"), "{manual}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let pem = dir.path().join("public.pem");
    std::fs::write(&pem, public.pem()).unwrap();
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let page = "<html><title>ChatGPT</title></html>";
    let origin = rt.block_on(canned_https_origin(
        vec![leaf],
        key,
        vec![canned("/", 200, &[("content-type", "text/html")], page)],
    ));
    let target = format!("chatgpt.com:{}", origin.port());
    let out = Command::new(&bin)
        .env("DIAGPROXY_LOOPBACK_ONLY", "1")
        .args([
            "check",
            "--json",
            "--upstream-proxy",
            "direct",
            "--voice",
            "none",
        ])
        .arg("--public-roots")
        .arg(&pem)
        .arg("--system-roots")
        .arg(&pem)
        .arg("--session-dir")
        .arg(dir.path().join("s"))
        .arg("--resolve")
        .arg(format!("{target}:127.0.0.1"))
        .arg(&target)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    let host = &doc["hosts"][0];
    for stage in ["dns", "tcp", "tls", "http"] {
        assert_eq!(host[stage]["state"], "pass", "{stage}: {host:#}");
    }
    assert_eq!(host["tls_verdict"]["verdict"], "public");
}
