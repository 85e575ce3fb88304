//! The runner: one command of the agora binary as a child process, and its output read
//! back as a tool result. [`parse_output`] is the one place that knows how a command
//! reports success and failure under `--json`.

use std::path::Path;
use std::process::{Output, Stdio};

use rmcp::model::CallToolResult;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// Runs `program ARGS` to completion, passes on its stderr, and turns its outcome
/// into a tool result (a failure to start it is a tool error too).
pub(crate) async fn run(program: &Path, args: &[String], input: Option<String>) -> CallToolResult {
    tracing::info!("mcp tool runs: agora {}", args.join(" "));
    let output = match run_fed(program, args, input).await {
        Ok(o) => o,
        Err(e) => {
            return failure(
                format!("cannot run agora {}: {e}", args.join(" ")),
                None,
                None,
            );
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    parse_output(&output)
}

/// Runs the command to completion, writing `input` to its stdin (else stdin is
/// closed: this process's stdin is the protocol).
async fn run_fed(
    program: &Path,
    args: &[String],
    input: Option<String>,
) -> std::io::Result<Output> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A command that stops reading early says why in its exit status and stderr.
        let _ = stdin.write_all(text.as_bytes()).await;
    }
    child.wait_with_output().await
}

/// A finished command as a tool result. Every tool runs its command with `--json`,
/// whose contract is one JSON object on stdout: on success the result, which is the
/// tool's (text only if something other than a command answered: `{"output": …}`);
/// on failure `{"error", "kind", "exitCode"}`, whose `error` (else stderr's last
/// `error: ` line, else all of stderr) becomes the tool error with the exit code and
/// that object.
fn parse_output(output: &Output) -> CallToolResult {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let parsed = last_json(&stdout);
    if output.status.success() {
        return CallToolResult::structured(
            parsed.unwrap_or_else(|| json!({ "output": stdout.trim() })),
        );
    }
    let message = parsed
        .as_ref()
        .and_then(|p| p["error"].as_str().map(str::to_string))
        .or_else(|| {
            stderr
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .map(str::to_string)
        })
        .unwrap_or_else(|| stderr.trim().to_string());
    failure(message, output.status.code(), parsed)
}

/// A tool error: the message, the command's exit code and any JSON it printed.
pub(crate) fn failure(
    message: String,
    exit_code: Option<i32>,
    output: Option<Value>,
) -> CallToolResult {
    CallToolResult::structured_error(json!({
        "error": message,
        "exitCode": exit_code,
        "output": output,
    }))
}

/// The last line of `stdout` that is JSON (`--json` commands print their object last).
fn last_json(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_json_line_is_the_result() {
        assert_eq!(last_json("started\n{\"a\":1}\n"), Some(json!({"a": 1})));
        assert_eq!(last_json("no json here"), None);
    }

    /// A finished command with `stdout`, `stderr` and the wait status `raw`.
    fn output(raw: i32, stdout: &str, stderr: &str) -> Output {
        use std::os::unix::process::ExitStatusExt;
        Output {
            status: std::process::ExitStatus::from_raw(raw),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn a_command_s_outcome_becomes_the_tool_result() {
        let listed = parse_output(&output(0, "{\"items\":[{\"name\":\"a\"}]}\n", ""));
        assert_eq!(listed.is_error, Some(false));
        assert_eq!(
            listed.structured_content,
            Some(json!({"items": [{"name": "a"}]}))
        );
        let text = parse_output(&output(0, "done\n", ""));
        assert_eq!(text.structured_content, Some(json!({"output": "done"})));
        // Exit status 2: the error object's message, code and object.
        let refused = parse_output(&output(
            2 << 8,
            "{\"error\":\"above max; raise --max\",\"kind\":\"refused\",\"exitCode\":2}\n",
            "warn: x\nerror: above max; raise --max\n",
        ));
        assert_eq!(refused.is_error, Some(true));
        assert_eq!(
            refused.structured_content,
            Some(json!({
                "error": "above max; raise --max",
                "exitCode": 2,
                "output": {"error": "above max; raise --max", "kind": "refused", "exitCode": 2}
            }))
        );
        // No object (the command did not start): stderr's `error: ` line.
        let bare = parse_output(&output(1 << 8, "", "error: unexpected argument\n"));
        assert_eq!(
            bare.structured_content.map(|v| v["error"].clone()),
            Some(json!("unexpected argument"))
        );
    }
}
