//! Any text as a device query (`GET /api/v1/devices?q=`, preset filters): parse, widen to
//! the SQL superset, and decide whether it uses tags.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(f) = ferroacs::domain::devices::parse_query(s) {
            let _ = ferroacs::domain::devices::uses_tags(&f);
            let _ = ferroacs::domain::devices::sql_superset(&f);
        }
        let _ = ferroacs::domain::devices::like(s, s);
    }
});
