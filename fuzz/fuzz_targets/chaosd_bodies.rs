//! Every request body chaosd reads, as JSON; a submitted scenario is then loaded as chaosd loads
//! it: never a panic.
#![no_main]

use std::path::Path;

use chaosd::scenario::{LoadOptions, load_text_in};
use chaosd::service::api::{AnswerRequest, SubmitRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(submit) = serde_json::from_slice::<SubmitRequest>(data) {
        let opts = LoadOptions {
            vars: submit.vars.clone(),
            ..LoadOptions::default()
        };
        let file = submit.file.as_deref().unwrap_or("scenario.yaml");
        let _ = load_text_in(Path::new(file), Path::new("/nonexistent"), &submit.scenario, &opts)
            .map_err(|err| err.to_string());
    }
    let _ = serde_json::from_slice::<AnswerRequest>(data);
    let _ = serde_json::from_slice::<chaosd::schedule::api::CreateSchedule>(data);
});
