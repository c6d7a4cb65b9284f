//! The Kubernetes side: watch the store's StatefulSet and its pods, and on every change
//! (and every resync period) observe, [`decide`], execute one change, and repeat.
//!
//! Two kube-runtime watchers feed reflector caches (the StatefulSet by name, the pods by
//! label selector), so a decision always reads a complete, current view instead of reacting
//! to single events; an event only says "look again". The watchers are driven in the same
//! task as the reconcile loop but concurrently with it (`select!`), so the caches keep up
//! while a membership change blocks on the store (a learner catching up can take minutes).
//! The periodic resync covers what no Kubernetes event announces: a learner's replication
//! progress, a leader election, a store that was unreachable.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;
use kube::runtime::{reflector, watcher, WatchStreamExt as _};
use kube::{Api, Client};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use tern_proto::tls::ClusterTls;
use tokio::sync::Notify;

use crate::decide::{decide, Action, Observed, PeerNaming, PodState, Policy};
use crate::store::{cluster_state, StoreAdmin};

/// Most changes made in one reconcile before waiting for the next event or resync: each
/// change is followed by a fresh observation, and a scale-up by N needs 2N changes.
const MAX_CHANGES_PER_RECONCILE: usize = 16;

/// What the controller needs to know; see `tern-controller run --help` for each flag.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The StatefulSet, its headless Service and namespace, and the peer port.
    pub naming: PeerNaming,
    /// Label selector of the store pods (the StatefulSet's selector); `None` watches every
    /// pod of the namespace and keeps those named `<statefulset>-<ordinal>`.
    pub pod_selector: Option<String>,
    /// Any store node's gRPC URL (the headless Service name reaches one of them).
    pub store_endpoint: String,
    /// A learner is promoted once at most this many entries behind the leader.
    pub max_lag: u64,
    /// Observe and decide at least this often, even without a Kubernetes event.
    pub resync: Duration,
    /// Deadline of a Status call.
    pub call_timeout: Duration,
    /// Deadline of a membership change (AddNode blocks until the learner caught up).
    pub change_timeout: Duration,
}

/// The controller's Prometheus metrics, registered in tern-telemetry's registry (served on
/// `/metrics`) so an operator can alert on a controller that keeps failing.
struct Metrics {
    changes: IntCounterVec,
    errors: IntCounter,
    desired: IntGauge,
    voters: IntGauge,
    learners: IntGauge,
}

impl Metrics {
    fn new() -> anyhow::Result<Self> {
        let m = Self {
            changes: IntCounterVec::new(
                Opts::new(
                    "tern_controller_membership_changes_total",
                    "Raft membership changes made by the controller, by action",
                ),
                &["action"],
            )?,
            errors: IntCounter::new(
                "tern_controller_reconcile_errors_total",
                "Reconcile steps that failed (store unreachable, change refused or timed out)",
            )?,
            desired: IntGauge::new(
                "tern_controller_desired_replicas",
                "spec.replicas of the store StatefulSet",
            )?,
            voters: IntGauge::new("tern_controller_voters", "Raft voters seen on the leader")?,
            learners: IntGauge::new(
                "tern_controller_learners",
                "Raft learners seen on the leader",
            )?,
        };
        let registry = tern_telemetry::metrics::registry();
        // Registering twice (a second controller in one test process) is harmless: the
        // first set keeps being served.
        let _ = registry.register(Box::new(m.changes.clone()));
        let _ = registry.register(Box::new(m.errors.clone()));
        let _ = registry.register(Box::new(m.desired.clone()));
        let _ = registry.register(Box::new(m.voters.clone()));
        let _ = registry.register(Box::new(m.learners.clone()));
        Ok(m)
    }
}

/// The running controller's state.
struct Controller {
    settings: Settings,
    policy: Policy,
    statefulsets: Store<StatefulSet>,
    pods: Store<Pod>,
    store: StoreAdmin,
    metrics: Metrics,
}

/// Converts a pod into what [`decide`] looks at; `None` for pods not of the StatefulSet.
pub fn pod_state(naming: &PeerNaming, pod: &Pod) -> Option<PodState> {
    let ordinal = naming.ordinal_of_pod(pod.metadata.name.as_deref()?)?;
    let status = pod.status.as_ref();
    let phase_running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let started = !containers.is_empty()
        && containers.iter().all(|c| {
            c.started == Some(true) || c.state.as_ref().is_some_and(|s| s.running.is_some())
        });
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(PodState {
        ordinal,
        running: phase_running && started,
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
    })
}

