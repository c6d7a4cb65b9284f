//! Directory and mailbox-list changes in the chaos load, checked for linearizability:
//! - an alias per key (`dirK@example.test`): AddAlias to a target naming a value, RemoveAlias,
//!   and Resolve, on any store node, as a register ([`Register`]: a value, 0 for no alias);
//! - a user per key (`dynK@example.test`): AddUser, RemoveUser and Resolve, as a register
//!   (1 while the user exists, 0 when not);
//! - a hosted domain per key (`chaosK.test`): AddDomain, RemoveDomain and Resolve of an
//!   address in it (hosted: no such user; not hosted: remote), as a register (1 while the
//!   domain is hosted, 0 when not), so the answer a RCPT depends on is checked as well;
//! - alice's mailbox names: CREATE and DELETE of a few names and LIST, on any store node, as
//!   a set ([`Mailboxes`]).
//!
//! Each operation is recorded with its invocation and return times and its answer; one whose
//! outcome is unknown may have happened at any time after it was invoked, or never.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tern_history::models::{MailboxAnswer, MailboxOp, Mailboxes, Register, RegisterOp};
use tern_history::{linearizable_by_key, Operation};
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::directory_client::DirectoryClient;
use tern_proto::store::v1::mailboxes_client::MailboxesClient;
use tern_testkit::StoreCluster;
use tern_trust::Role;

use super::faults::Rng;
use super::{cause, outcome_unknown, Record, ACCOUNT, BACKOFF, OP_TIMEOUT};

/// Aliases changed by the load.
const ALIASES: u64 = 3;
/// Mailbox names created and deleted by the load.
const NAMES: [&str; 3] = ["Tmp0", "Tmp1", "Tmp2"];

/// What the name clients saw.
#[derive(Default)]
pub struct NameHistory {
    pub aliases: Vec<(u64, Operation<RegisterOp, u64>)>,
    pub users: Vec<(u64, Operation<RegisterOp, u64>)>,
    pub domains: Vec<(u64, Operation<RegisterOp, u64>)>,
    pub mailboxes: Vec<Operation<MailboxOp, MailboxAnswer>>,
}

/// Which of the register histories an operation goes to.
type Registers = fn(&mut NameHistory) -> &mut Vec<(u64, Operation<RegisterOp, u64>)>;

fn aliases(h: &mut NameHistory) -> &mut Vec<(u64, Operation<RegisterOp, u64>)> {
    &mut h.aliases
}

fn users(h: &mut NameHistory) -> &mut Vec<(u64, Operation<RegisterOp, u64>)> {
    &mut h.users
}

fn domains(h: &mut NameHistory) -> &mut Vec<(u64, Operation<RegisterOp, u64>)> {
    &mut h.domains
}

/// Domains added and removed by the load.
const DOMAINS: u64 = 2;

fn domain(key: u64) -> String {
    format!("chaos{key}.test")
}

/// Users added and removed by the load.
const USERS: u64 = 2;

fn user(key: u64) -> String {
    format!("dyn{key}@example.test")
}

fn alias(key: u64) -> String {
    format!("dir{key}@example.test")
}

fn target(value: u64) -> String {
    format!("v{value}@example.test")
}

/// The value an alias's targets name (0: no alias).
fn value_of(targets: &[String]) -> u64 {
    targets
        .first()
        .and_then(|t| t.strip_prefix('v')?.split('@').next()?.parse().ok())
        .unwrap_or(0)
}

pub struct NameClient {
    pub id: u32,
    pub rng: Rng,
    pub cluster_nodes: usize,
    pub directories: Vec<DirectoryClient<tonic::transport::Channel>>,
    pub mailboxes: Vec<MailboxesClient<tern_proto::client::TracedChannel>>,
    pub record: Arc<Mutex<Record>>,
    pub started: Instant,
}

/// Directory (admin) and mailbox (alice's session) clients of every node.
pub async fn clients(
    cluster: &StoreCluster,
) -> anyhow::Result<(
    Vec<DirectoryClient<tonic::transport::Channel>>,
    Vec<MailboxesClient<tern_proto::client::TracedChannel>>,
)> {
    let mut d = Vec::new();
    let mut m = Vec::new();
    for i in 0..cluster.nodes.len() {
        d.push(DirectoryClient::new(cluster.channel(i, Role::Admin).await?));
        m.push(cluster.mailboxes(i, ACCOUNT).await?);
    }
    Ok((d, m))
}

