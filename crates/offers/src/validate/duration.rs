//! Go-style durations (`1h0m0s`), the spelling of obol's `drainGracePeriod` and of
//! `agora sell stop --grace`.

use std::time::Duration;

use super::ValidationError;

/// Parses a Go-style duration (`1h`, `30m`, `1h0m0s`, `90s`, `0s`). Arithmetic is
/// checked: a duration too long to count in seconds is an error, never a wrap or a panic.
pub fn parse_duration(input: &str) -> Result<Duration, ValidationError> {
    let bad = || {
        ValidationError::Drain(format!(
            "invalid duration {input:?}: use hours, minutes and seconds such as 1h, 30m or 1h0m0s"
        ))
    };
    let too_long = || {
        ValidationError::Drain(format!(
            "duration {input:?} is too long to count; use at most {MAX_DURATION_HOURS}h (about a million years)"
        ))
    };
    let mut total = 0u64;
    let mut digits = String::new();
    for c in input.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        if digits.is_empty() {
            return Err(bad());
        }
        // All digits, so the only way `parse` fails is a number beyond u64.
        let n: u64 = digits.parse().map_err(|_| too_long())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .filter(|&t| t <= MAX_DURATION_HOURS * 3600)
            .ok_or_else(too_long)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// The longest duration accepted, so a parsed duration can still be added to a unix
/// time or an `Instant` without overflow.
const MAX_DURATION_HOURS: u64 = 10_000_000_000;

/// Writes a duration the Go way (`1h0m0s`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_the_go_way() {
        assert_eq!(parse_duration("1h0m0s").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("1d").is_err());
        assert_eq!(format_duration(Duration::from_secs(3661)), "1h1m1s");
    }

    #[test]
    fn durations_too_long_to_count_are_errors_not_wraps() {
        let max = format!("{MAX_DURATION_HOURS}h");
        assert_eq!(
            parse_duration(&max).unwrap(),
            Duration::from_secs(MAX_DURATION_HOURS * 3600)
        );
        for huge in [
            // overflows u64 when multiplied by 3600 (and wraps to a small number)
            "99999999999999999h",
            "5124095576030432h",
            // overflows u64 when multiplied by 60
            "307445734561825861m",
            // every part fits, the sum does not
            "18446744073709551615s1s",
            // more digits than a u64 holds
            "99999999999999999999999s",
            // fits in u64 but is beyond the cap
            "10000000001h",
            "18446744073709551615s",
        ] {
            let message = parse_duration(huge).unwrap_err().to_string();
            assert!(message.contains("too long"), "{huge}: {message}");
            assert!(message.contains(&max), "{huge}: {message}");
        }
        for malformed in ["h", "1hm", "1h 1", "-1h", "1.5h"] {
            let message = parse_duration(malformed).unwrap_err().to_string();
            assert!(message.contains("such as 1h"), "{malformed}: {message}");
        }
    }
}
