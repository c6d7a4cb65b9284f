//! One client connection of a line protocol (SMTP, IMAP, POP3), as every Tern listener
//! handles it: bounded line and literal reads under an idle time-out and an optional
//! deadline (the time allowed to log in), replies collected in one output buffer and written
//! under a write time-out, the STARTTLS/STLS upgrade with its pipelining check, and byte
//! counts.
//!
//! Why one type: each protocol used to carry its own copy of these rules, and the copies had
//! drifted (one protocol had an idle read time-out but no write time-out and no login
//! deadline). hyper's `Buffered` serves its client and server the same way. The protocol
//! sessions stay pure: they turn input into output bytes; this type moves the bytes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::conn::Conn;
use crate::line::{read_line, Line};
use crate::timed::WriteTimeout;

/// Largest reply buffer a connection keeps between replies.
const KEEP_OUT_CAPACITY: usize = 64 << 10;

/// The time-outs of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A peer that stops reading our replies for this long is dropped.
    pub write: Duration,
    /// The TLS handshake (implicit TLS or after STARTTLS) must finish within this.
    pub handshake: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            write: Duration::from_secs(60),
            handshake: Duration::from_secs(30),
        }
    }
}

/// The outcome of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A whole line (without its line ending) is in [`Connection::line`], or the literal
    /// buffer is filled.
    Done,
    /// The line was longer than allowed; it was read and thrown away.
    TooLong,
    /// The peer closed the connection (for a literal: before all of it arrived).
    Eof,
    /// Nothing arrived within the idle time-out, or the deadline passed.
    TimedOut,
}

/// Why STARTTLS did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StartTlsError {
    /// The client sent more after the STARTTLS command, before the handshake: those bytes
    /// would be taken as if they came over TLS (CVE-2011-0411), so the connection must close.
    #[error("input pipelined after STARTTLS")]
    Pipelined,
    /// TLS is already active.
    #[error("TLS is already active")]
    AlreadyTls,
    /// The handshake failed or timed out.
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
}

/// Octets read from and written to a connection (application data, after TLS), shared so
/// that a session's span or metrics can read them while the connection is in use.
#[derive(Debug, Default, Clone)]
pub struct ByteCounts(Arc<(AtomicU64, AtomicU64)>);

impl ByteCounts {
    /// Octets received from the peer.
    pub fn read(&self) -> u64 {
        self.0 .0.load(Ordering::Relaxed)
    }

    /// Octets sent to the peer.
    pub fn written(&self) -> u64 {
        self.0 .1.load(Ordering::Relaxed)
    }
}

/// The transport under the buffers: counts every octet that passes.
struct Counted {
    inner: Conn,
    counts: ByteCounts,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got = (buf.filled().len() - before) as u64;
        this.counts.0 .0.fetch_add(got, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.counts.0 .1.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

type Stream = BufReader<WriteTimeout<Counted>>;

/// One client connection; see the module docs.
pub struct Connection {
    /// `None` only after a failed TLS upgrade consumed the transport.
    stream: Option<Stream>,
    timeouts: Timeouts,
    counts: ByteCounts,
    line: Vec<u8>,
    out: Vec<u8>,
    deadline: Option<Instant>,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
}

impl Connection {
    /// A plain-text connection.
    pub fn new(tcp: TcpStream, timeouts: Timeouts) -> Self {
        Self::over(Conn::Plain(tcp), timeouts, ByteCounts::default())
    }

    /// A connection that starts with a TLS handshake (SMTPS, IMAPS, POP3S).
    pub async fn accept_tls(
        tcp: TcpStream,
        acceptor: &TlsAcceptor,
        timeouts: Timeouts,
    ) -> io::Result<Self> {
        let tls = handshake(Conn::Plain(tcp), acceptor, timeouts.handshake).await?;
        Ok(Self::over(tls, timeouts, ByteCounts::default()))
    }

    fn over(conn: Conn, timeouts: Timeouts, counts: ByteCounts) -> Self {
        let counted = Counted {
            inner: conn,
            counts: counts.clone(),
        };
        Self {
            stream: Some(BufReader::new(WriteTimeout::new(counted, timeouts.write))),
            timeouts,
            counts,
            line: Vec::with_capacity(256),
            // Grows with the first reply: an idle connection (10,000 on a node) should not
            // hold a reply buffer it is not using.
            out: Vec::new(),
            deadline: None,
        }
    }

    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream.as_mut().ok_or_else(gone)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|s| s.get_ref().get_ref().inner.is_tls())
    }

