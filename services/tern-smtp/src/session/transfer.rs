//! The message transfer: DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030) streamed to the queue
//! while they arrive, the Received field and submission's added headers, and the commit whose
//! reply is the 250 (only once the queue has it durably).

use tern_net::connection::Read;
use tern_proto::queue::v1 as qpb;
use tern_smtp_proto::command::Mailbox;
use tern_smtp_proto::params::{self, MailParams};
use tern_smtp_proto::reply::Reply;
use tokio::time::Instant;
use tracing::Instrument;

use super::{random_hex, Bdat, Flow, Session, Transaction, FORWARD_CHUNK};
use crate::backend::{MessageSink, SinkError};
use crate::compose::Composer;
use crate::data::{DataDecoder, LineNormalizer, Outcome};
use crate::metrics;
use crate::sender::{header_from, HeaderFrom};
use crate::server::Listener;

impl Session<'_> {
    /// Checks that DATA or BDAT may start; the refusal otherwise.
    fn transfer_refusal(&self) -> Option<Reply> {
        match &self.tx {
            None => Some(Reply::new(503, "5.5.1", "Error: need MAIL command")),
            Some(tx) if tx.rcpts.is_empty() && !tx.rcpt_attempted => {
                Some(Reply::new(503, "5.5.1", "Error: need RCPT command"))
            }
            Some(tx) if tx.rcpts.is_empty() => {
                Some(Reply::new(554, "5.5.1", "Error: no valid recipients"))
            }
            _ => None,
        }
    }

    /// The Received field that goes first in the message (RFC 5321 §4.4), naming the trace
    /// id, and the protocol as RFC 3848 / RFC 6531 spell it.
    fn received_header(&self, tx: &Transaction) -> Vec<u8> {
        let (helo, esmtp) = self.helo.clone().unwrap_or_default();
        let tls = self.conn.is_tls();
        let mut proto = String::from(match (tx.params.smtputf8, esmtp) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => "SMTP",
        });
        if esmtp || tx.params.smtputf8 {
            if tls {
                proto.push('S');
            }
            if self.auth.is_some() {
                proto.push('A');
            }
        }
        let helo: String = helo.chars().filter(|c| !c.is_control()).take(255).collect();
        let mut h = format!(
            "Received: from {helo} ([{}])\r\n\tby {} (Tern) with {proto} id {}",
            self.peer.ip(),
            self.ctx.hostname,
            tx.trace_id
        );
        if let [only] = tx.rcpts.as_slice() {
            h.push_str(&format!("\r\n\tfor <{}>", only.address));
        }
        h.push_str(&format!("; {}\r\n", tern_mail::date::rfc5322(now_secs())));
        h.into_bytes()
    }

    fn composer(&self, tx: &Transaction) -> Composer {
        let adds = if self.listener == Listener::Mx {
            Vec::new()
        } else {
            vec![
                (
                    "Message-ID",
                    format!("<{}@{}>", random_hex(12), self.ctx.hostname),
                ),
                ("Date", tern_mail::date::rfc5322(now_secs())),
            ]
        };
        // Authentication-Results goes above Received: this host's verdict on the hop the
        // Received field records, at the top like every trace field (RFC 8601 §5).
        let mut prefix = tx.auth_results.clone().unwrap_or_default().into_bytes();
        prefix.extend_from_slice(&self.received_header(tx));
        Composer::new(prefix, adds).removing_claims_of(&self.ctx.hostname)
    }

    /// On submission (with `sender_header_check`): the refusal of a message whose header
    /// From names an address the logged-in user does not own, or cannot be read.
    async fn header_from_refusal(&self, composer: &Composer) -> Option<Reply> {
        let account = self.auth.as_ref()?;
        if !self.ctx.sender_header_check {
            return None;
        }
        let refuse = |why: String| Some(Reply::new(550, "5.7.1", why));
        let Some(header) = composer.header() else {
            return refuse("Header section too large to check its From field".into());
        };
        let authors = match header_from(header) {
            HeaderFrom::Absent => return None,
            HeaderFrom::Unreadable => return refuse("Unreadable From header field".into()),
            HeaderFrom::Authors(a) => a,
        };
        for author in authors {
            match self.ctx.backend.owns(account, &author).await {
                Ok(true) => {}
                Ok(false) => {
                    return refuse(format!(
                        "From header address <{author}> not owned by user {}",
                        account.address
                    ))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "header sender check failed");
                    return Some(Reply::new(451, "4.3.0", "Temporary lookup failure"));
                }
            }
        }
        None
    }

    fn open_sink(&self, tx: &Transaction) -> MessageSink {
        let (helo, _) = self.helo.clone().unwrap_or_default();
        let envelope = qpb::Envelope {
            sender: tx.from.as_ref().map(Mailbox::address).unwrap_or_default(),
            recipients: tx.rcpts.clone(),
            params: Some(mail_params_pb(&tx.params)),
            received_from: format!("{helo} [{}]", self.peer.ip()),
            message_id: String::new(),
            request_id: random_hex(16),
            size: 0,
            submitter: self
                .auth
                .as_ref()
                .map(|a| a.address.clone())
                .unwrap_or_default(),
        };
        let _enter = tx.span.enter();
        self.ctx.backend.open(envelope)
    }

    pub(super) async fn data(&mut self) -> std::io::Result<Flow> {
        if let Some(r) = self.transfer_refusal() {
            self.reply(r);
            return Ok(Flow::Continue);
        }
        let Some(tx) = self.tx.take() else {
            return Ok(Flow::Continue);
        };
        if tx.bdat.is_some() {
            self.tx = Some(tx);
            self.reply(Reply::new(503, "5.5.1", "Error: DATA after BDAT"));
            return Ok(Flow::Continue);
        }
        let mut sink = self.open_sink(&tx);
        let mut composer = self.composer(&tx);
        // 354 carries no enhanced code (RFC 2034 §4 lists none for it).
        self.reply(Reply::plain(
            354,
            vec!["End data with <CR><LF>.<CR><LF>".into()],
        ));
        self.flush().await?;
        // The whole content within the message time limit, however it trickles.
        self.conn
            .set_deadline(Some(Instant::now() + self.ctx.message_time_limit));
        let mut decoder = DataDecoder::new(self.ctx.max_message_size);
        let mut decoded = Vec::with_capacity(FORWARD_CHUNK);
        let mut ready = Vec::with_capacity(FORWARD_CHUNK * 2);
        let outcome = loop {
            // A time-out or the client going away mid-message: nothing of it is kept.
            if !self.content().await? {
                return Ok(Flow::Close);
            }
            let (used, done) = decoder.feed(self.conn.buffered(), &mut decoded);
            self.conn.consume(used);
            composer.push(&decoded, &mut ready);
            decoded.clear();
            if ready.len() >= FORWARD_CHUNK {
                sink.write(&ready).instrument(tx.span.clone()).await;
                ready.clear();
            }
            if let Some(outcome) = done {
                break outcome;
            }
        };
        self.conn.set_deadline(None);
        let reply = match outcome {
            Outcome::Complete => {
                composer.finish(&mut ready);
                match self.header_from_refusal(&composer).await {
                    // The sink is dropped uncommitted: the queue keeps nothing of it.
                    Some(refusal) => refusal,
                    None => {
                        sink.write(&ready).instrument(tx.span.clone()).await;
                        self.commit(sink, &tx, decoder.size()).await
                    }
                }
            }
            Outcome::TooBig => Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ),
            Outcome::LineTooLong => Reply::new(
                554,
                "5.6.0",
                format!(
                    "Message has a line longer than {} octets",
                    crate::data::MAX_LINE
                ),
            ),
        };
        self.reply_to_message(reply);
        Ok(Flow::Continue)
    }

    async fn commit(&self, sink: MessageSink, tx: &Transaction, octets: u64) -> Reply {
        match sink.commit().instrument(tx.span.clone()).await {
            Ok(queued) => {
                tx.span.record("queue_id", queued.queue_id.as_str());
                tracing::info!(parent: &tx.span, queue_id = %queued.queue_id, trace_id = %tx.trace_id, queue_trace_id = %queued.trace_id, octets, recipients = tx.rcpts.len(), "message accepted");
                metrics::accepted(self.listener.name(), octets);
                Reply::new(250, "2.0.0", format!("Ok: queued as {}", queued.queue_id))
            }
            Err(SinkError::TooBig(e)) => {
                tracing::info!(parent: &tx.span, error = %e, "message refused by the queue as too large");
                Reply::new(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum message size",
                )
            }
            Err(SinkError::Temporary(e)) => {
                tracing::warn!(parent: &tx.span, error = %e, "message not accepted: queue failure");
                Reply::new(451, "4.3.0", "Error: queue unavailable, try again later")
            }
        }
    }

    /// Waits for message content (DATA or a BDAT chunk) within the data time-out. False when
    /// the client went away, or stayed silent (then 421 is queued for the caller's close).
    async fn content(&mut self) -> std::io::Result<bool> {
        match self.conn.fill(self.ctx.data_timeout).await? {
            Read::Done => Ok(true),
            Read::Eof => Ok(false),
            Read::TimedOut | Read::TooLong => {
                self.reply(self.timeout_reply());
                Ok(false)
            }
        }
    }

    /// Reads and drops `size` octets (a BDAT chunk that cannot be taken).
    async fn discard(&mut self, mut size: u64) -> std::io::Result<bool> {
        while size > 0 {
            if !self.content().await? {
                return Ok(false);
            }
            let n = self.conn.buffered().len().min(size as usize);
            self.conn.consume(n);
            size -= n as u64;
        }
        Ok(true)
    }

    pub(super) async fn bdat(&mut self, size: u64, last: bool) -> std::io::Result<Flow> {
        let refusal = match &self.tx {
            Some(tx) if tx.bdat.is_some() => None,
            _ => self.transfer_refusal(),
        };
        if let Some(r) = refusal {
            // RFC 3030 §2: the chunk is read off the wire whatever the reply.
            if !self.discard(size).await? {
                return Ok(Flow::Close);
            }
            self.reply(r);
            return Ok(Flow::Continue);
        }
        let Some(mut tx) = self.tx.take() else {
            return Ok(Flow::Continue);
        };
        let mut bdat = match tx.bdat.take() {
            Some(b) => b,
            None => Bdat {
                started: Instant::now(),
                sink: Some(self.open_sink(&tx)),
                normalizer: LineNormalizer::default(),
                composer: self.composer(&tx),
                octets: 0,
                too_big: false,
            },
        };
        // A chunk already buffered is read without waiting, and `BDAT 0` reads nothing, so
        // the time limit is also checked here, at every chunk: a client that sends a small
        // chunk now and then cannot hold the transaction open past it.
        if Instant::now() >= bdat.started + self.ctx.message_time_limit {
            self.reply(self.timeout_reply());
            return Ok(Flow::Close);
        }
        bdat.octets += size;
        if bdat.octets > self.ctx.max_message_size {
            bdat.too_big = true;
            bdat.sink = None;
        }
        // Every chunk of the message within the message time limit from the first.
        self.conn
            .set_deadline(Some(bdat.started + self.ctx.message_time_limit));
        let mut remaining = size;
        let mut ready = Vec::with_capacity(FORWARD_CHUNK * 2);
        let mut normalized = Vec::with_capacity(FORWARD_CHUNK);
        while remaining > 0 {
            if !self.content().await? {
                return Ok(Flow::Close);
            }
            let buf = self.conn.buffered();
            let n = buf.len().min(remaining as usize);
            if !bdat.too_big {
                bdat.normalizer.feed(&buf[..n], &mut normalized);
                bdat.composer.push(&normalized, &mut ready);
                normalized.clear();
            }
            self.conn.consume(n);
            remaining -= n as u64;
            if ready.len() >= FORWARD_CHUNK {
                if let Some(sink) = bdat.sink.as_mut() {
                    sink.write(&ready).instrument(tx.span.clone()).await;
                }
                ready.clear();
            }
        }
        self.conn.set_deadline(None);
        if bdat.too_big {
            // The transaction is over; later chunks of it get 503 (and are read off).
            self.reply(Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ));
            return Ok(Flow::Continue);
        }
        if !last {
            if let Some(sink) = bdat.sink.as_mut() {
                sink.write(&ready).instrument(tx.span.clone()).await;
            }
            tx.bdat = Some(bdat);
            self.tx = Some(tx);
            self.reply(Reply::new(250, "2.0.0", format!("{size} octets received")));
            return Ok(Flow::Continue);
        }
        bdat.normalizer.finish(&mut normalized);
        bdat.composer.push(&normalized, &mut ready);
        bdat.composer.finish(&mut ready);
        let refusal = self.header_from_refusal(&bdat.composer).await;
        let reply = match (bdat.sink.take(), refusal) {
            // The sink is dropped uncommitted: the queue keeps nothing of it.
            (Some(_), Some(refusal)) => refusal,
            (Some(_), None) if bdat.normalizer.long_line() => Reply::new(
                554,
                "5.6.0",
                format!(
                    "Message has a line longer than {} octets",
                    crate::data::MAX_LINE
                ),
            ),
            (Some(mut sink), None) => {
                sink.write(&ready).instrument(tx.span.clone()).await;
                self.commit(sink, &tx, bdat.octets).await
            }
            (None, _) => Reply::new(451, "4.3.0", "Error: queue unavailable, try again later"),
        };
        self.reply_to_message(reply);
        Ok(Flow::Continue)
    }
}

/// The MAIL parameters as the queue API carries them.
fn mail_params_pb(p: &MailParams) -> qpb::MailParams {
    use qpb::mail_params::{Body, Ret};
    let body = match p.body {
        None => Body::Unspecified,
        Some(params::Body::SevenBit) => Body::SevenBit,
        Some(params::Body::EightBitMime) => Body::EightBitMime,
    };
    let ret = match p.ret {
        None => Ret::Unspecified,
        Some(params::Ret::Full) => Ret::Full,
        Some(params::Ret::Hdrs) => Ret::Hdrs,
    };
    qpb::MailParams {
        body: body as i32,
        smtputf8: p.smtputf8,
        ret: ret as i32,
        envid: p.envid.clone().unwrap_or_default(),
    }
}

/// The wall clock, for the Received: and Date: fields.
use tern_clock::now_secs;
