//! The Directory service: domains, users, aliases, lists, password checks and recipient
//! resolution.

use std::net::IpAddr;
use std::time::Instant;

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::directory_server::Directory;
use tonic::{Request, Response, Status};

use super::{now_ms, unexpected, Api};
use crate::apply::user_by_address;
use crate::command::{Command, Reply};
use crate::error::AppResult;
use crate::keys::{self, cf};
use crate::login_throttle::Throttled;
use crate::model::{
    domain_of, normalize_address, normalize_domain, AliasRec, DomainRec, ListRec, UserRec,
};
use crate::txn::Txn;

/// Directory service implementation.
pub struct DirectoryApi(pub Api);

impl Api {
    /// Whether a password check for `account` from `client` may run (this node's counts).
    fn admit_login(&self, account: &str, client: Option<IpAddr>) -> Result<(), Throttled> {
        match self.logins.lock() {
            Ok(t) => t.admit(account, client, Instant::now()),
            Err(_) => Ok(()),
        }
    }

    /// Counts a failed password check.
    fn login_failed(&self, account: &str, client: Option<IpAddr>) {
        if let Ok(mut t) = self.logins.lock() {
            t.failed(account, client, Instant::now());
        }
    }

    /// Writes a directory command whose only answer is "done".
    async fn write_done(
        &self,
        by: Option<String>,
        cmd: Command,
    ) -> Result<Response<pb::Empty>, Status> {
        self.write_by(by, cmd).await?;
        Ok(Response::new(pb::Empty {}))
    }

    /// Writes an alias or list command; the answer is the address's targets afterwards.
    async fn write_targets(&self, by: Option<String>, cmd: Command) -> Result<Vec<String>, Status> {
        match self.write_by(by, cmd).await? {
            Reply::Targets(targets) => Ok(targets),
            other => Err(unexpected(&other)),
        }
    }

    /// Hashes a new password on the password pool.
    async fn hash_password(&self, password: String) -> Result<String, Status> {
        Ok(self
            .passwords
            .hash(password)
            .await
            .map_err(crate::error::AppError::from)?)
    }

    /// Takes `client`'s network's share of the password pool for one check.
    fn pool_share(&self, client: Option<IpAddr>) -> Result<PoolShare<'_>, Throttled> {
        if let Ok(mut t) = self.logins.lock() {
            t.start(client, Instant::now())?;
        }
        Ok(PoolShare { api: self, client })
    }
}

/// One check's part of its client network's share of the password pool, given back when
/// the check ends, however it ends.
struct PoolShare<'a> {
    api: &'a Api,
    client: Option<IpAddr>,
}

impl Drop for PoolShare<'_> {
    fn drop(&mut self) {
        if let Ok(mut t) = self.api.logins.lock() {
            t.finish(self.client);
        }
    }
}

fn user_pb(reply: Reply) -> Result<pb::User, Status> {
    match reply {
        Reply::User {
            id,
            address,
            quota_bytes,
            used_bytes,
        } => Ok(pb::User {
            id,
            address,
            quota_bytes,
            used_bytes,
        }),
        other => Err(unexpected(&other)),
    }
}

fn user_with_usage(txn: &Txn<'_>, u: &UserRec) -> AppResult<pb::User> {
    let used = crate::apply::account_used_bytes(txn, u.id)?;
    Ok(pb::User {
        id: u.id,
        address: u.address.clone(),
        quota_bytes: u.quota_bytes,
        used_bytes: used,
    })
}

/// Records of one directory kind, optionally only those of `domain`.
fn scan_kind<T: serde::de::DeserializeOwned>(
    txn: &Txn<'_>,
    kind: u8,
    domain: &str,
) -> AppResult<Vec<T>> {
    let suffix = if domain.is_empty() {
        String::new()
    } else {
        format!("@{}", normalize_domain(domain)?)
    };
    Ok(txn
        .scan::<T>(cf::DIR, &[kind])?
        .into_iter()
        .filter(|(k, _)| suffix.is_empty() || k.ends_with(suffix.as_bytes()))
        .map(|(_, v)| v)
        .collect())
}

/// Distinct domains a resuming reader is sent at most in its first message; more, and it
/// is told to reset instead (a bulk import: cheaper to start again than to list them).
const BACKLOG_DOMAINS: usize = 10_000;

