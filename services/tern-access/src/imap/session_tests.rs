//! IMAP session tests against the in-memory backend: bytes in, bytes out, through the same
//! connection loop ([`converse`]) the listeners run, one test per command family.

use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::mem_backend::{Mem, PASSWORD, USER};
use super::server::{converse, timeouts, LoopSettings};
use super::session::{Session, Settings};
use tern_net::connection::Connection;

/// What [`Client::line`] returns once the server closed the connection.
const EOF: &str = "<closed>";

const MSG1: &[u8] = b"From: bob@example.test\r\nSubject: first\r\n\r\nHello Alice\r\n";
const MSG2: &[u8] = b"From: carol@example.test\r\nSubject: second\r\n\r\nBye now\r\n";

struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    task: JoinHandle<std::io::Result<()>>,
}

/// A session over a loopback TCP connection, run by the listeners' connection loop.
async fn start(mem: &Mem, plaintext_auth: bool) -> Client {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let settings = Settings {
        starttls: false,
        plaintext_auth,
        max_auth_failures: 3,
    };
    let loop_settings = LoopSettings {
        tls: None,
        idle_timeout: Duration::from_secs(1800),
        auth_failure_delay: Duration::ZERO,
        max_errors: 10,
        max_message: 1 << 20,
        drain: Default::default(),
    };
    let backend = mem.clone();
    let task = tokio::spawn(async move {
        let mut session = Session::new(backend, settings, false);
        let mut conn = Connection::new(server, timeouts());
        converse(&mut conn, &mut session, &loop_settings).await
    });
    let (r, w) = client.into_split();
    Client {
        reader: BufReader::new(r),
        writer: w,
        task,
    }
}

impl Client {
    async fn send(&mut self, bytes: &str) {
        self.writer.write_all(bytes.as_bytes()).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    /// One line without its CRLF; [`EOF`] at the end of the connection.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(5), self.reader.read_line(&mut line))
            .await
            .expect("the server answers within 5 s")
            .unwrap();
        if n == 0 {
            return EOF.to_string();
        }
        line.trim_end_matches("\r\n").to_string()
    }

    /// Lines up to and including the one tagged `tag`.
    async fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            assert!(l != EOF, "connection closed before {tag}: {lines:?}");
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    /// Sends `tag command` and returns every line of the reply.
    async fn cmd(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send(&format!("{tag} {command}\r\n")).await;
        self.until(tag).await
    }

    /// A fresh connection, greeted and logged in.
    async fn logged_in(mem: &Mem) -> Client {
        let mut c = start(mem, true).await;
        c.line().await;
        let r = c.cmd("l", &format!("LOGIN {USER} {PASSWORD}")).await;
        assert!(last(&r).starts_with("l OK"), "{r:?}");
        c
    }

    /// Selected after another session took the mailbox's messages as \Recent, so none is
    /// recent here (for tests about other things).
    async fn selected_after_another(mem: &Mem, mailbox: &str) -> Client {
        Client::selected(mem, mailbox).await;
        Client::selected(mem, mailbox).await
    }

    async fn selected(mem: &Mem, mailbox: &str) -> Client {
        let mut c = Client::logged_in(mem).await;
        let r = c.cmd("s", &format!("SELECT {mailbox}")).await;
        assert!(last(&r).starts_with("s OK [READ-WRITE]"), "{r:?}");
        c
    }
}

fn last(lines: &[String]) -> &str {
    lines.last().map(String::as_str).unwrap_or_default()
}

fn has(lines: &[String], wanted: &str) -> bool {
    lines.iter().any(|l| l == wanted)
}

/// INBOX with MSG1 (unseen) and MSG2 (seen).
fn two_messages() -> Mem {
    let mem = Mem::new();
    mem.deliver("INBOX", &[], MSG1);
    mem.deliver("INBOX", &["\\Seen"], MSG2);
    mem
}

#[tokio::test]
async fn capability_noop_logout() {
    let mem = Mem::new();
    let mut c = start(&mem, true).await;
    let greeting = c.line().await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 "),
        "{greeting}"
    );
    assert!(greeting.contains("AUTH=PLAIN"), "{greeting}");
    let r = c.cmd("a", "CAPABILITY").await;
    assert!(r[0].starts_with("* CAPABILITY IMAP4rev1"), "{r:?}");
    assert!(!r[0].contains("UIDPLUS"), "not before login: {r:?}");
    assert_eq!(last(&r), "a OK CAPABILITY completed");
    assert_eq!(c.cmd("b", "NOOP").await, ["b OK NOOP completed"]);
    let r = c.cmd("c", "LOGOUT").await;
    assert_eq!(r, ["* BYE Tern IMAP logging out", "c OK LOGOUT completed"]);
    assert_eq!(c.line().await, EOF, "the server closes after LOGOUT");
    c.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_largest_id_rfc_2971_allows_is_answered() {
    let mem = Mem::new();
    let mut c = start(&mem, true).await;
    c.line().await;
    let pairs: Vec<String> = (0..30)
        .map(|i| format!("\"field-{i:024}\" \"{}\"", "v".repeat(1024)))
        .collect();
    let r = c.cmd("a", &format!("ID ({})", pairs.join(" "))).await;
    assert!(r[0].starts_with("* ID ("), "{r:?}");
    assert_eq!(last(&r), "a OK ID completed");
}

