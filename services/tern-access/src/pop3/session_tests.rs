//! Session tests against an in-memory backend.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::session::*;
use tern_mail::lines;

#[derive(Default)]
struct Store {
    /// account → (uid, content, seen)
    boxes: HashMap<String, Vec<(u32, Vec<u8>, bool)>>,
    locked: HashSet<String>,
    fail_delete: bool,
    /// RETR's content fails after its first piece (the store went away mid-message).
    fail_mid_message: bool,
    /// Calls of mark_seen (each is one store write).
    seen_calls: usize,
}

#[derive(Clone, Default)]
struct Mem(Arc<Mutex<Store>>);

impl Mem {
    fn with_messages(msgs: &[&[u8]]) -> Self {
        let m = Mem::default();
        let list = msgs
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32 + 10, b.to_vec(), false))
            .collect();
        m.0.lock()
            .unwrap()
            .boxes
            .insert("alice@example.test".into(), list);
        m
    }
    fn seen(&self) -> Vec<u32> {
        self.0.lock().unwrap().boxes["alice@example.test"]
            .iter()
            .filter(|m| m.2)
            .map(|m| m.0)
            .collect()
    }
    fn uids(&self) -> Vec<u32> {
        self.0.lock().unwrap().boxes["alice@example.test"]
            .iter()
            .map(|m| m.0)
            .collect()
    }
}

impl Backend for Mem {
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<String>, BackendError> {
        Ok((user == "alice@example.test" && password == "pw").then(|| user.to_string()))
    }
    async fn open(&self, account: &str) -> Result<Open, BackendError> {
        let mut s = self.0.lock().unwrap();
        if !s.locked.insert(account.to_string()) {
            return Ok(Open::InUse);
        }
        let messages = s.boxes[account]
            .iter()
            .map(|(uid, b, _)| MessageInfo {
                uid: *uid,
                size: lines::size(b),
            })
            .collect();
        Ok(Open::Opened(Maildrop {
            uid_validity: 7,
            messages,
        }))
    }
    type Content = Pieces;

    async fn retrieve(&self, account: &str, uid: u32) -> Result<Pieces, BackendError> {
        let s = self.0.lock().unwrap();
        let body = s.boxes[account]
            .iter()
            .find(|m| m.0 == uid)
            .map(|m| m.1.clone())
            .ok_or_else(|| BackendError("gone".into()))?;
        // Small pieces, so that line endings and dots fall across their edges.
        Ok(Pieces {
            pieces: body.chunks(7).map(<[u8]>::to_vec).collect(),
            fail_after_first: s.fail_mid_message,
            given: 0,
        })
    }
    async fn mark_seen(&self, account: &str, uids: &[u32]) -> Result<(), BackendError> {
        let mut s = self.0.lock().unwrap();
        s.seen_calls += 1;
        for uid in uids {
            if let Some(m) = s
                .boxes
                .get_mut(account)
                .and_then(|b| b.iter_mut().find(|m| m.0 == *uid))
            {
                m.2 = true;
            }
        }
        Ok(())
    }
    async fn delete(&self, account: &str, uids: &[u32]) -> Result<(), BackendError> {
        let mut s = self.0.lock().unwrap();
        if s.fail_delete {
            return Err(BackendError("no quorum".into()));
        }
        if let Some(b) = s.boxes.get_mut(account) {
            b.retain(|m| !uids.contains(&m.0));
        }
        Ok(())
    }
    async fn close(&self, account: &str) {
        self.0.lock().unwrap().locked.remove(account);
    }
}

/// A message's content in small pieces.
struct Pieces {
    pieces: std::collections::VecDeque<Vec<u8>>,
    fail_after_first: bool,
    given: usize,
}

impl Content for Pieces {
    async fn next_piece(&mut self) -> Result<Option<Vec<u8>>, BackendError> {
        if self.fail_after_first && self.given == 1 {
            return Err(BackendError("the store went away".into()));
        }
        self.given += 1;
        Ok(self.pieces.pop_front())
    }
}

/// The connection as a RETR sees it: what was sent, and the most buffered at any flush.
#[derive(Default)]
struct Wire {
    buf: Vec<u8>,
    sent: Vec<u8>,
    largest: usize,
}

impl Output for Wire {
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        self.largest = self.largest.max(self.buf.len());
        self.sent.append(&mut self.buf);
        Ok(())
    }
}

fn config(plaintext: bool) -> Config {
    Config {
        plaintext_auth_allowed: plaintext,
        stls_available: true,
        max_auth_failures: 3,
    }
}

