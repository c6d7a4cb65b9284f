//! The Watch service: an account's (or one mailbox's) change feed from a modseq on, then
//! live. Each stream re-reads the feed from its last modseq whenever this node applies a
//! batch that wrote to that account's feed (see [`crate::state_machine::Applied`]), so
//! nothing is missed, a write wakes only its own account's readers, and a slow reader costs
//! no memory on the server. Pages are read through [`LocalState`], under the state lock like
//! every other local read, so a snapshot install never swaps the data under a page.

use std::pin::Pin;

use futures::Stream;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::watch_server::Watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{convert, Api};
use crate::apply::{account_id, mailbox_by_name, retention};
use crate::engine::LocalState;
use crate::error::{AppError, AppResult};
use crate::keys::{self, cf};
use crate::model::{normalize_mailbox, ChangeRec};

/// Watch service implementation.
pub struct WatchApi(pub Api);

/// Start of the message of a watch refused because its start was pruned.
pub const FEED_PRUNED: &str = "change feed pruned";

/// Changes sent per feed read.
const PAGE: usize = 512;

/// Up to [`PAGE`] changes of `account`'s feed after modseq `after`, in modseq order; a
/// precondition failure when changes after `after` have been pruned already (the reader fell
/// more than the retention period behind), so that no reader ever follows a feed with a gap.
fn read_page(state: &LocalState, account: u64, after: u64) -> AppResult<Vec<ChangeRec>> {
    let prefix = keys::account_prefix(account);
    let start = keys::change_key(account, after.saturating_add(1));
    state.read(|txn| {
        let floor = retention::feed_floor(txn, account)?;
        if after.saturating_add(1) < floor {
            return Err(AppError::precondition(format!(
                "{FEED_PRUNED}: changes before modseq {floor} are gone (kept for the retention \
                 period); read the mailbox again"
            )));
        }
        txn.scan_from(cf::CHANGES, &prefix, &start, PAGE)?
            .into_iter()
            .map(|(_, v)| Ok(bincode::deserialize(&v)?))
            .collect()
    })
}