impl NameClient {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn node(&mut self) -> usize {
        self.rng.below(self.cluster_nodes as u64) as usize
    }

    /// Files one operation: done, unknown (counted), or dropped (a definite failure that
    /// changed nothing, or a read that failed).
    fn file<T>(
        &self,
        result: &Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>,
        write: bool,
    ) -> Option<bool> {
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        r.operations += 1;
        match result {
            Ok(Ok(_)) => {
                r.successes.push(self.now());
                Some(true)
            }
            Ok(Err(_)) if !write => None,
            Ok(Err(s)) if !outcome_unknown(s) => {
                *r.refused_causes.entry(cause(result)).or_default() += 1;
                None
            }
            _ => {
                r.unknown += 1;
                *r.unknown_causes.entry(cause(result)).or_default() += 1;
                Some(false)
            }
        }
    }

    pub async fn run(mut self, until: Instant, history: Arc<Mutex<NameHistory>>) {
        let mut value = u64::from(self.id) * 1_000_000;
        while Instant::now() < until {
            let ok = match self.rng.below(4) {
                0 => {
                    value += 1;
                    self.alias_op(value, &history).await
                }
                1 => self.user_op(&history).await,
                2 => self.domain_op(&history).await,
                _ => self.mailbox_op(&history).await,
            };
            if !ok {
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }

    async fn alias_op(&mut self, value: u64, history: &Mutex<NameHistory>) -> bool {
        let key = self.rng.below(ALIASES);
        let i = self.node();
        let mut d = self.directories[i].clone();
        let call = self.now();
        let client = self.id;
        let (input, result_output, done) = match self.rng.below(3) {
            0 => {
                let req = pb::AddAliasRequest {
                    address: alias(key),
                    targets: vec![target(value)],
                };
                let result = tokio::time::timeout(OP_TIMEOUT, d.add_alias(req)).await;
                let done = self.file(&result, true);
                (RegisterOp::Write(value), Some(value), done)
            }
            1 => {
                let req = pb::RemoveAliasRequest {
                    address: alias(key),
                };
                let result = tokio::time::timeout(OP_TIMEOUT, d.remove_alias(req)).await;
                // NotFound: there was no alias then, which is a read of 0.
                if matches!(&result, Ok(Err(s)) if s.code() == tonic::Code::NotFound) {
                    let op = Operation::done(client, call, call, RegisterOp::Read, 0);
                    return self.refused_read(history, aliases, key, op);
                }
                let done = self.file(&result, true);
                (RegisterOp::Write(0), Some(0), done)
            }
            _ => {
                let req = pb::ResolveRequest {
                    address: alias(key),
                };
                let result = tokio::time::timeout(OP_TIMEOUT, d.resolve(req)).await;
                let done = self.file(&result, false);
                let seen = match &result {
                    Ok(Ok(r)) => value_of(&r.get_ref().targets),
                    _ => 0,
                };
                (RegisterOp::Read, Some(seen), done)
            }
        };
        let output = result_output.unwrap_or(0);
        self.file_register(history, aliases, key, done, call, input, output)
    }

    async fn user_op(&mut self, history: &Mutex<NameHistory>) -> bool {
        let key = self.rng.below(USERS);
        let i = self.node();
        let mut d = self.directories[i].clone();
        let call = self.now();
        match self.rng.below(3) {
            0 => {
                let req = pb::AddUserRequest {
                    address: user(key),
                    password: "chaos-password".into(),
                    quota_bytes: 0,
                };
                let result = tokio::time::timeout(OP_TIMEOUT, d.add_user(req)).await;
                self.file_presence(history, users, key, call, 1, &result)
            }
            1 => {
                let req = pb::RemoveUserRequest { address: user(key) };
                let result = tokio::time::timeout(OP_TIMEOUT, d.remove_user(req)).await;
                self.file_presence(history, users, key, call, 0, &result)
            }
            _ => {
                let req = pb::ResolveRequest { address: user(key) };
                let result = tokio::time::timeout(OP_TIMEOUT, d.resolve(req)).await;
                let present = pb::resolve_response::Kind::LocalUser;
                self.file_resolve(history, users, key, call, present, &result)
            }
        }
    }

    async fn domain_op(&mut self, history: &Mutex<NameHistory>) -> bool {
        let key = self.rng.below(DOMAINS);
        let i = self.node();
        let mut d = self.directories[i].clone();
        let call = self.now();
        match self.rng.below(3) {
            0 => {
                let req = pb::AddDomainRequest { name: domain(key) };
                let result = tokio::time::timeout(OP_TIMEOUT, d.add_domain(req)).await;
                self.file_presence(history, domains, key, call, 1, &result)
            }
            1 => {
                let req = pb::RemoveDomainRequest { name: domain(key) };
                let result = tokio::time::timeout(OP_TIMEOUT, d.remove_domain(req)).await;
                self.file_presence(history, domains, key, call, 0, &result)
            }
            _ => {
                // What a RCPT to this domain would be told: no such user (hosted) or a
                // remote route (not hosted).
                let req = pb::ResolveRequest {
                    address: format!("nobody@{}", domain(key)),
                };
                let result = tokio::time::timeout(OP_TIMEOUT, d.resolve(req)).await;
                let present = pb::resolve_response::Kind::Unknown;
                self.file_resolve(history, domains, key, call, present, &result)
            }
        }
    }

    /// Files adding (`to` 1) or removing (`to` 0) something whose presence is a register. The
    /// definite refusal that reveals the state (ALREADY_EXISTS, NOT_FOUND) is a read of it.
    #[allow(clippy::too_many_arguments)]
    fn file_presence<T>(
        &self,
        history: &Mutex<NameHistory>,
        which: Registers,
        key: u64,
        call: u64,
        to: u64,
        result: &Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>,
    ) -> bool {
        let revealing = if to == 1 {
            tonic::Code::AlreadyExists
        } else {
            tonic::Code::NotFound
        };
        if matches!(result, Ok(Err(s)) if s.code() == revealing) {
            let op = Operation::done(self.id, call, call, RegisterOp::Read, to);
            return self.refused_read(history, which, key, op);
        }
        let done = self.file(result, true);
        self.file_register(history, which, key, done, call, RegisterOp::Write(to), to)
    }

    /// Files a Resolve as a read of a presence register: 1 when its answer is `present`.
    fn file_resolve(
        &self,
        history: &Mutex<NameHistory>,
        which: Registers,
        key: u64,
        call: u64,
        present: pb::resolve_response::Kind,
        result: &Result<
            Result<tonic::Response<pb::ResolveResponse>, tonic::Status>,
            tokio::time::error::Elapsed,
        >,
    ) -> bool {
        let done = self.file(result, false);
        let seen = match result {
            Ok(Ok(r)) => u64::from(r.get_ref().kind == present as i32),
            _ => 0,
        };
        self.file_register(history, which, key, done, call, RegisterOp::Read, seen)
    }

    /// Files a refused change as the read it is, returned now.
    fn refused_read(
        &self,
        history: &Mutex<NameHistory>,
        which: Registers,
        key: u64,
        mut op: Operation<RegisterOp, u64>,
    ) -> bool {
        op.ret = Some(self.now());
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .operations += 1;
        which(&mut history.lock().unwrap_or_else(|p| p.into_inner())).push((key, op));
        true
    }

    /// Files a register operation as [`NameClient::file`] classified it (`done`): with its
    /// output, as unknown, or not at all (a definite failure or a failed read); whether it
    /// completed.
    #[allow(clippy::too_many_arguments)]
    fn file_register(
        &self,
        history: &Mutex<NameHistory>,
        which: Registers,
        key: u64,
        done: Option<bool>,
        call: u64,
        input: RegisterOp,
        output: u64,
    ) -> bool {
        let op = match done {
            None => return false,
            Some(true) => Operation::done(self.id, call, self.now(), input, output),
            Some(false) => Operation::unknown(self.id, call, input),
        };
        let ok = op.ret.is_some();
        which(&mut history.lock().unwrap_or_else(|p| p.into_inner())).push((key, op));
        ok
    }

    async fn mailbox_op(&mut self, history: &Mutex<NameHistory>) -> bool {
        let i = self.node();
        let mut m = self.mailboxes[i].clone();
        let name = NAMES[self.rng.below(NAMES.len() as u64) as usize].to_string();
        let call = self.now();
        let client = self.id;
        let (input, answer, done) = match self.rng.below(3) {
            0 => {
                let req = pb::CreateMailboxRequest {
                    account: ACCOUNT.into(),
                    name: name.clone(),
                    special_use: String::new(),
                };
                let result = tokio::time::timeout(OP_TIMEOUT, m.create(req)).await;
                let (answer, done) = refusal(
                    &result,
                    tonic::Code::AlreadyExists,
                    self.file(&result, true),
                );
                (MailboxOp::Create(name), answer, done)
            }
            1 => {
                let req = pb::DeleteMailboxRequest {
                    account: ACCOUNT.into(),
                    name: name.clone(),
                };
                let result = tokio::time::timeout(OP_TIMEOUT, m.delete(req)).await;
                let (answer, done) =
                    refusal(&result, tonic::Code::NotFound, self.file(&result, true));
                (MailboxOp::Delete(name), answer, done)
            }
            _ => {
                let req = pb::ListMailboxesRequest {
                    account: ACCOUNT.into(),
                };
                let result = tokio::time::timeout(OP_TIMEOUT, m.list(req)).await;
                let done = self.file(&result, false);
                let names = match &result {
                    Ok(Ok(r)) => r
                        .get_ref()
                        .mailboxes
                        .iter()
                        .map(|b| b.name.clone())
                        .filter(|n| NAMES.contains(&n.as_str()))
                        .collect(),
                    _ => BTreeSet::new(),
                };
                (MailboxOp::List, MailboxAnswer::Names(names), done)
            }
        };
        let op = match done {
            None => return false,
            Some(true) => Operation::done(client, call, self.now(), input, answer),
            Some(false) => Operation::unknown(client, call, input),
        };
        let ok = op.ret.is_some();
        history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .mailboxes
            .push(op);
        ok
    }
}

/// A CREATE of an existing name or a DELETE of a missing one is a definite NO (a read of
/// the set); any other answer is filed as usual.
fn refusal<T>(
    result: &Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>,
    no: tonic::Code,
    filed: Option<bool>,
) -> (MailboxAnswer, Option<bool>) {
    match result {
        Ok(Err(s)) if s.code() == no => (MailboxAnswer::No, Some(true)),
        _ => (MailboxAnswer::Ok, filed),
    }
}

/// Whether every alias's history and the mailbox list's are linearizable; prints what is
/// not.
pub fn check(history: &NameHistory) -> bool {
    let reads = |ops: &mut dyn Iterator<Item = bool>| ops.filter(|r| *r).count();
    let register_reads = |ops: &[(u64, Operation<RegisterOp, u64>)]| {
        ops.iter()
            .filter(|(_, o)| o.input == RegisterOp::Read)
            .count()
    };
    println!(
        "names: {} alias operations ({} reads), {} user operations ({} reads), {} domain operations ({} reads), {} mailbox-list operations ({} LISTs)",
        history.aliases.len(),
        register_reads(&history.aliases),
        history.users.len(),
        register_reads(&history.users),
        history.domains.len(),
        register_reads(&history.domains),
        history.mailboxes.len(),
        reads(&mut history.mailboxes.iter().map(|o| o.input == MailboxOp::List)),
    );
    let mut ok = true;
    ok &= registers_linearizable(&history.aliases, alias);
    ok &= registers_linearizable(&history.users, user);
    ok &= registers_linearizable(&history.domains, domain);
    let model = Mailboxes {
        initial: BTreeSet::new(),
    };
    if let Err((_, verdict)) = linearizable_by_key(&model, &history.mailboxes, |_| 0u8) {
        ok = false;
        println!("{ACCOUNT}'s mailbox list is not linearizable: {verdict:?}");
    }
    ok
}

/// Whether each key's register history is linearizable; prints the names of those that
/// are not.
fn registers_linearizable(
    ops: &[(u64, Operation<RegisterOp, u64>)],
    name: fn(u64) -> String,
) -> bool {
    let keys: BTreeSet<u64> = ops.iter().map(|(k, _)| *k).collect();
    let mut ok = true;
    for key in keys {
        let mine: Vec<_> = ops
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, o)| o.clone())
            .collect();
        if let Err((_, verdict)) = linearizable_by_key(&Register, &mine, |_| key) {
            ok = false;
            println!("{} is not linearizable: {verdict:?}", name(key));
        }
    }
    ok
}
