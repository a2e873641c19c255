//! Test helpers, one module per thing they fake; everything listens on loopback only and
//! every `pub` item is re-exported here (`use common::*`):
//! - `proxy`: the diagproxy under test, in this process or as the built binary;
//! - `client`: what talks to it (HTTP/1.1, raw CONNECT, TLS through it, curl);
//! - `origins`: what it reaches (plain, TLS and h1+h2 origins, misbehaving servers);
//!   `canned`: origins and gateways that answer what a test scripted (block pages, PAC);
//! - `corporate`: a fake corporate proxy; `squid`, `dante`, `kerberos`: the real ones;
//! - `pki`: certificates and CAs made at test time; `chromium`, `capture`: a headless
//!   browser over DevTools and packet captures.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use diagproxy::cli::{Cli, Command};
use diagproxy::config::Config;
use diagproxy::proxy::SessionOutcome;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod capture;
pub mod chromium;
pub mod dante;
pub mod kerberos;
pub mod squid;

pub mod canned;
pub mod client;
pub mod corporate;
pub mod origins;
pub mod pki;
pub mod proxy;

// Not every test binary uses every module.
#[allow(unused_imports)]
pub use canned::*;
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use corporate::*;
#[allow(unused_imports)]
pub use origins::*;
#[allow(unused_imports)]
pub use pki::*;
#[allow(unused_imports)]
pub use proxy::*;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where test artefacts (screenshots of the report and the live page) are kept.
pub fn artefacts() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Tools CI installs: a test that needs one skips when it is missing, unless
/// DIAGPROXY_REQUIRE_TOOLS=1 (set by .ci/run) turns the skip into a failure.
pub fn require_tool(name: &str) -> bool {
    // Found means it could be started at all (`openssl --version` exits 1, yet openssl is there).
    let found = std::process::Command::new(name)
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        if std::env::var("DIAGPROXY_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("{name} is required (DIAGPROXY_REQUIRE_TOOLS=1) but was not found");
        }
        eprintln!("SKIPPED: {name} is not installed");
    }
    found
}
