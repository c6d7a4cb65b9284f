//! Command-line flags (each with a `TERN_*` or pod-environment fallback, as the other Tern
//! services), kept in the library so that their defaults and the settings they produce are
//! tested without running the binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tern_telemetry::LogFormat;
use tern_trust::pki::CertFiles;
use tern_trust::Role;

use crate::controller::Settings;
use crate::decide::PeerNaming;
use crate::pki::PkiSettings;
use crate::prestop::WaitRemoved;

/// `tern-controller run ...`, `tern-controller wait-removed ...` or `tern-controller pki ...`.
#[derive(Debug, Parser)]
#[command(
    name = "tern-controller",
    version,
    about = "Keeps tern-store's Raft membership in step with its StatefulSet"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The roles of the binary: the controller, the store pods' preStop hook (one binary so
/// the hook and the controller agree on naming and membership reads), and the Helm chart's
/// certificate maker.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch the StatefulSet and its pods and reconcile the Raft membership.
    Run(RunArgs),
    /// preStop hook of a store pod: wait until a scaled-down pod's node has left the
    /// membership (returns at once when the pod is not being scaled away).
    WaitRemoved(WaitArgs),
    /// Make the cluster CA and one certificate per role as Kubernetes Secrets, keeping every
    /// Secret that exists (the Helm chart's clusterTls.mode generated).
    Pki(PkiArgs),
}

/// The cluster certificate a process presents on the store's port (mutual TLS), with the
/// same names, environment variables and defaults as the services' `cluster_*` settings.
#[derive(Debug, Clone, Args)]
pub struct ClusterTlsArgs {
    /// The cluster CA certificate (PEM) the store's certificate must chain to.
    #[arg(
        long,
        env = "TERN_CLUSTER_CA",
        default_value = "/etc/tern/cluster-tls/ca.crt"
    )]
    pub cluster_ca: PathBuf,
    /// This process's certificate (PEM), naming its role: `controller` for `run`; the store
    /// pod's own (`store`) for `wait-removed`.
    #[arg(
        long,
        env = "TERN_CLUSTER_CERT",
        default_value = "/etc/tern/cluster-tls/tls.crt"
    )]
    pub cluster_cert: PathBuf,
    /// The key of --cluster-cert (PEM).
    #[arg(
        long,
        env = "TERN_CLUSTER_KEY",
        default_value = "/etc/tern/cluster-tls/tls.key"
    )]
    pub cluster_key: PathBuf,
}

impl ClusterTlsArgs {
    /// The three files.
    pub fn files(&self) -> CertFiles {
        CertFiles {
            ca: self.cluster_ca.clone(),
            cert: self.cluster_cert.clone(),
            key: self.cluster_key.clone(),
        }
    }
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Namespace of the StatefulSet (default: $POD_NAMESPACE, else the client's default).
    #[arg(long, env = "TERN_NAMESPACE")]
    pub namespace: Option<String>,
    /// The store StatefulSet's name.
    #[arg(long, env = "TERN_STATEFULSET")]
    pub statefulset: String,
    /// The headless Service naming the store pods (default: the StatefulSet's name).
    #[arg(long, env = "TERN_HEADLESS_SERVICE")]
    pub headless_service: Option<String>,
    /// Cluster DNS suffix of the peer addresses.
    #[arg(long, env = "TERN_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The store's gRPC (API and Raft) port.
    #[arg(long, env = "TERN_PEER_PORT", default_value_t = 7100)]
    pub peer_port: u16,
    /// A store node's gRPC URL (default: http://<headless-service>.<namespace>.svc.<domain>:<port>).
    #[arg(long, env = "TERN_STORE_ENDPOINT")]
    pub store_endpoint: Option<String>,
    /// Label selector of the store pods (default: every pod named <statefulset>-<ordinal>).
    #[arg(long, env = "TERN_POD_SELECTOR")]
    pub pod_selector: Option<String>,
    /// Promote a learner once it is at most this many log entries behind the leader.
    #[arg(long, env = "TERN_MAX_LAG", default_value_t = 256)]
    pub max_lag: u64,
    /// Reconcile at least this often (seconds), even without a Kubernetes event.
    #[arg(long, env = "TERN_RESYNC_SECONDS", default_value_t = 10)]
    pub resync_seconds: u64,
    /// Deadline of a store Status call (seconds).
    #[arg(long, env = "TERN_CALL_TIMEOUT_SECONDS", default_value_t = 5)]
    pub call_timeout_seconds: u64,
    /// Deadline of a membership change (seconds; adding a learner waits for its catch-up).
    #[arg(long, env = "TERN_CHANGE_TIMEOUT_SECONDS", default_value_t = 120)]
    pub change_timeout_seconds: u64,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "TERN_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Log lines on stderr: text or json.
    #[arg(long, env = "TERN_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// The controller role's certificate (mutual TLS to the store).
    #[command(flatten)]
    pub cluster_tls: ClusterTlsArgs,
}

impl RunArgs {
    /// The controller's settings, with `namespace` used when --namespace is not given.
    pub fn settings(&self, namespace: &str) -> Settings {
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_owned());
        let service = self
            .headless_service
            .clone()
            .unwrap_or_else(|| self.statefulset.clone());
        let store_endpoint = self.store_endpoint.clone().unwrap_or_else(|| {
            format!(
                "http://{service}.{namespace}.svc.{}:{}",
                self.cluster_domain, self.peer_port
            )
        });
        Settings {
            naming: PeerNaming {
                statefulset: self.statefulset.clone(),
                service,
                namespace,
                cluster_domain: self.cluster_domain.clone(),
                port: self.peer_port,
            },
            pod_selector: self.pod_selector.clone(),
            store_endpoint,
            max_lag: self.max_lag,
            resync: Duration::from_secs(self.resync_seconds.max(1)),
            call_timeout: Duration::from_secs(self.call_timeout_seconds.max(1)),
            change_timeout: Duration::from_secs(self.change_timeout_seconds.max(1)),
        }
    }
}

