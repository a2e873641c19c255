//! Wall-clock timestamps for the session files (RFC 3339, UTC), without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-11-27T18:30:01.123Z`. Every recorded event carries one, so it is written digit by
/// digit into one string rather than through `format!`.
pub fn rfc3339(t: SystemTime) -> String {
    let p = Parts::of(t);
    if let Some(text) = p.rfc3339_fixed() {
        return text;
    }
    let mut out = String::with_capacity(24);
    p.date(&mut out, "-");
    out.push('T');
    p.time(&mut out, ":");
    out.push('.');
    digits(&mut out, u64::from(p.millis), 3);
    out.push('Z');
    out
}

/// `20261127T183001Z`, for folder names.
pub fn compact(t: SystemTime) -> String {
    let p = Parts::of(t);
    let mut out = String::with_capacity(16);
    p.date(&mut out, "");
    out.push('T');
    p.time(&mut out, "");
    out.push('Z');
    out
}

/// Milliseconds as a float, the unit of every timing in the session files.
/// `1 h 2 min`, `7 min 30 s`, `42 s`: a span a person reads at a glance.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec} s"),
        (0, min, sec) => format!("{min} min {sec} s"),
        (h, min, _) => format!("{h} h {min} min"),
    }
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// A UTC instant taken apart into calendar fields.
struct Parts {
    year: i64,
    month: u32,
    day: u32,
    /// Seconds since midnight.
    second_of_day: u64,
    millis: u32,
}

impl Parts {
    fn of(t: SystemTime) -> Parts {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        Parts {
            year,
            month,
            day,
            second_of_day: secs % 86_400,
            millis: since.subsec_millis(),
        }
    }

    /// The RFC 3339 text of a year with four digits, filled into a fixed buffer (every
    /// event carries one: this is a fifth of the cost of pushing it digit by digit).
    fn rfc3339_fixed(&self) -> Option<String> {
        let year = u64::try_from(self.year).ok().filter(|y| *y <= 9999)?;
        let s = self.second_of_day;
        let mut text = *b"0000-00-00T00:00:00.000Z";
        let fields = [
            (0, 4, year),
            (5, 2, u64::from(self.month)),
            (8, 2, u64::from(self.day)),
            (11, 2, s / 3600),
            (14, 2, s % 3600 / 60),
            (17, 2, s % 60),
            (20, 3, u64::from(self.millis)),
        ];
        for (at, width, mut n) in fields {
            for place in text[at..at + width].iter_mut().rev() {
                *place = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
        std::str::from_utf8(&text).ok().map(str::to_owned)
    }

    fn date(&self, out: &mut String, sep: &str) {
        digits(out, self.year.unsigned_abs(), 4);
        out.push_str(sep);
        digits(out, u64::from(self.month), 2);
        out.push_str(sep);
        digits(out, u64::from(self.day), 2);
    }

    fn time(&self, out: &mut String, sep: &str) {
        let s = self.second_of_day;
        digits(out, s / 3600, 2);
        out.push_str(sep);
        digits(out, s % 3600 / 60, 2);
        out.push_str(sep);
        digits(out, s % 60, 2);
    }
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn digits(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let (mut i, mut n) = (buf.len(), n);
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    for &b in &buf[start..] {
        out.push(char::from(b));
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_spans() {
        assert_eq!(human(Duration::from_secs(42)), "42 s");
        assert_eq!(human(Duration::from_secs(450)), "7 min 30 s");
        assert_eq!(human(Duration::from_secs(3720)), "1 h 2 min");
    }

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_804_201_123);
        assert_eq!(rfc3339(t), "2026-11-27T18:30:01.123Z");
        assert_eq!(compact(t), "20261127T183001Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        let late = UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
        assert_eq!(rfc3339(late), "9999-12-31T23:59:59.999Z");
        // Past four digits of year the slow path writes five.
        let later = UNIX_EPOCH + Duration::from_millis(253_402_300_800_000);
        assert_eq!(rfc3339(later), "10000-01-01T00:00:00.000Z");
        assert_eq!(compact(late), "99991231T235959Z");
    }

    #[test]
    fn ms_keeps_microseconds() {
        assert_eq!(ms(Duration::from_micros(1_234_567)), 1234.567);
    }
}
