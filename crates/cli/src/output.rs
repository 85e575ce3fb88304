//! Everything `agora` prints on stdout goes through here, so a reader that stops early
//! (`agora sell list | head -1`) ends the command quietly, as ripgrep does, instead of
//! `println!`'s panic and backtrace: a write to a closed stdout becomes
//! [`StdoutClosed`], which `main` turns into a silent exit 0. The progress display of
//! waits lives here too, since it shares stdout with those lines.

use std::fmt;
use std::io::{ErrorKind, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Prints one line on stdout; evaluates to `anyhow::Result<()>`, an error when stdout
/// is gone.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints on stdout without a newline; evaluates to `anyhow::Result<()>`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

/// The help of every command's `--json`: one contract, the same in each (`main` prints
/// the failure's object; `agora --help` lists the exit codes).
pub const JSON_HELP: &str = "Print one JSON object on stdout: the result, or on failure {\"error\", \"kind\", \"exitCode\"}";

/// The reader of stdout went away (`| head`); the command has nothing left to do.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// A list as `--json` prints it, `{"items": [...]}`: stdout carries one object in
/// every command, so a list is never the top level.
#[derive(Debug, Serialize)]
pub struct Items<'a, T> {
    /// The entries, in the command's order.
    pub items: &'a [T],
}

/// Writes to stdout and flushes, so a closed pipe shows up at this line.
pub fn write(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    written(stdout.write_fmt(args).and_then(|()| stdout.flush()))
}

/// A write to stdout as the commands see it: a closed pipe is [`StdoutClosed`].
fn written(result: std::io::Result<()>) -> anyhow::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e)
            .context("cannot write to stdout (redirect it to a file or a pipe that is read)")),
    }
}

/// Whether `error` only says that stdout was closed, which ends a command quietly.
pub fn is_stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<StdoutClosed>())
}

/// A spinner on a terminal naming what is awaited, with finished steps printed above
/// it; plain lines on stdout otherwise (pipes, files, tests), and nothing with `--json`.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    /// A display for a wait; `quiet` (for `--json`) shows nothing at all.
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar, quiet }
    }

    /// Names what is awaited now (terminal only).
    pub fn waiting_for(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        }
    }

    /// Prints a finished step: above the spinner, or as a plain line.
    pub fn step(&self, line: &str) -> anyhow::Result<()> {
        match &self.bar {
            Some(bar) => {
                bar.println(line);
                Ok(())
            }
            None if self.quiet => Ok(()),
            None => outln!("{line}"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Writes raw bytes (a streamed answer body) to stdout and flushes, so each chunk is
/// seen as it arrives and a closed pipe ends the command quietly like [`write`].
pub fn write_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    written(stdout.write_all(bytes).and_then(|()| stdout.flush()))
}
