//! POP3 against a running platform (real tern-store processes and a real tern-access
//! process on loopback), driven by clients Tern did not write: Python's poplib, fetchmail and
//! curl. The client-side scenarios live in `clients/pop3_poplib.py`.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use tern_e2e::{client_script, python_scenario};
use tern_testkit::clients::{require, Client};
use tern_testkit::{append, fetch, list_all, Platform};

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

async fn deliver(p: &Platform, account: &str, bodies: &[Vec<u8>]) -> anyhow::Result<()> {
    let mut m = p.cluster.messages(0, account).await?;
    for b in bodies {
        append(&mut m, account, "INBOX", b, "").await?;
    }
    Ok(())
}

/// (uid, flags) of every INBOX message, read through node `node`.
async fn inbox(
    p: &Platform,
    node: usize,
    account: &str,
) -> anyhow::Result<Vec<(u32, Vec<String>)>> {
    let mut m = p.cluster.messages(node, account).await?;
    let l = list_all(&mut m, account, "INBOX").await?;
    Ok(l.messages.into_iter().map(|r| (r.uid, r.flags)).collect())
}

/// Runs a poplib scenario against `port`; it must print "PASS <scenario>".
fn poplib(port: u16, scenario: &str, extra: &[&str]) -> anyhow::Result<String> {
    let port = port.to_string();
    let mut args = vec!["--port", port.as_str()];
    args.extend_from_slice(extra);
    python_scenario("pop3_poplib.py", scenario, &args)
}