#[tokio::test]
async fn login_and_authenticate_plain() {
    let mem = Mem::new();
    let mut c = start(&mem, true).await;
    c.line().await;
    let r = c.cmd("a", &format!("LOGIN {USER} wrong")).await;
    assert_eq!(
        last(&r),
        "a NO [AUTHENTICATIONFAILED] authentication failed"
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // Acting as someone else is refused.
    let other = b64(&format!("bob@example.test\0{USER}\0{PASSWORD}"));
    let r = c.cmd("b", &format!("AUTHENTICATE PLAIN {other}")).await;
    assert!(last(&r).starts_with("b NO [AUTHORIZATIONFAILED]"), "{r:?}");
    // Without an initial response: an empty challenge, then the response; `*` cancels.
    c.send("c AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ ");
    c.send("*\r\n").await;
    assert_eq!(c.line().await, "c BAD AUTHENTICATE: AUTHENTICATE cancelled");
    c.send("d AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ ");
    c.send(&format!("{}\r\n", b64(&format!("\0{USER}\0{PASSWORD}"))))
        .await;
    let ok = c.line().await;
    assert!(ok.starts_with("d OK [CAPABILITY IMAP4rev1"), "{ok}");
    assert!(ok.contains("UIDPLUS") && ok.ends_with("Logged in"), "{ok}");
    let r = c.cmd("e", &format!("LOGIN {USER} {PASSWORD}")).await;
    assert_eq!(last(&r), "e BAD LOGIN: already authenticated");

    // SASL-IR on a fresh connection.
    let mut c = start(&mem, true).await;
    c.line().await;
    let ir = b64(&format!("{USER}\0{USER}\0{PASSWORD}"));
    let r = c.cmd("a", &format!("AUTHENTICATE PLAIN {ir}")).await;
    assert!(last(&r).starts_with("a OK [CAPABILITY"), "{r:?}");
}

#[tokio::test]
async fn plaintext_login_needs_tls_and_failures_close() {
    let mem = Mem::new();
    let mut c = start(&mem, false).await;
    let greeting = c.line().await;
    assert!(greeting.contains("LOGINDISABLED"), "{greeting}");
    let r = c.cmd("a", &format!("LOGIN {USER} {PASSWORD}")).await;
    assert!(last(&r).starts_with("a NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = c.cmd("b", "STARTTLS").await;
    assert_eq!(last(&r), "b BAD STARTTLS: STARTTLS is not available here");

    let mut c = start(&mem, true).await;
    c.line().await;
    c.cmd("a", &format!("LOGIN {USER} x")).await;
    c.cmd("b", &format!("LOGIN {USER} y")).await;
    let r = c.cmd("c", &format!("LOGIN {USER} z")).await;
    assert_eq!(
        last(&r),
        "c NO [AUTHENTICATIONFAILED] authentication failed; closing"
    );
    assert_eq!(c.line().await, EOF);
}

#[tokio::test]
async fn bad_syntax_and_wrong_state() {
    let mem = Mem::new();
    let mut c = start(&mem, true).await;
    c.line().await;
    let r = c.cmd("a", "SELECT INBOX").await;
    assert_eq!(last(&r), "a BAD SELECT: log in first");
    let r = c.cmd("b", "FROBNICATE").await;
    assert!(last(&r).starts_with("b BAD "), "{r:?}");
    let r = c.cmd("c", "ENABLE CONDSTORE").await;
    assert_eq!(last(&r), "c BAD ENABLE: log in first");
    let r = c.cmd("d", &format!("LOGIN {USER} {PASSWORD}")).await;
    assert!(last(&r).starts_with("d OK"), "{r:?}");
    let r = c.cmd("e", "FETCH 1 FLAGS").await;
    assert_eq!(last(&r), "e BAD FETCH: no mailbox selected");
    let r = c.cmd("f", "CHECK").await;
    assert_eq!(last(&r), "f BAD CHECK: no mailbox selected");
    let r = c.cmd("g", "CLOSE").await;
    assert_eq!(last(&r), "g BAD CLOSE: no mailbox selected");
    let r = c.cmd("h", "STORE 1 +FLAGS").await;
    assert!(last(&r).starts_with("h BAD "), "{r:?}");
    let r = c.cmd("i", "SELECT \"&Jjo\"").await;
    // Well-formed, but no mailbox can have that name: NO, not BAD.
    assert!(
        last(&r).starts_with("i NO [CANNOT] mailbox name is not valid modified UTF-7"),
        "{r:?}"
    );
    // Empty lines are ignored.
    c.send("\r\n").await;
    assert_eq!(c.cmd("j", "NOOP").await, ["j OK NOOP completed"]);
}

#[tokio::test]
async fn select_and_examine() {
    let mem = two_messages();
    let mut c = Client::logged_in(&mem).await;
    let r = c.cmd("a", "SELECT INBOX").await;
    assert!(
        has(
            &r,
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
        ),
        "{r:?}"
    );
    assert!(has(&r, "* 2 EXISTS") && has(&r, "* 2 RECENT"), "{r:?}");
    assert!(has(&r, "* OK [UNSEEN 1] first unseen"), "{r:?}");
    assert!(has(&r, "* OK [UIDVALIDITY 1001] UIDs valid"), "{r:?}");
    assert!(has(&r, "* OK [UIDNEXT 3] predicted next UID"), "{r:?}");
    assert!(
        r.iter().any(|l| l.starts_with("* OK [PERMANENTFLAGS (")),
        "{r:?}"
    );
    assert!(
        r.iter().any(|l| l.starts_with("* OK [HIGHESTMODSEQ ")),
        "{r:?}"
    );
    assert_eq!(last(&r), "a OK [READ-WRITE] SELECT completed");
    let r = c.cmd("b", "EXAMINE INBOX").await;
    assert!(has(&r, "* OK [PERMANENTFLAGS ()] read-only"), "{r:?}");
    assert_eq!(last(&r), "b OK [READ-ONLY] EXAMINE completed");
    let r = c.cmd("c", "STORE 1 +FLAGS (\\Flagged)").await;
    assert_eq!(last(&r), "c NO [READ-ONLY] the mailbox is read-only");
    let r = c.cmd("d", "SELECT Nowhere").await;
    assert!(last(&r).starts_with("d NO [NONEXISTENT]"), "{r:?}");
    // A failed SELECT leaves nothing selected.
    let r = c.cmd("e", "FETCH 1 FLAGS").await;
    assert_eq!(last(&r), "e BAD FETCH: no mailbox selected");
}

#[tokio::test]
async fn create_delete_rename() {
    let mem = Mem::new();
    let mut c = Client::logged_in(&mem).await;
    assert_eq!(c.cmd("a", "CREATE Work/").await, ["a OK CREATE completed"]);
    let r = c.cmd("b", "CREATE Work").await;
    assert!(
        last(&r).starts_with("b NO [ALREADYEXISTS] CREATE: "),
        "{r:?}"
    );
    let r = c.cmd("c", "CREATE inbox").await;
    assert_eq!(last(&r), "c NO [ALREADYEXISTS] INBOX always exists");
    assert_eq!(
        c.cmd("d", "RENAME Work Play").await,
        ["d OK RENAME completed"]
    );
    let r = c.cmd("e", "RENAME Work Other").await;
    assert!(last(&r).starts_with("e NO [NONEXISTENT] RENAME: "), "{r:?}");
    let r = c.cmd("f", "DELETE INBOX").await;
    assert_eq!(last(&r), "f NO [CANNOT] INBOX cannot be deleted");
    assert_eq!(c.cmd("g", "DELETE Play").await, ["g OK DELETE completed"]);
    let r = c.cmd("h", "DELETE Play").await;
    assert!(last(&r).starts_with("h NO [NONEXISTENT] DELETE: "), "{r:?}");
    // A name that is not modified UTF-7 is a NO (the command is well-formed), and the
    // session goes on.
    let r = c.cmd("h2", "CREATE \"&'\"").await;
    assert!(
        last(&r).starts_with("h2 NO [CANNOT] mailbox name is not valid modified UTF-7"),
        "{r:?}"
    );
    assert_eq!(c.cmd("h3", "NOOP").await, ["h3 OK NOOP completed"]);
    // Non-ASCII names travel as modified UTF-7 and are stored as UTF-8.
    assert_eq!(
        c.cmd("i", "CREATE Caf&AOk-").await,
        ["i OK CREATE completed"]
    );
    let r = c.cmd("j", "LIST \"\" Caf*").await;
    assert!(
        has(&r, "* LIST (\\HasNoChildren) \"/\" \"Caf&AOk-\""),
        "{r:?}"
    );
    // Deleting the selected mailbox: OK, then BYE.
    let r = c.cmd("k", "SELECT Archive").await;
    assert!(last(&r).starts_with("k OK"), "{r:?}");
    c.send("l DELETE Archive\r\n").await;
    assert_eq!(c.line().await, "l OK DELETE completed");
    assert_eq!(c.line().await, "* BYE the selected mailbox was deleted");
    assert_eq!(c.line().await, EOF);
}

#[tokio::test]
async fn list_lsub_subscribe() {
    let mem = Mem::new();
    let mut c = Client::logged_in(&mem).await;
    let r = c.cmd("a", "LIST \"\" \"\"").await;
    assert_eq!(r, ["* LIST (\\Noselect) \"/\" \"\"", "a OK LIST completed"]);
    c.cmd("b", "CREATE Archive/2024").await;
    let r = c.cmd("c", "LIST \"\" *").await;
    assert!(has(&r, "* LIST (\\HasNoChildren) \"/\" \"INBOX\""), "{r:?}");
    assert!(has(&r, "* LIST (\\HasChildren) \"/\" \"Archive\""), "{r:?}");
    assert!(
        has(&r, "* LIST (\\HasNoChildren) \"/\" \"Archive/2024\""),
        "{r:?}"
    );
    assert!(
        has(&r, "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\""),
        "{r:?}"
    );
    let r = c.cmd("d", "LIST \"\" %").await;
    assert!(!r.iter().any(|l| l.contains("2024")), "{r:?}");
    assert_eq!(
        c.cmd("e", "SUBSCRIBE Archive/2024").await,
        ["e OK SUBSCRIBE completed"]
    );
    let r = c.cmd("f", "LSUB \"\" *").await;
    assert_eq!(
        r,
        [
            "* LSUB (\\HasNoChildren) \"/\" \"Archive/2024\"",
            "f OK LSUB completed"
        ]
    );
    // `%` shows the unsubscribed parent of a subscribed child as \Noselect.
    let r = c.cmd("g", "LSUB \"\" %").await;
    assert_eq!(
        r,
        [
            "* LSUB (\\Noselect) \"/\" \"Archive\"",
            "g OK LSUB completed"
        ]
    );
    assert_eq!(
        c.cmd("h", "UNSUBSCRIBE Archive/2024").await,
        ["h OK UNSUBSCRIBE completed"]
    );
    assert_eq!(c.cmd("i", "LSUB \"\" *").await, ["i OK LSUB completed"]);
    let r = c.cmd("j", "SUBSCRIBE Nowhere").await;
    assert!(
        last(&r).starts_with("j NO [NONEXISTENT] SUBSCRIBE: "),
        "{r:?}"
    );
}

#[tokio::test]
async fn status() {
    let mem = two_messages();
    let mut c = Client::logged_in(&mem).await;
    let r = c
        .cmd(
            "a",
            "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)",
        )
        .await;
    assert_eq!(
        r,
        [
            "* STATUS \"INBOX\" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 1001 UNSEEN 1 RECENT 2)",
            "a OK STATUS completed"
        ]
    );
    let r = c.cmd("b", "STATUS Nowhere (MESSAGES)").await;
    assert!(last(&r).starts_with("b NO [NONEXISTENT] STATUS: "), "{r:?}");
}

#[tokio::test]
async fn append() {
    let mem = two_messages();
    let mut c = Client::selected(&mem, "INBOX").await;
    let msg = "Subject: new\r\n\r\nbody\r\n";
    c.send(&format!("a APPEND INBOX (\\Flagged) {{{}}}\r\n", msg.len()))
        .await;
    assert_eq!(c.line().await, "+ go ahead");
    c.send(&format!("{msg}\r\n")).await;
    let r = c.until("a").await;
    assert_eq!(
        r,
        // This session is the first told of its own message: \Recent, with SELECT's two.
        [
            "* 3 EXISTS",
            "* 3 RECENT",
            "a OK [APPENDUID 1001 3] APPEND completed"
        ]
    );
    assert_eq!(mem.flags("INBOX", 3), ["\\Flagged"]);
    // LITERAL+: no continuation.
    let r = c
        .cmd("b", &format!("APPEND Archive {{{}+}}\r\n{msg}", msg.len()))
        .await;
    assert_eq!(last(&r), "b OK [APPENDUID 1002 1] APPEND completed");
    let r = c
        .cmd("c", &format!("APPEND Nowhere {{{}+}}\r\n{msg}", msg.len()))
        .await;
    assert_eq!(last(&r), "c NO [TRYCREATE] no such mailbox");
    mem.set_quota(10);
    let r = c
        .cmd("d", &format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len()))
        .await;
    assert!(last(&r).starts_with("d NO [OVERQUOTA] APPEND: "), "{r:?}");
}

#[tokio::test]
async fn fetch() {
    let mem = two_messages();
    let mut c = Client::selected_after_another(&mem, "INBOX").await;
    let r = c.cmd("a", "FETCH 1:2 (UID FLAGS RFC822.SIZE)").await;
    assert_eq!(
        r,
        [
            format!("* 1 FETCH (UID 1 FLAGS () RFC822.SIZE {})", MSG1.len()),
            format!(
                "* 2 FETCH (UID 2 FLAGS (\\Seen) RFC822.SIZE {})",
                MSG2.len()
            ),
            "a OK FETCH completed".to_string(),
        ]
    );
    // PEEK leaves \Seen alone.
    let r = c
        .cmd("b", "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        .await;
    assert!(
        r[0].starts_with("* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {"),
        "{r:?}"
    );
    assert!(mem.flags("INBOX", 1).is_empty());
    // BODY[] sets \Seen and is a retrieval.
    c.send("c FETCH 1 BODY[]\r\n").await;
    let first = c.line().await;
    assert_eq!(first, format!("* 1 FETCH (BODY[] {{{}}}", MSG1.len()));
    let r = c.until("c").await;
    assert!(r.iter().any(|l| l.contains("FLAGS (\\Seen)")), "{r:?}");
    assert_eq!(last(&r), "c OK FETCH completed");
    assert_eq!(mem.flags("INBOX", 1), ["\\Seen"]);
    assert_eq!(mem.retrievals(), [("INBOX".to_string(), 1)]);
    // UID FETCH names UIDs and always carries UID.
    let r = c.cmd("d", "UID FETCH 2 FLAGS").await;
    assert_eq!(
        r,
        ["* 2 FETCH (UID 2 FLAGS (\\Seen))", "d OK FETCH completed"]
    );
    let r = c.cmd("e", "FETCH 9 FLAGS").await;
    assert!(last(&r).starts_with("e BAD "), "{r:?}");
    let r = c.cmd("f", "UID FETCH 9 FLAGS").await;
    assert_eq!(r, ["f OK FETCH completed"]);
}

#[tokio::test]
async fn a_header_only_fetch_of_a_thousand_messages_is_one_store_read() {
    let mem = Mem::new();
    for i in 0..1000 {
        let m = format!("From: x{i}@example.test\nSubject: n{i}\n\nbody {i}\n");
        mem.deliver("INBOX", &["\\Seen"], m.as_bytes());
    }
    let mut c = Client::selected_after_another(&mem, "INBOX").await;
    let before = mem.reads();
    let r = c
        .cmd(
            "a",
            "FETCH 1:* (ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
        )
        .await;
    assert_eq!(
        mem.reads(),
        (before.0, before.1 + 1),
        "one header read, no content read"
    );
    assert_eq!(last(&r), "a OK FETCH completed");
    assert!(
        r.iter().any(|l| l.contains("\"n999\"")),
        "the last one's subject"
    );
    // Bare LFs as stored go out as CRLF: "Subject: n0" CRLF CRLF is 15 octets.
    assert!(
        r[0].ends_with("BODY[HEADER.FIELDS (SUBJECT)] {15}"),
        "{:?}",
        r[0]
    );
    // Messages gone meanwhile are left out quietly by UID FETCH.
    mem.set_flags_elsewhere("INBOX", 1, &["\\Deleted"]);
    mem.expunge_elsewhere("INBOX", &[1]);
    assert_eq!(mem.uids("INBOX").first(), Some(&2));
    let r = c.cmd("b", "UID FETCH 1:2 (BODY.PEEK[HEADER])").await;
    assert!(
        r.iter().all(|l| !l.starts_with("* 1 FETCH (UID 1 BODY")),
        "{r:?}"
    );
}

#[tokio::test]
async fn store_flags() {
    let mem = two_messages();
    let mut c = Client::selected_after_another(&mem, "INBOX").await;
    let r = c.cmd("a", "STORE 1 +FLAGS (\\Flagged work)").await;
    // A keyword new to the mailbox is announced in FLAGS before the FETCH that names it
    // (RFC 3501 §7.2.6).
    assert_eq!(
        r,
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft work)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft work \\*)] flags permitted",
            "* 1 FETCH (FLAGS (\\Flagged work))",
            "a OK STORE completed"
        ]
    );
    assert_eq!(mem.flags("INBOX", 1), ["\\Flagged", "work"]);
    let r = c.cmd("b", "STORE 1 -FLAGS.SILENT (work)").await;
    assert_eq!(r, ["b OK STORE completed"]);
    let r = c.cmd("c", "UID STORE 2 FLAGS (\\Answered)").await;
    assert_eq!(
        r,
        [
            "* 2 FETCH (UID 2 FLAGS (\\Answered))",
            "c OK STORE completed"
        ]
    );
    let r = c.cmd("d", "STORE 1 +FLAGS (\\Recent)").await;
    assert!(last(&r).starts_with("d BAD "), "{r:?}");
    // CONDSTORE: a message changed after UNCHANGEDSINCE is left alone and named.
    let r = c
        .cmd("e", "STORE 1:2 (UNCHANGEDSINCE 1) +FLAGS (\\Draft)")
        .await;
    assert_eq!(
        last(&r),
        "e OK [MODIFIED 1:2] conditional STORE failed for some messages"
    );
    let r = c.cmd("f", "FETCH 1 (MODSEQ)").await;
    let modseq: u64 = r[0]
        .split("MODSEQ (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no MODSEQ in {r:?}"));
    let r = c
        .cmd(
            "g",
            &format!("STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Draft)"),
        )
        .await;
    assert!(r[0].contains("FLAGS (\\Flagged \\Draft)"), "{r:?}");
    assert_eq!(last(&r), "g OK STORE completed");
}

