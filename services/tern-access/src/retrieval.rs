//! Joins a reader's retrieval of a message to the trace the message was delivered under.
//!
//! The store names a message's delivery trace on the first chunk of every Fetch. When a
//! whole message goes to a client (IMAP FETCH of its content, POP3 RETR), the access node
//! opens a span *in that trace* (not in the session's own trace: a span has one parent, and
//! the delivery trace is what an operator follows) and, inside it, asks the store to add a
//! "retrieved" step to the message's recorded timeline. That call carries the trace context
//! to the store too, so the delivery trace shows the retrieval on both services.
//!
//! It is fire-and-forget: the client's answer never waits for it, and at most
//! [`MAX_IN_FLIGHT`] such reports run at once per node (beyond that they are dropped, which
//! loses a timeline step, never mail). The store records a given step once, however often a
//! message is read.

use std::sync::Arc;

use tern_proto::client::StoreClient;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::queue_client::QueueClient;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

/// Most retrieval reports in flight per node.
pub const MAX_IN_FLIGHT: usize = 64;

/// Reports retrievals for one access node.
#[derive(Clone)]
pub struct RetrievalTracer {
    store: StoreClient,
    node: Arc<str>,
    in_flight: Arc<Semaphore>,
}

impl RetrievalTracer {
    /// A tracer reporting through `store`, naming this node `node` in the timeline.
    pub fn new(store: StoreClient, node: &str) -> Self {
        Self {
            store,
            node: node.into(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Records that `account` retrieved message `uid` of `mailbox` with `command` (e.g.
    /// "IMAP FETCH", "POP3 RETR"), when the store named a delivery trace for it.
    pub fn retrieved(&self, trace_id: &str, command: &str, account: &str, mailbox: &str, uid: u32) {
        if trace_id.is_empty() {
            return;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::debug!(
                trace_id,
                "too many retrieval reports in flight; this one is dropped"
            );
            return;
        };
        let domain = account.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let span = tracing::info_span!(
            "retrieve",
            otel.name = %format!("{command} retrieve"),
            otel.kind = "server",
            server.address = %self.node,
            mail.command = %command,
            mail.recipient_domain = %domain,
            mail.mailbox = %mailbox,
            mail.uid = uid,
            trace_id = %trace_id,
        );
        tern_telemetry::grpc::continue_trace(&span, trace_id);
        let req = pb::RecordTraceRequest {
            trace_id: trace_id.to_string(),
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            uid,
            event: Some(pb::TraceEvent {
                at: 0,
                service: "access".into(),
                kind: "retrieved".into(),
                detail: format!(
                    "{command} by {account}: {mailbox} uid {uid}, on {}",
                    self.node
                ),
            }),
        };
        let store = self.store.clone();
        tokio::spawn(
            async move {
                let result = store
                    .call(|ch| {
                        let req = req.clone();
                        async move { QueueClient::new(ch).record_trace(req).await }
                    })
                    .await;
                if let Err(e) = result {
                    tracing::debug!(error = %e.message(), "recording a retrieval in the message timeline failed");
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}
