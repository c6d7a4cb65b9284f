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
//! The same binary makes the Helm chart's cluster certificates in its default mode
//! ([`pki`], `tern-controller pki`, a hook Job): a CA and one certificate per role, as
//! Secrets, made once and never overwritten.
//!
//! Layout: [`decide`] is the whole policy as a pure function (unit-tested); [`store`] reads
//! the leader's Status and executes changes over the Admin gRPC API, with mutual TLS as the
//! `controller` role; [`controller`] watches Kubernetes and runs the loop; [`prestop`] is
//! the store pods' hook; [`pki`] the certificate maker; `main.rs` only parses flags.
//! Read-only access to Kubernetes suffices for the controller and the hook (get/list/watch
//! of the StatefulSet and its pods): the controller changes the store, never Kubernetes
//! objects. Only `pki` writes: it creates Secrets (and never changes one).
//!
//! Dependencies:
//! - `kube` (client + runtime, rustls with ring, no OpenSSL): the Kubernetes client, watcher
//!   and reflector caches with back-off; the maintained Rust client, so no hand-written watch
//!   protocol.
//! - `k8s-openapi` (fixed to the v1.33 API): typed StatefulSet, Pod and Secret objects for
//!   kube; only long-stable fields are used, so newer clusters work too.
//! - `tern-proto`: the store's Admin gRPC client, and its mutual-TLS connector
//!   (`tern_proto::tls::ClusterTls`).
//! - `tern-trust`: roles and identities, and the CA and role certificates of `pki`
//!   (`tern_trust::pki::ensure_dev_pki`, so the chart's certificates have exactly the shape
//!   `cargo xtask up` makes and the services check).
//! - `tempfile`: `pki`'s scratch directory for the key material before it goes into Secrets
//!   (the chart gives the Job a memory volume for it).
//! - `tern-telemetry`: logging, `/metrics`, `/healthz`, `/readyz`, like every Tern binary.
//! - `tonic`: the gRPC channel under the Admin client (deadlines, lazy connects).
//! - `tokio`, `futures`: the async runtime, `select!`, and merging the two watch streams.
//! - `clap`: flags with `TERN_*` environment fallbacks, as the other services.
//! - `prometheus`: the controller's counters and gauges in tern-telemetry's registry.
//! - `anyhow`, `tracing`: errors with context, logs.
//!
//! Test-only: `axum` (the fake Kubernetes API server of `tests/scale.rs`, already the
//! workspace's HTTP server), `serde_json` (its objects and watch events), `rustls` (checking
//! that `pki`'s certificates verify against their CA as a Tern server verifies a client).

#![warn(missing_docs)]

pub mod cli;
pub mod controller;
pub mod decide;
pub mod pki;
pub mod prestop;
pub mod store;
