//! `agora skills`: the Agent Skills (SKILL.md folders, the agentskills.io format Claude
//! Code reads) that teach an agent to sell, buy and run autoresearch with agora.
//!
//! They ship inside the binary, one static table built from `crates/cli/skills/`, so
//! the instructions an agent follows always match the CLI it runs; `skills_tests.rs`
//! parses every `agora …` line they contain with the real command tree. `install`
//! writes them into `~/.claude/skills/` (or `./.claude/skills/`), files 0644.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::env;
use crate::output::{out, outln};

/// One shipped file: its path under the skills directory and its text.
pub struct SkillFile {
    /// `SKILL-NAME/...`, relative to the skills directory.
    pub path: &'static str,
    /// The file's contents.
    pub contents: &'static str,
}

/// Every shipped file; each skill is the directory of a `SKILL-NAME/SKILL.md`.
macro_rules! shipped {
    ($($path:literal),* $(,)?) => {
        &[$(SkillFile { path: $path, contents: include_str!(concat!("../../skills/", $path)) }),*]
    };
}

/// The skills this binary installs.
pub const FILES: &[SkillFile] = shipped![
    "agora-monetize/SKILL.md",
    "agora-monetize/references/seller-prompt.md",
    "agora-buy/SKILL.md",
    "agora-autoresearch-worker/SKILL.md",
    "agora-autoresearch-coordinator/SKILL.md",
];

/// `agora skills` and its subcommands.
#[derive(Debug, Args)]
pub struct SkillsArgs {
    #[command(subcommand)]
    command: SkillsCommand,
    #[arg(long, global = true, help = crate::output::JSON_HELP)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum SkillsCommand {
    /// Write the skills where Claude Code reads them (~/.claude/skills/, or
    /// ./.claude/skills/ with --project); files that are already current are left alone.
    Install(Target),
    /// List the shipped skills.
    List,
    /// Print a skill's SKILL.md, or one shipped file by its path (e.g.
    /// agora-monetize/references/seller-prompt.md).
    Show(ShowArgs),
    /// Print the directory `install` writes to.
    Path(Target),
}

/// Where the skills go.
#[derive(Debug, Args)]
struct Target {
    /// Install into DIR instead of ~/.claude/skills/.
    #[arg(long, value_name = "DIR", conflicts_with = "project")]
    dir: Option<PathBuf>,
    /// Install into this project's .claude/skills/ (in the current directory).
    #[arg(long)]
    project: bool,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// Skill name (see `agora skills list`) or a shipped file's path.
    name: String,
}

/// Runs one `agora skills` command.
pub async fn run(args: SkillsArgs) -> anyhow::Result<()> {
    match args.command {
        SkillsCommand::Install(target) => install(&target_dir(&target)?, args.json),
        SkillsCommand::List => list(args.json),
        SkillsCommand::Show(a) => show(&a.name, args.json),
        SkillsCommand::Path(target) => {
            let dir = target_dir(&target)?;
            if args.json {
                outln!("{}", json!({ "dir": dir }))
            } else {
                outln!("{}", dir.display())
            }
        }
    }
}

/// `--dir`, else `./.claude/skills` with `--project`, else `$HOME/.claude/skills`.
fn target_dir(target: &Target) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &target.dir {
        return Ok(dir.clone());
    }
    if target.project {
        let here = std::env::current_dir().context("cannot read the current directory")?;
        return Ok(here.join(".claude/skills"));
    }
    let Some(home) = env::var_os("HOME") else {
        bail!("HOME is not set, so ~/.claude/skills is unknown; pass --dir DIR or --project");
    };
    Ok(PathBuf::from(home).join(".claude/skills"))
}

/// What `install` did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Created,
    Updated,
    Unchanged,
}

impl Written {
    fn as_str(self) -> &'static str {
        match self {
            Written::Created => "created",
            Written::Updated => "updated",
            Written::Unchanged => "unchanged",
        }
    }
}

