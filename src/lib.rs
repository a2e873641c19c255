//! diagproxy: a local diagnostic proxy that tells an IT engineer why ChatGPT fails on their
//! network. Point a browser, app or curl at it; it relays the traffic, records which of the
//! profile's hosts each session touches and how each connection failed, and turns every
//! failure into the remedy an administrator can apply.
//!
//! Two words are used the same way everywhere:
//! - **downstream**: the browser, app or curl that talks to diagproxy;
//! - **upstream**: what diagproxy talks to on their behalf, the origin server or the
//!   corporate proxy (`--upstream-proxy`).
//!
//! The map (ARCHITECTURE.md walks a request through it):
//! - [`cli`]: the command line (clap types, `RunArgs` → [`config::Config`], one file per
//!   command); [`config`]: the checked configuration, no clap.
//! - [`profile`]: the allowlist, what each host is for and the remedies, as data.
//! - [`upstream`]: reaching the other side (addresses, resolution and pins, the route,
//!   dialling and CONNECT through the corporate proxy, the idle pool).
//! - [`proxy`]: the downstream side. [`proxy::run`] (the accept loop), then per connection
//!   the lean HTTP/1.1 path (`h1`), which hands what it does not do to `service` (hyper):
//!   `connect/` (what a CONNECT becomes: tunnel or intercept), `forward`, `pages/` (the
//!   proxy's own pages, the live page, and the answers it gives in its own name).
//! - [`tls`]: trust stores, the verdict on a presented chain (pure), the side handshake, the
//!   CA, the leaf minter, and `sniff` (the ClientHello's SNI and ALPN from a tunnel's first
//!   bytes, pure).
//! - [`inspect`]: all diagnosis, pure: findings, detectors, the verdict, reproduce commands.
//! - [`session`]: the events, the single writer of the session folder, the summary (a fold
//!   that calls `inspect`), the live log, the feed of events for the live page.
//! - [`failure`]: named failure kinds and whose side failed.
//! - [`report`]: HAR, HTML, Markdown and compare, from `events.jsonl` alone.
//! - [`import`]: `diagproxy import`, a browser's NetLog or HAR read into the same events, so
//!   the summary, reports and `compare` work on a file as on a session.
//! - [`bundle`]: the support bundle — a reviewed zip of session folders with a manifest of
//!   hashes, redaction counts and what was left out; `--verify` rechecks one.
//! - [`bench`]: `diagproxy bench`, the overhead measurements (load generator and proxy
//!   pinned to their own cores).
//! - [`text`]: text made safe for a terminal, a shell or Markdown (pure).
//! - [`files`]: private files, replaced whole (session files, reports, the CA).
//! - [`metrics`]: Prometheus text exposition of a check and of the running proxy (pure);
//!   [`exporter`]: `diagproxy exporter`, the blackbox-style `/probe` server.
//! - [`lru`]: the bounded map the host-keyed caches use.
//! - [`resident`]: resident memory by mapping (the bench's breakdown), and the start-up pages
//!   `run` gives back once it is listening.
//! - [`shutdown`]: stop signal and drain tracking; [`clock`]: timestamps.

pub mod bench;
pub mod bundle;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod exporter;
pub mod failure;
pub mod files;
#[cfg(test)]
mod fuzz;
pub mod import;
pub mod inspect;
pub mod lru;
pub mod metrics;
pub mod profile;
pub mod proxy;
pub mod report;
pub mod resident;
pub mod session;
pub mod shutdown;
pub mod text;
pub mod tls;
pub mod upstream;

pub use proxy::run;
