//! What a bundle holds, as data: the plan made before anything is written (each file, what
//! it contains, its redaction count; what is left out and why; the gaps of a damaged
//! session), the review a person reads before saying yes, and the manifest written last
//! into the zip. Pure: no I/O, so the review and the verification are unit-tested.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `manifest.json`'s format version.
pub const VERSION: u32 = 1;

/// Sensitive things a bundle leaves out unless `--include-sensitive` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitive {
    /// The TLS key log (`--keylog`): decrypts every capture of the session.
    Keylog,
    /// Bodies of 2xx answers (personal data: conversations, files).
    Bodies,
    /// The local CA's private key: whoever has it can impersonate any site to this machine.
    CaKey,
    /// A session recorded with `--include-secrets` holds credentials in clear.
    Secrets,
}

impl Sensitive {
    pub const ALL: [Sensitive; 4] = [
        Sensitive::Keylog,
        Sensitive::Bodies,
        Sensitive::CaKey,
        Sensitive::Secrets,
    ];

    /// The word `--include-sensitive` takes.
    pub fn name(self) -> &'static str {
        match self {
            Sensitive::Keylog => "keylog",
            Sensitive::Bodies => "bodies",
            Sensitive::CaKey => "ca-key",
            Sensitive::Secrets => "secrets",
        }
    }

    pub fn parse(word: &str) -> Option<Sensitive> {
        Sensitive::ALL.into_iter().find(|s| s.name() == word)
    }
}

/// How a file is changed on its way into the zip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Byte for byte.
    Copy,
    /// A HAR with the bodies of 2xx answers taken out (each entry says so).
    HarWithout2xxBodies,
}

/// One file to put in the zip.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Where it is read from.
    pub source: PathBuf,
    /// Its name in the zip (`SESSION/summary.json`).
    pub name: String,
    /// Its size on disk (the zip's copy may be smaller after a transform).
    pub size: u64,
    /// What it holds, for the person reviewing.
    pub contains: String,
    /// How many values in it were replaced by `REDACTED` when the session was written.
    pub redactions: u64,
    pub transform: Transform,
}

/// Something the bundle does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub what: String,
    pub why: String,
}

/// A session file that is missing or damaged: the bundle holds what there is and says this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub path: String,
    pub problem: String,
}

/// Everything decided before writing.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub files: Vec<Planned>,
    /// Files written by the bundle itself (`environment.json`, `SESSION/route.json`): name,
    /// contents, what they hold.
    pub generated: Vec<(String, String, String)>,
    pub left_out: Vec<LeftOut>,
    pub gaps: Vec<Gap>,
    /// The session folders, as given.
    pub sessions: Vec<String>,
}

impl Plan {
    /// Redactions per file name (files with none are not listed).
    pub fn redactions(&self) -> BTreeMap<String, u64> {
        self.files
            .iter()
            .filter(|f| f.redactions > 0)
            .map(|f| (f.name.clone(), f.redactions))
            .collect()
    }

    /// The review: every file with its size and what it holds, the redaction counts, what
    /// is left out and the gaps. Network-controlled text is made safe for a terminal.
    pub fn review(&self) -> String {
        let mut text = String::from("The bundle will hold:\n");
        for f in &self.files {
            let redacted = match f.redactions {
                0 => String::new(),
                1 => ", 1 value REDACTED".to_string(),
                n => format!(", {n} values REDACTED"),
            };
            text.push_str(&format!(
                "  {:<48} {:>10}  {}{redacted}\n",
                f.name,
                human_size(f.size),
                f.contains
            ));
        }
        for (name, contents, what) in &self.generated {
            let size = human_size(contents.len() as u64);
            text.push_str(&format!("  {name:<48} {size:>10}  {what}\n"));
        }
        if !self.left_out.is_empty() {
            text.push_str("Left out:\n");
            for l in &self.left_out {
                text.push_str(&format!("  {}: {}\n", l.what, l.why));
            }
        }
        if !self.gaps.is_empty() {
            text.push_str("Missing or damaged in the session folders (bundled as they are):\n");
            for g in &self.gaps {
                text.push_str(&format!("  {}: {}\n", g.path, g.problem));
            }
        }
        crate::text::terminal(&text, true).into_owned()
    }
}

/// Who agreed to the bundle's contents, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// `terminal` (a person answered yes after the review), `--yes` (a script; no person
    /// reviewed it) or `live_page` (the Download bundle button).
    pub how: String,
    /// The user account that made the bundle.
    pub reviewed_by: String,
    pub at: String,
}

/// One file in the zip, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub contains: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redactions: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `manifest.json`: written last, listing every other file in the zip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub diagproxy: String,
    pub created_at: String,
    pub sessions: Vec<String>,
    pub files: Vec<FileEntry>,
    /// Values replaced by `REDACTED`, per file, and in all.
    pub redactions: BTreeMap<String, u64>,
    pub redactions_total: u64,
    pub left_out: Vec<LeftOut>,
    pub gaps: Vec<Gap>,
    pub consent: Consent,
}

