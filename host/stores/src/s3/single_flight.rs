//! One fetch at a time for each key: threads that want the same record
//! or pack at once take turns, so the first fetches it and the others
//! find it where the first put it, instead of each making a request.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use vt_core::{Error, Result};

/// Gates by key, kept only while someone holds or waits on them.
pub struct SingleFlight<K> {
    gates: Mutex<HashMap<K, Arc<Mutex<()>>>>,
}

impl<K: Eq + Hash + Copy> Default for SingleFlight<K> {
    fn default() -> Self {
        SingleFlight {
            gates: Mutex::new(HashMap::new()),
        }
    }
}

fn poisoned() -> Error {
    Error::Store("s3 store: lock poisoned".into())
}

impl<K: Eq + Hash + Copy> SingleFlight<K> {
    /// Runs `f` holding `key`'s gate: the callers of one key run it in
    /// turn (so `f` looks first for what an earlier turn fetched).
    pub fn run<T>(&self, key: K, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let gate = self
            .gates
            .lock()
            .map_err(|_| poisoned())?
            .entry(key)
            .or_default()
            .clone();
        let r = match gate.lock() {
            Ok(_turn) => f(),
            Err(_) => Err(poisoned()),
        };
        if let Ok(mut g) = self.gates.lock() {
            // The map's reference and ours: nobody else is waiting.
            if Arc::strong_count(&gate) <= 2 {
                g.remove(&key);
            }
        }
        r
    }
}