#[tokio::test]
async fn search() {
    let mem = two_messages();
    let mut c = Client::selected(&mem, "INBOX").await;
    assert_eq!(
        c.cmd("a", "SEARCH UNSEEN").await,
        ["* SEARCH 1", "a OK SEARCH completed"]
    );
    assert_eq!(
        c.cmd("b", "SEARCH SUBJECT second").await,
        ["* SEARCH 2", "b OK SEARCH completed"]
    );
    assert_eq!(
        c.cmd("c", "UID SEARCH OR SEEN BODY alice").await,
        ["* SEARCH 1 2", "c OK SEARCH completed"]
    );
    assert_eq!(
        c.cmd("d", "SEARCH NOT ALL").await,
        ["* SEARCH", "d OK SEARCH completed"]
    );
    // UIDs past the highest name nothing; only `*` means the highest (RFC 3501 §9).
    assert_eq!(
        c.cmd("d2", "UID SEARCH UID 3:4294967295").await,
        ["* SEARCH", "d2 OK SEARCH completed"]
    );
    assert_eq!(
        c.cmd("d3", "UID SEARCH UID 3:*").await,
        ["* SEARCH 2", "d3 OK SEARCH completed"]
    );
    let r = c.cmd("e", "SEARCH CHARSET KOI8-R ALL").await;
    assert_eq!(
        last(&r),
        "e NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset"
    );
    let r = c.cmd("f", "SEARCH MODSEQ 1").await;
    assert!(r[0].starts_with("* SEARCH 1 2 (MODSEQ "), "{r:?}");
}

