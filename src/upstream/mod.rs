//! Reaching the other side, for the proxy, the TLS probe and (next) `check` alike.
//!
//! - [`addr`]: `HostPort`, one host and port with the IPv6 bracket rules;
//! - [`resolve`]: names to addresses (`--resolve` pins first), and whether an address is
//!   diagproxy itself;
//! - [`route`]: the ways out of one host (DIRECT, a proxy), as a URL or a PAC result
//!   names them;
//! - [`router`]: the route of every host for a session, from the source discovery chose,
//!   with failed proxies skipped for a while;
//! - [`discover`]: where the route comes from (`--upstream-proxy auto`: the environment,
//!   the desktop's settings, WPAD);
//! - [`env`]: manual settings — `HTTPS_PROXY`/`NO_PROXY` and a desktop's proxy fields;
//! - [`pac`]: PAC files, fetched and run by QuickJS;
//! - [`dial`]: TCP with a deadline, CONNECT through the corporate proxy, its refusals as
//!   named failures;
//! - [`auth`]: signing in to a corporate proxy (Negotiate, NTLM, Basic) after its `407`;
//! - [`pool`]: idle keep-alive connections per peer;
//! - [`sighted`]: what an upstream sent first and how it ended, watched on the way through.
//!
//! Nothing here knows about downstream connections: `proxy` calls in, never the reverse.

pub mod addr;
pub mod auth;
pub mod dial;
pub mod discover;
pub mod env;
pub mod pac;
pub mod pool;
pub mod resolve;
pub mod route;
pub mod router;
pub mod sighted;
pub mod socks;

pub use addr::HostPort;
