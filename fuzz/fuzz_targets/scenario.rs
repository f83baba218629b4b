//! A scenario file, as `chaosctl validate` and chaosd's `POST /v1/runs` read it: any bytes give
//! a scenario or an error pointing into the file, never a panic, and the error renders.
#![no_main]

use std::path::Path;

use chaosd::scenario::{LoadOptions, load_str, load_text_in};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut opts = LoadOptions::default();
    opts.vars.insert("PORT".into(), "18080".into());
    match load_str(Path::new("fuzz.yaml"), text, &opts) {
        Ok(scenario) => {
            // A valid scenario plans and describes itself without panicking.
            let plan = chaosd::engine::plan::Plan::resolve(&scenario, 1);
            for step in &plan.steps {
                for fault in &step.faults {
                    let _ = fault.spec.to_string();
                }
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
    let _ = load_text_in(Path::new("fuzz.yaml"), Path::new("/nonexistent"), text, &opts)
        .map_err(|err| err.to_string());
});
