//! Reading `val_bpb` out of a finished run. Upstream's documented extraction is
//! `grep "^val_bpb:" run.log`, and a run may print early evaluations before the final
//! one, so the LAST such line wins; JSON output, a looser pattern and `results.tsv`
//! are fallbacks for scripts that report differently.

use std::path::Path;

/// Where a `val_bpb` was found, recorded in the result so a surprising value can be
/// traced to the rule that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The last line starting `val_bpb:` (upstream's summary).
    SummaryLine,
    /// A JSON object printed as the whole output or its last line.
    Json,
    /// The last `val_bpb = N`-like match anywhere in the log.
    Pattern,
    /// The minimum of the `val_bpb` column in the run's `results.tsv`.
    ResultsTsv,
}

impl Source {
    /// The name stored in the result's `val_bpb_source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::SummaryLine => "summary_line",
            Source::Json => "json",
            Source::Pattern => "pattern",
            Source::ResultsTsv => "results_tsv",
        }
    }
}

/// The run's `val_bpb` from its stdout, its whole log and its work directory, trying
/// each rule in order.
pub fn val_bpb(stdout: &str, log: &str, workdir: &Path) -> Option<(f64, Source)> {
    summary_line(log)
        .map(|v| (v, Source::SummaryLine))
        .or_else(|| json_output(stdout).map(|v| (v, Source::Json)))
        .or_else(|| last_pattern(log).map(|v| (v, Source::Pattern)))
        .or_else(|| {
            // The buyer wrote the work directory: a `results.tsv` that is a symlink
            // could point at one of the seller's files, which the worker would read.
            let path = workdir.join("results.tsv");
            if !std::fs::symlink_metadata(&path).ok()?.is_file() {
                return None;
            }
            let file = super::run::open_read_nofollow(&path).ok()?;
            let tsv = std::io::read_to_string(file).ok()?;
            tsv_minimum(&tsv).map(|v| (v, Source::ResultsTsv))
        })
}

/// The value on the last line that starts `val_bpb:` (progress lines end in `\r`, so
/// both line ends split).
fn summary_line(log: &str) -> Option<f64> {
    log.split(['\n', '\r'])
        .rev()
        .filter_map(|line| line.strip_prefix("val_bpb:"))
        .find_map(|rest| number(rest.split_whitespace().next()?))
}

/// `val_bpb` or `metrics.val_bpb` of a JSON object that is the whole stdout or its
/// last non-empty line.
fn json_output(stdout: &str) -> Option<f64> {
    let whole = stdout.trim();
    let last = whole.lines().rev().find(|l| !l.trim().is_empty())?;
    [whole, last.trim()].into_iter().find_map(|text| {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let field = |v: &serde_json::Value| match v.get("val_bpb")? {
            serde_json::Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
            serde_json::Value::String(s) => number(s),
            _ => None,
        };
        field(&value).or_else(|| field(value.get("metrics")?))
    })
}

/// The last `val_bpb[:=]N`, `best_val_bpb[:=]N` or `"val_bpb": N` in the log, any
/// case; `val_bpb` must stand alone as a word (or follow `best_`/`best `).
fn last_pattern(log: &str) -> Option<f64> {
    let lower = log.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = None;
    for (at, token) in lower
        .match_indices("val_bpb")
        .chain(lower.match_indices("val bpb"))
    {
        let before = &lower[..at];
        let starts_word = before.bytes().next_back().is_none_or(|b| !word(b))
            || ((before.ends_with("best_") || before.ends_with("best "))
                && before[..before.len() - 5]
                    .bytes()
                    .next_back()
                    .is_none_or(|b| !word(b)));
        let mut i = at + token.len();
        if !starts_word || bytes.get(i).is_some_and(|&b| word(b)) {
            continue;
        }
        if bytes.get(i) == Some(&b'"') {
            i += 1;
        }
        let rest = lower[i..].trim_start();
        let Some(rest) = rest.strip_prefix([':', '=']) else {
            continue;
        };
        let rest = rest.trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if let Some(v) = number(rest[..end].trim_end_matches('.'))
            && found.is_none_or(|(pos, _)| at > pos)
        {
            found = Some((at, v));
        }
    }
    found.map(|(_, v)| v)
}

/// The smallest `val_bpb` in a `results.tsv`: the column headed `val_bpb`, or the
/// second column when there is no header (both the reference's 4-column and
/// upstream's 5-column formats put it there). Zero is skipped: upstream writes
/// `0.000000` for a crashed run.
pub fn tsv_minimum(tsv: &str) -> Option<f64> {
    let mut rows = tsv.lines().filter(|l| !l.trim().is_empty()).peekable();
    let header = rows.peek()?.split('\t').position(|c| c.trim() == "val_bpb");
    if header.is_some() {
        rows.next();
    }
    let column = header.unwrap_or(1);
    rows.filter_map(|row| number(row.split('\t').nth(column)?.trim()))
        .filter(|v| *v > 0.0)
        .min_by(f64::total_cmp)
}

/// A finite, non-negative decimal number.
fn number(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_summary_line_wins_over_an_early_evaluation() {
        let log =
            "val_bpb: 1.500000\nstep 100\r---\nval_bpb:          0.997900\ntraining_seconds: 1.0\n";
        assert_eq!(summary_line(log), Some(0.9979));
    }

    #[test]
    fn json_output_whole_or_last_line_and_metrics() {
        assert_eq!(json_output("{\"val_bpb\": 1.25}"), Some(1.25));
        assert_eq!(
            json_output("loading\n{\"metrics\": {\"val_bpb\": \"0.9\"}}\n"),
            Some(0.9)
        );
        assert_eq!(json_output("[1, 2]"), None);
    }

    #[test]
    fn the_pattern_takes_the_last_match_and_needs_a_word_boundary() {
        assert_eq!(
            last_pattern("eval val_bpb=1.4 ... final VAL_BPB = 1.2."),
            Some(1.2)
        );
        assert_eq!(last_pattern("best_val_bpb: 0.8"), Some(0.8));
        assert_eq!(last_pattern("{\"val_bpb\": 0.75}"), Some(0.75));
        assert_eq!(last_pattern("myval_bpb=0.1 val_bpbs=0.2"), None);
    }

    #[test]
    fn tsv_minimum_reads_both_formats_with_and_without_header() {
        let upstream = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\na1\t0.99\t44.0\tkeep\tbase\nb2\t0.97\t44.2\tkeep\tlr\nc3\t0.000000\t0.0\tcrash\toom\n";
        assert_eq!(tsv_minimum(upstream), Some(0.97));
        assert_eq!(
            tsv_minimum("a1\t1.1\tkeep\tx\nb2\t1.05\tdiscard\ty\n"),
            Some(1.05)
        );
        assert_eq!(tsv_minimum(""), None);
    }
}
