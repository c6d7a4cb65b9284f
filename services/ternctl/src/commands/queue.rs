//! `ternctl queue list|show|retry|delete`.
//!
//! Timestamps are unix milliseconds in JSON (what the store keeps) and ISO 8601 UTC for people.

use serde::Serialize;
use tern_proto::store::v1::{queue_recipient::State, ListQueueRequest, QueueEntry, QueueIdRequest};

use super::Ctx;
use crate::cli::QueueCmd;
use crate::output::{self, or_dash, Table};

#[derive(Serialize)]
struct EntryJson {
    id: String,
    message_id: String,
    trace_id: String,
    sender: String,
    size: u64,
    blob: String,
    created_at: i64,
    next_attempt_at: i64,
    attempts: u32,
    lease_owner: String,
    lease_expires_at: i64,
    mail_params: String,
    received_from: String,
    recipients: Vec<RecipientJson>,
    events: Vec<EventJson>,
}

#[derive(Serialize)]
struct RecipientJson {
    address: String,
    /// pending, delivered, deferred or failed.
    state: String,
    attempts: u32,
    last_reply: String,
    orcpt: String,
    notify: String,
}

#[derive(Serialize)]
struct EventJson {
    at: i64,
    kind: String,
    detail: String,
}

/// A recipient state in words; a value this ternctl does not know (a newer store) is shown as
/// such rather than guessed.
fn state_word(raw: i32) -> String {
    match State::try_from(raw) {
        Ok(State::Pending) => "pending".into(),
        Ok(State::Delivered) => "delivered".into(),
        Ok(State::Deferred) => "deferred".into(),
        Ok(State::Failed) => "failed".into(),
        Err(_) => format!("unknown({raw})"),
    }
}

impl From<QueueEntry> for EntryJson {
    fn from(e: QueueEntry) -> Self {
        Self {
            recipients: e
                .recipients
                .iter()
                .map(|r| RecipientJson {
                    address: r.address.clone(),
                    state: state_word(r.state),
                    attempts: r.attempts,
                    last_reply: r.last_reply.clone(),
                    orcpt: r.orcpt.clone(),
                    notify: r.notify.clone(),
                })
                .collect(),
            events: e
                .events
                .into_iter()
                .map(|ev| EventJson {
                    at: ev.at,
                    kind: ev.kind,
                    detail: ev.detail,
                })
                .collect(),
            id: e.id,
            message_id: e.message_id,
            trace_id: e.trace_id,
            sender: e.sender,
            size: e.size,
            blob: e.blob,
            created_at: e.created_at,
            next_attempt_at: e.next_attempt_at,
            attempts: e.attempts,
            lease_owner: e.lease_owner,
            lease_expires_at: e.lease_expires_at,
            mail_params: e.mail_params,
            received_from: e.received_from,
        }
    }
}

/// The null reverse-path (bounces) shows as "<>".
fn sender(s: &str) -> String {
    format!("<{s}>")
}

fn lease(e: &EntryJson) -> String {
    if e.lease_owner.is_empty() {
        "none".into()
    } else {
        format!(
            "{} until {}",
            e.lease_owner,
            output::time_ms_relative(e.lease_expires_at)
        )
    }
}

fn render_list(entries: &[EntryJson]) -> String {
    if entries.is_empty() {
        return "queue is empty".into();
    }
    let now = output::now_ms();
    let mut t = Table::new(&[
        "ID", "SENDER", "RCPTS", "SIZE", "ATTEMPTS", "CREATED", "NEXT", "LEASE",
    ]);
    for e in entries {
        let open = e
            .recipients
            .iter()
            .filter(|r| r.state == "pending" || r.state == "deferred")
            .count();
        t.row(vec![
            e.id.clone(),
            sender(&e.sender),
            format!("{open}/{} open", e.recipients.len()),
            output::bytes(e.size),
            e.attempts.to_string(),
            output::time_ms(e.created_at),
            if e.next_attempt_at == 0 {
                "-".into()
            } else {
                output::relative(e.next_attempt_at, now)
            },
            or_dash(&e.lease_owner),
        ]);
    }
    t.render()
}

fn render_events(events: &[EventJson]) -> String {
    if events.is_empty() {
        return "no events recorded\n".into();
    }
    let mut t = Table::new(&["AT", "EVENT", "DETAIL"]);
    for ev in events {
        t.row(vec![
            output::time_ms(ev.at),
            ev.kind.clone(),
            or_dash(&ev.detail),
        ]);
    }
    t.render()
}

