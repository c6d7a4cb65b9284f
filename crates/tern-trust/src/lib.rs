//! tern-trust: who may talk to Tern's internal gRPC ports, and as what.
//!
//! Every internal caller (store peers, the queue, SMTP and access nodes, the membership
//! controller, operators with `ternctl`, a backup job) holds a certificate from the cluster
//! CA that carries exactly one URI subject alternative name,
//! `spiffe://TRUST-DOMAIN/tern/ROLE` ([`Identity`]). Both sides of a connection present one
//! (mutual TLS 1.3, [`tls`]); the server takes the caller's [`Role`] from its certificate and
//! checks it against one table of gRPC methods ([`policy`]), denying what the table does not
//! name. The model is etcd's: peer and client certificates, roles from the certificate, not
//! from anything the caller says.
//!
//! The modules are pure library code; the services wire them to their listeners and clients.
//!
//! Dependencies: `rustls` and `rustls-pki-types` (the TLS configurations and the custom
//! server-certificate check by role), `rcgen` (the development CA and role certificates, as
//! tern-net already makes the development server certificate), `x509-parser` (reading the
//! URI SAN out of a certificate: neither rustls nor webpki exposes URI names), `thiserror`,
//! `tracing` (a failed certificate reload is logged, not fatal), `tern-config` (the settings'
//! `cluster_tls` group, which [`pki::CertFiles::of`] reads).

pub mod identity;
pub mod pki;
pub mod policy;
pub mod reload;
pub mod tls;
pub mod verifier;

pub use identity::{Identity, IdentityError, Role};
