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
//!   (both: --key-as / --val-as raw|string|u64|i64 read KEY, K and show keys, vals as the library's codec)
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
        /// The key: UTF-8 text, hex digits with --hex, or a value with --key-as.
        key: String,
        /// The time to read as of.
        #[arg(long, value_name = "T")]
        as_of: u64,
        /// KEY is hex digits (optionally 0x-prefixed): the key's raw bytes.
        #[arg(long, conflicts_with = "key_as")]
        hex: bool,
        #[command(flatten)]
        shown: AsArgs,
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
        #[arg(long, conflicts_with = "key_as")]
        hex: bool,
        #[command(flatten)]
        shown: AsArgs,
    },
    /// Per stream: batches by level, sizes, update counts, spilled runs, WAL share, and amplification.
    #[command(long_about = stats::HELP)]
    Stats {
        /// Store directory.
        dir: PathBuf,
    },
}

/// How `get` and `scan` read key arguments and show keys and vals.
#[derive(Debug, clap::Args)]
struct AsArgs {
    /// Keys are values of this codec of the library (FORMAT.md §1): KEY, --from and --to are encoded
    /// with it, and keys that decode are shown decoded. Typed streams and arrangements store a `String`
    /// key as its bytes then `00 01`: use `string` for them.
    #[arg(long, value_enum, default_value_t = render::As::Raw, value_name = "CODEC")]
    key_as: render::As,
    /// Vals are shown decoded with this codec when they decode (else as raw bytes).
    #[arg(long, value_enum, default_value_t = render::As::Raw, value_name = "CODEC")]
    val_as: render::As,
}

impl AsArgs {
    fn shown(&self) -> read::Shown {
        read::Shown {
            key: self.key_as,
            val: self.val_as,
        }
    }
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
            complain(format_args!("{e}\n"));
            ExitCode::FAILURE
        }
    }
}

/// Prints a clap error (or the help it stands for) and returns its exit status. Help that cannot be
/// written (a closed pipe: `inspect --help | true`) fails as a report does (exit 1), where `print!`
/// would panic.
fn usage_exit(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let mut out = io::stdout().lock();
        return match write!(out, "{}", e.render()).and_then(|()| out.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                complain(format_args!("{}\n", error::ToolError::Output(e)));
                ExitCode::FAILURE
            }
        };
    }
    let text = e.render().to_string();
    complain(format_args!("{}", text.strip_prefix("error: ").unwrap_or(&text)));
    ExitCode::from(USAGE_ERROR)
}

/// Writes `inspect: {what}` to stderr. A stderr that cannot be written (a closed pipe) leaves the exit
/// status as the only report: `eprint!` would panic there.
fn complain(what: std::fmt::Arguments<'_>) {
    let _ = write!(io::stderr().lock(), "inspect: {what}");
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
            shown,
        } => {
            let key = key_arg(&key, hex, shown.key_as, "KEY")?;
            read::get(&dir, &stream, &key, as_of, shown.shown(), json, &mut out)
        }
        Command::Scan {
            dir,
            stream,
            from,
            to,
            limit,
            hex,
            shown,
        } => {
            let arg = |k: String, what| key_arg(&k, hex, shown.key_as, what);
            let range = read::KeyRange {
                from: from.map(|k| arg(k, "--from")).transpose()?,
                to: to.map(|k| arg(k, "--to")).transpose()?,
                limit,
            };
            read::scan(&dir, &stream, &range, shown.shown(), json, &mut out)
        }
        Command::Stats { dir } => stats::run(&dir, json, &mut out),
    };
    // Flush before reporting an error, so the report precedes it; a failed check outranks a failed flush.
    let flushed = out.flush().map_err(error::ToolError::from);
    Ok(result.and(flushed)?)
}

/// The bytes of a key argument: the bytes its hex digits spell with `--hex`, else its value encoded as
/// `key_as` says (its UTF-8 text for `raw`).
fn key_arg(text: &str, hex: bool, key_as: render::As, what: &str) -> Result<Vec<u8>, Failure> {
    if hex {
        return render::parse_hex(text)
            .ok_or_else(|| Failure::Usage(format!("{what} {text:?} is not hex digits (--hex)")));
    }
    key_as
        .encode(text)
        .map_err(|e| Failure::Usage(format!("{what} {text:?} (--key-as {key_as:?}): {e}")))
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
        assert!(key_arg("zz", true, render::As::Raw, "KEY").is_err());
        assert_eq!(
            key_arg("zz", false, render::As::Raw, "KEY").ok(),
            Some(b"zz".to_vec())
        );
        assert_eq!(
            key_arg("zz", false, render::As::String, "KEY").ok(),
            Some(b"zz\x00\x01".to_vec())
        );
        assert_eq!(
            key_arg("258", false, render::As::U64, "KEY").ok(),
            Some(vec![0, 0, 0, 0, 0, 0, 1, 2])
        );
        assert!(key_arg("-1", false, render::As::U64, "KEY").is_err());
        assert!(parse(&["get", "d", "s", "k", "--as-of", "1", "--hex", "--key-as", "string"]).is_err());
        assert!(parse(&["get", "d", "s", "k", "--as-of", "1", "--key-as", "str"]).is_err());
    }
}
