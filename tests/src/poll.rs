//! `eventually`: a bounded poll that replaces every sleep-and-hope.

use std::time::{Duration, Instant};

/// How often a condition is polled.
const EVERY: Duration = Duration::from_millis(10);

/// What a polled condition answers: `true`/`false`, or `Some(value)` once there is one.
pub trait Done {
    type Value;
    fn done(self) -> Option<Self::Value>;
}

impl Done for bool {
    type Value = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Done for Option<T> {
    type Value = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// Polls `f` every 10 ms until it holds (or gives a value, which it returns); panics naming
/// `what` after `within`.
#[track_caller]
pub fn eventually<D: Done>(within: Duration, what: &str, mut f: impl FnMut() -> D) -> D::Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = f().done() {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(EVERY);
    }
}

/// [`eventually`] for async tests: the same poll, waiting with `tokio::time::sleep` so that the
/// runtime's other tasks (a server under test, a probe being sampled) go on meanwhile.
pub async fn eventually_async<D: Done>(
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> D,
) -> D::Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = f().done() {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(EVERY).await;
    }
}