impl Controller {
    /// Reads the caches and the leader's Status. `Ok(None)`: the StatefulSet does not exist.
    async fn observe(&self) -> anyhow::Result<Option<(Observed, Option<String>)>> {
        let naming = &self.settings.naming;
        let Some(sts) = self
            .statefulsets
            .state()
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some(naming.statefulset.as_str()))
        else {
            return Ok(None);
        };
        // Kubernetes defaults an unset spec.replicas to 1.
        let desired = sts
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .map_or(1, |r| u32::try_from(r).unwrap_or(0));
        let pods: Vec<PodState> = self
            .pods
            .state()
            .iter()
            .filter_map(|p| pod_state(naming, p))
            .collect();
        let (cluster, leader_url) = match self
            .store
            .leader_status(&self.settings.store_endpoint)
            .await
        {
            Ok(Some((url, status))) => (Some(cluster_state(&status)), Some(url)),
            Ok(None) => (None, None),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the store's membership");
                self.metrics.errors.inc();
                (None, None)
            }
        };
        self.metrics.desired.set(i64::from(desired));
        if let Some(c) = &cluster {
            let voters = c.members.iter().filter(|m| m.voter).count();
            self.metrics.voters.set(voters as i64);
            self.metrics.learners.set((c.members.len() - voters) as i64);
        }
        Ok(Some((
            Observed {
                desired,
                pods,
                cluster,
            },
            leader_url,
        )))
    }

    /// Observe, decide, execute, until nothing is left to do (or a change fails).
    async fn reconcile(&self) {
        for _ in 0..MAX_CHANGES_PER_RECONCILE {
            let (observed, leader_url) = match self.observe().await {
                Ok(Some(o)) => o,
                Ok(None) => {
                    tracing::warn!(statefulset = %self.settings.naming.statefulset, "StatefulSet not found");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "observation failed");
                    return;
                }
            };
            let Some(action) = decide(&observed, &self.policy).into_iter().next() else {
                return;
            };
            let Some(leader_url) = leader_url else {
                return;
            };
            tracing::info!(?action, desired = observed.desired, "membership change");
            let label = match action {
                Action::AddLearner { .. } => "add_learner",
                Action::Promote { .. } => "promote",
                Action::Remove { .. } => "remove",
            };
            match self.store.execute(&leader_url, &action).await {
                Ok(()) => {
                    self.metrics.changes.with_label_values(&[label]).inc();
                    tracing::info!(?action, "membership change done");
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    tracing::warn!(?action, error = %format!("{e:#}"), "membership change failed; will look again");
                    return;
                }
            }
        }
    }
}

/// Runs the controller until the watches fail for good (they retry with back-off, so in
/// practice until the future is dropped). Marks `health` ready once both caches are filled.
/// `tls` is the controller role's certificate, presented to the store (mutual TLS).
///
/// # Errors
///
/// Only if the metrics cannot be created or the watch streams end.
pub async fn run(
    client: Client,
    settings: Settings,
    tls: Arc<ClusterTls>,
    health: tern_telemetry::Health,
) -> anyhow::Result<()> {
    let naming = settings.naming.clone();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &naming.namespace);
    let pod_api: Api<Pod> = Api::namespaced(client, &naming.namespace);
    let (statefulsets, sts_writer) = reflector::store();
    let (pods, pod_writer) = reflector::store();
    let sts_config =
        watcher::Config::default().fields(&format!("metadata.name={}", naming.statefulset));
    let pod_config = match &settings.pod_selector {
        Some(sel) => watcher::Config::default().labels(sel),
        None => watcher::Config::default(),
    };
    let sts_events = reflector(sts_writer, watcher(sts_api, sts_config))
        .default_backoff()
        .map(|r| r.map(|_| ()));
    let pod_events = reflector(pod_writer, watcher(pod_api, pod_config))
        .default_backoff()
        .map(|r| r.map(|_| ()));
    let mut events = futures::stream::select(sts_events, pod_events).boxed();

    let changed = Arc::new(Notify::new());
    let notify = changed.clone();
    let drive = async move {
        while let Some(ev) = events.next().await {
            if let Err(e) = ev {
                tracing::warn!(error = %e, "watch error (retrying)");
            }
            notify.notify_one();
        }
        Err::<(), anyhow::Error>(anyhow::anyhow!("the Kubernetes watch streams ended"))
    };

    let controller = Controller {
        policy: Policy {
            max_lag: settings.max_lag,
            naming: naming.clone(),
        },
        store: StoreAdmin::new(tls, settings.call_timeout, settings.change_timeout),
        metrics: Metrics::new()?,
        statefulsets,
        pods,
        settings,
    };
    let work = reconcile_loop(&controller, &changed, &health);
    tokio::select! {
        r = drive => r,
        r = work => r,
    }
}

/// Waits for both caches, marks the controller ready, then reconciles on every change
/// notification and every resync tick, forever.
async fn reconcile_loop(
    controller: &Controller,
    changed: &Notify,
    health: &tern_telemetry::Health,
) -> anyhow::Result<()> {
    controller.statefulsets.wait_until_ready().await?;
    controller.pods.wait_until_ready().await?;
    health.set_ready(true);
    let naming = &controller.settings.naming;
    tracing::info!(statefulset = %naming.statefulset, namespace = %naming.namespace, "watching; reconciling membership");
    let mut tick = tokio::time::interval(controller.settings.resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = tick.tick() => {}
        }
        controller.reconcile().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn naming() -> PeerNaming {
        PeerNaming {
            statefulset: "tern-store".into(),
            service: "tern-store".into(),
            namespace: "mail".into(),
            cluster_domain: "cluster.local".into(),
            port: 7100,
        }
    }

    fn pod(name: &str, phase: &str, started: bool, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "store".into(),
                    started: Some(started),
                    ..Default::default()
                }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_states() {
        let n = naming();
        let s = pod_state(&n, &pod("tern-store-2", "Running", true, true));
        assert_eq!(
            s,
            Some(PodState {
                ordinal: 2,
                running: true,
                ready: true,
                terminating: false
            })
        );
        let s = pod_state(&n, &pod("tern-store-3", "Running", false, false));
        assert_eq!(s.map(|s| s.running), Some(false));
        let s = pod_state(&n, &pod("tern-store-3", "Pending", true, false));
        assert_eq!(s.map(|s| s.running), Some(false));
        assert_eq!(
            pod_state(&n, &pod("tern-smtp-abc", "Running", true, true)),
            None
        );
        let mut p = pod("tern-store-4", "Running", true, true);
        p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(pod_state(&n, &p).map(|s| s.terminating), Some(true));
        assert_eq!(pod_state(&n, &Pod::default()), None);
    }
}
