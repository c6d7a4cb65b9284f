//! Groups of settings that several services declare alike, written once here.
//!
//! A service names the groups it has in [`settings!`](crate::settings)'s `groups: [...]`;
//! their fields are appended to its struct (after its own, in the order named) exactly as if
//! they were written there: the same keys, variables, flags and `--help` entries. A group may
//! also implement a trait on the struct, so code that needs the group's values takes any
//! service's settings.
//!
//! The chart check (`charts/tern/tests/check_chart.py`) reads each group's fields between its
//! `// group NAME begin` and `// group NAME end` lines, so keep those markers and one field
//! per `pub name: Type,` line.

use std::path::Path;

/// The cluster certificate files (the `cluster_tls` group): what every service presents to,
/// and verifies, the other services on their internal gRPC ports.
pub trait ClusterTlsSettings {
    /// The cluster CA certificate (PEM).
    fn cluster_ca(&self) -> &Path;
    /// This process's certificate (PEM).
    fn cluster_cert(&self) -> &Path;
    /// The key of [`Self::cluster_cert`] (PEM, PKCS#8).
    fn cluster_key(&self) -> &Path;
}

/// The groups: `cluster_tls` (every service: the cluster certificate files, with
/// [`ClusterTlsSettings`]) and `internet_listener` (tern-smtp and tern-access: the TLS
/// certificate and the connection and login limits of listeners that face the internet).
///
/// Appends the fields (and implements the traits) of each named group, then declares the
/// struct with [`settings!`](crate::settings) (a helper of that macro).
#[doc(hidden)]
#[macro_export]
macro_rules! __settings_with_groups {
    ([] $name:ident [$($head:tt)*] { $($fields:tt)* } { $($impls:tt)* }) => {
        $crate::settings! { $($head)* pub struct $name { $($fields)* } }
        $($impls)*
    };
    ([internet_listener $($group:ident)*] $name:ident [$($head:tt)*] { $($fields:tt)* } { $($impls:tt)* }) => {
        $crate::__settings_with_groups! {
            [$($group)*] $name [$($head)*]
            {
                $($fields)*
                // group internet_listener begin
                /// TLS certificate chain (PEM) for STARTTLS and the implicit-TLS listeners;
                /// reloaded when the file changes.
                pub tls_cert: Option<::std::path::PathBuf>,
                /// TLS private key (PEM) of `tls_cert`.
                pub tls_key: Option<::std::path::PathBuf>,
                /// Sessions in total on this node.
                #[default = 10_000]
                pub max_connections: usize,
                /// Sessions from one client address.
                #[default = 50]
                pub max_connections_per_ip: usize,
                /// Pause before answering a wrong password, in milliseconds.
                #[default = 2_000]
                pub auth_failure_delay_ms: u64,
                /// Wrong passwords in one session before it is closed.
                #[default = 3]
                pub max_auth_failures: u32,
                // group internet_listener end
            }
            { $($impls)* }
        }
    };
    ([cluster_tls $($group:ident)*] $name:ident [$($head:tt)*] { $($fields:tt)* } { $($impls:tt)* }) => {
        $crate::__settings_with_groups! {
            [$($group)*] $name [$($head)*]
            {
                $($fields)*
                // group cluster_tls begin
                /// The cluster CA certificate (PEM) every internal peer's certificate must chain to.
                #[default = ::std::path::PathBuf::from("/etc/tern/cluster-tls/ca.crt")]
                pub cluster_ca: ::std::path::PathBuf,
                /// This process's cluster certificate (PEM); its URI names the role.
                #[default = ::std::path::PathBuf::from("/etc/tern/cluster-tls/tls.crt")]
                pub cluster_cert: ::std::path::PathBuf,
                /// The key of `cluster_cert` (PEM, PKCS#8).
                #[default = ::std::path::PathBuf::from("/etc/tern/cluster-tls/tls.key")]
                pub cluster_key: ::std::path::PathBuf,
                // group cluster_tls end
            }
            {
                $($impls)*
                impl $crate::ClusterTlsSettings for $name {
                    fn cluster_ca(&self) -> &::std::path::Path {
                        &self.cluster_ca
                    }
                    fn cluster_cert(&self) -> &::std::path::Path {
                        &self.cluster_cert
                    }
                    fn cluster_key(&self) -> &::std::path::Path {
                        &self.cluster_key
                    }
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::ClusterTlsSettings;
    use crate::{Parsed, Settings};

    crate::settings! {
        program: "tern-grouped",
        about: "A service with the cluster_tls group",
        check: Grouped::check,
        groups: [cluster_tls],
    /// Settings with one own field and a group.
    pub struct Grouped {
        /// An own setting.
        #[default = 7]
        pub own: u32,
    }
    }

    impl Grouped {
        fn check(&mut self) -> Result<(), std::io::Error> {
            Ok(())
        }
    }

    #[test]
    fn a_group_adds_its_keys_after_the_own_ones_with_defaults_variables_and_flags() {
        let names: Vec<_> = Grouped::KEYS.iter().map(|k| k.name).collect();
        assert_eq!(names, ["own", "cluster_ca", "cluster_cert", "cluster_key"]);
        let d = Grouped::default();
        assert_eq!(d.own, 7);
        assert_eq!(
            d.cluster_ca(),
            std::path::Path::new("/etc/tern/cluster-tls/ca.crt")
        );
        let parsed = crate::parse::<Grouped>(
            ["tern-grouped", "--cluster-cert", "/x/tls.crt"].map(String::from),
            [("TERN_CLUSTER_KEY".to_string(), "/y/tls.key".to_string())],
        );
        match parsed {
            Ok(Parsed::Run(g)) => {
                assert_eq!(g.cluster_cert(), std::path::Path::new("/x/tls.crt"));
                assert_eq!(g.cluster_key(), std::path::Path::new("/y/tls.key"));
            }
            other => panic!("{other:?}"),
        }
    }
}
