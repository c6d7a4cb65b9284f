//! tern-smtp against a running platform: real tern-store (3 nodes), tern-queue and tern-smtp
//! processes on loopback, driven by a raw client written here (to see every reply code), by
//! Python's smtplib, by swaks and by the lettre crate.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tern_e2e::client_script;
use tern_e2e::mailbox::{contains, inbox, wait_for};
use tern_proto::store::v1 as pb;
use tern_testkit::clients;
use tern_testkit::{list_all, Platform};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

// ------------------------------------------------------------------ the platform

/// Three store nodes, users alice/bob/carol and `users` (password `pw-NAME`), a queue, and
/// tern-smtp with `smtp_args`, greeting 220.
async fn platform(users: &[&str], smtp_args: &[&str]) -> anyhow::Result<Platform> {
    let mut all = vec!["alice", "bob", "carol"];
    all.extend_from_slice(users);
    Platform::builder()
        .users(&all)
        .smtp(smtp_args)
        .start()
        .await
}

// ------------------------------------------------------------------ a raw SMTP client

/// A client that shows every reply code: the replies are what is under test.
struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    async fn connect_raw(addr: &str) -> anyhow::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        Ok(Client {
            r: BufReader::new(tcp),
        })
    }

    /// Connects and expects the 220 greeting.
    async fn connect(addr: &str) -> anyhow::Result<Client> {
        let mut c = Self::connect_raw(addr).await?;
        let (code, text) = c.reply().await?;
        if code != 220 {
            bail!("greeting {code} {text}");
        }
        Ok(c)
    }

    /// Reads one (possibly multi-line) reply: the code and the text of all lines.
    async fn reply(&mut self) -> anyhow::Result<(u16, String)> {
        self.reply_within(Duration::from_secs(30)).await
    }

    /// [`Client::reply`], waiting up to `limit` for each line.
    async fn reply_within(&mut self, limit: Duration) -> anyhow::Result<(u16, String)> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(limit, self.r.read_line(&mut line))
                .await
                .context("reply timed out")??;
            if n == 0 {
                bail!("connection closed; read so far: {text:?}");
            }
            if line.len() < 4 || !line.ends_with("\r\n") {
                bail!("malformed reply line {line:?}");
            }
            let code: u16 = line[..3].parse().context("reply code")?;
            text.push_str(line[4..].trim_end());
            if &line[3..4] == " " {
                return Ok((code, text));
            }
            text.push('\n');
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.r.get_mut().write_all(bytes).await?;
        Ok(())
    }

    /// Sends one command line and reads its reply.
    async fn cmd(&mut self, line: &str) -> anyhow::Result<(u16, String)> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// Sends a command and checks the code (and the enhanced code, if given).
    async fn expect(&mut self, line: &str, code: u16, enhanced: &str) -> anyhow::Result<String> {
        let (got, text) = self.cmd(line).await?;
        if got != code || !text.starts_with(enhanced) {
            bail!("{line:?}: expected {code} {enhanced}, got {got} {text}");
        }
        Ok(text)
    }

    /// Whether the server closed the connection (EOF within a few seconds).
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.r.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Dot-stuffs a canonical message for DATA, with the end marker.
fn stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    tern_mail::lines::dot_stuff(message, &mut out);
    out
}

// ------------------------------------------------------------------ the tests

