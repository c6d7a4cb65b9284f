//! One module per command group. Each takes the parsed arguments, validates local input
//! (passwords, ...) before touching the network, then makes one or two RPCs and renders the
//! answer as a table or JSON.

mod alias;
mod cluster;
mod domain;
mod lists;
mod queue;
mod trace;
mod user;

use serde::Serialize;

use crate::cli::{Cli, Command};
use crate::client::Store;
use crate::output;

/// What every command needs: where the store is and how to print.
pub struct Ctx {
    endpoint: String,
    json: bool,
}

impl Ctx {
    /// Connects on demand, so commands can reject bad local input without a network round trip.
    async fn store(&self) -> anyhow::Result<Store> {
        Store::connect(&self.endpoint).await
    }

    /// Prints `value` as JSON in `--json` mode, otherwise the human text `human()` builds.
    fn print<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let text = if self.json {
            output::json(value)?
        } else {
            human()
        };
        output::emit(&text)?;
        Ok(())
    }

    /// Acknowledges a command whose RPC returns nothing: `{"ok":true}` in JSON mode.
    fn done(&self, human: String) -> anyhow::Result<()> {
        #[derive(Serialize)]
        struct Done {
            ok: bool,
        }
        self.print(&Done { ok: true }, || human)
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        endpoint: cli.endpoint,
        json: cli.json,
    };
    match cli.command {
        Command::Domain(c) => domain::run(c, &ctx).await,
        Command::User(c) => user::run(c, &ctx).await,
        Command::Alias(c) => alias::run(c, &ctx).await,
        Command::List(c) => lists::run(c, &ctx).await,
        Command::Cluster(c) => cluster::run(c, &ctx).await,
        Command::Queue(c) => queue::run(c, &ctx).await,
        Command::Trace { id } => trace::run(&id, &ctx).await,
    }
}
