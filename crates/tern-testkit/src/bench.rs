//! What the benchmark binaries (`src/bin/tern-*-bench`) share: the flags that start the
//! store cluster under test, and the scratch directory a peer server (Dovecot) reads the
//! message corpus from.

use std::path::PathBuf;

use anyhow::Context;

/// The store cluster every benchmark starts (`#[command(flatten)]` into a binary's flags).
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Path of the tern-store binary.
    #[arg(long)]
    pub store_bin: PathBuf,
    /// Store nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
}

/// A scratch directory under /tmp named `prefix…`, readable by other users (Dovecot's mail
/// processes run as `nobody`), with `corpus/NNNNNN.eml` holding each message of `corpus`.
/// Returns the directory (removed when dropped) and the corpus directory in it.
pub fn scratch_with_corpus(
    prefix: &str,
    corpus: &[Vec<u8>],
) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let scratch = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .context("making the benchmark's scratch directory")?;
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let corpus_dir = scratch.path().join("corpus");
    std::fs::create_dir_all(&corpus_dir)?;
    for (i, m) in corpus.iter().enumerate() {
        std::fs::write(corpus_dir.join(format!("{i:06}.eml")), m)?;
    }
    Ok((scratch, corpus_dir))
}

/// Appends numbered lines of text to a message until it is at least `size` octets: the
/// body of the benchmarks' generated messages (plain, compressible, line-structured mail).
pub fn pad_body(message: &mut Vec<u8>, size: usize) {
    let mut line = 0;
    while message.len() < size {
        message.extend_from_slice(
            format!("{line:06} the quick brown fox jumps over the lazy dog\r\n").as_bytes(),
        );
        line += 1;
    }
}

/// The `/metrics` text of the process whose metrics listener is `metrics`.
pub async fn scrape(metrics: &str) -> anyhow::Result<String> {
    let (status, body) = crate::platform::http_get(metrics, "/metrics").await?;
    anyhow::ensure!(status == 200, "/metrics of {metrics} answered {status}");
    Ok(body)
}

/// The sum of the samples of metric `name` in the `/metrics` text `body` whose line holds
/// every one of `having` (label matchers such as `role="access"`).
pub fn sum_of(body: &str, name: &str, having: &[&str]) -> u64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|l| having.iter().all(|h| l.contains(h)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A store node's Raft log counters: synced appends (fsyncs), entries, applied commands;
/// scraped before and after a run, they show group commit (entries per fsync) and what a
/// message costs in the log.
pub struct LogCounts {
    /// Synced appends (each one fsync).
    pub syncs: u64,
    /// Entries appended.
    pub entries: u64,
    /// Commands applied.
    pub commands: u64,
}

impl LogCounts {
    /// The counters in the `/metrics` of the store node at `metrics`.
    pub async fn scrape(metrics: &str) -> anyhow::Result<Self> {
        let body = scrape(metrics).await?;
        let sum = |name: &str| sum_of(&body, name, &[]);
        Ok(Self {
            syncs: sum("tern_store_log_syncs_total"),
            entries: sum("tern_store_log_entries_total"),
            commands: sum("tern_store_applied_commands_total"),
        })
    }

    /// What was counted since `before`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            syncs: self.syncs.saturating_sub(before.syncs),
            entries: self.entries.saturating_sub(before.entries),
            commands: self.commands.saturating_sub(before.commands),
        }
    }
}