/// The seeds' session: HELO, MAIL, two RCPT, DATA, ".", QUIT with 220 250 250 250 250 354
/// 250 221; the message, with a line of one period and lines starting with "..", is in both
/// mailboxes byte for byte after the Received field that names the trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seed_session_delivers_byte_exact_to_both_mailboxes() -> anyhow::Result<()> {
    let p = platform(&[], &[]).await?;
    let message: &[u8] = b"From: someone@remote.test\r\nTo: alice@example.test, bob@example.test\r\n\
Subject: seed session\r\n\r\nFirst line.\r\n.\r\n..two dots\r\n...three\r\n. space\r\nLast line.\r\n";
    let mut c = Client::connect(&p.smtp().mx).await?;
    c.expect("HELO client.example", 250, "mx.example.test")
        .await?;
    c.expect("MAIL FROM:<someone@remote.test>", 250, "2.1.0")
        .await?;
    c.expect("RCPT TO:<alice@example.test>", 250, "2.1.5")
        .await?;
    c.expect("RCPT TO:<bob@example.test>", 250, "2.1.5").await?;
    c.expect("DATA", 354, "").await?;
    c.send(&stuffed(message)).await?;
    let (code, text) = c.reply().await?;
    assert_eq!(code, 250, "{text}");
    assert!(text.starts_with("2.0.0 Ok: queued as "), "{text}");
    c.expect("QUIT", 221, "2.0.0").await?;
    assert!(c.closed().await);

    for user in ["alice", "bob"] {
        let got = wait_for(&p, user, "Subject: seed session", 1).await?;
        assert_eq!(got.len(), 1, "{user} got the message more than once");
        // This host's SPF verdict goes first (RFC 8601), then the Received field.
        let m = &got[0];
        let received_at = m
            .windows(9)
            .position(|w| w == b"Received:")
            .context("no Received field")?;
        let (verdict, m) = m.split_at(received_at);
        let verdict = String::from_utf8_lossy(verdict);
        assert!(
            verdict.starts_with("Authentication-Results: mx.example.test;")
                && verdict.contains("spf=")
                && verdict.ends_with("\r\n"),
            "{verdict}"
        );
        assert!(m.starts_with(b"Received: from client.example ([127.0.0.1])\r\n\tby mx.example.test (Tern) with SMTP id "), "{}", String::from_utf8_lossy(m));
        // The Received field (two lines: no `for` clause with two recipients) comes first;
        // everything after it is the client's message.
        assert!(
            m.ends_with(message),
            "{user}: not byte-exact:\n{}",
            String::from_utf8_lossy(m)
        );
        let received_len = m.len() - message.len();
        let received = std::str::from_utf8(&m[..received_len])?;
        assert!(
            received.ends_with("\r\n") && received.matches("\r\n").count() == 2,
            "{received}"
        );
    }
    Ok(())
}

/// smtplib on all three listeners, lettre, swaks, and a pipelined session of 20 recipients.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_clients_deliver_on_every_listener() -> anyhow::Result<()> {
    let many: Vec<String> = (1..=20).map(|i| format!("user{i:02}")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let p = platform(&many_refs, &[]).await?;

    // Python's smtplib: MX, STARTTLS + LOGIN, SMTP_SSL + PLAIN.
    clients::require(clients::Client::Python)?;
    let out = Command::new("python3")
        .arg(client_script("smtp_smtplib.py"))
        .args([
            "deliver",
            &p.smtp().port("mx").to_string(),
            &p.smtp().port("submission").to_string(),
            &p.smtp().port("submissions").to_string(),
            "smtplib-tag",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "smtplib: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        p.smtp().log_text()
    );
    let via_sub = wait_for(&p, "bob", "smtplib-tag via submission", 1).await?;
    // Submission added what the client left out? smtplib's EmailMessage has no Date or
    // Message-ID unless asked: the server adds both.
    let m = String::from_utf8_lossy(&via_sub[0]).into_owned();
    assert!(
        m.contains("\r\nMessage-ID: <") && m.contains("\r\nDate: "),
        "{m}"
    );
    assert!(m.contains("with ESMTPSA id "), "{m}");
    wait_for(&p, "alice", "smtplib-tag via mx", 1).await?;
    wait_for(&p, "alice", "smtplib-tag via submissions", 1).await?;

    // lettre, a Rust client.
    {
        use lettre::{Message, SmtpTransport, Transport};
        let port = p.smtp().port("mx");
        let email = Message::builder()
            .from("sender@remote.test".parse()?)
            .to("carol@example.test".parse()?)
            .subject("lettre-tag")
            .body(String::from("Sent by lettre.\r\n"))?;
        let sent = tokio::task::spawn_blocking(move || {
            SmtpTransport::builder_dangerous("127.0.0.1")
                .port(port)
                .build()
                .send(&email)
        })
        .await?;
        let response = sent.context("lettre send")?;
        assert!(response.is_positive());
        wait_for(&p, "carol", "lettre-tag", 1).await?;
    }

    // swaks, from Debian.
    clients::require(clients::Client::Swaks)?;
    let out = Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &p.smtp().port("mx").to_string(),
        ])
        .args(["--from", "swaks@remote.test", "--to", "bob@example.test"])
        .args(["--header", "Subject: swaks-tag", "--pipeline"])
        .output()?;
    assert!(
        out.status.success(),
        "swaks: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &p.smtp().port("submission").to_string(),
        ])
        .args([
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "carol@example.test",
            "--auth-password",
            "pw-carol",
        ])
        .args(["--from", "carol@example.test", "--to", "alice@example.test"])
        .args(["--header", "Subject: swaks-tls-tag"])
        .output()?;
    assert!(
        out.status.success(),
        "swaks tls: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for(&p, "bob", "swaks-tag", 1).await?;
    wait_for(&p, "alice", "swaks-tls-tag", 1).await?;

    // One write with MAIL, 20 RCPTs and DATA; 22 replies in order.
    let mut c = Client::connect(&p.smtp().mx).await?;
    c.expect("EHLO pipeliner.example", 250, "mx.example.test")
        .await?;
    let mut batch = String::from("MAIL FROM:<pipe@remote.test>\r\n");
    for u in &many {
        batch.push_str(&format!("RCPT TO:<{u}@example.test>\r\n"));
    }
    batch.push_str("DATA\r\n");
    c.send(batch.as_bytes()).await?;
    assert_eq!(c.reply().await?.0, 250);
    for u in &many {
        let (code, text) = c.reply().await?;
        assert_eq!(code, 250, "{u}: {text}");
    }
    assert_eq!(c.reply().await?.0, 354);
    c.send(&stuffed(b"Subject: pipelined-tag\r\n\r\nto twenty\r\n"))
        .await?;
    assert_eq!(c.reply().await?.0, 250);
    c.expect("QUIT", 221, "2.0.0").await?;
    for u in &many {
        wait_for(&p, u, "pipelined-tag", 1).await?;
    }
    Ok(())
}

