//! An in-memory engine for unit tests of the apply logic and the read paths.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use super::{Batch, Engine, KeyValue, KvIter, KvRead};
use crate::error::{AppError, AppResult};
use crate::keys::cf;

type Keyspace = BTreeMap<Vec<u8>, Vec<u8>>;

/// [`Engine`] over ordered maps, one per column family of [`cf::ALL`] (an unknown column
/// family is an error, as it is on RocksDB). Byte order is RocksDB's default comparator's.
#[derive(Debug)]
pub struct MemoryEngine {
    keyspaces: RwLock<HashMap<&'static str, Keyspace>>,
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self {
            keyspaces: RwLock::new(cf::ALL.iter().map(|c| (*c, Keyspace::new())).collect()),
        }
    }
}

impl MemoryEngine {
    /// An empty engine with every column family.
    pub fn new() -> Self {
        Self::default()
    }

    fn read<T>(&self, cf: &str, f: impl FnOnce(&Keyspace) -> T) -> AppResult<T> {
        let all = self.keyspaces.read().unwrap_or_else(|p| p.into_inner());
        let ks = all.get(cf).ok_or_else(|| missing(cf))?;
        Ok(f(ks))
    }
}

fn missing(cf: &str) -> AppError {
    AppError::internal(format!("missing column family {cf}"))
}

impl KvRead for MemoryEngine {
    fn get(&self, cf: &str, key: &[u8]) -> AppResult<Option<Vec<u8>>> {
        self.read(cf, |ks| ks.get(key).cloned())
    }

    fn contains(&self, cf: &str, key: &[u8]) -> AppResult<bool> {
        self.read(cf, |ks| ks.contains_key(key))
    }

    fn scan<'a>(&'a self, cf: &str, prefix: &[u8], start: &[u8]) -> AppResult<KvIter<'a>> {
        // Copied out under the lock: tests hold little data, and the copy is a consistent
        // view even if a write lands while the caller walks it.
        let items: Vec<AppResult<KeyValue>> = self.read(cf, |ks| {
            ks.range(start.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| Ok((k.clone().into_boxed_slice(), v.clone().into_boxed_slice())))
                .collect()
        })?;
        Ok(Box::new(items.into_iter()))
    }
}

impl Engine for MemoryEngine {
    fn write_synced(&self, batch: Batch) -> AppResult<()> {
        self.write(batch)
    }

    fn view(&self) -> AppResult<Box<dyn KvRead + '_>> {
        let all = self.keyspaces.read().unwrap_or_else(|p| p.into_inner());
        Ok(Box::new(MemoryEngine {
            keyspaces: RwLock::new(all.clone()),
        }))
    }

    fn clear(&self, cf: &'static str) -> AppResult<()> {
        let mut all = self.keyspaces.write().unwrap_or_else(|p| p.into_inner());
        all.get_mut(cf).ok_or_else(|| missing(cf))?.clear();
        Ok(())
    }

    fn write(&self, batch: Batch) -> AppResult<()> {
        let mut all = self.keyspaces.write().unwrap_or_else(|p| p.into_inner());
        let ops = batch.into_ops();
        // All or nothing, as a RocksDB batch: check every column family before writing.
        if let Some((cf, _, _)) = ops.iter().find(|(cf, _, _)| !all.contains_key(cf)) {
            return Err(missing(cf));
        }
        for (cf, key, value) in ops {
            let ks = all.get_mut(cf).ok_or_else(|| missing(cf))?;
            match value {
                Some(v) => ks.insert(key, v),
                None => ks.remove(&key),
            };
        }
        Ok(())
    }
}
