//! Black-box checks of the binary that need no store: argument parsing, exit codes, where the
//! client certificate comes from, the message for an unreachable endpoint, and the messages
//! for a refused TLS handshake (against an in-process TLS listener, not a store). Port 1 on
//! loopback is never a tern-store, so the connection is refused at once. End-to-end tests
//! against real stores live in tern-store's tests.
//!
//! Every run gets a fresh current directory and an environment without `TERN_ENDPOINT` and
//! `TERNCTL_*`, so neither the developer's shell nor a `.tern/dev` profile leaks in.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tern_trust::pki::{ensure_dev_pki, files, CertFiles};
use tern_trust::Role;

const UNREACHABLE: &str = "http://127.0.0.1:1";

/// A scratch directory with a development PKI in `tls/`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        ensure_dev_pki(&dir.path().join("tls"), "tern.test").expect("dev PKI");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn files(&self, role: Role) -> CertFiles {
        files(&self.path().join("tls"), role)
    }

    /// `--ca/--cert/--key` for the admin certificate.
    fn admin_flags(&self) -> Vec<String> {
        let f = self.files(Role::Admin);
        [("--ca", f.ca), ("--cert", f.cert), ("--key", f.key)]
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
            .collect()
    }
}

/// Runs ternctl in `cwd` with a clean environment plus `env`.
fn run_in(cwd: &Path, args: &[&str], env: &[(&str, &Path)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ternctl"));
    cmd.args(args).current_dir(cwd);
    for var in [
        "TERN_ENDPOINT",
        "TERNCTL_CA",
        "TERNCTL_CERT",
        "TERNCTL_KEY",
        "TERNCTL_PROFILE",
    ] {
        cmd.env_remove(var);
    }
    for (var, value) in env {
        cmd.env(var, value);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ternctl");
    let mut input = child.stdin.take().expect("stdin");
    // ternctl may exit before reading (a usage error); a closed pipe is not a failure here.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait for ternctl")
}

/// Runs ternctl with the admin certificate flags after `args`.
fn ternctl(args: &[&str], stdin: &[u8]) -> Output {
    let s = Scratch::new();
    let flags = s.admin_flags();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(flags.iter().map(String::as_str));
    run_in(s.path(), &all, &[], stdin)
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
fn endpoint_and_certificate_from_the_environment() {
    let s = Scratch::new();
    let f = s.files(Role::Admin);
    let o = Command::new(env!("CARGO_BIN_EXE_ternctl"))
        .args(["queue", "list"])
        .current_dir(s.path())
        .env_remove("TERNCTL_PROFILE")
        .env("TERN_ENDPOINT", "127.0.0.1:1")
        .env("TERNCTL_CA", &f.ca)
        .env("TERNCTL_CERT", &f.cert)
        .env("TERNCTL_KEY", &f.key)
        .stdin(Stdio::null())
        .output()
        .expect("run ternctl");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("cannot reach tern-store at http://127.0.0.1:1"));
}

#[test]
fn https_endpoints_are_accepted() {
    let o = ternctl(
        &["--endpoint", "https://127.0.0.1:1", "domain", "list"],
        b"",
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains("cannot reach tern-store at http://127.0.0.1:1"),
        "{}",
        stderr(&o)
    );
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
    let o = ternctl(&["--endpoint", "ftp://127.0.0.1:1", "domain", "list"], b"");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = stderr(&o);
    assert!(err.contains("unsupported scheme"), "{err}");
    assert!(err.contains("--endpoint/TERN_ENDPOINT"), "{err}");
}

#[test]
fn no_certificate_is_a_clear_usage_error() {
    let empty = tempfile::tempdir().expect("tempdir");
    let o = run_in(
        empty.path(),
        &["--endpoint", UNREACHABLE, "domain", "list"],
        &[],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(
        stderr(&o).trim_end(),
        "error: no client certificate: pass --ca/--cert/--key or --profile, or run from a \
         directory with .tern/dev/ternctl.toml (cargo xtask up writes it)"
    );
}

#[test]
fn the_development_profile_is_read_from_the_current_directory() {
    // What `cargo xtask up` leaves behind: .tern/dev/ternctl.toml naming tls/… next to it.
    let root = tempfile::tempdir().expect("tempdir");
    let dev = root.path().join(".tern/dev");
    ensure_dev_pki(&dev.join("tls"), "tern.test").expect("dev PKI");
    std::fs::write(
        dev.join("ternctl.toml"),
        "endpoint = \"127.0.0.1:1\"\nca = \"tls/ca.crt\"\ncert = \"tls/admin.crt\"\n\
         key = \"tls/admin.key\"\n",
    )
    .expect("write profile");
    let o = run_in(root.path(), &["domain", "list"], &[], b"");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains("cannot reach tern-store at http://127.0.0.1:1"),
        "{}",
        stderr(&o)
    );
    // --endpoint wins over the profile's.
    let o = run_in(
        root.path(),
        &["domain", "list", "--endpoint", "127.0.0.1:2"],
        &[],
        b"",
    );
    assert!(
        stderr(&o).contains("cannot reach tern-store at http://127.0.0.1:2"),
        "{}",
        stderr(&o)
    );
    // The same profile named from elsewhere, by variable.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let profile = dev.join("ternctl.toml");
    let o = run_in(
        elsewhere.path(),
        &["domain", "list"],
        &[("TERNCTL_PROFILE", profile.as_path())],
        b"",
    );
    assert!(
        stderr(&o).contains("cannot reach tern-store at http://127.0.0.1:1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_files_are_named() {
    let s = Scratch::new();
    let profile = s.path().join("missing.toml");
    let o = run_in(
        s.path(),
        &[
            "domain",
            "list",
            "--profile",
            &profile.display().to_string(),
        ],
        &[],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "error: profile {} (--profile/TERNCTL_PROFILE) does not exist",
            profile.display()
        )
    );

    let f = s.files(Role::Admin);
    let gone = s.path().join("tls/nobody.crt");
    let o = run_in(
        s.path(),
        &[
            "domain",
            "list",
            "--ca",
            &f.ca.display().to_string(),
            "--cert",
            &gone.display().to_string(),
            "--key",
            &f.key.display().to_string(),
        ],
        &[],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "error: client certificate {} (--cert/TERNCTL_CERT) does not exist",
            gone.display()
        )
    );

    // A file that is there but is not a certificate: the loader names it.
    let junk = s.path().join("junk.crt");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let o = run_in(
        s.path(),
        &[
            "domain",
            "list",
            "--ca",
            &f.ca.display().to_string(),
            "--cert",
            &junk.display().to_string(),
            "--key",
            &f.key.display().to_string(),
        ],
        &[],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = stderr(&o);
    assert!(
        err.starts_with("error: cannot use the client certificate: "),
        "{err}"
    );
    assert!(err.contains("junk.crt"), "{err}");
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
    for flag in ["--ca", "--cert", "--key", "--profile", "TERNCTL_PROFILE"] {
        assert!(out.contains(flag), "--help lacks {flag}: {out}");
    }
    let o = ternctl(&["list", "--help"], b"");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("show-all"), "{out}");
}

/// A TLS listener on loopback holding `server`'s certificate, as a store node's port does
/// (it completes handshakes and nothing else). Returns its address; it lives as long as the
/// returned stream is kept.
async fn tls_listener(server: CertFiles) -> (String, impl Send) {
    let tls = tern_proto::tls::ClusterTls::load(&server).expect("server certificate");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    (addr, tls.incoming(listener))
}

/// Runs ternctl off the runtime's threads (the listener must keep accepting meanwhile).
async fn ternctl_against(cwd: PathBuf, args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_in(&cwd, &args, &[], b"")
    })
    .await
    .expect("ternctl ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_say_whose_certificate() {
    let ours = Scratch::new();
    let theirs = Scratch::new(); // another cluster's CA

    // A store of another cluster: we refuse its certificate.
    let (addr, _listening) = tls_listener(theirs.files(Role::Store)).await;
    let mut args = vec![
        "domain".to_string(),
        "list".into(),
        "--endpoint".into(),
        addr,
    ];
    args.extend(ours.admin_flags());
    let o = ternctl_against(ours.path().to_path_buf(), args).await;
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert!(
        err.starts_with("error: we refused the certificate of tern-store at "),
        "{err}"
    );
    // Another CA: unknown, or (when both CAs carry the same name, as development CAs do)
    // one whose signature does not verify.
    assert!(
        err.contains("UnknownIssuer") || err.contains("BadSignature"),
        "{err}"
    );
    assert!(
        err.contains(&ours.files(Role::Admin).ca.display().to_string()),
        "{err}"
    );

    // Our cluster, but not a store node (the queue's port): we refuse it too, for its role.
    let (addr, _listening) = tls_listener(ours.files(Role::Queue)).await;
    let mut args = vec![
        "domain".to_string(),
        "list".into(),
        "--endpoint".into(),
        addr,
    ];
    args.extend(ours.admin_flags());
    let o = ternctl_against(ours.path().to_path_buf(), args).await;
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert!(err.contains("does not name the store role"), "{err}");
    assert!(err.contains("spiffe://tern.test/tern/store"), "{err}");

    // Our store, but a certificate of the other cluster (with our CA file, so we accept the
    // store): the store refuses ours.
    let (addr, _listening) = tls_listener(ours.files(Role::Store)).await;
    let stranger = theirs.files(Role::Admin);
    let args = vec![
        "domain".to_string(),
        "list".into(),
        "--endpoint".into(),
        addr,
        "--ca".into(),
        ours.files(Role::Admin).ca.display().to_string(),
        "--cert".into(),
        stranger.cert.display().to_string(),
        "--key".into(),
        stranger.key.display().to_string(),
    ];
    let o = ternctl_against(ours.path().to_path_buf(), args).await;
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    // Either the store's alert was read ("refused our client certificate") or the socket
    // was gone first ("closed the connection"); both name our certificate.
    assert!(err.contains("our client certificate"), "{err}");
    assert!(err.contains(&stranger.cert.display().to_string()), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