/// Every refusal of the policy, DATA and limits rules gets its code, and the session goes on
/// where RFC 5321 lets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_get_their_codes_and_the_session_survives() -> anyhow::Result<()> {
    // This session collects far more than 20 refusals on purpose; the error bound is tested
    // on a second node with the default.
    let p = platform(
        &[],
        &["--max-message-size", "100000", "--max-errors", "1000"],
    )
    .await?;
    {
        let leader = p.cluster.wait_leader(Duration::from_secs(10)).await?;
        let mut dir = p.cluster.directory(leader).await?;
        dir.add_alias(pb::AddAliasRequest {
            address: "fwd@example.test".into(),
            targets: vec!["someone@remote.test".into()],
        })
        .await?;
        dir.add_list_members(pb::AddListMembersRequest {
            address: "team@example.test".into(),
            members: vec!["alice@example.test".into(), "bob@example.test".into()],
        })
        .await?;
    }
    let mut c = Client::connect(&p.smtp().mx).await?;
    // Out of sequence, unknown, bad arguments, obsolete.
    c.expect("MAIL FROM:<a@remote.test>", 503, "5.5.1").await?;
    c.expect("FROB", 500, "5.5.2").await?;
    c.expect("HELO", 501, "5.5.4").await?;
    for verb in [
        "TURN",
        "SEND FROM:<a@b.test>",
        "SOML FROM:<a@b.test>",
        "SAML FROM:<a@b.test>",
    ] {
        c.expect(verb, 502, "5.5.1").await?;
    }
    c.expect("EHLO client.example", 250, "mx.example.test")
        .await?;
    c.expect("AUTH PLAIN AGEAYg==", 502, "5.5.1").await?;
    c.expect("RCPT TO:<alice@example.test>", 503, "5.5.1")
        .await?;
    c.expect("DATA", 503, "5.5.1").await?;
    c.expect("MAIL FROM:alice@example.test", 501, "5.5.4")
        .await?;
    c.expect("MAIL FROM:<not an address>", 501, "5.1.7").await?;
    c.expect("RCPT TO:<not an address>", 501, "5.1.3").await?;
    c.expect("MAIL FROM:<a@remote.test> SIZE=100001", 552, "5.3.4")
        .await?;
    c.expect("MAIL FROM:<a@remote.test> FROB=1", 555, "5.5.4")
        .await?;
    c.expect("MAIL FROM:<jörg@remote.test>", 553, "5.6.7")
        .await?;
    c.expect("VRFY alice@example.test", 252, "2.0.0").await?;
    c.expect("EXPN team@example.test", 502, "5.5.1").await?;
    c.expect("HELP", 214, "2.0.0").await?;
    c.expect("NOOP", 250, "2.0.0").await?;
    // Policy at RCPT.
    c.expect("MAIL FROM:<a@remote.test> SIZE=1000", 250, "2.1.0")
        .await?;
    c.expect("MAIL FROM:<a@remote.test>", 503, "5.5.1").await?;
    c.expect("RCPT TO:<someone@elsewhere.test>", 554, "5.7.1")
        .await?;
    c.expect("RCPT TO:<nobody@example.test>", 550, "5.1.1")
        .await?;
    c.expect("RCPT TO:<fwd@example.test>", 251, "2.1.5").await?;
    c.expect("RCPT TO:<team@example.test>", 250, "2.1.5")
        .await?;
    c.expect("RCPT TO:<alice@example.test> NOTIFY=BOGUS", 555, "5.5.4")
        .await?;
    c.expect("RSET", 250, "2.0.0").await?;
    c.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    c.expect("RCPT TO:<nobody@example.test>", 550, "5.1.1")
        .await?;
    c.expect("DATA", 554, "5.5.1").await?;
    c.expect("RSET", 250, "2.0.0").await?;
    // A 513-octet command line.
    let long = format!("NOOP {}", "x".repeat(507));
    c.expect(&long, 500, "5.5.2").await?;
    c.expect("NOOP", 250, "2.0.0").await?;
    // A 1 MB line: read and dropped without being buffered, then one 500.
    c.send(&vec![b'A'; 1 << 20]).await?;
    c.expect("", 500, "5.5.2").await?;
    c.expect("NOOP", 250, "2.0.0").await?;

    // DATA: over the size limit after the dot, a line over 65,536 octets, smuggling shapes.
    c.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    c.expect("RCPT TO:<alice@example.test>", 250, "2.1.5")
        .await?;
    c.expect("DATA", 354, "").await?;
    let mut big = b"Subject: too big\r\n\r\n".to_vec();
    for _ in 0..2000 {
        big.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    c.send(&stuffed(&big)).await?;
    let (code, text) = c.reply().await?;
    assert_eq!((code, &text[..5]), (552, "5.3.4"), "{text}");
    c.expect("NOOP", 250, "2.0.0").await?;
    let p2 = p.add_smtp(&[]).await?;
    let mut c2 = Client::connect(&p2.mx).await?;
    c2.expect("EHLO client.example", 250, "mx.example.test")
        .await?;
    c2.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    c2.expect("RCPT TO:<alice@example.test>", 250, "2.1.5")
        .await?;
    c2.expect("DATA", 354, "").await?;
    let mut longline = b"Subject: long line\r\n\r\n".to_vec();
    longline.extend(std::iter::repeat_n(b'L', 70_000));
    longline.extend_from_slice(b"\r\n");
    c2.send(&stuffed(&longline)).await?;
    let (code, text) = c2.reply().await?;
    assert_eq!((code, &text[..5]), (554, "5.6.0"), "{text}");
    // LF.LF and CR.CR do not end the message; only CRLF.CRLF does.
    c2.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    c2.expect("RCPT TO:<bob@example.test>", 250, "2.1.5")
        .await?;
    c2.expect("DATA", 354, "").await?;
    c2.send(b"Subject: smuggle-tag\r\n\r\nfirst\n.\nMAIL FROM:<x@y.test>\r\ncr\r.\rend\r\n.\r\n")
        .await?;
    let (code, text) = c2.reply().await?;
    assert_eq!(code, 250, "{text}");
    c2.expect("NOOP", 250, "2.0.0").await?;
    let got = wait_for(&p, "bob", "smuggle-tag", 1).await?;
    assert!(
        got[0].ends_with(b"\r\n\r\nfirst\r\n.\r\nMAIL FROM:<x@y.test>\r\ncr\r\n.\r\nend\r\n"),
        "{}",
        String::from_utf8_lossy(&got[0])
    );

    // 100 recipients, then 452.
    c.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    for _ in 0..100 {
        c.expect("RCPT TO:<alice@example.test>", 250, "2.1.5")
            .await?;
    }
    c.expect("RCPT TO:<alice@example.test>", 452, "4.5.3")
        .await?;
    c.expect("RSET", 250, "2.0.0").await?;

    // Too many errors: 421 and the connection closes (the bound is 20 refusals).
    let mut c3 = Client::connect(&p2.mx).await?;
    for i in 0..19 {
        let (code, _) = c3.cmd("FROB").await?;
        assert_eq!(code, 500, "error {i}");
    }
    c3.send(b"FROB\r\n").await?;
    assert_eq!(c3.reply().await?.0, 500);
    assert_eq!(c3.reply().await?.0, 421);
    assert!(c3.closed().await);
    // Probing for addresses counts too: unknown recipients are errors, and a message
    // accepted clears the count (19 probes, a message, 19 more, then the 20th closes).
    let mut c4 = Client::connect(&p2.mx).await?;
    c4.expect("EHLO client.example", 250, "mx.example.test")
        .await?;
    c4.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    let probe = |i: usize| format!("RCPT TO:<probe-{i}@example.test>");
    for i in 0..19 {
        c4.expect(&probe(i), 550, "5.1.1").await?;
    }
    c4.expect("RCPT TO:<alice@example.test>", 250, "2.1.5")
        .await?;
    c4.expect("DATA", 354, "").await?;
    c4.send(b"Subject: between probes\r\n\r\nx\r\n.\r\n")
        .await?;
    assert_eq!(c4.reply().await?.0, 250);
    c4.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    for i in 19..38 {
        c4.expect(&probe(i), 550, "5.1.1").await?;
    }
    c4.send(probe(38).as_bytes()).await?;
    c4.send(b"\r\n").await?;
    assert_eq!(c4.reply().await?.0, 550);
    assert_eq!(c4.reply().await?.0, 421);
    assert!(c4.closed().await);
    c.expect("QUIT", 221, "2.0.0").await?;

    // Submission: 530, 538, 535 after a delay, 553; in Python over STARTTLS.
    clients::require(clients::Client::Python)?;
    let out = Command::new("python3")
        .arg(client_script("smtp_smtplib.py"))
        .args(["policy", &p.smtp().port("submission").to_string(), "200"])
        .output()?;
    assert!(
        out.status.success(),
        "policy: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        p.smtp().log_text()
    );
    Ok(())
}

