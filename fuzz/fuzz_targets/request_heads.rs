//! What the agent and chaosd read of a request's head before its body: the method and path
//! (routing), the `Authorization` header (the token), and the web view's token in an address:
//! never a panic, and a token survives the cookie's encoding.
#![no_main]

use agent::http::auth::Token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // method, path and header, split at the first two NUL bytes.
    let mut parts = data.splitn(3, |&b| b == 0);
    let method = parts.next().unwrap_or_default();
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let header = parts.next().unwrap_or_default();
    let _ = agent::server::routes::route_for_fuzzing(method, &path);
    let _ = chaosd::service::routes::route_for_fuzzing(method, &path);
    let _ = agent::http::segments_under("/v1", &path);
    let token = Token::new("fuzz-token-0123456789");
    let _ = token.admits(Some(header));
    if let Ok(given) = std::str::from_utf8(header) {
        let (_, round_trip) = chaosd::service::web::token_readings_for_fuzzing(given);
        assert!(round_trip, "`{given}` does not survive the cookie's encoding");
    }
});
