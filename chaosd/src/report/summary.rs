//! What a step's users went through, in words every rendering shares: the terminal, Markdown,
//! HTML, JUnit, webhooks and the web view all say a step's verdict the same way, so a step that
//! passed while requests failed never reads as a clean pass anywhere.

use super::model::{ProbeImpact, StepReport, StepStatus};
use crate::engine::impact::seconds;

/// The probe and host that fared worst in a step: the longest outage, then the most failures.
pub fn worst(step: &StepReport) -> Option<&ProbeImpact> {
    step.impact
        .iter()
        .filter(|i| i.failed > 0 || i.longest_outage_ms > 0)
        .max_by_key(|i| (i.longest_outage_ms, i.failed))
}

/// `26 of 140 requests failed, longest outage 1.3 s` (the worst probe's figures; `, not
/// restored` when its last outage had not ended), or `None` when nothing failed.
pub fn impact_summary(step: &StepReport) -> Option<String> {
    let worst = worst(step)?;
    let mut text = format!(
        "{} of {} {} failed",
        worst.failed,
        worst.taken,
        worst.counts.as_str()
    );
    if worst.longest_outage_ms > 0 {
        text.push_str(&format!(
            ", longest outage {}",
            seconds(worst.longest_outage_ms)
        ));
    }
    if !worst.restored {
        text.push_str(", not restored");
    }
    if step.impact.len() > 1 {
        text.push_str(&format!(" (`{}` on {})", worst.probe, worst.host));
    }
    Some(text)
}

/// The step's status as a word: `passed`, `not_steady`, ...
pub fn status_word(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Passed => "passed",
        StepStatus::Deviated => "deviated",
        StepStatus::Aborted => "aborted",
        StepStatus::Error => "error",
        StepStatus::Skipped => "skipped",
    }
}

/// `passed, 26 of 140 requests failed, longest outage 1.3 s`, or just `passed` when users saw
/// no failure.
pub fn status_with_impact(step: &StepReport) -> String {
    match impact_summary(step) {
        Some(impact) => format!("{}, {impact}", status_word(step.status)),
        None => status_word(step.status).to_string(),
    }
}
