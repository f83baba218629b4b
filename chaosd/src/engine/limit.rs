//! The run's limit on calls to remote agents in flight at once (`settings.max_in_flight`), shared
//! by all its fan-outs: preflight, injections, actions, `on:` probe samples, reverts and lease
//! renewals. Without it a step on 10,000 hosts opens 10,000 connections at once, and as many
//! descriptors, handshakes and buffers.
//!
//! Calls are of two classes. **Urgent** ones (reverts and lease renewals) take back or keep safe
//! what is in place: they go ahead of every queued call of new work, and a quarter of the limit
//! is theirs alone, so new work (injections, and the long calls: an action runs to its timeout,
//! a `load` sample for its span) can never hold every slot while a revert or a renewal waits.
//! **Normal** calls are everything else; the engine stops queued injections from starting once
//! the run is aborted (`Hosts::inject`), so after an abort only reverts are left in the queue.
//!
//! A slot is a [`Permit`], handed to the waiter through a oneshot channel: a waiter that gave up
//! (its future dropped) drops the permit with the channel, which frees the slot again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Which queue a call waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Reverts and lease renewals: first in line, and a quarter of the slots kept for them.
    Urgent,
    /// Preflight, injections, actions, probe samples.
    Normal,
}

/// At most `max` calls in flight; see the module's comment.
pub struct CallLimit {
    max: usize,
    /// Slots normal calls may fill: `max` less the quarter kept for urgent ones.
    normal_max: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    /// Normal calls among `in_flight`.
    normal: usize,
    /// The most calls ever in flight at once.
    peak: usize,
    urgent_waiting: VecDeque<oneshot::Sender<Permit>>,
    normal_waiting: VecDeque<oneshot::Sender<Permit>>,
}

impl std::fmt::Debug for CallLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLimit")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// One slot; dropping it frees the slot for the next waiter.
pub struct Permit {
    limit: Arc<CallLimit>,
    priority: Priority,
    /// False for a permit whose hand-over failed: its slot was never taken from the count.
    armed: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.armed {
            self.limit.release(self.priority);
        }
    }
}

impl CallLimit {
    /// A limit of `max` calls (at least 1). Below 4 no slot is kept for urgent calls; they still
    /// go first.
    pub fn new(max: usize) -> Arc<CallLimit> {
        let max = max.max(1);
        Arc::new(CallLimit {
            max,
            normal_max: max - max / 4,
            state: Mutex::new(State::default()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// The most calls that were ever in flight at once.
    pub fn peak(&self) -> usize {
        self.lock().peak
    }

    /// Waits for a slot of this class. Cancel-safe: dropped while waiting, it takes no slot.
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Permit {
        let waiting = {
            let mut state = self.lock();
            if self.may_start(&state, priority) {
                self.take(&mut state, priority);
                return self.permit(priority);
            }
            let (tx, rx) = oneshot::channel();
            match priority {
                Priority::Urgent => state.urgent_waiting.push_back(tx),
                Priority::Normal => state.normal_waiting.push_back(tx),
            }
            rx
        };
        // Senders are only dropped after a send (or when its receiver is gone already).
        waiting
            .await
            .expect("a queued call is always handed its slot")
    }

    /// Whether a call of this class may start now, queues aside.
    fn may_start(&self, state: &State, priority: Priority) -> bool {
        match priority {
            Priority::Urgent => state.in_flight < self.max,
            Priority::Normal => {
                state.in_flight < self.max
                    && state.normal < self.normal_max
                    && state.urgent_waiting.is_empty()
            }
        }
    }

    fn take(&self, state: &mut State, priority: Priority) {
        state.in_flight += 1;
        if priority == Priority::Normal {
            state.normal += 1;
        }
        state.peak = state.peak.max(state.in_flight);
    }

    fn permit(self: &Arc<Self>, priority: Priority) -> Permit {
        Permit {
            limit: self.clone(),
            priority,
            armed: true,
        }
    }

    /// Frees a slot and hands the free slots on: urgent waiters first, then normal ones.
    fn release(self: &Arc<Self>, priority: Priority) {
        let mut state = self.lock();
        state.in_flight -= 1;
        if priority == Priority::Normal {
            state.normal -= 1;
        }
        for class in [Priority::Urgent, Priority::Normal] {
            loop {
                if !self.may_start_queued(&state, class) {
                    break;
                }
                let queue = match class {
                    Priority::Urgent => &mut state.urgent_waiting,
                    Priority::Normal => &mut state.normal_waiting,
                };
                let Some(waiter) = queue.pop_front() else {
                    break;
                };
                self.take(&mut state, class);
                if let Err(mut unsent) = waiter.send(self.permit(class)) {
                    // The waiter gave up: the slot is still free (no re-entry into the lock).
                    unsent.armed = false;
                    state.in_flight -= 1;
                    if class == Priority::Normal {
                        state.normal -= 1;
                    }
                }
            }
        }
    }

    /// Like [`CallLimit::may_start`] for the head of a queue: a normal waiter only when no
    /// urgent one is left.
    fn may_start_queued(&self, state: &State, class: Priority) -> bool {
        match class {
            Priority::Urgent => state.in_flight < self.max && !state.urgent_waiting.is_empty(),
            Priority::Normal => self.may_start(state, Priority::Normal),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("call limit lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn normal_calls_fill_three_quarters_and_urgent_ones_the_rest() {
        let limit = CallLimit::new(8);
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(limit.acquire(Priority::Normal).await);
        }
        let seventh =
            tokio::time::timeout(Duration::from_millis(20), limit.acquire(Priority::Normal)).await;
        assert!(seventh.is_err(), "a seventh normal call waits");
        held.push(limit.acquire(Priority::Urgent).await);
        held.push(limit.acquire(Priority::Urgent).await);
        assert_eq!(limit.peak(), 8);
        let ninth =
            tokio::time::timeout(Duration::from_millis(20), limit.acquire(Priority::Urgent)).await;
        assert!(ninth.is_err(), "nothing beyond the limit");
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_urgent_waiter_though_normal_ones_queued_first() {
        let limit = CallLimit::new(2);
        let first = limit.acquire(Priority::Normal).await;
        let second = limit.acquire(Priority::Urgent).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = tokio::task::JoinSet::new();
        for (name, priority) in [
            ("normal-1", Priority::Normal),
            ("normal-2", Priority::Normal),
            ("urgent", Priority::Urgent),
        ] {
            let (limit, order) = (limit.clone(), order.clone());
            waiters.spawn(async move {
                let permit = limit.acquire(priority).await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(permit);
            });
            // Queued in this order.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(first);
        drop(second);
        while waiters.join_next().await.is_some() {}
        assert_eq!(order.lock().unwrap()[0], "urgent");
        assert!(limit.peak() <= 2);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_takes_no_slot() {
        let limit = CallLimit::new(1);
        let held = limit.acquire(Priority::Normal).await;
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), limit.acquire(Priority::Normal)).await;
        assert!(gave_up.is_err());
        drop(held);
        // The slot came back: the dropped waiter did not keep it.
        let again =
            tokio::time::timeout(Duration::from_millis(100), limit.acquire(Priority::Normal)).await;
        assert!(again.is_ok(), "the slot is free again");
    }
}
