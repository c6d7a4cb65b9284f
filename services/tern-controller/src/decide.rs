//! The membership policy: a pure function from what the controller observed (the
//! StatefulSet's size, its pods, the store's Raft membership) to the next membership change.
//!
//! Kept free of I/O so that every rule below is unit-tested on plain values, and so that the
//! Kubernetes and gRPC code around it ([`crate::controller`]) only observes and executes.
//!
//! # Identity
//!
//! Pod `<statefulset>-N` is Raft node `N + 1` (the chart's `tern.storeConfig`:
//! `id = ordinal + 1`) at `<statefulset>-N.<headless-service>.<namespace>.svc.<cluster-domain>:7100`
//! (the chart's `tern.storePeer`). [`PeerNaming`] produces exactly those addresses: the initial
//! members are registered under them, and a node added under another spelling would be a
//! second name for the same peer.
//!
//! # Rules, in the order they are tried (the first that applies is the step's one change)
//!
//! 0. **No leader known, no change.** Membership changes go through the leader, and without
//!    one the controller cannot read replication progress either (only the leader tracks
//!    it). This also covers "store unreachable".
//! 1. **Drop learners that should not exist** (ordinal ≥ desired replicas): a learner has no
//!    vote, so removing it never affects a quorum. Highest ordinal first.
//! 2. **Promote a caught-up learner** whose pod is wanted (ordinal < desired), Ready and not
//!    terminating, once its lag (`leader last_log_index - learner matched index`) is at most
//!    [`Policy::max_lag`], and only if the live voters stay a majority of the grown voter set
//!    (they always do when the learner itself is live and they were a majority before; the
//!    check makes that explicit). A learner knows the leader, so its pod can be Ready.
//! 3. **Add a learner for a wanted pod that is not a member** (ordinal < desired, running,
//!    not terminating). Not "Ready": the store reports Ready only once it knows a Raft leader,
//!    which a node outside the cluster never does, so waiting for Ready would wait forever.
//!    A learner has no vote, so this is always safe; it catches up from the leader (by
//!    snapshot if the log was purged) before rule 2 promotes it.
//! 4. **Remove a voter that should not exist** (ordinal ≥ desired, the scale-down case), one
//!    at a time, highest ordinal first, and only if afterwards (a) at least one voter is left
//!    and (b) the live voters are a majority of the remaining voter set. If the highest one
//!    fails (b), the next highest is tried: removing a dead voter can restore the margin that
//!    removing a live one needs.
//!
//! What the rules never do: touch a voter whose ordinal is < desired, however unhealthy its
//! pod. A not-ready voter inside the wanted range is a failed node; removing it would shrink
//! the quorum behind the operator's back, and it is the operator's call (`ternctl cluster
//! remove-node`) whether it comes back or is replaced.
//!
//! # Liveness ("alive")
//!
//! A voter counts as alive for the majority checks when its pod exists and is Ready. For a
//! wanted pod (ordinal < desired) it must also not be terminating: it is about to go down
//! (rolling restart, eviction). An unwanted pod (ordinal ≥ desired) that is terminating but
//! still Ready does count: the store's preStop hook (`tern-controller wait-removed`) holds it
//! up until it has been removed from the membership, which is what lets 5 → 3 or 3 → 1 shrink
//! one voter at a time while every voter still answers.
//!
//! # One change per step
//!
//! Raft applies configuration changes one after another anyway, and every change alters the
//! inputs of the next decision (a removed voter changes the majority arithmetic), so
//! [`decide`] returns at most one action; the caller executes it, observes again and asks
//! again.

use std::collections::{BTreeMap, BTreeSet};

/// A Raft node id (the store's `u64`).
pub type NodeId = u64;

/// The Raft id of the pod with this StatefulSet ordinal (`ordinal + 1`, as the chart
/// configures the store: 0 is not a valid openraft-node id in Tern).
pub fn node_id(ordinal: u32) -> NodeId {
    u64::from(ordinal) + 1
}

/// The StatefulSet ordinal of a Raft id, or `None` for 0 or ids beyond any ordinal (a node
/// added by hand under an id the StatefulSet cannot have).
pub fn ordinal_of(id: NodeId) -> Option<u32> {
    id.checked_sub(1).and_then(|o| u32::try_from(o).ok())
}

