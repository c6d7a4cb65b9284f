//! The fault schedule of `tern-chaos`: which faults, how often, and how each is made and
//! healed on a running store cluster.

use std::time::{Duration, Instant};

use tern_testkit::faultproxy::Mode;
use tern_testkit::StoreCluster;

/// splitmix64: a small, well-known generator, so a seed means the same schedule everywhere.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// What the fault schedule did.
#[derive(Default)]
pub struct Faults {
    pub total: u32,
    pub leader_kills: u32,
    pub partitions: u32,
    /// When each fault began and when it was healed (µs since the start), and what it was
    /// (its number, start and kind, as the run's log names it).
    pub spans: Vec<(u64, u64, String)>,
}

/// The faults a schedule draws from, with their weights (out of 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// SIGKILL the leader, restart it after the hold.
    KillLeader,
    /// SIGKILL a follower.
    KillFollower,
    /// SIGKILL the leader and a follower at once (5 nodes or more: a majority survives).
    KillTwo,
    /// SIGSTOP a node (the leader half the time), SIGCONT after the hold.
    Pause,
    /// A node (the leader half the time) cut off from every peer, both ways.
    Isolate,
    /// A minority (with the leader half the time) cut off from the majority, both ways.
    Split,
    /// One node cannot reach another (the leader a follower, or a follower the leader);
    /// the other way still works.
    OneWay,
    /// Two groups that cannot reach each other, and one node that reaches both.
    Bridge,
    /// Every connection to a node reset at once (and refused for the hold).
    DropConnections,
    /// Every link to a node (the leader half the time) 50 to 400 ms slower, both ways.
    Delay,
    /// A service (tern-queue, tern-smtp or tern-access) cut off from one store node (the
    /// leader half the time) or, one time in three, from all of them.
    ServiceCut,
    /// Stalled clients: [`STALLED`] connections to a public listener (SMTP, IMAP, POP3)
    /// that send the start of a command and then nothing, until the hold ends.
    Stall,
    /// A node's disk (the leader's half the time) filled below the store's free-space
    /// margin, freed after the hold (see `disk.rs`).
    DiskFull,
    /// The wall clock of a store node (the leader half the time) or a service jumps
    /// [`CLOCK_JUMP_MAX`] or less forward or back, as an NTP step would, and is set right
    /// after the hold (through `tern_clock`'s fault offsets).
    ClockJump,
}

/// The largest clock jump: below a third of tern-queue's default lease (60 s), the margin
/// a worker keeps before it considers a lease it could not renew gone. A larger forward
/// step on the node that records a lease could hand a queue entry to a second worker while
/// the first still sends it (a known limit, in the README).
pub const CLOCK_JUMP_MAX: Duration = Duration::from_secs(19);

/// Connections a stall fault opens.
pub const STALLED: usize = 64;

pub const SCHEDULE: [(Kind, u64); 14] = [
    (Kind::KillLeader, 30),
    (Kind::KillFollower, 4),
    (Kind::KillTwo, 6),
    (Kind::Pause, 6),
    (Kind::Isolate, 10),
    (Kind::Split, 10),
    (Kind::OneWay, 8),
    (Kind::Bridge, 6),
    (Kind::DropConnections, 4),
    (Kind::Delay, 4),
    (Kind::ServiceCut, 4),
    (Kind::Stall, 2),
    (Kind::DiskFull, 3),
    (Kind::ClockJump, 3),
];

/// A service process the schedule may cut off from the store: its name and pid.
pub struct Service {
    pub name: &'static str,
    pub pid: u32,
}

/// A public listener the schedule may stall: its name, address, and the start of a
/// command its stalled clients send (then nothing more).
pub struct Listener {
    pub name: &'static str,
    pub addr: String,
    pub opening: &'static [u8],
}