#[tokio::test]
async fn copy_and_move() {
    let mem = two_messages();
    let mut c = Client::selected(&mem, "INBOX").await;
    let r = c.cmd("a", "COPY 1:2 Archive").await;
    assert_eq!(r, ["a OK [COPYUID 1002 1:2 1:2] COPY completed"]);
    assert_eq!(mem.uids("Archive"), [1, 2]);
    let r = c.cmd("b", "COPY 1 Nowhere").await;
    assert_eq!(last(&r), "b NO [TRYCREATE] no such target mailbox");
    let r = c.cmd("c", "MOVE 1 Trash").await;
    assert_eq!(
        r,
        [
            "* OK [COPYUID 1003 1 1] moved",
            "* 1 EXPUNGE",
            "c OK MOVE completed"
        ]
    );
    assert_eq!(mem.uids("INBOX"), [2]);
    let r = c.cmd("d", "UID MOVE 2 Trash").await;
    assert_eq!(
        r,
        [
            "* OK [COPYUID 1003 2 2] moved",
            "* 1 EXPUNGE",
            "d OK MOVE completed"
        ]
    );
}

#[tokio::test]
async fn expunge_close_unselect() {
    let mem = two_messages();
    mem.deliver("INBOX", &["\\Deleted"], MSG1);
    let mut c = Client::selected(&mem, "INBOX").await;
    c.cmd("a", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.cmd("b", "UID EXPUNGE 1").await;
    assert_eq!(r, ["* 1 EXPUNGE", "b OK EXPUNGE completed"]);
    assert_eq!(mem.uids("INBOX"), [2, 3]);
    c.cmd("c", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.cmd("d", "EXPUNGE").await;
    assert_eq!(r, ["* 2 EXPUNGE", "* 1 EXPUNGE", "d OK EXPUNGE completed"]);
    assert!(mem.uids("INBOX").is_empty());
    // UNSELECT leaves \Deleted messages; CLOSE expunges them without a word.
    let uid = mem.deliver("INBOX", &["\\Deleted"], MSG2);
    c.cmd("e", "SELECT INBOX").await;
    assert_eq!(c.cmd("f", "UNSELECT").await, ["f OK UNSELECT completed"]);
    assert_eq!(mem.uids("INBOX"), [uid]);
    c.cmd("g", "EXAMINE INBOX").await;
    assert_eq!(c.cmd("h", "CLOSE").await, ["h OK CLOSE completed"]);
    assert_eq!(mem.uids("INBOX"), [uid], "EXAMINE's CLOSE expunges nothing");
    c.cmd("i", "SELECT INBOX").await;
    let r = c.cmd("j", "EXPUNGE").await;
    assert_eq!(r, ["* 1 EXPUNGE", "j OK EXPUNGE completed"]);
    mem.deliver("INBOX", &["\\Deleted"], MSG2);
    c.cmd("k", "NOOP").await;
    assert_eq!(c.cmd("l", "CLOSE").await, ["l OK CLOSE completed"]);
    assert!(mem.uids("INBOX").is_empty());
    let r = c.cmd("m", "EXPUNGE").await;
    assert_eq!(last(&r), "m BAD EXPUNGE: no mailbox selected");
}

#[tokio::test]
async fn changes_elsewhere_are_announced() {
    let mem = two_messages();
    let mut c = Client::selected_after_another(&mem, "INBOX").await;
    mem.deliver("INBOX", &[], MSG2);
    mem.set_flags_elsewhere("INBOX", 1, &["\\Deleted"]);
    let r = c.cmd("a", "NOOP").await;
    assert_eq!(
        r,
        [
            "* 3 EXISTS",
            "* 1 RECENT",
            "* 1 FETCH (FLAGS (\\Deleted))",
            "a OK NOOP completed"
        ]
    );
    // A keyword set elsewhere: announced in FLAGS before the FETCH that names it, once.
    mem.set_flags_elsewhere("INBOX", 2, &["\\Seen", "$hello"]);
    let r = c.cmd("k", "NOOP").await;
    assert_eq!(
        r,
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $hello)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $hello \\*)] flags permitted",
            "* 2 FETCH (FLAGS (\\Seen $hello))",
            "k OK NOOP completed"
        ]
    );
    mem.set_flags_elsewhere("INBOX", 2, &["$hello"]);
    let r = c.cmd("l", "NOOP").await;
    assert_eq!(r, ["* 2 FETCH (FLAGS ($hello))", "l OK NOOP completed"]);
    // A new message with a keyword of its own: FLAGS before EXISTS.
    mem.deliver("INBOX", &["$label1"], MSG1);
    let r = c.cmd("m", "NOOP").await;
    assert!(
        r[0].starts_with("* FLAGS (") && r[0].ends_with(" $hello $label1)"),
        "{r:?}"
    );
    assert_eq!(&r[2..], ["* 4 EXISTS", "* 2 RECENT", "m OK NOOP completed"]);
    mem.set_flags_elsewhere("INBOX", 1, &["\\Deleted"]);
    mem.expunge_elsewhere("INBOX", &[1]);
    assert_eq!(mem.uids("INBOX").first(), Some(&2));
    // No EXPUNGE during FETCH (RFC 3501 §7.4.1); it comes at the next NOOP.
    let r = c.cmd("b", "FETCH 2 FLAGS").await;
    assert_eq!(r, ["* 2 FETCH (FLAGS ($hello))", "b OK FETCH completed"]);
    let r = c.cmd("c", "NOOP").await;
    assert_eq!(r, ["* 1 EXPUNGE", "c OK NOOP completed"]);
}