/// What `bundle --verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Listed, not in the zip.
    Missing(String),
    /// In the zip, not listed.
    Unlisted(String),
    /// Listed with other bytes.
    Changed {
        path: String,
        size: u64,
        sha256: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Missing(p) => write!(f, "{p}: listed in the manifest, not in the zip"),
            Mismatch::Unlisted(p) => write!(f, "{p}: in the zip, not in the manifest"),
            Mismatch::Changed { path, size, sha256 } => {
                write!(f, "{path}: changed (now {size} bytes, SHA-256 {sha256})")
            }
        }
    }
}

impl Manifest {
    /// Compares the manifest with what the zip holds (name, size, SHA-256 of each entry
    /// other than the manifest itself).
    pub fn compare(&self, found: &[(String, u64, String)]) -> Vec<Mismatch> {
        let mut problems = Vec::new();
        for entry in &self.files {
            match found.iter().find(|(name, _, _)| *name == entry.path) {
                None => problems.push(Mismatch::Missing(entry.path.clone())),
                Some((_, size, sha)) if *size != entry.size || *sha != entry.sha256 => problems
                    .push(Mismatch::Changed {
                        path: entry.path.clone(),
                        size: *size,
                        sha256: sha.clone(),
                    }),
                Some(_) => {}
            }
        }
        for (name, _, _) in found {
            if !self.files.iter().any(|e| e.path == *name) {
                problems.push(Mismatch::Unlisted(name.clone()));
            }
        }
        problems
    }
}

/// `1.2 KiB`, `3.4 MiB`: sizes as a person reads them.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: &[(&str, u64, &str)]) -> Manifest {
        Manifest {
            version: VERSION,
            diagproxy: "0".into(),
            created_at: "t".into(),
            sessions: vec![],
            files: files
                .iter()
                .map(|(p, s, h)| FileEntry {
                    path: p.to_string(),
                    size: *s,
                    sha256: h.to_string(),
                    contains: String::new(),
                    redactions: 0,
                })
                .collect(),
            redactions: BTreeMap::new(),
            redactions_total: 0,
            left_out: vec![],
            gaps: vec![],
            consent: Consent {
                how: "--yes".into(),
                reviewed_by: "u".into(),
                at: "t".into(),
            },
        }
    }

    #[test]
    fn verification_names_every_kind_of_difference() {
        let m = manifest(&[("a", 1, "aa"), ("b", 2, "bb"), ("c", 3, "cc")]);
        let found = vec![
            ("a".to_string(), 1, "aa".to_string()),
            ("b".to_string(), 2, "XX".to_string()),
            ("d".to_string(), 4, "dd".to_string()),
        ];
        let problems = m.compare(&found);
        assert_eq!(
            problems,
            vec![
                Mismatch::Changed {
                    path: "b".into(),
                    size: 2,
                    sha256: "XX".into()
                },
                Mismatch::Missing("c".into()),
                Mismatch::Unlisted("d".into()),
            ]
        );
        let whole = vec![
            ("a".to_string(), 1, "aa".to_string()),
            ("b".to_string(), 2, "bb".to_string()),
            ("c".to_string(), 3, "cc".to_string()),
        ];
        assert!(m.compare(&whole).is_empty());
        // A size change alone is a change.
        let longer = vec![("a".to_string(), 9, "aa".to_string())];
        assert!(matches!(
            manifest(&[("a", 1, "aa")]).compare(&longer)[0],
            Mismatch::Changed { .. }
        ));
    }

    #[test]
    fn the_review_lists_files_redactions_left_out_and_gaps_safely() {
        let plan = Plan {
            files: vec![Planned {
                source: PathBuf::from("/s/events.jsonl"),
                name: "s/events.jsonl".into(),
                size: 2048,
                contains: "every event \u{1b}[31m".into(),
                redactions: 3,
                transform: Transform::Copy,
            }],
            generated: vec![(
                "environment.json".into(),
                "{}".into(),
                "this machine".into(),
            )],
            left_out: vec![LeftOut {
                what: "/k.log".into(),
                why: "the TLS key log".into(),
            }],
            gaps: vec![Gap {
                path: "s/report.html".into(),
                problem: "missing".into(),
            }],
            sessions: vec!["s".into()],
        };
        let review = plan.review();
        assert!(review.contains("s/events.jsonl"), "{review}");
        assert!(review.contains("2.0 KiB"), "{review}");
        assert!(review.contains("3 values REDACTED"), "{review}");
        assert!(review.contains("environment.json"), "{review}");
        assert!(
            review.contains("Left out:\n  /k.log: the TLS key log"),
            "{review}"
        );
        assert!(review.contains("s/report.html: missing"), "{review}");
        assert!(!review.contains('\u{1b}'), "{review}");
        assert_eq!(plan.redactions()["s/events.jsonl"], 3);
    }

    #[test]
    fn sensitive_names_round_trip() {
        for s in Sensitive::ALL {
            assert_eq!(Sensitive::parse(s.name()), Some(s));
        }
        assert_eq!(Sensitive::parse("everything"), None);
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }
}
