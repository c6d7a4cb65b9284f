//! `cargo xtask up`: the whole local platform in the foreground.
//!
//! Today the platform is the store cluster, N tern-store nodes on 127.0.0.1:7101.. with their
//! data under DATA_DIR/store-I, and one tern-access node (IMAP on 2143 with STARTTLS, IMAPS
//! on 2993, POP3 on 2110 with STLS, POP3S on 2995, a self-signed certificate in DATA_DIR/tls), one tern-queue node (Enqueue on 7201,
//! delivery workers) and one tern-smtp node (MX on 2525, submission on 2587 with STARTTLS,
//! submissions on 2465, the same certificate). After a leader is elected the directory is
//! seeded through ternctl (domain example.test, users alice@ and bob@), which also exercises
//! the operator CLI the way people use it. The store only bootstraps the cluster when its data
//! directory is uninitialized, so a second `up` resumes from the same data.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cargo;
use crate::password;
use crate::prereq;
use crate::procs::{self, Node};
use crate::signals;
use crate::table;

const DOMAIN: &str = "example.test";
const USERS: [&str; 2] = ["alice@example.test", "bob@example.test"];
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long seeding retries while the cluster settles (an election right after startup).
const SEED_RETRY: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// ARCHITECTURE.md's development ports.
const POP3_PORT: u16 = 2110;
const POP3S_PORT: u16 = 2995;
const IMAP_PORT: u16 = 2143;
const IMAPS_PORT: u16 = 2993;
const QUEUE_PORT: u16 = 7201;
const SMTP_MX_PORT: u16 = 2525;
const SMTP_SUBMISSION_PORT: u16 = 2587;
const SMTP_SUBMISSIONS_PORT: u16 = 2465;

/// Raised when Ctrl-C arrives during startup: stop cleanly and exit 0.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// `dns_servers`: `HOST:PORT,...` for tern-smtp's SPF checks and tern-queue's MX lookups;
/// without them SMTP checks no SPF (an offline machine's system resolver would make every
/// MAIL FROM wait for its time-out).
pub fn run(
    nodes: u16,
    data_dir: Option<PathBuf>,
    profile: cargo::Profile,
    dns_servers: Option<String>,
) -> anyhow::Result<()> {
    signals::install()?;
    prereq::ensure()?;
    let data_dir = prepare_data_dir(data_dir)?;
    check_cluster_size(&data_dir, nodes)?;

    println!("==> building the platform: {}", profile.describe());
    let built = cargo::run(profile.build());
    if signals::interrupted() {
        println!("interrupted");
        return Ok(());
    }
    built?;
    let target = cargo::target_dir();
    let store_bin = cargo::bin(&target, profile, "tern-store")?;
    let ctl = Ternctl {
        bin: cargo::bin(&target, profile, "ternctl")?,
        profile: data_dir.join(PROFILE),
    };
    ctl.make_cluster_pki(&data_dir)?;

    let access_bin = cargo::bin(&target, profile, "tern-access")?;
    let queue_bin = cargo::bin(&target, profile, "tern-queue")?;
    let smtp_bin = cargo::bin(&target, profile, "tern-smtp")?;
    procs::check_ports_free(
        nodes,
        &[
            POP3_PORT,
            POP3S_PORT,
            QUEUE_PORT,
            SMTP_MX_PORT,
            SMTP_SUBMISSION_PORT,
            SMTP_SUBMISSIONS_PORT,
        ],
    )?;
    let mut fleet: Vec<Node> = Vec::new();
    for id in 1..=nodes {
        match procs::spawn(
            &store_bin,
            id,
            nodes,
            &data_dir,
            &cluster_tls_args(&data_dir, "store"),
        ) {
            Ok(n) => fleet.push(n),
            Err(e) => {
                procs::stop_all(&mut fleet, STOP_GRACE);
                return Err(e);
            }
        }
    }
    println!(
        "==> started {nodes} tern-store node{}; waiting for a leader (up to {}s)",
        if nodes == 1 { "" } else { "s" },
        LEADER_TIMEOUT.as_secs()
    );

    match start(
        &mut fleet,
        &ctl,
        &[&access_bin, &queue_bin, &smtp_bin],
        nodes,
        &data_dir,
        dns_servers.as_deref(),
    ) {
        Ok(()) => supervise(&mut fleet, &data_dir),
        Err(e) => {
            procs::stop_all(&mut fleet, STOP_GRACE);
            if e.is::<Interrupted>() {
                println!("interrupted; stopped");
                Ok(())
            } else {
                eprintln!("xtask: the logs are in {}/*/log", data_dir.display());
                Err(e)
            }
        }
    }
}

