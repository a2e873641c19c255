//! The bench's output for people: the table with its legend, and `--compare`'s row-by-row
//! difference against an earlier run's `--json`.

use super::Report;

/// The table, for people.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{} on {} core(s) ({}), {} s per measurement\n\n",
        report.proxy, report.cores, report.pinning, report.duration_s
    );
    out.push_str(&format!(
        "{:<52} {:>8} {:>12} {:>12} {:>8} {:>11} {:>19} {:>12}\n",
        "mode",
        "unit",
        "direct",
        "via proxy",
        "ratio",
        "added/req",
        "p99 µs direct/proxy",
        "proxy CPU µs"
    ));
    let num = |v: Option<f64>| {
        v.map_or("-".to_string(), |v| {
            if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
    };
    for r in &report.rows {
        out.push_str(&format!(
            "{:<52} {:>8} {:>12} {:>12} {:>8} {:>11} {:>19} {:>12}\n",
            r.mode,
            r.unit,
            num(r.direct),
            num(r.proxy),
            r.ratio.map_or("-".into(), |x| format!("{x:.2}×")),
            r.added_us.map_or("-".into(), |a| format!("{a:+.0} µs")),
            r.p99_us
                .map_or("-".into(), |[a, b]| format!("{a:.0}/{b:.0}")),
            num(r.proxy_cpu_us),
        ));
    }
    out.push_str(LEGEND);
    out
}

/// `--compare`: each row of `now` against the same row of `before` (an earlier run's
/// `--json`), the value through the proxy and the proxy's CPU per unit, with the change.
pub fn compare(now: &Report, before: &Report) -> String {
    let mut out = format!(
        "\ncompared with an earlier run ({}, {} s per measurement):\n{:<52} {:>8} {:>12} {:>12} {:>8} {:>12} {:>12} {:>8}\n",
        before.proxy, before.duration_s, "mode", "unit", "before", "now", "change", "CPU before", "CPU now", "change"
    );
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let change = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a != 0.0 => format!("{:+.1}%", (b - a) / a * 100.0),
        _ => "-".into(),
    };
    for row in &now.rows {
        let Some(old) = before.rows.iter().find(|r| r.mode == row.mode) else {
            out.push_str(&format!("{:<52} (new in this run)\n", row.mode));
            continue;
        };
        out.push_str(&format!(
            "{:<52} {:>8} {:>12} {:>12} {:>8} {:>12} {:>12} {:>8}\n",
            row.mode,
            row.unit,
            num(old.proxy),
            num(row.proxy),
            change(old.proxy, row.proxy),
            num(old.proxy_cpu_us),
            num(row.proxy_cpu_us),
            change(old.proxy_cpu_us, row.proxy_cpu_us),
        ));
    }
    for old in before
        .rows
        .iter()
        .filter(|o| !now.rows.iter().any(|r| r.mode == o.mode))
    {
        out.push_str(&format!("{:<52} (not in this run)\n", old.mode));
    }
    out
}

/// What the table's columns mean, printed under it.
const LEGEND: &str = "
direct: the same load without a proxy; via proxy: through it, in alternating slices.
ratio: via proxy / direct (for rates, above 1 is faster; for times and sizes, below 1 is).
added/req: time the proxy adds per request or per connection, in µs (negative: faster).
p99 µs direct/proxy: the 99th percentile latency of each, in µs.
proxy CPU µs: the proxy process's CPU time per request (or per MB, per set-up), read
from /proc when its process is known; `-` when it is not (another proxy without --proxy-pid).
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Row;

    fn row(mode: &str, proxy: f64, cpu: f64) -> Row {
        Row {
            mode: mode.into(),
            unit: "req/s".into(),
            direct: None,
            proxy: Some(proxy),
            ratio: None,
            added_us: None,
            p50_us: None,
            p99_us: None,
            proxy_cpu_us: Some(cpu),
        }
    }

    fn report(rows: Vec<Row>) -> Report {
        Report {
            proxy: "diagproxy 0.1.0".into(),
            duration_s: 3.0,
            cores: 2,
            pinning: String::new(),
            rows,
        }
    }

    #[test]
    fn a_run_is_compared_row_by_row_with_a_saved_one() {
        let before = report(vec![
            row("forward c=64", 80_000.0, 12.5),
            row("gone", 1.0, 1.0),
        ]);
        let now = report(vec![
            row("forward c=64", 60_000.0, 15.0),
            row("fresh", 1.0, 1.0),
        ]);
        let text = compare(&now, &before);
        let line = text
            .lines()
            .find(|l| l.starts_with("forward c=64"))
            .unwrap();
        assert!(
            line.contains("80000.00") && line.contains("60000.00"),
            "{line}"
        );
        assert!(line.contains("-25.0%") && line.contains("+20.0%"), "{line}");
        assert!(
            text.contains("fresh") && text.contains("(new in this run)"),
            "{text}"
        );
        assert!(
            text.contains("gone") && text.contains("(not in this run)"),
            "{text}"
        );
        // What --json wrote reads back.
        let json = serde_json::to_string(&before).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.rows.len(), 2);
    }
}
