//! Links chaosctl's code in the order a run executes it, when the linker can.
//!
//! A short run's memory is mostly pages of chaosctl's own file, and the kernel maps 64 KiB around
//! every page a run touches (fault-around): with the code a run executes spread over the whole
//! binary, nearly all of it ends up resident. `code-order.txt` lists the functions that real runs
//! executed (made by `scripts/order-code`), and LLD places them first, side by side. It changes
//! where functions sit, never what they do; a name the file lists that this build lacks is
//! skipped, so a stale list only costs memory.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=code-order.txt");
    println!("cargo:rerun-if-env-changed=CHAOSCTL_NO_CODE_ORDER");
    if env::var_os("CHAOSCTL_NO_CODE_ORDER").is_some() {
        return;
    }
    // Optimised builds for the one target whose default linker is LLD; another linker may not
    // know the option (or the names, on another target), and a debug build's names differ.
    let target = env::var("TARGET").unwrap_or_default();
    let profile = env::var("PROFILE").unwrap_or_default();
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let other_linker = env::var_os("RUSTC_LINKER").is_some()
        || flags.contains("linker")
        || flags.contains("-fuse-ld");
    if target != "x86_64-unknown-linux-gnu" || profile != "release" || other_linker {
        return;
    }
    let order = format!("{}/code-order.txt", env::var("CARGO_MANIFEST_DIR").unwrap());
    if !std::path::Path::new(&order).exists() {
        return;
    }
    println!("cargo:rustc-link-arg-bin=chaosctl=-Wl,--symbol-ordering-file={order}");
    println!("cargo:rustc-link-arg-bin=chaosctl=-Wl,--no-warn-symbol-ordering");
}
