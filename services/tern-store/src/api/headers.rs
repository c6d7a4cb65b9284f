//! Messages.FetchHeaders: the header sections of many messages of one mailbox in one
//! request, from their header records (`apply::head`), so an IMAP client listing a folder
//! (ENVELOPE, header fields) costs one store call per FETCH command and reads no body.
//!
//! Content under one (UIDVALIDITY, UID) never changes, so the node answers from its own
//! applied state, as Fetch with a UIDVALIDITY does, and asks the leader (one read index)
//! only when some UID is missing here: a message this session appended a moment ago through
//! another node may not have been applied on this one yet.
//!
//! Bounded: an answer carries at most [`MAX_ANSWER_BYTES`] of headers and says where to
//! ask again; a body without a header record whose header is over 64 KiB (a message with no
//! empty line is all header) is named in `too_large` instead of sent.

use std::collections::BTreeSet;

use tern_proto::store::v1 as pb;
use tonic::Status;

use super::messages::open_mailbox;
use super::{Api, CHUNK};
use crate::apply::head::{self, Head};
use crate::error::{AppError, AppResult};
use crate::keys::{self, cf};
use crate::model::MessageRec;
use crate::txn::Txn;

/// The most UIDs one request may name.
pub const MAX_UIDS: usize = 10_000;
/// The most header octets one answer carries; the caller asks again from `resume_at`.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// What one pass over the node's state found.
#[derive(Default)]
struct Found {
    headers: Vec<pb::MessageHeader>,
    /// UIDs whose header is too large for a header-only answer.
    too_large: Vec<u32>,
    /// UIDs with no message in this state.
    missing: Vec<u32>,
    /// The first UID not looked at because the answer reached its byte bound.
    resume_at: Option<u32>,
    /// Header octets in `headers`.
    bytes: usize,
}

/// Looks `uids` (sorted) up, adding to `found` until it holds [`MAX_ANSWER_BYTES`] (the
/// first header always goes in, so every answer makes progress).
fn lookup(
    txn: &Txn<'_>,
    r: &pb::FetchHeadersRequest,
    uids: &[u32],
    mut found: Found,
) -> AppResult<Found> {
    let (acct, mb) = open_mailbox(txn, &r.account, &r.mailbox)?;
    if r.uid_validity != mb.uid_validity {
        return Err(AppError::precondition(format!(
            "{:?} has UIDVALIDITY {}, not {}",
            mb.name, mb.uid_validity, r.uid_validity
        )));
    }
    for &uid in uids {
        if found.bytes >= MAX_ANSWER_BYTES {
            found.resume_at = Some(uid);
            break;
        }
        let Some(rec) = txn.get::<MessageRec>(cf::MSG, &keys::message_key(acct, mb.id, uid))?
        else {
            found.missing.push(uid);
            continue;
        };
        let header = match head::read(txn, &rec.blob)? {
            None => {
                found.missing.push(uid);
                continue;
            }
            Some(Head::TooLarge) => {
                crate::metrics::message_read("header_too_large");
                found.too_large.push(uid);
                continue;
            }
            Some(Head::Record(h)) => {
                crate::metrics::message_read("header");
                h
            }
            Some(Head::FromBody(h)) => {
                crate::metrics::message_read("header_from_body");
                h
            }
        };
        let trace_id = crate::apply::trace::trace_of_blob(txn, &rec.blob)?.unwrap_or_default();
        found.bytes += header.len();
        found.headers.push(pb::MessageHeader {
            uid,
            header,
            trace_id,
        });
    }
    Ok(found)
}