/// Messages that make line endings and byte-stuffing hard: 8-bit bodies, bare LF and bare
/// CR line ends, lines starting with ".", a lone "." line, no final newline, a long message.
fn corpus() -> Vec<Vec<u8>> {
    let mut big = b"From: big@example.test\r\nSubject: big\r\n\r\n".to_vec();
    for i in 0..4000 {
        big.extend_from_slice(format!("{i:05} {}\r\n", "x".repeat(60)).as_bytes());
    }
    vec![
        b"From: a@example.test\r\nTo: alice@example.test\r\nSubject: plain\r\n\r\nHello.\r\n".to_vec(),
        "From: b@example.test\r\nSubject: =?UTF-8?Q?8bit?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln — ✓\r\n"
            .as_bytes()
            .to_vec(),
        b"From: c@example.test\nSubject: bare LF\n\nline one\nline two\n".to_vec(),
        b"From: d@example.test\r\nSubject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n".to_vec(),
        b"From: e@example.test\r\nSubject: no final newline\r\n\r\nno newline at the end".to_vec(),
        b"From: f@example.test\rSubject: bare CR\r\rbody\r".to_vec(),
        b"From: g@example.test\r\nSubject: raw 8-bit\r\n\r\n\xff\xfe\x80 binary-ish\r\n\x00nul\r\n".to_vec(),
        big,
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn poplib_runs_every_command_in_every_state_and_sizes_match_retr() -> anyhow::Result<()> {
    let p = platform(
        1,
        &["--auth-failure-delay-ms", "100", "--max-errors", "100"],
    )
    .await?;
    let corpus = corpus();
    deliver(&p, "alice@example.test", &corpus).await?;
    poplib(
        p.access().pop3_port(),
        "commands",
        &["--expect", &corpus.len().to_string()],
    )?;
    // Keep mode: nothing was deleted, and what RETR sent is \Seen for IMAP users.
    let inbox = inbox(&p, 0, "alice@example.test").await?;
    assert_eq!(inbox.len(), corpus.len());
    assert!(
        inbox.iter().all(|(_, f)| f.iter().any(|f| f == "\\Seen")),
        "{inbox:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_session_deletes_nothing_and_quit_deletes_exactly_what_was_marked(
) -> anyhow::Result<()> {
    let p = platform(1, &[]).await?;
    let bodies: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("Subject: m{i}\r\n\r\nbody {i}\r\n").into_bytes())
        .collect();
    deliver(&p, "alice@example.test", &bodies).await?;
    let before = inbox(&p, 0, "alice@example.test").await?;
    poplib(
        p.access().pop3_port(),
        "drop-after-dele",
        &["--expect", "5"],
    )?;
    // The lock of the dropped session is released (not left to expire): a new session works.
    poplib(p.access().pop3_port(), "count", &["--expect", "5"])?;
    assert_eq!(inbox(&p, 0, "alice@example.test").await?.len(), 5);
    poplib(
        p.access().pop3_port(),
        "quit-deletes",
        &["--expect", "5", "--delete", "2"],
    )?;
    let after = inbox(&p, 0, "alice@example.test").await?;
    let uids: Vec<u32> = after.iter().map(|(u, _)| *u).collect();
    assert_eq!(
        uids,
        before[2..].iter().map(|(u, _)| *u).collect::<Vec<_>>()
    );
    poplib(p.access().pop3_port(), "count", &["--expect", "3"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quit_deletion_survives_the_store_leader_being_killed_right_after_ok(
) -> anyhow::Result<()> {
    let mut p = platform(3, &[]).await?;
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("Subject: m{i}\r\n\r\nbody {i}\r\n").into_bytes())
        .collect();
    deliver(&p, "alice@example.test", &bodies).await?;
    let leader = p.cluster.wait_leader(Duration::from_secs(10)).await?;
    poplib(
        p.access().pop3_port(),
        "quit-deletes",
        &["--expect", "6", "--delete", "4"],
    )?;
    p.cluster.kill(leader);
    let new_leader = p.cluster.wait_leader(Duration::from_secs(30)).await?;
    assert_ne!(new_leader, leader);
    for node in (0..3).filter(|&n| n != leader) {
        assert_eq!(
            inbox(&p, node, "alice@example.test").await?.len(),
            2,
            "node {node}"
        );
    }
    // The access node moves to the surviving store nodes on its own.
    poplib(p.access().pop3_port(), "count", &["--expect", "2"])?;
    // And a restarted old leader agrees.
    p.cluster.spawn(leader).await?;
    let mut agreed = false;
    for _ in 0..100 {
        if inbox(&p, leader, "alice@example.test")
            .await
            .map(|m| m.len())
            .ok()
            == Some(2)
        {
            agreed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(agreed, "the restarted node never caught up");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_session_gets_in_use_on_any_access_node_and_a_dead_nodes_lock_expires(
) -> anyhow::Result<()> {
    let p = platform(1, &["--lock-ttl-secs", "3"]).await?;
    deliver(
        &p,
        "alice@example.test",
        &[b"Subject: x\r\n\r\ny\r\n".to_vec()],
    )
    .await?;
    let mut second = p.add_access(&["--lock-ttl-secs", "3"]).await?;
    // Same node, and a second node behind the same "load balancer".
    for port2 in [p.access().pop3_port(), second.pop3_port()] {
        poplib(
            p.access().pop3_port(),
            "in-use",
            &[
                "--port2",
                &port2.to_string(),
                "--other-user",
                "bob@example.test",
                "--other-password",
                "pw-bob",
            ],
        )?;
    }
    // A session on the second node holds the lock; that node dies without releasing it.
    require(Client::Python)?;
    let mut holder = Command::new("python3")
        .arg(client_script("pop3_poplib.py"))
        .args(["hold", "--port", &second.pop3_port().to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::BufRead;
        let stdout = holder.stdout.take().context("holder stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        assert_eq!(line.trim(), "HOLDING");
    }
    second.kill();
    let _ = holder.kill();
    let _ = holder.wait();
    // Still held right after the crash...
    let refused = Command::new("python3")
        .arg(client_script("pop3_poplib.py"))
        .args([
            "count",
            "--port",
            &p.access().pop3_port().to_string(),
            "--expect",
            "1",
        ])
        .output()?;
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("IN-USE"),
        "{refused:?}"
    );
    // ...and free once the lease ran out (3 s).
    wait_until_free(p.access().pop3_port(), Duration::from_secs(15)).await
}

/// Waits until alice's maildrop (one message) opens on `port`, every answer before that
/// being `[IN-USE]`; an error once `within` has passed.
async fn wait_until_free(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    loop {
        match poplib(port, "count", &["--expect", "1"]) {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("IN-USE"), "{e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(e.context(format!("the maildrop is still locked after {within:?}")))
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_login_is_refused_until_stls_and_pop3s_works() -> anyhow::Result<()> {
    let p = Platform::builder()
        .stores(1)
        .users(&["alice"])
        .access(&["--pop3s-listen", "127.0.0.1:0"])
        .access_plaintext_auth(false)
        .access_tls(true)
        .start()
        .await?;
    poplib(
        p.access().pop3_port(),
        "tls",
        &[
            "--pop3s-port",
            &p.access().pop3s_port().to_string(),
            "--cafile",
            p.cert().to_str().context("path")?,
        ],
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_gets_errors_and_idle_sessions_are_closed() -> anyhow::Result<()> {
    let p = platform(1, &["--idle-timeout-secs", "2"]).await?;
    poplib(p.access().pop3_port(), "hostile", &[])?;
    poplib(p.access().pop3_port(), "idle", &[])?;
    // The node is still serving.
    poplib(p.access().pop3_port(), "count", &["--expect", "0"])?;
    assert!(
        !p.access().log_text().contains("panicked"),
        "{}",
        p.access().log_text()
    );
    Ok(())
}

/// fetchmail, keep mode twice, then delete mode; every message is handed to an MDA that
/// writes it to its own file.
#[tokio::test(flavor = "multi_thread")]
async fn fetchmail_keeps_then_deletes_a_hundred_messages() -> anyhow::Result<()> {
    require(Client::Fetchmail)?;
    let p = platform(1, &[]).await?;
    let bodies: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            format!(
                "From: sender@example.test\r\nTo: alice@example.test\r\nSubject: fm {i}\r\nMessage-ID: <fm{i}@example.test>\r\n\r\nbody {i}\r\n.dot line\r\n"
            )
            .into_bytes()
        })
        .collect();
    deliver(&p, "alice@example.test", &bodies).await?;
    let run = |keep: bool, tag: &str| -> anyhow::Result<usize> {
        let home = p.scratch().join(format!("fetchmail-{tag}"));
        let out = home.join("out");
        std::fs::create_dir_all(&out)?;
        let mda = home.join("mda.sh");
        std::fs::write(
            &mda,
            format!(
                "#!/bin/sh\ncat > \"$(mktemp {}/msg.XXXXXX)\"\n",
                out.display()
            ),
        )?;
        let rc = home.join("fetchmailrc");
        std::fs::write(
            &rc,
            format!(
                "poll 127.0.0.1 protocol pop3 port {} auth password\n  user \"alice@example.test\" there with password \"pw-alice\" is \"alice\" here\n  sslproto '' fetchall {} mda \"/bin/sh {}\"\n",
                p.access().pop3_port(),
                if keep { "keep" } else { "nokeep" },
                mda.display()
            ),
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600))?;
        let o = Command::new("fetchmail")
            .args(["--nodetach", "-v", "-f"])
            .arg(&rc)
            .env("HOME", &home)
            .env("FETCHMAILHOME", &home)
            .output()?;
        // fetchmail exits 0 when it retrieved mail.
        if !o.status.success() {
            bail!(
                "fetchmail {tag}: {}\n{}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let files = std::fs::read_dir(&out)?.count();
        Ok(files)
    };
    assert_eq!(run(true, "keep1")?, 100);
    assert_eq!(run(true, "keep2")?, 100);
    assert_eq!(inbox(&p, 0, "alice@example.test").await?.len(), 100);
    // The MDA got each message intact, dot line included.
    let sample = std::fs::read_dir(p.scratch().join("fetchmail-keep1/out"))?
        .next()
        .context("a fetched message")??;
    let text = std::fs::read_to_string(sample.path())?;
    assert!(text.contains("\n.dot line"), "{text}");
    assert_eq!(run(false, "delete")?, 100);
    assert_eq!(inbox(&p, 0, "alice@example.test").await?.len(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_lists_and_retrieves_over_pop3() -> anyhow::Result<()> {
    require(Client::Curl)?;
    let p = platform(1, &[]).await?;
    let corpus = corpus();
    deliver(&p, "alice@example.test", &corpus[..4]).await?;
    let base = format!("pop3://127.0.0.1:{}/", p.access().pop3_port());
    let curl = |url: &str, extra: &[&str]| -> anyhow::Result<Vec<u8>> {
        let o = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "30",
                "-u",
                "alice@example.test:pw-alice",
            ])
            .args(extra)
            .arg(url)
            .output()?;
        if !o.status.success() {
            bail!("curl {url}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(o.stdout)
    };
    let list = String::from_utf8(curl(&base, &[])?)?;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "{list}");
    let mut m = p.cluster.messages(0, "alice@example.test").await?;
    let records = list_all(&mut m, "alice@example.test", "INBOX")
        .await?
        .messages;
    for (i, line) in lines.iter().enumerate() {
        let size: u64 = line.split_whitespace().nth(1).context("size")?.parse()?;
        let retr = curl(&format!("{base}{}", i + 1), &[])?;
        assert_eq!(retr.len() as u64, size, "message {}", i + 1);
        let stored = fetch(&mut m, "alice@example.test", "INBOX", records[i].uid).await?;
        assert_eq!(retr, tern_mail::lines::canonical(&stored));
    }
    let uidl = String::from_utf8(curl(&base, &["-X", "UIDL"])?)?;
    assert_eq!(uidl.lines().count(), 4, "{uidl}");
    Ok(())
}

/// Issue 16: a client that stops reading in the middle of RETR of a 10 MB message loses its
/// session within the write time-out, and with it the maildrop lock, so the maildrop can be
/// opened again (before the write time-out it held both for as long as it kept the socket).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_during_retr_loses_its_session_and_lock() -> anyhow::Result<()>
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let p = platform(1, &["--write-timeout-secs", "3"]).await?;
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 10 << 20 {
        big.extend_from_slice(&[b'x'; 78]);
        big.extend_from_slice(b"\r\n");
    }
    deliver(&p, "alice@example.test", &[big]).await?;

    // A small receive window, so the server's writes stall as soon as the kernel's buffers
    // on both sides are full (well short of 10 MB).
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket
        .connect(([127, 0, 0, 1], p.access().pop3_port()).into())
        .await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    for cmd in ["", "USER alice@example.test\r\n", "PASS pw-alice\r\n"] {
        w.write_all(cmd.as_bytes()).await?;
        line.clear();
        r.read_line(&mut line).await?;
        assert!(line.starts_with("+OK"), "{cmd:?}: {line:?}");
    }
    w.write_all(b"RETR 1\r\n").await?;
    // The stalled session holds the maildrop...
    let held = poplib(p.access().pop3_port(), "count", &["--expect", "1"])
        .expect_err("the maildrop is locked while the stalled RETR lasts");
    assert!(held.to_string().contains("IN-USE"), "{held}");
    // ...until the write time-out (3 s) ends it; the socket stays open all along.
    wait_until_free(p.access().pop3_port(), Duration::from_secs(30)).await?;
    drop((r, w));
    Ok(())
}

/// Issue 16, graceful shutdown: SIGTERM to tern-access closes an IMAP session in IDLE and
/// an idle logged-in IMAP session with `* BYE`, and a logged-in POP3 session with a closing
/// `-ERR [SYS/TEMP]` that deletes nothing and gives the maildrop lock back, all within the
/// drain time; the process then exits cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_says_bye_to_imap_and_closes_pop3_cleanly() -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    /// One line from the server, within 10 s.
    async fn line(r: &mut BufReader<TcpStream>) -> anyhow::Result<String> {
        let mut l = String::new();
        tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut l))
            .await
            .context("no line within 10 s")??;
        Ok(l)
    }
    /// Sends `cmd` and reads lines until one starts with `until`.
    async fn exchange(
        r: &mut BufReader<TcpStream>,
        cmd: &str,
        until: &str,
    ) -> anyhow::Result<String> {
        r.get_mut().write_all(cmd.as_bytes()).await?;
        loop {
            let l = line(r).await?;
            if l.is_empty() {
                bail!("{cmd:?}: connection closed before {until:?}");
            }
            if l.starts_with(until) {
                return Ok(l);
            }
        }
    }

    let p = platform(1, &[]).await?;
    deliver(
        &p,
        "alice@example.test",
        &[b"Subject: kept\r\n\r\nbody\r\n".to_vec()],
    )
    .await?;
    let mut node = p.add_access(&["--drain-secs", "10"]).await?;
    let imap = node.imap.clone().context("IMAP listener")?;
    let pop3 = node.pop3.clone().context("POP3 listener")?;

    let mut idling = BufReader::new(TcpStream::connect(&imap).await?);
    line(&mut idling).await?;
    exchange(
        &mut idling,
        "a LOGIN alice@example.test pw-alice\r\n",
        "a OK",
    )
    .await?;
    exchange(&mut idling, "b SELECT INBOX\r\n", "b OK").await?;
    exchange(&mut idling, "c IDLE\r\n", "+").await?;
    let mut quiet = BufReader::new(TcpStream::connect(&imap).await?);
    line(&mut quiet).await?;
    exchange(&mut quiet, "a LOGIN bob@example.test pw-bob\r\n", "a OK").await?;
    let mut pop = BufReader::new(TcpStream::connect(&pop3).await?);
    line(&mut pop).await?;
    exchange(&mut pop, "USER alice@example.test\r\n", "+OK").await?;
    exchange(&mut pop, "PASS pw-alice\r\n", "+OK").await?;
    exchange(&mut pop, "DELE 1\r\n", "+OK").await?;

    node.terminate();
    for (name, r) in [("IDLE", &mut idling), ("logged in", &mut quiet)] {
        let bye = line(r).await?;
        assert!(bye.starts_with("* BYE"), "{name}: {bye:?}");
        assert_eq!(line(r).await?, "", "{name}: closed after BYE");
    }
    let closing = line(&mut pop).await?;
    assert!(closing.starts_with("-ERR [SYS/TEMP]"), "{closing:?}");
    assert_eq!(line(&mut pop).await?, "", "POP3 closed");
    let status = node
        .wait_exit(Duration::from_secs(15))
        .await
        .context("tern-access still runs after its sessions ended")?;
    assert!(status.success(), "{status}\n{}", node.log_text());
    // The lock is back and the DELE without QUIT deleted nothing.
    wait_until_free(p.access().pop3_port(), Duration::from_secs(5)).await?;
    Ok(())
}
