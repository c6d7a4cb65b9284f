//! Which role may call which gRPC method: one table ([`RULES`]), denied by default.
//!
//! A rule names a service (`tern.store.v1.Messages`) and a method (`Fetch`, or `*` for
//! every method of the service) and the roles allowed. A method no rule names is denied to
//! everyone, so a method added to `proto/` stays closed until someone decides who may call
//! it here. Later changes of who calls what (the write path accepting mail in the store, a
//! session token for mailbox reads) change this table and nothing else.
//!
//! The table follows who calls what today: SMTP resolves recipients, checks passwords and
//! hands mail to the queue; the queue enqueues, leases, delivers and reads the bodies it
//! relays, but reads no mailbox; access nodes read and change mailboxes; operators change
//! the directory and membership; a backup job takes backups; only store nodes speak Raft.

use crate::identity::{Identity, Role};

use Role::{Access, Admin, Backup, Controller, Queue, Smtp, Store};

/// Every role: for read-only status and health checks (a store pod's preStop hook polls
/// cluster status with the store certificate).
const EVERYONE: &[Role] = &Role::ALL;

/// One rule: service, method (`*` for all of the service's), roles.
pub type Rule = (&'static str, &'static str, &'static [Role]);

/// The table. The README shows it; `cargo test -p tern-trust` checks it against the
/// services in `proto/`.
pub const RULES: &[Rule] = &[
    ("grpc.health.v1.Health", "*", EVERYONE),
    // Raft between store nodes; Forward carries state-machine commands to the leader.
    ("tern.raft.v1.Raft", "*", &[Store]),
    // Membership: operators and the controller; store nodes forward these to the leader
    // under their own certificate, having authorized the caller themselves.
    ("tern.store.v1.Admin", "Status", EVERYONE),
    ("tern.store.v1.Admin", "Init", &[Admin, Controller]),
    (
        "tern.store.v1.Admin",
        "AddNode",
        &[Admin, Controller, Store],
    ),
    (
        "tern.store.v1.Admin",
        "RemoveNode",
        &[Admin, Controller, Store],
    ),
    ("tern.store.v1.Admin", "Compact", &[Admin, Store]),
    ("tern.store.v1.Admin", "Audit", &[Admin]),
    ("tern.store.v1.Backups", "*", &[Admin, Backup]),
    // The directory: operators change it; SMTP and access check passwords; SMTP and the
    // queue resolve recipients.
    ("tern.store.v1.Directory", "AddDomain", &[Admin]),
    ("tern.store.v1.Directory", "RemoveDomain", &[Admin]),
    // Also the readiness probe of the stateless services: a linearizable read that names
    // no user (tern_proto::client::probe_store_quorum).
    (
        "tern.store.v1.Directory",
        "ListDomains",
        &[Admin, Smtp, Queue, Access],
    ),
    ("tern.store.v1.Directory", "AddUser", &[Admin]),
    ("tern.store.v1.Directory", "RemoveUser", &[Admin]),
    ("tern.store.v1.Directory", "ListUsers", &[Admin]),
    ("tern.store.v1.Directory", "GetUser", &[Admin, Access]),
    ("tern.store.v1.Directory", "SetPassword", &[Admin]),
    ("tern.store.v1.Directory", "SetQuota", &[Admin]),
    ("tern.store.v1.Directory", "CheckPassword", &[Smtp, Access]),
    // Access nodes keep their users' session tokens alive.
    ("tern.store.v1.Directory", "RenewSession", &[Access]),
    ("tern.store.v1.Directory", "AddAlias", &[Admin]),
    ("tern.store.v1.Directory", "RemoveAlias", &[Admin]),
    ("tern.store.v1.Directory", "ListAliases", &[Admin]),
    ("tern.store.v1.Directory", "AddListMembers", &[Admin]),
    ("tern.store.v1.Directory", "RemoveListMembers", &[Admin]),
    ("tern.store.v1.Directory", "RemoveList", &[Admin]),
    ("tern.store.v1.Directory", "ListLists", &[Admin]),
    ("tern.store.v1.Directory", "Resolve", &[Smtp, Queue, Admin]),
    // The feed that keeps SMTP's and the queue's directory caches current.
    ("tern.store.v1.Directory", "WatchDirectory", &[Smtp, Queue]),
    // Mailboxes: access nodes; delivery goes through Messages.Deliver.
    ("tern.store.v1.Mailboxes", "*", &[Access]),
    ("tern.store.v1.Watch", "*", &[Access]),
    ("tern.store.v1.Locks", "*", &[Access]),
    ("tern.store.v1.Messages", "Deliver", &[Queue]),
    // The queue relays a message body it holds by hash, not a mailbox's message.
    ("tern.store.v1.Messages", "FetchBlob", &[Queue]),
    ("tern.store.v1.Messages", "Append", &[Access]),
    ("tern.store.v1.Messages", "List", &[Access]),
    ("tern.store.v1.Messages", "Fetch", &[Access]),
    ("tern.store.v1.Messages", "FetchHeaders", &[Access]),
    ("tern.store.v1.Messages", "StoreFlags", &[Access]),
    ("tern.store.v1.Messages", "Expunge", &[Access]),
    ("tern.store.v1.Messages", "Copy", &[Access]),
    ("tern.store.v1.Messages", "Move", &[Access]),
    ("tern.store.v1.Messages", "Search", &[Access]),
    // The store's queue: the queue service works it; operators inspect and retry; access
    // nodes record retrievals in delivery traces.
    ("tern.store.v1.Queue", "Enqueue", &[Queue]),
    ("tern.store.v1.Queue", "Lease", &[Queue]),
    ("tern.store.v1.Queue", "Renew", &[Queue]),
    ("tern.store.v1.Queue", "Update", &[Queue]),
    ("tern.store.v1.Queue", "Get", &[Queue, Admin]),
    ("tern.store.v1.Queue", "List", &[Admin]),
    ("tern.store.v1.Queue", "Retry", &[Admin]),
    ("tern.store.v1.Queue", "Delete", &[Admin]),
    ("tern.store.v1.Queue", "Trace", &[Admin]),
    ("tern.store.v1.Queue", "RecordTrace", &[Queue, Access]),
    // tern-queue's own port: SMTP hands mail over.
    ("tern.queue.v1.Queue", "Enqueue", &[Smtp]),
];

/// Why a call was refused; its text goes into PERMISSION_DENIED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The path is not `/package.Service/Method`.
    #[error("{0:?} is not a gRPC method path")]
    NotAMethod(String),
    /// No rule names the method: closed to everyone.
    #[error("{method} is not open to any role")]
    Unlisted {
        /// `package.Service/Method`.
        method: String,
    },
    /// The caller's role is not among the method's.
    #[error("{method} is not allowed for role {role}")]
    Role {
        /// `package.Service/Method`.
        method: String,
        /// The caller's role.
        role: Role,
    },
    /// The caller's certificate, though signed by the CA, names no Tern identity.
    #[error("{path}: the caller's certificate names no Tern identity")]
    NoIdentity {
        /// The path called.
        path: String,
    },
    /// The caller's certificate is from another trust domain.
    #[error("{method}: identity {identity} is not of trust domain {trust_domain}")]
    TrustDomain {
        /// `package.Service/Method`.
        method: String,
        /// The caller.
        identity: String,
        /// Ours.
        trust_domain: String,
    },
}