/// How a store pod is addressed by its peers; must match the chart's `tern.storePeer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerNaming {
    /// The StatefulSet's name (pod names are `<statefulset>-<ordinal>`).
    pub statefulset: String,
    /// The headless Service that gives the pods their DNS names.
    pub service: String,
    /// The namespace of both.
    pub namespace: String,
    /// The cluster's DNS suffix (`cluster.local` by default).
    pub cluster_domain: String,
    /// The store's gRPC (API and Raft) port.
    pub port: u16,
}

impl PeerNaming {
    /// The pod name of an ordinal.
    pub fn pod_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.statefulset)
    }

    /// The `host:port` the store knows this ordinal's node by (no scheme: the store's Raft
    /// membership keeps bare `host:port` addresses).
    pub fn addr(&self, ordinal: u32) -> String {
        format!(
            "{}.{}.{}.svc.{}:{}",
            self.pod_name(ordinal),
            self.service,
            self.namespace,
            self.cluster_domain,
            self.port
        )
    }

    /// The ordinal of a pod of this StatefulSet, or `None` for a pod that is not one
    /// (`<statefulset>-<digits>` only, so `tern-store-extra-0` is not pod "extra-0").
    pub fn ordinal_of_pod(&self, pod_name: &str) -> Option<u32> {
        let rest = pod_name
            .strip_prefix(&self.statefulset)?
            .strip_prefix('-')?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest.parse().ok()
    }
}

/// What the controller knows about one pod of the StatefulSet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodState {
    /// Its StatefulSet ordinal.
    pub ordinal: u32,
    /// Phase Running with every container started: the store process is up (it may not be
    /// Ready yet, which for the store means "knows a Raft leader").
    pub running: bool,
    /// The pod's Ready condition is True.
    pub ready: bool,
    /// It has a deletion timestamp (scale-down, rolling update, eviction, delete).
    pub terminating: bool,
}

/// One Raft member as the leader reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberState {
    /// Raft node id.
    pub id: NodeId,
    /// Voter (true) or learner (false).
    pub voter: bool,
    /// The last log index known to be on that node (the leader's replication progress).
    pub last_applied: u64,
}

/// The store's membership, read from the leader.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClusterState {
    /// The leader's id, `None` when no leader is known.
    pub leader: Option<NodeId>,
    /// The leader's last log index: what a learner must have to be caught up.
    pub last_log_index: u64,
    /// Every member, voters and learners.
    pub members: Vec<MemberState>,
}

/// Everything [`decide`] looks at.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Observed {
    /// `spec.replicas` of the StatefulSet: ordinals `0..desired` are wanted.
    pub desired: u32,
    /// The pods that exist (any order).
    pub pods: Vec<PodState>,
    /// The membership, `None` when the store could not be read.
    pub cluster: Option<ClusterState>,
}

/// Tunables of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// A learner is promoted once it is at most this many log entries behind the leader.
    pub max_lag: u64,
    /// How to address a pod's node.
    pub naming: PeerNaming,
}

/// One membership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `AddNode{id, addr, learner_only: true}`: join without a vote and catch up.
    AddLearner {
        /// Raft id (ordinal + 1).
        id: NodeId,
        /// `host:port` from [`PeerNaming::addr`].
        addr: String,
    },
    /// `AddNode{id, addr, learner_only: false}` on an existing learner: make it a voter.
    Promote {
        /// Raft id of the learner.
        id: NodeId,
        /// Its address (AddNode needs one; it does not change an existing node's address).
        addr: String,
    },
    /// `RemoveNode{id}`: leave the voters (if one) and the cluster.
    Remove {
        /// Raft id of the member.
        id: NodeId,
    },
}

/// Whether `alive` of the voter set `voters` is a Raft majority of it.
fn is_majority(voters: &BTreeSet<NodeId>, alive: impl Fn(NodeId) -> bool) -> bool {
    let live = voters.iter().filter(|id| alive(**id)).count();
    live > voters.len() / 2
}

/// The next membership change, if any (at most one; see the module docs for the rules).
pub fn decide(observed: &Observed, policy: &Policy) -> Vec<Action> {
    decide_one(observed, policy).into_iter().collect()
}

