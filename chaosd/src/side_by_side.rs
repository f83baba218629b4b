//! Two pieces of blocking work at once: the end of a run writes its report and its history record
//! this way, most of its last milliseconds being a wait for the disk.

/// Runs `there` on a thread of its own (named `name`) while `here` runs on this one, and returns
/// both results; `Err` in the first when `there` panicked. When no thread can be started, `there`
/// runs here too, after `here`: the work is done either way, one after the other.
pub fn run<T: Send, H>(
    name: &str,
    there: impl Fn() -> T + Sync,
    here: impl FnOnce() -> H,
) -> (std::thread::Result<T>, H) {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn_scoped(scope, &there);
        let here = here();
        let there = match thread {
            Ok(thread) => thread.join(),
            Err(_) => Ok(there()),
        };
        (there, here)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_run_and_a_panic_there_is_an_error_not_a_panic_here() {
        let (there, here) = super::run(
            "test-there",
            || std::thread::current().name().map(String::from),
            || 2,
        );
        assert_eq!(there.unwrap().as_deref(), Some("test-there"));
        assert_eq!(here, 2);

        let (there, here) = super::run(
            "test-panic",
            || -> u8 { panic!("on purpose") },
            || "here ran",
        );
        assert!(there.is_err());
        assert_eq!(here, "here ran");
    }
}