fn install(dir: &Path, json_out: bool) -> anyhow::Result<()> {
    let mut done = Vec::new();
    for file in FILES {
        let path = dir.join(file.path);
        done.push((path.clone(), write_file(&path, file.contents)?));
    }
    if json_out {
        let files: Vec<_> = done
            .iter()
            .map(|(path, w)| json!({ "path": path, "status": w.as_str() }))
            .collect();
        return outln!(
            "{}",
            json!({ "dir": dir, "skills": names(), "files": files })
        );
    }
    for (path, written) in &done {
        outln!("{:<9} {}", written.as_str(), path.display())?;
    }
    outln!(
        "{} skills in {}: {}. Claude Code loads them in its next session; ask it to \"monetize my machine\".",
        names().len(),
        dir.display(),
        names().join(", ")
    )
}

/// Writes `contents` to `path` (mode 0644) unless it already holds them.
fn write_file(path: &Path, contents: &str) -> anyhow::Result<Written> {
    use std::os::unix::fs::PermissionsExt;

    let shown = path.display();
    let before = match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {shown}")),
    };
    let mode = std::fs::Permissions::from_mode(0o644);
    if before.as_deref() == Some(contents.as_bytes()) {
        std::fs::set_permissions(path, mode)
            .with_context(|| format!("cannot set the mode of {shown} to 0644"))?;
        return Ok(Written::Unchanged);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| {
            format!(
                "cannot create {}; pass --dir DIR to install elsewhere",
                parent.display()
            )
        })?;
    }
    std::fs::write(path, contents)
        .with_context(|| format!("cannot write {shown}; pass --dir DIR to install elsewhere"))?;
    std::fs::set_permissions(path, mode)
        .with_context(|| format!("cannot set the mode of {shown} to 0644"))?;
    Ok(if before.is_some() {
        Written::Updated
    } else {
        Written::Created
    })
}

/// The shipped skills' names, in table order.
pub fn names() -> Vec<&'static str> {
    FILES
        .iter()
        .filter_map(|f| f.path.strip_suffix("/SKILL.md"))
        .collect()
}

/// The value of a top-level `key:` in a SKILL.md's frontmatter.
fn frontmatter_value(contents: &str, key: &str) -> Option<String> {
    let block = contents.strip_prefix("---\n")?.split("\n---").next()?;
    block.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        Some(value.trim().to_string())
    })
}

fn skill_md(name: &str) -> Option<&'static SkillFile> {
    FILES
        .iter()
        .find(|f| f.path.strip_suffix("/SKILL.md") == Some(name))
}

fn list(json_out: bool) -> anyhow::Result<()> {
    let skills: Vec<_> = names()
        .into_iter()
        .map(|name| {
            let description = skill_md(name)
                .and_then(|f| frontmatter_value(f.contents, "description"))
                .unwrap_or_default();
            let files: Vec<&str> = FILES
                .iter()
                .filter(|f| f.path.starts_with(&format!("{name}/")))
                .map(|f| f.path)
                .collect();
            (name, description, files)
        })
        .collect();
    if json_out {
        let list: Vec<_> = skills
            .iter()
            .map(|(name, description, files)| {
                json!({ "name": name, "description": description, "files": files })
            })
            .collect();
        return outln!("{}", json!({ "items": list }));
    }
    for (name, description, _) in &skills {
        let first = description.split(". ").next().unwrap_or_default();
        outln!("{name:<32} {}", first.trim_end_matches('.'))?;
    }
    Ok(())
}

fn show(name: &str, json_out: bool) -> anyhow::Result<()> {
    let file = skill_md(name)
        .or_else(|| FILES.iter().find(|f| f.path == name))
        .with_context(|| {
            format!(
                "no shipped skill or file named {name:?}; the skills are {} (agora skills list)",
                names().join(", ")
            )
        })?;
    if json_out {
        outln!(
            "{}",
            json!({ "path": file.path, "contents": file.contents })
        )
    } else {
        out!("{}", file.contents)
    }
}

#[cfg(test)]
#[path = "skills_tests.rs"]
mod tests;
