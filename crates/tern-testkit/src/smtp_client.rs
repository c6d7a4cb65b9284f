//! A plain SMTP client that sends one message and says what its answer means for a sender
//! that keeps histories: accepted, refused (definitely not taken), or of unknown outcome
//! (the message was sent whole and no definite answer came back). The chaos run uses it to
//! put tern-smtp, tern-queue and delivery into the recorded load.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What one submission came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// 250 to the end of DATA.
    Accepted,
    /// Refused before the message was sent whole (no connection, a greeting or a reply
    /// that was not positive), or 5xx to the end of DATA: the message was not taken.
    Refused(String),
    /// The message was sent whole and the answer was a 4xx, or never came: a server may
    /// have taken it (its outcome is unknown to the sender, who sends it again).
    Unknown(String),
}

/// Reads one reply (all its lines); the code and its last line.
async fn reply(r: &mut BufReader<TcpStream>, limit: Duration) -> Result<(u16, String), String> {
    loop {
        let mut line = String::new();
        match tokio::time::timeout(limit, r.read_line(&mut line)).await {
            Err(_) => return Err(format!("no reply within {limit:?}")),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(0)) => return Err("connection closed".into()),
            Ok(Ok(_)) => {}
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or("malformed reply")?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, line.trim_end().to_string()));
        }
    }
}

/// Sends `message` (canonical CRLF text) from `from` to `to` through the SMTP server at
/// `addr`, waiting up to `limit` for each reply.
pub async fn submit(
    addr: &str,
    from: &str,
    to: &str,
    message: &[u8],
    limit: Duration,
) -> Submission {
    let refused = |why: String| Submission::Refused(why);
    let tcp = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return refused(format!("connect: {e}")),
        Err(_) => return refused("connect: timed out".into()),
    };
    let mut r = BufReader::new(tcp);
    let steps: [(Option<String>, u16); 5] = [
        (None, 220),
        (Some("EHLO chaos.test".into()), 250),
        (Some(format!("MAIL FROM:<{from}>")), 250),
        (Some(format!("RCPT TO:<{to}>")), 250),
        (Some("DATA".into()), 354),
    ];
    for (command, wanted) in steps {
        if let Some(c) = command {
            if let Err(e) = r.get_mut().write_all(format!("{c}\r\n").as_bytes()).await {
                return refused(e.to_string());
            }
        }
        match reply(&mut r, limit).await {
            // Any code of the wanted class: RCPT to an alias that forwards elsewhere is 251.
            Ok((code, _)) if code / 100 == wanted / 100 => {}
            Ok((_, text)) => return refused(text),
            Err(e) => return refused(e),
        }
    }
    let mut data = Vec::with_capacity(message.len() + 5);
    tern_mail::lines::dot_stuff(message, &mut data);
    // From the first octet of the message on, a failure leaves the outcome unknown.
    if let Err(e) = r.get_mut().write_all(&data).await {
        return Submission::Unknown(format!("sending DATA: {e}"));
    }
    let outcome = match reply(&mut r, limit).await {
        Ok((250, _)) => Submission::Accepted,
        Ok((code, text)) if code >= 500 => refused(text),
        Ok((_, text)) => Submission::Unknown(text),
        Err(e) => Submission::Unknown(e),
    };
    let _ = r.get_mut().write_all(b"QUIT\r\n").await;
    outcome
}
