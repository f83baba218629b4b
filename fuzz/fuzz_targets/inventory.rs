//! An inventory file (`--inventory F`, chaosd's `inventory:`): any bytes give hosts or an error
//! pointing into the file, never a panic.
#![no_main]

use std::io::Write;

use chaosd::scenario::{LoadOptions, load_inventory};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Inventories are read from files only: write one, as a user would.
    let Ok(mut file) = tempfile_in_tmp() else {
        return;
    };
    if file.1.write_all(data).is_err() {
        return;
    }
    let _ = load_inventory(&file.0, &LoadOptions::default()).map_err(|err| err.to_string());
    let _ = std::fs::remove_file(&file.0);
});

/// A file of this process's own under /tmp (the fuzzer runs one input at a time per process).
fn tempfile_in_tmp() -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let path = std::env::temp_dir().join(format!("chaos-fuzz-inventory-{}.yaml", std::process::id()));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}
