//! Domains, users, aliases and mailing lists.

use crate::command::{Outcome, Reply};
use crate::error::{AppError, AppResult};
use crate::keys::{self, cf};
use crate::model::{
    domain_of, normalize_address, normalize_domain, AliasRec, DomainRec, ListRec, UserRec,
};
use crate::txn::Txn;

use super::account::{self, load_state};
use super::mailbox;

/// The mailboxes every new account gets: (name, special use).
pub const DEFAULT_MAILBOXES: [(&str, &str); 5] = [
    ("INBOX", ""),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
];

fn require_domain(txn: &Txn<'_>, address: &str) -> AppResult<()> {
    let domain = domain_of(address);
    if txn.exists(cf::DIR, &keys::domain_key(domain))? {
        Ok(())
    } else {
        Err(AppError::not_found(format!(
            "domain {domain} is not hosted here"
        )))
    }
}

fn require_free(txn: &Txn<'_>, address: &str) -> AppResult<()> {
    for (key, what) in [
        (keys::user_key(address), "a user"),
        (keys::alias_key(address), "an alias"),
        (keys::list_key(address), "a list"),
    ] {
        if txn.exists(cf::DIR, &key)? {
            return Err(AppError::exists(format!("{address} is already {what}")));
        }
    }
    Ok(())
}

pub fn add_domain(txn: &mut Txn<'_>, name: &str) -> Outcome {
    let name = normalize_domain(name)?;
    let key = keys::domain_key(&name);
    if txn.exists(cf::DIR, &key)? {
        return Err(AppError::exists(format!("domain {name} already exists")));
    }
    txn.put(cf::DIR, key, &DomainRec { name })?;
    Ok(Reply::Done)
}

pub fn remove_domain(txn: &mut Txn<'_>, name: &str) -> Outcome {
    let name = normalize_domain(name)?;
    let key = keys::domain_key(&name);
    if !txn.exists(cf::DIR, &key)? {
        return Err(AppError::not_found(format!("unknown domain {name}")));
    }
    let suffix = format!("@{name}");
    for kind in [b'u', b'a', b'l'] {
        for (k, _) in txn.scan_prefix(cf::DIR, &[kind])? {
            if k.ends_with(suffix.as_bytes()) {
                return Err(AppError::precondition(format!(
                    "domain {name} still has users, aliases or lists; remove them first"
                )));
            }
        }
    }
    txn.delete(cf::DIR, key);
    Ok(Reply::Done)
}

pub fn add_user(
    txn: &mut Txn<'_>,
    address: &str,
    hash: &str,
    quota_bytes: u64,
    now_ms: i64,
) -> Outcome {
    let address = normalize_address(address)?;
    require_domain(txn, &address)?;
    require_free(txn, &address)?;
    let id = txn
        .get_raw(cf::META, crate::keys::meta::NEXT_ACCOUNT)?
        .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0)
        + 1;
    txn.put_raw(
        cf::META,
        crate::keys::meta::NEXT_ACCOUNT.to_vec(),
        id.to_be_bytes().to_vec(),
    );
    let user = UserRec {
        id,
        address: address.clone(),
        password_hash: hash.to_string(),
        quota_bytes,
    };
    txn.put(cf::DIR, keys::user_key(&address), &user)?;
    txn.put_raw(cf::DIR, keys::account_key(id), address.as_bytes().to_vec());
    for (name, special) in DEFAULT_MAILBOXES {
        let mut mb = account::new_mailbox(txn, id, name, special, now_ms)?;
        mb.subscribed = true;
        account::put_mailbox(txn, id, &mb)?;
    }
    user_reply(txn, &user)
}

/// The reply describing a user, with its current usage.
pub fn user_reply(txn: &Txn<'_>, user: &UserRec) -> AppResult<Reply> {
    Ok(Reply::User {
        id: user.id,
        address: user.address.clone(),
        quota_bytes: user.quota_bytes,
        used_bytes: load_state(txn, user.id)?.used_bytes,
    })
}

