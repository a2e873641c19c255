//! The report's first screen, for the manager who reads only that: one tile per capability
//! the profile names (web app, uploads, voice, login, App Attest, …) saying whether it
//! worked, failed or was not tested, and how many ChatGPT hosts failed. Pure: built from the
//! summary, rendered to HTML.

use std::fmt::Write;

use super::esc;
use crate::inspect::Finding;
use crate::session::summary::{HostStats, Summary};

/// How a capability fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Every host it needs that was touched worked.
    Worked,
    /// Something to look at, nothing that stops it.
    Warning,
    /// A host it needs failed.
    Failing,
    /// None of its hosts was touched in this session.
    NotTested,
}

impl State {
    fn words(self) -> &'static str {
        match self {
            State::Worked => "worked",
            State::Warning => "worked, with a warning",
            State::Failing => "failing",
            State::NotTested => "not tested",
        }
    }

    fn class(self) -> &'static str {
        match self {
            State::Worked => "ok",
            State::Warning => "warn",
            State::Failing => "fail",
            State::NotTested => "untouched",
        }
    }
}

/// One tile: a capability, its state, and the hosts behind it.
#[derive(Debug)]
pub struct Tile<'a> {
    pub name: &'a str,
    pub state: State,
    /// Hosts it needs that the session touched, and how many of them failed.
    pub touched: usize,
    pub failing: usize,
    /// The most serious finding among them.
    pub worst: Option<&'a Finding>,
}

/// A tile per capability of the profile.
pub fn tiles(summary: &Summary) -> Vec<Tile<'_>> {
    summary
        .profile()
        .capabilities
        .iter()
        .map(|cap| {
            let hosts: Vec<&HostStats> = summary
                .hosts()
                .filter(|h| {
                    h.allowlist
                        .as_ref()
                        .is_some_and(|p| cap.entries.contains(p))
                })
                .collect();
            let failing = hosts.iter().filter(|h| h.is_failing()).count();
            let worst = crate::inspect::finding::worst(hosts.iter().flat_map(|h| &h.findings));
            let state = match (hosts.len(), failing, worst) {
                (0, _, _) => State::NotTested,
                (_, 1.., _) => State::Failing,
                (_, 0, Some(_)) => State::Warning,
                (_, 0, None) => State::Worked,
            };
            Tile {
                name: &cap.name,
                state,
                touched: hosts.len(),
                failing,
                worst,
            }
        })
        .collect()
}

/// "3 of 5 ChatGPT hosts failed": allowlisted hosts the session touched, and the failing.
pub fn host_counts(summary: &Summary) -> (usize, usize) {
    let touched: Vec<&HostStats> = summary.hosts().filter(|h| h.allowlist.is_some()).collect();
    let failing = touched.iter().filter(|h| h.is_failing()).count();
    (failing, touched.len())
}

/// The tiles and the counts, as HTML.
pub fn render(out: &mut String, summary: &Summary) {
    let (failing, touched) = host_counts(summary);
    let entries = summary.profile().entries.len();
    let tested = summary.doc().allowlist.touched.len();
    let _ = write!(
        out,
        "<p class=\"counts\" id=\"counts\"><b>{failing} of {touched} ChatGPT host(s) failed</b> · {tested} of {entries} allowlist entries tested in this session</p><div class=\"tiles\" id=\"tiles\">"
    );
    for tile in tiles(summary) {
        let detail = match (tile.state, tile.worst) {
            (State::NotTested, _) => "none of its hosts was used".to_string(),
            (_, Some(f)) => format!(
                "{} of {} host(s) failed; {}",
                tile.failing,
                tile.touched,
                f.in_words()
            ),
            (_, None) => format!("{} host(s), all answered", tile.touched),
        };
        let _ = write!(
            out,
            "<div class=\"tile {}\"><div class=\"tile-name\">{}</div><div class=\"tile-state\">{}</div><div class=\"tile-detail\">{}</div></div>",
            tile.state.class(),
            esc(tile.name),
            tile.state.words(),
            esc(&detail)
        );
    }
    out.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn each_capability_is_worked_failing_or_not_tested() {
        let session = fixtures::session();
        let tiles = tiles(&session.summary);
        let state = |name: &str| {
            tiles
                .iter()
                .find(|t| t.name == name)
                .unwrap_or_else(|| panic!("{name}: {tiles:#?}"))
                .state
        };
        // The fixture: an upload blocked by FortiGuard, chatgpt.com re-signed by Zscaler,
        // nothing of voice.
        assert_eq!(state("Uploads, downloads and images"), State::Failing);
        assert_eq!(state("Web app and chat"), State::Failing);
        assert_eq!(state("Voice (Advanced Voice Mode)"), State::NotTested);
        let mut html = String::new();
        render(&mut html, &session.summary);
        assert!(html.contains("ChatGPT host(s) failed"), "{html}");
        assert!(html.contains("<div class=\"tile untouched\"><div class=\"tile-name\">Voice"));
        assert!(
            html.contains("blocked (block page) — Fortinet FortiGuard"),
            "{html}"
        );
    }
}
