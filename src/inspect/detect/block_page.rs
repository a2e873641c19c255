//! The block-page detector: a product's signature matched on a kept answer (its hosts,
//! names, headers or redirects over its phrases and titles over a title other products use
//! too), else the generic rule for a page by an unknown product.

use super::answer::{expects_api, Answer};
use crate::inspect::finding::{Finding, FindingKind};
use crate::inspect::page::Page;
use crate::profile::{BlockRule, BlockSignature, Profile};
use crate::session::redact;
use crate::text;

/// A block page: a product's signature (the strongest match wins: its hosts, names,
/// headers or redirects over its phrases and titles over a title other products use too,
/// which only says "possibly"), else the generic rule for an unknown product. The finding
/// carries an excerpt of what the user saw.
pub fn block_page(a: &Answer<'_>, profile: &Profile) -> Option<Finding> {
    let page = Page::read(a.body, a.headers);
    let reads_as_block = reads_as_block(&page, &profile.block_rule);
    // A redirect's target, lower-cased once for every signature to look at.
    let location = a
        .header("location")
        .filter(|_| (300..400).contains(&a.status))
        .map(str::to_ascii_lowercase);
    let best = profile
        .block_signatures
        .iter()
        .filter_map(|sig| {
            let m = signature_match(a, &page, sig, reads_as_block, location.as_deref())?;
            Some((m, sig))
        })
        .fold(
            None,
            |best: Option<(Match, &BlockSignature)>, (m, sig)| match best {
                Some((ref b, _)) if b.strength >= m.strength => best,
                _ => Some((m, sig)),
            },
        );
    let mut finding = match best {
        Some((m, sig)) => vendor_finding(a, profile, m, &sig.vendor),
        None if reads_as_block && generic_rule_applies(a, &page, profile) => {
            unknown_vendor_finding(a, &page, profile)
        }
        None => return None,
    };
    finding.excerpt = page.excerpt().map(|e| excerpt_text(&e));
    Some(finding)
}

/// How surely a signature names the product behind a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    /// A title or phrase other products use too.
    Possibly,
    /// One of the product's own phrases or titles.
    Phrase,
    /// The product's name, header, host or redirect target.
    Identifies,
}

/// One signature's match on a page: how sure, and what matched.
#[derive(Debug)]
struct Match {
    strength: Strength,
    evidence: String,
}

/// The strongest way `sig` matches the answer, if any; `location` is a redirect's target,
/// lower case.
fn signature_match(
    a: &Answer<'_>,
    page: &Page,
    sig: &BlockSignature,
    reads_as_block: bool,
    location: Option<&str>,
) -> Option<Match> {
    let status = a.status;
    let found = |strength, evidence: String| Some(Match { strength, evidence });
    let target = location.and_then(|l| {
        let m = sig
            .location
            .iter()
            .find(|m| l.contains(&m.to_ascii_lowercase()))?;
        Some((l, m))
    });
    if let Some((to, m)) = target {
        return found(
            Strength::Identifies,
            format!("status {status} redirect to {to:?} (matches {m:?})"),
        );
    }
    let looks_blocked = page.is_html && (status >= 400 || reads_as_block);
    if looks_blocked {
        if let Some((name, value)) = sig.headers.iter().find(|(name, value)| {
            a.header(name)
                .is_some_and(|v| v.to_ascii_lowercase().contains(&value.to_ascii_lowercase()))
        }) {
            return found(
                Strength::Identifies,
                format!("status {status} HTML answer with header {name}: {value}"),
            );
        }
        if let Some(name) = sig.names.iter().find(|n| page.contains(n)) {
            return found(
                Strength::Identifies,
                format!("status {status} page that names {name:?}"),
            );
        }
    }
    if let Some(m) = sig.body.iter().find(|m| page.contains(m)) {
        return found(
            Strength::Phrase,
            format!("status {status} with body marker {m:?}"),
        );
    }
    if let Some(t) = sig.titles.iter().find(|t| page.has_title(t)) {
        return found(
            Strength::Phrase,
            format!("status {status} page titled {t:?}"),
        );
    }
    let generic = sig
        .generic
        .iter()
        .find(|g| page.has_title(g) || page.contains(g))?;
    found(
        Strength::Possibly,
        format!("status {status} page with {generic:?}, which other products use too"),
    )
}

/// Whether the page's title or first text has one of the rule's words.
fn reads_as_block(page: &Page, rule: &BlockRule) -> bool {
    if !page.is_html {
        return false;
    }
    let heading = page.heading_lower();
    rule.words.iter().any(|w| heading.contains(w.as_str()))
}

/// The generic rule's other conditions: HTML from an allowlisted host, with a refusal status
/// (or a 200 where the app expects JSON or an event stream), not from the origin's own CDN.
fn generic_rule_applies(a: &Answer<'_>, page: &Page, profile: &Profile) -> bool {
    let rule = &profile.block_rule;
    let status_says = rule.statuses.contains(&a.status) || (a.status == 200 && expects_api(a));
    let from_origin_cdn = rule.origin_headers.iter().any(|(name, value)| {
        a.header(name)
            .is_some_and(|v| v.to_ascii_lowercase().contains(&value.to_ascii_lowercase()))
    });
    page.is_html && status_says && !from_origin_cdn && profile.match_host(a.host).is_some()
}

fn vendor_finding(a: &Answer<'_>, profile: &Profile, m: Match, vendor: &str) -> Finding {
    if m.strength > Strength::Possibly {
        let detail = format!(
            "{vendor} answered {}{} with its block page instead of the server",
            a.host, a.path
        );
        return Finding::new(
            profile,
            FindingKind::BlockPage,
            a.host,
            Some(vendor.to_string()),
            m.evidence,
            detail,
        );
    }
    let detail = format!(
        "a security product, possibly {vendor}, answered {}{} with a block page instead of the server",
        a.host, a.path
    );
    let mut finding = Finding::new(
        profile,
        FindingKind::BlockPage,
        a.host,
        None,
        m.evidence,
        detail,
    );
    finding.remedy = finding.remedy.replace(
        "the security product",
        &format!("the security product (possibly {vendor})"),
    );
    finding.vendor = Some(format!("possibly {vendor}"));
    finding
}

fn unknown_vendor_finding(a: &Answer<'_>, page: &Page, profile: &Profile) -> Finding {
    let shown = page
        .title
        .clone()
        .unwrap_or_else(|| page.text.chars().take(80).collect());
    let evidence = format!(
        "status {} HTML page {:?} says it is a block (generic rule)",
        a.status,
        text::terminal(&shown, false)
    );
    let detail = format!(
        "a security product answered {}{} with a block page instead of the server",
        a.host, a.path
    );
    Finding::new(
        profile,
        FindingKind::BlockPage,
        a.host,
        None,
        evidence,
        detail,
    )
}

/// An excerpt as recorded: no control characters, URLs with their secrets redacted.
fn excerpt_text(excerpt: &str) -> String {
    text::terminal(excerpt, false)
        .split(' ')
        .map(|word| {
            if word.contains("://") {
                redact::url(word)
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
