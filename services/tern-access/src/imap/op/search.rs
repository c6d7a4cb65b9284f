//! SEARCH and UID SEARCH (RFC 3501 §6.4.4, CONDSTORE's MODSEQ key): the criteria become
//! the store's search key ([`crate::imap::search`]) and the search runs in the store.

use std::io;

use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::search::SearchKey;

use super::{bad, no, ok, store_no, Done};
use crate::imap::backend::ImapBackend;
use crate::imap::search::translate;
use crate::imap::session::{Session, Sink};

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn search(
        &mut self,
        account: &str,
        charset: Option<Charset<'_>>,
        criteria: &Vec1<SearchKey<'_>>,
        uid: bool,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        if let Some(c) = charset {
            let c = c.as_ref().to_ascii_uppercase();
            if c != "UTF-8" && c != "US-ASCII" {
                return no("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset");
            }
        }
        let Some(sel) = &self.selected else {
            return bad("no mailbox selected");
        };
        let translated = match translate(criteria, &sel.view) {
            Ok(t) => t,
            Err(e) => return bad(e),
        };
        let resp = match self
            .backend
            .search(account, &sel.name, translated.key)
            .await
        {
            Ok(r) => r,
            Err(s) => return Ok(store_no("SEARCH", &s)),
        };
        let Some(sel) = &self.selected else {
            return bad("no mailbox selected");
        };
        let mut hits: Vec<u32> = resp
            .uids
            .iter()
            .filter_map(|&u| sel.view.seq_of(u).map(|s| if uid { u } else { s }))
            .collect();
        hits.sort_unstable();
        let mut line = String::from("* SEARCH");
        for h in &hits {
            line.push_str(&format!(" {h}"));
        }
        if translated.uses_modseq && !hits.is_empty() {
            let highest = resp
                .uids
                .iter()
                .filter_map(|u| sel.view.by_uid(*u).map(|m| m.modseq))
                .max()
                .unwrap_or(resp.highest_modseq);
            line.push_str(&format!(" (MODSEQ {highest})"));
        }
        out.line(&line);
        if translated.uses_modseq {
            self.condstore = true;
        }
        self.sync(out, uid, uid).await;
        ok("SEARCH completed")
    }
}