/// The default lives in the workspace (ignored by git); a path given on the command line is
/// taken relative to the current directory like any other CLI path.
fn prepare_data_dir(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match arg {
        Some(d) => d,
        None => cargo::workspace_root().join(".tern").join("dev"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

/// A data directory belongs to a cluster of one size: the nodes bootstrap once, from the
/// member list of their first run. Starting it with another `--nodes` would leave extra nodes
/// outside the cluster, or too few for a quorum; refuse that with a clear way out.
fn check_cluster_size(data_dir: &Path, nodes: u16) -> anyhow::Result<()> {
    let file = data_dir.join("nodes");
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let recorded: u16 = text
                .trim()
                .parse()
                .with_context(|| format!("reading {}", file.display()))?;
            if recorded != nodes {
                bail!(
                    "{} holds a {recorded}-node cluster; run `cargo xtask up --nodes {recorded}`, \
                     or use another --data-dir for a {nodes}-node one (or grow the running \
                     cluster with `ternctl cluster add-node`)",
                    data_dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&file, format!("{nodes}\n"))
                .with_context(|| format!("writing {}", file.display()))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Waits for a leader, seeds the directory, starts the access node and prints the summary.
fn start(
    fleet: &mut Vec<Node>,
    ctl: &Ternctl,
    [access_bin, queue_bin, smtp_bin]: &[&Path; 3],
    nodes: u16,
    data_dir: &Path,
    dns_servers: Option<&str>,
) -> anyhow::Result<()> {
    let leader = wait_for_leader(fleet, ctl)?;
    println!(
        "==> node {} is the leader; creating {DOMAIN} and its users",
        leader.id
    );
    wait_for_addr_files(fleet, Duration::from_secs(5));

    let pw_file = data_dir.join("dev-password");
    let (pw, fresh) = password::load_or_create(&pw_file)?;
    let mut endpoints = vec![leader.endpoint.clone()];
    endpoints.extend(
        fleet
            .iter()
            .map(Node::endpoint)
            .filter(|e| *e != leader.endpoint),
    );
    seed(ctl, &endpoints, &pw, fresh)?;
    fleet.push(start_access(access_bin, nodes, data_dir)?);
    fleet.push(start_queue(queue_bin, nodes, data_dir, dns_servers)?);
    fleet.push(start_smtp(smtp_bin, nodes, data_dir, dns_servers)?);
    wait_for_addr_files(fleet, Duration::from_secs(10));
    print_summary(fleet, leader.id, data_dir, &pw_file, &pw, &ctl.bin);
    Ok(())
}

/// The access node: POP3 with STLS and POP3S with the development certificate (made once,
/// kept in DATA_DIR/tls), plain-text login allowed because every listener is on loopback.
fn start_access(bin: &Path, nodes: u16, data_dir: &Path) -> anyhow::Result<Node> {
    let tls = data_dir.join("tls");
    let out = Command::new(bin)
        .arg("dev-cert")
        .arg(&tls)
        .output()
        .with_context(|| format!("running {} dev-cert", bin.display()))?;
    if !out.status.success() {
        bail!(
            "making the development certificate: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut args = vec![
        "--store".to_string(),
        store_list(nodes),
        "--pop3-listen".into(),
        format!("127.0.0.1:{POP3_PORT}"),
        "--pop3s-listen".into(),
        format!("127.0.0.1:{POP3S_PORT}"),
        "--imap-listen".into(),
        format!("127.0.0.1:{IMAP_PORT}"),
        "--imaps-listen".into(),
        format!("127.0.0.1:{IMAPS_PORT}"),
    ];
    args.extend(dev_tls_args(&tls));
    args.extend(cluster_tls_args(data_dir, "access"));
    procs::spawn_service(bin, "tern-access", &data_dir.join("access"), &args)
}

/// `--cluster-ca`, `--cluster-cert` and `--cluster-key` for a process of `role`: the
/// development cluster PKI in DATA_DIR/tls (made by `ternctl dev-pki`), one certificate per
/// role, so every internal port runs mutual TLS as in production.
fn cluster_tls_args(data_dir: &Path, role: &str) -> [String; 6] {
    let tls = data_dir.join("tls");
    [
        "--cluster-ca".into(),
        tls.join("ca.crt").display().to_string(),
        "--cluster-cert".into(),
        tls.join(format!("{role}.crt")).display().to_string(),
        "--cluster-key".into(),
        tls.join(format!("{role}.key")).display().to_string(),
    ]
}

/// The development certificate in `tls` (made by `tern-access dev-cert`), and plain-text
/// login allowed: every development listener is on loopback. Access and SMTP take both.
fn dev_tls_args(tls: &Path) -> [String; 6] {
    [
        "--tls-cert".into(),
        tls.join("cert.pem").display().to_string(),
        "--tls-key".into(),
        tls.join("key.pem").display().to_string(),
        "--loopback-plaintext-auth".into(),
        "true".into(),
    ]
}

/// `127.0.0.1:7101,...` for every store node.
fn store_list(nodes: u16) -> String {
    (1..=nodes)
        .map(|i| format!("127.0.0.1:{}", procs::BASE_PORT + i))
        .collect::<Vec<_>>()
        .join(",")
}

/// The queue: Enqueue API on 7201 and delivery workers (remote mail over real DNS/MX).
fn start_queue(
    bin: &Path,
    nodes: u16,
    data_dir: &Path,
    dns_servers: Option<&str>,
) -> anyhow::Result<Node> {
    let mut args = vec![
        "--store".to_string(),
        store_list(nodes),
        "--listen".into(),
        format!("127.0.0.1:{QUEUE_PORT}"),
        "--hostname".into(),
        "mail.example.test".into(),
    ];
    if let Some(dns) = dns_servers {
        args.extend(["--dns-servers".into(), dns.to_string()]);
    }
    args.extend(cluster_tls_args(data_dir, "queue"));
    procs::spawn_service(bin, "tern-queue", &data_dir.join("queue"), &args)
}

/// SMTP ingress on the three development ports, with the certificate the access node made;
/// AUTH without TLS is allowed on the loopback submission listener for development.
fn start_smtp(
    bin: &Path,
    nodes: u16,
    data_dir: &Path,
    dns_servers: Option<&str>,
) -> anyhow::Result<Node> {
    let mut args = vec![
        "--store".to_string(),
        store_list(nodes),
        "--queue".into(),
        format!("127.0.0.1:{QUEUE_PORT}"),
        "--hostname".into(),
        "mail.example.test".into(),
        "--mx-listen".into(),
        format!("127.0.0.1:{SMTP_MX_PORT}"),
        "--submission-listen".into(),
        format!("127.0.0.1:{SMTP_SUBMISSION_PORT}"),
        "--submissions-listen".into(),
        format!("127.0.0.1:{SMTP_SUBMISSIONS_PORT}"),
    ];
    match dns_servers {
        Some(dns) => args.extend(["--dns-servers".into(), dns.to_string()]),
        None => args.extend(["--spf".into(), "false".into()]),
    }
    args.extend(dev_tls_args(&data_dir.join("tls")));
    args.extend(cluster_tls_args(data_dir, "smtp"));
    procs::spawn_service(bin, "tern-smtp", &data_dir.join("smtp"), &args)
}

struct Leader {
    id: u64,
    endpoint: String,
}

/// Polls `ternctl cluster status --json` on every running node until one names a leader.
fn wait_for_leader(fleet: &mut [Node], ctl: &Ternctl) -> anyhow::Result<Leader> {
    let deadline = Instant::now() + LEADER_TIMEOUT;
    let mut last = String::from("no answer yet");
    loop {
        report_exits(fleet);
        if !fleet.iter().any(Node::is_running) {
            bail!("every tern-store node exited during startup");
        }
        for n in fleet.iter_mut().filter(|n| n.is_running()) {
            n.read_addr_file();
            let out = ctl.run(&n.endpoint(), &["cluster", "status", "--json"], None)?;
            if !out.ok {
                last = format!("node {}: {}", n.id, out.stderr.trim());
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&out.stdout).with_context(|| {
                format!("ternctl cluster status printed no JSON: {}", out.stdout)
            })?;
            let id = v["leader_id"].as_u64().unwrap_or(0);
            if id != 0 {
                let addr = v["leader_addr"].as_str().unwrap_or_default();
                let endpoint = if addr.is_empty() {
                    n.endpoint()
                } else {
                    format!("http://{addr}")
                };
                return Ok(Leader { id, endpoint });
            }
            last = format!("node {}: no leader yet", n.id);
        }
        if Instant::now() >= deadline {
            bail!(
                "no leader was elected within {}s (last answer: {last})",
                LEADER_TIMEOUT.as_secs()
            );
        }
        if signals::sleep(Duration::from_millis(500)) {
            return Err(Interrupted.into());
        }
    }
}

/// The metrics ports are random; give the nodes a moment to write them if they have not yet.
fn wait_for_addr_files(fleet: &mut [Node], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        for n in fleet.iter_mut() {
            n.read_addr_file();
        }
        let missing = fleet.iter().any(|n| n.is_running() && n.metrics.is_none());
        if !missing || Instant::now() >= deadline || signals::sleep(Duration::from_millis(200)) {
            return;
        }
    }
}

/// Creates the domain and users, tolerating "already exists" so that `up` is idempotent.
/// When the password file was just (re)created, existing users get that password, so the
/// password printed is always the one that works.
fn seed(ctl: &Ternctl, endpoints: &[String], pw: &str, fresh_password: bool) -> anyhow::Result<()> {
    let stdin = format!("{pw}\n");
    create(ctl, endpoints, &["domain", "add", DOMAIN], None)?;
    for user in USERS {
        let created = create(
            ctl,
            endpoints,
            &["user", "add", user, "--password-stdin"],
            Some(&stdin),
        )?;
        if !created && fresh_password {
            let out = retrying(
                ctl,
                endpoints,
                &["user", "passwd", user, "--password-stdin"],
                Some(&stdin),
            )?;
            if !out.ok {
                bail!("setting the password of {user}: {}", out.stderr.trim());
            }
        }
    }
    Ok(())
}

/// Runs a ternctl "add": Ok(true) when created, Ok(false) when it already existed.
fn create(
    ctl: &Ternctl,
    endpoints: &[String],
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<bool> {
    let out = retrying(ctl, endpoints, args, stdin)?;
    if out.ok {
        return Ok(true);
    }
    if out.stderr.contains("already exists") {
        return Ok(false);
    }
    bail!("`ternctl {}` failed: {}", args.join(" "), out.stderr.trim())
}

/// Retries while the answer is "try again" (no quorum, timeout, node unreachable), moving on
/// to the next node each time in case the one asked has just died.
fn retrying(
    ctl: &Ternctl,
    endpoints: &[String],
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<CtlOutput> {
    let deadline = Instant::now() + SEED_RETRY;
    let mut i = 0;
    loop {
        let out = ctl.run(&endpoints[i % endpoints.len()], args, stdin)?;
        // Ctrl-C reaches ternctl too; its failure then is the interrupt, not an error.
        if signals::interrupted() {
            return Err(Interrupted.into());
        }
        let transient = ["no quorum / unavailable", "timed out", "cannot reach"]
            .iter()
            .any(|w| out.stderr.contains(w));
        if out.ok || !transient || Instant::now() >= deadline {
            return Ok(out);
        }
        i += 1;
        if signals::sleep(Duration::from_secs(1)) {
            return Err(Interrupted.into());
        }
    }
}

fn print_summary(
    fleet: &[Node],
    leader: u64,
    data_dir: &Path,
    pw_file: &Path,
    pw: &str,
    ternctl: &Path,
) {
    let mut rows = vec![vec![
        "SERVICE".to_string(),
        "ENDPOINT".into(),
        "METRICS".into(),
        "LOG".into(),
    ]];
    for n in fleet {
        let mut name = n.name.clone();
        if n.id != 0 && u64::from(n.id) == leader {
            name.push_str(" (leader)");
        }
        if !n.is_running() {
            name.push_str(" (exited)");
        }
        let endpoint = match (n.id, n.name.as_str()) {
            (0, "tern-access") => {
                format!(
                    "imap://127.0.0.1:{IMAP_PORT} (STARTTLS), imaps://127.0.0.1:{IMAPS_PORT}, \
                     pop3://127.0.0.1:{POP3_PORT} (STLS), pop3s://127.0.0.1:{POP3S_PORT}"
                )
            }
            (0, "tern-smtp") => format!(
                "smtp://127.0.0.1:{SMTP_MX_PORT} (MX), :{SMTP_SUBMISSION_PORT} (submission), \
                 smtps://127.0.0.1:{SMTP_SUBMISSIONS_PORT}"
            ),
            (0, _) => format!("http://127.0.0.1:{QUEUE_PORT} (Enqueue, delivery workers)"),
            _ => n.endpoint(),
        };
        rows.push(vec![
            name,
            endpoint,
            n.metrics
                .as_deref()
                .map(|m| format!("http://{m}/metrics"))
                .unwrap_or_else(|| "(not reported)".into()),
            n.log.display().to_string(),
        ]);
    }
    let mut out = String::new();
    out.push_str("\nTern is running.\n\n");
    out.push_str(&table::render(&rows));
    out.push_str(&format!(
        "\nDomain {DOMAIN}, users (development password {pw}, kept in {}):\n",
        pw_file.display()
    ));
    for u in USERS {
        out.push_str(&format!("  {u}\n"));
    }
    out.push_str(&format!(
        "\nData: {}\nAdmin: {} cluster status   (--endpoint http://127.0.0.1:7101 is the default)\n\
         Ctrl-C stops everything; `cargo xtask up` again resumes with the same data.\n",
        data_dir.display(),
        ternctl.display()
    ));
    print!("{out}");
    let _ = std::io::stdout().flush();
}

/// Prints a line for every process that exited since the last look.
fn report_exits(fleet: &mut [Node]) {
    for (name, status) in procs::reap(fleet) {
        let others = fleet.iter().filter(|n| n.is_running()).count();
        let log = fleet
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.log.display().to_string())
            .unwrap_or_default();
        if others > 0 {
            println!(
                "{name} exited with {}; the others keep running (log: {log})",
                procs::describe(status)
            );
        } else {
            println!(
                "{name} exited with {}; nothing is left running (log: {log})",
                procs::describe(status)
            );
        }
    }
}

/// Foreground supervision until Ctrl-C / SIGTERM, or until every node has exited.
fn supervise(fleet: &mut [Node], data_dir: &Path) -> anyhow::Result<()> {
    loop {
        report_exits(fleet);
        if signals::interrupted() {
            println!();
            procs::stop_all(fleet, STOP_GRACE);
            println!("stopped; data kept in {}", data_dir.display());
            return Ok(());
        }
        if !fleet.iter().any(Node::is_running) {
            bail!("every process has exited; see {}/*/log", data_dir.display());
        }
        signals::sleep(Duration::from_millis(250));
    }
}

/// The ternctl binary just built: the contract-tested way to talk to the store.
/// The admin profile `cargo xtask up` writes in DATA_DIR (ternctl reads `.tern/dev/ternctl.toml`
/// by itself when run from the repository root).
const PROFILE: &str = "ternctl.toml";

struct Ternctl {
    bin: PathBuf,
    /// DATA_DIR/ternctl.toml: the admin certificate every call of ours uses.
    profile: PathBuf,
}

struct CtlOutput {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Ternctl {
    /// The development cluster PKI in DATA_DIR/tls (a CA and one certificate per role, made
    /// once and kept) and the admin profile DATA_DIR/ternctl.toml that names it.
    fn make_cluster_pki(&self, data_dir: &Path) -> anyhow::Result<()> {
        let out = Command::new(&self.bin)
            .arg("dev-pki")
            .arg(data_dir.join("tls"))
            .output()
            .with_context(|| format!("running {} dev-pki", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "making the development cluster PKI: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // Paths relative to the profile's directory, so the data directory can move.
        let profile = format!(
            "# Written by cargo xtask up: ternctl as the admin role of the development cluster.\n\
             endpoint = \"127.0.0.1:{}\"\nca = \"tls/ca.crt\"\ncert = \"tls/admin.crt\"\nkey = \"tls/admin.key\"\n",
            procs::BASE_PORT + 1
        );
        std::fs::write(&self.profile, profile)
            .with_context(|| format!("writing {}", self.profile.display()))
    }

    fn run(&self, endpoint: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<CtlOutput> {
        let mut child = Command::new(&self.bin)
            .arg("--profile")
            .arg(&self.profile)
            .arg("--endpoint")
            .arg(endpoint)
            .args(args)
            .env_remove("TERN_ENDPOINT")
            .env_remove("TERNCTL_PROFILE")
            .env_remove("TERNCTL_CA")
            .env_remove("TERNCTL_CERT")
            .env_remove("TERNCTL_KEY")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A ternctl that exits before reading (bad arguments) closes the pipe; its own
            // error message is the useful one, so a broken pipe here is not reported.
            if let Err(e) = pipe.write_all(input.as_bytes()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e).context("writing to ternctl's stdin");
                }
            }
        }
        let out = child.wait_with_output().context("waiting for ternctl")?;
        Ok(CtlOutput {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