/// What besides the store nodes the schedule may hit.
#[derive(Default)]
pub struct Targets {
    pub services: Vec<Service>,
    pub listeners: Vec<Listener>,
    /// Whether the nodes' `db/` are on tmpfs mounts the disk fault can fill.
    pub disks: bool,
    /// The only kinds to draw (`--faults`); empty: all of them.
    pub only: Vec<Kind>,
    /// Where the processes read their clock offsets (`tern_clock::FAULT_DIR_ENV`).
    pub clocks: Option<std::path::PathBuf>,
}

/// Opens `n` connections to `l` and sends each the opening; returns those that connected.
async fn stall(l: &Listener, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut open = Vec::new();
    for _ in 0..n {
        if let Ok(mut s) = tokio::net::TcpStream::connect(&l.addr).await {
            if s.write_all(l.opening).await.is_ok() {
                open.push(s);
            }
        }
    }
    open
}

fn draw(rng: &mut Rng) -> Kind {
    let mut x = rng.below(SCHEDULE.iter().map(|(_, w)| w).sum());
    for (kind, w) in SCHEDULE {
        if x < w {
            return kind;
        }
        x -= w;
    }
    Kind::KillLeader
}

/// Makes the links `(from, to)` (from cannot reach to) the cluster's only cuts: each node's
/// proxy blocks the processes of the nodes that may not reach it.
fn cut(cluster: &StoreCluster, links: &[(usize, usize)]) {
    cut_with(cluster, links, &[]);
}

/// [`cut`], and also the processes `others` (pid, node) from those nodes.
fn cut_with(cluster: &StoreCluster, links: &[(usize, usize)], others: &[(u32, usize)]) {
    for (j, proxy) in cluster.proxies.iter().enumerate() {
        let mut pids: Vec<u32> = links
            .iter()
            .filter(|(_, to)| *to == j)
            .filter_map(|(from, _)| cluster.nodes[*from].pid())
            .collect();
        pids.extend(others.iter().filter(|(_, to)| *to == j).map(|(p, _)| *p));
        proxy.block_from(&pids);
    }
}

/// Every link between the two groups, both ways.
fn between(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
    let mut links = Vec::new();
    for &x in a {
        for &y in b {
            links.push((x, y));
            links.push((y, x));
        }
    }
    links
}