/// Time-outs, connection bounds, 421 when the store has no quorum, and STARTTLS that
/// refuses pipelined plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeouts_connection_limits_and_no_quorum() -> anyhow::Result<()> {
    let p = platform(&[], &[]).await?;
    let limited = p
        .add_smtp(&[
            "--command-timeout-secs",
            "2",
            "--data-timeout-secs",
            "2",
            "--message-time-limit-secs",
            "3",
            "--max-connections-per-ip",
            "2",
        ])
        .await?;
    let mut a = Client::connect(&limited.mx).await?;
    let mut b = Client::connect(&limited.mx).await?;
    let mut c = Client::connect_raw(&limited.mx).await?;
    let (code, text) = c.reply().await?;
    assert_eq!(code, 421, "{text}");
    assert!(
        text.contains("too many connections from your address"),
        "{text}"
    );
    assert!(c.closed().await);
    b.expect("NOOP", 250, "2.0.0").await?;
    // Idle past the command time-out: 421 4.4.2 and close.
    let (code, text) = a.reply().await?;
    assert_eq!((code, &text[..5]), (421, "4.4.2"), "{text}");
    assert!(a.closed().await);
    drop(b);
    // The server notices b's close (and frees its slot) asynchronously.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Silent in the middle of DATA past the data time-out: 421 4.4.2 and close.
    let mut d = Client::connect(&limited.mx).await?;
    d.expect("EHLO client.example", 250, "mx.example.test")
        .await?;
    d.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    d.expect("RCPT TO:<alice@example.test>", 250, "2.1.5")
        .await?;
    d.expect("DATA", 354, "").await?;
    d.send(b"Subject: slow\r\n\r\nand then nothing").await?;
    let (code, text) = d.reply().await?;
    assert_eq!((code, &text[..5]), (421, "4.4.2"), "{text}");
    assert!(d.closed().await);
    // A line every 300 ms keeps each read inside the data time-out (2 s) but not the
    // message inside its time limit (3 s): 421 4.4.2 and close, well before the 12 s this
    // sender would take.
    let mut t = Client::connect(&limited.mx).await?;
    t.expect("EHLO client.example", 250, "mx.example.test")
        .await?;
    t.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    t.expect("RCPT TO:<alice@example.test>", 250, "2.1.5")
        .await?;
    t.expect("DATA", 354, "").await?;
    let mut lines = 0;
    while lines < 40 {
        t.send(b"a line of a message that trickles in\r\n").await?;
        lines += 1;
        // Waiting for the reply consumes nothing (fill_buf is cancel-safe).
        if tokio::time::timeout(Duration::from_millis(300), t.r.fill_buf())
            .await
            .is_ok()
        {
            break;
        }
    }
    let (code, text) = t.reply().await?;
    assert_eq!((code, &text[..5]), (421, "4.4.2"), "{text}");
    assert!(lines < 30, "cut off after {lines} lines");
    assert!(t.closed().await);
    // The bound on sessions in total.
    let one = p.add_smtp(&["--max-connections", "1"]).await?;
    let _first = Client::connect(&one.mx).await?;
    let mut second = Client::connect_raw(&one.mx).await?;
    let (code, text) = second.reply().await?;
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("too many connections"), "{text}");

    // A BDAT line that does not parse: the chunk's length is unknown, so the server closes.
    let mut d = Client::connect(&p.smtp().mx).await?;
    d.expect("EHLO client.example", 250, "mx.example.test")
        .await?;
    d.expect("BDAT 5 LASTX", 501, "5.5.4").await?;
    assert!(d.closed().await);

    // STARTTLS with a command pipelined behind it: the connection is cut.
    let mut t = Client::connect(&p.smtp().submission).await?;
    t.expect("EHLO client.example", 250, "mx.example.test")
        .await?;
    t.send(b"STARTTLS\r\nMAIL FROM:<a@b.test>\r\n").await?;
    assert_eq!(t.reply().await?.0, 220);
    assert!(t.closed().await);

    // A client that drops the connection in the middle of DATA: nothing of it is delivered.
    let mut e = Client::connect(&p.smtp().mx).await?;
    e.expect("EHLO client.example", 250, "mx.example.test")
        .await?;
    e.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    e.expect("RCPT TO:<carol@example.test>", 250, "2.1.5")
        .await?;
    e.expect("DATA", 354, "").await?;
    e.send(b"Subject: half-written-tag\r\n\r\nthe first half")
        .await?;
    drop(e);
    // A complete message after it, through the same queue, shows the queue was working.
    let mut f = Client::connect(&p.smtp().mx).await?;
    f.expect("EHLO client.example", 250, "mx.example.test")
        .await?;
    f.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    f.expect("RCPT TO:<carol@example.test>", 250, "2.1.5")
        .await?;
    f.expect("DATA", 354, "").await?;
    f.send(&stuffed(b"Subject: whole-tag\r\n\r\ncomplete\r\n"))
        .await?;
    assert_eq!(f.reply().await?.0, 250);
    wait_for(&p, "carol", "whole-tag", 1).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let inbox = inbox(&p, "carol").await?;
    assert!(
        !inbox.iter().any(|m| contains(m, "half-written-tag")),
        "a message cut off mid-DATA was delivered"
    );

    // The queue is down: the message gets 451 4.3.0 at the end of DATA, never 250.
    let mut p = p;
    p.queue_mut().kill();
    f.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    f.expect("RCPT TO:<carol@example.test>", 250, "2.1.5")
        .await?;
    f.expect("DATA", 354, "").await?;
    f.send(&stuffed(b"Subject: no-queue\r\n\r\nbody\r\n"))
        .await?;
    let (code, text) = f.reply().await?;
    assert_eq!((code, &text[..5]), (451, "4.3.0"), "{text}");
    f.expect("NOOP", 250, "2.0.0").await?;

    // No store quorum: new sessions are greeted 421.
    p.cluster.kill(0);
    p.cluster.kill(1);
    p.cluster.kill(2);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = Client::connect_raw(&p.smtp().mx).await?;
        let (code, _) = c.reply().await?;
        if code == 421 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still greeting {code} with no store"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// SMTPUTF8: a UTF-8 sender and recipient and an 8-bit UTF-8 message arrive intact; BDAT
