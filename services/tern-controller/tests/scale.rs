//! The controller end to end against a fake Kubernetes API server and a fake store.
//!
//! - The fake API server (axum on 127.0.0.1:0) serves list, watch (JSON lines, with
//!   resourceVersions) and get of one apps/v1 StatefulSet and the v1 pods of namespace
//!   `mail`: exactly what kube's watcher and `Api::get_opt` ask for.
//! - A small simulation plays the StatefulSet controller and the kubelet: it creates pods
//!   for ordinals below `spec.replicas` (Pending, then Running), marks them Ready once their
//!   node is a Raft member (the store's own readiness rule), and on scale-down marks the
//!   pods above the size as terminating, runs the real preStop hook
//!   ([`tern_controller::prestop::wait_removed`]) for each, and deletes the pod when it
//!   returns.
//! - The fake store implements the Admin gRPC service on 127.0.0.1:0 and models the
//!   membership: voters, learners whose replication progress catches up over time, a growing
//!   log, and a record of every membership it ever had together with which voters' pods were
//!   alive at that moment. It serves mutual TLS with the `store` certificate and the
//!   store's authorization layer, as tern-store does; the controller calls it with the
//!   `controller` certificate and the preStop hooks with the `store` one, all from a
//!   development PKI made in a temporary directory.
//!
//! Scenario: 3 pods/3 voters → scale to 5 → 5 voters; → scale to 3 → voters {1,2,3}; at
//! every membership change the voters whose pods are alive are a majority of the voters.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tern_controller::controller::{run, Settings};
use tern_controller::decide::{Action, PeerNaming};
use tern_controller::prestop::{wait_removed, WaitOutcome, WaitRemoved};
use tern_controller::store::StoreAdmin;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::admin_server::{Admin, AdminServer};
use tern_proto::tls::ClusterTls;
use tern_trust::pki::{ensure_dev_pki, files};
use tern_trust::Role;
use tokio::sync::watch;
use tonic::{Request, Response as GrpcResponse, Status};

const NS: &str = "mail";
const STS: &str = "tern-store";
const MAX_LAG: u64 = 10;

fn naming() -> PeerNaming {
    PeerNaming {
        statefulset: STS.into(),
        service: STS.into(),
        namespace: NS.into(),
        cluster_domain: "cluster.local".into(),
        port: 7100,
    }
}

// ------------------------------------------------------------------------------ the world

#[derive(Clone, Debug)]
struct FakePod {
    running: bool,
    ready: bool,
    terminating: bool,
}

#[derive(Clone, Debug)]
struct Member {
    voter: bool,
    last_applied: u64,
}

/// One membership the fake store had, with the voters whose pods were alive then.
#[derive(Clone, Debug)]
struct Change {
    what: String,
    voters: BTreeSet<u64>,
    learners: BTreeSet<u64>,
    live_voters: BTreeSet<u64>,
}

#[derive(Default)]
struct World {
    // Kubernetes
    rv: u64,
    replicas: i32,
    sts_rv: u64,
    pods: BTreeMap<u32, (FakePod, u64)>,
    /// (resourceVersion, collection, event type, object)
    events: Vec<(u64, &'static str, &'static str, Value)>,
    unexpected: Vec<String>,
    // store
    last_log_index: u64,
    members: BTreeMap<u64, Member>,
    history: Vec<Change>,
    bad_requests: Vec<String>,
    // preStop outcomes by ordinal
    prestop: BTreeMap<u32, WaitOutcome>,
}

