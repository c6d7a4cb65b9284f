//! One module per command group. Each takes the parsed arguments, validates local input
//! (passwords, ...) before touching the network, then makes one or two RPCs and renders the
//! answer as a table or JSON.

mod alias;
mod audit;
mod cluster;
mod domain;
mod lists;
mod queue;
mod trace;
mod user;

use std::sync::OnceLock;

use anyhow::Context as _;

use serde::Serialize;

use crate::cli::{Cli, Command};
use crate::client::{Link, Store};
use crate::output;
use crate::profile::{self, Given};

/// What every command needs: where the store is, with which certificate, and how to print.
pub struct Ctx {
    /// The connection settings as given; resolved (profile read, files checked) only when a
    /// command connects, so local mistakes (an empty password) are reported first.
    given: Given,
    json: bool,
    /// Set once a connection is made, to explain a failure that shows only afterwards.
    link: OnceLock<Link>,
}

impl Ctx {
    /// Connects on demand, so commands can reject bad local input without a network round trip.
    async fn store(&self) -> anyhow::Result<Store> {
        let settings = profile::load(&self.given)?;
        let store = Store::connect(&settings).await?;
        let _ = self.link.set(store.link().clone());
        Ok(store)
    }

    /// `err` in the words of [`crate::tls::explain`] when a connection had been made.
    fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        match self.link.get() {
            Some(link) => crate::tls::explain(err, link),
            None => err,
        }
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
        given: Given {
            endpoint: cli.endpoint,
            ca: cli.tls.ca,
            cert: cli.tls.cert,
            key: cli.tls.key,
            profile: cli.tls.profile,
        },
        json: cli.json,
        link: OnceLock::new(),
    };
    let result = match cli.command {
        Command::Domain(c) => domain::run(c, &ctx).await,
        Command::User(c) => user::run(c, &ctx).await,
        Command::Alias(c) => alias::run(c, &ctx).await,
        Command::List(c) => lists::run(c, &ctx).await,
        Command::Cluster(c) => cluster::run(c, &ctx).await,
        Command::Queue(c) => queue::run(c, &ctx).await,
        Command::Trace { id } => trace::run(&id, &ctx).await,
        Command::Audit { limit, before } => audit::run(limit, before, &ctx).await,
        Command::DevPki { dir, trust_domain } => {
            // Local files only: no store, no certificate of our own needed.
            tern_trust::pki::ensure_dev_pki(&dir, &trust_domain)
                .map(drop)
                .with_context(|| format!("making the development PKI in {}", dir.display()))
        }
    };
    result.map_err(|e| ctx.explain(e))
}
