//! An agent policy file: any text gives a policy or a refusal with the reason, never a panic;
//! a policy that parses describes itself.
#![no_main]

use agent::server::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::parse(text) {
        let _ = policy.summary();
        let _ = policy.view();
        let _ = policy.check_hold(None);
        let _ = policy.check_hold(Some(std::time::Duration::from_secs(60)));
    }
});