pub fn remove_user(txn: &mut Txn<'_>, address: &str) -> Outcome {
    let address = normalize_address(address)?;
    let user = account::user_by_address(txn, &address)?;
    for mb in account::all_mailboxes(txn, user.id)? {
        mailbox::purge_messages(txn, user.id, &mb)?;
    }
    for (k, _) in txn.scan_prefix(cf::MBOX, &keys::account_prefix(user.id))? {
        txn.delete(cf::MBOX, k);
    }
    for (k, _) in txn.scan_prefix(cf::CHANGES, &keys::account_prefix(user.id))? {
        txn.delete(cf::CHANGES, k);
    }
    txn.delete(cf::DIR, keys::account_key(user.id));
    txn.delete(cf::DIR, keys::user_key(&address));
    Ok(Reply::Done)
}

pub fn set_password(txn: &mut Txn<'_>, address: &str, hash: &str) -> Outcome {
    let address = normalize_address(address)?;
    let mut user = account::user_by_address(txn, &address)?;
    user.password_hash = hash.to_string();
    txn.put(cf::DIR, keys::user_key(&address), &user)?;
    Ok(Reply::Done)
}

pub fn set_quota(txn: &mut Txn<'_>, address: &str, quota_bytes: u64) -> Outcome {
    let address = normalize_address(address)?;
    let mut user = account::user_by_address(txn, &address)?;
    user.quota_bytes = quota_bytes;
    txn.put(cf::DIR, keys::user_key(&address), &user)?;
    user_reply(txn, &user)
}

fn normalize_all(addresses: &[String]) -> AppResult<Vec<String>> {
    let mut out = Vec::with_capacity(addresses.len());
    for a in addresses {
        let a = normalize_address(a)?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

pub fn add_alias(txn: &mut Txn<'_>, address: &str, targets: &[String]) -> Outcome {
    let address = normalize_address(address)?;
    require_domain(txn, &address)?;
    let targets = normalize_all(targets)?;
    if targets.is_empty() {
        return Err(AppError::invalid("an alias needs at least one target"));
    }
    if txn.exists(cf::DIR, &keys::user_key(&address))?
        || txn.exists(cf::DIR, &keys::list_key(&address))?
    {
        return Err(AppError::exists(format!(
            "{address} is already a user or a list"
        )));
    }
    txn.put(
        cf::DIR,
        keys::alias_key(&address),
        &AliasRec {
            address: address.clone(),
            targets: targets.clone(),
        },
    )?;
    Ok(Reply::Targets(targets))
}

pub fn remove_alias(txn: &mut Txn<'_>, address: &str) -> Outcome {
    let address = normalize_address(address)?;
    let key = keys::alias_key(&address);
    if !txn.exists(cf::DIR, &key)? {
        return Err(AppError::not_found(format!("unknown alias {address}")));
    }
    txn.delete(cf::DIR, key);
    Ok(Reply::Done)
}

pub fn add_list_members(txn: &mut Txn<'_>, address: &str, members: &[String]) -> Outcome {
    let address = normalize_address(address)?;
    require_domain(txn, &address)?;
    if txn.exists(cf::DIR, &keys::user_key(&address))?
        || txn.exists(cf::DIR, &keys::alias_key(&address))?
    {
        return Err(AppError::exists(format!(
            "{address} is already a user or an alias"
        )));
    }
    let key = keys::list_key(&address);
    let mut list = txn.get::<ListRec>(cf::DIR, &key)?.unwrap_or(ListRec {
        address: address.clone(),
        members: vec![],
    });
    for m in normalize_all(members)? {
        if !list.members.contains(&m) {
            list.members.push(m);
        }
    }
    txn.put(cf::DIR, key, &list)?;
    Ok(Reply::Targets(list.members))
}

pub fn remove_list_members(txn: &mut Txn<'_>, address: &str, members: &[String]) -> Outcome {
    let address = normalize_address(address)?;
    let key = keys::list_key(&address);
    let mut list = txn
        .get::<ListRec>(cf::DIR, &key)?
        .ok_or_else(|| AppError::not_found(format!("unknown list {address}")))?;
    let remove = normalize_all(members)?;
    list.members.retain(|m| !remove.contains(m));
    txn.put(cf::DIR, key, &list)?;
    Ok(Reply::Targets(list.members))
}

pub fn remove_list(txn: &mut Txn<'_>, address: &str) -> Outcome {
    let address = normalize_address(address)?;
    let key = keys::list_key(&address);
    if !txn.exists(cf::DIR, &key)? {
        return Err(AppError::not_found(format!("unknown list {address}")));
    }
    txn.delete(cf::DIR, key);
    Ok(Reply::Done)
}