    /// Octets moved so far (a handle that stays valid across the TLS upgrade).
    pub fn byte_counts(&self) -> ByteCounts {
        self.counts.clone()
    }

    /// Sets (or clears) a deadline that bounds every read on top of its idle time-out: the
    /// time allowed from connecting to logging in, so a client cannot hold an
    /// unauthenticated connection open by sending a line now and then.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    fn read_budget(&self, idle: Duration) -> Duration {
        match self.deadline {
            Some(d) => idle.min(d.saturating_duration_since(Instant::now())),
            None => idle,
        }
    }

    /// Reads one line of at most `max` octets (without its CRLF or LF) into
    /// [`Connection::line`], waiting at most `idle` (and not past the deadline).
    pub async fn read_line(&mut self, max: usize, idle: Duration) -> io::Result<Read> {
        let budget = self.read_budget(idle);
        let Self { stream, line, .. } = self;
        let stream = stream.as_mut().ok_or_else(gone)?;
        match tokio::time::timeout(budget, read_line(stream, line, max)).await {
            Err(_) => Ok(Read::TimedOut),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Line::Complete)) => Ok(Read::Done),
            Ok(Ok(Line::TooLong)) => Ok(Read::TooLong),
            Ok(Ok(Line::Eof)) => Ok(Read::Eof),
        }
    }

    /// The last line [`Connection::read_line`] read.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// Takes whatever input is buffered or arrives next, at most `max` octets, appending it
    /// to `buf` (an IMAP literal as it arrives, a streamed message body). `Done` with nothing appended never happens: a
    /// closed connection is `Eof`.
    pub async fn read_some(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        idle: Duration,
    ) -> io::Result<Read> {
        let budget = self.read_budget(idle);
        let stream = self.stream()?;
        let available = match tokio::time::timeout(budget, stream.fill_buf()).await {
            Err(_) => return Ok(Read::TimedOut),
            Ok(Err(e)) => return Err(e),
            Ok(Ok([])) => return Ok(Read::Eof),
            Ok(Ok(available)) => available,
        };
        let n = available.len().min(max);
        buf.extend_from_slice(&available[..n]);
        stream.consume(n);
        Ok(Read::Done)
    }

    /// Waits (at most `idle`, and not past the deadline) until input is buffered: `Done`
    /// when [`Connection::buffered`] is non-empty, `Eof` when the peer closed. For protocols
    /// that decode input in place (SMTP's DATA and BDAT) with [`Connection::consume`].
    pub async fn fill(&mut self, idle: Duration) -> io::Result<Read> {
        let budget = self.read_budget(idle);
        let stream = self.stream()?;
        match tokio::time::timeout(budget, stream.fill_buf()).await {
            Err(_) => Ok(Read::TimedOut),
            Ok(Err(e)) => Err(e),
            Ok(Ok([])) => Ok(Read::Eof),
            Ok(Ok(_)) => Ok(Read::Done),
        }
    }

    /// The input read but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        self.stream.as_ref().map_or(&[], |s| s.buffer())
    }

    /// Marks `n` octets of [`Connection::buffered`] as used.
    pub fn consume(&mut self, n: usize) {
        if let Some(s) = self.stream.as_mut() {
            s.consume(n);
        }
    }

    /// Waits until input is buffered or the peer closed, consuming nothing: cancel-safe, so
    /// a session can wait for input and for something else at once (IMAP IDLE).
    pub async fn input_ready(&mut self) -> io::Result<()> {
        self.stream()?.fill_buf().await.map(|_| ())
    }

    /// Whether the client has sent more than has been read (pipelined commands). Replies
    /// to pipelined commands are sent together (RFC 2920, RFC 2449).
    pub fn has_pipelined_input(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| !s.buffer().is_empty())
    }

    /// The output buffer: replies are appended here and sent by [`Connection::flush`].
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Appends `bytes` to the output buffer.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// The buffer of queued replies, for a writer that formats a long reply straight into it
    /// (POP3's RETR) and [`Self::flush`]es as it fills.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Writes the output buffer and flushes it, within the write time-out.
    pub async fn flush(&mut self) -> io::Result<()> {
        let Self { stream, out, .. } = self;
        let stream = stream.as_mut().ok_or_else(gone)?;
        let w = stream.get_mut();
        if !out.is_empty() {
            w.write_all(out).await?;
            out.clear();
            // A large reply (a big FETCH) does not keep its buffer for the rest of a
            // session that may sit idle for hours.
            if out.capacity() > KEEP_OUT_CAPACITY {
                *out = Vec::new();
            }
        }
        w.flush().await
    }

    /// Writes the output buffer unless a whole further command line is already waiting, so
    /// the replies to a pipelined batch go out in one write (RFC 2920 §3.2). Half a line
    /// does not hold replies back: the server would block reading its rest with the
    /// replies unsent.
    pub async fn flush_unless_pipelined(&mut self) -> io::Result<()> {
        if self.buffered().contains(&b'\n') {
            return Ok(());
        }
        self.flush().await
    }

    /// Sends `bytes` now (after anything already queued): a last word before closing.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.queue(bytes);
        self.flush().await
    }

    /// Flushes what is queued (ignoring errors: the peer may be gone) and closes the
    /// connection.
    pub async fn close(&mut self) {
        let _ = self.flush().await;
        if let Some(stream) = self.stream.as_mut() {
            let _ = stream.get_mut().shutdown().await;
        }
    }

    /// Upgrades the connection to TLS after STARTTLS/STLS, once the command's reply has been
    /// flushed. Refuses if the client pipelined anything after the command.
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> Result<(), StartTlsError> {
        if self.has_pipelined_input() {
            return Err(StartTlsError::Pipelined);
        }
        if self.is_tls() {
            return Err(StartTlsError::AlreadyTls);
        }
        let stream = self
            .stream
            .take()
            .ok_or_else(|| StartTlsError::Handshake(gone()))?;
        let conn = stream.into_inner().into_inner().inner;
        let tls = handshake(conn, acceptor, self.timeouts.handshake)
            .await
            .map_err(StartTlsError::Handshake)?;
        let counted = Counted {
            inner: tls,
            counts: self.counts.clone(),
        };
        self.stream = Some(BufReader::new(WriteTimeout::new(
            counted,
            self.timeouts.write,
        )));
        Ok(())
    }
}