#[tokio::test]
async fn a_session_whose_feed_was_pruned_ends_with_bye_in_idle_and_at_the_next_command() {
    let mem = two_messages();
    let mut c = Client::selected(&mem, "INBOX").await;
    c.send("a IDLE\r\n").await;
    assert_eq!(c.line().await, "+ idling");
    mem.lose_feed("INBOX");
    assert_eq!(
        c.line().await,
        "* BYE the selected mailbox's changes can no longer be followed; select it again"
    );
    assert_eq!(c.line().await, EOF);

    // Outside IDLE the session learns it at its next command, and answers BYE, not OK.
    let mut c = Client::selected(&mem, "INBOX").await;
    mem.lose_feed("INBOX");
    c.send("b NOOP\r\n").await;
    assert_eq!(
        c.line().await,
        "* BYE the selected mailbox's changes can no longer be followed; select it again"
    );
    assert_eq!(c.line().await, EOF);
}

#[tokio::test]
async fn idle() {
    let mem = two_messages();
    let mut c = Client::selected(&mem, "INBOX").await;
    c.send("a IDLE\r\n").await;
    assert_eq!(c.line().await, "+ idling");
    mem.deliver("INBOX", &[], MSG1);
    assert_eq!(c.line().await, "* 3 EXISTS");
    assert_eq!(c.line().await, "* 3 RECENT");
    mem.set_flags_elsewhere("INBOX", 3, &["\\Flagged"]);
    assert_eq!(c.line().await, "* 3 FETCH (FLAGS (\\Flagged \\Recent))");
    c.send("DONE\r\n").await;
    assert_eq!(c.line().await, "a OK IDLE terminated");
    c.send("b IDLE\r\n").await;
    assert_eq!(c.line().await, "+ idling");
    c.send("NOT DONE\r\n").await;
    assert_eq!(c.line().await, "b BAD expected DONE");
    assert_eq!(c.cmd("c", "NOOP").await, ["c OK NOOP completed"]);
}

