//! `agora skills` as a user runs it: installing into a temporary HOME puts every shipped
//! file where Claude Code reads skills (`~/.claude/skills/NAME/SKILL.md`), the
//! frontmatter keeps the Agent Skills specification's rules, and every OASF skill and
//! domain the skills mention is in the taxonomy agora validates against. (That every
//! `agora …` line in them parses is `skills_tests.rs`, inside the binary, where the
//! real command tree is.)

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use erc8004::oasf::{Kind, Taxonomy};
use testkit::process::{self, Output};
use tokio::process::Command;

fn agora(home: &Path) -> Command {
    let mut command = process::agora(env!("CARGO_BIN_EXE_agora"), home);
    command.env("HOME", home);
    command
}

async fn ok(home: &Path, args: &[&str]) -> Output {
    process::ok(agora(home), args).await
}

/// The files under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}

fn shipped_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("skills")
}

#[tokio::test]
async fn install_writes_every_skill_where_claude_code_reads_them_idempotently() {
    let home = tempfile::tempdir().unwrap();
    let skills = home.path().join(".claude/skills");
    let path = ok(home.path(), &["skills", "path"]).await;
    assert_eq!(path.stdout.trim(), skills.display().to_string());

    let first = ok(home.path(), &["skills", "install", "--json"])
        .await
        .json();
    let installed = files_under(&skills);
    // The binary's table holds every file of crates/cli/skills, and nothing else.
    assert_eq!(installed, files_under(&shipped_dir()));
    for name in [
        "agora-monetize",
        "agora-buy",
        "agora-autoresearch-worker",
        "agora-autoresearch-coordinator",
    ] {
        assert!(
            installed.contains(&format!("{name}/SKILL.md")),
            "{installed:?}"
        );
    }
    assert!(installed.contains(&"agora-monetize/references/seller-prompt.md".to_string()));
    let statuses: Vec<&str> = first["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), installed.len());
    assert!(statuses.iter().all(|s| *s == "created"), "{statuses:?}");
    for file in &installed {
        let path = skills.join(file);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(shipped_dir().join(file)).unwrap()
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{file}");
    }

    // A second install changes nothing; an edited file is put back and said so.
    let edited = skills.join("agora-buy/SKILL.md");
    std::fs::write(&edited, "stale").unwrap();
    let second = ok(home.path(), &["skills", "install"]).await;
    assert!(
        second
            .stdout
            .contains(&format!("updated   {}", edited.display())),
        "{}",
        second.stdout
    );
    assert_eq!(
        second.stdout.matches("unchanged ").count(),
        installed.len() - 1
    );
    let third = ok(home.path(), &["skills", "install", "--json"])
        .await
        .json();
    assert!(
        third["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["status"] == "unchanged")
    );
}

#[tokio::test]
async fn project_and_dir_installs_go_where_asked_and_both_together_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let mut command = agora(home.path());
    command.current_dir(project.path());
    process::ok(command, &["skills", "install", "--project"]).await;
    assert!(
        project
            .path()
            .join(".claude/skills/agora-monetize/SKILL.md")
            .is_file()
    );
    assert!(!home.path().join(".claude").exists());

    let dir = home.path().join("elsewhere");
    ok(
        home.path(),
        &["skills", "install", "--dir", dir.to_str().unwrap()],
    )
    .await;
    assert!(dir.join("agora-buy/SKILL.md").is_file());

    let both = process::run(
        agora(home.path()),
        &["skills", "install", "--project", "--dir", "x"],
        None,
    )
    .await;
    both.fails_saying(&["cannot be used with"]);
}

#[tokio::test]
async fn list_and_show_print_the_shipped_skills_and_an_unknown_name_names_the_real_ones() {
    let home = tempfile::tempdir().unwrap();
    let list = ok(home.path(), &["skills", "list", "--json"]).await.json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "agora-monetize",
            "agora-buy",
            "agora-autoresearch-worker",
            "agora-autoresearch-coordinator"
        ]
    );
    let shown = ok(home.path(), &["skills", "show", "agora-monetize"]).await;
    assert_eq!(
        shown.stdout,
        std::fs::read_to_string(shipped_dir().join("agora-monetize/SKILL.md")).unwrap()
    );
    let reference = ok(
        home.path(),
        &[
            "skills",
            "show",
            "agora-monetize/references/seller-prompt.md",
        ],
    )
    .await;
    assert!(reference.stdout.starts_with("# Seller guide"));
    let unknown = process::run(agora(home.path()), &["skills", "show", "agora-sell"], None).await;
    unknown.fails_saying(&["agora-monetize, agora-buy"]);
}

