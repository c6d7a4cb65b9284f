//! IMAP against a running platform (real tern-store processes and real tern-access processes
//! on loopback), driven by clients Tern did not write: Python's imaplib (scenarios in
//! `clients/imap_imaplib.py`), the async-imap crate, and isync's mbsync.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::TryStreamExt;
use tern_e2e::python_scenario;
use tern_testkit::clients;
use tern_testkit::{append, list_all, Platform};

/// `nodes` store nodes, users alice and bob (passwords "pw-alice", "pw-bob"), an access
/// node with `access_args`.
async fn platform(nodes: usize, access_args: &[&str]) -> anyhow::Result<Platform> {
    Platform::builder()
        .stores(nodes)
        .users(&["alice", "bob"])
        .access(access_args)
        .start()
        .await
}

/// Runs an imaplib scenario against `port`; it must print "PASS <scenario>".
fn imaplib(port: u16, scenario: &str, extra: &[&str]) -> anyhow::Result<String> {
    let port = port.to_string();
    let mut args = vec!["--port", port.as_str()];
    args.extend_from_slice(extra);
    python_scenario("imap_imaplib.py", scenario, &args)
}

/// Resident memory of the access node whose command line mentions `needle`, in KiB.
fn rss_kib(needle: &str) -> anyhow::Result<u64> {
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.contains(needle) || !cmdline.contains("tern-access") {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status"))?;
        if let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:")) {
            let kib = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .context("VmRSS value")?;
            return Ok(kib);
        }
    }
    bail!("no access node mentions {needle}")
}

