//! RFC 3339 timestamps (`2026-11-22T05:14:00Z`) for conditions and drain times,
//! without a date library: UTC only, second precision.

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX);
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS` with `Z` or a `+HH:MM`/`-HH:MM` offset (fractions of a
/// second are ignored) into unix seconds.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid time {text:?}: use RFC 3339 such as 2026-01-31T12:00:00Z");
    let t = text.trim();
    if t.len() < 20 || !t.is_char_boundary(19) {
        return Err(bad());
    }
    let (main, zone) = t.split_at(19);
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        main.get(range).and_then(|s| s.parse().ok()).ok_or_else(bad)
    };
    let sep = |i: usize, c: u8| main.as_bytes().get(i) == Some(&c);
    if !(sep(4, b'-')
        && sep(7, b'-')
        && (sep(10, b'T') || sep(10, b't'))
        && sep(13, b':')
        && sep(16, b':'))
    {
        return Err(bad());
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let zone = match zone.find(['Z', 'z', '+', '-']) {
        Some(i) => &zone[i..],
        None => return Err(bad()),
    };
    let offset = match zone.as_bytes().first() {
        Some(b'Z' | b'z') => 0,
        Some(sign) => {
            let h: i64 = zone
                .get(1..3)
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            let m: i64 = zone
                .get(4..6)
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        None => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let unix = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(unix).map_err(|_| bad())
}

/// Howard Hinnant's days-from-civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_offsets() {
        for unix in [0, 951_782_400, 1_700_000_000, 1_795_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(unix)).unwrap(), unix);
        }
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00").unwrap(),
            1_700_000_000
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123Z").unwrap(),
            1_700_000_000
        );
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14 22:13:20",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
