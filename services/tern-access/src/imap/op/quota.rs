//! QUOTA (RFC 9208, STORAGE only): one quota root `""` per account, set by the
//! administrator, never by the client.

use std::io;

use imap_codec::imap_types::mailbox::Mailbox;

use super::{mailbox_or_no, no, ok, store_no, Done};
use crate::imap::backend::{ImapBackend, Quota};
use crate::imap::session::{Session, Sink};
use crate::imap::wire::mailbox_name;

fn quota_line(q: &Quota) -> String {
    format!(
        "* QUOTA \"\" (STORAGE {} {})",
        q.used_bytes.div_ceil(1024),
        q.limit_bytes / 1024
    )
}

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn get_quota_root(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let name = mailbox_or_no!(mailbox);
        let mut shown = Vec::new();
        mailbox_name(&mut shown, &name);
        let quota = match self.backend.quota(account).await {
            Ok(q) => q,
            Err(s) => return Ok(store_no("GETQUOTAROOT", &s)),
        };
        if quota.limit_bytes == 0 {
            out.line(&format!("* QUOTAROOT {}", String::from_utf8_lossy(&shown)));
        } else {
            out.line(&format!(
                "* QUOTAROOT {} \"\"",
                String::from_utf8_lossy(&shown)
            ));
            out.line(&quota_line(&quota));
        }
        ok("GETQUOTAROOT completed")
    }

    pub(crate) async fn get_quota(
        &mut self,
        account: &str,
        root: &[u8],
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        if !root.is_empty() {
            return no("[NONEXISTENT] no such quota root");
        }
        match self.backend.quota(account).await {
            Ok(q) if q.limit_bytes > 0 => {
                out.line(&quota_line(&q));
                ok("GETQUOTA completed")
            }
            Ok(_) => no("[NONEXISTENT] no quota is set"),
            Err(s) => Ok(store_no("GETQUOTA", &s)),
        }
    }

    pub(crate) fn set_quota(&self) -> io::Result<Done> {
        no("[NOPERM] quotas are set by the administrator (ternctl)")
    }
}
