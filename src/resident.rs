//! A process's resident memory by mapping, read from Linux's `/proc/PID/smaps`: what the
//! bench's `idle memory (RSS)` is made of ([`Resident`]), and giving the kernel back the
//! pages of the program's own code and constants that start-up touched
//! ([`release_startup_pages`]).
//!
//! Why the second: starting `run` executes code that is never needed again (the command
//! line, the profile's JSON, the CA, the route discovery), and the kernel maps 64 KiB around
//! every page fault in a file mapping (fault-around), so an idle proxy kept ~5 MiB of its
//! binary mapped that it did not use. Those pages are clean copies of the file: dropping the
//! mapping costs nothing (they stay in the page cache, and a page the proxy needs later is
//! mapped again on its first use). Only mappings of the program's own file that are private,
//! not writable and hold no page of their own (`Anonymous: 0 kB`: nothing relocated or
//! written) are dropped, so nothing that differs from the file is ever lost.
//!
//! Parsing is pure ([`Resident::parse`], [`clean_own_mappings`]); [`Resident::of`] and
//! [`release_startup_pages`] do the I/O.

use std::ops::Range;

/// Resident KiB of one process, by what is mapped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resident {
    /// The program's own executable pages (its code: clean, shared with the page cache).
    pub own_code: u64,
    /// The program's other pages: constants, and the data relocated at start (a
    /// position-independent binary dirties its relocated read-only data once).
    pub own_data: u64,
    /// Every other file: shared libraries and the loader (clean, shared).
    pub libraries: u64,
    /// Memory backed by no file: the heap, thread stacks, anonymous mappings.
    pub anonymous: u64,
}

impl Resident {
    /// The process's figures; `None` where `/proc` cannot be read (not Linux, gone).
    pub fn of(pid: u32) -> Option<Resident> {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
        Some(Resident::parse(&smaps, &exe.to_string_lossy()))
    }

    /// Sums each mapping's `Rss:` by what the mapping is; `exe` is the program's path.
    pub fn parse(smaps: &str, exe: &str) -> Resident {
        let mut resident = Resident::default();
        for mapping in mappings(smaps) {
            *resident.slot(Kind::of(&mapping, exe)) += mapping.rss_kib.unwrap_or(0);
        }
        resident
    }

    fn slot(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::OwnCode => &mut self.own_code,
            Kind::OwnData => &mut self.own_data,
            Kind::Library => &mut self.libraries,
            Kind::Anonymous => &mut self.anonymous,
        }
    }
}

