//! The outbound SMTP client against a scripted fake server on loopback.
//!
//! The fake server (below) speaks just enough SMTP to be scripted per test, records every
//! command line, the message data after undoing the dot-stuffing, and *when* each command
//! arrived relative to the replies it had sent, so the tests can assert that the client
//! pipelines with PIPELINING and does not without it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tern_queue::smtp::client::{
    ClientConfig, ClientError, Connection, Envelope, Rcpt, TlsPolicy, Transaction,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How the fake server behaves.
#[derive(Clone)]
struct Script {
    greeting: &'static str,
    ehlo_ok: bool,
    extensions: Vec<&'static str>,
    /// Offer STARTTLS (over plain text) with this certificate.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// On the first connection, answer STARTTLS with 220 and then garbage instead of TLS.
    break_first_handshake: bool,
    mail_reply: &'static str,
    /// Replies to RCPT by address; "250 2.1.5 ok" for the others.
    rcpt_replies: Vec<(&'static str, &'static str)>,
    /// The reply to DATA instead of 354 (or 554 without accepted recipients).
    data_reply: Option<&'static str>,
    end_reply: &'static str,
    /// Answer MAIL and RCPT only once DATA (or another command) has arrived: with a client that
    /// did not pipeline this deadlocks into the client's timeout.
    hold_until_data: bool,
    /// Before each reply, wait a little and record a violation if more input arrived.
    strict: bool,
    /// Never answer this command ("END" = the final dot).
    stall_on: Option<&'static str>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            greeting: "220 fake.test ESMTP",
            ehlo_ok: true,
            extensions: vec![],
            tls: None,
            break_first_handshake: false,
            mail_reply: "250 2.1.0 ok",
            rcpt_replies: vec![],
            data_reply: None,
            end_reply: "250 2.0.0 queued",
            hold_until_data: false,
            strict: false,
            stall_on: None,
        }
    }
}

/// What the fake server saw.
#[derive(Default, Debug)]
struct Record {
    commands: Vec<String>,
    /// For each command, how many times the server had written replies before it was read.
    flushes_before: Vec<usize>,
    /// Commands that arrived while the server still owed a reply (strict mode).
    early: Vec<String>,
    messages: Vec<Vec<u8>>,
    bare_lf_in_data: bool,
    connections: usize,
}

struct Fake {
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
}

impl Fake {
    async fn start(script: Script) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let rec = record.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let n = {
                    let mut r = rec.lock().unwrap();
                    r.connections += 1;
                    r.connections
                };
                let session = Session {
                    io: Box::new(sock),
                    buf: Vec::new(),
                    out: Vec::new(),
                    flushes: 0,
                    tls: false,
                    record: rec.clone(),
                    script: script.clone(),
                    connection: n,
                };
                tokio::spawn(session.run());
            }
        });
        Fake { addr, record }
    }

    fn commands(&self) -> Vec<String> {
        self.record.lock().unwrap().commands.clone()
    }

    fn with<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.record.lock().unwrap())
    }
}

struct Session {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    out: Vec<u8>,
    flushes: usize,
    tls: bool,
    record: Arc<Mutex<Record>>,
    script: Script,
    connection: usize,
}