#[tokio::test]
async fn namespace_id_enable_quota() {
    let mem = two_messages();
    let mut c = Client::logged_in(&mem).await;
    assert_eq!(
        c.cmd("a", "NAMESPACE").await,
        [
            "* NAMESPACE ((\"\" \"/\")) NIL NIL",
            "a OK NAMESPACE completed"
        ]
    );
    assert_eq!(
        c.cmd("b", "ID NIL").await,
        [
            "* ID (\"name\" \"Tern\" \"vendor\" \"Tern\")",
            "b OK ID completed"
        ]
    );
    assert_eq!(
        c.cmd("c", "ENABLE CONDSTORE").await,
        ["* ENABLED CONDSTORE", "c OK ENABLE completed"]
    );
    assert_eq!(
        c.cmd("d", "GETQUOTAROOT INBOX").await,
        ["* QUOTAROOT \"INBOX\"", "d OK GETQUOTAROOT completed"]
    );
    let r = c.cmd("e", "GETQUOTA \"\"").await;
    assert_eq!(last(&r), "e NO [NONEXISTENT] no quota is set");
    mem.set_quota(10 * 1024);
    let used = (MSG1.len() + MSG2.len()).div_ceil(1024);
    assert_eq!(
        c.cmd("f", "GETQUOTAROOT INBOX").await,
        [
            "* QUOTAROOT \"INBOX\" \"\"".to_string(),
            format!("* QUOTA \"\" (STORAGE {used} 10)"),
            "f OK GETQUOTAROOT completed".to_string()
        ]
    );
    let r = c.cmd("g", "GETQUOTA other").await;
    assert_eq!(last(&r), "g NO [NONEXISTENT] no such quota root");
    let r = c.cmd("h", "SETQUOTA \"\" (STORAGE 1)").await;
    assert_eq!(
        last(&r),
        "h NO [NOPERM] quotas are set by the administrator (ternctl)"
    );
    // With CONDSTORE on, FETCH FLAGS carries UID and MODSEQ.
    c.cmd("i", "SELECT INBOX").await;
    let r = c.cmd("j", "STORE 1 +FLAGS (\\Answered)").await;
    assert!(r[0].starts_with("* 1 FETCH (UID 1 MODSEQ ("), "{r:?}");
    let r = c.cmd("k", "ENABLE CONDSTORE").await;
    assert_eq!(last(&r), "k BAD ENABLE: ENABLE is only valid before SELECT");
}