#[tokio::test(flavor = "multi_thread")]
async fn imaplib_runs_every_command_in_the_authenticated_and_selected_states() -> anyhow::Result<()>
{
    let p = platform(1, &["--auth-failure-delay-ms", "100"]).await?;
    imaplib(p.access().imap_port(), "commands", &[])?;
    imaplib(
        p.access().imap_port(),
        "authenticate",
        &["--user", "bob@example.test", "--password", "pw-bob"],
    )?;
    assert!(
        !p.access().log_text().contains("panicked"),
        "{}",
        p.access().log_text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_login_is_refused_until_starttls_and_imaps_works() -> anyhow::Result<()> {
    let p = Platform::builder()
        .stores(1)
        .users(&["alice"])
        .access(&["--imaps-listen", "127.0.0.1:0"])
        .access_plaintext_auth(false)
        .access_tls(true)
        .start()
        .await?;
    imaplib(
        p.access().imap_port(),
        "tls",
        &[
            "--imaps-port",
            &p.access().imaps_port().to_string(),
            "--cafile",
            p.cert().to_str().context("path")?,
        ],
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn search_keys_return_the_right_uids() -> anyhow::Result<()> {
    let p = platform(1, &[]).await?;
    imaplib(p.access().imap_port(), "search", &[])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_gets_bad_or_a_close_and_memory_stays_bounded() -> anyhow::Result<()> {
    let p = platform(1, &["--max-errors", "1000"]).await?;
    let needle = p.scratch().display().to_string();
    // A session that stays selected throughout must be unaffected.
    let bystander = imap_client(p.access().imap_port(), "bob@example.test", "pw-bob").await?;
    imaplib(p.access().imap_port(), "hostile", &[])?;
    let after_one = rss_kib(&needle)?;
    for _ in 0..3 {
        imaplib(p.access().imap_port(), "hostile", &[])?;
    }
    let after_four = rss_kib(&needle)?;
    // Each round sends a 1 MB line, 10,000 parentheses and a 4 GiB literal announcement;
    // none of it may be kept: three more rounds grow the process by less than 8 MiB.
    assert!(
        after_four < after_one + 8 * 1024,
        "RSS grew from {after_one} KiB to {after_four} KiB"
    );
    let mut bystander = bystander;
    bystander.noop().await?;
    bystander.logout().await?;
    assert!(
        !p.access().log_text().contains("panicked"),
        "{}",
        p.access().log_text()
    );
    Ok(())
}

/// Reads one line, which must start with `prefix`.
async fn expect_line(
    conn: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    prefix: &str,
) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    anyhow::ensure!(line.starts_with(prefix), "wanted {prefix}, got {line:?}");
    Ok(())
}

/// Logs in over a raw connection and announces an APPEND literal of `size` octets, then
/// sends only `sent` of them.
async fn stalled_append(
    port: u16,
    size: usize,
    sent: usize,
) -> anyhow::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncWriteExt, BufReader};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut conn = BufReader::new(tcp);
    expect_line(&mut conn, "* OK").await?;
    conn.get_mut()
        .write_all(b"a LOGIN alice@example.test pw-alice\r\n")
        .await?;
    expect_line(&mut conn, "a OK").await?;
    conn.get_mut()
        .write_all(format!("b APPEND INBOX {{{size}}}\r\n").as_bytes())
        .await?;
    expect_line(&mut conn, "+ ").await?;
    conn.get_mut().write_all(&vec![b'x'; sent]).await?;
    Ok(conn.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_append_literals_cost_what_arrived_not_what_was_announced() -> anyhow::Result<()> {
    let p = platform(1, &[]).await?;
    let needle = p.scratch().display().to_string();
    // One connection first, so the node's buffers and pools exist before the baseline.
    let warm = stalled_append(p.access().imap_port(), 20_000_000, 4096).await?;
    let before = rss_kib(&needle)?;
    let mut stalled = Vec::new();
    for _ in 0..40 {
        stalled.push(stalled_append(p.access().imap_port(), 20_000_000, 4096).await?);
    }
    let after = rss_kib(&needle)?;
    // 40 announced literals of 20 MB would be 800 MB if allocated up front.
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB with 40 stalled APPENDs"
    );
    // The node still serves others.
    let mut other = imap_client(p.access().imap_port(), "bob@example.test", "pw-bob").await?;
    other.noop().await?;
    other.logout().await?;
    drop((warm, stalled));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_access_nodes_share_idle_and_expunge() -> anyhow::Result<()> {
    let p = platform(3, &[]).await?;
    let b = p.add_access(&[]).await?;
    let out = imaplib(
        p.access().imap_port(),
        "two-nodes",
        &["--port2", &b.imap_port().to_string()],
    )?;
    eprintln!("{}", out.trim());
    Ok(())
}

/// RFC 3501 \Recent with the sessions on two access nodes of one store cluster: each new
/// message is recent in exactly one session, EXAMINE takes none (`recent` scenario).
#[tokio::test(flavor = "multi_thread")]
async fn recent_goes_to_exactly_one_session_across_access_nodes() -> anyhow::Result<()> {
    let p = platform(3, &[]).await?;
    let b = p.add_access(&[]).await?;
    let out = imaplib(
        p.access().imap_port(),
        "recent",
        &["--port2", &b.imap_port().to_string()],
    )?;
    eprintln!("{}", out.trim());
    Ok(())
}

/// Parses the `STATE ...` line of the `state` scenario.
fn state_line(out: &str) -> anyhow::Result<String> {
    out.lines()
        .find(|l| l.starts_with("STATE "))
        .map(str::to_string)
        .context("no STATE line")
}

#[tokio::test(flavor = "multi_thread")]
async fn uids_and_uidvalidity_survive_a_restart_of_every_service() -> anyhow::Result<()> {
    let mut p = platform(3, &[]).await?;
    imaplib(p.access().imap_port(), "append", &["--count", "5"])?;
    let before = state_line(&imaplib(p.access().imap_port(), "state", &[])?)?;
    assert!(before.contains("uids=1 2 3 4 5"), "{before}");
    // Every service goes down: the access node and every store node; then all come back.
    p.access_mut().kill();
    for i in 0..p.cluster.nodes.len() {
        p.cluster.stop(i);
    }
    for i in 0..p.cluster.nodes.len() {
        p.cluster.spawn(i).await?;
    }
    p.cluster.wait_leader(Duration::from_secs(30)).await?;
    let replacement = p.add_access(&[]).await?;
    *p.access_mut() = replacement;
    let mut after = String::new();
    for _ in 0..50 {
        match imaplib(p.access().imap_port(), "state", &[]) {
            Ok(out) => {
                after = state_line(&out)?;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert_eq!(before, after);
    // New messages continue the UID sequence.
    imaplib(p.access().imap_port(), "append", &["--count", "1"])?;
    let next = state_line(&imaplib(p.access().imap_port(), "state", &[])?)?;
    assert!(next.contains("uids=1 2 3 4 5 6"), "{next}");
    Ok(())
}

type Client = async_imap::Session<tokio::net::TcpStream>;

async fn imap_client(port: u16, user: &str, password: &str) -> anyhow::Result<Client> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await
        .context("greeting")?
        .context("no greeting")?;
    let mut session = client.login(user, password).await.map_err(|(e, _)| e)?;
    session.select("INBOX").await?;
    Ok(session)
}

/// The async-imap crate (a Rust client Tern did not write) through a whole session.
#[tokio::test(flavor = "multi_thread")]
async fn async_imap_client_session() -> anyhow::Result<()> {
    let p = platform(1, &[]).await?;
    let port = p.access().imap_port();
    let mut s = imap_client(port, "alice@example.test", "pw-alice").await?;
    let caps = s.capabilities().await?;
    for c in ["IDLE", "UIDPLUS", "MOVE", "CONDSTORE"] {
        assert!(caps.has_str(c), "{c}");
    }
    s.create("Archive").await?;
    let names: Vec<String> = s
        .list(Some(""), Some("*"))
        .await?
        .try_collect::<Vec<_>>()
        .await?
        .iter()
        .map(|n| n.name().to_string())
        .collect();
    assert!(names.contains(&"Archive".to_string()), "{names:?}");
    for i in 0..3 {
        let body = format!("From: a@example.test\r\nSubject: async {i}\r\n\r\nbody {i}\r\n");
        s.append("INBOX", Some("(\\Flagged)"), None, body.as_bytes())
            .await?;
    }
    let mb = s.select("INBOX").await?;
    assert_eq!(mb.exists, 3);
    assert!(mb.uid_validity.is_some());
    let fetched: Vec<_> = s
        .uid_fetch(
            "1:*",
            "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY[TEXT])",
        )
        .await?
        .try_collect()
        .await?;
    assert_eq!(fetched.len(), 3);
    for (i, f) in fetched.iter().enumerate() {
        assert_eq!(f.uid, Some(i as u32 + 1));
        assert_eq!(f.text(), Some(format!("body {i}\r\n").as_bytes()));
        assert!(f.size.is_some());
    }
    let seen: Vec<_> = s.uid_search("SEEN").await?.into_iter().collect();
    assert_eq!(seen.len(), 3, "BODY[TEXT] sets \\Seen");
    let stored: Vec<_> = s
        .uid_store("2", "+FLAGS (\\Deleted)")
        .await?
        .try_collect()
        .await?;
    assert_eq!(stored.len(), 1);
    let expunged: Vec<u32> = s.expunge().await?.try_collect().await?;
    assert_eq!(expunged, vec![2]);
    s.uid_mv("3", "Archive").await?;
    let st = s.status("Archive", "(MESSAGES)").await?;
    assert_eq!(st.exists, 1);
    let left: Vec<u32> = s.uid_search("ALL").await?.into_iter().collect();
    assert_eq!(left, vec![1]);
    // IDLE, woken by an APPEND from another session.
    let mut idle = s.idle();
    idle.init().await?;
    let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(5));
    let mut other = imap_client(port, "alice@example.test", "pw-alice").await?;
    other
        .append("INBOX", None, None, b"Subject: wake\r\n\r\nup\r\n")
        .await?;
    let reason = wait.await?;
    assert!(
        matches!(
            reason,
            async_imap::extensions::idle::IdleResponse::NewData(_)
        ),
        "{reason:?}"
    );
    let mut s = idle.done().await?;
    s.logout().await?;
    other.logout().await?;
    Ok(())
}

/// 200 varied messages for the mbsync round trip.
fn varied_message(i: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender{i}@example.test\r\nTo: alice@example.test\r\nSubject: mbsync {i}\r\n\
         Message-ID: <mbsync-{i}@example.test>\r\nDate: Mon, 2 Jan 2023 10:00:00 +0000\r\n"
    );
    match i % 4 {
        0 => m.push_str("\r\nplain body\r\n"),
        1 => m.push_str(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: text/plain\r\n\r\ntext part\r\n--b\r\nContent-Type: application/octet-stream\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgc=\r\n--b--\r\n",
        ),
        2 => m.push_str(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße ✓\r\n",
        ),
        _ => {
            m.push_str("\r\n");
            for l in 0..200 {
                m.push_str(&format!("line {l} of a longer message\r\n"));
            }
        }
    }
    m.into_bytes()
}

/// Maildir files (cur/ and new/) and their Message-IDs.
fn maildir_ids(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        if !d.exists() {
            continue;
        }
        for e in std::fs::read_dir(d)? {
            let path = e?.path();
            let text = std::fs::read(&path)?;
            let text = String::from_utf8_lossy(&text);
            let id = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                .map(|l| l[11..].trim().to_string())
                .unwrap_or_default();
            out.push((
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                id,
            ));
        }
    }
    Ok(out)
}

fn mbsync(rc: &Path, home: &Path) -> anyhow::Result<()> {
    let out = Command::new("mbsync")
        .arg("-c")
        .arg(rc)
        .arg("-a")
        .env("HOME", home)
        .output()
        .context("running mbsync")?;
    if !out.status.success() {
        bail!(
            "mbsync failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn mbsync_round_trips_two_hundred_messages_without_duplicates_or_lost_flags(
) -> anyhow::Result<()> {
    clients::require(clients::Client::Mbsync)?;
    let p = platform(1, &[]).await?;
    let account = "alice@example.test";
    let mut m = p.cluster.messages(0, account).await?;
    for i in 0..200 {
        append(&mut m, account, "INBOX", &varied_message(i), "").await?;
    }
    let home = p.scratch().join("home");
    let maildir = home.join("Mail");
    std::fs::create_dir_all(&maildir)?;
    let rc = home.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount tern\nHost 127.0.0.1\nPort {}\nUser {account}\nPass pw-alice\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore tern-remote\nAccount tern\n\n\
             MaildirStore local\nPath {}/\nInbox {}/INBOX\n\n\
             Channel tern\nFar :tern-remote:\nNear :local:\nPatterns INBOX\nCreate Both\nExpunge Both\nSyncState *\n",
            p.access().imap_port(),
            maildir.display(),
            maildir.display()
        ),
    )?;
    // Round 1: everything comes down.
    mbsync(&rc, &home)?;
    let local = maildir_ids(&maildir.join("INBOX"))?;
    assert_eq!(local.len(), 200, "{local:?}");
    // A change on each side: a flag and a new message.
    let (name, _) = local
        .iter()
        .find(|(_, id)| id == "<mbsync-7@example.test>")
        .context("message 7 locally")?
        .clone();
    let cur = maildir.join("INBOX/cur");
    let src = if cur.join(&name).exists() {
        cur.join(&name)
    } else {
        maildir.join("INBOX/new").join(&name)
    };
    let flagged = match name.split_once(":2,") {
        Some((base, flags)) => format!("{base}:2,F{flags}"),
        None => format!("{name}:2,F"),
    };
    std::fs::rename(&src, cur.join(&flagged))?;
    std::fs::write(
        maildir.join("INBOX/new/local-new.eml"),
        b"From: me@example.test\r\nSubject: written locally\r\nMessage-ID: <local-new@example.test>\r\n\r\nhi\r\n",
    )?;
    let listed = list_all(&mut m, account, "INBOX").await?;
    let uid_9 = listed.messages[9].uid;
    m.store_flags(tern_proto::store::v1::StoreFlagsRequest {
        account: account.into(),
        mailbox: "INBOX".into(),
        uids: Some(tern_proto::store::v1::UidSet {
            ranges: vec![tern_proto::store::v1::UidRange {
                first: uid_9,
                last: uid_9,
            }],
        }),
        mode: tern_proto::store::v1::store_flags_request::Mode::Add as i32,
        flags: vec!["\\Seen".into()],
        unchanged_since: 0,
    })
    .await?;
    append(
        &mut m,
        account,
        "INBOX",
        b"From: far@example.test\r\nSubject: written on the server\r\nMessage-ID: <server-new@example.test>\r\n\r\nhello\r\n",
        "",
    )
    .await?;
    // Rounds 2 and 3.
    mbsync(&rc, &home)?;
    mbsync(&rc, &home)?;
    let local = maildir_ids(&maildir.join("INBOX"))?;
    let listed = list_all(&mut m, account, "INBOX").await?;
    assert_eq!(local.len(), 202, "local: {}", local.len());
    assert_eq!(
        listed.messages.len(),
        202,
        "server: {}",
        listed.messages.len()
    );
    let mut ids: Vec<&String> = local.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 202, "duplicate Message-IDs locally");
    let mut server_ids = Vec::new();
    let mut flagged_on_server = false;
    for r in &listed.messages {
        let body = tern_testkit::fetch(&mut m, account, "INBOX", r.uid).await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        let id = text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
            .map(|l| l[11..].trim().to_string())
            .unwrap_or_default();
        if id == "<mbsync-7@example.test>" {
            flagged_on_server = r.flags.iter().any(|f| f == "\\Flagged");
        }
        server_ids.push(id);
    }
    server_ids.sort();
    server_ids.dedup();
    assert_eq!(server_ids.len(), 202, "duplicate Message-IDs on the server");
    assert!(server_ids.contains(&"<local-new@example.test>".to_string()));
    assert!(flagged_on_server, "the local \\Flagged reached the server");
    let seen_locally = local
        .iter()
        .find(|(_, id)| id == "<mbsync-9@example.test>")
        .map(|(n, _)| n.rsplit_once(":2,").is_some_and(|(_, f)| f.contains('S')))
        .unwrap_or(false);
    assert!(seen_locally, "the server's \\Seen reached the maildir");
    assert!(local
        .iter()
        .any(|(_, id)| id == "<server-new@example.test>"));
    Ok(())
}

/// An IMAP session lasts longer than the store's session token (3 s here): the access node
/// renews the token while the user stays logged in, and every call keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_outlives_its_store_token() -> anyhow::Result<()> {
    let p = Platform::builder()
        .stores(1)
        .store_args(&["--session-ttl-secs", "3"])
        .users(&["alice", "bob"])
        .access(&[])
        .start()
        .await?;
    let port = p.access().imap_port();
    let mut s = imap_client(port, "alice@example.test", "pw-alice").await?;
    s.append("INBOX", None, None, b"Subject: one\r\n\r\nfirst\r\n")
        .await?;
    // Three token lifetimes.
    tokio::time::sleep(Duration::from_secs(9)).await;
    s.append("INBOX", None, None, b"Subject: two\r\n\r\nsecond\r\n")
        .await?;
    let mb = s.select("INBOX").await?;
    assert_eq!(mb.exists, 2);
    let bodies: Vec<_> = s.fetch("1:*", "BODY[TEXT]").await?.try_collect().await?;
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1].text(), Some(&b"second\r\n"[..]));
    s.logout().await?;
    Ok(())
}

