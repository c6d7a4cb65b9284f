//! `ternctl list add|remove|list` (mailing lists).
//!
//! `list remove LIST` without members removes the whole list, with members only those members:
//! one verb for "take things away", mirroring `list add`.

use serde::Serialize;
use tern_proto::store::v1::{
    AddListMembersRequest, ListListsRequest, MailingList, RemoveListMembersRequest,
    RemoveListRequest,
};

use super::Ctx;
use crate::cli::ListCmd;
use crate::output::Table;

#[derive(Serialize)]
struct ListJson {
    address: String,
    members: Vec<String>,
}

impl From<MailingList> for ListJson {
    fn from(l: MailingList) -> Self {
        Self {
            address: l.address,
            members: l.members,
        }
    }
}

fn summary(l: &ListJson) -> String {
    format!(
        "list {} has {} member{}{}{}",
        l.address,
        l.members.len(),
        if l.members.len() == 1 { "" } else { "s" },
        if l.members.is_empty() { "" } else { ": " },
        l.members.join(", ")
    )
}

/// A list as the store answered a change to its members.
fn print_list(ctx: &Ctx, list: MailingList) -> anyhow::Result<()> {
    let l = ListJson::from(list);
    ctx.print(&l, || summary(&l))
}

pub async fn run(cmd: ListCmd, ctx: &Ctx) -> anyhow::Result<()> {
    let mut dir = ctx.store().await?.directory();
    match cmd {
        ListCmd::Add { list, members } => {
            let changed = dir
                .add_list_members(AddListMembersRequest {
                    address: list,
                    members,
                })
                .await?;
            print_list(ctx, changed.into_inner())
        }
        ListCmd::Remove { list, members } if members.is_empty() => {
            dir.remove_list(RemoveListRequest {
                address: list.clone(),
            })
            .await?;
            ctx.done(format!("removed list {list}"))
        }
        ListCmd::Remove { list, members } => {
            let changed = dir
                .remove_list_members(RemoveListMembersRequest {
                    address: list,
                    members,
                })
                .await?;
            print_list(ctx, changed.into_inner())
        }
        ListCmd::List { domain } => {
            let resp = dir
                .list_lists(ListListsRequest {
                    domain: domain.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let lists: Vec<ListJson> = resp.lists.into_iter().map(Into::into).collect();
            ctx.print(&lists, || {
                if lists.is_empty() {
                    return "no mailing lists".into();
                }
                let mut t = Table::new(&["LIST", "MEMBERS", "ADDRESSES"]);
                for l in &lists {
                    t.row(vec![
                        l.address.clone(),
                        l.members.len().to_string(),
                        l.members.join(", "),
                    ]);
                }
                t.render()
            })
        }
    }
}
