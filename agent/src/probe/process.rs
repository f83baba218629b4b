//! `process` probes: count the processes a selector matches against `min` and `max`. The lookup
//! is the agent's own (`crate::process::find`), so a probe sees exactly what a fault would hit.

use crate::error::FaultError;

use super::{Verdict, plural};
use crate::spec::ProcessProbe;

pub(crate) async fn sample(probe: &ProcessProbe) -> Verdict {
    let selector = probe.selector.clone();
    // Reading /proc is blocking file IO; keep it off the async workers.
    let found = tokio::task::spawn_blocking(move || crate::process::find(&selector))
        .await
        .map_err(|err| format!("process lookup failed: {err}"))?;
    let count = match found {
        Ok(processes) => processes.len(),
        // A stopped service often takes its pidfile with it: that is zero processes, not an error.
        Err(FaultError::PidfileUnreadable { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            0
        }
        Err(err) => return Err(first_clause(&err.to_string())),
    };
    judge(count, probe.min, probe.max)
}

fn judge(count: usize, min: usize, max: Option<usize>) -> Verdict {
    let found = plural(count, "process", "processes");
    if count < min {
        return Err(format!("{found}, expected at least {min}"));
    }
    if let Some(max) = max
        && count > max
    {
        return Err(format!("{found}, expected at most {max}"));
    }
    Ok(found)
}

/// A fault error's message without its advice (`...; check that ...`): a reason stays short.
fn first_clause(message: &str) -> String {
    message.split("; ").next().unwrap_or(message).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_judged_against_min_and_max() {
        assert_eq!(judge(3, 1, None), Ok("3 processes".into()));
        assert_eq!(judge(1, 1, Some(1)), Ok("1 process".into()));
        assert_eq!(
            judge(2, 3, None),
            Err("2 processes, expected at least 3".into())
        );
        assert_eq!(
            judge(5, 1, Some(4)),
            Err("5 processes, expected at most 4".into())
        );
        assert_eq!(
            judge(0, 1, None),
            Err("0 processes, expected at least 1".into())
        );
    }
}