/// Sends `line` and returns (response text, what the connection should do).
async fn send(s: &mut Session<Mem>, line: &str) -> (String, Next) {
    let (wire, next) = send_wire(s, line).await;
    (String::from_utf8_lossy(&wire.sent).into_owned(), next)
}

/// [`send`], as the server does it: a RETR or TOP is sent with `send_message`.
async fn send_wire(s: &mut Session<Mem>, line: &str) -> (Wire, Next) {
    let mut wire = Wire::default();
    let mut next = s.handle(line.as_bytes(), &mut wire.buf).await;
    if let Next::Send(r) = next {
        s.send_message(r, &mut wire).await.expect("sent");
        next = Next::Continue;
    }
    wire.flush().await.expect("flushed");
    (wire, next)
}

async fn login(s: &mut Session<Mem>) {
    assert!(send(s, "USER alice@example.test")
        .await
        .0
        .starts_with("+OK"));
    let (r, _) = send(s, "PASS pw").await;
    assert!(r.starts_with("+OK maildrop has"), "{r}");
}

const M1: &[u8] = b"Subject: one\n\n.dot line\nbare lf\n";
const M2: &[u8] = b"Subject: two\r\n\r\nbody\r\n";

#[tokio::test]
async fn every_command_in_each_state() {
    let mem = Mem::with_messages(&[M1, M2]);
    let mut s = Session::new(mem.clone(), config(true));
    assert_eq!(s.greeting(), b"+OK Tern POP3 ready\r\n");
    let (capa, _) = send(&mut s, "CAPA").await;
    for c in [
        "TOP",
        "UIDL",
        "USER",
        "SASL PLAIN LOGIN",
        "RESP-CODES",
        "STLS",
    ] {
        assert!(capa.contains(&format!("\r\n{c}\r\n")), "{c} in {capa}");
    }
    // Not allowed before authentication.
    for cmd in [
        "STAT", "LIST", "RETR 1", "DELE 1", "RSET", "TOP 1 1", "UIDL", "NOOP",
    ] {
        assert!(send(&mut s, cmd).await.0.starts_with("-ERR"), "{cmd}");
    }
    assert!(send(&mut s, "PASS pw")
        .await
        .0
        .starts_with("-ERR USER first"));
    assert!(send(&mut s, "APOP alice c4c9334bac560ecc979e58001b3e22fb")
        .await
        .0
        .starts_with("-ERR"));
    login(&mut s).await;

    let sizes = [lines::size(M1), lines::size(M2)];
    assert_eq!(
        send(&mut s, "STAT").await.0,
        format!("+OK 2 {}\r\n", sizes[0] + sizes[1])
    );
    assert_eq!(
        send(&mut s, "LIST").await.0,
        format!(
            "+OK scan listing follows\r\n1 {}\r\n2 {}\r\n.\r\n",
            sizes[0], sizes[1]
        )
    );
    assert_eq!(
        send(&mut s, "LIST 2").await.0,
        format!("+OK 2 {}\r\n", sizes[1])
    );
    assert!(send(&mut s, "LIST 3")
        .await
        .0
        .starts_with("-ERR no such message"));
    assert_eq!(
        send(&mut s, "UIDL").await.0,
        "+OK unique-id listing follows\r\n1 7.10\r\n2 7.11\r\n.\r\n"
    );
    assert_eq!(send(&mut s, "UIDL 1").await.0, "+OK 1 7.10\r\n");

    let (retr, _) = send(&mut s, "RETR 1").await;
    assert_eq!(
        retr,
        format!(
            "+OK {} octets\r\nSubject: one\r\n\r\n..dot line\r\nbare lf\r\n.\r\n",
            sizes[0]
        )
    );
    assert_eq!(
        send(&mut s, "TOP 2 0").await.0,
        "+OK top of message follows\r\nSubject: two\r\n\r\n.\r\n"
    );

    assert!(send(&mut s, "DELE 1").await.0.starts_with("+OK"));
    assert!(send(&mut s, "DELE 1")
        .await
        .0
        .starts_with("-ERR message is deleted"));
    assert!(send(&mut s, "RETR 1").await.0.starts_with("-ERR"));
    assert_eq!(
        send(&mut s, "STAT").await.0,
        format!("+OK 1 {}\r\n", sizes[1])
    );
    assert!(send(&mut s, "RSET").await.0.starts_with("+OK"));
    assert_eq!(
        send(&mut s, "STAT").await.0,
        format!("+OK 2 {}\r\n", sizes[0] + sizes[1])
    );
    assert_eq!(send(&mut s, "NOOP").await.0, "+OK \r\n");
    assert!(send(&mut s, "USER bob")
        .await
        .0
        .starts_with("-ERR already authenticated"));
    assert!(send(&mut s, "STLS").await.0.starts_with("-ERR"));
    assert!(send(&mut s, "XYZZY")
        .await
        .0
        .starts_with("-ERR unknown command"));
    assert!(send(&mut s, "DELE 2").await.0.starts_with("+OK"));
    let (bye, next) = send(&mut s, "QUIT").await;
    assert!(bye.starts_with("+OK"), "{bye}");
    assert_eq!(next, Next::Close);
    assert_eq!(
        mem.uids(),
        vec![10],
        "exactly the marked message was deleted"
    );
}

