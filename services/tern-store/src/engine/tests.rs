//! The trait's contract, checked on both engines alike.

use super::*;
use crate::keys::cf;

fn keys_of(iter: KvIter<'_>) -> Vec<Vec<u8>> {
    iter.map(|kv| kv.unwrap().0.into_vec()).collect()
}

fn contract(engine: &dyn Engine) {
    let mut batch = Batch::new();
    for k in ["a", "b1", "b2", "b3", "c"] {
        batch.put(cf::DIR, k.as_bytes().to_vec(), k.as_bytes().to_vec());
    }
    batch.put(cf::MSG, b"b1".to_vec(), b"other keyspace".to_vec());
    // A later write to the same key wins, as in a RocksDB batch.
    batch.put(cf::DIR, b"b2".to_vec(), b"second".to_vec());
    batch.delete(cf::DIR, b"c".to_vec());
    engine.write(batch).unwrap();

    assert_eq!(engine.get(cf::DIR, b"b2").unwrap().unwrap(), b"second");
    assert_eq!(
        engine.get(cf::MSG, b"b1").unwrap().unwrap(),
        b"other keyspace"
    );
    assert!(engine.get(cf::DIR, b"c").unwrap().is_none());
    assert!(engine.contains(cf::DIR, b"a").unwrap());
    assert!(!engine.contains(cf::DIR, b"c").unwrap());
    assert!(!engine.contains(cf::MSG, b"a").unwrap());

    let b = |s: &str| s.as_bytes().to_vec();
    assert_eq!(
        keys_of(engine.scan(cf::DIR, b"b", b"b").unwrap()),
        vec![b("b1"), b("b2"), b("b3")]
    );
    assert_eq!(
        keys_of(engine.scan(cf::DIR, b"b", b"b2").unwrap()),
        vec![b("b2"), b("b3")]
    );
    assert_eq!(
        keys_of(engine.scan(cf::DIR, b"", b"").unwrap()),
        vec![b("a"), b("b1"), b("b2"), b("b3")]
    );
    assert!(keys_of(engine.scan(cf::DIR, b"z", b"z").unwrap()).is_empty());

    // A view keeps what it saw when it was taken.
    let view = engine.view().unwrap();
    let mut later = Batch::new();
    later.put(cf::DIR, b"b4".to_vec(), b"later".to_vec());
    later.delete(cf::DIR, b"a".to_vec());
    engine.write(later).unwrap();
    assert_eq!(
        keys_of(view.scan(cf::DIR, b"", b"").unwrap()),
        vec![b("a"), b("b1"), b("b2"), b("b3")]
    );
    assert!(view.contains(cf::DIR, b"a").unwrap());
    assert!(view.get(cf::DIR, b"b4").unwrap().is_none());
    drop(view);
    assert!(engine.get(cf::DIR, b"b4").unwrap().is_some());

    engine.clear(cf::DIR).unwrap();
    assert!(keys_of(engine.scan(cf::DIR, b"", b"").unwrap()).is_empty());
    assert!(
        engine.contains(cf::MSG, b"b1").unwrap(),
        "other keyspaces stay"
    );
    let mut synced = Batch::new();
    synced.put(cf::DIR, b"s".to_vec(), b"s".to_vec());
    engine.write_synced(synced).unwrap();
    assert!(engine.contains(cf::DIR, b"s").unwrap());

    assert!(engine.get("no-such-cf", b"a").is_err());
    assert!(engine.scan("no-such-cf", b"", b"").is_err());
    let mut bad = Batch::new();
    bad.put(cf::DIR, b"d".to_vec(), b"d".to_vec());
    bad.put("no-such-cf", b"d".to_vec(), b"d".to_vec());
    assert!(engine.write(bad).is_err());
    assert!(
        !engine.contains(cf::DIR, b"d").unwrap(),
        "a failed batch writes nothing"
    );
}

#[test]
fn the_memory_engine_keeps_the_contract() {
    contract(&MemoryEngine::new());
}

#[test]
fn the_rocksdb_engine_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db::open(&dir.path().join("db")).unwrap();
    contract(&RocksEngine::new(db));
}
