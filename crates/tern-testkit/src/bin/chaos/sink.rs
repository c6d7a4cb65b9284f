//! The remote side of the chaos load: a loopback SMTP server that tern-queue relays
//! `remote.test` mail to. It takes every transaction and keeps each message it answered 250
//! to, so the checker can require every message tern-smtp accepted for a remote recipient
//! to arrive, and none to arrive twice after the sink acknowledged it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Longest command line or message line read.
const MAX_LINE: u64 = 64 << 10;
/// Largest message kept.
const MAX_MESSAGE: usize = 1 << 20;

pub struct Sink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let keep = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, keep.clone()));
            }
        });
        Ok(Sink {
            addr,
            received,
            task,
        })
    }

    /// Every message acknowledged so far, as received (dot-stuffing undone).
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn serve(sock: TcpStream, received: Arc<Mutex<Vec<Vec<u8>>>>) {
    let _ = sock.set_nodelay(true);
    let mut r = BufReader::new(sock);
    if r.get_mut()
        .write_all(b"220 sink.remote.test ESMTP\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let verb = line
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .map(u8::to_ascii_uppercase)
            .collect::<Vec<u8>>();
        let answer: &[u8] = match verb.as_slice() {
            b"EHLO" => b"250-sink.remote.test\r\n250 PIPELINING\r\n",
            b"HELO" | b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => b"250 ok\r\n",
            b"QUIT" => {
                let _ = r.get_mut().write_all(b"221 bye\r\n").await;
                return;
            }
            b"DATA" => {
                if r.get_mut().write_all(b"354 go ahead\r\n").await.is_err() {
                    return;
                }
                let Some(message) = read_data(&mut r).await else {
                    return;
                };
                // Kept before the 250 leaves: a message the sender saw acknowledged is here.
                received
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(message);
                b"250 queued\r\n"
            }
            _ => b"502 not here\r\n",
        };
        if r.get_mut().write_all(answer).await.is_err() {
            return;
        }
    }
}

/// The message up to the lone dot, dot-stuffing undone; None if the connection ended first.
async fn read_data(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut *r).take(MAX_LINE).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line == b".\r\n" || line == b".\n" {
            return Some(message);
        }
        let text = line.strip_prefix(b".").unwrap_or(&line);
        if message.len() + text.len() <= MAX_MESSAGE {
            message.extend_from_slice(text);
        }
    }
}
