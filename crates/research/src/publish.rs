//! Publishing an autoresearch result: the best kept row of `results.tsv`, its
//! provenance (the train hash of `train.py` exactly as committed, so anyone holding
//! the repo can check it), and the checkpoint to serve, which must be GGUF for a model
//! server to load it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::worker::run::is_checkpoint;

/// One experiment row of `results.tsv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The git commit holding the experiment's `train.py`.
    pub commit: String,
    /// `val_bpb` as written (kept verbatim for the provenance).
    pub val_bpb_text: String,
    /// `val_bpb` parsed.
    pub val_bpb: f64,
    /// `keep`, `discard` or `crash`.
    pub status: String,
    /// What the experiment tried.
    pub description: String,
}

/// Reads `results.tsv` in the reference's 4 columns (`commit_hash val_bpb status
/// description`) or upstream's 5 (`commit val_bpb memory_gb status description`),
/// with or without a header. Rows that cannot be read are errors naming the line.
pub fn parse_results(tsv: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut columns: Option<BTreeMap<String, usize>> = None;
    for (n, line) in tsv.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split('\t').map(str::trim).collect();
        if rows.is_empty() && columns.is_none() && cells.get(1) == Some(&"val_bpb") {
            columns = Some(
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.to_string(), i))
                    .collect(),
            );
            continue;
        }
        let at = |names: &[&str], fallback: usize| -> Option<&str> {
            let i = match &columns {
                Some(map) => names.iter().find_map(|n| map.get(*n).copied())?,
                None => fallback,
            };
            cells.get(i).copied()
        };
        let five = cells.len() >= 5;
        let bad = |what: &str| {
            format!(
                "results.tsv line {}: {what}; rows are `commit<TAB>val_bpb<TAB>[memory_gb<TAB>]status<TAB>description`",
                n + 1
            )
        };
        if columns.is_none() && cells.len() < 4 {
            return Err(bad(&format!("{} columns", cells.len())));
        }
        let commit = at(&["commit", "commit_hash"], 0).ok_or_else(|| bad("no commit"))?;
        let val_bpb_text = at(&["val_bpb"], 1).ok_or_else(|| bad("no val_bpb"))?;
        let val_bpb = val_bpb_text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad(&format!("val_bpb {val_bpb_text:?} is not a number")))?;
        let status = at(&["status"], if five { 3 } else { 2 }).ok_or_else(|| bad("no status"))?;
        let description = at(&["description"], if five { 4 } else { 3 }).unwrap_or_default();
        rows.push(Row {
            commit: commit.to_owned(),
            val_bpb_text: val_bpb_text.to_owned(),
            val_bpb,
            status: status.to_owned(),
            description: description.to_owned(),
        });
    }
    Ok(rows)
}

/// The kept row with the lowest `val_bpb` (zero marks a crash upstream and is skipped).
pub fn best(rows: &[Row]) -> Option<&Row> {
    rows.iter()
        .filter(|r| r.status == "keep" && r.val_bpb > 0.0)
        .min_by(|a, b| a.val_bpb.total_cmp(&b.val_bpb))
}

