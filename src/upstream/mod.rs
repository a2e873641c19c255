//! Reaching the other side, for the proxy, the TLS probe and (next) `check` alike.
//!
//! - [`addr`]: `HostPort`, one host and port with the IPv6 bracket rules;
//! - [`resolve`]: names to addresses (`--resolve` pins first), and whether an address is
//!   diagproxy itself;
//! - [`route`]: direct or through which corporate proxy;
//! - [`dial`]: TCP with a deadline, CONNECT through the corporate proxy, its refusals as
//!   named failures;
//! - [`pool`]: idle keep-alive connections per peer.
//!
//! Nothing here knows about downstream connections: `proxy` calls in, never the reverse.

pub mod addr;
pub mod dial;
pub mod pool;
pub mod resolve;
pub mod route;

pub use addr::HostPort;
