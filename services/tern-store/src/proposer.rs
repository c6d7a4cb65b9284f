//! Group commit: concurrent writes share Raft log entries.
//!
//! openraft 0.9 appends (and this store fsyncs) once per client write, which would cap a
//! node at one fsync per message. The proposer queues commands and, whenever one of its
//! [`MAX_IN_FLIGHT`] slots is free, takes *everything* queued (up to a size bound) as one
//! [`Request`]: one log entry, one replication round, one fsync on each node, one state
//! machine write batch. Under load the queue fills while earlier batches are in flight, so
//! batches grow with concurrency; an idle node sends a lone command straight away.

use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::{Command, Outcome};
use crate::error::AppError;
use crate::node::Node;
use crate::types::Request;

/// Batches being committed at once.
pub const MAX_IN_FLIGHT: usize = 2;
/// Most commands in one batch.
pub const MAX_BATCH_COMMANDS: usize = 512;
/// Most payload octets in one batch: a batch stops before a command that would take it
/// past this, and a command larger than this (one message, up to `max_message_size`) goes
/// alone. So one log entry holds at most this much, or one message.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

struct Pending {
    cmd: Command,
    reply: oneshot::Sender<Outcome>,
}

/// Handle to the proposer task of a node.
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

fn payload_size(cmd: &Command) -> usize {
    match cmd {
        Command::Deliver { body, .. }
        | Command::Enqueue { body, .. }
        | Command::Accept { body, .. } => body.len(),
        Command::Audited { action, .. } => payload_size(action),
        _ => 64,
    }
}

impl Proposer {
    /// Starts the batching task for `node`.
    pub fn start(node: Weak<Node>) -> Self {
        let (tx, rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(run(node, rx));
        Self { tx }
    }

    /// Queues a command and waits for its outcome.
    pub async fn propose(&self, cmd: Command) -> Outcome {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { cmd, reply })
            .await
            .map_err(|_| AppError::unavailable("the node is shutting down"))?;
        rx.await
            .map_err(|_| AppError::unavailable("the node is shutting down"))?
    }
}

async fn run(node: Weak<Node>, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // A command taken off the queue that did not fit the last batch: it starts the next.
    let mut carried: Option<Pending> = None;
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => {
                let Some(p) = rx.recv().await else { return };
                p
            }
        };
        let mut bytes = payload_size(&first.cmd);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS {
            match rx.try_recv() {
                Ok(p) => {
                    let size = payload_size(&p.cmd);
                    if bytes + size > MAX_BATCH_BYTES {
                        carried = Some(p);
                        break;
                    }
                    bytes += size;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let Some(node) = node.upgrade() else { return };
        tokio::spawn(async move {
            let (commands, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
            let n = commands.len();
            match node
                .submit(Request {
                    id: rand::random::<u64>() | 1,
                    commands,
                })
                .await
            {
                Ok(resp) if resp.outcomes.len() == n => {
                    for (reply, outcome) in replies.into_iter().zip(resp.outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                Ok(resp) => {
                    let e = AppError::internal(format!(
                        "{} outcomes for {n} commands",
                        resp.outcomes.len()
                    ));
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}
