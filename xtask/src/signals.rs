//! Ctrl-C / SIGTERM for `cargo xtask up`, and signalling its children.
//!
//! The handler only counts: the supervisor loop polls the count, so shutdown runs on the main
//! thread in ordinary code. A second Ctrl-C during shutdown skips the grace period.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

/// Installs the SIGINT/SIGTERM/SIGHUP handler (once per process).
///
/// Plain `libc::signal` rather than the ctrlc crate: ctrlc pulls in nix, which turns on a libc
/// feature that changes the hash of RocksDB's build and forces a 20-minute C++ rebuild.
pub fn install() -> anyhow::Result<()> {
    extern "C" fn on_signal(_: libc::c_int) {
        // Only an atomic increment: async-signal-safe.
        INTERRUPTS.fetch_add(1, Ordering::SeqCst);
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only touches an atomic, which is async-signal-safe.
        let previous = unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        if previous == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error()).context("installing the Ctrl-C handler");
        }
    }
    Ok(())
}

/// How many times we were asked to stop.
pub fn interrupts() -> usize {
    INTERRUPTS.load(Ordering::SeqCst)
}

pub fn interrupted() -> bool {
    interrupts() > 0
}

/// Sleeps up to `d`, returning early (true) when interrupted.
pub fn sleep(d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if interrupted() {
            return true;
        }
        std::thread::sleep(
            Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
        );
    }
    interrupted()
}

/// Sends SIGTERM to `pid` (std's `Child::kill` only sends SIGKILL).
pub fn terminate(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill has no memory-safety preconditions; pid is one of our own live children.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Human name of a signal number, for exit reports.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
