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
//! The map:
//! - [`cli`]: clap types only; [`config`]: `Config::from_run_args`, every check before binding.
//! - [`profile`]: the allowlist, what each host is for and the remedies, as data.
//! - [`proxy`]: [`proxy::run`] (the accept loop), then per connection `h1`, which forwards
//!   simple plain-HTTP requests itself and hands the rest to `service` (hyper), which sends
//!   CONNECT to `tunnel`, absolute-form requests to `forward` and the rest to `pages`;
//!   `relay` moves a tunnel's bytes both ways (with `zerocopy`'s splice(2) for bulk).
//! - [`sniff`]: the ClientHello's SNI and ALPN, parsed from a tunnel's first bytes (pure).
//! - [`tls`]: trust stores, the verdict on a presented chain (pure), the side handshake.
//! - [`session`]: the events, the single writer of the session folder, the summary, the live log.
//! - [`failure`]: named failure kinds and whose side failed.
//! - [`inspect`]: the detectors that turn observations into findings (pure).
//! - [`report`]: HAR, HTML, Markdown and compare, from `events.jsonl` alone.
//! - [`bench`]: `diagproxy bench`, the overhead measurements (load generator and proxy
//!   pinned to their own cores).
//! - [`shutdown`]: stop signal and drain tracking; [`clock`]: timestamps.

pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod failure;
pub mod inspect;
pub mod profile;
pub mod proxy;
pub mod report;
pub mod session;
pub mod shutdown;
pub mod sniff;
pub mod tls;
pub mod upstream;

pub use proxy::run;
