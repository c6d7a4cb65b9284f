//! A small read-your-writes transaction over any [`KvRead`].
//!
//! Applying a Raft entry goes through a [`Txn`]: the commands of the entry read their own
//! earlier writes from an in-memory overlay, and the whole entry, with the new last-applied
//! log id, becomes one [`Batch`] that the engine writes atomically. Local reads use a `Txn`
//! with nothing written, so read paths and apply logic share one set of typed helpers.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::{Batch, KvRead};
use crate::error::AppResult;

/// A write transaction over the state machine: reads see earlier writes of the same
/// transaction; nothing reaches the engine until [`Txn::into_batch`] is written.
pub struct Txn<'a> {
    engine: &'a dyn KvRead,
    overlay: BTreeMap<OverlayKey, Option<Vec<u8>>>,
    /// Previous overlay values, newest last, so a failed command can be rolled back.
    undo: Vec<(OverlayKey, Option<Option<Vec<u8>>>)>,
}

type OverlayKey = (&'static str, Vec<u8>);

impl<'a> Txn<'a> {
    /// Keys this transaction writes (not deletes) in column family `cf`.
    pub fn written_keys<'s>(&'s self, cf: &'static str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.overlay
            .iter()
            .filter(move |((c, _), v)| *c == cf && v.is_some())
            .map(|((_, k), _)| k.as_slice())
    }

    /// Starts a transaction.
    pub fn new(engine: &'a dyn KvRead) -> Self {
        Self {
            engine,
            overlay: BTreeMap::new(),
            undo: Vec::new(),
        }
    }

    /// Raw read.
    pub fn get_raw(&self, cf_name: &'static str, key: &[u8]) -> AppResult<Option<Vec<u8>>> {
        if let Some(v) = self.overlay.get(&(cf_name, key.to_vec())) {
            return Ok(v.clone());
        }
        self.engine.get(cf_name, key)
    }

    /// Whether a key exists.
    pub fn exists(&self, cf_name: &'static str, key: &[u8]) -> AppResult<bool> {
        if let Some(v) = self.overlay.get(&(cf_name, key.to_vec())) {
            return Ok(v.is_some());
        }
        self.engine.contains(cf_name, key)
    }

    /// Typed read.
    pub fn get<T: DeserializeOwned>(
        &self,
        cf_name: &'static str,
        key: &[u8],
    ) -> AppResult<Option<T>> {
        match self.get_raw(cf_name, key)? {
            Some(v) => Ok(Some(bincode::deserialize(&v)?)),
            None => Ok(None),
        }
    }

    /// Raw write.
    pub fn put_raw(&mut self, cf_name: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.write((cf_name, key), Some(value));
    }

    fn write(&mut self, key: OverlayKey, value: Option<Vec<u8>>) {
        let previous = self.overlay.insert(key.clone(), value);
        self.undo.push((key, previous));
    }

    /// Typed write.
    pub fn put<T: Serialize>(
        &mut self,
        cf_name: &'static str,
        key: Vec<u8>,
        value: &T,
    ) -> AppResult<()> {
        let v = bincode::serialize(value)?;
        self.put_raw(cf_name, key, v);
        Ok(())
    }

    /// Delete.
    pub fn delete(&mut self, cf_name: &'static str, key: Vec<u8>) {
        self.write((cf_name, key), None);
    }

    /// Every live (key, value) under `prefix`, merging the overlay over the engine.
    pub fn scan_prefix(
        &self,
        cf_name: &'static str,
        prefix: &[u8],
    ) -> AppResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_prefix_limit(cf_name, prefix, usize::MAX)
    }

    /// The first `limit` live (key, value) pairs under `prefix`, in key order.
    pub fn scan_prefix_limit(
        &self,
        cf_name: &'static str,
        prefix: &[u8],
        limit: usize,
    ) -> AppResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_from(cf_name, prefix, prefix, limit)
    }

    /// The first `limit` live (key, value) pairs under `prefix` from `start` on (`start` at
    /// or after `prefix`), in key order: the engine's iterator and the overlay are merged
    /// lazily, so memory is bounded by `limit`.
    pub fn scan_from(
        &self,
        cf_name: &'static str,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> AppResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut stored = self.engine.scan(cf_name, prefix, start)?.peekable();
        let mut overlay = self
            .overlay
            .range((cf_name, start.to_vec())..)
            .take_while(|((c, k), _)| *c == cf_name && k.starts_with(prefix))
            .peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            let stored_key = match stored.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => match stored.next() {
                    Some(Err(e)) => return Err(e),
                    _ => None,
                },
                None => None,
            };
            let ov_key = overlay.peek().map(|((_, k), _)| k.clone());
            match (stored_key, ov_key) {
                (None, None) => break,
                (Some(d), Some(o)) if o.as_slice() <= &*d => {
                    if o.as_slice() == &*d {
                        stored.next();
                    }
                    if let Some((_, Some(v))) = overlay.next() {
                        out.push((o, v.clone()));
                    }
                }
                (Some(_), _) => {
                    if let Some(Ok((k, v))) = stored.next() {
                        out.push((k.into_vec(), v.into_vec()));
                    }
                }
                (None, Some(o)) => {
                    if let Some((_, Some(v))) = overlay.next() {
                        out.push((o, v.clone()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Typed prefix scan.
    pub fn scan<T: DeserializeOwned>(
        &self,
        cf_name: &'static str,
        prefix: &[u8],
    ) -> AppResult<Vec<(Vec<u8>, T)>> {
        self.scan_prefix(cf_name, prefix)?
            .into_iter()
            .map(|(k, v)| Ok((k, bincode::deserialize(&v)?)))
            .collect()
    }

    /// Turns the overlay into a write batch (keys and values move; nothing is copied).
    pub fn into_batch(self) -> Batch {
        let mut batch = Batch::new();
        for ((c, k), v) in self.overlay {
            match v {
                Some(v) => batch.put(c, k, v),
                None => batch.delete(c, k),
            }
        }
        batch
    }

    /// A point to roll back to if the next command fails half-way.
    pub fn savepoint(&self) -> usize {
        self.undo.len()
    }

    /// Undoes every write made after `savepoint`: a failed command leaves no partial writes.
    pub fn rollback_to(&mut self, savepoint: usize) {
        while self.undo.len() > savepoint {
            let Some((key, previous)) = self.undo.pop() else {
                break;
            };
            match previous {
                Some(v) => self.overlay.insert(key, v),
                None => self.overlay.remove(&key),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, MemoryEngine, RocksEngine};
    use crate::keys::cf;

    /// The merged scan, on any engine.
    fn overlay_over_engine(engine: &dyn Engine) {
        let mut seed = Txn::new(engine);
        for k in ["p1", "p3", "p5", "q1"] {
            seed.put_raw(cf::DIR, k.as_bytes().to_vec(), b"db".to_vec());
        }
        engine.write(seed.into_batch()).unwrap();
        let mut txn = Txn::new(engine);
        txn.put_raw(cf::DIR, b"p2".to_vec(), b"new".to_vec());
        txn.put_raw(cf::DIR, b"p3".to_vec(), b"changed".to_vec());
        txn.delete(cf::DIR, b"p5".to_vec());
        txn.put_raw(cf::DIR, b"p9".to_vec(), b"new".to_vec());
        let all: Vec<(String, String)> = txn
            .scan_prefix(cf::DIR, b"p")
            .unwrap()
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        let expected = [
            ("p1", "db"),
            ("p2", "new"),
            ("p3", "changed"),
            ("p9", "new"),
        ];
        assert_eq!(
            all,
            expected
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .to_vec()
        );
        assert_eq!(txn.scan_prefix_limit(cf::DIR, b"p", 2).unwrap().len(), 2);
        let from_p3: Vec<Vec<u8>> = txn
            .scan_from(cf::DIR, b"p", b"p3", usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(from_p3, vec![b"p3".to_vec(), b"p9".to_vec()]);
        let sp = txn.savepoint();
        txn.delete(cf::DIR, b"p1".to_vec());
        txn.rollback_to(sp);
        assert_eq!(txn.scan_prefix(cf::DIR, b"p").unwrap().len(), 4);
        engine.write(txn.into_batch()).unwrap();
        let after = Txn::new(engine);
        assert_eq!(after.get_raw(cf::DIR, b"p3").unwrap().unwrap(), b"changed");
        assert!(!after.exists(cf::DIR, b"p5").unwrap());
        assert!(after.exists(cf::DIR, b"q1").unwrap());
    }

    #[test]
    fn merged_scans_see_the_overlay_over_memory() {
        overlay_over_engine(&MemoryEngine::new());
    }

    #[test]
    fn merged_scans_see_the_overlay_over_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(&dir.path().join("db")).unwrap();
        overlay_over_engine(&RocksEngine::new(db));
    }
}
