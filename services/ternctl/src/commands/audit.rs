//! `ternctl audit`: the audit log of operators' changes, newest first: when, who (the
//! caller's certificate identity and address), what, and to which domain, user or node.

use serde::Serialize;
use tern_proto::store::v1::{AuditEntry, AuditRequest};

use super::Ctx;
use crate::output::{self, Table};

#[derive(Serialize)]
struct EntryJson {
    seq: u64,
    at_ms: i64,
    by: String,
    action: String,
    target: String,
}

impl From<AuditEntry> for EntryJson {
    fn from(e: AuditEntry) -> Self {
        EntryJson {
            seq: e.seq,
            at_ms: e.at_ms,
            by: e.by,
            action: e.action,
            target: e.target,
        }
    }
}

fn render(entries: &[EntryJson]) -> String {
    if entries.is_empty() {
        return "no audit records\n".into();
    }
    let mut t = Table::new(&["SEQ", "AT", "BY", "ACTION", "TARGET"]);
    for e in entries {
        t.row(vec![
            e.seq.to_string(),
            output::time_ms(e.at_ms),
            e.by.clone(),
            e.action.clone(),
            output::or_dash(&e.target),
        ]);
    }
    t.render()
}

/// Runs `ternctl audit [--limit N] [--before SEQ]`.
pub async fn run(limit: u32, before: u64, ctx: &Ctx) -> anyhow::Result<()> {
    let mut admin = ctx.store().await?.admin();
    let entries: Vec<EntryJson> = admin
        .audit(AuditRequest { limit, before })
        .await?
        .into_inner()
        .entries
        .into_iter()
        .map(Into::into)
        .collect();
    ctx.print(&entries, || render(&entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_record_with_who_what_and_target() {
        let text = render(&[EntryJson {
            seq: 7,
            at_ms: 1_700_000_000_000,
            by: "spiffe://tern.test/tern/admin from 127.0.0.1".into(),
            action: "add-domain".into(),
            target: "example.test".into(),
        }]);
        assert!(text.contains("SEQ"), "{text}");
        let row = text.lines().nth(1).expect("a row");
        for part in [
            "7",
            "spiffe://tern.test/tern/admin",
            "add-domain",
            "example.test",
        ] {
            assert!(row.contains(part), "{row}");
        }
        assert_eq!(render(&[]), "no audit records\n");
    }
}
