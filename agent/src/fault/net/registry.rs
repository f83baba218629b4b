//! The worker threads that network faults run in this process (an NFQUEUE holder, a gate's
//! renewer, a DNS responder, an HTTP proxy), each registered under its fault's key (the table or
//! chain it serves, unique per fault), so that a revert in this process can stop it. A revert
//! from another process finds none here: the worker ended with the agent that started it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A running worker: whether it ended, and how to stop it.
pub trait Worker {
    /// What it did, for the revert's detail.
    type Stats;

    /// Whether its thread has ended already (on its own: its table went away, or it failed).
    fn is_finished(&self) -> bool;

    /// Stops it and waits for it to end; what it did, `None` when that is lost (it panicked).
    fn stop(self) -> Option<Self::Stats>;
}

/// The workers of one kind alive in this process, by key.
pub struct Registry<T>(Mutex<BTreeMap<String, T>>);

impl<T: Worker> Default for Registry<T> {
    fn default() -> Registry<T> {
        Registry::new()
    }
}

impl<T: Worker> Registry<T> {
    pub const fn new() -> Registry<T> {
        Registry(Mutex::new(BTreeMap::new()))
    }

    /// Registers `worker` under `key`. A worker already there (a key is unique per fault, so it
    /// would be a leftover) is stopped.
    pub fn insert(&self, key: &str, worker: T) {
        let replaced = self.lock().insert(key.to_string(), worker);
        if let Some(old) = replaced {
            old.stop();
        }
    }

    /// Whether the worker of `key` runs in this process.
    pub fn is_running(&self, key: &str) -> bool {
        self.lock().get(key).is_some_and(|w| !w.is_finished())
    }

    /// Stops the worker of `key` and forgets it: what it did, or `None` when none runs here.
    pub fn stop(&self, key: &str) -> Option<T::Stats> {
        // Out of the lock before waiting for it: other faults' workers start and stop meanwhile.
        let worker = self.lock().remove(key)?;
        worker.stop()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, T>> {
        // A panic elsewhere while holding the lock leaves the map whole: keep using it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    struct Fake {
        finished: bool,
        stopped: Arc<AtomicBool>,
    }

    impl Worker for Fake {
        type Stats = u32;
        fn is_finished(&self) -> bool {
            self.finished
        }
        fn stop(self) -> Option<u32> {
            self.stopped.store(true, Ordering::SeqCst);
            Some(7)
        }
    }

    fn fake(finished: bool) -> (Fake, Arc<AtomicBool>) {
        let stopped = Arc::new(AtomicBool::new(false));
        let worker = Fake {
            finished,
            stopped: stopped.clone(),
        };
        (worker, stopped)
    }

    #[test]
    fn a_worker_runs_until_stopped_once() {
        let registry = Registry::new();
        let (worker, stopped) = fake(false);
        registry.insert("chaos_a", worker);
        assert!(registry.is_running("chaos_a"));
        assert!(!registry.is_running("chaos_b"));
        assert_eq!(registry.stop("chaos_a"), Some(7));
        assert!(stopped.load(Ordering::SeqCst));
        assert!(!registry.is_running("chaos_a"));
        assert_eq!(
            registry.stop("chaos_a"),
            None,
            "stopped once, then forgotten"
        );
    }

    #[test]
    fn a_finished_worker_is_not_running_and_a_replaced_one_is_stopped() {
        let registry = Registry::new();
        let (ended, _) = fake(true);
        registry.insert("chaos_a", ended);
        assert!(!registry.is_running("chaos_a"));
        let (first, first_stopped) = fake(false);
        registry.insert("chaos_b", first);
        let (second, second_stopped) = fake(false);
        registry.insert("chaos_b", second);
        assert!(first_stopped.load(Ordering::SeqCst));
        assert!(!second_stopped.load(Ordering::SeqCst));
        assert!(registry.is_running("chaos_b"));
    }
}
