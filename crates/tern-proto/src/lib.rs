//! Generated protobuf and gRPC code for Tern's APIs.
//!
//! Dependencies: `tonic`/`tonic-prost`/`prost` generate and run the gRPC stubs; `protox`
//! compiles the .proto files in pure Rust so the build needs no system `protoc`; `tokio` for
//! the retry back-off and `tern-telemetry` to carry the trace context on every call of
//! [`client::StoreClient`]. For the internal mutual TLS ([`tls`]) and authorization
//! ([`authz`]): `tern-trust` (identities, configurations, the method table), `rustls` and
//! `tokio-rustls` (the handshakes), `hyper-util` (tonic's connector wants hyper's I/O
//! traits), `tower` and `http` (the connector and the authorization layer are tower
//! services over HTTP requests), `tokio-stream` (accepted connections as tonic's incoming
//! stream), `prometheus` (the count of denied calls), `tern-clock` (the wall clock a session token's
//! expiry is compared with).

/// Every gRPC method in `proto/`, `package.Service/Method` one a line, as compiled.
pub const METHODS: &str = include_str!(concat!(env!("OUT_DIR"), "/methods.txt"));

pub mod authz;
pub mod client;
pub mod directory_cache;
pub mod session;
pub mod tls;

/// The store's public API: directory, mailboxes, messages, queue, change feed, admin.
pub mod store {
    /// Version 1 of the store API.
    pub mod v1 {
        tonic::include_proto!("tern.store.v1");
    }
}

/// The queue service's API: Enqueue.
pub mod queue {
    /// Version 1 of the queue API.
    pub mod v1 {
        tonic::include_proto!("tern.queue.v1");
    }
}

/// Raft transport between store nodes.
pub mod raft {
    /// Version 1 of the Raft transport.
    pub mod v1 {
        tonic::include_proto!("tern.raft.v1");
    }
}