type Shared = Arc<(Mutex<World>, watch::Sender<u64>)>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, World> {
    match shared.0.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl World {
    fn sts_json(&self) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": STS, "namespace": NS, "uid": "sts-uid", "resourceVersion": self.sts_rv.to_string()},
            "spec": {
                "replicas": self.replicas,
                "serviceName": STS,
                "selector": {"matchLabels": {"app.kubernetes.io/component": "store"}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/component": "store"}},
                    "spec": {"containers": [{"name": "store"}]}
                }
            }
        })
    }

    fn pod_json(ordinal: u32, pod: &FakePod, rv: u64) -> Value {
        let mut meta = json!({
            "name": format!("{STS}-{ordinal}"),
            "namespace": NS,
            "uid": format!("pod-uid-{ordinal}"),
            "resourceVersion": rv.to_string(),
            "labels": {"app.kubernetes.io/component": "store"}
        });
        if pod.terminating {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"containers": [{"name": "store"}]},
            "status": {
                "phase": if pod.running { "Running" } else { "Pending" },
                "containerStatuses": [{
                    "name": "store", "image": "tern-store:0.1.0", "imageID": "", "restartCount": 0,
                    "ready": pod.ready, "started": pod.running
                }],
                "conditions": [{"type": "Ready", "status": if pod.ready { "True" } else { "False" }}]
            }
        })
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn set_replicas(&mut self, replicas: i32) {
        self.replicas = replicas;
        self.sts_rv = self.bump();
        let obj = self.sts_json();
        self.events
            .push((self.sts_rv, "statefulsets", "MODIFIED", obj));
    }

    fn put_pod(&mut self, ordinal: u32, pod: FakePod, kind: &'static str) {
        let rv = self.bump();
        let obj = Self::pod_json(ordinal, &pod, rv);
        self.pods.insert(ordinal, (pod, rv));
        self.events.push((rv, "pods", kind, obj));
    }

    fn delete_pod(&mut self, ordinal: u32) {
        if let Some((pod, _)) = self.pods.remove(&ordinal) {
            let rv = self.bump();
            let obj = Self::pod_json(ordinal, &pod, rv);
            self.events.push((rv, "pods", "DELETED", obj));
        }
    }

    fn record(&mut self, what: String) {
        let voters: BTreeSet<u64> = self
            .members
            .iter()
            .filter(|(_, m)| m.voter)
            .map(|(id, _)| *id)
            .collect();
        let learners = self
            .members
            .iter()
            .filter(|(_, m)| !m.voter)
            .map(|(id, _)| *id)
            .collect();
        let live_voters = voters
            .iter()
            .copied()
            .filter(|id| {
                let ordinal = u32::try_from(id - 1).unwrap_or(u32::MAX);
                self.pods.get(&ordinal).is_some_and(|(p, _)| p.ready)
            })
            .collect();
        self.history.push(Change {
            what,
            voters,
            learners,
            live_voters,
        });
    }

    fn voters(&self) -> BTreeSet<u64> {
        self.members
            .iter()
            .filter(|(_, m)| m.voter)
            .map(|(id, _)| *id)
            .collect()
    }
}

fn notify(shared: &Shared) {
    let rv = lock(shared).rv;
    shared.1.send_replace(rv);
}

// ------------------------------------------------------------------- fake Kubernetes API

fn collection_list(w: &World, collection: &str) -> Value {
    match collection {
        "statefulsets" => json!({
            "apiVersion": "apps/v1", "kind": "StatefulSetList",
            "metadata": {"resourceVersion": w.rv.to_string()},
            "items": [w.sts_json()]
        }),
        _ => json!({
            "apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": w.rv.to_string()},
            "items": w.pods.iter().map(|(o, (p, rv))| World::pod_json(*o, p, *rv)).collect::<Vec<_>>()
        }),
    }
}

