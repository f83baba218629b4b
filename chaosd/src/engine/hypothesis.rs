//! The window arithmetic of the spec, with no clocks and no IO: given the samples of each probe,
//! does a window hold, did the hypothesis hold, when did it come back.
//!
//! A probe's window is its last n = max(1, ⌊window / every⌋) samples; it holds when at least
//! `tolerance` of them passed, and it is judged only once it has n samples.

use tokio::time::{Duration, Instant};

/// One sample, as the engine keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// When the sample started.
    pub at: Instant,
    pub ok: bool,
}

/// How a probe's windows are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowRule {
    /// Samples in a full window.
    pub n: usize,
    /// Percent of a window's samples that must pass.
    pub tolerance: f64,
}

impl WindowRule {
    /// Whether these samples (a full window) hold.
    pub fn holds(&self, window: &[Point]) -> bool {
        let passed = window.iter().filter(|p| p.ok).count();
        passes_tolerance(passed, window.len(), self.tolerance)
    }

    /// The latest full window of `points`, if there are enough of them.
    pub fn latest<'a>(&self, points: &'a [Point]) -> Option<&'a [Point]> {
        (points.len() >= self.n).then(|| &points[points.len() - self.n..])
    }

    /// Whether the latest full window holds; `None` until there is one.
    pub fn latest_holds(&self, points: &[Point]) -> Option<bool> {
        self.latest(points).map(|w| self.holds(w))
    }
}

/// At least `tolerance` percent of `total` passed. Compared in integers of hundredths of a percent,
/// so 95% of 20 samples needs exactly 19.
pub fn passes_tolerance(passed: usize, total: usize, tolerance: f64) -> bool {
    if total == 0 {
        return false;
    }
    let needed = (tolerance * 100.0).round() as u128 * total as u128;
    passed as u128 * 10_000 >= needed
}

/// One probe's samples on one host, with its rule.
#[derive(Debug, Clone, Copy)]
pub struct SeriesView<'a> {
    pub rule: WindowRule,
    pub points: &'a [Point],
}

/// Whether the hypothesis holds now: every series has a full latest window and it holds.
/// `None` while some series has no full window yet.
pub fn hypothesis_holds(series: &[SeriesView<'_>]) -> Option<bool> {
    let mut all = true;
    for s in series {
        all &= s.rule.latest_holds(s.points)?;
    }
    Some(all)
}

/// The samples of a series taken at or after `since`.
pub fn since(points: &[Point], since: Instant) -> &[Point] {
    let first = points.partition_point(|p| p.at < since);
    &points[first..]
}

/// The outcome of an after-check so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Not decided yet: keep sampling.
    Pending,
    /// The hypothesis has held since `since`, which is within the deadline.
    Held { since: Instant },
    /// No whole window starting before the deadline can hold any more.
    Missed,
}

