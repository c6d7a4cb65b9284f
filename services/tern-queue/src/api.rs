//! The Enqueue API (tern.queue.v1): what SMTP ingress calls before it answers 250. The
//! message is handed to the store's queue, which answers only once the entry and its content
//! are committed by a Raft majority; the entry carries the caller's trace id so that every
//! later step of its delivery belongs to the same trace.

use futures::StreamExt;
use prost::bytes::Bytes;
use tern_proto::client::StoreClient;
use tern_proto::queue::v1 as qpb;
use tern_proto::queue::v1::queue_server::Queue;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::queue_client::QueueClient;
use tern_smtp_proto::params::{self, MailParams};
use tern_smtp_proto::xtext;
use tonic::{Request, Response, Status, Streaming};

/// Largest message accepted here (the store applies its own, usually smaller, limit).
pub const MAX_MESSAGE: u64 = 64 << 20;

/// The Queue service.
pub struct QueueApi {
    /// The store.
    pub store: StoreClient,
    /// What this node may hold of messages in flight.
    pub budget: crate::budget::EnqueueBudget,
}

/// How much of a message's start is searched for its Message-ID.
const HEADER_PEEK: usize = 64 * 1024;

/// The first [`HEADER_PEEK`] octets of a message kept in pieces.
fn head_of(body: &[Bytes]) -> Vec<u8> {
    let mut head = Vec::with_capacity(HEADER_PEEK.min(body.iter().map(Bytes::len).sum()));
    for piece in body {
        let room = HEADER_PEEK - head.len();
        head.extend_from_slice(&piece[..piece.len().min(room)]);
        if head.len() == HEADER_PEEK {
            break;
        }
    }
    head
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

#[tonic::async_trait]
impl Queue for QueueApi {
    async fn enqueue(
        &self,
        req: Request<Streaming<qpb::EnqueueRequest>>,
    ) -> Result<Response<qpb::EnqueueResponse>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty stream"))??;
        let envelope = first
            .envelope
            .ok_or_else(|| Status::invalid_argument("the first message must carry the envelope"))?;
        if envelope.size > MAX_MESSAGE {
            return Err(Status::resource_exhausted(format!(
                "message of {} octets is over the {MAX_MESSAGE}-octet limit",
                envelope.size
            )));
        }
        // The whole message is collected before it goes on, so a store failover can be
        // retried with the same request id; what it holds counts against the node's budget
        // (all of a declared size at once, so no stream holds part of the budget while it
        // waits for the rest; an undeclared one as it arrives). The pieces are kept as they
        // arrived and shared, not copied, by every attempt.
        let declared = (envelope.size > 0).then_some(envelope.size);
        let bound = declared.unwrap_or(MAX_MESSAGE);
        let mut held = self.budget.none();
        if let Some(size) = declared {
            self.budget.cover(&mut held, size).await?;
        }
        let mut len = first.chunk.len() as u64;
        if declared.is_none() {
            self.budget.cover(&mut held, len).await?;
        }
        let mut body: Vec<Bytes> = vec![first.chunk];
        let mut ended = first.last;
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            if msg.envelope.is_some() {
                return Err(Status::invalid_argument("the envelope comes once, first"));
            }
            if ended {
                return Err(Status::invalid_argument("data after the last request"));
            }
            len += msg.chunk.len() as u64;
            if len > bound {
                return Err(match declared {
                    Some(_) => Status::invalid_argument("more octets than the declared size"),
                    None => Status::resource_exhausted(format!(
                        "message over the {MAX_MESSAGE}-octet limit"
                    )),
                });
            }
            if declared.is_none() {
                self.budget.cover(&mut held, len).await?;
            }
            body.push(msg.chunk);
            ended = msg.last;
        }
        match declared {
            Some(size) if len != size => {
                return Err(Status::invalid_argument(format!(
                    "the stream ended after {len} of {size} octets"
                )));
            }
            None if !ended => {
                return Err(Status::invalid_argument(
                    "the stream ended without its last request: the message was cut off",
                ));
            }
            _ => {}
        }
        let trace_id = tern_telemetry::grpc::current_trace_id().unwrap_or_else(|| random_hex(16));
        let request_id = if envelope.request_id.is_empty() {
            random_hex(16)
        } else {
            envelope.request_id.clone()
        };
        let header = pb::EnqueueHeader {
            sender: envelope.sender,
            recipients: envelope
                .recipients
                .into_iter()
                .map(|r| pb::QueueRecipient {
                    address: r.address,
                    notify: r.notify,
                    orcpt: r.orcpt,
                    ..Default::default()
                })
                .collect(),
            trace_id: trace_id.clone(),
            // The store keeps the parameters in their canonical text (as entries always were
            // kept); the worker reads them back with `MailParams::from_stored`.
            mail_params: stored_params(envelope.params.as_ref(), &envelope.submitter)?,
            received_from: envelope.received_from,
            // The Message-ID names the message in `ternctl trace`; the envelope has it only
            // when the sender knew it before the body, so the header section is asked too.
            message_id: if envelope.message_id.is_empty() {
                tern_mail::header::first_field(&head_of(&body), "Message-ID").unwrap_or_default()
            } else {
                envelope.message_id
            },
            request_id,
            size: len,
        };
        let queued = self
            .store
            .call(|ch| {
                let mut msgs = vec![pb::EnqueueRequest {
                    header: Some(header.clone()),
                    chunk: Bytes::new(),
                }];
                msgs.extend(body.iter().map(|c| pb::EnqueueRequest {
                    header: None,
                    chunk: c.clone(),
                }));
                async move {
                    QueueClient::new(ch)
                        .enqueue(futures::stream::iter(msgs))
                        .await
                }
            })
            .await;
        // A retry of a request that did commit answers with the first entry, or only its id
        // (`completed`) when it was delivered meanwhile: either way the message was accepted
        // once, which is what the caller must hear.
        let entry = queued?.into_inner();
        // Recipients the store delivered at acceptance (local users) count as this queue's
        // local deliveries (not in the delivery-time histogram: they spent no time queued).
        for r in &entry.recipients {
            if r.state == tern_proto::store::v1::queue_recipient::State::Delivered as i32 {
                crate::metrics::outcome("local", "delivered", None);
            }
        }
        let queue_id = entry.id;
        tracing::info!(%queue_id, %trace_id, size = len, delivered_at_acceptance = entry.completed, "queued");
        drop(held);
        crate::metrics::enqueued();
        Ok(Response::new(qpb::EnqueueResponse { queue_id, trace_id }))
    }
}

