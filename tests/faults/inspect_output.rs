//! `inspect` with its stdout or stderr a pipe nobody reads (`inspect list DIR | true`): the command fails
//! with exit status 1 and says why on stderr when it can, never panics (`print!`/`eprint!` panic on a
//! closed pipe; the help text was printed with `print!`, found while running `inspect scan --help | head`).

use ddpersist::Store;
use std::process::{Command, Output, Stdio};

/// Runs inspect with `args`, its stdout (or stderr) the write end of a pipe whose read end is closed.
fn into_closed_pipe(args: &[&str], closed_stderr: bool) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut c = Command::new(env!("CARGO_BIN_EXE_inspect"));
    c.args(args);
    if closed_stderr {
        c.stdout(Stdio::null()).stderr(writer);
    } else {
        c.stdout(writer).stderr(Stdio::piped());
    }
    c.output().unwrap()
}

fn assert_no_panic(o: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
    assert_ne!(o.status.code(), Some(101), "{what}: {stderr}");
}

#[test]
fn help_and_reports_into_a_closed_pipe_fail_with_a_message_and_no_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.create_stream("s", Default::default()).unwrap();
    store.write("s", &[(1u64, 2u64, 0u64, 1i64)]).unwrap();
    store.seal("s", 1).unwrap();
    drop(store);
    let dir = tmp.path().to_str().unwrap();
    for args in [
        vec!["--help"],
        vec!["scan", "--help"],
        vec!["list", dir],
        vec!["verify", dir],
        vec!["stats", "--json", dir],
        vec!["scan", dir, "s"],
    ] {
        let what = format!("inspect {}", args.join(" "));
        let o = into_closed_pipe(&args, false);
        assert_no_panic(&o, &what);
        assert_eq!(o.status.code(), Some(1), "{what}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.starts_with("inspect: cannot write output:") && stderr.contains("Broken pipe"),
            "{what}: {stderr}"
        );
    }
    // A failure with nowhere to say it: the exit status alone reports it.
    for args in [vec!["list", "/nonexistent/ddpersist"], vec!["--no-such-flag"]] {
        let what = format!("inspect {} 2>closed", args.join(" "));
        let o = into_closed_pipe(&args, true);
        assert_no_panic(&o, &what);
        let want = if args[0] == "list" { 1 } else { 2 };
        assert_eq!(o.status.code(), Some(want), "{what}");
    }
}
