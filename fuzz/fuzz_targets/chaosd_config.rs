//! chaosd's configuration file: any text gives a configuration or an error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = chaosd::service::config::resolve(Path::new("/nonexistent/chaosd.yaml"), text)
        .map_err(|err| err.to_string());
});