/// The roles allowed to call `service`/`method`, if any rule names it.
pub fn allowed(service: &str, method: &str) -> Option<&'static [Role]> {
    RULES
        .iter()
        .find(|(s, m, _)| *s == service && *m == method)
        .or_else(|| RULES.iter().find(|(s, m, _)| *s == service && *m == "*"))
        .map(|(_, _, roles)| *roles)
}

/// Decides a call to `path` (`/package.Service/Method`, as HTTP/2 carries it) by `caller`
/// in our `trust_domain`.
pub fn authorize(path: &str, caller: &Identity, trust_domain: &str) -> Result<(), Denied> {
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(s, m)| !s.is_empty() && !m.is_empty() && !m.contains('/'))
        .ok_or_else(|| Denied::NotAMethod(path.to_string()))?;
    let name = format!("{service}/{method}");
    if caller.trust_domain != trust_domain {
        return Err(Denied::TrustDomain {
            method: name,
            identity: caller.to_string(),
            trust_domain: trust_domain.to_string(),
        });
    }
    let roles = allowed(service, method).ok_or_else(|| Denied::Unlisted {
        method: name.clone(),
    })?;
    if roles.contains(&caller.role) {
        Ok(())
    } else {
        Err(Denied::Role {
            method: name,
            role: caller.role,
        })
    }
}