/// Issue 17 (changes at the next command): session A marks a message `\Deleted` and CLOSEs
/// (which expunges it); session B's NOOP right after must report the EXPUNGE, every time,
/// though the change reaches B's access node through the store's change feed a moment
/// later. Twenty rounds, so a feed that lags the store shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_noop_reports_an_expunge_committed_before_it() -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    /// Sends `tag command` and returns every line up to the tagged one, which must be OK.
    async fn cmd(
        c: &mut BufReader<TcpStream>,
        tag: &str,
        command: &str,
    ) -> anyhow::Result<Vec<String>> {
        c.get_mut()
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), c.read_line(&mut line))
                .await
                .context("no answer within 10 s")??;
            anyhow::ensure!(n > 0, "{command}: connection closed after {lines:?}");
            let line = line.trim_end().to_string();
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                let last = lines.last().map(String::as_str).unwrap_or_default();
                anyhow::ensure!(
                    last.starts_with(&format!("{tag} OK")),
                    "{command}: {lines:?}"
                );
                return Ok(lines);
            }
        }
    }
    async fn session(port: u16) -> anyhow::Result<BufReader<TcpStream>> {
        let mut c = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await?);
        let mut greeting = String::new();
        c.read_line(&mut greeting).await?;
        cmd(&mut c, "l", "LOGIN alice@example.test pw-alice").await?;
        cmd(&mut c, "s", "SELECT INBOX").await?;
        Ok(c)
    }

    let p = platform(1, &[]).await?;
    let mut m = p.cluster.messages(0, "alice@example.test").await?;
    for i in 0..20 {
        append(
            &mut m,
            "alice@example.test",
            "INBOX",
            format!("Subject: round {i}\r\n\r\nx\r\n").as_bytes(),
            "",
        )
        .await?;
    }
    let port = p.access().imap_port();
    let mut a = session(port).await?;
    let mut b = session(port).await?;
    for round in 0..20 {
        cmd(&mut a, "d", "STORE 1 +FLAGS.SILENT (\\Deleted)").await?;
        cmd(&mut a, "c", "CLOSE").await?;
        let seen = cmd(&mut b, "n", "NOOP").await?;
        assert!(
            seen.iter().any(|l| l == "* 1 EXPUNGE"),
            "round {round}: NOOP after another session's CLOSE: {seen:?}"
        );
        cmd(&mut a, "s", "SELECT INBOX").await?;
    }
    Ok(())
}
