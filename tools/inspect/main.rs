//! `inspect`: a read-only look at a ddpersist store on disk. This file owns the command line (clap):
//! parsing, dispatch to one module per command, and exit codes (0 ok, 1 the store or a file failed a
//! check or could not be read, 2 usage error).
//!
//! ```text
//! inspect [--json] DIR                          manifest, streams, batches and WAL segments (= list)
//! inspect batch [--json] FILE                   one batch file: summary, blocks, every update
//! inspect verify [--json] DIR                   check manifest, every batch block and every WAL record
//! inspect get [--json] DIR STREAM KEY --as-of T  the (val, diff) pairs of KEY at time T
//! inspect scan [--json] DIR STREAM [--from K] [--to K] [--limit N]   a stream's updates in key order
//! inspect stats [--json] DIR                    per stream: levels, sizes, counts, amplification
//! ```
//! No command takes the store's lock or writes anything, so they work on a store that is open elsewhere.

mod access;
mod batch;
mod error;
mod list;
mod read;
mod render;
mod stats;
mod verify;
mod view;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use error::ToolResult;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status of a usage error.
const USAGE_ERROR: u8 = 2;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "inspect",
    about = "A read-only look at a ddpersist store: nothing is locked or modified, so it works on a store \
             that is open elsewhere.",
    after_help = "With only DIR, lists the store (as `inspect list DIR`); a directory named like a command \
                  can be listed as `./NAME`.\nExit status: 0 ok, 1 failed check or unreadable file, 2 usage \
                  error."
)]
struct Cli {
    /// Print one JSON object (one line) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Store directory to list (same as `inspect list DIR`).
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// List the manifest, streams, batches, spilled runs and WAL segments of store DIR.
    List {
        /// Store directory.
        dir: PathBuf,
    },
    /// Print one batch file: summary, blocks and every update.
    Batch {
        /// A batch file (`*.batch`).
        file: PathBuf,
    },
    /// Check the manifest, every batch file and every WAL record; exit 1 naming the file and offset of
    /// the first damage. Shows a progress bar on a terminal for a large store.
    Verify {
        /// Store directory.
        dir: PathBuf,
    },
    /// Print the values of KEY in STREAM as of time T: the (val, diff) pairs of every update at a time at
    /// or before T, sealed or not, consolidated.
    Get {
        /// Store directory.
        dir: PathBuf,
        /// Stream id.
        stream: String,
        /// The key: UTF-8 text, or hex digits with --hex.
        key: String,
        /// The time to read as of.
        #[arg(long, value_name = "T")]
        as_of: u64,
        /// KEY is hex digits (optionally 0x-prefixed): the key's raw bytes.
        #[arg(long)]
        hex: bool,
    },
    /// Print the updates of STREAM's snapshot (sealed and unsealed, consolidated) in key order.
    Scan {
        /// Store directory.
        dir: PathBuf,
        /// Stream id.
        stream: String,
        /// Start at this key (inclusive).
        #[arg(long, value_name = "K")]
        from: Option<String>,
        /// Stop before this key (exclusive).
        #[arg(long, value_name = "K")]
        to: Option<String>,
        /// Print at most N updates.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// --from and --to are hex digits (optionally 0x-prefixed): raw key bytes.
        #[arg(long)]
        hex: bool,
    },
    /// Per stream: batches by level, sizes, update counts, spilled runs, WAL share, and amplification.
    #[command(long_about = stats::HELP)]
    Stats {
        /// Store directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_exit(e),
    };
    let command = match (cli.command, cli.dir) {
        // clap refuses DIR together with a command.
        (Some(command), _) => command,
        (None, Some(dir)) => Command::List { dir },
        (None, None) => {
            let e = Cli::command().error(ErrorKind::MissingRequiredArgument, "missing DIR (or a command)");
            return usage_exit(e);
        }
    };
    match run(command, cli.json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(problem)) => usage_exit(Cli::command().error(ErrorKind::ValueValidation, problem)),
        Err(Failure::Tool(e)) => {
            eprintln!("inspect: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a clap error (or the help it stands for) and returns its exit status.
fn usage_exit(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        print!("{}", e.render());
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    eprint!("inspect: {}", text.strip_prefix("error: ").unwrap_or(&text));
    ExitCode::from(USAGE_ERROR)
}

/// Why a command failed.
enum Failure {
    /// A malformed argument (exit 2).
    Usage(String),
    /// Reading or checking the store, or writing the report (exit 1).
    Tool(error::ToolError),
}

impl From<error::ToolError> for Failure {
    fn from(e: error::ToolError) -> Self {
        Failure::Tool(e)
    }
}

/// Runs `command`, writing the report to stdout.
fn run(command: Command, json: bool) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result: ToolResult<()> = match command {
        Command::List { dir } => list::run(&dir, json, &mut out),
        Command::Batch { file } => batch::run(&file, json, &mut out),
        Command::Verify { dir } => verify::run(&dir, json, &mut out, &mut io::stderr()),
        Command::Get {
            dir,
            stream,
            key,
            as_of,
            hex,
        } => {
            let key = key_arg(&key, hex, "KEY")?;
            read::get(&dir, &stream, &key, as_of, json, &mut out)
        }
        Command::Scan {
            dir,
            stream,
            from,
            to,
            limit,
            hex,
        } => {
            let range = read::KeyRange {
                from: from.map(|k| key_arg(&k, hex, "--from")).transpose()?,
                to: to.map(|k| key_arg(&k, hex, "--to")).transpose()?,
                limit,
            };
            read::scan(&dir, &stream, &range, json, &mut out)
        }
        Command::Stats { dir } => stats::run(&dir, json, &mut out),
    };
    // Flush before reporting an error, so the report precedes it; a failed check outranks a failed flush.
    let flushed = out.flush().map_err(error::ToolError::from);
    Ok(result.and(flushed)?)
}

/// The bytes of a key argument: its UTF-8 text, or the bytes its hex digits spell with `--hex`.
fn key_arg(text: &str, hex: bool, what: &str) -> Result<Vec<u8>, Failure> {
    if !hex {
        return Ok(text.as_bytes().to_vec());
    }
    render::parse_hex(text)
        .ok_or_else(|| Failure::Usage(format!("{what} {text:?} is not hex digits (--hex)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("inspect").chain(args.iter().copied()))
    }

    #[test]
    fn commands_and_flags() {
        Cli::command().debug_assert();
        let list = parse(&["d"]).unwrap();
        assert_eq!(list.dir, Some("d".into()));
        assert!(list.command.is_none() && !list.json);
        assert!(parse(&["d", "--json"]).unwrap().json);
        let batch = parse(&["batch", "--json", "f"]).unwrap();
        assert!(matches!(batch.command, Some(Command::Batch { .. })) && batch.json);
        let verify = parse(&["--json", "verify", "d"]).unwrap();
        assert!(matches!(verify.command, Some(Command::Verify { .. })) && verify.json);
        let get = parse(&["get", "d", "s", "k", "--as-of", "7", "--hex"]).unwrap();
        assert!(matches!(
            get.command,
            Some(Command::Get {
                as_of: 7,
                hex: true,
                ..
            })
        ));
        let scan = parse(&["scan", "d", "s", "--from", "a", "--limit", "3"]).unwrap();
        assert!(matches!(
            scan.command,
            Some(Command::Scan {
                limit: Some(3),
                to: None,
                ..
            })
        ));
        assert_eq!(
            parse(&["x", "--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["batch"][..],
            &["verify"],
            &["frob", "d"],
            &["--bogus", "d"],
            &["a", "b", "c"],
            &["a", "verify", "c", "d"],
            &["get", "d", "s", "k"],
            &["get", "d", "s", "k", "--as-of", "x"],
            &["scan", "d"],
            &["scan", "d", "s", "--limit", "-1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(key_arg("zz", true, "KEY").is_err());
        assert_eq!(key_arg("zz", false, "KEY").ok(), Some(b"zz".to_vec()));
    }
}