fn shuffled(rng: &mut Rng, mut v: Vec<usize>) -> Vec<usize> {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

fn names(nodes: &[usize]) -> String {
    let v: Vec<String> = nodes.iter().map(|i| (i + 1).to_string()).collect();
    v.join(",")
}

pub async fn inject(
    cluster: &mut StoreCluster,
    targets: &Targets,
    rng: &mut Rng,
    until: Instant,
    started: Instant,
) -> anyhow::Result<Faults> {
    let mut f = Faults::default();
    let n = cluster.nodes.len();
    let now = |started: Instant| started.elapsed().as_micros() as u64;
    while Instant::now() + Duration::from_secs(8) < until {
        tokio::time::sleep(rng.millis(1_000, 3_000)).await;
        let leader = cluster.wait_leader(Duration::from_secs(15)).await.ok();
        let all: Vec<usize> = (0..n).collect();
        let others = |x: usize| -> Vec<usize> { all.iter().copied().filter(|&i| i != x).collect() };
        let any = |rng: &mut Rng| rng.below(n as u64) as usize;
        let follower = |rng: &mut Rng| {
            let fs: Vec<usize> = all.iter().copied().filter(|&i| Some(i) != leader).collect();
            fs[rng.below(fs.len() as u64) as usize]
        };
        let leader_or_any = |rng: &mut Rng| match leader {
            Some(l) if rng.below(2) == 0 => l,
            _ => rng.below(n as u64) as usize,
        };
        let mut kind = draw(rng);
        while !targets.only.is_empty() && !targets.only.contains(&kind) {
            kind = draw(rng);
        }
        if kind == Kind::KillTwo && n < 5 {
            kind = Kind::KillLeader;
        }
        let services = &targets.services;
        if kind == Kind::ServiceCut && services.is_empty() {
            kind = Kind::Isolate;
        }
        if kind == Kind::Stall && targets.listeners.is_empty() {
            kind = Kind::Pause;
        }
        if kind == Kind::DiskFull && !targets.disks {
            kind = Kind::Delay;
        }
        if kind == Kind::ClockJump && targets.clocks.is_none() {
            kind = Kind::Delay;
        }
        let hold = rng.millis(2_000, 5_000);
        f.total += 1;
        let began = now(started);
        let tag = format!("fault {} ({:.1} s)", f.total, began as f64 / 1e6);
        let is_leader = |i: usize| if Some(i) == leader { " (leader)" } else { "" };
        match kind {
            Kind::KillLeader | Kind::KillFollower | Kind::KillTwo => {
                let mut victims = match (kind, leader) {
                    (Kind::KillFollower, _) | (_, None) => vec![follower(rng)],
                    (_, Some(l)) => vec![l],
                };
                if kind == Kind::KillTwo {
                    let second = follower(rng);
                    if !victims.contains(&second) {
                        victims.push(second);
                    }
                }
                if victims.iter().any(|&v| Some(v) == leader) {
                    f.leader_kills += 1;
                }
                let shown: Vec<String> = victims
                    .iter()
                    .map(|&v| format!("{}{}", v + 1, is_leader(v)))
                    .collect();
                println!("{tag}: SIGKILL node {} for {hold:?}", shown.join(" and "));
                for &v in &victims {
                    cluster.kill(v);
                }
                tokio::time::sleep(hold).await;
                for &v in &victims {
                    cluster.spawn(v).await?;
                }
            }
            Kind::Pause => {
                let target = leader_or_any(rng);
                println!(
                    "{tag}: SIGSTOP node {}{} for {hold:?}",
                    target + 1,
                    is_leader(target)
                );
                let pid = cluster.nodes[target].pid();
                signal(pid, libc::SIGSTOP);
                tokio::time::sleep(hold).await;
                signal(pid, libc::SIGCONT);
            }
            Kind::DropConnections => {
                let target = any(rng);
                println!(
                    "{tag}: connections to node {}{} reset and refused for {hold:?}",
                    target + 1,
                    is_leader(target)
                );
                cluster.proxies[target].set_mode(Mode::Reset);
                tokio::time::sleep(hold).await;
                cluster.proxies[target].set_mode(Mode::Pass);
            }
            Kind::Delay => {
                let target = leader_or_any(rng);
                let delay = rng.millis(50, 400);
                println!(
                    "{tag}: links to node {}{} {delay:?} slower for {hold:?}",
                    target + 1,
                    is_leader(target)
                );
                cluster.proxies[target].set_delay(delay);
                tokio::time::sleep(hold).await;
                cluster.proxies[target].set_delay(Duration::ZERO);
            }
            Kind::ServiceCut => {
                f.partitions += 1;
                let service = &services[rng.below(services.len() as u64) as usize];
                let nodes = if rng.below(3) == 0 {
                    all.clone()
                } else {
                    vec![leader_or_any(rng)]
                };
                println!(
                    "{tag}: {} cut off from node {} for {hold:?}",
                    service.name,
                    nodes
                        .iter()
                        .map(|&v| format!("{}{}", v + 1, is_leader(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let others: Vec<(u32, usize)> = nodes.iter().map(|&v| (service.pid, v)).collect();
                cut_with(cluster, &[], &others);
                tokio::time::sleep(hold).await;
                cut(cluster, &[]);
            }
            Kind::DiskFull => {
                let target = leader_or_any(rng);
                let data_dir = cluster.data_dir(target).to_path_buf();
                let (filler, took) =
                    tokio::task::spawn_blocking(move || super::disk::fill(&data_dir)).await??;
                println!(
                    "{tag}: disk of node {}{} filled ({} MiB, {} MiB left) for {hold:?}",
                    target + 1,
                    is_leader(target),
                    took >> 20,
                    super::disk::LEFT_FREE >> 20
                );
                tokio::time::sleep(hold).await;
                std::fs::remove_file(&filler)?;
            }
            Kind::ClockJump => {
                let (name, pid) = if services.is_empty() || rng.below(2) == 0 {
                    let target = leader_or_any(rng);
                    (
                        format!("node {}{}", target + 1, is_leader(target)),
                        cluster.nodes[target].pid(),
                    )
                } else {
                    let s = &services[rng.below(services.len() as u64) as usize];
                    (s.name.to_string(), Some(s.pid))
                };
                let max = CLOCK_JUMP_MAX.as_millis() as u64;
                let by = (1_000 + rng.below(max - 999)) as i64;
                let by = if rng.below(2) == 0 { by } else { -by };
                println!(
                    "{tag}: clock of {name} jumps {:+.1} s for {hold:?}",
                    by as f64 / 1e3
                );
                if let (Some(dir), Some(pid)) = (&targets.clocks, pid) {
                    let file = tern_clock::offset_file(dir, pid);
                    std::fs::write(&file, by.to_string())?;
                    tokio::time::sleep(hold).await;
                    std::fs::remove_file(&file)?;
                }
            }
            Kind::Stall => {
                let l = &targets.listeners[rng.below(targets.listeners.len() as u64) as usize];
                let open = stall(l, STALLED).await;
                println!(
                    "{tag}: {} stalled {} connections for {hold:?}",
                    l.name,
                    open.len()
                );
                tokio::time::sleep(hold).await;
                drop(open);
            }
            Kind::Isolate | Kind::Split | Kind::OneWay | Kind::Bridge => {
                f.partitions += 1;
                let links = match kind {
                    Kind::Isolate => {
                        let target = leader_or_any(rng);
                        println!(
                            "{tag}: node {}{} isolated for {hold:?}",
                            target + 1,
                            is_leader(target)
                        );
                        between(&[target], &others(target))
                    }
                    Kind::Split => {
                        // The minority: with the leader half the time.
                        let order = match leader {
                            Some(l) if rng.below(2) == 0 => {
                                let mut v = vec![l];
                                v.extend(shuffled(rng, others(l)));
                                v
                            }
                            _ => shuffled(rng, all.clone()),
                        };
                        let (minority, majority) = order.split_at((n - 1) / 2);
                        println!(
                            "{tag}: nodes {} | {} split for {hold:?}{}",
                            names(minority),
                            names(majority),
                            if leader.is_some_and(|l| minority.contains(&l)) {
                                " (leader in the minority)"
                            } else {
                                ""
                            }
                        );
                        between(minority, majority)
                    }
                    Kind::OneWay => {
                        let (from, to) = match leader {
                            Some(l) if rng.below(2) == 0 => (l, follower(rng)),
                            Some(l) => (follower(rng), l),
                            None => {
                                let a = any(rng);
                                (a, others(a)[0])
                            }
                        };
                        println!(
                            "{tag}: node {}{} cannot reach node {}{} for {hold:?}",
                            from + 1,
                            is_leader(from),
                            to + 1,
                            is_leader(to)
                        );
                        vec![(from, to)]
                    }
                    _ => {
                        let order = shuffled(rng, all.clone());
                        let bridge = order[0];
                        let rest = &order[1..];
                        let (a, b) = rest.split_at(rest.len() / 2);
                        println!(
                            "{tag}: nodes {} | {} apart, bridged by node {}{} for {hold:?}",
                            names(a),
                            names(b),
                            bridge + 1,
                            is_leader(bridge)
                        );
                        between(a, b)
                    }
                };
                cut(cluster, &links);
                tokio::time::sleep(hold).await;
                cut(cluster, &[]);
            }
        }
        f.spans
            .push((began, now(started), format!("{tag}, {kind:?}")));
    }
    Ok(f)
}

pub fn signal(pid: Option<u32>, sig: libc::c_int) {
    if let Some(pid) = pid {
        // SAFETY: kill(2) with a pid this program started and a valid signal number.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}
