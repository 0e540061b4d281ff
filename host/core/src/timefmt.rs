//! UTC timestamps in ISO 8601 for archive lines, without a date library.

/// Formats `secs.nanos` since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn iso8601(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos / 1000
    )
}

/// Parses what [`iso8601`] writes (fraction optional) back to seconds.
pub fn parse_iso8601(s: &str) -> Option<(i64, u32)> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut dp = date.splitn(3, '-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut tp = hms.splitn(3, ':');
    // Unsigned: "-5" minutes is no time of day.
    let hh = i64::from(tp.next()?.parse::<u32>().ok()?);
    let mm = i64::from(tp.next()?.parse::<u32>().ok()?);
    let ss = i64::from(tp.next()?.parse::<u32>().ok()?);
    // Years past 9999 are not ISO 8601 without agreement, and far enough
    // out the day count overflows.
    if !(-9999..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || hh > 23
        || mm > 59
        || ss > 60
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = frac.len().min(9);
    let mut nanos: u32 = frac.get(..digits)?.parse().ok()?;
    for _ in digits..9 {
        nanos *= 10;
    }
    Some((
        days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss,
        nanos,
    ))
}

// Howard Hinnant's algorithms.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for s in [0i64, 1_764_113_949, -86_401, 951_782_400] {
            let t = iso8601(s, 123_456_000);
            assert_eq!(parse_iso8601(&t), Some((s, 123_456_000)), "{t}");
        }
        assert_eq!(iso8601(0, 0), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        for s in [
            "2026666666666-01-01T00:00:00Z",
            "2024-01-01T00:-99999999999:00Z",
            "2024-01-01T-1:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00.-5Z",
        ] {
            assert_eq!(parse_iso8601(s), None, "{s}");
        }
    }
}