fn query_param<'a>(uri: &'a Uri, key: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// List or watch of one collection.
async fn list_or_watch(shared: Shared, collection: &'static str, uri: Uri) -> Response {
    if query_param(&uri, "watch") != Some("true") {
        let body = collection_list(&lock(&shared), collection);
        return json_response(StatusCode::OK, &body);
    }
    let from: u64 = query_param(&uri, "resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let rx = shared.1.subscribe();
    let stream = futures::stream::unfold(
        (shared, rx, from),
        move |(shared, mut rx, mut seen)| async move {
            loop {
                let lines: String = {
                    let w = lock(&shared);
                    let mut out = String::new();
                    for (rv, coll, kind, obj) in &w.events {
                        if *rv > seen && *coll == collection {
                            out.push_str(&json!({"type": kind, "object": obj}).to_string());
                            out.push('\n');
                        }
                    }
                    seen = seen.max(w.rv);
                    out
                };
                if !lines.is_empty() {
                    return Some((Ok::<_, Infallible>(lines), (shared, rx, seen)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

async fn statefulsets(State(shared): State<Shared>, uri: Uri) -> Response {
    list_or_watch(shared, "statefulsets", uri).await
}

async fn pods(State(shared): State<Shared>, uri: Uri) -> Response {
    list_or_watch(shared, "pods", uri).await
}

async fn get_statefulset(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    if name == STS {
        let body = lock(&shared).sts_json();
        return json_response(StatusCode::OK, &body);
    }
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

async fn fallback(State(shared): State<Shared>, uri: Uri) -> Response {
    lock(&shared).unexpected.push(uri.to_string());
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404, "message": uri.to_string()}),
    )
}

async fn start_kube(shared: Shared) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route(
            &format!("/apis/apps/v1/namespaces/{NS}/statefulsets"),
            get(statefulsets),
        )
        .route(
            &format!("/apis/apps/v1/namespaces/{NS}/statefulsets/{{name}}"),
            get(get_statefulset),
        )
        .route(&format!("/api/v1/namespaces/{NS}/pods"), get(pods))
        .fallback(fallback)
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

fn kube_client(url: &str) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::new(url.parse()?);
    config.default_namespace = NS.into();
    Ok(kube::Client::try_from(config)?)
}

// ------------------------------------------------------------------------- fake store

struct FakeStore(Shared);

impl FakeStore {
    fn status(&self) -> pb::ClusterStatusResponse {
        let w = lock(&self.0);
        pb::ClusterStatusResponse {
            node_id: 1,
            leader_id: 1,
            leader_addr: naming().addr(0),
            term: 1,
            last_log_index: w.last_log_index,
            last_applied: w.last_log_index,
            members: w
                .members
                .iter()
                .map(|(id, m)| pb::Member {
                    id: *id,
                    addr: naming().addr(u32::try_from(id - 1).unwrap_or(0)),
                    role: if *id == 1 {
                        "leader"
                    } else if m.voter {
                        "follower"
                    } else {
                        "learner"
                    }
                    .into(),
                    last_applied: m.last_applied,
                    voter: m.voter,
                })
                .collect(),
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl Admin for FakeStore {
    async fn status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<GrpcResponse<pb::ClusterStatusResponse>, Status> {
        Ok(GrpcResponse::new(FakeStore::status(self)))
    }

    async fn init(
        &self,
        _: Request<pb::InitClusterRequest>,
    ) -> Result<GrpcResponse<pb::ClusterStatusResponse>, Status> {
        Err(Status::unimplemented(
            "the controller never initializes a cluster",
        ))
    }

    async fn add_node(
        &self,
        req: Request<pb::AddNodeRequest>,
    ) -> Result<GrpcResponse<pb::ClusterStatusResponse>, Status> {
        let r = req.into_inner();
        {
            let mut guard = lock(&self.0);
            let w: &mut World = &mut guard;
            let expected = naming().addr(u32::try_from(r.id.saturating_sub(1)).unwrap_or(0));
            if r.id == 0 || r.addr != expected {
                w.bad_requests
                    .push(format!("AddNode {r:?}, expected address {expected}"));
                return Err(Status::invalid_argument("bad id or address"));
            }
            let lag_limit = w.last_log_index.saturating_sub(MAX_LAG);
            let m = w.members.entry(r.id).or_insert(Member {
                voter: false,
                last_applied: 0,
            });
            if r.learner_only {
                let what = format!("add learner {}", r.id);
                w.record(what);
            } else {
                if m.last_applied < lag_limit {
                    let what = format!("promote {} while {} behind", r.id, m.last_applied);
                    w.bad_requests.push(what);
                }
                m.voter = true;
                let what = format!("promote {}", r.id);
                w.record(what);
            }
        }
        Ok(GrpcResponse::new(FakeStore::status(self)))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<GrpcResponse<pb::ClusterStatusResponse>, Status> {
        let id = req.into_inner().id;
        {
            let mut w = lock(&self.0);
            if w.members.remove(&id).is_none() {
                return Err(Status::not_found(format!("node {id} is not a member")));
            }
            w.record(format!("remove {id}"));
        }
        Ok(GrpcResponse::new(FakeStore::status(self)))
    }

    async fn compact(
        &self,
        _: Request<pb::CompactRequest>,
    ) -> Result<GrpcResponse<pb::CompactResponse>, Status> {
        Err(Status::unimplemented("not modelled"))
    }

    async fn audit(
        &self,
        _: Request<pb::AuditRequest>,
    ) -> Result<GrpcResponse<pb::AuditResponse>, Status> {
        Err(Status::unimplemented("not modelled"))
    }
}

/// The fake store's gRPC server: mutual TLS with the `store` certificate, behind the same
/// authorization layer as tern-store (the controller role may call Status, AddNode and
/// RemoveNode; the store role, as the preStop hook, Status).
async fn start_store(
    shared: Shared,
    tls: Arc<ClusterTls>,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let incoming = tls.incoming(listener);
    let task = tokio::spawn(async move {
        let _ = tls
            .server()
            .add_service(AdminServer::new(FakeStore(shared)))
            .serve_with_incoming(incoming)
            .await;
    });
    Ok((url, task))
}

// -------------------------------------------------- StatefulSet controller and kubelet

/// One step of the simulated StatefulSet controller, kubelet and Raft replication. The
/// preStop hooks present `hook_tls` (the store certificate, as in a store pod).
fn simulate(shared: &Shared, kube_url: &str, store_url: &str, hook_tls: &Arc<ClusterTls>) {
    let mut w = lock(shared);
    // The log grows; learners catch up by 40 entries a step; voters are current.
    w.last_log_index += 5;
    let head = w.last_log_index;
    for m in w.members.values_mut() {
        m.last_applied = if m.voter {
            head
        } else {
            (m.last_applied + 40).min(head)
        };
    }
    let desired = u32::try_from(w.replicas).unwrap_or(0);
    // Pods for wanted ordinals: created Pending, then Running, Ready once a member.
    for ordinal in 0..desired {
        let member = w.members.contains_key(&(u64::from(ordinal) + 1));
        match w.pods.get(&ordinal).map(|(p, _)| p.clone()) {
            None => w.put_pod(
                ordinal,
                FakePod {
                    running: false,
                    ready: false,
                    terminating: false,
                },
                "ADDED",
            ),
            Some(p) if !p.terminating && (!p.running || p.ready != member) => w.put_pod(
                ordinal,
                FakePod {
                    running: true,
                    ready: member,
                    terminating: false,
                },
                "MODIFIED",
            ),
            Some(_) => {}
        }
    }
    // Scale-down: mark the pods above the size terminating and run their preStop hook.
    let doomed: Vec<u32> = w
        .pods
        .iter()
        .filter(|(o, (p, _))| **o >= desired && !p.terminating)
        .map(|(o, _)| *o)
        .collect();
    for ordinal in doomed {
        let mut pod = w.pods[&ordinal].0.clone();
        pod.terminating = true;
        w.put_pod(ordinal, pod, "MODIFIED");
        let shared = shared.clone();
        let kube_url = kube_url.to_owned();
        let store_url = store_url.to_owned();
        let hook_tls = hook_tls.clone();
        tokio::spawn(async move {
            let outcome = match kube_client(&kube_url) {
                Ok(client) => {
                    wait_removed(
                        client,
                        hook_tls,
                        &WaitRemoved {
                            statefulset: STS.into(),
                            namespace: NS.into(),
                            pod_name: format!("{STS}-{ordinal}"),
                            endpoint: store_url,
                            timeout: Duration::from_secs(30),
                            poll: Duration::from_millis(100),
                        },
                    )
                    .await
                }
                Err(e) => WaitOutcome::Unknown(e.to_string()),
            };
            {
                let mut w = lock(&shared);
                w.prestop.insert(ordinal, outcome);
                w.delete_pod(ordinal);
            }
            notify(&shared);
        });
    }
}

async fn wait_for(shared: &Shared, what: &str, limit: Duration, done: impl Fn(&World) -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if done(&lock(shared)) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let w = lock(shared);
            panic!(
                "timed out waiting for {what}; members {:?}, pods {:?}, history {:#?}",
                w.members, w.pods, w.history
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_to_five_and_back_to_three() -> anyhow::Result<()> {
    let (tx, _) = watch::channel(0u64);
    let shared: Shared = Arc::new((Mutex::new(World::default()), tx));
    {
        let mut w = lock(&shared);
        w.last_log_index = 500;
        w.set_replicas(3);
        for ordinal in 0..3 {
            let pod = FakePod {
                running: true,
                ready: true,
                terminating: false,
            };
            w.put_pod(ordinal, pod, "ADDED");
            w.members.insert(
                u64::from(ordinal) + 1,
                Member {
                    voter: true,
                    last_applied: 500,
                },
            );
        }
        w.record("initial".into());
    }
    // The cluster PKI: the fake store serves with the store certificate, the controller
    // presents the controller's, the preStop hooks the store's (as in the chart).
    let pki = tempfile::tempdir()?;
    ensure_dev_pki(pki.path(), "tern.test")?;
    let store_tls = ClusterTls::load_as(&files(pki.path(), Role::Store), Role::Store)?;
    let controller_tls =
        ClusterTls::load_as(&files(pki.path(), Role::Controller), Role::Controller)?;

    let (kube_url, kube_task) = start_kube(shared.clone()).await?;
    let (store_url, store_task) = start_store(shared.clone(), store_tls.clone()).await?;

    let sim = {
        let shared = shared.clone();
        let (kube_url, store_url) = (kube_url.clone(), store_url.clone());
        let hook_tls = store_tls.clone();
        tokio::spawn(async move {
            loop {
                simulate(&shared, &kube_url, &store_url, &hook_tls);
                notify(&shared);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let health = tern_telemetry::Health::default();
    let settings = Settings {
        naming: naming(),
        pod_selector: Some("app.kubernetes.io/component=store".into()),
        store_endpoint: store_url.clone(),
        max_lag: MAX_LAG,
        resync: Duration::from_millis(300),
        call_timeout: Duration::from_secs(2),
        change_timeout: Duration::from_secs(5),
    };
    let controller = tokio::spawn(run(
        kube_client(&kube_url)?,
        settings,
        controller_tls.clone(),
        health.clone(),
    ));

    let result = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !health.is_ready() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "controller never became ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Nothing to do at 3/3.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            lock(&shared).history.len(),
            1,
            "no change expected at 3 pods / 3 voters"
        );

        // The preStop hook of a pod that is not scaled away returns at once.
        let kept = wait_removed(
            kube_client(&kube_url)?,
            store_tls.clone(),
            &WaitRemoved {
                statefulset: STS.into(),
                namespace: NS.into(),
                pod_name: format!("{STS}-1"),
                endpoint: store_url.clone(),
                timeout: Duration::from_secs(5),
                poll: Duration::from_millis(100),
            },
        )
        .await;
        assert_eq!(kept, WaitOutcome::Kept);

        lock(&shared).set_replicas(5);
        notify(&shared);
        wait_for(&shared, "5 voters", Duration::from_secs(30), |w| {
            w.voters() == (1..=5).collect::<BTreeSet<u64>>() && w.members.len() == 5
        })
        .await;

        lock(&shared).set_replicas(3);
        notify(&shared);
        wait_for(
            &shared,
            "voters {1,2,3} and pods 3, 4 gone",
            Duration::from_secs(30),
            |w| {
                w.voters() == (1..=3).collect::<BTreeSet<u64>>()
                    && w.members.len() == 3
                    && !w.pods.contains_key(&3)
                    && !w.pods.contains_key(&4)
            },
        )
        .await;
        Ok(())
    }
    .await;

    controller.abort();
    sim.abort();
    kube_task.abort();
    store_task.abort();
    result?;

    let w = lock(&shared);
    let steps: Vec<&str> = w.history.iter().map(|c| c.what.as_str()).collect();
    eprintln!(
        "membership changes: {steps:?}; preStop outcomes: {:?}",
        w.prestop
    );
    assert!(
        w.bad_requests.is_empty(),
        "bad requests: {:?}",
        w.bad_requests
    );
    assert!(
        w.unexpected.is_empty(),
        "unexpected API requests: {:?}",
        w.unexpected
    );
    for c in &w.history {
        assert!(
            c.live_voters.len() > c.voters.len() / 2,
            "after {:?}: live voters {:?} are not a majority of {:?} (learners {:?}); history {steps:?}",
            c.what,
            c.live_voters,
            c.voters,
            c.learners
        );
    }
    // Scale-up: each new node joins as a learner before it is promoted (the two learners may
    // interleave); scale-down: the highest ordinal leaves first.
    assert_eq!(steps.len(), 7, "history {:#?}", w.history);
    assert_eq!(steps[0], "initial");
    let up: BTreeSet<&str> = steps[1..5].iter().copied().collect();
    let want: BTreeSet<&str> = ["add learner 4", "add learner 5", "promote 4", "promote 5"].into();
    assert_eq!(up, want, "history {steps:?}");
    for id in [4, 5] {
        let pos = |s: &str| steps.iter().position(|x| *x == s);
        assert!(
            pos(&format!("add learner {id}")) < pos(&format!("promote {id}")),
            "{steps:?}"
        );
    }
    assert_eq!(steps[5..], ["remove 5", "remove 4"], "history {steps:?}");
    assert_eq!(w.prestop.get(&3), Some(&WaitOutcome::Removed));
    assert_eq!(w.prestop.get(&4), Some(&WaitOutcome::Removed));
    Ok(())
}

/// The controller's calls are mutual TLS both ways: a store with the store certificate
/// answers; a client certificate from another CA is refused at the handshake; a server whose
/// certificate names another role than `store` is refused by the controller; and the
/// store's authorization layer lets only the roles of its table change the membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_calls_are_mutual_tls_as_the_controller() -> anyhow::Result<()> {
    let (tx, _) = watch::channel(0u64);
    let shared: Shared = Arc::new((Mutex::new(World::default()), tx));
    {
        let mut w = lock(&shared);
        w.last_log_index = 10;
        w.members.insert(
            1,
            Member {
                voter: true,
                last_applied: 10,
            },
        );
    }
    let pki = tempfile::tempdir()?;
    ensure_dev_pki(pki.path(), "tern.test")?;
    let other_pki = tempfile::tempdir()?;
    ensure_dev_pki(other_pki.path(), "tern.test")?;
    let load = |dir: &std::path::Path, role: Role| ClusterTls::load_as(&files(dir, role), role);
    let (store_url, store_task) =
        start_store(shared.clone(), load(pki.path(), Role::Store)?).await?;
    let (smtp_url, smtp_task) = start_store(shared.clone(), load(pki.path(), Role::Smtp)?).await?;
    let timeout = Duration::from_secs(5);
    let admin = |tls| StoreAdmin::new(tls, timeout, timeout);

    let result = async {
        let controller = admin(load(pki.path(), Role::Controller)?);
        let status = controller.status(&store_url).await?;
        assert_eq!(status.leader_id, 1);
        controller
            .execute(
                &store_url,
                &Action::AddLearner {
                    id: 2,
                    addr: naming().addr(1),
                },
            )
            .await?;
        assert!(lock(&shared).members.contains_key(&2));

        // A server that is not a store (its certificate names smtp): refused by the client.
        let e = controller.status(&smtp_url).await.unwrap_err();
        eprintln!("non-store server: {e:#}");

        // A controller certificate from another CA: refused at the handshake.
        let stranger = admin(load(other_pki.path(), Role::Controller)?);
        let e = stranger.status(&store_url).await.unwrap_err();
        eprintln!("another CA: {e:#}");

        // Another role may read the status but not change the membership.
        let access = admin(load(pki.path(), Role::Access)?);
        access.status(&store_url).await?;
        let e = access
            .execute(&store_url, &Action::Remove { id: 2 })
            .await
            .unwrap_err();
        let denied = e
            .chain()
            .filter_map(|c| c.downcast_ref::<Status>())
            .any(|s| s.code() == tonic::Code::PermissionDenied);
        assert!(denied, "expected PERMISSION_DENIED, got {e:#}");
        assert!(lock(&shared).members.contains_key(&2));
        Ok::<(), anyhow::Error>(())
    }
    .await;
    store_task.abort();
    smtp_task.abort();
    result
}
