//! All diagnosis, without I/O: what the proxy saw → findings an administrator can act on.
//!
//! - [`finding`]: `Finding` and `FindingKind`, with the one order of seriousness;
//! - [`detect`]: the detectors (a response head and the first 64 KiB of its body, a
//!   tunnel's first upstream bytes and how it ended, a DNS answer, a corporate proxy's
//!   refusal), every signature from the profile, unit-tested against fixtures;
//! - [`explain`]: a failure, a chain verdict or a client's refusal → its finding;
//! - [`verdict`]: the session's one-sentence verdict;
//! - [`reproduce`]: the `curl` command that shows the same thing without diagproxy.

pub mod detect;
pub mod explain;
pub mod finding;
pub mod page;
pub mod reproduce;
pub mod routes;
pub mod verdict;

pub use finding::{Finding, FindingKind};