impl Session {
    async fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 4096];
        match self.io.read(&mut tmp).await {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Err(_) => 0,
        }
    }

    async fn read_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Some(self.buf.drain(..=i).collect());
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }

    fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self, after: &str) {
        if self.out.is_empty() {
            return;
        }
        if self.script.strict {
            let more = !self.buf.is_empty()
                || tokio::time::timeout(Duration::from_millis(30), self.fill())
                    .await
                    .is_ok_and(|n| n > 0);
            if more {
                self.record.lock().unwrap().early.push(after.to_owned());
            }
        }
        let out = std::mem::take(&mut self.out);
        let _ = self.io.write_all(&out).await;
        let _ = self.io.flush().await;
        self.flushes += 1;
    }

    async fn run(mut self) {
        let greeting = self.script.greeting;
        self.reply(greeting);
        self.flush("greeting").await;
        if greeting.starts_with("421") {
            return;
        }
        let refused = !greeting.starts_with('2');
        let mut accepted = 0;
        let mut in_transaction = false;
        while let Some(line) = self.read_line().await {
            let cmd = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            {
                let mut r = self.record.lock().unwrap();
                r.commands.push(cmd.clone());
                r.flushes_before.push(self.flushes);
            }
            let verb = cmd
                .split([' ', ':'])
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if self.script.stall_on == Some(verb.as_str()) {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            if refused && verb != "QUIT" {
                self.reply("503 5.5.1 go away");
                self.flush(&cmd).await;
                continue;
            }
            match verb.as_str() {
                "EHLO" if self.script.ehlo_ok => {
                    let mut lines = vec!["fake.test hello"];
                    lines.extend(self.script.extensions.iter().copied());
                    if self.script.tls.is_some() && !self.tls {
                        lines.push("STARTTLS");
                    }
                    for (i, l) in lines.iter().enumerate() {
                        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
                        self.reply(&format!("250{sep}{l}"));
                    }
                }
                "EHLO" => self.reply("502 5.5.2 command not recognized"),
                "HELO" => self.reply("250 fake.test"),
                "STARTTLS" => {
                    self.reply("220 2.0.0 ready to start TLS");
                    self.flush(&cmd).await;
                    if self.script.break_first_handshake && self.connection == 1 {
                        self.fill().await;
                        let _ = self.io.write_all(b"this is not TLS\r\n").await;
                        return;
                    }
                    let Some(config) = self.script.tls.clone() else {
                        return;
                    };
                    let plain = std::mem::replace(&mut self.io, Box::new(tokio::io::duplex(1).0));
                    match tokio_rustls::TlsAcceptor::from(config).accept(plain).await {
                        Ok(tls) => self.io = Box::new(tls),
                        Err(_) => return,
                    }
                    self.tls = true;
                    self.buf.clear();
                    continue;
                }
                "MAIL" => {
                    accepted = 0;
                    let r = self.script.mail_reply;
                    in_transaction = r.starts_with('2');
                    self.reply(r);
                }
                "RCPT" if !in_transaction => self.reply("503 5.5.1 need MAIL first"),
                "RCPT" => {
                    let addr = cmd
                        .split_once('<')
                        .and_then(|(_, rest)| rest.split_once('>'))
                        .map(|(a, _)| a.to_owned())
                        .unwrap_or_default();
                    let r = self
                        .script
                        .rcpt_replies
                        .iter()
                        .find(|(a, _)| *a == addr)
                        .map(|(_, r)| *r)
                        .unwrap_or("250 2.1.5 ok");
                    if r.starts_with('2') {
                        accepted += 1;
                    }
                    self.reply(r);
                }
                "DATA" => {
                    let r = match self.script.data_reply {
                        Some(r) => r,
                        None if accepted == 0 => "554 5.5.1 no valid recipients",
                        None => "354 end with <CRLF>.<CRLF>",
                    };
                    self.reply(r);
                    self.flush(&cmd).await;
                    if !r.starts_with("354") {
                        continue;
                    }
                    let mut message = Vec::new();
                    loop {
                        let Some(line) = self.read_line().await else {
                            return;
                        };
                        if !line.ends_with(b"\r\n") {
                            self.record.lock().unwrap().bare_lf_in_data = true;
                        }
                        if line == b".\r\n" {
                            break;
                        }
                        message.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
                    }
                    self.record.lock().unwrap().messages.push(message);
                    in_transaction = false;
                    if self.script.stall_on == Some("END") {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let r = self.script.end_reply;
                    self.reply(r);
                }
                "RSET" => {
                    in_transaction = false;
                    self.reply("250 2.0.0 ok");
                }
                "NOOP" => self.reply("250 2.0.0 ok"),
                "QUIT" => {
                    self.reply("221 2.0.0 bye");
                    self.flush(&cmd).await;
                    return;
                }
                _ => self.reply("500 5.5.2 what?"),
            }
            let hold = self.script.hold_until_data && (verb == "MAIL" || verb == "RCPT");
            // Like real servers, answer a pipelined group once its input is used up.
            let more_input = self.buf.contains(&b'\n');
            if !hold && (!more_input || self.script.strict) {
                self.flush(&cmd).await;
            }
        }
    }
}

fn config() -> ClientConfig {
    ClientConfig {
        helo_name: "client.test".into(),
        command_timeout: Duration::from_secs(5),
        data_init_timeout: Duration::from_secs(5),
        data_block_timeout: Duration::from_secs(5),
        data_end_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

fn envelope(from: &str, rcpts: &[&str]) -> Envelope {
    Envelope {
        from: from.into(),
        mail_params: vec![],
        rcpts: rcpts
            .iter()
            .map(|a| Rcpt {
                address: (*a).into(),
                dsn_params: vec![],
            })
            .collect(),
    }
}

const MESSAGE: &[u8] = b"From: a@x.test\r\nTo: b@y.test\r\nSubject: hi\r\n\r\nhello\r\n";

fn codes(t: &Transaction) -> Vec<u16> {
    t.rcpts.iter().map(|r| r.code).collect()
}

async fn connect(fake: &Fake) -> Connection {
    Connection::connect(fake.addr, "mx.fake.test", &config())
        .await
        .unwrap()
}

fn position(commands: &[String], prefix: &str) -> usize {
    commands
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {commands:?}"))
}

#[tokio::test]
async fn pipelined_transaction_with_one_refused_recipient() {
    let fake = Fake::start(Script {
        extensions: vec!["PIPELINING", "ENHANCEDSTATUSCODES", "SIZE 1000000"],
        rcpt_replies: vec![("nobody@y.test", "550 5.1.1 <nobody@y.test>: no such user")],
        hold_until_data: true,
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    assert!(conn.extensions().pipelining);
    assert!(conn.extensions().enhanced_status_codes);
    assert_eq!(conn.extensions().size, Some(1_000_000));
    let t = conn
        .send(
            &envelope("a@x.test", &["b@y.test", "nobody@y.test", "c@y.test"]),
            MESSAGE,
        )
        .await
        .unwrap();
    assert_eq!(t.mail.code, 250);
    assert_eq!(codes(&t), [250, 550, 250]);
    assert!(t.rcpts[1].is_permanent());
    assert_eq!(t.rcpts[1].enhanced.as_deref(), Some("5.1.1"));
    assert_eq!(
        t.rcpts[1].to_string(),
        "550 5.1.1 <nobody@y.test>: no such user"
    );
    assert_eq!(t.data.as_ref().map(|r| r.code), Some(250));
    assert_eq!(t.outcome(0).map(|r| r.code), Some(250));
    assert_eq!(t.outcome(1).map(|r| r.code), Some(550));
    assert!(conn.is_reusable());
    conn.quit().await;

    let cmds = fake.commands();
    let mail = position(&cmds, "MAIL");
    assert_eq!(
        cmds[mail..mail + 5],
        [
            format!("MAIL FROM:<a@x.test> SIZE={}", MESSAGE.len()),
            "RCPT TO:<b@y.test>".into(),
            "RCPT TO:<nobody@y.test>".into(),
            "RCPT TO:<c@y.test>".into(),
            "DATA".into(),
        ]
    );
    assert_eq!(cmds.last().map(String::as_str), Some("QUIT"));
    // All five commands arrived before the server had answered any of them.
    let flushes = fake.with(|r| r.flushes_before[mail..mail + 5].to_vec());
    assert!(flushes.iter().all(|&f| f == flushes[0]), "{flushes:?}");
    assert_eq!(fake.with(|r| r.messages.clone()), [MESSAGE.to_vec()]);
}

#[tokio::test]
async fn without_pipelining_one_command_at_a_time() {
    let fake = Fake::start(Script {
        extensions: vec!["SIZE 1000000", "8BITMIME"],
        rcpt_replies: vec![("nobody@y.test", "550 5.1.1 no such user")],
        strict: true,
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    assert!(!conn.extensions().pipelining);
    let t = conn
        .send(
            &envelope("a@x.test", &["b@y.test", "nobody@y.test", "c@y.test"]),
            MESSAGE,
        )
        .await
        .unwrap();
    assert_eq!(codes(&t), [250, 550, 250]);
    assert_eq!(t.data.map(|r| r.code), Some(250));
    conn.quit().await;
    let cmds = fake.commands();
    let mail = position(&cmds, "MAIL");
    assert_eq!(cmds[mail + 4], "DATA");
    fake.with(|r| {
        assert!(r.early.is_empty(), "sent before the reply: {:?}", r.early);
        let f = &r.flushes_before[mail..mail + 5];
        assert!(f.windows(2).all(|w| w[0] < w[1]), "{f:?}");
    });
}

#[tokio::test]
async fn no_accepted_recipient_means_no_data_and_a_reset() {
    for pipelining in [true, false] {
        let fake = Fake::start(Script {
            extensions: if pipelining {
                vec!["PIPELINING"]
            } else {
                vec![]
            },
            rcpt_replies: vec![
                ("full@y.test", "452 4.2.2 mailbox full"),
                ("gone@y.test", "550 5.1.1 no such user"),
            ],
            ..Script::default()
        })
        .await;
        let mut conn = connect(&fake).await;
        let t = conn
            .send(
                &envelope("a@x.test", &["full@y.test", "gone@y.test"]),
                MESSAGE,
            )
            .await
            .unwrap();
        assert_eq!(codes(&t), [452, 550]);
        assert!(t.rcpts[0].is_transient() && !t.rcpts[0].is_permanent());
        assert!(t.rcpts[1].is_permanent() && !t.rcpts[1].is_transient());
        assert_eq!(t.data, None);
        assert!(conn.is_reusable());
        let cmds = fake.commands();
        // Pipelined, DATA went out with the group and was refused; otherwise it was not sent.
        assert_eq!(cmds.contains(&"DATA".to_owned()), pipelining, "{cmds:?}");
        assert_eq!(cmds.last().map(String::as_str), Some("RSET"));
        assert!(fake.with(|r| r.messages.is_empty()));
        // The session goes on.
        let t = conn
            .send(&envelope("a@x.test", &["b@y.test"]), MESSAGE)
            .await
            .unwrap();
        assert_eq!(t.data.map(|r| r.code), Some(250));
        assert_eq!(fake.with(|r| r.messages.len()), 1);
    }
}

#[tokio::test]
async fn transient_and_permanent_recipient_replies() {
    let fake = Fake::start(Script {
        extensions: vec!["PIPELINING"],
        rcpt_replies: vec![
            ("later@y.test", "451 4.3.0 try again later"),
            ("never@y.test", "550 5.7.1 refused"),
        ],
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    let t = conn
        .send(
            &envelope("a@x.test", &["later@y.test", "ok@y.test", "never@y.test"]),
            MESSAGE,
        )
        .await
        .unwrap();
    assert_eq!(codes(&t), [451, 250, 550]);
    assert!(t.rcpts[0].is_transient());
    assert!(t.rcpts[2].is_permanent());
    assert_eq!(
        t.outcome(0).map(|r| r.enhanced.as_deref()),
        Some(Some("4.3.0"))
    );
    assert!(t.data.unwrap().is_positive());
}

#[tokio::test]
async fn mail_refused_is_rejected_and_the_session_is_reset() {
    for (pipelining, text, permanent) in [
        (true, "550 5.7.1 sender refused", true),
        (false, "451 4.7.1 greylisted", false),
    ] {
        let fake = Fake::start(Script {
            extensions: if pipelining {
                vec!["PIPELINING"]
            } else {
                vec![]
            },
            mail_reply: text,
            ..Script::default()
        })
        .await;
        let mut conn = connect(&fake).await;
        let err = conn
            .send(&envelope("a@x.test", &["b@y.test"]), MESSAGE)
            .await
            .unwrap_err();
        match &err {
            ClientError::Rejected { stage, reply } => {
                assert_eq!(*stage, "MAIL");
                assert_eq!(reply.to_string(), text);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.is_permanent(), permanent);
        assert!(conn.is_reusable());
        assert_eq!(fake.commands().last().map(String::as_str), Some("RSET"));
        conn.noop().await.unwrap();
    }
}

#[tokio::test]
async fn a_354_without_accepted_recipients_gets_an_empty_data_section() {
    // RFC 2920 §3.1 forbids this server's 354, but the client must not send the message.
    let fake = Fake::start(Script {
        extensions: vec!["PIPELINING"],
        rcpt_replies: vec![("gone@y.test", "550 5.1.1 no such user")],
        data_reply: Some("354 go ahead anyway"),
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    let t = conn
        .send(&envelope("a@x.test", &["gone@y.test"]), MESSAGE)
        .await
        .unwrap();
    assert_eq!(codes(&t), [550]);
    assert_eq!(t.data, None);
    assert_eq!(fake.with(|r| r.messages.clone()), [Vec::<u8>::new()]);
    assert_eq!(fake.commands().last().map(String::as_str), Some("RSET"));
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn data_refused_is_reported_for_the_accepted_recipients() {
    let fake = Fake::start(Script {
        extensions: vec!["PIPELINING"],
        data_reply: Some("451 4.3.0 out of disk"),
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    let t = conn
        .send(&envelope("a@x.test", &["b@y.test"]), MESSAGE)
        .await
        .unwrap();
    assert_eq!(codes(&t), [250]);
    let data = t.data.as_ref().unwrap();
    assert!(data.is_transient());
    assert_eq!(t.outcome(0), Some(data));
    assert_eq!(fake.commands().last().map(String::as_str), Some("RSET"));
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn helo_fallback_when_ehlo_is_refused() {
    let fake = Fake::start(Script {
        ehlo_ok: false,
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    assert_eq!(conn.extensions(), &Default::default());
    let t = conn
        .send(&envelope("", &["b@y.test"]), "caf\u{e9}\n".as_bytes())
        .await
        .unwrap();
    assert!(t.data.unwrap().is_positive());
    assert_eq!(
        fake.commands()[..5],
        [
            "EHLO client.test",
            "HELO client.test",
            "MAIL FROM:<>",
            "RCPT TO:<b@y.test>",
            "DATA",
        ]
    );
}

#[tokio::test]
async fn size_limit_and_size_parameter() {
    let fake = Fake::start(Script {
        extensions: vec!["PIPELINING", "SIZE 100"],
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    assert_eq!(conn.extensions().size, Some(100));
    // 68 stored octets with bare LF ends are 102 on the wire: over the limit.
    let big = b"x\n".repeat(34);
    let err = conn
        .send(&envelope("a@x.test", &["b@y.test"]), &big)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::TooBig { limit: 100 }), "{err:?}");
    assert!(err.is_permanent());
    assert!(!fake.commands().iter().any(|c| c.starts_with("MAIL")));
    assert!(conn.is_reusable());

    let small = b"Subject: t\n\nhi\n"; // 18 octets on the wire
    conn.send(&envelope("a@x.test", &["b@y.test"]), small)
        .await
        .unwrap();
    let cmds = fake.commands();
    assert_eq!(
        cmds[position(&cmds, "MAIL")],
        "MAIL FROM:<a@x.test> SIZE=18"
    );
    assert_eq!(fake.with(|r| r.messages[0].len()), 18);
}

#[tokio::test]
async fn body_8bitmime_only_for_8bit_bodies_and_when_offered() {
    for offered in [true, false] {
        let fake = Fake::start(Script {
            extensions: if offered {
                vec!["PIPELINING", "8BITMIME"]
            } else {
                vec!["PIPELINING"]
            },
            ..Script::default()
        })
        .await;
        let mut conn = connect(&fake).await;
        let eight = "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n".as_bytes();
        conn.send(&envelope("a@x.test", &["b@y.test"]), eight)
            .await
            .unwrap();
        conn.send(&envelope("a@x.test", &["b@y.test"]), MESSAGE)
            .await
            .unwrap();
        let mails: Vec<String> = fake
            .commands()
            .into_iter()
            .filter(|c| c.starts_with("MAIL"))
            .collect();
        if offered {
            assert_eq!(
                mails,
                ["MAIL FROM:<a@x.test> BODY=8BITMIME", "MAIL FROM:<a@x.test>"]
            );
        } else {
            assert_eq!(mails, ["MAIL FROM:<a@x.test>", "MAIL FROM:<a@x.test>"]);
        }
        assert_eq!(fake.with(|r| r.messages[0].clone()), eight);
    }
}

#[tokio::test]
async fn smtputf8_addresses() {
    let fake = Fake::start(Script::default()).await;
    let mut conn = connect(&fake).await;
    let err = conn
        .send(&envelope("a@x.test", &["j\u{f6}rg@y.test"]), MESSAGE)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NeedsSmtpUtf8));
    assert!(err.is_permanent());
    assert!(conn.is_reusable());

    let fake = Fake::start(Script {
        extensions: vec!["SMTPUTF8", "8BITMIME"],
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    conn.send(&envelope("a@x.test", &["j\u{f6}rg@y.test"]), MESSAGE)
        .await
        .unwrap();
    let cmds = fake.commands();
    assert_eq!(
        cmds[position(&cmds, "MAIL")],
        "MAIL FROM:<a@x.test> SMTPUTF8"
    );
    assert_eq!(cmds[position(&cmds, "RCPT")], "RCPT TO:<j\u{f6}rg@y.test>");
}

#[tokio::test]
async fn dsn_parameters_only_when_offered() {
    for offered in [true, false] {
        let fake = Fake::start(Script {
            extensions: if offered { vec!["DSN"] } else { vec![] },
            ..Script::default()
        })
        .await;
        let mut conn = connect(&fake).await;
        let env = Envelope {
            from: "a@x.test".into(),
            mail_params: vec!["RET=HDRS".into(), "ENVID=q1".into()],
            rcpts: vec![Rcpt {
                address: "b@y.test".into(),
                dsn_params: vec![
                    "NOTIFY=FAILURE,DELAY".into(),
                    "ORCPT=rfc822;b@y.test".into(),
                ],
            }],
        };
        conn.send(&env, MESSAGE).await.unwrap();
        let cmds = fake.commands();
        let (mail, rcpt) = (
            &cmds[position(&cmds, "MAIL")],
            &cmds[position(&cmds, "RCPT")],
        );
        if offered {
            assert_eq!(mail, "MAIL FROM:<a@x.test> RET=HDRS ENVID=q1");
            assert_eq!(
                rcpt,
                "RCPT TO:<b@y.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@y.test"
            );
        } else {
            assert_eq!(mail, "MAIL FROM:<a@x.test>");
            assert_eq!(rcpt, "RCPT TO:<b@y.test>");
        }
    }
}

#[tokio::test]
async fn body_arrives_byte_exact_in_canonical_form() {
    let fake = Fake::start(Script {
        extensions: vec!["PIPELINING", "8BITMIME"],
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    let cases: [(&[u8], &[u8]); 5] = [
        (
            b"Subject: dots\n\n.\n..two\n.three\nmid.dle\n.",
            b"Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nmid.dle\r\n.\r\n",
        ),
        (
            b"a\r\nbare lf\nbare\rcr\r\n\r\n.\r\nend without newline",
            b"a\r\nbare lf\r\nbare\r\ncr\r\n\r\n.\r\nend without newline\r\n",
        ),
        (b".", b".\r\n"),
        (b"\n.\n\n", b"\r\n.\r\n\r\n"),
        (b"", b""),
    ];
    for (stored, _) in &cases {
        let t = conn
            .send(&envelope("a@x.test", &["b@y.test"]), stored)
            .await
            .unwrap();
        assert!(t.data.unwrap().is_positive());
    }
    fake.with(|r| {
        assert!(!r.bare_lf_in_data);
        assert_eq!(r.messages.len(), cases.len());
        for (got, (_, want)) in r.messages.iter().zip(&cases) {
            assert_eq!(String::from_utf8_lossy(got), String::from_utf8_lossy(want));
        }
    });
}

#[tokio::test]
async fn rejected_greetings() {
    for (greeting, permanent) in [
        ("421 4.3.2 too busy, come back later", false),
        ("554 5.7.1 no mail from you", true),
    ] {
        let fake = Fake::start(Script {
            greeting,
            ..Script::default()
        })
        .await;
        let err = Connection::connect(fake.addr, "mx.fake.test", &config())
            .await
            .unwrap_err();
        match &err {
            ClientError::Rejected { stage, reply } => {
                assert_eq!(*stage, "greeting");
                assert_eq!(reply.to_string(), greeting);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.is_permanent(), permanent, "{greeting}");
        if permanent {
            // The client said goodbye instead of EHLO (RFC 5321 §3.1).
            assert_eq!(fake.commands(), ["QUIT"]);
        }
    }
}

#[tokio::test]
async fn connection_reuse_with_reset_between_messages() {
    let fake = Fake::start(Script {
        extensions: vec!["PIPELINING"],
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    let first = conn
        .send(&envelope("a@x.test", &["b@y.test"]), b"Subject: 1\n\none\n")
        .await
        .unwrap();
    conn.reset().await.unwrap();
    conn.noop().await.unwrap();
    let second = conn
        .send(
            &envelope("c@x.test", &["d@y.test", "e@y.test"]),
            b"Subject: 2\n\ntwo\n",
        )
        .await
        .unwrap();
    assert!(first.data.unwrap().is_positive());
    assert_eq!(codes(&second), [250, 250]);
    conn.quit().await;
    fake.with(|r| {
        assert_eq!(r.connections, 1);
        assert_eq!(
            r.messages,
            [
                b"Subject: 1\r\n\r\none\r\n".to_vec(),
                b"Subject: 2\r\n\r\ntwo\r\n".to_vec()
            ]
        );
        let verbs: Vec<&str> = r
            .commands
            .iter()
            .map(|c| c.split([' ', ':']).next().unwrap())
            .collect();
        assert_eq!(
            verbs,
            [
                "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "MAIL", "RCPT", "RCPT", "DATA",
                "QUIT"
            ]
        );
    });
}

/// A CA and a server certificate for "mx.fake.test" signed by it.
fn test_pki() -> (CertificateDer<'static>, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Tern test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut ee = CertificateParams::new(vec!["mx.fake.test".to_owned()]).unwrap();
    ee.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let ee = ee.signed_by(&key, &ca, &ca_key).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![ee.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    (ca.der().clone(), Arc::new(server))
}

#[tokio::test]
async fn starttls_opportunistic_without_trusting_the_certificate() {
    let (_, server) = test_pki();
    let fake = Fake::start(Script {
        extensions: vec!["PIPELINING", "8BITMIME"],
        tls: Some(server),
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    assert!(conn.is_tls());
    assert!(!conn.extensions().starttls);
    assert!(conn.extensions().pipelining);
    let t = conn
        .send(&envelope("a@x.test", &["b@y.test"]), MESSAGE)
        .await
        .unwrap();
    assert!(t.data.unwrap().is_positive());
    conn.quit().await;
    let cmds = fake.commands();
    assert_eq!(
        cmds[..3],
        ["EHLO client.test", "STARTTLS", "EHLO client.test"]
    );
    assert_eq!(fake.with(|r| r.messages.clone()), [MESSAGE.to_vec()]);
}

#[tokio::test]
async fn starttls_required_verifies_the_certificate() {
    let (ca, server) = test_pki();
    let fake = Fake::start(Script {
        tls: Some(server),
        ..Script::default()
    })
    .await;
    let required = |roots: Vec<CertificateDer<'static>>| ClientConfig {
        tls: TlsPolicy::Required,
        extra_roots: roots,
        ..config()
    };

    let mut conn = Connection::connect(fake.addr, "mx.fake.test.", &required(vec![ca.clone()]))
        .await
        .unwrap();
    assert!(conn.is_tls());
    conn.send(&envelope("a@x.test", &["b@y.test"]), MESSAGE)
        .await
        .unwrap();

    for (name, roots) in [("mx.fake.test", vec![]), ("other.test", vec![ca.clone()])] {
        let err = Connection::connect(fake.addr, name, &required(roots))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Tls(_)), "{name}: {err:?}");
        assert!(!err.is_permanent());
    }

    // A server without STARTTLS: a temporary failure under Required, plain text otherwise.
    let plain = Fake::start(Script::default()).await;
    let err = Connection::connect(plain.addr, "mx.fake.test", &required(vec![ca]))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
    assert!(!err.is_permanent());
    assert_eq!(plain.commands(), ["EHLO client.test", "QUIT"]);
    let conn = connect(&plain).await;
    assert!(!conn.is_tls());
}

#[tokio::test]
async fn opportunistic_tls_falls_back_to_plain_text_after_a_failed_handshake() {
    let (_, server) = test_pki();
    let fake = Fake::start(Script {
        tls: Some(server),
        break_first_handshake: true,
        ..Script::default()
    })
    .await;
    let mut conn = connect(&fake).await;
    assert!(!conn.is_tls());
    conn.send(&envelope("a@x.test", &["b@y.test"]), MESSAGE)
        .await
        .unwrap();
    fake.with(|r| {
        assert_eq!(r.connections, 2);
        assert_eq!(
            r.commands[..3],
            ["EHLO client.test", "STARTTLS", "EHLO client.test"]
        );
        assert!(!r.commands[3..].contains(&"STARTTLS".to_owned()));
        assert_eq!(r.messages.len(), 1);
    });
}

/// A server whose greeting never ends: one endless line, or endless continuation lines.
async fn hostile(pattern: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let block = pattern.repeat(64 * 1024 / pattern.len());
        let _ = sock.write_all(b"220-").await;
        while sock.write_all(&block).await.is_ok() {}
    });
    addr
}

#[tokio::test]
async fn hostile_endless_replies_are_protocol_errors() {
    for pattern in [&b"a"[..], b"220-more\r\n"] {
        let addr = hostile(pattern).await;
        let err = Connection::connect(addr, "mx.fake.test", &config())
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
        assert!(!err.is_permanent());
    }
}

#[tokio::test]
async fn stalled_servers_time_out() {
    let short = ClientConfig {
        command_timeout: Duration::from_millis(300),
        data_end_timeout: Duration::from_millis(300),
        ..config()
    };
    // Accepts and never greets.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(sock);
    });
    let err = Connection::connect(addr, "mx.fake.test", &short)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout("greeting")), "{err:?}");
    assert!(!err.is_permanent());

    let fake = Fake::start(Script {
        stall_on: Some("EHLO"),
        ..Script::default()
    })
    .await;
    let err = Connection::connect(fake.addr, "mx.fake.test", &short)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout("EHLO")), "{err:?}");

    for stage in ["RCPT", "END"] {
        let fake = Fake::start(Script {
            extensions: vec!["PIPELINING"],
            stall_on: Some(stage),
            ..Script::default()
        })
        .await;
        let mut conn = Connection::connect(fake.addr, "mx.fake.test", &short)
            .await
            .unwrap();
        // The fake stalls for an hour, so a Timeout error is the client's own 300 ms
        // time-out firing; the outer bound only turns a hang into a failure (no wall-clock
        // window a loaded machine could miss).
        let err = tokio::time::timeout(
            Duration::from_secs(60),
            conn.send(&envelope("a@x.test", &["b@y.test"]), MESSAGE),
        )
        .await
        .expect("the client's command time-out never fired")
        .unwrap_err();
        let want = if stage == "END" {
            "end of data"
        } else {
            "MAIL"
        };
        assert!(
            matches!(err, ClientError::Timeout(s) if s == want),
            "{stage}: {err:?}"
        );
        assert!(!conn.is_reusable());
        assert!(conn.noop().await.is_err());
    }
}

/// One real peer: Postfix's smtp-sink (Debian package `postfix`), when installed; skipped
/// otherwise. It checks what a scripted fake cannot: that a real ESMTP implementation accepts
/// our pipelined group, parameters and data.
#[tokio::test]
async fn interop_with_postfix_smtp_sink() {
    use std::os::unix::fs::PermissionsExt;
    // Installed when missing (Debian's postfix), rather than skipped: a skipped interop
    // test passes on every machine that lacks the peer.
    tern_testkit::clients::require(tern_testkit::clients::Client::SmtpSink).unwrap();
    let sink = std::path::Path::new(tern_testkit::clients::Client::SMTP_SINK);
    let dir = tempfile::tempdir().unwrap();
    // As root, smtp-sink drops to nobody, who must be able to write the dump files.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = tokio::process::Command::new(sink);
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    if uid.stdout.trim_ascii() == b"0" {
        cmd.args(["-u", "nobody"]);
    }
    let _child = cmd
        .arg("-d")
        .arg(format!("{}/%H%M%S.", dir.path().display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut conn = None;
    for _ in 0..50 {
        match Connection::connect(addr, "smtp-sink", &config()).await {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(ClientError::Connect(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
    let mut conn = conn.expect("smtp-sink did not start");
    let ext = conn.extensions().clone();
    assert!(ext.pipelining && ext.eightbitmime && ext.dsn, "{ext:?}");
    let env = Envelope {
        from: "a@x.test".into(),
        mail_params: vec!["RET=HDRS".into()],
        rcpts: ["b@y.test", "c@y.test", "d@y.test"]
            .iter()
            .map(|a| Rcpt {
                address: (*a).into(),
                dsn_params: vec!["NOTIFY=FAILURE".into()],
            })
            .collect(),
    };
    let message = "Subject: interop\n\n.\n..two\nna\u{ef}ve\n".as_bytes();
    let t = conn.send(&env, message).await.unwrap();
    assert_eq!(codes(&t), [250, 250, 250]);
    assert!(t.data.as_ref().unwrap().is_positive(), "{t:?}");
    conn.reset().await.unwrap();
    let t = conn.send(&env, MESSAGE).await.unwrap();
    assert!(t.data.unwrap().is_positive());
    conn.quit().await;

    let mut dumps = String::new();
    for _ in 0..50 {
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        if files.len() == 2 {
            dumps = files
                .iter()
                .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned())
                .collect();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dumps.contains("X-Helo-Args: client.test"), "{dumps}");
    assert!(
        dumps.contains("X-Mail-Args: <a@x.test> BODY=8BITMIME RET=HDRS"),
        "{dumps}"
    );
    assert!(
        dumps.contains("X-Rcpt-Args: <d@y.test> NOTIFY=FAILURE"),
        "{dumps}"
    );
    assert!(
        dumps.contains("Subject: interop\n\n.\n..two\nna\u{ef}ve\n"),
        "{dumps}"
    );
}
