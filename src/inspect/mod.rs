//! Diagnosis without I/O: detectors that turn what the proxy already saw (a response head
//! and the first 64 KiB of its body, a tunnel's first upstream bytes and how it ended, a DNS
//! answer, a corporate proxy's refusal) into findings an administrator can act on. Every
//! signature comes from the profile; every function here is unit-tested against fixtures.

pub mod findings;

pub use findings::Finding;
