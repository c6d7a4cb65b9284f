//! `tern-controller wait-removed`: the store pods' preStop hook, so that a pod removed by a
//! scale-down leaves the Raft membership before it stops.
//!
//! Kubernetes runs a container's preStop hook before it sends SIGTERM, and counts its time
//! against `terminationGracePeriodSeconds`. The hook is an exec of this binary (the store
//! image carries it; the images have no shell), so it has the container's environment:
//! `POD_NAME`, `POD_NAMESPACE`, `TERN_ENDPOINT`, and the store's cluster certificate at the
//! default paths of `--cluster-ca`/`--cluster-cert`/`--cluster-key` (which are the store's
//! too): it reads the membership as the `store` role, which every role may (cluster status).
//!
//! The hook runs on every termination, not only on scale-down (rolling updates, evictions,
//! `kubectl delete pod`), and a restarting pod must not wait. So it first reads the
//! StatefulSet's `spec.replicas` (the store pods' ServiceAccount may `get` that one
//! StatefulSet and nothing else): if this pod's ordinal is below it, the pod is coming back
//! and the hook returns at once. Otherwise it polls the leader's membership until this
//! node's id is gone (the controller removes it, see [`crate::decide`] rule 4), bounded by
//! its own deadline, which the chart sets below the grace period so the store still gets its
//! SIGTERM and time to stop cleanly. While it waits the node keeps serving Raft, which is
//! what lets the controller shrink the voters one at a time with every voter answering.
//!
//! It re-reads the StatefulSet on every poll: a scale-down that is reverted while the pod is
//! terminating ends the wait too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::{Api, Client};
use tern_proto::tls::ClusterTls;

use crate::decide::{node_id, PeerNaming};
use crate::store::StoreAdmin;

/// Consecutive Kubernetes API failures after which the hook stops waiting: a hook that
/// cannot tell should not hold every pod for the whole grace period.
const MAX_API_FAILURES: u32 = 5;

/// What [`wait_removed`] needs.
#[derive(Clone, Debug)]
pub struct WaitRemoved {
    /// The store StatefulSet's name.
    pub statefulset: String,
    /// Its namespace.
    pub namespace: String,
    /// This pod's name (`<statefulset>-<ordinal>`).
    pub pod_name: String,
    /// A store node's gRPC URL (the local node, `http://127.0.0.1:7100`; mutual TLS
    /// whatever the scheme says).
    pub endpoint: String,
    /// Give up after this long.
    pub timeout: Duration,
    /// Poll interval.
    pub poll: Duration,
}

/// How the wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The pod's ordinal is below `spec.replicas`: not a scale-down, nothing to wait for.
    Kept,
    /// The node is no longer a member.
    Removed,
    /// The StatefulSet is gone (uninstall): nothing will remove the node.
    StatefulSetGone,
    /// The deadline passed with the node still a member.
    TimedOut,
    /// The pod name is not `<statefulset>-<ordinal>` or the API kept failing.
    Unknown(String),
}

impl WaitOutcome {
    /// Whether the hook should exit 0. A non-zero exit makes the kubelet record a
    /// `FailedPreStopHook` event on the pod, which is where an operator looks.
    pub fn success(&self) -> bool {
        matches!(self, Self::Kept | Self::Removed | Self::StatefulSetGone)
    }
}

/// Waits as described in the module docs, reading the membership with `tls` (whatever
/// role its certificate names: the store pod's own in the chart).
pub async fn wait_removed(client: Client, tls: Arc<ClusterTls>, w: &WaitRemoved) -> WaitOutcome {
    let naming = PeerNaming {
        statefulset: w.statefulset.clone(),
        service: String::new(),
        namespace: w.namespace.clone(),
        cluster_domain: String::new(),
        port: 0,
    };
    let Some(ordinal) = naming.ordinal_of_pod(&w.pod_name) else {
        return WaitOutcome::Unknown(format!(
            "pod {:?} is not a pod of StatefulSet {:?}",
            w.pod_name, w.statefulset
        ));
    };
    let id = node_id(ordinal);
    let api: Api<StatefulSet> = Api::namespaced(client, &w.namespace);
    let store = StoreAdmin::new(tls, w.poll.max(Duration::from_secs(2)), w.poll);
    let deadline = Instant::now() + w.timeout;
    let mut api_failures = 0;
    loop {
        match api.get_opt(&w.statefulset).await {
            Ok(None) => return WaitOutcome::StatefulSetGone,
            Ok(Some(sts)) => {
                api_failures = 0;
                let replicas = sts.spec.and_then(|s| s.replicas).unwrap_or(1);
                if i64::from(ordinal) < i64::from(replicas) {
                    tracing::info!(ordinal, replicas, "not a scale-down: not waiting");
                    return WaitOutcome::Kept;
                }
                match store.is_member(&w.endpoint, id).await {
                    Ok(Some(false)) => {
                        tracing::info!(id, "no longer a Raft member");
                        return WaitOutcome::Removed;
                    }
                    Ok(_) => tracing::info!(id, replicas, "still a member; waiting for removal"),
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot read membership"),
                }
            }
            Err(e) => {
                api_failures += 1;
                tracing::warn!(error = %e, "cannot read the StatefulSet");
                if api_failures >= MAX_API_FAILURES {
                    return WaitOutcome::Unknown(format!("Kubernetes API: {e}"));
                }
            }
        }
        if Instant::now() + w.poll > deadline {
            return WaitOutcome::TimedOut;
        }
        tokio::time::sleep(w.poll).await;
    }
}
