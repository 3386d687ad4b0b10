//! `inspect`: a read-only look at a ddpersist store on disk. This file owns the command line: parsing,
//! dispatch to one module per command, and exit codes (0 ok, 1 the store or a file failed a check or
//! could not be read, 2 usage error).
//!
//! ```text
//! inspect [--json] DIR            manifest, streams, batches and WAL segments
//! inspect batch [--json] FILE     one batch file: summary, blocks, every update
//! inspect verify [--json] DIR     check manifest, every batch block and every WAL record
//! ```
//! No command takes the store's lock or writes anything, so they work on a store that is open elsewhere.

mod access;
mod batch;
mod error;
mod json;
mod list;
mod render;
mod verify;

use error::{ToolError, ToolResult};
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: inspect [--json] DIR          list the manifest, streams, batches and WAL segments of store DIR
       inspect batch [--json] FILE   print one batch file: summary, blocks and every update
       inspect verify [--json] DIR   check the manifest, every batch file and every WAL record
       inspect --help                show this message

Nothing is locked or modified. A directory named `batch` or `verify` can be listed as `./batch`.
Exit status: 0 ok, 1 failed check or unreadable file, 2 usage error.";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    List(PathBuf),
    Batch(PathBuf),
    Verify(PathBuf),
    Help,
}

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    command: Command,
    json: bool,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("inspect: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs `args`, writing the report to stdout.
fn run(args: Args) -> ToolResult<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = match &args.command {
        Command::List(dir) => list::run(dir, args.json, &mut out),
        Command::Batch(file) => batch::run(file, args.json, &mut out),
        Command::Verify(dir) => verify::run(dir, args.json, &mut out, &mut io::stderr()),
        Command::Help => writeln!(out, "{USAGE}").map_err(ToolError::from),
    };
    // Flush before reporting an error, so the report precedes it; a failed check outranks a failed flush.
    let flushed = out.flush().map_err(ToolError::from);
    result.and(flushed)
}

/// Parses the arguments after the program name; `Err` is a usage problem.
fn parse_args(args: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut json = false;
    let mut positional = Vec::new();
    for arg in args {
        match arg.to_str() {
            Some("--json") => json = true,
            Some("-h" | "--help") => {
                return Ok(Args {
                    command: Command::Help,
                    json,
                })
            }
            Some(flag) if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option {flag}"))
            }
            _ => positional.push(arg),
        }
    }
    Ok(Args {
        command: command(positional)?,
        json,
    })
}

/// The command named by the positional arguments.
fn command(positional: Vec<OsString>) -> Result<Command, String> {
    let mut args = positional.into_iter();
    let (first, second, rest) = (args.next(), args.next(), args.next());
    if rest.is_some() {
        return Err("too many arguments".to_string());
    }
    let Some(first) = first else {
        return Err("missing DIR".to_string());
    };
    match (first.to_str(), second) {
        (Some("batch"), Some(file)) => Ok(Command::Batch(file.into())),
        (Some("verify"), Some(dir)) => Ok(Command::Verify(dir.into())),
        (Some(cmd @ ("batch" | "verify")), None) => Err(format!("{cmd} needs a path")),
        (_, None) => Ok(Command::List(first.into())),
        (_, Some(_)) => Err(format!("unknown command {}", first.to_string_lossy())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn commands_and_flags() {
        let list = parse(&["d"]).unwrap();
        assert_eq!(list.command, Command::List("d".into()));
        assert!(!list.json);
        let batch = parse(&["batch", "--json", "f"]).unwrap();
        assert_eq!(batch.command, Command::Batch("f".into()));
        assert!(batch.json);
        assert_eq!(
            parse(&["--json", "verify", "d"]).unwrap().command,
            Command::Verify("d".into())
        );
        assert_eq!(parse(&["x", "--help"]).unwrap().command, Command::Help);
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["batch"],
            &["verify"],
            &["frob", "d"],
            &["--bogus", "d"],
            &["a", "b", "c"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
