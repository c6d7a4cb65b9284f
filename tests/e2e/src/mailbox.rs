//! Reading what reached a mailbox, through the store API, for tests that send mail in and
//! check what arrived.

use std::time::{Duration, Instant};

use anyhow::bail;
use tern_testkit::{fetch, list_all, Platform};

/// The messages in `user@example.test`'s INBOX, read from the leader.
pub async fn inbox(p: &Platform, user: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let leader = p.cluster.wait_leader(Duration::from_secs(20)).await?;
    let account = format!("{user}@example.test");
    let mut msgs = p.cluster.messages(leader, &account).await?;
    let list = list_all(&mut msgs, &account, "INBOX").await?;
    let mut out = Vec::new();
    for m in list.messages {
        out.push(fetch(&mut msgs, &account, "INBOX", m.uid).await?);
    }
    Ok(out)
}

/// Waits up to 30 s until `user`'s INBOX holds `n` messages containing `needle`; returns
/// them.
pub async fn wait_for(
    p: &Platform,
    user: &str,
    needle: &str,
    n: usize,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<Vec<u8>> = inbox(p, user)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|m| contains(m, needle))
            .collect();
        if found.len() >= n {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!(
                "{user} has {} of {n} messages with {needle:?}\nqueue log:\n{}",
                found.len(),
                p.queue().log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether `hay` holds the octets of `needle`.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}