/// Sends a directory feed subscription to a reader: first one message with the node's
/// applied index, whether the reader must reset, and the domains of every name the kept
/// changes after its resume point named (a reader drops whole domains, so the domains are
/// all it needs, and it drops them all before it answers from its cache again), then the
/// live changes; a reader that falls
/// [behind](tokio::sync::broadcast::error::RecvError::Lagged) is told to reset (index 0: no
/// new resume point) and goes on.
fn directory_stream(
    sub: crate::directory_feed::Subscription,
) -> tokio_stream::wrappers::ReceiverStream<Result<pb::DirectoryChange, Status>> {
    use tokio::sync::broadcast::error::RecvError;
    let change = |c: crate::directory_feed::Change| pb::DirectoryChange {
        index: c.index,
        reset: c.reset,
        names: c.names.to_vec(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let domains: std::collections::BTreeSet<&str> = sub
            .backlog
            .iter()
            .flat_map(|c| c.names.iter())
            .map(|n| n.rsplit_once('@').map_or(n.as_str(), |(_, d)| d))
            .collect();
        let too_many = domains.len() > BACKLOG_DOMAINS;
        let first = pb::DirectoryChange {
            index: sub.applied,
            reset: sub.reset || too_many,
            names: if too_many {
                Vec::new()
            } else {
                domains.into_iter().map(str::to_string).collect()
            },
        };
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let mut live = sub.live;
        loop {
            let next = tokio::select! {
                r = live.recv() => r,
                _ = tx.closed() => return,
            };
            let out = match next {
                Ok(c) => change(c),
                Err(RecvError::Lagged(_)) => pb::DirectoryChange {
                    index: 0,
                    reset: true,
                    names: Vec::new(),
                },
                Err(RecvError::Closed) => return,
            };
            if tx.send(Ok(out)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[tonic::async_trait]
impl Directory for DirectoryApi {
    type WatchDirectoryStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::DirectoryChange, Status>>;

    async fn watch_directory(
        &self,
        req: Request<pb::WatchDirectoryRequest>,
    ) -> Result<Response<Self::WatchDirectoryStream>, Status> {
        let sub = self
            .0
            .node
            .directory
            .subscribe(req.into_inner().after_index);
        Ok(Response::new(directory_stream(sub)))
    }

    async fn add_domain(
        &self,
        req: Request<pb::AddDomainRequest>,
    ) -> Result<Response<pb::Domain>, Status> {
        let by = super::actor(&req);
        let name = normalize_domain(&req.into_inner().name)?;
        self.0
            .write_by(by, Command::AddDomain { name: name.clone() })
            .await?;
        Ok(Response::new(pb::Domain { name }))
    }

    async fn remove_domain(
        &self,
        req: Request<pb::RemoveDomainRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let name = req.get_ref().name.clone();
        self.0
            .write_done(super::actor(&req), Command::RemoveDomain { name })
            .await
    }

    async fn list_domains(
        &self,
        _: Request<pb::ListDomainsRequest>,
    ) -> Result<Response<pb::ListDomainsResponse>, Status> {
        let domains = self
            .0
            .read(|txn| scan_kind::<DomainRec>(txn, b'd', ""))
            .await?
            .into_iter()
            .map(|d| pb::Domain { name: d.name })
            .collect();
        Ok(Response::new(pb::ListDomainsResponse { domains }))
    }

    async fn add_user(
        &self,
        req: Request<pb::AddUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let by = super::actor(&req);
        let r = req.into_inner();
        let address = normalize_address(&r.address)?;
        let password_hash = self.0.hash_password(r.password).await?;
        let reply = self
            .0
            .write_by(
                by,
                Command::AddUser {
                    address,
                    password_hash,
                    quota_bytes: r.quota_bytes,
                    now_ms: now_ms(),
                },
            )
            .await?;
        Ok(Response::new(user_pb(reply)?))
    }

    async fn remove_user(
        &self,
        req: Request<pb::RemoveUserRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let address = normalize_address(&req.get_ref().address)?;
        self.0
            .write_done(super::actor(&req), Command::RemoveUser { address })
            .await
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let domain = req.into_inner().domain;
        let users = self
            .0
            .read(move |txn| {
                scan_kind::<UserRec>(txn, b'u', &domain)?
                    .iter()
                    .map(|u| user_with_usage(txn, u))
                    .collect::<AppResult<Vec<_>>>()
            })
            .await?;
        Ok(Response::new(pb::ListUsersResponse { users }))
    }

    async fn get_user(
        &self,
        req: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        self.0.scoped(&req, &req.get_ref().address).await?;
        let address = normalize_address(&req.into_inner().address)?;
        let user = self
            .0
            .read(move |txn| user_with_usage(txn, &user_by_address(txn, &address)?))
            .await?;
        Ok(Response::new(user))
    }

    async fn set_password(
        &self,
        req: Request<pb::SetPasswordRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let by = super::actor(&req);
        let r = req.into_inner();
        let address = normalize_address(&r.address)?;
        let password_hash = self.0.hash_password(r.password).await?;
        let cmd = Command::SetPassword {
            address,
            password_hash,
        };
        self.0.write_done(by, cmd).await
    }

    async fn set_quota(
        &self,
        req: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let by = super::actor(&req);
        let r = req.into_inner();
        let reply = self
            .0
            .write_by(
                by,
                Command::SetQuota {
                    address: normalize_address(&r.address)?,
                    quota_bytes: r.quota_bytes,
                },
            )
            .await?;
        Ok(Response::new(user_pb(reply)?))
    }

    async fn check_password(
        &self,
        req: Request<pb::CheckPasswordRequest>,
    ) -> Result<Response<pb::CheckPasswordResponse>, Status> {
        let issue_session = super::session::from_access(&req);
        let r = req.into_inner();
        let client: Option<IpAddr> = r.client_ip.parse().ok();
        let address = normalize_address(&r.address).ok();
        // Counted under the address as given when it is not one: a malformed name is a
        // failure like any other.
        let counted = address
            .clone()
            .unwrap_or_else(|| r.address.to_ascii_lowercase());
        let later = || {
            Ok(Response::new(pb::CheckPasswordResponse {
                retry_later: true,
                ..Default::default()
            }))
        };
        if let Err(why) = self.0.admit_login(&counted, client) {
            tracing::info!(reason = ?why, client = ?client, "password check throttled");
            return later();
        }
        // Linearizable: a password changed or a user removed a moment ago on the leader is
        // not accepted here from a lagging copy (nor from the credential cache, whose hits
        // need the hash read here).
        let user = match address {
            Some(address) => {
                self.0
                    .read(move |txn| txn.get::<UserRec>(cf::DIR, &keys::user_key(&address)))
                    .await?
            }
            None => None,
        };
        // An over-long password is never right: not hashed, and not looked up in (nor kept
        // by) the credential cache.
        let acceptable = r.password.len() <= crate::password::MAX_PASSWORD;
        let remembered = acceptable
            && user.as_ref().is_some_and(|u| {
                self.0
                    .credentials
                    .hit(&u.address, &u.password_hash, &r.password, Instant::now())
            });
        let ok = if remembered {
            crate::metrics::password_checked("cache");
            true
        } else if !acceptable {
            false
        } else {
            // Only an argon2 run takes a share of its network's pool: a user whose check is
            // remembered logs in even while others on the same network (a NAT) fill it.
            let _share = match self.0.pool_share(client) {
                Ok(share) => share,
                Err(why) => {
                    tracing::info!(reason = ?why, client = ?client, "password check throttled");
                    return later();
                }
            };
            let ok = match self
                .0
                .passwords
                .verify(
                    r.password.clone(),
                    user.as_ref().map(|u| u.password_hash.clone()),
                    client,
                )
                .await
            {
                Ok(ok) => ok,
                Err(crate::password::PasswordError::Busy) => return later(),
                Err(e) => return Err(Status::from(crate::error::AppError::from(e))),
            };
            // Counted only once argon2 has really run.
            crate::metrics::password_checked("argon2");
            if let (true, Some(u)) = (ok, &user) {
                self.0.credentials.remember(
                    &u.address,
                    &u.password_hash,
                    &r.password,
                    Instant::now(),
                );
            }
            ok
        };
        if !ok {
            self.0.login_failed(&counted, client);
        }
        let user = match (ok, user) {
            (true, Some(u)) => Some(
                self.0
                    .read_local(move |txn| user_with_usage(txn, &u))
                    .await?,
            ),
            _ => None,
        };
        let session = match &user {
            Some(u) if issue_session => Some(self.0.issue_session(&u.address).await?),
            _ => None,
        };
        Ok(Response::new(pb::CheckPasswordResponse {
            ok,
            user,
            session,
            retry_later: false,
        }))
    }

    async fn renew_session(
        &self,
        req: Request<pb::RenewSessionRequest>,
    ) -> Result<Response<pb::SessionToken>, Status> {
        let token = req.into_inner().token;
        Ok(Response::new(self.0.renew_session(&token).await?))
    }

    async fn add_alias(
        &self,
        req: Request<pb::AddAliasRequest>,
    ) -> Result<Response<pb::Alias>, Status> {
        let by = super::actor(&req);
        let r = req.into_inner();
        let address = normalize_address(&r.address)?;
        let cmd = Command::AddAlias {
            address: address.clone(),
            targets: r.targets,
        };
        let targets = self.0.write_targets(by, cmd).await?;
        Ok(Response::new(pb::Alias { address, targets }))
    }

    async fn remove_alias(
        &self,
        req: Request<pb::RemoveAliasRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let address = req.get_ref().address.clone();
        self.0
            .write_done(super::actor(&req), Command::RemoveAlias { address })
            .await
    }

    async fn list_aliases(
        &self,
        req: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        let domain = req.into_inner().domain;
        let aliases = self
            .0
            .read(move |txn| scan_kind::<AliasRec>(txn, b'a', &domain))
            .await?
            .into_iter()
            .map(|a| pb::Alias {
                address: a.address,
                targets: a.targets,
            })
            .collect();
        Ok(Response::new(pb::ListAliasesResponse { aliases }))
    }

    async fn add_list_members(
        &self,
        req: Request<pb::AddListMembersRequest>,
    ) -> Result<Response<pb::MailingList>, Status> {
        let by = super::actor(&req);
        let r = req.into_inner();
        let address = normalize_address(&r.address)?;
        let cmd = Command::AddListMembers {
            address: address.clone(),
            members: r.members,
        };
        let members = self.0.write_targets(by, cmd).await?;
        Ok(Response::new(pb::MailingList { address, members }))
    }

    async fn remove_list_members(
        &self,
        req: Request<pb::RemoveListMembersRequest>,
    ) -> Result<Response<pb::MailingList>, Status> {
        let by = super::actor(&req);
        let r = req.into_inner();
        let address = normalize_address(&r.address)?;
        let cmd = Command::RemoveListMembers {
            address: address.clone(),
            members: r.members,
        };
        let members = self.0.write_targets(by, cmd).await?;
        Ok(Response::new(pb::MailingList { address, members }))
    }

    async fn remove_list(
        &self,
        req: Request<pb::RemoveListRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let address = req.get_ref().address.clone();
        self.0
            .write_done(super::actor(&req), Command::RemoveList { address })
            .await
    }

    async fn list_lists(
        &self,
        req: Request<pb::ListListsRequest>,
    ) -> Result<Response<pb::ListListsResponse>, Status> {
        let domain = req.into_inner().domain;
        let lists = self
            .0
            .read(move |txn| scan_kind::<ListRec>(txn, b'l', &domain))
            .await?
            .into_iter()
            .map(|l| pb::MailingList {
                address: l.address,
                members: l.members,
            })
            .collect();
        Ok(Response::new(pb::ListListsResponse { lists }))
    }

    async fn resolve(
        &self,
        req: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        use pb::resolve_response::Kind;
        let address = normalize_address(&req.into_inner().address)?;
        // Linearizable: a lagging follower must not call a domain added a moment ago on the
        // leader "remote", nor a new user unknown (a 550 must be the truth).
        let resp = self
            .0
            .read(move |txn| {
                if let Some(u) = txn.get::<UserRec>(cf::DIR, &keys::user_key(&address))? {
                    return Ok(pb::ResolveResponse {
                        kind: Kind::LocalUser as i32,
                        user: Some(user_with_usage(txn, &u)?),
                        targets: vec![],
                    });
                }
                if let Some(a) = txn.get::<AliasRec>(cf::DIR, &keys::alias_key(&address))? {
                    return Ok(pb::ResolveResponse {
                        kind: Kind::Alias as i32,
                        user: None,
                        targets: a.targets,
                    });
                }
                if let Some(l) = txn.get::<ListRec>(cf::DIR, &keys::list_key(&address))? {
                    return Ok(pb::ResolveResponse {
                        kind: Kind::List as i32,
                        user: None,
                        targets: l.members,
                    });
                }
                let hosted = txn.exists(cf::DIR, &keys::domain_key(domain_of(&address)))?;
                let kind = if hosted { Kind::Unknown } else { Kind::Remote };
                Ok(pb::ResolveResponse {
                    kind: kind as i32,
                    user: None,
                    targets: vec![],
                })
            })
            .await?;
        Ok(Response::new(resp))
    }
}