/// Flags of `wait-removed`; the defaults come from the store container's environment, so
/// the exec-form hook needs no shell to expand `$(POD_NAME)`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The store StatefulSet's name.
    #[arg(long)]
    pub statefulset: String,
    /// Namespace of the StatefulSet.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// This pod's name.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: String,
    /// The local store node's gRPC URL.
    #[arg(long, env = "TERN_ENDPOINT", default_value = "http://127.0.0.1:7100")]
    pub endpoint: String,
    /// Give up after this many seconds (keep it below terminationGracePeriodSeconds).
    #[arg(long, default_value_t = 45)]
    pub timeout_seconds: u64,
    /// Poll interval in seconds.
    #[arg(long, default_value_t = 1)]
    pub poll_seconds: u64,
    /// Log lines on stderr: text or json.
    #[arg(long, env = "TERN_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// The certificate to read the membership with: the store pod's own (the store reads
    /// the same default paths), which may read cluster status like every role.
    #[command(flatten)]
    pub cluster_tls: ClusterTlsArgs,
}

impl WaitArgs {
    /// What [`crate::prestop::wait_removed`] needs.
    pub fn settings(&self) -> WaitRemoved {
        WaitRemoved {
            statefulset: self.statefulset.clone(),
            namespace: self.namespace.clone(),
            pod_name: self.pod_name.clone(),
            endpoint: self.endpoint.clone(),
            timeout: Duration::from_secs(self.timeout_seconds),
            poll: Duration::from_secs(self.poll_seconds.max(1)),
        }
    }
}

/// Flags of `pki`.
#[derive(Debug, Args)]
pub struct PkiArgs {
    /// Namespace of the Secrets.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// The SPIFFE trust domain of the certificates (spiffe://DOMAIN/tern/ROLE).
    #[arg(long)]
    pub trust_domain: String,
    /// The Secret that holds the CA (its tls.crt and tls.key, and ca.crt).
    #[arg(long)]
    pub ca_secret: String,
    /// Make ROLE's certificate in Secret SECRET, unless that Secret exists (repeated, once
    /// per role).
    #[arg(long = "secret", value_name = "ROLE=SECRET", required = true, value_parser = parse_role_secret)]
    pub secrets: Vec<(Role, String)>,
    /// A label of every Secret made (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Log lines on stderr: text or json.
    #[arg(long, env = "TERN_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl PkiArgs {
    /// What [`crate::pki::run`] needs.
    pub fn settings(&self) -> PkiSettings {
        PkiSettings {
            namespace: self.namespace.clone(),
            trust_domain: self.trust_domain.clone(),
            ca_secret: self.ca_secret.clone(),
            secrets: self.secrets.clone(),
            labels: self.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        }
    }
}

/// `ROLE=SECRET`, ROLE one of Tern's roles.
fn parse_role_secret(s: &str) -> Result<(Role, String), String> {
    let (role, secret) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ROLE=SECRET"))?;
    let role: Role = role.parse().map_err(|e| format!("{e}"))?;
    if secret.is_empty() {
        return Err(format!("{s:?}: no Secret name"));
    }
    Ok((role, secret.to_owned()))
}

