//! Recipient expansion through the directory: aliases and mailing lists are expanded into
//! final recipients (local accounts and remote addresses), with loops cut, nested lists
//! expanded once, and duplicates removed, so that a user reached directly, through an alias
//! and through a list gets one copy (as Postfix's duplicate elimination does).

use std::collections::{HashSet, VecDeque};

use tern_proto::directory_cache::Resolver;
use tern_proto::store::v1::resolve_response::Kind;

/// Longest alias/list chain followed from one recipient.
pub const MAX_DEPTH: usize = 20;
/// Most final recipients one original recipient may expand into (a list of lists).
pub const MAX_EXPANSION: usize = 10_000;

/// Where a final recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A mailbox in this platform: deliver into the account's INBOX.
    Local,
    /// Another domain: deliver over SMTP.
    Remote,
    /// A hosted domain without such an address (or an alias pointing at one): bounce.
    Unknown,
}

/// One final recipient and the enqueued recipient it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Final {
    /// The address mail goes to (the account for local users).
    pub address: String,
    /// The recipient as enqueued (for Original-Recipient and traces).
    pub original: String,
    /// Where it goes.
    pub route: Route,
    /// Reached through an alias or a list (not addressed directly).
    pub expanded: bool,
}

/// Expands `recipients` (already normalized addresses) into final recipients, in order of
/// first appearance, each final address once. A directory that cannot be reached is an
/// error (the caller defers the whole entry); unknown addresses are `Route::Unknown`.
pub async fn expand(
    directory: &Resolver,
    recipients: &[String],
) -> Result<Vec<Final>, tonic::Status> {
    let mut finals: Vec<Final> = Vec::new();
    let mut seen_final: HashSet<String> = HashSet::new();
    // Aliases and lists already expanded for this entry: a list reached twice (or a list
    // inside a list inside itself) is expanded once, which also cuts every loop.
    let mut expanded: HashSet<String> = HashSet::new();
    for original in recipients {
        let mut queue: VecDeque<(String, usize)> = VecDeque::from([(original.clone(), 0)]);
        let mut produced = 0usize;
        // Whether this recipient reached anyone at all (a final address, even one another
        // recipient reached first, or an alias/list another recipient already expanded).
        let mut reached = false;
        while let Some((address, depth)) = queue.pop_front() {
            let key = address.to_ascii_lowercase();
            if expanded.contains(&key) {
                reached |= depth == 0;
                continue;
            }
            let answer = directory.resolve(&address).await?;
            let kind = Kind::try_from(answer.kind).unwrap_or(Kind::Unknown);
            let (final_address, route) = match kind {
                Kind::Alias | Kind::List => {
                    expanded.insert(key);
                    if depth >= MAX_DEPTH {
                        tracing::warn!(%address, "alias/list chain too deep; not followed further");
                        continue;
                    }
                    for t in answer.targets {
                        queue.push_back((t, depth + 1));
                    }
                    continue;
                }
                Kind::LocalUser => (
                    answer.user.map(|u| u.address).unwrap_or(address),
                    Route::Local,
                ),
                Kind::Remote => (address, Route::Remote),
                Kind::Unknown => (address, Route::Unknown),
            };
            reached = true;
            if seen_final.insert(final_address.to_ascii_lowercase()) {
                produced += 1;
                finals.push(Final {
                    address: final_address,
                    original: original.clone(),
                    route,
                    expanded: depth > 0,
                });
                if produced >= MAX_EXPANSION {
                    tracing::warn!(%original, "expansion stopped at {MAX_EXPANSION} recipients");
                    break;
                }
            }
        }
        // An alias loop, an empty list or a too-deep chain reaches nobody: the message must
        // bounce for this recipient, not vanish.
        if !reached && seen_final.insert(original.to_ascii_lowercase()) {
            finals.push(Final {
                address: original.clone(),
                original: original.clone(),
                route: Route::Unknown,
                expanded: false,
            });
        }
    }
    Ok(finals)
}