/// (CHUNKING) carries a message in three chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smtputf8_and_bdat() -> anyhow::Result<()> {
    let p = platform(&["jörg"], &[]).await?;
    let message = "From: 用户@例子.test\r\nTo: jörg@example.test\r\nSubject: Grüße utf8-tag\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
Schöne Grüße — 你好 — ☃\r\n"
        .as_bytes();
    let mut c = Client::connect(&p.smtp().mx).await?;
    c.expect("EHLO client.example", 250, "mx.example.test")
        .await?;
    c.expect(
        "MAIL FROM:<用户@例子.test> SMTPUTF8 BODY=8BITMIME",
        250,
        "2.1.0",
    )
    .await?;
    c.expect("RCPT TO:<jörg@example.test>", 250, "2.1.5")
        .await?;
    c.expect("DATA", 354, "").await?;
    c.send(&stuffed(message)).await?;
    let (code, text) = c.reply().await?;
    assert_eq!(
        code,
        250,
        "{text}\n{}\n{}",
        p.smtp().log_text(),
        p.queue().log_text()
    );
    let got = wait_for(&p, "jörg", "utf8-tag", 1).await?;
    assert!(
        got[0].ends_with(message),
        "{}",
        String::from_utf8_lossy(&got[0])
    );
    assert!(contains(&got[0], "with UTF8SMTP id "));

    // BDAT: three chunks, the last with LAST; no dot-stuffing applies.
    let body = b"Subject: bdat-tag\r\n\r\n.leading dot stays\r\n.\r\nend\r\n";
    c.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    c.expect("RCPT TO:<alice@example.test>", 250, "2.1.5")
        .await?;
    let (one, rest) = body.split_at(10);
    let (two, three) = rest.split_at(20);
    for (chunk, last) in [(one, false), (two, false), (three, true)] {
        let head = format!(
            "BDAT {}{}\r\n",
            chunk.len(),
            if last { " LAST" } else { "" }
        );
        c.send(head.as_bytes()).await?;
        c.send(chunk).await?;
        let (code, text) = c.reply().await?;
        assert_eq!(code, 250, "{text}");
    }
    // DATA in the middle of BDAT, and BDAT without a transaction, are refused.
    c.expect("MAIL FROM:<a@remote.test>", 250, "2.1.0").await?;
    c.expect("RCPT TO:<alice@example.test>", 250, "2.1.5")
        .await?;
    c.send(b"BDAT 3\r\nabc").await?;
    assert_eq!(c.reply().await?.0, 250);
    c.expect("DATA", 503, "5.5.1").await?;
    c.expect("RSET", 250, "2.0.0").await?;
    c.send(b"BDAT 5 LAST\r\nhello").await?;
    assert_eq!(c.reply().await?.0, 503);
    c.expect("NOOP", 250, "2.0.0").await?;
    let got = wait_for(&p, "alice", "bdat-tag", 1).await?;
    assert!(
        got[0].ends_with(body),
        "{}",
        String::from_utf8_lossy(&got[0])
    );
    Ok(())
}

