//! `ternctl alias add|list|remove`.

use serde::Serialize;
use tern_proto::store::v1::{AddAliasRequest, Alias, ListAliasesRequest, RemoveAliasRequest};

use super::Ctx;
use crate::cli::AliasCmd;
use crate::output::Table;

#[derive(Serialize)]
struct AliasJson {
    address: String,
    targets: Vec<String>,
}

impl From<Alias> for AliasJson {
    fn from(a: Alias) -> Self {
        Self {
            address: a.address,
            targets: a.targets,
        }
    }
}

pub async fn run(cmd: AliasCmd, ctx: &Ctx) -> anyhow::Result<()> {
    let mut dir = ctx.store().await?.directory();
    match cmd {
        AliasCmd::Add { from, to } => {
            let a: AliasJson = dir
                .add_alias(AddAliasRequest {
                    address: from,
                    targets: to,
                })
                .await?
                .into_inner()
                .into();
            ctx.print(&a, || {
                format!("alias {} -> {}", a.address, a.targets.join(", "))
            })
        }
        AliasCmd::List { domain } => {
            let resp = dir
                .list_aliases(ListAliasesRequest {
                    domain: domain.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let aliases: Vec<AliasJson> = resp.aliases.into_iter().map(Into::into).collect();
            ctx.print(&aliases, || {
                if aliases.is_empty() {
                    return "no aliases".into();
                }
                let mut t = Table::new(&["ALIAS", "TARGETS"]);
                for a in &aliases {
                    t.row(vec![a.address.clone(), a.targets.join(", ")]);
                }
                t.render()
            })
        }
        AliasCmd::Remove { from } => {
            dir.remove_alias(RemoveAliasRequest {
                address: from.clone(),
            })
            .await?;
            ctx.done(format!("removed alias {from}"))
        }
    }
}