/// Gives back the pages of the program's own unmodified, read-only mappings (its code and
/// constants), which start-up mapped and an idle proxy does not use; returns the bytes of
/// the mappings released. Linux only (elsewhere 0); a `/proc` that cannot be read releases
/// nothing.
pub fn release_startup_pages() -> usize {
    let (Ok(exe), Ok(smaps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/smaps"),
    ) else {
        return 0;
    };
    clean_own_mappings(&smaps, &exe.to_string_lossy())
        .iter()
        .filter(|range| advise_dont_need(range))
        .map(|range| range.len())
        .sum()
}

#[cfg(target_os = "linux")]
fn advise_dont_need(range: &Range<usize>) -> bool {
    // SAFETY: the range is a whole mapping of the program's own file, private, not writable
    // and without a page that differs from the file (`clean_own_mappings`): after
    // MADV_DONTNEED its next read maps the same bytes from the file again, so no thread can
    // observe a change.
    unsafe {
        libc::madvise(
            range.start as *mut libc::c_void,
            range.len(),
            libc::MADV_DONTNEED,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_dont_need(_: &Range<usize>) -> bool {
    false
}

/// The address ranges of the mappings of `exe` that are private, not writable, and hold no
/// page of their own (`Anonymous: 0 kB`).
pub fn clean_own_mappings(smaps: &str, exe: &str) -> Vec<Range<usize>> {
    mappings(smaps)
        .filter(|m| m.path == exe && !m.perms.contains('w') && m.perms.ends_with('p'))
        .filter(|m| m.anonymous_kib == Some(0))
        .filter_map(|m| m.range)
        .collect()
}

/// One mapping of `/proc/PID/smaps`: its header line (`start-end perms offset dev inode
/// [path]`) and the figures under it this module reads.
#[derive(Debug, Default)]
struct Mapping<'a> {
    range: Option<Range<usize>>,
    perms: &'a str,
    /// The file mapped; empty or `[heap]`-like for anonymous memory.
    path: &'a str,
    rss_kib: Option<u64>,
    anonymous_kib: Option<u64>,
}

/// The mappings of an smaps text, in order; lines it does not know are skipped.
fn mappings(smaps: &str) -> impl Iterator<Item = Mapping<'_>> {
    let mut all: Vec<Mapping<'_>> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        let mut value = || fields.next().and_then(|v| v.parse().ok());
        match (first.ends_with(':'), all.last_mut()) {
            (false, _) => all.push(Mapping::of_header(line)),
            (true, Some(m)) if first == "Rss:" => m.rss_kib = value(),
            (true, Some(m)) if first == "Anonymous:" => m.anonymous_kib = value(),
            _ => {}
        }
    }
    all.into_iter()
}

impl<'a> Mapping<'a> {
    fn of_header(header: &'a str) -> Mapping<'a> {
        let fields: Vec<&str> = header.splitn(6, ' ').collect();
        let range = fields.first().and_then(|r| {
            let (start, end) = r.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (start < end).then_some(start..end)
        });
        Mapping {
            range,
            perms: fields.get(1).copied().unwrap_or(""),
            path: fields.get(5).map_or("", |p| p.trim()),
            ..Mapping::default()
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    OwnCode,
    OwnData,
    Library,
    Anonymous,
}

impl Kind {
    fn of(mapping: &Mapping<'_>, exe: &str) -> Kind {
        match mapping.path {
            p if p == exe && mapping.perms.contains('x') => Kind::OwnCode,
            p if p == exe => Kind::OwnData,
            p if p.starts_with('/') => Kind::Library,
            _ => Kind::Anonymous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5580a0000000-5580a0100000 r--p 00000000 08:01 123   /usr/bin/diagproxy
Size:               1024 kB
Rss:                 300 kB
VmFlags: rd mr mw me
5580a0100000-5580a0900000 r-xp 00100000 08:01 123   /usr/bin/diagproxy
Rss:                3600 kB
5580a0900000-5580a0950000 rw-p 00900000 08:01 123   /usr/bin/diagproxy
Rss:                 280 kB
5580a1000000-5580a1100000 rw-p 00000000 00:00 0      [heap]
Rss:                 500 kB
7f0000000000-7f0000200000 r-xp 00000000 08:01 456   /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1400 kB
7f0000300000-7f0000400000 rw-p 00000000 00:00 0 
Rss:                 200 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]
Rss:                  24 kB
";

    #[test]
    fn sums_resident_memory_by_what_is_mapped() {
        let r = Resident::parse(SMAPS, "/usr/bin/diagproxy");
        assert_eq!(
            r,
            Resident {
                own_code: 3600,
                own_data: 580,
                libraries: 1400,
                anonymous: 724,
            }
        );
    }

    const CLEAN: &str = "\
5580a0000000-5580a0100000 r--p 00000000 08:01 123   /usr/bin/diagproxy
Rss:                 300 kB
Anonymous:             0 kB
5580a0100000-5580a0900000 r-xp 00100000 08:01 123   /usr/bin/diagproxy
Anonymous:             0 kB
5580a0900000-5580a0950000 r--p 00900000 08:01 123   /usr/bin/diagproxy
Anonymous:           280 kB
5580a0950000-5580a0960000 rw-p 00950000 08:01 123   /usr/bin/diagproxy
Anonymous:             0 kB
7f0000000000-7f0000200000 r-xp 00000000 08:01 456   /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f0000300000-7f0000400000 r-xs 00000000 08:01 123   /usr/bin/diagproxy
Anonymous:             0 kB
7f0000500000-7f0000600000 r-xp 00000000 08:01 123   /usr/bin/diagproxy
";

    #[test]
    fn only_the_programs_own_unmodified_read_only_private_mappings_are_released() {
        assert_eq!(
            clean_own_mappings(CLEAN, "/usr/bin/diagproxy"),
            [
                0x5580a0000000..0x5580a0100000,
                0x5580a0100000..0x5580a0900000
            ],
            "not: relocated (Anonymous 280 kB), writable, another file, shared, or one whose \
             Anonymous figure is missing"
        );
        assert!(clean_own_mappings(CLEAN, "/usr/bin/other").is_empty());
        assert!(clean_own_mappings("garbage\nAnonymous: x\n", "/x").is_empty());
    }

    /// The running test binary: its code is released and still runs afterwards.
    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_the_start_up_pages_keeps_the_program_running() {
        assert!(release_startup_pages() > 0);
        let resident = Resident::of(std::process::id()).unwrap();
        assert!(
            resident.own_code > 0,
            "code in use is mapped again: {resident:?}"
        );
        assert_eq!(Resident::parse(SMAPS, "/usr/bin/diagproxy").own_code, 3600);
    }

    #[test]
    fn another_program_of_a_similar_name_is_a_library() {
        let r = Resident::parse(SMAPS, "/usr/bin/diagprox");
        assert_eq!((r.own_code, r.own_data, r.libraries), (0, 0, 5580));
    }
}