/// The store leader is killed while 10 sessions send 500 messages: every message that got
/// 250 is delivered; the others got 4xx (or lost their connection) and were never
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_store_leader_loses_no_acknowledged_message() -> anyhow::Result<()> {
    let mut p = platform(&[], &[]).await?;
    let addr = p.smtp().mx.clone();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut sessions = Vec::new();
    for s in 0..10 {
        let (addr, acked, refused) = (addr.clone(), acked.clone(), refused.clone());
        sessions.push(tokio::spawn(async move {
            let mut i = 0;
            let mut client: Option<Client> = None;
            while i < 50 {
                let tag = format!("load-{s}-{i}");
                if client.is_none() {
                    let mut fresh = Client::connect(&addr).await.ok();
                    if let Some(c) = fresh.as_mut() {
                        if !matches!(c.cmd("EHLO load.example").await, Ok((250, _))) {
                            fresh = None;
                        }
                    }
                    match fresh {
                        Some(c) => client = Some(c),
                        None => {
                            // Greeted 421 (no quorum) or refused: counts as not acknowledged.
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            i += 1;
                            continue;
                        }
                    }
                }
                let Some(c) = client.as_mut() else { continue };
                let result: anyhow::Result<u16> = async {
                    let (code, _) = c.cmd("MAIL FROM:<load@remote.test>").await?;
                    if code != 250 {
                        return Ok(code);
                    }
                    let (code, _) = c.cmd("RCPT TO:<alice@example.test>").await?;
                    if code != 250 {
                        c.cmd("RSET").await?;
                        return Ok(code);
                    }
                    let (code, _) = c.cmd("DATA").await?;
                    if code != 354 {
                        return Ok(code);
                    }
                    let body = format!(
                        "Subject: {tag}\r\nX-Tag: <{tag}>\r\n\r\n{}\r\n",
                        "x".repeat(2000)
                    );
                    c.send(&stuffed(body.as_bytes())).await?;
                    Ok(c.reply().await?.0)
                }
                .await;
                match result {
                    Ok(250) => acked.lock().unwrap().push(tag),
                    Ok(code) => {
                        assert!(
                            (400..500).contains(&code),
                            "{tag}: refused with {code}, not a 4xx"
                        );
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        client = None;
                    }
                }
                i += 1;
            }
        }));
    }
    // Kill the leader once about a fifth of the load is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < 100 {
        assert!(
            Instant::now() < deadline,
            "load did not start:\n{}",
            p.smtp().log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = p.cluster.wait_leader(Duration::from_secs(10)).await?;
    p.cluster.kill(leader);
    for s in sessions {
        s.await?;
    }
    let acked = acked.lock().unwrap().clone();
    let refused = refused.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(acked.len() + refused, 500);
    eprintln!("acknowledged {}, refused {refused}", acked.len());
    // Every acknowledged message reaches alice (the queue delivers from the store).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let inbox = inbox(&p, "alice").await.unwrap_or_default();
        let missing: Vec<&String> = acked
            .iter()
            .filter(|t| !inbox.iter().any(|m| contains(m, &format!("X-Tag: <{t}>"))))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged messages never arrived, e.g. {:?}\nqueue:\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            p.queue().log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// SIGTERM in the middle of DATA (issue 16, graceful shutdown): the node stops accepting,
/// an idle session is answered 421 4.3.2 at once, and the message in flight completes with
/// 250 and is delivered; the session's next command gets 421 and the process exits cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_message_in_data_complete() -> anyhow::Result<()> {
    let p = platform(&[], &[]).await?;
    let mut smtp = p.add_smtp(&["--drain-secs", "20"]).await?;
    let mut idle = Client::connect(&smtp.mx).await?;
    idle.expect("EHLO idle.test", 250, "").await?;
    let mut c = Client::connect(&smtp.mx).await?;
    c.expect("EHLO client.test", 250, "").await?;
    c.expect("MAIL FROM:<sender@remote.test>", 250, "2.1.0")
        .await?;
    c.expect("RCPT TO:<alice@example.test>", 250, "2.1.5")
        .await?;
    c.expect("DATA", 354, "").await?;
    c.send(b"Subject: drained in flight\r\n\r\nfirst half\r\n")
        .await?;

    smtp.terminate();
    // The idle session hears of the shutdown at once: the node is draining now.
    let (code, text) = idle.reply().await?;
    assert_eq!((code, &text[..5]), (421, "4.3.2"), "{text}");
    assert!(idle.closed().await);
    // No new sessions: the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&smtp.mx).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    c.send(b"second half\r\n.\r\n").await?;
    let (code, text) = c.reply().await?;
    assert_eq!(code, 250, "the message in DATA completes: {text}");
    let (code, text) = c.cmd("MAIL FROM:<sender@remote.test>").await?;
    assert_eq!((code, &text[..5]), (421, "4.3.2"), "{text}");
    assert!(c.closed().await);
    let status = smtp
        .wait_exit(Duration::from_secs(15))
        .await
        .context("tern-smtp still runs after its sessions ended")?;
    assert!(status.success(), "{status}\n{}", smtp.log_text());
    wait_for(&p, "alice", "drained in flight", 1).await?;
    Ok(())
}

/// Issue 16, item 2: large messages cannot wedge replication. Twenty 24 MiB messages at once
/// through SMTP (twenty sessions, the queue allowed to hold all of them), then a small one:
/// every one is acknowledged and delivered, and every follower applies the leader's last
/// index within 30 s. A log entry carries at most 4 MiB of commands or one message, and one
/// AppendEntries at most 8 MiB of entries or one entry, so no payload outgrows the heartbeat
/// interval openraft 0.9 gives each AppendEntries (before, a burst rode in payloads of
/// hundreds of MiB that timed out and were sent again and again, and a follower stayed
/// hundreds of entries behind).
///
/// About a GiB crosses the cluster (each body is accepted, then delivered: two replicated
/// writes), so the suite runs this test alone, in its own step (`--ignored`), where it does
/// not compete with every other test for two cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "heavy: `cargo xtask test` runs it alone in its own step (cargo test --workspace --all-targets -- --ignored)"]
async fn twenty_large_messages_through_smtp_reach_every_follower() -> anyhow::Result<()> {
    let p = Platform::builder()
        .users(&["alice"])
        .queue(&["--enqueue-memory-mb", "640"])
        .smtp(&[])
        .start()
        .await?;
    let addr = p.smtp().mx.clone();
    let mut sessions = Vec::new();
    for n in 0..20 {
        let addr = addr.clone();
        sessions.push(tokio::spawn(async move {
            let mut body = format!("Subject: big {n}\r\nX-Tag: <big-{n}>\r\n\r\n").into_bytes();
            while body.len() < 24 << 20 {
                body.extend_from_slice(&[b'x'; 998]);
                body.extend_from_slice(b"\r\n");
            }
            let data = stuffed(&body);
            drop(body);
            let mut c = Client::connect(&addr).await?;
            c.expect("EHLO big.example", 250, "").await?;
            c.expect("MAIL FROM:<big@remote.test>", 250, "").await?;
            c.expect("RCPT TO:<alice@example.test>", 250, "").await?;
            c.expect("DATA", 354, "").await?;
            c.send(&data).await?;
            let (code, text) = c.reply_within(Duration::from_secs(240)).await?;
            anyhow::ensure!(code == 250, "big {n}: final dot answered {code} {text}");
            Ok::<_, anyhow::Error>(())
        }));
    }
    for s in sessions {
        s.await??;
    }
    let mut c = Client::connect(&addr).await?;
    c.expect("EHLO small.example", 250, "").await?;
    c.expect("MAIL FROM:<small@remote.test>", 250, "").await?;
    c.expect("RCPT TO:<alice@example.test>", 250, "").await?;
    c.expect("DATA", 354, "").await?;
    c.send(&stuffed(b"Subject: small\r\nX-Tag: <small>\r\n\r\nx\r\n"))
        .await?;
    let (code, text) = c.reply_within(Duration::from_secs(120)).await?;
    anyhow::ensure!(code == 250, "small: final dot answered {code} {text}");

    // Every message delivered: twenty large ones and the small one.
    let leader = p.cluster.wait_leader(Duration::from_secs(20)).await?;
    let mut msgs = p.cluster.messages(leader, "alice@example.test").await?;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let listed = list_all(&mut msgs, "alice@example.test", "INBOX").await?;
        let large = listed
            .messages
            .iter()
            .filter(|m| m.size >= 24 << 20)
            .count();
        if large == 20 && listed.messages.len() == 21 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "INBOX holds {} messages ({large} large) of 21\nqueue log:\n{}",
            listed.messages.len(),
            p.queue().log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every follower catches up with the leader within 30 s.
    let leader = p.cluster.wait_leader(Duration::from_secs(20)).await?;
    let target = p.cluster.status(leader).await?.last_applied;
    for f in (0..p.cluster.nodes.len()).filter(|i| *i != leader) {
        p.cluster
            .wait_applied(f, target, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", p.cluster.log_tail(f)))?;
    }
    Ok(())
}