#[tokio::test]
async fn a_dropped_session_deletes_nothing_and_releases_the_lock() {
    let mem = Mem::with_messages(&[M1, M2]);
    let mut s = Session::new(mem.clone(), config(true));
    login(&mut s).await;
    send(&mut s, "DELE 1").await;
    send(&mut s, "DELE 2").await;
    s.abort().await;
    assert_eq!(mem.uids(), vec![10, 11]);
    let mut again = Session::new(mem.clone(), config(true));
    login(&mut again).await;
}

#[tokio::test]
async fn a_second_session_gets_in_use() {
    let mem = Mem::with_messages(&[M1]);
    let mut first = Session::new(mem.clone(), config(true));
    login(&mut first).await;
    let mut second = Session::new(mem.clone(), config(true));
    send(&mut second, "USER alice@example.test").await;
    assert!(send(&mut second, "PASS pw")
        .await
        .0
        .starts_with("-ERR [IN-USE]"));
    send(&mut first, "QUIT").await;
    login(&mut second).await;
}

#[tokio::test]
async fn plaintext_authentication_is_refused_until_tls() {
    let mem = Mem::with_messages(&[M1]);
    let mut s = Session::new(mem, config(false));
    let (capa, _) = send(&mut s, "CAPA").await;
    assert!(
        !capa.contains("\r\nUSER\r\n") && capa.contains("\r\nSTLS\r\n"),
        "{capa}"
    );
    assert!(send(&mut s, "USER alice@example.test")
        .await
        .0
        .starts_with("-ERR [AUTH]"));
    assert_eq!(send(&mut s, "STLS").await.1, Next::StartTls);
    s.tls_started();
    let (capa, _) = send(&mut s, "CAPA").await;
    assert!(
        capa.contains("\r\nUSER\r\n") && !capa.contains("\r\nSTLS\r\n"),
        "{capa}"
    );
    login(&mut s).await;
}

#[tokio::test]
async fn auth_plain_with_and_without_initial_response_and_failure_limits() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mem = Mem::with_messages(&[M1]);
    let mut s = Session::new(mem.clone(), config(true));
    assert!(send(
        &mut s,
        &format!("AUTH PLAIN {}", b64("\0alice@example.test\0pw"))
    )
    .await
    .0
    .starts_with("+OK maildrop"));
    s.abort().await;

    let mut s = Session::new(mem.clone(), config(true));
    assert_eq!(send(&mut s, "AUTH PLAIN").await.0, "+ \r\n");
    assert!(
        send(&mut s, &b64("alice@example.test\0alice@example.test\0pw"))
            .await
            .0
            .starts_with("+OK maildrop")
    );
    s.abort().await;

    // LOGIN (the shared SASL crate's second mechanism): user name, then password.
    let mut s = Session::new(mem.clone(), config(true));
    assert_eq!(send(&mut s, "AUTH LOGIN").await.0, "+ VXNlcm5hbWU6\r\n");
    assert_eq!(
        send(&mut s, &b64("alice@example.test")).await.0,
        "+ UGFzc3dvcmQ6\r\n"
    );
    assert!(send(&mut s, &b64("pw")).await.0.starts_with("+OK maildrop"));
    s.abort().await;

    // An authorization identity naming someone else is refused.
    let mut s = Session::new(mem.clone(), config(true));
    assert!(send(
        &mut s,
        &format!(
            "AUTH PLAIN {}",
            b64("bob@example.test\0alice@example.test\0pw")
        )
    )
    .await
    .0
    .starts_with("-ERR [AUTH]"));

    let mut s = Session::new(mem, config(true));
    assert_eq!(send(&mut s, "AUTH PLAIN").await.0, "+ \r\n");
    assert!(send(&mut s, "*")
        .await
        .0
        .starts_with("-ERR authentication cancelled"));
    assert!(send(&mut s, "AUTH PLAIN !!notbase64")
        .await
        .0
        .starts_with("-ERR [AUTH]"));
    for i in 1..=3 {
        let (r, next) = send(
            &mut s,
            &format!("AUTH PLAIN {}", b64("\0alice@example.test\0wrong")),
        )
        .await;
        assert!(r.starts_with("-ERR [AUTH]"), "{r}");
        assert_eq!(
            next,
            if i < 3 {
                Next::DelayThenContinue
            } else {
                Next::Close
            }
        );
    }
}