/// The headers `r` asks for, in UID order, cut into responses of about [`CHUNK`] bytes; the
/// last one says what was too large and where to ask again.
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
        api.read_local(move |txn| lookup(txn, &r, &uids, Found::default()))
            .await
    };
    let found = match local {
        Ok(found) if found.missing.is_empty() => found,
        // A UID missing here may be a message this node has not applied yet (appended a
        // moment ago through another node), and the mailbox itself may be new to it: the
        // answer is then read again after a read index, when what is missing is expunged.
        // (Missing UIDs are rare: a lagging node, or messages expunged meanwhile.)
        Ok(_) => {
            api.read(move |txn| lookup(txn, &r, &uids, Found::default()))
                .await?
        }
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::NotFound | tonic::Code::FailedPrecondition
            ) =>
        {
            api.read(move |txn| lookup(txn, &r, &uids, Found::default()))
                .await?
        }
        Err(s) => return Err(s),
    };
    let mut responses = in_chunks(found.headers);
    if let Some(last) = responses.last_mut() {
        last.too_large = found.too_large;
        last.resume_at = found.resume_at.unwrap_or(0);
    }
    Ok(responses)
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

    use crate::command::{Command, Reply, Target};
    use crate::engine::{Engine, MemoryEngine};

    /// An account with `bodies` delivered to its INBOX (UIDs 1, 2, ...), and its UIDVALIDITY.
    fn mailbox(db: &MemoryEngine, bodies: &[Vec<u8>]) -> u32 {
        let run = |cmd: Command| {
            let mut txn = Txn::new(db);
            let out = crate::apply::apply_command(&mut txn, &cmd).unwrap();
            db.write(txn.into_batch()).unwrap();
            out
        };
        run(Command::AddDomain {
            name: "x.test".into(),
        });
        run(Command::AddUser {
            address: "a@x.test".into(),
            password_hash: "x".into(),
            quota_bytes: 0,
            now_ms: 1_700_000_000_000,
        });
        let mut validity = 0;
        for (i, body) in bodies.iter().enumerate() {
            let reply = run(Command::Deliver {
                targets: vec![Target {
                    account: "a@x.test".into(),
                    mailbox: "INBOX".into(),
                    delivery_id: format!("d{i}"),
                    flags: vec![],
                }],
                body: body.clone(),
                internal_date: 1,
            });
            if let Reply::Delivered { results, .. } = reply {
                validity = results[0].result.as_ref().unwrap().uid_validity;
            }
        }
        validity
    }

    #[test]
    fn answers_are_bounded_in_bytes_and_large_headers_are_named() {
        let db = MemoryEngine::new();
        let big_header = |i: usize| {
            let mut h = format!("Subject: {i}\r\nX-Pad: ").into_bytes();
            h.extend(std::iter::repeat_n(b'p', 60 << 10));
            h.extend_from_slice(b"\r\n\r\nbody\r\n");
            h
        };
        let mut bodies: Vec<Vec<u8>> = (0..200).map(big_header).collect();
        // No empty line and over 64 KiB: all header, too large to answer with.
        bodies.push(vec![b'h'; 70 << 10]);
        let validity = mailbox(&db, &bodies);
        let request = |uids: Vec<u32>| pb::FetchHeadersRequest {
            account: "a@x.test".into(),
            mailbox: "INBOX".into(),
            uid_validity: validity,
            uids,
        };
        let txn = Txn::new(&db);
        let all: Vec<u32> = (1..=201).collect();
        let found = lookup(&txn, &request(all.clone()), &all, Found::default()).unwrap();
        let resume = found.resume_at.expect("over the byte bound");
        assert!(found.bytes >= MAX_ANSWER_BYTES && found.bytes < MAX_ANSWER_BYTES + (64 << 10));
        assert_eq!(
            found.headers.len() as u32,
            resume - 1,
            "a prefix of the request"
        );
        let rest: Vec<u32> = (resume..=201).collect();
        let found = lookup(&txn, &request(rest.clone()), &rest, Found::default()).unwrap();
        assert_eq!(found.resume_at, None);
        assert_eq!(found.too_large, vec![201]);
        assert_eq!(found.headers.len() as u32, 201 - resume);
        assert!(found.headers[0]
            .header
            .starts_with(format!("Subject: {}\r\n", resume - 1).as_bytes()));
        let stale = pb::FetchHeadersRequest {
            uid_validity: validity + 1,
            ..request(vec![1])
        };
        assert!(lookup(&txn, &stale, &[1], Found::default()).is_err());
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
