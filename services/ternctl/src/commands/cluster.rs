//! `ternctl cluster status|add-node|remove-node`.
//!
//! The JSON shape is a contract (ARCHITECTURE.md): `leader_id`, `leader_addr` and `members`
//! with `id`, `addr`, `role`, `last_applied`; `cargo xtask up` and the end-to-end tests parse
//! it. `leader_id` is 0 and `leader_addr` empty while no leader is known, as in the proto.

use serde::Serialize;
use tern_proto::store::v1::{
    AddNodeRequest, ClusterStatusRequest, ClusterStatusResponse, RemoveNodeRequest,
};

use super::Ctx;
use crate::cli::ClusterCmd;
use crate::output::Table;

#[derive(Serialize)]
pub struct StatusJson {
    /// The node that answered.
    node_id: u64,
    leader_id: u64,
    leader_addr: String,
    term: u64,
    last_log_index: u64,
    last_applied: u64,
    snapshot_index: u64,
    purged_index: u64,
    members: Vec<MemberJson>,
}

#[derive(Serialize)]
struct MemberJson {
    id: u64,
    addr: String,
    role: String,
    last_applied: u64,
    voter: bool,
}

impl From<ClusterStatusResponse> for StatusJson {
    fn from(s: ClusterStatusResponse) -> Self {
        Self {
            node_id: s.node_id,
            leader_id: s.leader_id,
            leader_addr: s.leader_addr,
            term: s.term,
            last_log_index: s.last_log_index,
            last_applied: s.last_applied,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            members: s
                .members
                .into_iter()
                .map(|m| MemberJson {
                    id: m.id,
                    addr: m.addr,
                    role: m.role,
                    last_applied: m.last_applied,
                    voter: m.voter,
                })
                .collect(),
        }
    }
}

fn render(s: &StatusJson) -> String {
    let leader = if s.leader_id == 0 {
        "no leader known (election in progress, or no quorum)".to_string()
    } else {
        format!("leader is node {} at {}", s.leader_id, s.leader_addr)
    };
    let mut out = format!(
        "node {} answered: {leader}, term {}\n\
         log: last index {}, applied {}, snapshot {}, purged {}\n\n",
        s.node_id, s.term, s.last_log_index, s.last_applied, s.snapshot_index, s.purged_index
    );
    let mut t = Table::new(&["ID", "ADDR", "ROLE", "VOTER", "LAST APPLIED"]);
    for m in &s.members {
        t.row(vec![
            m.id.to_string(),
            m.addr.clone(),
            if m.role.is_empty() {
                "unknown".into()
            } else {
                m.role.clone()
            },
            if m.voter { "yes" } else { "no" }.into(),
            m.last_applied.to_string(),
        ]);
    }
    out.push_str(&t.render());
    out
}

#[derive(Serialize)]
struct BackupJson {
    path: String,
    last_applied: u64,
}

/// `ternctl cluster backup NAME`.
async fn backup(name: String, ctx: &Ctx) -> anyhow::Result<()> {
    let r = ctx
        .store()
        .await?
        .backups()
        .create(tern_proto::store::v1::BackupRequest { name })
        .await?
        .into_inner();
    let b = BackupJson {
        path: r.path,
        last_applied: r.last_applied,
    };
    ctx.print(&b, || {
        format!(
            "backup written on the node at {} (log index {})",
            b.path, b.last_applied
        )
    })
}

pub async fn run(cmd: ClusterCmd, ctx: &Ctx) -> anyhow::Result<()> {
    let mut admin = ctx.store().await?.admin();
    let (status, note) = match cmd {
        ClusterCmd::Status => (admin.status(ClusterStatusRequest {}).await?, None),
        ClusterCmd::AddNode {
            id,
            addr,
            learner_only,
        } => {
            let note = format!(
                "added node {id} at {addr}{}",
                if learner_only { " as a learner" } else { "" }
            );
            let req = AddNodeRequest {
                id,
                addr,
                learner_only,
            };
            (admin.add_node(req).await?, Some(note))
        }
        ClusterCmd::RemoveNode { id } => (
            admin.remove_node(RemoveNodeRequest { id }).await?,
            Some(format!("removed node {id}")),
        ),
        ClusterCmd::Backup { name } => return backup(name, ctx).await,
    };
    let s: StatusJson = status.into_inner().into();
    ctx.print(&s, || match note {
        Some(n) => format!("{n}\n\n{}", render(&s)),
        None => render(&s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_proto::store::v1::Member;

    fn sample() -> StatusJson {
        ClusterStatusResponse {
            node_id: 2,
            leader_id: 1,
            leader_addr: "127.0.0.1:7101".into(),
            term: 3,
            last_log_index: 10,
            last_applied: 10,
            snapshot_index: 0,
            purged_index: 0,
            members: vec![Member {
                id: 1,
                addr: "127.0.0.1:7101".into(),
                role: "leader".into(),
                last_applied: 10,
                voter: true,
            }],
        }
        .into()
    }

    #[test]
    fn json_has_the_contract_keys() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["leader_id"], 1);
        assert_eq!(v["leader_addr"], "127.0.0.1:7101");
        let m = &v["members"][0];
        for key in ["id", "addr", "role", "last_applied"] {
            assert!(m.get(key).is_some(), "member lacks {key}");
        }
        for key in [
            "node_id",
            "term",
            "last_log_index",
            "last_applied",
            "snapshot_index",
            "purged_index",
        ] {
            assert!(v.get(key).is_some(), "status lacks {key}");
        }
    }

    #[test]
    fn human_output() {
        let s = render(&sample());
        assert!(s.starts_with("node 2 answered: leader is node 1 at 127.0.0.1:7101, term 3\n"));
        assert!(s.contains("1   127.0.0.1:7101  leader  yes    10"));
    }
}
