//! The session: what happened, as events (`event`), folded into a per-host summary
//! (`summary`), written by one task that owns the session files (`recorder`) and printed as
//! the live log (`livelog`) through the one stderr writer that never blocks (`stderr`), and
//! fed to the live page (`feed`).

pub mod event;
pub mod feed;
pub mod livelog;
pub mod recorder;
pub mod redact;
pub mod request_line;
pub mod source;
pub mod stderr;
pub mod summary;

pub use event::Event;
pub use recorder::Recorder;
