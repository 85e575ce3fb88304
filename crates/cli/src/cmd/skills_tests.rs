//! The shipped skills and the CLI cannot drift apart: every `agora …` command line in
//! every shipped file (fenced code blocks and inline code spans) is parsed with the
//! real command tree, `Cli::try_parse_from`, as the binary would parse it.

use clap::Parser;
use clap::error::ErrorKind;

use super::FILES;

/// Splits a shell line into words (single and double quotes, backslash escapes), with
/// `|`, `&&`, `||` and `;` outside quotes ending a command.
fn shell_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        _ => w.push(q),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '|' | ';' | '&' => {
                current.extend(word.take());
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                commands.push(std::mem::take(&mut current));
            }
            c if c.is_whitespace() => current.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    current.extend(word);
    commands.push(current);
    commands
}

/// The `agora …` commands of a shell line, without a `$ ` prompt or `VAR=value` prefix.
fn agora_commands(line: &str) -> Vec<Vec<String>> {
    shell_commands(line)
        .into_iter()
        .filter_map(|words| {
            let start = words
                .iter()
                .position(|w| w != "$" && (!w.contains('=') || w.starts_with('-')))?;
            (words[start] == "agora").then(|| words[start..].to_vec())
        })
        .collect()
}

/// Every `agora …` command in a Markdown text: the lines of fenced code blocks (joining
/// `\` continuations) and the inline code spans.
fn commands(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut in_fence = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            match line.strip_suffix('\\') {
                Some(head) => pending.push_str(head),
                None => {
                    pending.push_str(line);
                    found.extend(agora_commands(&pending));
                    pending.clear();
                }
            }
            continue;
        }
        for span in line.split('`').skip(1).step_by(2) {
            if span == "agora" || span.starts_with("agora ") {
                found.extend(agora_commands(span));
            }
        }
    }
    found
}

#[test]
fn the_extractor_finds_fenced_continued_piped_and_inline_commands() {
    let text = "Run `agora sell list` or `agora` alone; `agorax y` and `sell x` are not commands.\n\
                ```sh\n\
                $ agora pay http://h/x --max 0.01 \\\n  -H 'A: b c' | jq .\n\
                AGORA_HOME=/tmp/a agora doctor --json && echo \"agora no\"\n\
                ```\n\
                agora outside a fence is prose\n";
    let words = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    assert_eq!(
        commands(text),
        vec![
            words(&["agora", "sell", "list"]),
            words(&["agora"]),
            words(&[
                "agora",
                "pay",
                "http://h/x",
                "--max",
                "0.01",
                "-H",
                "A: b c"
            ]),
            words(&["agora", "doctor", "--json"]),
        ]
    );
}

#[test]
fn every_agora_command_in_the_shipped_skills_parses_with_the_real_cli() {
    let mut failures = Vec::new();
    let mut parsed = 0;
    for file in FILES {
        let found = commands(file.contents);
        assert!(
            !found.is_empty() || !file.path.ends_with("SKILL.md"),
            "{} names no agora command",
            file.path
        );
        for argv in found {
            parsed += 1;
            match crate::Cli::try_parse_from(&argv) {
                Ok(_) => {}
                Err(e)
                    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {}
                Err(e) => failures.push(format!(
                    "{}: `{}`\n    {}",
                    file.path,
                    argv.join(" "),
                    e.to_string().lines().next().unwrap_or_default()
                )),
            }
        }
    }
    assert!(parsed >= 40, "only {parsed} commands found in the skills");
    assert!(
        failures.is_empty(),
        "{} of {parsed} skill commands do not parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
