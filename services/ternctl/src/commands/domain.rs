//! `ternctl domain add|list|remove`.

use serde::Serialize;
use tern_proto::store::v1::{AddDomainRequest, ListDomainsRequest, RemoveDomainRequest};

use super::Ctx;
use crate::cli::DomainCmd;
use crate::output::Table;

#[derive(Serialize)]
struct DomainJson {
    name: String,
}

pub async fn run(cmd: DomainCmd, ctx: &Ctx) -> anyhow::Result<()> {
    let mut dir = ctx.store().await?.directory();
    match cmd {
        DomainCmd::Add { name } => {
            let d = dir
                .add_domain(AddDomainRequest { name })
                .await?
                .into_inner();
            let out = DomainJson { name: d.name };
            ctx.print(&out, || format!("added domain {}", out.name))
        }
        DomainCmd::List => {
            let resp = dir.list_domains(ListDomainsRequest {}).await?.into_inner();
            let list: Vec<DomainJson> = resp
                .domains
                .into_iter()
                .map(|d| DomainJson { name: d.name })
                .collect();
            ctx.print(&list, || {
                if list.is_empty() {
                    return "no domains".into();
                }
                let mut t = Table::new(&["DOMAIN"]);
                for d in &list {
                    t.row(vec![d.name.clone()]);
                }
                t.render()
            })
        }
        DomainCmd::Remove { name } => {
            dir.remove_domain(RemoveDomainRequest { name: name.clone() })
                .await?;
            ctx.done(format!("removed domain {name}"))
        }
    }
}