async fn handshake(conn: Conn, acceptor: &TlsAcceptor, limit: Duration) -> io::Result<Conn> {
    tokio::time::timeout(limit, conn.upgrade(acceptor))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair(timeouts: Timeouts) -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (
            Connection::new(accepted.unwrap().0, timeouts),
            client.unwrap(),
        )
    }

    #[tokio::test]
    async fn lines_literals_chunks_and_counts() {
        let (mut conn, mut client) = pair(Timeouts::default()).await;
        client
            .write_all(b"A1 LOGIN\r\n0123456789rest\r\nxxxxxxxxxxxxxxxxxxxx\r\n")
            .await
            .unwrap();
        let idle = Duration::from_secs(5);
        assert_eq!(conn.read_line(64, idle).await.unwrap(), Read::Done);
        assert_eq!(conn.line(), b"A1 LOGIN");
        // A literal: read_some never takes more than asked for.
        let mut literal = Vec::new();
        assert_eq!(
            conn.read_some(&mut literal, 10, idle).await.unwrap(),
            Read::Done
        );
        assert_eq!(literal, b"0123456789");
        let mut chunk = Vec::new();
        assert_eq!(
            conn.read_some(&mut chunk, 2, idle).await.unwrap(),
            Read::Done
        );
        assert_eq!(chunk, b"re");
        assert_eq!(conn.read_line(64, idle).await.unwrap(), Read::Done);
        assert_eq!(conn.line(), b"st");
        assert_eq!(conn.read_line(10, idle).await.unwrap(), Read::TooLong);
        conn.queue(b"* OK\r\n");
        conn.flush().await.unwrap();
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"* OK\r\n");
        assert_eq!(conn.byte_counts().written(), 6);
        assert_eq!(conn.byte_counts().read(), 48);
        drop(client);
        assert_eq!(conn.read_line(10, idle).await.unwrap(), Read::Eof);
    }

    #[tokio::test]
    async fn input_is_decoded_in_place_and_replies_wait_only_for_whole_lines() {
        let (mut conn, mut client) = pair(Timeouts::default()).await;
        let idle = Duration::from_secs(5);
        client.write_all(b"NOOP\r\nNOOP\r\nNO").await.unwrap();
        assert_eq!(conn.read_line(64, idle).await.unwrap(), Read::Done);
        // A whole command is waiting: the reply is held for the batch.
        conn.queue(b"250 a\r\n");
        conn.flush_unless_pipelined().await.unwrap();
        assert_eq!(conn.out().len(), 7);
        assert_eq!(conn.read_line(64, idle).await.unwrap(), Read::Done);
        // Only half a line: replies go out before the server waits for the rest.
        conn.queue(b"250 b\r\n");
        conn.flush_unless_pipelined().await.unwrap();
        assert!(conn.out().is_empty());
        let mut got = [0u8; 14];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"250 a\r\n250 b\r\n");
        assert_eq!(conn.fill(idle).await.unwrap(), Read::Done);
        assert_eq!(conn.buffered(), b"NO");
        conn.consume(1);
        assert_eq!(conn.buffered(), b"O");
        conn.consume(1);
        drop(client);
        assert_eq!(conn.fill(idle).await.unwrap(), Read::Eof);
    }

    #[tokio::test]
    async fn the_deadline_bounds_reads_whatever_the_idle_time_out() {
        let (mut conn, mut client) = pair(Timeouts::default()).await;
        conn.set_deadline(Some(Instant::now() + Duration::from_millis(200)));
        let started = Instant::now();
        let read = conn.read_line(64, Duration::from_secs(3600)).await.unwrap();
        assert_eq!(read, Read::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(3600));
        // Input that arrives in time is read; the deadline cleared, nothing bounds it.
        conn.set_deadline(None);
        client.write_all(b"later\r\n").await.unwrap();
        assert_eq!(
            conn.read_line(64, Duration::from_secs(5)).await.unwrap(),
            Read::Done
        );
    }

    #[tokio::test]
    async fn pipelined_input_after_starttls_is_refused() {
        let (mut conn, mut client) = pair(Timeouts::default()).await;
        client
            .write_all(b"STARTTLS\r\nMAIL FROM:<x>\r\n")
            .await
            .unwrap();
        assert_eq!(
            conn.read_line(64, Duration::from_secs(5)).await.unwrap(),
            Read::Done
        );
        assert!(conn.has_pipelined_input());
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = crate::tls::ensure_dev_certificate(dir.path(), &["localhost"]).unwrap();
        let tls = crate::tls::ReloadingTls::load(&cert, &key).unwrap();
        assert!(matches!(
            conn.start_tls(&tls.acceptor()).await,
            Err(StartTlsError::Pipelined)
        ));
        assert!(!conn.is_tls());
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_is_dropped_after_the_write_time_out() {
        let timeouts = Timeouts {
            write: Duration::from_millis(300),
            ..Timeouts::default()
        };
        let (mut conn, _client) = pair(timeouts).await;
        // The client never reads: once the socket buffers are full, the write times out.
        let big = vec![b'x'; 1 << 20];
        let mut result = Ok(());
        for _ in 0..64 {
            result = conn.send(&big).await;
            if result.is_err() {
                break;
            }
        }
        let err = result.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }
}