fn render_show(e: &EntryJson) -> String {
    let mut out = output::fields(&[
        ("id", e.id.clone()),
        ("message-id", or_dash(&e.message_id)),
        ("trace id", or_dash(&e.trace_id)),
        ("sender", sender(&e.sender)),
        ("received from", or_dash(&e.received_from)),
        ("mail params", or_dash(&e.mail_params)),
        (
            "size",
            format!("{} ({} bytes)", output::bytes(e.size), e.size),
        ),
        ("blob", or_dash(&e.blob)),
        ("created", output::time_ms_relative(e.created_at)),
        ("next attempt", output::time_ms_relative(e.next_attempt_at)),
        ("attempts", e.attempts.to_string()),
        ("lease", lease(e)),
    ]);
    out.push_str("\nRecipients:\n");
    let mut t = Table::new(&["ADDRESS", "STATE", "ATTEMPTS", "LAST REPLY"]);
    for r in &e.recipients {
        t.row(vec![
            r.address.clone(),
            r.state.clone(),
            r.attempts.to_string(),
            or_dash(&r.last_reply),
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\nEvents:\n");
    out.push_str(&render_events(&e.events));
    out
}

pub async fn run(cmd: QueueCmd, ctx: &Ctx) -> anyhow::Result<()> {
    let mut q = ctx.store().await?.queue();
    match cmd {
        QueueCmd::List { limit } => {
            let resp = q.list(ListQueueRequest { limit }).await?.into_inner();
            let entries: Vec<EntryJson> = resp.entries.into_iter().map(Into::into).collect();
            if limit > 0 && entries.len() >= limit as usize {
                // Said on stderr so `--json` output stays parseable.
                eprintln!("showing the first {limit} entries; use --limit N to see more");
            }
            ctx.print(&entries, || render_list(&entries))
        }
        QueueCmd::Show { id } => {
            let e: EntryJson = q.get(QueueIdRequest { id }).await?.into_inner().into();
            ctx.print(&e, || render_show(&e))
        }
        QueueCmd::Retry { id } => {
            let e: EntryJson = q.retry(QueueIdRequest { id }).await?.into_inner().into();
            ctx.print(&e, || {
                format!(
                    "entry {} will be retried: next attempt {}",
                    e.id,
                    output::time_ms_relative(e.next_attempt_at)
                )
            })
        }
        QueueCmd::Delete { id } => {
            q.delete(QueueIdRequest { id: id.clone() }).await?;
            ctx.done(format!("deleted queue entry {id}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_proto::store::v1::{QueueEvent, QueueRecipient};

    fn entry() -> EntryJson {
        QueueEntry {
            id: "Q1".into(),
            sender: "".into(),
            recipients: vec![
                QueueRecipient {
                    address: "a@example.test".into(),
                    state: State::Deferred as i32,
                    last_reply: "451 try later".into(),
                    attempts: 2,
                    ..Default::default()
                },
                QueueRecipient {
                    address: "b@example.test".into(),
                    state: 99, // unknown values must not panic
                    ..Default::default()
                },
            ],
            size: 2048,
            created_at: 1_700_000_000_000,
            events: vec![QueueEvent {
                at: 1_700_000_000_123,
                kind: "received".into(),
                detail: "from 127.0.0.1".into(),
            }],
            ..Default::default()
        }
        .into()
    }

    #[test]
    fn show_lists_recipients_and_events() {
        let s = render_show(&entry());
        assert!(s.contains("sender:"));
        assert!(s.contains("<>"));
        let row: Vec<&str> = s
            .lines()
            .find(|l| l.starts_with("a@example.test"))
            .expect("recipient row")
            .split_whitespace()
            .collect();
        assert_eq!(
            row,
            ["a@example.test", "deferred", "2", "451", "try", "later"],
            "{s}"
        );
        assert!(s.contains("b@example.test  unknown(99)"), "{s}");
        assert!(s.contains("2023-11-14T22:13:20.123Z  received  from 127.0.0.1"));
    }

    #[test]
    fn list_counts_open_recipients() {
        let s = render_list(&[entry()]);
        assert!(s.contains("1/2 open"), "{s}");
    }

    #[test]
    fn json_uses_state_words() {
        let v = serde_json::to_value(entry()).unwrap();
        assert_eq!(v["recipients"][0]["state"], "deferred");
        assert_eq!(v["recipients"][1]["state"], "unknown(99)");
        assert_eq!(v["events"][0]["kind"], "received");
    }
}