/// The raw bytes of `train.py` at `commit` (`git show <commit>:train.py`).
pub fn train_py_at(repo: &Path, commit: &str) -> Result<Vec<u8>, String> {
    if commit.len() < 4 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "commit {commit:?} in results.tsv is not a git commit hash (4 to 64 hex digits)"
        ));
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["show", &format!("{commit}:train.py")])
        .output()
        .map_err(|e| format!("cannot run git ({e}): install git"))?;
    if !out.status.success() {
        return Err(format!(
            "git show {commit}:train.py failed in {}: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// The parameter count from `metadata.json` or `config.json` in `repo` (keys
/// `param_count`, `n_params`, `num_parameters`, `total_params`), as text.
pub fn param_count(repo: &Path) -> Option<String> {
    ["metadata.json", "config.json"].iter().find_map(|file| {
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(repo.join(file)).ok()?).ok()?;
        ["param_count", "n_params", "num_parameters", "total_params"]
            .iter()
            .find_map(|key| match value.get(key)? {
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                _ => None,
            })
    })
}

/// The provenance of `row`: the reference's fields, all strings.
pub fn provenance(repo: &Path, row: &Row) -> Result<BTreeMap<String, String>, String> {
    let train_py = train_py_at(repo, &row.commit)?;
    let mut p = BTreeMap::from([
        ("framework".to_owned(), "autoresearch".to_owned()),
        ("metricName".to_owned(), "val_bpb".to_owned()),
        ("metricValue".to_owned(), row.val_bpb_text.clone()),
        ("experimentId".to_owned(), row.commit.clone()),
        ("trainHash".to_owned(), crate::train_hash(&train_py)),
    ]);
    if let Some(count) = param_count(repo) {
        p.insert("paramCount".to_owned(), count);
    }
    Ok(p)
}

/// The checkpoint to serve: `chosen` when given, else the newest `.gguf` under `repo`
/// (outside `.git`, `.venv` and caches). A `.gguf` is never hidden by other formats,
/// and a non-GGUF checkpoint is refused with the conversion to run, since model
/// servers (Ollama, llama.cpp) load GGUF.
pub fn checkpoint(repo: &Path, chosen: Option<&Path>) -> Result<PathBuf, String> {
    let convert = "convert it with llama.cpp (python convert_hf_to_gguf.py <model dir> --outfile model.gguf) and pass --checkpoint model.gguf";
    if let Some(path) = chosen {
        if !path.is_file() {
            return Err(format!("--checkpoint {}: no such file", path.display()));
        }
        return if is_gguf(path) {
            Ok(path.to_path_buf())
        } else {
            Err(format!(
                "--checkpoint {} is not GGUF: {convert}",
                path.display()
            ))
        };
    }
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    collect(repo, &mut found);
    found.sort();
    if let Some((_, gguf)) = found.iter().rev().find(|(_, p)| is_gguf(p)) {
        return Ok(gguf.clone());
    }
    match found.last() {
        Some((_, other)) => Err(format!(
            "the newest checkpoint, {}, is not GGUF and no .gguf was found: {convert}",
            other.display()
        )),
        None => Err(format!(
            "no checkpoint (.gguf, .safetensors, .pt, .pth, .bin) under {}: save one from train.py, or pass --checkpoint FILE.gguf",
            repo.display()
        )),
    }
}

fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

fn collect(dir: &Path, found: &mut Vec<(std::time::SystemTime, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if ![".git", ".venv", "__pycache__", "node_modules"]
                .iter()
                .any(|s| name == *s)
            {
                collect(&path, found);
            }
        } else if kind.is_file() && is_checkpoint(&path) {
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            found.push((modified, path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_results_formats_are_read_with_or_without_header() {
        let upstream = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\na1b2c3d\t0.997900\t44.0\tkeep\tbaseline\nb2c3d4e\t0.993200\t44.2\tkeep\tlr 0.04\nc3d4e5f\t1.005000\t44.0\tdiscard\tgelu\nd4e5f6a\t0.000000\t0.0\tcrash\tdouble width\n";
        let rows = parse_results(upstream).unwrap_or_default();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[2].status, "discard");
        assert_eq!(best(&rows).map(|r| r.commit.as_str()), Some("b2c3d4e"));
        assert_eq!(
            best(&rows).map(|r| r.val_bpb_text.as_str()),
            Some("0.993200")
        );

        let reference = "commit_hash\tval_bpb\tstatus\tdescription\naaaa111\t1.10\tkeep\tbase\nbbbb222\t1.05\tdiscard\tworse idea kept out\ncccc333\t1.08\tkeep\tbetter\n";
        let rows = parse_results(reference).unwrap_or_default();
        assert_eq!(best(&rows).map(|r| r.commit.as_str()), Some("cccc333"));
        let headerless = "aaaa111\t1.10\tkeep\tbase\ncccc333\t1.08\tkeep\tbetter\n";
        assert_eq!(
            parse_results(headerless).unwrap_or_default(),
            parse_results(reference)
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.status == "keep")
                .collect::<Vec<_>>()
        );
        let headerless5 = "a1b2c3d\t0.99\t44.0\tkeep\tbase line\n";
        assert_eq!(
            parse_results(headerless5).unwrap_or_default()[0].description,
            "base line"
        );
    }

    #[test]
    fn bad_rows_are_errors_naming_the_line() {
        let err = parse_results("a1\t1.0\tkeep\tx\nb2\tfast\tkeep\ty\n")
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("results.tsv line 2: val_bpb \"fast\""),
            "{err}"
        );
        assert!(parse_results("a1\t1.0\n").is_err());
    }
}