/// `KEY=VALUE`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_defaults_follow_the_chart_naming() {
        let cli = Cli::try_parse_from(["tern-controller", "run", "--statefulset", "tern-store"]);
        let args = match cli {
            Ok(Cli {
                command: Command::Run(args),
            }) => args,
            other => panic!("run should parse: {other:?}"),
        };
        let s = args.settings("mail");
        assert_eq!(s.naming.service, "tern-store");
        assert_eq!(s.naming.namespace, "mail");
        assert_eq!(
            s.store_endpoint,
            "http://tern-store.mail.svc.cluster.local:7100"
        );
        assert_eq!(
            s.naming.addr(4),
            "tern-store-4.tern-store.mail.svc.cluster.local:7100"
        );
        assert_eq!(s.resync, Duration::from_secs(10));
        // The same defaults as the services' cluster_ca, cluster_cert and cluster_key (the
        // environment could override them; the test process sets none of TERN_CLUSTER_*).
        if std::env::var_os("TERN_CLUSTER_CA").is_none() {
            assert_eq!(
                args.cluster_tls.files(),
                CertFiles {
                    ca: "/etc/tern/cluster-tls/ca.crt".into(),
                    cert: "/etc/tern/cluster-tls/tls.crt".into(),
                    key: "/etc/tern/cluster-tls/tls.key".into(),
                }
            );
        }
    }

    #[test]
    fn cluster_tls_flags() {
        let cli = Cli::try_parse_from([
            "tern-controller",
            "run",
            "--statefulset",
            "tern-store",
            "--cluster-ca",
            "/x/ca.pem",
            "--cluster-cert",
            "/x/c.pem",
            "--cluster-key",
            "/x/k.pem",
        ]);
        let args = match cli {
            Ok(Cli {
                command: Command::Run(args),
            }) => args,
            other => panic!("run should parse: {other:?}"),
        };
        assert_eq!(args.cluster_tls.files().cert, PathBuf::from("/x/c.pem"));
        assert_eq!(args.cluster_tls.files().key, PathBuf::from("/x/k.pem"));
        assert_eq!(args.cluster_tls.files().ca, PathBuf::from("/x/ca.pem"));
    }

    #[test]
    fn pki_flags() {
        let cli = Cli::try_parse_from([
            "tern-controller",
            "pki",
            "--namespace",
            "mail",
            "--trust-domain",
            "tern.cluster",
            "--ca-secret",
            "tern-cluster-ca",
            "--secret",
            "store=tern-store-cluster-tls",
            "--secret",
            "admin=tern-admin-cluster-tls",
            "--label",
            "app.kubernetes.io/instance=tern",
        ]);
        let args = match cli {
            Ok(Cli {
                command: Command::Pki(args),
            }) => args,
            other => panic!("pki should parse: {other:?}"),
        };
        let s = args.settings();
        assert_eq!(
            s.secrets,
            vec![
                (Role::Store, "tern-store-cluster-tls".to_string()),
                (Role::Admin, "tern-admin-cluster-tls".to_string())
            ]
        );
        assert_eq!(
            s.labels
                .get("app.kubernetes.io/instance")
                .map(String::as_str),
            Some("tern")
        );
        assert!(s.validate().is_ok());
        for bad in ["root=x", "store", "store="] {
            let r = Cli::try_parse_from([
                "tern-controller",
                "pki",
                "--namespace",
                "mail",
                "--trust-domain",
                "t",
                "--ca-secret",
                "ca",
                "--secret",
                bad,
            ]);
            assert!(r.is_err(), "{bad} should be refused");
        }
        // At least one --secret.
        assert!(Cli::try_parse_from([
            "tern-controller",
            "pki",
            "--namespace",
            "mail",
            "--trust-domain",
            "t",
            "--ca-secret",
            "ca"
        ])
        .is_err());
    }

    #[test]
    fn wait_removed_flags() {
        let cli = Cli::try_parse_from([
            "tern-controller",
            "wait-removed",
            "--statefulset",
            "tern-store",
            "--namespace",
            "mail",
            "--pod-name",
            "tern-store-4",
            "--timeout-seconds",
            "30",
        ]);
        let args = match cli {
            Ok(Cli {
                command: Command::WaitRemoved(args),
            }) => args,
            other => panic!("wait-removed should parse: {other:?}"),
        };
        let w = args.settings();
        assert_eq!(w.pod_name, "tern-store-4");
        assert_eq!(w.timeout, Duration::from_secs(30));
        assert_eq!(w.poll, Duration::from_secs(1));
    }

    #[test]
    fn statefulset_is_required() {
        assert!(Cli::try_parse_from(["tern-controller", "run"]).is_err());
    }
}
