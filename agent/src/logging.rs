//! The log on stderr that chaosctl, chaosd and chaos-agent share: `CHAOS_LOG` sets what it shows.
//!
//! `CHAOS_LOG` is a level (`debug`), or targets with levels (`warn,chaosd::engine=debug`). The
//! filter is tracing-subscriber's `Targets`, not its `EnvFilter`: EnvFilter's span and field
//! directives need regex-automata's eager DFA compiler, and with it in the binary every `pattern:`
//! selector was compiled into a full DFA too (an eighth of a small run's CPU).

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Starts the log on stderr at `default` (or what `CHAOS_LOG` says), in colour only on a terminal:
/// journald, files and pipes get plain text.
pub fn init(default: LevelFilter) {
    let (filter, complaint) = filter_from(std::env::var("CHAOS_LOG").ok().as_deref(), default);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi),
        )
        .with(filter)
        .init();
    if let Some(complaint) = complaint {
        tracing::warn!("{complaint}");
    }
}

/// The filter `CHAOS_LOG`'s value asks for, or `default` with why when it cannot be read.
fn filter_from(value: Option<&str>, default: LevelFilter) -> (Targets, Option<String>) {
    let fallback = Targets::new().with_default(default);
    match value.map(str::trim) {
        None | Some("") => (fallback, None),
        Some(value) => match Targets::from_str(value) {
            Ok(targets) => (targets, None),
            Err(err) => (
                fallback,
                Some(format!(
                    "CHAOS_LOG=`{value}` is not a log filter ({err}); logging at `{default}`. \
                     Give a level (`debug`) or targets with levels (`warn,chaosd::engine=debug`)"
                )),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn a_level_applies_to_every_target() {
        let (filter, complaint) = filter_from(Some("debug"), LevelFilter::WARN);
        assert!(complaint.is_none());
        assert!(filter.would_enable("chaosd::engine", &Level::DEBUG));
        assert!(!filter.would_enable("chaosd::engine", &Level::TRACE));
    }

    #[test]
    fn targets_get_their_own_levels() {
        let (filter, _) = filter_from(Some("warn,chaosd::engine=debug"), LevelFilter::INFO);
        assert!(filter.would_enable("chaosd::engine::step", &Level::DEBUG));
        assert!(!filter.would_enable("agent::fault", &Level::INFO));
    }

    #[test]
    fn unset_or_unreadable_falls_back_to_the_default_and_says_why() {
        let (filter, complaint) = filter_from(None, LevelFilter::WARN);
        assert!(complaint.is_none());
        assert!(filter.would_enable("chaosctl", &Level::WARN));
        assert!(!filter.would_enable("chaosctl", &Level::INFO));

        let (filter, complaint) = filter_from(Some("chaosd=loud"), LevelFilter::INFO);
        assert!(filter.would_enable("chaosd", &Level::INFO));
        assert!(!filter.would_enable("chaosd", &Level::DEBUG));
        assert!(
            complaint
                .unwrap()
                .contains("CHAOS_LOG=`chaosd=loud` is not a log filter")
        );
    }
}