#[tokio::test]
async fn store_failures_are_tagged_no() {
    let mem = two_messages();
    let mut c = Client::selected(&mem, "INBOX").await;
    mem.fail(Some(super::backend::ErrorKind::Unavailable));
    let r = c.cmd("a", "STORE 1 +FLAGS (\\Flagged)").await;
    assert_eq!(
        last(&r),
        "a NO [UNAVAILABLE] STORE: the store is unavailable, try again"
    );
    let r = c.cmd("b", "CREATE x").await;
    assert_eq!(
        last(&r),
        "b NO [UNAVAILABLE] CREATE: the store is unavailable, try again"
    );
    mem.fail(None);
    let r = c.cmd("c", "STORE 1 +FLAGS (\\Flagged)").await;
    assert_eq!(last(&r), "c OK STORE completed");
}

/// RFC 3501 §2.3.2: \Recent goes to the first session told of a message and to no other;
/// EXAMINE shows it without taking it; SELECT, new mail, FETCH, STORE, SEARCH and STATUS all
/// agree on it.
#[tokio::test]
async fn recent_goes_to_the_first_session_only() {
    let mem = two_messages();
    let mut a = Client::logged_in(&mem).await;
    let mut b = Client::logged_in(&mem).await;
    let r = a.cmd("a1", "STATUS INBOX (RECENT)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (RECENT 2)", "{r:?}");
    // EXAMINE shows both as recent and claims neither.
    let r = a.cmd("a2", "EXAMINE INBOX").await;
    assert!(has(&r, "* 2 RECENT"), "{r:?}");
    let r = a.cmd("a3", "FETCH 1:* (FLAGS)").await;
    assert_eq!(
        &r[..2],
        [
            "* 1 FETCH (FLAGS (\\Recent))",
            "* 2 FETCH (FLAGS (\\Seen \\Recent))"
        ]
    );
    let r = b.cmd("b1", "STATUS INBOX (RECENT)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (RECENT 2)", "{r:?}");
    // The first SELECT takes them; a second sees none.
    let r = a.cmd("a4", "SELECT INBOX").await;
    assert!(has(&r, "* 2 RECENT"), "{r:?}");
    let r = b.cmd("b2", "SELECT INBOX").await;
    assert!(has(&r, "* 0 RECENT") && has(&r, "* 2 EXISTS"), "{r:?}");
    let r = b.cmd("b3", "FETCH 1:* (FLAGS)").await;
    assert_eq!(
        &r[..2],
        ["* 1 FETCH (FLAGS ())", "* 2 FETCH (FLAGS (\\Seen))"]
    );
    let r = a.cmd("a5", "STATUS INBOX (RECENT)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (RECENT 0)", "{r:?}");
    // SEARCH RECENT / NEW (recent and unseen) / OLD (not recent), per session.
    assert_eq!(a.cmd("a6", "SEARCH RECENT").await[0], "* SEARCH 1 2");
    assert_eq!(a.cmd("a7", "SEARCH NEW").await[0], "* SEARCH 1");
    assert_eq!(a.cmd("a8", "SEARCH OLD").await[0], "* SEARCH");
    assert_eq!(b.cmd("b4", "SEARCH RECENT").await[0], "* SEARCH");
    assert_eq!(b.cmd("b5", "SEARCH OLD").await[0], "* SEARCH 1 2");
    // New mail: the session told of it first gets it as recent, with RECENT after EXISTS.
    mem.deliver("INBOX", &[], MSG1);
    let r = b.cmd("b6", "NOOP").await;
    assert_eq!(r, ["* 3 EXISTS", "* 1 RECENT", "b6 OK NOOP completed"]);
    let r = a.cmd("a9", "NOOP").await;
    assert_eq!(r, ["* 3 EXISTS", "a9 OK NOOP completed"]);
    assert_eq!(
        a.cmd("a10", "FETCH 3 (FLAGS)").await[0],
        "* 3 FETCH (FLAGS ())"
    );
    // STORE answers with \Recent still there: a client cannot set or clear it.
    let r = b.cmd("b7", "STORE 3 +FLAGS (\\Seen)").await;
    assert_eq!(r[0], "* 3 FETCH (FLAGS (\\Seen \\Recent))");
    let r = b.cmd("b8", "STORE 3 FLAGS ()").await;
    assert_eq!(r[0], "* 3 FETCH (FLAGS (\\Recent))");
    assert_eq!(b.cmd("b9", "SEARCH RECENT").await[0], "* SEARCH 3");
    // Expunging a recent message takes it out of the count.
    a.cmd("a11", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = a.cmd("a12", "EXPUNGE").await;
    assert!(has(&r, "* 1 EXPUNGE"), "{r:?}");
    assert_eq!(a.cmd("a13", "SEARCH RECENT").await[0], "* SEARCH 1");
}
