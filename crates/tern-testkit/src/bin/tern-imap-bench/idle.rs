//! The idle-connection measure of `tern-imap-bench`: memory one tern-access node spends per
//! idle IMAP connection, logged in or only greeted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tern_testkit::Platform;
use tokio::sync::Semaphore;

use super::{connection_limits, Args, Imap, PASSWORD};

/// Connections being opened (and logging in) at once in the idle measure.
const IDLE_LOGIN_PARALLEL: usize = 32;
const IDLE_GREET_PARALLEL: usize = 256;
/// tern-access closes a connection that has not logged in after this long.
const TERN_PREAUTH_TIMEOUT: Duration = Duration::from_secs(60);

/// VmRSS of `pid`, in bytes.
fn vm_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")?;
    Ok(kb * 1024)
}

/// Open file descriptors of `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Opens `count` connections, each greeted and (with `login`) logged in as one of `users`.
async fn open_idle(
    port: u16,
    users: &[String],
    count: usize,
    login: bool,
    offset: usize,
) -> anyhow::Result<Vec<Imap>> {
    let parallel = Arc::new(Semaphore::new(if login {
        IDLE_LOGIN_PARALLEL
    } else {
        IDLE_GREET_PARALLEL
    }));
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let user = users[(offset + i) % users.len()].clone();
            let parallel = parallel.clone();
            tokio::spawn(async move {
                let _permit = parallel.acquire_owned().await?;
                // A small read buffer: the bench holds thousands of these.
                let mut c = Imap::connect(port, 1024).await?;
                if login {
                    c.login(&user, PASSWORD)
                        .await
                        .with_context(|| format!("LOGIN {user}"))?;
                }
                Ok::<_, anyhow::Error>(c)
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(count);
    for h in handles {
        conns.push(h.await??);
    }
    Ok(conns)
}

/// Raises RLIMIT_NOFILE to at least `want` (children such as tern-access inherit it).
pub(super) fn raise_nofile(want: libc::rlim_t) -> anyhow::Result<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        if lim.rlim_cur >= want {
            return Ok(lim.rlim_cur);
        }
        if lim.rlim_max < want {
            // Raising the hard limit needs root (CAP_SYS_RESOURCE); fall back to the hard one.
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Ok(want);
            }
        }
        let soft = libc::rlimit {
            rlim_cur: lim.rlim_max.min(want),
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
        Ok(soft.rlim_cur)
    }
}

/// The idle-connection measure on a fresh access node; prints its result.
pub(super) async fn idle_measure(
    args: &Args,
    tern: &Platform,
    users: &[String],
) -> anyhow::Result<()> {
    let total = args.idle_connections;
    let logins = args.idle_logins.min(total);
    let greeted = total - logins;
    let limits = connection_limits(total);
    let limits: Vec<&str> = limits.iter().map(String::as_str).collect();
    let access = tern.add_access(&limits).await?;
    let port = access.imap_port();
    let pid = access.pid().context("tern-access has no pid")?;
    println!(
        "==> idle connections: fresh tern-access (pid {pid}), {total} connections, {logins} logged in"
    );
    // Warm up what the first sessions initialize (store channels, allocator arenas).
    let warm = open_idle(port, users, 16.min(total), true, 0).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = vm_rss(pid)?;
    let fds0 = open_fds(pid);

    let t = Instant::now();
    let mut conns = open_idle(port, users, logins, true, 0).await?;
    let login_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = vm_rss(pid)?;
    let fds1 = open_fds(pid);
    if logins > 0 {
        println!(
            "    {logins} connections logged in in {login_secs:.1} s ({:.0} logins/s); VmRSS {:.1} -> {:.1} MiB, open fds {fds0} -> {fds1}",
            logins as f64 / login_secs,
            mib(rss0),
            mib(rss1)
        );
    }

    let t = Instant::now();
    conns.extend(open_idle(port, users, greeted, false, logins).await?);
    let greet_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss2 = vm_rss(pid)?;
    let fds2 = open_fds(pid);
    if greeted > 0 {
        println!(
            "    {greeted} more connections greeted in {greet_secs:.1} s; VmRSS {:.1} -> {:.1} MiB, open fds {fds1} -> {fds2}",
            mib(rss1),
            mib(rss2)
        );
        if greet_secs + 1.0 >= TERN_PREAUTH_TIMEOUT.as_secs_f64() {
            println!(
                "    warning: opening them took longer than tern-access's {TERN_PREAUTH_TIMEOUT:?} pre-login timeout; the first may have been closed already"
            );
        }
    }
    let open_now = fds2.saturating_sub(fds0);
    let per_conn = |delta: u64, n: usize| {
        if n == 0 {
            0.0
        } else {
            delta as f64 / n as f64
        }
    };
    println!("\nMemory per idle IMAP connection on one tern-access node:");
    println!(
        "  {total} connections ({logins} logged in, {greeted} greeted only); node sockets open: {open_now}; VmRSS {:.1} MiB before, {:.1} MiB after",
        mib(rss0),
        mib(rss2)
    );
    println!(
        "  => {:.0} bytes per idle connection",
        per_conn(rss2.saturating_sub(rss0), total)
    );
    if logins > 0 && greeted > 0 {
        println!(
            "     logged in: {:.0} bytes each; greeted, not logged in: {:.0} bytes each",
            per_conn(rss1.saturating_sub(rss0), logins),
            per_conn(rss2.saturating_sub(rss1), greeted)
        );
        println!(
            "     (a sample of {logins} of the {total} logged in: each LOGIN is an argon2id check in the store, {:.0}/s here, so all {total} would take about {:.0} s; pass --idle-logins {total} for that)",
            logins as f64 / login_secs,
            total as f64 * login_secs / logins as f64
        );
    }
    drop(conns);
    drop(access);
    Ok(())
}
