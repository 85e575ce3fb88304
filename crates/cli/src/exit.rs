//! The one exit-code table of `agora`, for every command, and the one `--json` error
//! object: scripts tell from the status alone whether anything was signed or paid and
//! whether to `--resume`, so the numbers are kept as users know them from `agora pay`.
//! A command that stops in one of the ways that matter returns a [`Stop`]; anything
//! else is an error (1). `main` reports every failure through [`code`] and
//! [`json_error`], once, whichever command it came from.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::output::is_stdout_closed;

/// How a command ended, as its exit status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Done (also when the reader of stdout went away early, `| head`).
    Ok = 0,
    /// An error, with what to type in its message; a failing `agora doctor` check too.
    Error = 1,
    /// Refused before anything was signed or paid (`agora pay` above `--max`, a busy
    /// research worker); clap's usage errors also exit 2, before anything ran.
    Refused = 2,
    /// Sent, but the outcome is unknown or the paid answer arrived cut: run the same
    /// command with `--resume`.
    Unknown = 3,
    /// Sent, and the server rejected the signed payment.
    Rejected = 4,
}

impl Code {
    /// Every code, in the order `--help` lists them.
    const ALL: [Code; 5] = [
        Code::Ok,
        Code::Error,
        Code::Refused,
        Code::Unknown,
        Code::Rejected,
    ];

    /// The line `--help` shows for this code.
    fn meaning(self) -> &'static str {
        match self {
            Code::Ok => "done",
            Code::Error => "an error; its message says what to type (also: a doctor check failed)",
            Code::Refused => {
                "refused before anything was signed or paid (also: a usage error, before anything ran)"
            }
            Code::Unknown => {
                "sent, but the outcome is unknown or the answer incomplete: run it again with --resume"
            }
            Code::Rejected => "sent, and the server rejected the signed payment",
        }
    }
}

impl From<Code> for std::process::ExitCode {
    fn from(code: Code) -> Self {
        Self::from(code as u8)
    }
}

/// A command stopped in a way scripts tell apart: the exit code, the `kind` that the
/// `--json` error object names (`refused`, `pending`, `busy`, …), the message with
/// what to type, and any fields that object carries beside them.
#[derive(Debug)]
pub struct Stop {
    /// The exit status.
    pub code: Code,
    /// `snake_case`, for `--json`'s `kind`.
    pub kind: &'static str,
    /// What happened and what to type.
    pub message: String,
    /// More of the `--json` error object (`agora doctor`'s report), beside `error`,
    /// `kind` and `exitCode`.
    pub fields: Map<String, Value>,
}

impl Stop {
    /// A stop with `code`, `kind` and `message`, and no further fields.
    pub fn new(code: Code, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            kind,
            message: message.into(),
            fields: Map::new(),
        }
    }

    /// The same stop, whose `--json` error object also carries `fields`.
    pub fn with_fields(self, fields: Map<String, Value>) -> Self {
        Self { fields, ..self }
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Stop {}

/// The first [`Stop`] in `error`'s chain.
fn stop(error: &anyhow::Error) -> Option<&Stop> {
    error.chain().find_map(|cause| cause.downcast_ref::<Stop>())
}

/// The exit code for `error`: 0 for a closed stdout, a [`Stop`]'s own, else 1.
pub fn code(error: &anyhow::Error) -> Code {
    if is_stdout_closed(error) {
        return Code::Ok;
    }
    stop(error).map_or(Code::Error, |stop| stop.code)
}

/// What `--json` prints on stdout for `error`: `{"error", "kind", "exitCode"}`, the
/// message as `main` prints it (with the flag hint), `kind` `error` for anything but a
/// [`Stop`], and a stop's further fields.
pub fn json_error(error: &anyhow::Error) -> Value {
    let stopped = stop(error);
    let mut object = stopped.map(|s| s.fields.clone()).unwrap_or_default();
    object.insert("error".into(), json!(crate::hint::describe(error)));
    object.insert("kind".into(), json!(stopped.map_or("error", |s| s.kind)));
    object.insert("exitCode".into(), json!(code(error) as u8));
    Value::Object(object)
}

/// The exit-code table and the `--json` contract, for the top-level `--help`.
pub fn help() -> String {
    let mut text = String::from("Exit status:\n");
    for code in Code::ALL {
        text.push_str(&format!("  {}  {}\n", code as u8, code.meaning()));
    }
    text.push_str(
        "\nWith --json, stdout carries one JSON object: the result, or on failure\n\
         {\"error\": MESSAGE, \"kind\": KIND, \"exitCode\": N} (the message is also on stderr).",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::StdoutClosed;

    #[test]
    fn a_stop_anywhere_in_the_chain_sets_the_code_and_kind() {
        let busy = anyhow::Error::new(Stop::new(Code::Refused, "busy", "the worker is busy"))
            .context("experiment e1");
        assert_eq!(code(&busy), Code::Refused);
        assert_eq!(
            json_error(&busy),
            json!({"error": "experiment e1: the worker is busy", "kind": "busy", "exitCode": 2})
        );
        let plain = anyhow::anyhow!("disk full");
        assert_eq!(code(&plain), Code::Error);
        assert_eq!(json_error(&plain)["kind"], "error");
        assert_eq!(code(&StdoutClosed.into()), Code::Ok);
    }

    #[test]
    fn a_stops_fields_join_the_error_object_without_replacing_its_keys() {
        let mut fields = Map::new();
        fields.insert("checks".into(), json!([]));
        fields.insert("kind".into(), json!("not this"));
        let failed = anyhow::Error::new(
            Stop::new(Code::Error, "check_failed", "1 check(s) failed").with_fields(fields),
        );
        assert_eq!(
            json_error(&failed),
            json!({"error": "1 check(s) failed", "kind": "check_failed", "exitCode": 1, "checks": []})
        );
    }

    #[test]
    fn help_lists_every_code() {
        let help = help();
        for code in Code::ALL {
            assert!(
                help.contains(&format!("  {}  ", code as u8)),
                "{code:?} missing from:\n{help}"
            );
        }
    }
}
