//! The Watch service: an account's (or one mailbox's) change feed from a modseq on, then
//! live. Each stream re-reads the feed from its last modseq whenever this node applies a
//! batch that wrote to that account's feed (see [`crate::state_machine::Applied`]), so
//! nothing is missed, a write wakes only its own account's readers, and a slow reader costs
//! no memory on the server.

use std::pin::Pin;

use futures::Stream;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::watch_server::Watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{convert, Api};
use crate::apply::{account_id, mailbox_by_name};
use crate::db;
use crate::keys::{self, cf};
use crate::model::{normalize_mailbox, ChangeRec};

/// Watch service implementation.
pub struct WatchApi(pub Api);

/// Changes sent per feed read.
const PAGE: usize = 512;

fn read_page(db: &db::Db, account: u64, after: u64) -> crate::error::AppResult<Vec<ChangeRec>> {
    let prefix = keys::account_prefix(account);
    let start = keys::change_key(account, after.saturating_add(1));
    let mut out = Vec::new();
    let handle = db::handle(db, cf::CHANGES)?;
    for item in db.iterator_cf(
        handle,
        rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
    ) {
        let (k, v) = item?;
        if !k.starts_with(&prefix) || out.len() >= PAGE {
            break;
        }
        out.push(bincode::deserialize(&v)?);
    }
    Ok(out)
}

#[tonic::async_trait]
impl Watch for WatchApi {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Change, Status>> + Send>>;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
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
        let db = self.0.node.db.clone();
        let mut applied = self.0.node.applied.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut after = r.from_modseq;
            // A mailbox renamed while watched keeps being followed under its new name.
            let mut mailbox_id: Option<u64> = known_id;
            loop {
                let mut seen_batch = applied.borrow_and_update().batch;
                let db2 = db.clone();
                let page =
                    match tokio::task::spawn_blocking(move || read_page(&db2, acct, after)).await {
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
