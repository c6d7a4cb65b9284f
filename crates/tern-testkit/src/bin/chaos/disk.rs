//! The disk-fill fault of `tern-chaos`: every store node keeps its `db/` on a small tmpfs of
//! its own, and the fault fills one node's tmpfs below the store's free-space margin
//! (`min_free_mb`, 256 MiB by default) for the hold, then frees it.
//!
//! A node is killed and restarted many times in a run, so the tmpfs must outlive the node
//! process: the first start of a node makes a user and mount namespace (no privileges
//! needed on the host's mounts) holding the tmpfs, kept by a small shell loop that ends when
//! this program does, and every start enters that namespace. The holder's pid is in
//! `<data dir>.ns`; the fault reaches the tmpfs through `/proc/<holder>/root`, whether the
//! node is running or not.
//!
//! The tmpfs changes the store's timing (an fsync costs nothing), not what a kill tests: a
//! SIGKILL never loses what the kernel holds, on a disk or a tmpfs. `--tmpfs-mb 0` keeps
//! the data on the plain disk and leaves the disk fault out.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// What the fault leaves free: half the store's default margin of 256 MiB.
pub const LEFT_FREE: u64 = 128 << 20;

/// The largest tmpfs a run may ask for (it is memory).
pub const MAX_TMPFS_MB: u64 = 8 << 10;

/// `f_type` of a tmpfs in statfs(2): how the fault knows it found the node's tmpfs and
/// not the host's disk.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// `text` as one shell word, whatever characters it holds.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Writes the wrapper that runs `bin` with its `db/` on a tmpfs of `size_mb` that outlives
/// it, into `dir`; returns its path (to give the cluster as the store binary).
///
/// Only a node's first start makes its namespace; a later start whose holder has gone
/// fails rather than run on an empty tmpfs (which would be a node that lost its disk, not
/// the fault asked for). A lock file keeps two starts of one node from both making one.
pub fn wrapper(dir: &Path, bin: &Path, size_mb: u64) -> anyhow::Result<PathBuf> {
    let bin = std::fs::canonicalize(bin).with_context(|| format!("{}", bin.display()))?;
    let script = dir.join("tern-store-on-tmpfs");
    let text = format!(
        r#"#!/bin/sh
# tern-chaos: runs tern-store with its db/ on a {size_mb} MiB tmpfs kept by a namespace
# holder that outlives the store (so a restart finds its data) and ends with tern-chaos.
dd=""; prev=""
for a in "$@"; do [ "$prev" = "--data-dir" ] && dd="$a"; prev="$a"; done
[ -n "$dd" ] || {{ echo "tern-chaos: no --data-dir" >&2; exit 1; }}
ns="$dd.ns"
exec 9>"$dd.lock"
flock 9
if [ -f "$ns" ]; then
  [ -d "/proc/$(cat "$ns")" ] || {{ echo "tern-chaos: the tmpfs holder of $dd has gone" >&2; exit 1; }}
else
  mkdir -p "$dd/db"
  setsid unshare --user --map-root-user --mount sh -c '
    mount -t tmpfs -o size={size_mb}m tmpfs "$1/db" || exit 1
    echo $$ > "$1.ns.new" && mv "$1.ns.new" "$1.ns"
    while [ -d /proc/{chaos} ]; do sleep 1; done' sh "$dd" </dev/null >/dev/null 2>&1 9>&- &
  i=0
  while [ ! -f "$ns" ]; do
    i=$((i+1)); [ $i -gt 200 ] && {{ echo "tern-chaos: no tmpfs for $dd" >&2; exit 1; }}
    sleep 0.05
  done
fi
exec 9>&-
exec nsenter --target "$(cat "$ns")" --user --mount --preserve-credentials {bin} "$@"
"#,
        chaos = std::process::id(),
        bin = shell_quote(&bin.to_string_lossy()),
    );
    std::fs::write(&script, text)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

/// The node's `db/` as this program sees it: inside the holder's mount namespace.
fn db_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let ns = PathBuf::from(format!("{}.ns", data_dir.display()));
    let holder = std::fs::read_to_string(&ns).with_context(|| format!("{}", ns.display()))?;
    Ok(PathBuf::from(format!("/proc/{}/root", holder.trim()))
        .join(data_dir.strip_prefix("/")?)
        .join("db"))
}

/// The bytes free on the filesystem holding `dir`, and whether it is a tmpfs.
fn space(dir: &Path) -> anyhow::Result<(u64, bool)> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
    // SAFETY: statfs(2) with a NUL-terminated path and a zeroed struct it fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error()).context("statfs");
    }
    let free = (st.f_bavail as u64).saturating_mul(st.f_bsize as u64);
    Ok((free, st.f_type as i64 == TMPFS_MAGIC))
}

/// Fills the node's tmpfs until [`LEFT_FREE`] bytes are left; returns the filler (to
/// remove when the hold ends) and the bytes it took. Blocking: call it off the runtime.
pub fn fill(data_dir: &Path) -> anyhow::Result<(PathBuf, u64)> {
    let db = db_dir(data_dir)?;
    let (free, tmpfs) = space(&db)?;
    anyhow::ensure!(tmpfs, "{} is not on the node's tmpfs", db.display());
    let filler = db.join("chaos-filler");
    let take = free.saturating_sub(LEFT_FREE);
    let f = std::fs::File::create(&filler)?;
    // fallocate, not a sparse file: a tmpfs counts only pages it holds.
    // SAFETY: fallocate(2) on a file this function opened, mode 0, a valid length.
    if take > 0 && unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, take as libc::off_t) } != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(&filler);
        return Err(e).context("fallocate");
    }
    Ok((filler, take))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn a_quoted_path_is_one_word_to_the_shell() {
        let path = "/tmp/it's a $dir/`x`";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(path)))
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), path);
    }
}
