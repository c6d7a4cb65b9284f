//! Messages.FetchHeaders: the header sections of many messages of one mailbox in one
//! request, from their header records (`apply::head`), so an IMAP client listing a folder
//! (ENVELOPE, header fields) costs one store call per FETCH command and reads no body.
//!
//! Content under one (UIDVALIDITY, UID) never changes, so the node answers from its own
//! applied state, as Fetch with a UIDVALIDITY does, and asks the leader (one read index)
//! only when some UID is missing here: a message this session appended a moment ago through
//! another node may not have been applied on this one yet.

use std::collections::BTreeSet;

use tern_proto::store::v1 as pb;
use tonic::Status;

use super::messages::open_mailbox;
use super::{Api, CHUNK};
use crate::apply::head::{self, Source};
use crate::error::{AppError, AppResult};
use crate::keys::{self, cf};
use crate::model::MessageRec;
use crate::txn::Txn;

/// The most UIDs one request may name.
pub const MAX_UIDS: usize = 10_000;

/// What one pass over the node's state found.
struct Found {
    headers: Vec<pb::MessageHeader>,
    /// UIDs with no message in this state.
    missing: Vec<u32>,
}

fn lookup(txn: &Txn<'_>, r: &pb::FetchHeadersRequest, uids: &[u32]) -> AppResult<Found> {
    let (acct, mb) = open_mailbox(txn, &r.account, &r.mailbox)?;
    if r.uid_validity != mb.uid_validity {
        return Err(AppError::precondition(format!(
            "{:?} has UIDVALIDITY {}, not {}",
            mb.name, mb.uid_validity, r.uid_validity
        )));
    }
    let mut found = Found {
        headers: Vec::with_capacity(uids.len()),
        missing: Vec::new(),
    };
    for &uid in uids {
        let Some(rec) = txn.get::<MessageRec>(cf::MSG, &keys::message_key(acct, mb.id, uid))?
        else {
            found.missing.push(uid);
            continue;
        };
        let Some((header, source)) = head::read(txn, &rec.blob)? else {
            found.missing.push(uid);
            continue;
        };
        crate::metrics::message_read(match source {
            Source::Record => "header",
            Source::Body => "header_from_body",
        });
        let trace_id = crate::apply::trace::trace_of_blob(txn, &rec.blob)?.unwrap_or_default();
        found.headers.push(pb::MessageHeader {
            uid,
            header,
            trace_id,
        });
    }
    Ok(found)
}

/// The headers `r` asks for, in UID order, cut into responses of about [`CHUNK`] bytes.
pub async fn fetch_headers(
    api: &Api,
    r: pb::FetchHeadersRequest,
) -> Result<Vec<pb::FetchHeadersResponse>, Status> {
    if r.uid_validity == 0 {
        return Err(Status::invalid_argument(
            "FetchHeaders needs the mailbox's UIDVALIDITY",
        ));
    }
    let uids: Vec<u32> = r
        .uids
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if uids.len() > MAX_UIDS {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_UIDS} UIDs in one FetchHeaders"
        )));
    }
    let local = {
        let (r, uids) = (r.clone(), uids.clone());
        api.read_local(move |txn| lookup(txn, &r, &uids)).await
    };
    let headers = match local {
        Ok(found) if found.missing.is_empty() => found.headers,
        Ok(found) => {
            // What this node has not applied (yet) is asked linearizably; what is still
            // missing then is expunged.
            let later = api
                .read(move |txn| lookup(txn, &r, &found.missing))
                .await?
                .headers;
            let mut all = found.headers;
            all.extend(later);
            all.sort_by_key(|h| h.uid);
            all
        }
        // This node may not have applied the mailbox (or its UIDVALIDITY) yet either.
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::NotFound | tonic::Code::FailedPrecondition
            ) =>
        {
            api.read(move |txn| lookup(txn, &r, &uids)).await?.headers
        }
        Err(s) => return Err(s),
    };
    Ok(in_chunks(headers))
}

/// Groups headers into responses of about [`CHUNK`] bytes each (at least one header each).
fn in_chunks(headers: Vec<pb::MessageHeader>) -> Vec<pb::FetchHeadersResponse> {
    let mut out = Vec::new();
    let mut current = pb::FetchHeadersResponse::default();
    let mut bytes = 0;
    for h in headers {
        if !current.headers.is_empty() && bytes + h.header.len() > CHUNK {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += h.header.len();
        current.headers.push(h);
    }
    if !current.headers.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(uid: u32, len: usize) -> pb::MessageHeader {
        pb::MessageHeader {
            uid,
            header: vec![b'x'; len],
            trace_id: String::new(),
        }
    }

    #[test]
    fn responses_stay_near_a_chunk_and_keep_the_order() {
        let out = in_chunks(vec![
            header(1, CHUNK / 2),
            header(2, CHUNK / 2),
            header(3, 10),
            header(4, CHUNK * 2),
            header(5, 1),
        ]);
        let uids: Vec<Vec<u32>> = out
            .iter()
            .map(|r| r.headers.iter().map(|h| h.uid).collect())
            .collect();
        assert_eq!(uids, vec![vec![1, 2], vec![3], vec![4], vec![5]]);
        assert_eq!(
            in_chunks(vec![]).len(),
            1,
            "an empty answer is one response"
        );
    }
}
