//! Prometheus text exposition (format 0.0.4): the families a check becomes (`check`), and
//! the running proxy's counters (`proxy`). This file: the writer — `# HELP` and `# TYPE`
//! once per family, samples with escaped label values, network text cut to a bounded
//! length so a label can never grow without limit. Pure.

pub mod check;
pub mod proxy;

use std::fmt::Write;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The longest label value written (issuer and subject names come from the network).
pub const MAX_LABEL: usize = 256;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One family: its samples are added in order, then written together.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample with these labels (values are cut to [`MAX_LABEL`] and escaped on
    /// output). A label set already there keeps its first value: an exposition may not
    /// repeat a series (two findings of one kind on one host are one `_info` series).
    pub fn add(&mut self, labels: &[(&'static str, &str)], value: f64) {
        let labels: Vec<(&'static str, String)> = labels
            .iter()
            .map(|(name, value)| (*name, clip(value)))
            .collect();
        if self.samples.iter().any(|(seen, _)| *seen == labels) {
            return;
        }
        self.samples.push((labels, value));
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Families written as one exposition: a family with no samples is left out entirely.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families.iter().filter(|f| !f.is_empty()) {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
        for (labels, value) in &family.samples {
            out.push_str(family.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(*value));
        }
    }
    out
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Network text as a label: control characters dropped, at most [`MAX_LABEL`] bytes.
fn clip(value: &str) -> String {
    let clean: String = value
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect();
    crate::text::clip(&clean, MAX_LABEL).into_owned()
}

/// A sample value: integers without a fraction, NaN and infinities as the format spells them.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_once_with_escaped_labels() {
        let mut a = Family::new("probe_success", Kind::Gauge, "Whether the probe worked.");
        a.add(&[("host", "chatgpt.com")], 1.0);
        a.add(&[("host", "a\"b\\c\nd")], 0.0);
        let empty = Family::new("unused", Kind::Gauge, "Never written.");
        let mut b = Family::new("x_total", Kind::Counter, "A count.");
        b.add(&[], 2.5);
        let text = render(&[a, empty, b]);
        assert_eq!(
            text,
            "# HELP probe_success Whether the probe worked.\n# TYPE probe_success gauge\n\
             probe_success{host=\"chatgpt.com\"} 1\nprobe_success{host=\"a\\\"b\\\\c\\nd\"} 0\n\
             # HELP x_total A count.\n# TYPE x_total counter\nx_total 2.5\n"
        );
    }

    #[test]
    fn a_series_is_written_once() {
        let mut f = Family::new("diagproxy_finding_info", Kind::Gauge, "h");
        f.add(&[("host", "a"), ("kind", "block_page")], 1.0);
        f.add(&[("host", "a"), ("kind", "block_page")], 2.0);
        f.add(&[("host", "b"), ("kind", "block_page")], 1.0);
        assert_eq!(
            render(&[f]),
            "# HELP diagproxy_finding_info h\n# TYPE diagproxy_finding_info gauge\n\
             diagproxy_finding_info{host=\"a\",kind=\"block_page\"} 1\n\
             diagproxy_finding_info{host=\"b\",kind=\"block_page\"} 1\n"
        );
    }

    #[test]
    fn label_values_are_bounded_and_numbers_spelled_right() {
        let mut f = Family::new("f", Kind::Gauge, "h");
        f.add(&[("issuer", &"x".repeat(10_000))], f64::NAN);
        let text = render(&[f]);
        assert!(text.len() < MAX_LABEL + 100, "{}", text.len());
        assert!(text.ends_with(" NaN\n"));
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(1_700_000_000.0), "1700000000");
        assert_eq!(number(0.25), "0.25");
    }
}
