//! The wall clock every Tern service reads (`SystemTime`), in one place, so that a fault
//! test can make one process's clock jump as an NTP step would, without touching the
//! machine's clock.
//!
//! Only wall-clock time goes through here: queue entry due times and leases as the store
//! records them, session-token expiry, message dates, delivery-id retention. Monotonic
//! time (`Instant`: timeouts, a worker's own view of its lease, Raft's timers) is not
//! moved by an NTP step and is read directly.
//!
//! **Fault injection.** With `TERN_FAULT_CLOCK_DIR` set, the process adds to the system
//! clock the signed number of milliseconds written in the file named after its own pid in
//! that directory (none, or no file: 0), read again every 100 ms. `tern-chaos` sets it for
//! every process it starts. It is meant for fault tests only; a process started without it
//! reads the system clock unchanged.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable naming the directory of per-process clock offsets.
pub const FAULT_DIR_ENV: &str = "TERN_FAULT_CLOCK_DIR";

/// How often the offset file is read again.
const REREAD: Duration = Duration::from_millis(100);

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);
static FOLLOW: Once = Once::new();

/// The current wall-clock time, as this process is made to see it.
pub fn now() -> SystemTime {
    FOLLOW.call_once(follow_fault_dir);
    shifted(SystemTime::now(), OFFSET_MS.load(Ordering::Relaxed))
}

/// [`now`] in milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> i64 {
    since_epoch(now()).as_millis() as i64
}

/// [`now`] in seconds since the Unix epoch (0 before it).
pub fn now_secs() -> i64 {
    since_epoch(now()).as_secs() as i64
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn shifted(t: SystemTime, offset_ms: i64) -> SystemTime {
    let by = Duration::from_millis(offset_ms.unsigned_abs());
    if offset_ms >= 0 {
        t.checked_add(by).unwrap_or(t)
    } else {
        t.checked_sub(by)
            .filter(|s| *s >= UNIX_EPOCH)
            .unwrap_or(UNIX_EPOCH)
    }
}

/// The offset file of process `pid` in `dir` (what a fault test writes).
pub fn offset_file(dir: &Path, pid: u32) -> PathBuf {
    dir.join(pid.to_string())
}

/// Reads an offset file: a signed integer of milliseconds; anything else is 0.
fn read_offset(file: &Path) -> i64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// With [`FAULT_DIR_ENV`] set, reads this process's offset now and every [`REREAD`] after,
/// on a thread of its own.
fn follow_fault_dir() {
    let Some(dir) = std::env::var_os(FAULT_DIR_ENV) else {
        return;
    };
    let file = offset_file(Path::new(&dir), std::process::id());
    OFFSET_MS.store(read_offset(&file), Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("tern-fault-clock".into())
        .spawn(move || loop {
            std::thread::sleep(REREAD);
            OFFSET_MS.store(read_offset(&file), Ordering::Relaxed);
        });
    if let Err(e) = spawned {
        eprintln!(
            "tern-clock: cannot follow {}: {e}",
            Path::new(&dir).display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_moves_the_clock_both_ways() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            shifted(t, 1_500),
            UNIX_EPOCH + Duration::from_millis(1_001_500)
        );
        assert_eq!(shifted(t, -2_000), UNIX_EPOCH + Duration::from_secs(998));
        assert_eq!(shifted(t, -2_000_000), UNIX_EPOCH, "never before the epoch");
    }

    #[test]
    fn an_offset_file_is_read_as_signed_milliseconds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = offset_file(dir.path(), 42);
        assert_eq!(read_offset(&file), 0, "no file: no offset");
        std::fs::write(&file, "-30000\n").expect("write");
        assert_eq!(read_offset(&file), -30_000);
        std::fs::write(&file, "soon").expect("write");
        assert_eq!(read_offset(&file), 0, "not a number: no offset");
    }

    #[test]
    fn without_the_variable_the_clock_is_the_system_clock() {
        // The test runner does not set it; the two readings are taken in order.
        let before = since_epoch(SystemTime::now()).as_millis() as i64;
        let ours = now_ms();
        let after = since_epoch(SystemTime::now()).as_millis() as i64;
        assert!(before <= ours && ours <= after, "{before} {ours} {after}");
    }
}