#[tokio::test]
async fn a_failed_update_is_reported_not_acknowledged() {
    let mem = Mem::with_messages(&[M1]);
    let mut s = Session::new(mem.clone(), config(true));
    login(&mut s).await;
    send(&mut s, "DELE 1").await;
    mem.0.lock().unwrap().fail_delete = true;
    let (r, next) = send(&mut s, "QUIT").await;
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    assert_eq!(next, Next::Close);
    assert_eq!(mem.uids(), vec![10]);
}

#[tokio::test]
async fn retr_marks_seen_in_one_write_at_quit_or_drop_but_top_does_not() {
    let mem = Mem::with_messages(&[M1, M2, M2]);
    let mut s = Session::new(mem.clone(), config(true));
    login(&mut s).await;
    for cmd in ["RETR 1", "RETR 2", "RETR 1", "TOP 3 0", "DELE 2"] {
        assert!(send(&mut s, cmd).await.0.starts_with("+OK"), "{cmd}");
    }
    assert!(mem.seen().is_empty(), "nothing written before QUIT");
    send(&mut s, "QUIT").await;
    // Message 2 was deleted: only message 1 (UID 10) is left to mark.
    assert_eq!(mem.seen(), vec![10]);
    assert_eq!(mem.0.lock().unwrap().seen_calls, 1);

    let mem = Mem::with_messages(&[M1, M2]);
    let mut s = Session::new(mem.clone(), config(true));
    login(&mut s).await;
    send(&mut s, "RETR 2").await;
    s.abort().await;
    assert_eq!(
        mem.seen(),
        vec![11],
        "a dropped connection still received RETR 2"
    );
}

#[tokio::test]
async fn a_long_session_marks_seen_in_batches() {
    let bodies: Vec<&[u8]> = vec![M2; 150];
    let mem = Mem::with_messages(&bodies);
    let mut s = Session::new(mem.clone(), config(true));
    login(&mut s).await;
    for n in 1..=150 {
        send(&mut s, &format!("RETR {n}")).await;
    }
    assert_eq!(
        mem.seen().len(),
        128,
        "two full batches written during the session"
    );
    send(&mut s, "QUIT").await;
    assert_eq!(mem.seen().len(), 150);
    assert_eq!(mem.0.lock().unwrap().seen_calls, 3);
}

#[tokio::test]
async fn a_large_retr_is_sent_in_pieces_never_held_whole() {
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 1 << 20 {
        big.extend_from_slice(b".a line that starts with a dot\nand one that does not\r\n");
    }
    let mem = Mem::with_messages(&[&big]);
    let mut s = Session::new(mem.clone(), config(true));
    login(&mut s).await;
    let (wire, _) = send_wire(&mut s, "RETR 1").await;
    let mut expected = format!("+OK {} octets\r\n", lines::size(&big)).into_bytes();
    lines::dot_stuff(&lines::canonical(&big), &mut expected);
    assert!(
        wire.sent == expected,
        "RETR sent other bytes than the whole-message form"
    );
    assert!(
        wire.largest < 80 * 1024,
        "{} octets were buffered at once for a 1 MiB message",
        wire.largest
    );
}

#[tokio::test]
async fn a_store_failure_before_the_message_is_an_err_and_after_its_start_ends_the_connection() {
    let mem = Mem::with_messages(&[M1, M2]);
    let mut s = Session::new(mem.clone(), config(true));
    login(&mut s).await;
    mem.0.lock().unwrap().fail_mid_message = true;
    let mut wire = Wire::default();
    let Next::Send(r) = s.handle(b"RETR 1", &mut wire.buf).await else {
        panic!("RETR 1 is sent")
    };
    let sent = s.send_message(r, &mut wire).await;
    assert!(sent.is_err(), "a reply cut short must end the connection");
    assert!(String::from_utf8_lossy(&wire.buf).starts_with("+OK"));
    assert!(
        mem.seen().is_empty(),
        "a message not sent whole is not marked seen"
    );
    // A message that is gone before it starts is an -ERR, and the session goes on.
    mem.0.lock().unwrap().fail_mid_message = false;
    mem.0
        .lock()
        .unwrap()
        .boxes
        .get_mut("alice@example.test")
        .unwrap()
        .remove(1);
    let (r, next) = send(&mut s, "RETR 2").await;
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    assert_eq!(next, Next::Continue);
}