/// Judges an after-check: the hypothesis must hold a whole window that starts no later than
/// `deadline`, counting only samples taken at or after `fault_end`.
///
/// Each series holds since the first sample of the first window in its current run of holding
/// windows; the hypothesis holds since the latest of those. Once every series is full and that
/// moment is within the deadline, the check passes. It is missed once some series cannot begin a
/// holding run before the deadline: its earliest possible start only moves forward.
pub fn judge_recovery(
    series: &[SeriesView<'_>],
    fault_end: Instant,
    deadline: Instant,
) -> Recovery {
    if series.is_empty() {
        // No steady-state probes: the hypothesis always holds, so there is nothing to wait for.
        return Recovery::Held { since: fault_end };
    }
    let mut latest_start: Option<Instant> = None;
    let mut all_hold = true;
    for s in series {
        let fresh = since(s.points, fault_end);
        let start = match holding_since(s.rule, fresh) {
            Some(start) => Some(start),
            None => {
                all_hold = false;
                earliest_possible_start(s.rule, fresh)
            }
        };
        if let Some(start) = start {
            latest_start = Some(latest_start.map_or(start, |l: Instant| l.max(start)));
        }
    }
    match latest_start {
        Some(start) if start > deadline => Recovery::Missed,
        Some(start) if all_hold => Recovery::Held { since: start },
        _ => Recovery::Pending,
    }
}

/// The first sample of the first window of the current run of holding windows, if the latest
/// window holds.
pub fn holding_since(rule: WindowRule, points: &[Point]) -> Option<Instant> {
    if !rule.latest_holds(points)? {
        return None;
    }
    // Walk back while the window ending one sample earlier still holds.
    let mut end = points.len();
    while end > rule.n && rule.holds(&points[end - 1 - rule.n..end - 1]) {
        end -= 1;
    }
    Some(points[end - rule.n].at)
}

/// A lower bound on where a future holding window of this series can start.
fn earliest_possible_start(rule: WindowRule, points: &[Point]) -> Option<Instant> {
    if points.len() < rule.n {
        // Not full yet: a window may still start at the first fresh sample.
        return points.first().map(|p| p.at);
    }
    // The latest window fails, so a holding one starts after its first sample: at the next
    // sample taken, or, for a window of one sample, at one not taken yet, so strictly after the
    // last. (Without that bound a one-sample window that never held again kept the check pending
    // for ever, and the run with it.)
    match points.get(points.len() - rule.n + 1) {
        Some(next) => Some(next.at),
        None => points.last().map(|last| last.at + Duration::from_nanos(1)),
    }
}

/// Milliseconds from `from` to `to`, 0 when `to` is earlier.
pub fn millis_between(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_millis() as u64
}

/// The deadline of an after-check.
pub fn recovery_deadline(fault_end: Instant, recover_within: Duration) -> Instant {
    fault_end + recover_within
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(start: Instant, every_ms: u64, oks: &str) -> Vec<Point> {
        oks.chars()
            .enumerate()
            .map(|(i, c)| Point {
                at: start + Duration::from_millis(every_ms * i as u64),
                ok: c == '+',
            })
            .collect()
    }

    fn rule(n: usize, tolerance: f64) -> WindowRule {
        WindowRule { n, tolerance }
    }

    #[test]
    fn tolerance_is_a_share_of_the_window() {
        assert!(passes_tolerance(19, 20, 95.0));
        assert!(!passes_tolerance(18, 20, 95.0));
        assert!(passes_tolerance(5, 5, 100.0));
        assert!(!passes_tolerance(4, 5, 100.0));
        assert!(passes_tolerance(1, 2, 50.0));
        assert!(passes_tolerance(0, 3, 0.0));
        assert!(!passes_tolerance(0, 0, 0.0));
    }

    #[test]
    fn a_window_is_judged_only_when_full() {
        let t = Instant::now();
        let r = rule(3, 100.0);
        assert_eq!(r.latest_holds(&series(t, 1000, "++")), None);
        assert_eq!(r.latest_holds(&series(t, 1000, "+++")), Some(true));
        assert_eq!(r.latest_holds(&series(t, 1000, "-+++")), Some(true));
        assert_eq!(r.latest_holds(&series(t, 1000, "++-")), Some(false));
        // 80% of 5: one failure is forgiven, two are not.
        let r = rule(5, 80.0);
        assert_eq!(r.latest_holds(&series(t, 1000, "++-++")), Some(true));
        assert_eq!(r.latest_holds(&series(t, 1000, "+--++")), Some(false));
    }

    #[test]
    fn the_hypothesis_needs_every_probe() {
        let t = Instant::now();
        let a = series(t, 1000, "+++");
        let b = series(t, 1000, "++-");
        let short = series(t, 1000, "+");
        let view = |points| SeriesView {
            rule: rule(3, 100.0),
            points,
        };
        assert_eq!(hypothesis_holds(&[view(&a)]), Some(true));
        assert_eq!(hypothesis_holds(&[view(&a), view(&b)]), Some(false));
        assert_eq!(hypothesis_holds(&[view(&a), view(&short)]), None);
    }

    #[test]
    fn recovery_is_measured_from_the_fault_end_to_the_first_holding_window() {
        let t = Instant::now();
        // Fault ends at 0; samples every second; fails for 3 s, then holds.
        let points = series(t, 1000, "---++++");
        let view = [SeriesView {
            rule: rule(3, 100.0),
            points: &points,
        }];
        let deadline = t + Duration::from_secs(10);
        match judge_recovery(&view, t, deadline) {
            Recovery::Held { since } => assert_eq!(millis_between(t, since), 3000),
            other => panic!("expected held, got {other:?}"),
        }
    }

    #[test]
    fn recovery_waits_for_a_full_window() {
        let t = Instant::now();
        let points = series(t, 1000, "---++");
        let view = [SeriesView {
            rule: rule(3, 100.0),
            points: &points,
        }];
        assert_eq!(
            judge_recovery(&view, t, t + Duration::from_secs(10)),
            Recovery::Pending
        );
    }

    #[test]
    fn a_window_starting_after_the_deadline_is_a_miss() {
        let t = Instant::now();
        // Deadline 2 s after the fault; still failing at 3 s, so no window can start in time.
        let points = series(t, 1000, "-----");
        let view = [SeriesView {
            rule: rule(3, 100.0),
            points: &points,
        }];
        assert_eq!(
            judge_recovery(&view, t, t + Duration::from_secs(2)),
            Recovery::Missed
        );
        // The same samples with a later deadline are still pending.
        assert_eq!(
            judge_recovery(&view, t, t + Duration::from_secs(10)),
            Recovery::Pending
        );
    }

    #[test]
    fn a_one_sample_window_that_keeps_failing_is_a_miss() {
        let t = Instant::now();
        // One sample a window (a `load` probe's usual setting), deadline 500 ms after the fault.
        let points = series(t, 1000, "---");
        let view = [SeriesView {
            rule: rule(1, 95.0),
            points: &points,
        }];
        assert_eq!(
            judge_recovery(&view, t, t + Duration::from_millis(500)),
            Recovery::Missed
        );
        // Failing only before the deadline: a later sample may still hold in time.
        let points = series(t, 1000, "-");
        let view = [SeriesView {
            rule: rule(1, 95.0),
            points: &points,
        }];
        assert_eq!(
            judge_recovery(&view, t, t + Duration::from_millis(500)),
            Recovery::Pending
        );
    }

    #[test]
    fn a_window_starting_on_the_deadline_counts() {
        let t = Instant::now();
        let points = series(t, 1000, "--+++");
        let view = [SeriesView {
            rule: rule(3, 100.0),
            points: &points,
        }];
        assert_eq!(
            judge_recovery(&view, t, t + Duration::from_secs(2)),
            Recovery::Held {
                since: t + Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn samples_before_the_fault_end_do_not_count() {
        let t = Instant::now();
        let end = t + Duration::from_millis(2500);
        // Held before the end; after it, only two fresh samples: not a whole window yet.
        let points = series(t, 1000, "+++++");
        let view = [SeriesView {
            rule: rule(3, 100.0),
            points: &points,
        }];
        assert_eq!(
            judge_recovery(&view, end, end + Duration::from_secs(5)),
            Recovery::Pending
        );
    }

    #[test]
    fn with_two_probes_the_hypothesis_holds_from_the_later_recovery() {
        let t = Instant::now();
        let fast = series(t, 1000, "-++++++");
        let slow = series(t, 1000, "----+++");
        let views = [
            SeriesView {
                rule: rule(1, 100.0),
                points: &fast,
            },
            SeriesView {
                rule: rule(3, 100.0),
                points: &slow,
            },
        ];
        assert_eq!(
            judge_recovery(&views, t, t + Duration::from_secs(5)),
            Recovery::Held {
                since: t + Duration::from_secs(4)
            }
        );
    }

    #[test]
    fn tolerance_lets_a_holding_run_start_early() {
        let t = Instant::now();
        // 2 of 3 must pass: windows "-++" and "++-"... the run of holding windows starts at 1 s.
        let points = series(t, 1000, "--++-+");
        let view = [SeriesView {
            rule: rule(3, 66.0),
            points: &points,
        }];
        assert_eq!(
            judge_recovery(&view, t, t + Duration::from_secs(10)),
            Recovery::Held {
                since: t + Duration::from_secs(1)
            }
        );
    }
}
