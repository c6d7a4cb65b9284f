//! `ternctl` — the operator's CLI over tern-store's directory, queue and admin API.
//!
//! A thin client by design: every rule (address syntax, uniqueness, quorum) lives in the store,
//! which any node enforces, so the CLI cannot drift from the server. It adds what operators need
//! around the RPCs: global `--endpoint`/`--json` flags, aligned tables, stable JSON shapes for
//! scripts, bounded connect and request timeouts, and one-line errors in words (see
//! [`error`]) with exit status 1 (2 for usage and configuration errors).
//!
//! Every store port is mutual TLS: ternctl presents the admin certificate, found through
//! flags, `TERNCTL_*` variables or a profile file ([`profile`]), and when a handshake fails it
//! says whose certificate was refused and which files it used ([`tls`]).
//!
//! Dependencies: `tonic`/`tern-proto` (the store's gRPC API, and the mutual-TLS connector every
//! Tern process dials with), `tern-trust` (certificate files and identities), `rustls` (reading
//! its errors to tell who refused the handshake), `tokio` (the runtime), `clap` (flags),
//! `serde`/`serde_json` (`--json` output), `toml` (profiles), `anyhow` (errors), `libc`
//! (terminal echo off while a password is typed at `--password-stdin`).

mod cli;
mod client;
mod commands;
mod error;
mod output;
mod profile;
mod tls;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse(); // exits 2 with clap's message on usage errors
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error::describe(&e));
            ExitCode::from(error::exit_code(&e))
        }
    }
}

/// `ternctl ... | head` closing the pipe early is not an error worth reporting.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
