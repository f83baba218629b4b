//! The monkey's clock, as a seam: the real one reads the system clock; the test one is driven by
//! tokio's clock, so a test under `#[tokio::test(start_paused = true)]` lives through a week of
//! faults in milliseconds.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Wall-clock time for the monkey: when faults are due, and waiting for them.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// Returns at `at` (at once if it has passed).
    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system clock. Waits are re-checked against it, so a clock that jumps (NTP, suspend) moves
/// the wake-up too, within a minute.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let left = (at - Utc::now()).to_std().unwrap_or_default();
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(std::time::Duration::from_secs(60))).await;
            }
        })
    }
}

/// A clock that starts at a chosen moment and moves with tokio's clock: paused in tests, so it
/// only moves when every task waits, and by exactly what they wait for.
pub struct TokioClock {
    start: DateTime<Utc>,
    origin: Instant,
}

impl TokioClock {
    pub fn starting_at(start: DateTime<Utc>) -> TokioClock {
        TokioClock {
            start,
            origin: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now() - self.origin;
        self.start + chrono::Duration::from_std(elapsed).unwrap_or(chrono::TimeDelta::MAX)
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let offset = (at - self.start).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep_until(self.origin + offset))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_with_paused_time() {
        let start = DateTime::parse_from_rfc3339("2026-03-28T10:00:00Z")
            .unwrap()
            .to_utc();
        let clock = TokioClock::starting_at(start);
        assert_eq!(clock.now(), start);
        let later = start + chrono::Duration::hours(30);
        clock.sleep_until(later).await;
        assert_eq!(clock.now(), later);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(clock.now(), later + chrono::Duration::milliseconds(1500));
        // A moment in the past returns at once.
        clock.sleep_until(start).await;
        assert_eq!(clock.now(), later + chrono::Duration::milliseconds(1500));
    }
}