fn decide_one(observed: &Observed, policy: &Policy) -> Option<Action> {
    // Rule 0.
    let cluster = observed.cluster.as_ref()?;
    cluster.leader?;
    let desired = observed.desired;
    let pods: BTreeMap<u32, PodState> = observed.pods.iter().map(|p| (p.ordinal, *p)).collect();
    let wanted = |id: NodeId| ordinal_of(id).is_some_and(|o| o < desired);
    let alive = |id: NodeId| {
        let Some(ordinal) = ordinal_of(id) else {
            return false;
        };
        match pods.get(&ordinal) {
            None => false,
            Some(p) if ordinal < desired => p.ready && !p.terminating,
            Some(p) => p.ready,
        }
    };
    let voters: BTreeSet<NodeId> = cluster
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    let mut learners: Vec<&MemberState> = cluster.members.iter().filter(|m| !m.voter).collect();
    learners.sort_by_key(|m| m.id);

    // Rule 1: unwanted learners, highest first.
    if let Some(m) = learners.iter().rev().find(|m| !wanted(m.id)) {
        return Some(Action::Remove { id: m.id });
    }

    // Rule 2: caught-up, live learners in the wanted range, lowest first.
    for m in &learners {
        let Some(ordinal) = ordinal_of(m.id) else {
            continue;
        };
        let live_pod = pods
            .get(&ordinal)
            .is_some_and(|p| p.running && p.ready && !p.terminating);
        let lag = cluster.last_log_index.saturating_sub(m.last_applied);
        if !live_pod || lag > policy.max_lag {
            continue;
        }
        let mut grown = voters.clone();
        grown.insert(m.id);
        if is_majority(&grown, alive) {
            return Some(Action::Promote {
                id: m.id,
                addr: policy.naming.addr(ordinal),
            });
        }
    }

    // Rule 3: wanted, running pods that are not members yet, lowest first.
    let members: BTreeSet<NodeId> = cluster.members.iter().map(|m| m.id).collect();
    for p in pods.values() {
        if p.ordinal < desired
            && p.running
            && !p.terminating
            && !members.contains(&node_id(p.ordinal))
        {
            return Some(Action::AddLearner {
                id: node_id(p.ordinal),
                addr: policy.naming.addr(p.ordinal),
            });
        }
    }

    // Rule 4: unwanted voters, highest first, while a live majority remains.
    for id in voters.iter().rev().filter(|id| !wanted(**id)) {
        let mut rest = voters.clone();
        rest.remove(id);
        if !rest.is_empty() && is_majority(&rest, alive) {
            return Some(Action::Remove { id: *id });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_lag: 10,
            naming: PeerNaming {
                statefulset: "tern-store".into(),
                service: "tern-store".into(),
                namespace: "mail".into(),
                cluster_domain: "cluster.local".into(),
                port: 7100,
            },
        }
    }

    fn pod(ordinal: u32) -> PodState {
        PodState {
            ordinal,
            running: true,
            ready: true,
            terminating: false,
        }
    }

    fn voter(id: NodeId) -> MemberState {
        MemberState {
            id,
            voter: true,
            last_applied: 100,
        }
    }

    fn learner(id: NodeId, last_applied: u64) -> MemberState {
        MemberState {
            id,
            voter: false,
            last_applied,
        }
    }

    fn observed(desired: u32, pods: Vec<PodState>, members: Vec<MemberState>) -> Observed {
        Observed {
            desired,
            pods,
            cluster: Some(ClusterState {
                leader: Some(1),
                last_log_index: 100,
                members,
            }),
        }
    }

    fn pods(ordinals: std::ops::Range<u32>) -> Vec<PodState> {
        ordinals.map(pod).collect()
    }

    fn voters(ids: std::ops::RangeInclusive<NodeId>) -> Vec<MemberState> {
        ids.map(voter).collect()
    }

    fn add(id: NodeId) -> Action {
        Action::AddLearner {
            id,
            addr: policy().naming.addr(ordinal_of(id).unwrap_or_default()),
        }
    }

    fn promote(id: NodeId) -> Action {
        Action::Promote {
            id,
            addr: policy().naming.addr(ordinal_of(id).unwrap_or_default()),
        }
    }

    #[test]
    fn naming_matches_the_chart() {
        let n = policy().naming;
        assert_eq!(
            n.addr(3),
            "tern-store-3.tern-store.mail.svc.cluster.local:7100"
        );
        assert_eq!(n.pod_name(0), "tern-store-0");
        assert_eq!(n.ordinal_of_pod("tern-store-12"), Some(12));
        assert_eq!(n.ordinal_of_pod("tern-store-"), None);
        assert_eq!(n.ordinal_of_pod("tern-store-extra-0"), None);
        assert_eq!(n.ordinal_of_pod("tern-store-1a"), None);
        assert_eq!(n.ordinal_of_pod("tern-storage-1"), None);
        assert_eq!(n.ordinal_of_pod("tern-store-+1"), None);
        assert_eq!(node_id(0), 1);
        assert_eq!(ordinal_of(1), Some(0));
        assert_eq!(ordinal_of(0), None);
    }

    #[test]
    fn steady_state_does_nothing() {
        let o = observed(3, pods(0..3), voters(1..=3));
        assert_eq!(decide(&o, &policy()), vec![]);
    }

    #[test]
    fn no_leader_or_no_store_means_no_change() {
        let mut o = observed(5, pods(0..5), voters(1..=3));
        if let Some(c) = o.cluster.as_mut() {
            c.leader = None;
        }
        assert_eq!(decide(&o, &policy()), vec![]);
        o.cluster = None;
        assert_eq!(decide(&o, &policy()), vec![]);
        // Scale-down without a leader: nothing either.
        let mut o = observed(3, pods(0..5), voters(1..=5));
        if let Some(c) = o.cluster.as_mut() {
            c.leader = None;
        }
        assert_eq!(decide(&o, &policy()), vec![]);
    }

    #[test]
    fn scale_up_adds_running_pods_as_learners_lowest_first() {
        let mut ps = pods(0..5);
        // The store is Ready only once it knows a leader: a new pod is running, not ready.
        ps[3].ready = false;
        ps[4].ready = false;
        let o = observed(5, ps, voters(1..=3));
        assert_eq!(decide(&o, &policy()), vec![add(4)]);
    }

    #[test]
    fn pods_not_running_or_terminating_are_not_added() {
        let mut ps = pods(0..5);
        ps[3].running = false;
        ps[3].ready = false;
        ps[4].terminating = true;
        let o = observed(5, ps, voters(1..=3));
        assert_eq!(decide(&o, &policy()), vec![]);
    }

    #[test]
    fn pods_beyond_desired_are_not_added() {
        // The StatefulSet says 3; pod 3 still exists (being deleted or not yet).
        let o = observed(3, pods(0..4), voters(1..=3));
        assert_eq!(decide(&o, &policy()), vec![]);
    }

    #[test]
    fn caught_up_learner_is_promoted_before_more_learners_join() {
        let mut ps = pods(0..5);
        ps[4].ready = false;
        let mut members = voters(1..=3);
        members.push(learner(4, 95));
        let o = observed(5, ps, members);
        assert_eq!(decide(&o, &policy()), vec![promote(4)]);
    }

    #[test]
    fn lagging_learner_waits_and_other_pods_still_join() {
        let mut ps = pods(0..5);
        ps[4].ready = false;
        let mut members = voters(1..=3);
        members.push(learner(4, 50)); // 50 behind, max_lag 10
        let o = observed(5, ps, members);
        assert_eq!(decide(&o, &policy()), vec![add(5)]);
    }

    #[test]
    fn learner_lag_boundary() {
        let mut members = voters(1..=3);
        members.push(learner(4, 90)); // exactly max_lag behind
        let o = observed(4, pods(0..4), members);
        assert_eq!(decide(&o, &policy()), vec![promote(4)]);
    }

    #[test]
    fn learner_whose_pod_is_not_ready_or_gone_is_not_promoted() {
        let mut ps = pods(0..4);
        ps[3].ready = false;
        let mut members = voters(1..=3);
        members.push(learner(4, 100));
        let o = observed(4, ps, members.clone());
        assert_eq!(decide(&o, &policy()), vec![]);
        let o = observed(4, pods(0..3), members.clone());
        assert_eq!(decide(&o, &policy()), vec![]);
        let mut ps = pods(0..4);
        ps[3].terminating = true;
        let o = observed(4, ps, members);
        assert_eq!(decide(&o, &policy()), vec![]);
    }

    #[test]
    fn promotion_needs_a_live_majority_of_the_grown_set() {
        // 3 voters, two of them down (a leader can linger briefly): 2 live of 4 is no majority.
        let mut ps = pods(0..4);
        ps[1].ready = false;
        ps[2].ready = false;
        let mut members = voters(1..=3);
        members.push(learner(4, 100));
        let o = observed(4, ps, members);
        assert_eq!(decide(&o, &policy()), vec![]);
        // One voter down: 3 live of 4 is a majority.
        let mut ps = pods(0..4);
        ps[2].ready = false;
        let mut members = voters(1..=3);
        members.push(learner(4, 100));
        let o = observed(4, ps, members);
        assert_eq!(decide(&o, &policy()), vec![promote(4)]);
    }

    #[test]
    fn unwanted_learners_are_removed_first_highest_first() {
        let mut members = voters(1..=3);
        members.push(learner(4, 0));
        members.push(learner(5, 0));
        let o = observed(3, pods(0..5), members);
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 5 }]);
    }

    #[test]
    fn scale_down_removes_the_highest_voter_first() {
        let mut ps = pods(0..5);
        ps[3].terminating = true;
        ps[4].terminating = true;
        let o = observed(3, ps.clone(), voters(1..=5));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 5 }]);
        let o = observed(3, ps, voters(1..=4));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 4 }]);
    }

    #[test]
    fn scale_down_before_the_pods_terminate() {
        // The StatefulSet shrank; its controller has not deleted the pods yet.
        let o = observed(3, pods(0..5), voters(1..=5));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 5 }]);
    }

    #[test]
    fn scale_down_after_the_pods_are_gone() {
        // The preStop hook timed out and the pods went: remove the dead voters.
        let o = observed(3, pods(0..3), voters(1..=5));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 5 }]);
        let o = observed(3, pods(0..3), voters(1..=4));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 4 }]);
    }

    #[test]
    fn scale_down_to_one_voter_steps_through_terminating_but_ready_pods() {
        let mut ps = pods(0..3);
        ps[1].terminating = true;
        ps[2].terminating = true;
        let o = observed(1, ps.clone(), voters(1..=3));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 3 }]);
        let o = observed(1, ps.clone(), voters(1..=2));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 2 }]);
        let o = observed(1, ps, voters(1..=1));
        assert_eq!(decide(&o, &policy()), vec![]);
    }

    #[test]
    fn never_below_one_voter() {
        // Scaled to zero: the learners go, the last voter stays.
        let mut members = voters(1..=1);
        members.push(learner(2, 0));
        let o = observed(0, pods(0..2), members);
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 2 }]);
        let o = observed(0, pods(0..1), voters(1..=1));
        assert_eq!(decide(&o, &policy()), vec![]);
        // Two voters, scaled to zero: the higher goes, the last stays.
        let o = observed(0, pods(0..2), voters(1..=2));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 2 }]);
    }

    #[test]
    fn removal_needs_a_live_majority_afterwards() {
        // 5 → 3 while voter 2 (wanted) is down and voter 4's pod (unwanted) is gone.
        // Removing 5 leaves {1,2,3,4} with 1 and 3 live: no majority. Removing the dead 4
        // leaves {1,2,3,5} with 1, 3, 5 live: fine, and then 5 can go.
        let mut ps: Vec<PodState> = [0, 1, 2, 4].into_iter().map(pod).collect();
        ps[1].ready = false;
        ps[3].terminating = true;
        let o = observed(3, ps.clone(), voters(1..=5));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 4 }]);
        let members: Vec<MemberState> = [1, 2, 3, 5].into_iter().map(voter).collect();
        let o = observed(3, ps, members);
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 5 }]);
    }

    #[test]
    fn removal_refused_when_it_would_lose_the_majority() {
        // 3 → 1 with voter 1 up, pods 1 and 2 not ready: {1,2} would have 1 live of 2.
        let mut ps = pods(0..3);
        ps[1].ready = false;
        ps[2].ready = false;
        let o = observed(1, ps, voters(1..=3));
        assert_eq!(decide(&o, &policy()), vec![]);
    }

    #[test]
    fn wanted_terminating_voters_do_not_count_as_alive() {
        // 5 → 3 during a rolling restart of pod 2 (wanted, terminating): removing 5 leaves
        // {1,2,3,4} with 1, 2 and 4 (unwanted, held up by its preStop hook) live: 3 of 4.
        let mut ps = pods(0..5);
        ps[2].terminating = true;
        ps[3].terminating = true;
        ps[4].terminating = true;
        let o = observed(3, ps.clone(), voters(1..=5));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 5 }]);
        // And then {1,2,3} would have 1 and 2 live: still a majority.
        let o = observed(3, ps.clone(), voters(1..=4));
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 4 }]);
        // With pod 1 also restarting, {1,2,3} would have only 1 live: wait.
        ps[1].terminating = true;
        let o = observed(3, ps, voters(1..=4));
        assert_eq!(decide(&o, &policy()), vec![]);
    }

    #[test]
    fn failed_wanted_voters_are_left_alone() {
        let mut ps = pods(0..3);
        ps[2].ready = false;
        ps[2].running = false;
        let o = observed(3, ps.clone(), voters(1..=3));
        assert_eq!(decide(&o, &policy()), vec![]);
        // Even with its pod deleted.
        let o = observed(3, pods(0..2), voters(1..=3));
        assert_eq!(decide(&o, &policy()), vec![]);
    }

    #[test]
    fn foreign_members_outside_the_range_are_removed_like_scale_down() {
        // A node added by hand as id 9 (no such pod): it is not wanted by the StatefulSet.
        let mut members = voters(1..=3);
        members.push(voter(9));
        let o = observed(3, pods(0..3), members);
        assert_eq!(decide(&o, &policy()), vec![Action::Remove { id: 9 }]);
    }

    #[test]
    fn at_most_one_action() {
        let mut ps = pods(0..7);
        for p in &mut ps[3..] {
            p.ready = false;
        }
        let o = observed(7, ps, voters(1..=3));
        assert_eq!(decide(&o, &policy()).len(), 1);
    }

    /// Walks a whole scale-up and scale-down through `decide`, applying each action to a
    /// modelled cluster, and checks the live-majority invariant after every change.
    #[test]
    fn simulated_scale_up_and_down_keeps_a_live_majority() {
        fn step(o: &mut Observed) -> Option<Action> {
            let action = decide(o, &policy()).into_iter().next()?;
            let c = o.cluster.as_mut()?;
            match &action {
                Action::AddLearner { id, .. } => c.members.push(learner(*id, 0)),
                Action::Promote { id, .. } => c
                    .members
                    .iter_mut()
                    .filter(|m| m.id == *id)
                    .for_each(|m| m.voter = true),
                Action::Remove { id } => c.members.retain(|m| m.id != *id),
            }
            // Learners catch up; their pods become Ready once they are members.
            for m in &mut c.members {
                m.last_applied = c.last_log_index;
                if let Some(p) = o
                    .pods
                    .iter_mut()
                    .find(|p| Some(p.ordinal) == ordinal_of(m.id))
                {
                    p.ready = true;
                }
            }
            let voters: BTreeSet<NodeId> =
                c.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
            let live = voters
                .iter()
                .filter(|id| {
                    o.pods
                        .iter()
                        .any(|p| Some(p.ordinal) == ordinal_of(**id) && p.ready)
                })
                .count();
            assert!(live > voters.len() / 2, "{voters:?} after {action:?}");
            Some(action)
        }
        let mut o = observed(3, pods(0..3), voters(1..=3));
        o.desired = 5;
        o.pods.extend([3, 4].map(|i| PodState {
            ready: false,
            ..pod(i)
        }));
        let mut n = 0;
        while step(&mut o).is_some() {
            n += 1;
            assert!(n < 20);
        }
        let c = o.cluster.clone().unwrap_or_default();
        assert_eq!(c.members.iter().filter(|m| m.voter).count(), 5);
        assert_eq!(n, 4); // two adds, two promotions
        o.desired = 3;
        for p in &mut o.pods[3..] {
            p.terminating = true;
        }
        while step(&mut o).is_some() {
            n += 1;
            assert!(n < 20);
        }
        let c = o.cluster.unwrap_or_default();
        let ids: Vec<NodeId> = c.members.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(c.members.iter().all(|m| m.voter));
    }
}
