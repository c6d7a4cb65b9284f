//! tern-controller: keeps tern-store's Raft membership in step with the store
//! StatefulSet's `spec.replicas` on Kubernetes.
//!
//! Scaling the StatefulSet alone only starts or stops processes; Raft membership is a
//! separate, replicated decision. Without this controller an operator runs `ternctl cluster
//! add-node`/`remove-node` by hand around every scale (still the manual fallback). With it:
//!
//! - **scale up**: each new pod joins as a learner once its process runs, catches up from the
//!   leader, and is promoted to voter once its lag is small;
//! - **scale down**: each pod above the new size is removed from the membership, highest
//!   ordinal first and only while the live voters keep a majority, while its preStop hook
//!   ([`prestop`], `tern-controller wait-removed`) holds the pod up until it is out.
//!
//! Layout: [`decide`] is the whole policy as a pure function (unit-tested); [`store`] reads
//! the leader's Status and executes changes over the Admin gRPC API; [`controller`] watches
//! Kubernetes and runs the loop; [`prestop`] is the store pods' hook; `main.rs` only parses
//! flags. Read-only access to Kubernetes suffices (get/list/watch of the StatefulSet and its
//! pods): the controller changes the store, never Kubernetes objects.
//!
//! Dependencies:
//! - `kube` (client + runtime, rustls with ring, no OpenSSL): the Kubernetes client, watcher
//!   and reflector caches with back-off; the maintained Rust client, so no hand-written watch
//!   protocol.
//! - `k8s-openapi` (fixed to the v1.33 API): typed StatefulSet and Pod objects for kube; only
//!   long-stable fields are read, so newer clusters work too.
//! - `tern-proto`: the store's Admin gRPC client.
//! - `tern-telemetry`: logging, `/metrics`, `/healthz`, `/readyz`, like every Tern binary.
//! - `tonic`: the gRPC channel under the Admin client (deadlines, lazy connects).
//! - `tokio`, `futures`: the async runtime, `select!`, and merging the two watch streams.
//! - `clap`: flags with `TERN_*` environment fallbacks, as the other services.
//! - `prometheus`: the controller's counters and gauges in tern-telemetry's registry.
//! - `anyhow`, `tracing`: errors with context, logs.
//!
//! Test-only: `axum` (the fake Kubernetes API server of `tests/scale.rs`, already the
//! workspace's HTTP server), `serde_json` (its objects and watch events), `tokio-stream`
//! (serving the fake store's gRPC on a bound 127.0.0.1:0 listener).

#![warn(missing_docs)]

pub mod cli;
pub mod controller;
pub mod decide;
pub mod prestop;
pub mod store;