/// The MAIL parameters as the entry keeps them: the typed ones, and `AUTH=` naming who
/// submitted the message (`<>`: a client that did not authenticate), which the worker reads
/// back for its bounce policy.
fn stored_params(p: Option<&qpb::MailParams>, submitter: &str) -> Result<String, Status> {
    let mut params = match p {
        Some(p) => mail_params(p)?,
        None => MailParams::default(),
    };
    if submitter.len() > params::MAX_SUBMITTER {
        return Err(Status::invalid_argument("the submitter is too long"));
    }
    params.auth = Some(if submitter.is_empty() {
        "<>".to_string()
    } else {
        xtext::encode(submitter)
    });
    Ok(params.to_string())
}

/// The MAIL parameters of the queue API as the SMTP crate types them; an enum value this
/// version does not know is taken as absent. An ENVID that is not xtext is refused: it is
/// relayed on a MAIL command and kept in the entry's parameter text, where a space would
/// add parameters.
fn mail_params(p: &qpb::MailParams) -> Result<MailParams, Status> {
    use qpb::mail_params::{Body, Ret};
    if !p.envid.is_empty()
        && (p.envid.len() > params::MAX_ENVID || xtext::decode(&p.envid).is_none())
    {
        return Err(Status::invalid_argument("ENVID is not valid xtext"));
    }
    Ok(MailParams {
        body: match Body::try_from(p.body) {
            Ok(Body::SevenBit) => Some(params::Body::SevenBit),
            Ok(Body::EightBitMime) => Some(params::Body::EightBitMime),
            _ => None,
        },
        smtputf8: p.smtputf8,
        ret: match Ret::try_from(p.ret) {
            Ok(Ret::Full) => Some(params::Ret::Full),
            Ok(Ret::Hdrs) => Some(params::Ret::Hdrs),
            _ => None,
        },
        envid: (!p.envid.is_empty()).then(|| p.envid.clone()),
        ..MailParams::default()
    })
}
