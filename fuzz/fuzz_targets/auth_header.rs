//! Any text as an `Authorization` or `WWW-Authenticate` header value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = ferroacs::auth::header::parse_credentials(s) {
            let _ = c.param("response");
            let _ = c.duplicate_param();
            let _ = c.is_scheme("Digest");
        }
        let _ = ferroacs::auth::header::parse_challenges(s);
    }
});
