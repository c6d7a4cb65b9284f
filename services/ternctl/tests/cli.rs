//! Black-box checks of the binary that need no store: argument parsing, exit codes and the
//! message for an unreachable endpoint. Port 1 on loopback is never a tern-store, so the
//! connection is refused at once. End-to-end tests against real stores live elsewhere.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const UNREACHABLE: &str = "http://127.0.0.1:1";

fn ternctl(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ternctl"))
        .args(args)
        .env_remove("TERN_ENDPOINT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ternctl");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for ternctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unreachable_endpoint_is_one_clear_line() {
    let o = ternctl(&["--endpoint", UNREACHABLE, "domain", "list"], b"");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert!(
        err.starts_with("error: cannot reach tern-store at http://127.0.0.1:1: "),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn global_flags_after_the_subcommand() {
    let o = ternctl(
        &["cluster", "status", "--json", "--endpoint", UNREACHABLE],
        b"",
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("cannot reach tern-store at http://127.0.0.1:1"));
}

#[test]
fn endpoint_from_the_environment() {
    let o = Command::new(env!("CARGO_BIN_EXE_ternctl"))
        .args(["queue", "list"])
        .env("TERN_ENDPOINT", "127.0.0.1:1")
        .stdin(Stdio::null())
        .output()
        .expect("run ternctl");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("cannot reach tern-store at http://127.0.0.1:1"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["domain", "frobnicate"][..],
        &["user", "add", "alice@example.test"], // --password-stdin is required
        &["alias", "add", "a@example.test"],    // needs a target
        &["queue", "list", "--limit", "many"],
        &[
            "user",
            "add",
            "a@example.test",
            "--password-stdin",
            "--quota",
            "lots",
        ],
        &["cluster", "add-node", "0", "127.0.0.1:7104"],
        &[],
    ] {
        let o = ternctl(args, b"");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
    }
}

#[test]
fn invalid_endpoint_is_a_usage_error() {
    let o = ternctl(
        &["--endpoint", "https://127.0.0.1:1", "domain", "list"],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("TLS"), "{}", stderr(&o));
}

#[test]
fn empty_password_is_refused_before_connecting() {
    for input in [&b""[..], b"\n", b"\r\n"] {
        let o = ternctl(
            &[
                "--endpoint",
                UNREACHABLE,
                "user",
                "add",
                "alice@example.test",
                "--password-stdin",
            ],
            input,
        );
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert!(stderr(&o).contains("empty password"), "{}", stderr(&o));
    }
}

#[test]
fn password_is_read_then_the_endpoint_is_tried() {
    let o = ternctl(
        &[
            "user",
            "passwd",
            "alice@example.test",
            "--password-stdin",
            "--endpoint",
            UNREACHABLE,
        ],
        b"hunter2\r\n",
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert!(err.contains("cannot reach tern-store"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password must never be echoed"
    );
}

#[test]
fn help_lists_every_command_group() {
    let o = ternctl(&["--help"], b"");
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    for group in [
        "domain", "user", "alias", "list", "cluster", "queue", "trace",
    ] {
        assert!(out.contains(group), "--help lacks {group}: {out}");
    }
    let o = ternctl(&["list", "--help"], b"");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("show-all"), "{out}");
}