/// [`RULES`] as the Markdown table the README shows (a test keeps the two equal).
pub fn markdown_table() -> String {
    let mut out = String::from("| service | method | roles |\n|---|---|---|\n");
    for (service, method, roles) in RULES {
        let roles = if *roles == EVERYONE {
            "every role".to_string()
        } else {
            roles
                .iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!("| `{service}` | {method} | {roles} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_shows_the_table_as_it_is() {
        let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
        let readme =
            std::fs::read_to_string(std::path::Path::new(&manifest).join("../../README.md"))
                .expect("README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README.md must show policy::RULES as rendered by markdown_table():\n{}",
            markdown_table()
        );
    }

    const TD: &str = "tern.test";

    /// Every (service, method) of the services in `proto/`, from the compiled descriptors.
    fn methods_in_proto() -> Vec<(String, String)> {
        // Read at run time (cargo sets it for tests), not compiled in: the build cache is
        // shared by checkouts at different paths.
        let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
        let root = std::path::Path::new(&manifest).join("../../proto");
        let files = [
            "tern/store/v1/store.proto",
            "tern/raft/v1/raft.proto",
            "tern/queue/v1/queue.proto",
        ];
        let fds = protox::compile(files, [&root]).expect("proto/ compiles");
        let mut out = Vec::new();
        for file in &fds.file {
            for service in &file.service {
                for method in &service.method {
                    out.push((
                        format!("{}.{}", file.package(), service.name()),
                        method.name().to_string(),
                    ));
                }
            }
        }
        assert!(out.len() > 50, "found only {} methods", out.len());
        out
    }

    #[test]
    fn the_whole_method_by_role_matrix_follows_the_table() {
        for (service, method) in methods_in_proto() {
            let path = format!("/{service}/{method}");
            let roles = allowed(&service, &method).unwrap_or_else(|| {
                panic!("{service}/{method} has no rule: every method needs one")
            });
            for role in Role::ALL {
                let decision = authorize(&path, &Identity::new(TD, role), TD);
                assert_eq!(
                    decision.is_ok(),
                    roles.contains(&role),
                    "{path} for {role}: {decision:?}"
                );
            }
        }
    }

    #[test]
    fn every_rule_names_a_method_or_service_that_exists() {
        let methods = methods_in_proto();
        for (service, method, _) in RULES {
            if *service == "grpc.health.v1.Health" {
                continue;
            }
            let exists = methods
                .iter()
                .any(|(s, m)| s == service && (*method == "*" || m == method));
            assert!(exists, "stale rule {service}/{method}");
        }
    }

    #[test]
    fn unlisted_methods_other_domains_and_bad_paths_are_denied() {
        let admin = Identity::new(TD, Role::Admin);
        assert_eq!(
            authorize("/tern.store.v1.Directory/DropEverything", &admin, TD),
            Err(Denied::Unlisted {
                method: "tern.store.v1.Directory/DropEverything".into()
            })
        );
        assert!(matches!(
            authorize(
                "/tern.store.v1.Directory/AddUser",
                &Identity::new("evil.test", Role::Admin),
                TD
            ),
            Err(Denied::TrustDomain { .. })
        ));
        for bad in [
            "",
            "/",
            "tern.store.v1.Admin/Status",
            "/a//b",
            "/a/b/c",
            "//Status",
        ] {
            assert!(
                matches!(authorize(bad, &admin, TD), Err(Denied::NotAMethod(_))),
                "{bad}"
            );
        }
        let smtp = Identity::new(TD, Role::Smtp);
        let denied = authorize("/tern.raft.v1.Raft/Forward", &smtp, TD).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "tern.raft.v1.Raft/Forward is not allowed for role smtp"
        );
    }
}