#[tonic::async_trait]
impl Watch for WatchApi {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Change, Status>> + Send>>;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let mailbox = if r.mailbox.is_empty() {
            None
        } else {
            Some(normalize_mailbox(&r.mailbox)?)
        };
        let account = r.account.clone();
        let watched = mailbox.clone();
        // The mailbox is followed by id from the start: a rename keeps it, and a mailbox
        // created later under the same name (after a rename or delete) is another one.
        let (acct, known_id) = self
            .0
            .read_local(move |txn| {
                let acct = account_id(txn, &account)?;
                let id = match &watched {
                    Some(name) => mailbox_by_name(txn, acct, name)?.map(|m| m.id),
                    None => None,
                };
                Ok((acct, id))
            })
            .await?;
        let state = self.0.node.state.clone();
        let mut applied = self.0.node.applied.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut after = r.from_modseq;
            // A mailbox renamed while watched keeps being followed under its new name.
            let mut mailbox_id: Option<u64> = known_id;
            loop {
                let mut seen_batch = applied.borrow_and_update().batch;
                let state2 = state.clone();
                let page = match tokio::task::spawn_blocking(move || {
                    read_page(&state2, acct, after)
                })
                .await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                };
                let full = page.len() >= PAGE;
                for c in page {
                    after = c.modseq;
                    if let Some(name) = &mailbox {
                        let matches_id = mailbox_id == Some(c.mailbox);
                        if !matches_id && (mailbox_id.is_some() || &c.mailbox_name != name) {
                            continue;
                        }
                        mailbox_id.get_or_insert(c.mailbox);
                    }
                    if tx.send(Ok(convert::change(&c))).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                // Sleep until a batch writes to this account's feed (or batches were missed).
                loop {
                    tokio::select! {
                        changed = applied.changed() => if changed.is_err() { return },
                        _ = tx.closed() => return,
                    }
                    let a = applied.borrow_and_update().clone();
                    let missed = a.batch > seen_batch + 1;
                    seen_batch = a.batch;
                    if missed || a.touches(acct) {
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::engine::{Batch, Engine, MemoryEngine};
    use crate::model::ChangeKind;
    use crate::state_machine::StateLock;

    fn put_change(batch: &mut Batch, account: u64, modseq: u64) {
        let rec = ChangeRec {
            modseq,
            mailbox: 1,
            mailbox_name: "INBOX".into(),
            kind: ChangeKind::MailboxCreated,
            uids: vec![],
            flags: vec![],
            old_name: String::new(),
        };
        batch.put(
            cf::CHANGES,
            keys::change_key(account, modseq),
            bincode::serialize(&rec).unwrap(),
        );
    }

    /// A snapshot install replaces the data while it holds the state lock exclusively; a
    /// feed read that arrives half-way must wait and then see the installed state, never
    /// the cleared one in between (the bug: `read_page` used to read RocksDB directly).
    #[test]
    fn a_feed_read_waits_for_a_snapshot_install_and_sees_its_result() {
        let engine = Arc::new(MemoryEngine::new());
        let lock = StateLock::default();
        let state = LocalState::new(engine.clone(), lock.clone());
        let mut before = Batch::new();
        put_change(&mut before, 7, 1);
        put_change(&mut before, 8, 1);
        engine.write(before).unwrap();

        let install = lock.write().unwrap();
        // Half-way through the install: the old feed is cleared, the new one not written.
        let mut clear = Batch::new();
        clear.delete(cf::CHANGES, keys::change_key(7, 1));
        engine.write(clear).unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || tx.send(read_page(&state, 7, 0)));
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "a feed read went ahead during a snapshot install"
        );
        let mut installed = Batch::new();
        put_change(&mut installed, 7, 1);
        put_change(&mut installed, 7, 2);
        engine.write(installed).unwrap();
        drop(install);

        let page = rx.recv().unwrap().unwrap();
        reader.join().unwrap().unwrap();
        let modseqs: Vec<u64> = page.iter().map(|c| c.modseq).collect();
        assert_eq!(modseqs, vec![1, 2], "the read sees the installed feed only");
    }

    #[test]
    fn pages_stay_inside_the_account_and_start_after_the_modseq() {
        let engine = Arc::new(MemoryEngine::new());
        let state = LocalState::new(engine.clone(), StateLock::default());
        let mut batch = Batch::new();
        for m in 1..=(PAGE as u64 + 5) {
            put_change(&mut batch, 7, m);
        }
        put_change(&mut batch, 8, 1);
        engine.write(batch).unwrap();
        let first = read_page(&state, 7, 0).unwrap();
        assert_eq!(first.len(), PAGE);
        assert_eq!(first[0].modseq, 1);
        let rest = read_page(&state, 7, PAGE as u64).unwrap();
        let modseqs: Vec<u64> = rest.iter().map(|c| c.modseq).collect();
        assert_eq!(
            modseqs,
            (PAGE as u64 + 1..=PAGE as u64 + 5).collect::<Vec<_>>()
        );
        assert!(read_page(&state, 9, 0).unwrap().is_empty());
    }

    #[test]
    fn a_read_from_below_the_pruned_floor_is_refused_not_given_a_gap() {
        let engine = Arc::new(MemoryEngine::new());
        let state = LocalState::new(engine.clone(), StateLock::default());
        let mut batch = Batch::new();
        for m in 5..=7 {
            put_change(&mut batch, 7, m);
        }
        // Changes 1..=4 were pruned: the floor is 5.
        batch.put(
            cf::MBOX,
            keys::feed_floor_key(7),
            5u64.to_be_bytes().to_vec(),
        );
        engine.write(batch).unwrap();
        let gap = read_page(&state, 7, 2).unwrap_err();
        assert_eq!(gap.kind, crate::error::ErrorKind::FailedPrecondition);
        assert!(gap.message.starts_with(FEED_PRUNED), "{}", gap.message);
        // A reader that saw modseq 4 misses nothing.
        let page = read_page(&state, 7, 4).unwrap();
        assert_eq!(page.iter().map(|c| c.modseq).collect::<Vec<_>>(), [5, 6, 7]);
    }
}