/// A SKILL.md's frontmatter, read by a YAML parser: the text between the opening `---`
/// line and the next `---` line must be a mapping.
fn frontmatter(text: &str) -> BTreeMap<String, serde_norway::Value> {
    let body = text
        .strip_prefix("---\n")
        .expect("SKILL.md starts with a --- frontmatter line");
    let (block, _) = body
        .split_once("\n---\n")
        .expect("the frontmatter ends with a --- line");
    serde_norway::from_str(block).expect("the frontmatter is a YAML mapping")
}

/// The Agent Skills specification's rules for a name: 1-64 characters of [a-z0-9-],
/// no leading, trailing or doubled hyphen.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[test]
fn the_name_rule_refuses_what_the_specification_refuses() {
    for good in ["agora-buy", "a", "x1-2"] {
        assert!(valid_name(good), "{good}");
    }
    for bad in ["Agora", "-a", "a-", "a--b", "a_b", "", &"a".repeat(65)] {
        assert!(!valid_name(bad), "{bad}");
    }
}

#[test]
fn every_skill_has_spec_conformant_frontmatter() {
    const KEYS: [&str; 6] = [
        "name",
        "description",
        "license",
        "allowed-tools",
        "metadata",
        "compatibility",
    ];
    let skills: Vec<String> = files_under(&shipped_dir())
        .into_iter()
        .filter_map(|f| f.strip_suffix("/SKILL.md").map(str::to_string))
        .collect();
    assert_eq!(skills.len(), 4);
    for dir in &skills {
        let text = std::fs::read_to_string(shipped_dir().join(dir).join("SKILL.md")).unwrap();
        let keys = frontmatter(&text);
        for key in keys.keys() {
            assert!(
                KEYS.contains(&key.as_str()),
                "{dir}: {key} is not a spec key"
            );
        }
        let string = |key: &str| {
            keys.get(key).map(|v| {
                v.as_str()
                    .unwrap_or_else(|| panic!("{dir}: {key} is not a string"))
            })
        };
        let name = string("name").expect("name is required");
        assert_eq!(name, dir, "name must equal the directory");
        assert!(valid_name(name), "{dir}: invalid name");
        let description = string("description").expect("description is required");
        let length = description.chars().count();
        assert!(
            (1..=1024).contains(&length),
            "{dir}: description has {length} characters"
        );
        if let Some(compatibility) = string("compatibility") {
            let length = compatibility.chars().count();
            assert!(
                (1..=500).contains(&length),
                "{dir}: compatibility has {length}"
            );
        }
        string("license");
        string("allowed-tools");
        if let Some(metadata) = keys.get("metadata") {
            let map = metadata.as_mapping().expect("metadata is a mapping");
            for (k, v) in map {
                assert!(
                    k.is_string() && v.is_string(),
                    "{dir}: metadata {k:?}: {v:?} must map strings to strings"
                );
            }
        }
    }
}

/// Backquoted words shaped like OASF names (`a_b/c_d`), and the values of
/// `--register-skills`, `--register-domains`, `--skill` and `--domain`.
fn oasf_names(text: &str) -> Vec<(Option<Kind>, String)> {
    let shaped = |w: &str| {
        w.contains('/')
            && !w.starts_with('/')
            && !w.ends_with('/')
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '/')
    };
    let mut found = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        if shaped(span) {
            found.push((None, span.to_string()));
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    for pair in words.windows(2) {
        let kind = match pair[0] {
            "--register-skills" | "--skill" => Kind::Skill,
            "--register-domains" | "--domain" => Kind::Domain,
            _ => continue,
        };
        found.push((Some(kind), pair[1].trim_matches('`').to_string()));
    }
    found
}

#[test]
fn every_oasf_name_the_skills_mention_is_in_the_bundled_taxonomy() {
    let mut checked = 0;
    for file in files_under(&shipped_dir()) {
        let text = std::fs::read_to_string(shipped_dir().join(&file)).unwrap();
        for (kind, name) in oasf_names(&text) {
            checked += 1;
            let known = match kind {
                Some(kind) => Taxonomy::find(kind, &name).is_some(),
                None => {
                    Taxonomy::find(Kind::Skill, &name).is_some()
                        || Taxonomy::find(Kind::Domain, &name).is_some()
                }
            };
            assert!(
                known,
                "{file}: {name} is not an OASF {:?} in v{}",
                kind,
                Taxonomy::version()
            );
        }
    }
    assert!(checked >= 20, "only {checked} OASF names found");
    // The check itself refuses the names the reference uses that v0.8.0 lacks.
    let stale = oasf_names("`data_management/indexing` --register-skills data_management/search");
    assert!(
        stale
            .iter()
            .all(|(_, n)| Taxonomy::find(Kind::Skill, n).is_none()),
        "{stale:?}"
    );
}
