//! The directory's change feed: after each applied batch that changed domains, users,
//! aliases or lists, the names it changed (see [`crate::command::Command::directory_names`]),
//! with the batch's log index. SMTP and queue nodes follow it to keep their directory
//! caches current (`tern_proto::directory_cache`).
//!
//! It lives in memory: the last [`KEPT`] changes are kept, so a reader that reconnects (to
//! this node or another: log indexes are the cluster's) resumes after the last change it
//! saw without losing its cache, and a reader that asks for more than this node remembers
//! is told to reset (forget its cache). A snapshot install and a node's start are resets
//! too: the changes before them are not known here. Directory changes are rare next to
//! mail, so the kept window covers a long time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// Changes kept for readers that resume.
pub const KEPT: usize = 4096;

/// Changes a live reader may fall behind by before it is told to reset.
const LIVE_BUFFER: usize = 1024;

/// One feed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Log index of the batch that made it.
    pub index: u64,
    /// Forget everything: what changed before `index` is not known.
    pub reset: bool,
    /// Addresses and domains changed (lowercase).
    pub names: Arc<Vec<String>>,
}

struct Kept {
    changes: VecDeque<Change>,
    /// Every change after this index is in `changes` (or is to come).
    floor: u64,
    /// Last applied index announced.
    applied: u64,
    /// Live readers' channel; `None` once the node is shutting down.
    live: Option<broadcast::Sender<Change>>,
}

/// The feed of one node.
pub struct DirectoryFeed {
    kept: Mutex<Kept>,
}

/// What a new reader gets: whether it must reset, the kept changes after its resume point,
/// and the live changes after those.
pub struct Subscription {
    /// The node's applied index when the reader subscribed.
    pub applied: u64,
    /// The resume point is not covered: the reader must forget its cache.
    pub reset: bool,
    /// Kept changes after the resume point, oldest first.
    pub backlog: Vec<Change>,
    /// Later changes.
    pub live: broadcast::Receiver<Change>,
}

impl Default for DirectoryFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl DirectoryFeed {
    /// An empty feed: nothing before the first announced index is known.
    pub fn new() -> Self {
        Self {
            kept: Mutex::new(Kept {
                changes: VecDeque::new(),
                floor: u64::MAX,
                applied: 0,
                live: Some(broadcast::channel(LIVE_BUFFER).0),
            }),
        }
    }

    /// Ends every reader's stream (the node is shutting down: a stream that never ends
    /// would hold the server's graceful shutdown to its time-out).
    pub fn close(&self) {
        self.kept().live = None;
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node applied a batch up to `index`, which changed `names` (maybe none).
    pub fn applied(&self, index: u64, names: Vec<String>) {
        let mut k = self.kept();
        k.applied = index;
        if k.floor == u64::MAX {
            // The first batch since the node opened: what came before it is not kept.
            k.floor = index.saturating_sub(1);
        }
        if names.is_empty() {
            return;
        }
        let change = Change {
            index,
            reset: false,
            names: Arc::new(names),
        };
        if k.changes.len() == KEPT {
            if let Some(old) = k.changes.pop_front() {
                k.floor = old.index;
            }
        }
        k.changes.push_back(change.clone());
        // No receiver is not an error: nobody follows the feed right now.
        if let Some(live) = &k.live {
            let _ = live.send(change);
        }
    }

    /// The node's state was replaced (a snapshot installed, or the node opened at
    /// `index`): readers must forget everything, and nothing before `index` is kept.
    pub fn reset(&self, index: u64) {
        let mut k = self.kept();
        k.changes.clear();
        k.floor = index;
        k.applied = index;
        if let Some(live) = &k.live {
            let _ = live.send(Change {
                index,
                reset: true,
                names: Arc::default(),
            });
        }
    }

    /// A reader resuming after `after`; 0 is a reader that has seen nothing, which is
    /// told to reset too (it may hold answers from before, with no index to resume from).
    pub fn subscribe(&self, after: u64) -> Subscription {
        let k = self.kept();
        // Subscribed under the lock: no change falls between the backlog and the live feed.
        // After `close`, a channel already closed: the stream ends at once.
        let live = match &k.live {
            Some(live) => live.subscribe(),
            None => broadcast::channel(1).1,
        };
        let covered = after != 0 && k.floor != u64::MAX && after >= k.floor;
        let backlog = if covered {
            k.changes
                .iter()
                .filter(|c| c.index > after)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Subscription {
            applied: k.applied,
            reset: !covered,
            backlog,
            live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sub: &[Change]) -> Vec<(u64, Vec<String>)> {
        sub.iter().map(|c| (c.index, c.names.to_vec())).collect()
    }

    #[test]
    fn a_reader_resumes_after_its_last_change_and_then_follows_live() {
        let feed = DirectoryFeed::new();
        feed.reset(10);
        feed.applied(11, vec!["a@x.test".into()]);
        feed.applied(12, vec![]);
        feed.applied(13, vec!["x.test".into()]);
        let mut sub = feed.subscribe(11);
        assert!(!sub.reset);
        assert_eq!(sub.applied, 13);
        assert_eq!(names(&sub.backlog), vec![(13, vec!["x.test".to_string()])]);
        feed.applied(14, vec!["b@x.test".into()]);
        let next = sub.live.try_recv().expect("a live change");
        assert_eq!((next.index, next.reset), (14, false));
    }

    #[test]
    fn a_resume_from_before_what_is_kept_is_a_reset() {
        let feed = DirectoryFeed::new();
        feed.reset(100);
        assert!(feed.subscribe(99).reset, "before the node's start");
        assert!(!feed.subscribe(100).reset);
        for i in 0..(KEPT as u64 + 5) {
            feed.applied(101 + i, vec![format!("u{i}@x.test")]);
        }
        // The oldest five were dropped: a reader that saw only up to 103 missed some.
        assert!(feed.subscribe(103).reset);
        let sub = feed.subscribe(105);
        assert!(!sub.reset);
        assert_eq!(sub.backlog.len(), KEPT);
        assert_eq!(sub.backlog.first().map(|c| c.index), Some(106));
    }

    #[test]
    fn a_new_reader_resets_and_a_snapshot_install_resets_live_readers() {
        let feed = DirectoryFeed::new();
        feed.applied(5, vec!["a@x.test".into()]);
        let mut sub = feed.subscribe(0);
        assert!(
            sub.reset && sub.backlog.is_empty(),
            "a reader with no index resets"
        );
        feed.reset(50);
        let next = sub.live.try_recv().expect("the reset");
        assert!(next.reset);
        assert!(
            feed.subscribe(20).reset,
            "the install dropped what came before"
        );
    }

    #[test]
    fn closing_ends_live_readers_and_new_ones() {
        let feed = DirectoryFeed::new();
        feed.applied(1, vec![]);
        let mut sub = feed.subscribe(1);
        feed.close();
        assert!(matches!(
            sub.live.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        let mut late = feed.subscribe(1);
        assert!(matches!(
            late.live.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn before_any_batch_a_resume_point_is_not_covered() {
        let feed = DirectoryFeed::new();
        assert!(feed.subscribe(7).reset);
        feed.applied(9, vec![]);
        assert!(!feed.subscribe(8).reset);
        assert!(feed.subscribe(7).reset);
    }
}
