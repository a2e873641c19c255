//! Wall-clock timestamps for the session files (RFC 3339, UTC), without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-11-27T18:30:01.123Z`
pub fn rfc3339(t: SystemTime) -> String {
    let (date, (h, m, s), ms) = parts(t);
    format!("{date}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// `20261127T183001Z`, for folder names.
pub fn compact(t: SystemTime) -> String {
    let (date, (h, m, s), _) = parts(t);
    format!("{}T{h:02}{m:02}{s:02}Z", date.replace('-', ""))
}

/// `18:30:01.123`, for the live log.
pub fn time_of_day(t: SystemTime) -> String {
    let (_, (h, m, s), ms) = parts(t);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

/// Milliseconds as a float, the unit of every timing in the session files.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn parts(t: SystemTime) -> (String, (u64, u64, u64), u32) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, mo, d) = civil_from_days(days);
    (
        format!("{y:04}-{mo:02}-{d:02}"),
        (rem / 3600, rem % 3600 / 60, rem % 60),
        since.subsec_millis(),
    )
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
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_804_201_123);
        assert_eq!(rfc3339(t), "2026-11-27T18:30:01.123Z");
        assert_eq!(compact(t), "20261127T183001Z");
        assert_eq!(time_of_day(t), "18:30:01.123");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn ms_keeps_microseconds() {
        assert_eq!(ms(Duration::from_micros(1_234_567)), 1234.567);
    }
}
