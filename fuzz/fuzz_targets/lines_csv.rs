//! Any text as a CSV line import: the RFC 4180 reader, then each row as a line account.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rows) = ferroacs::domain::lines::parse_csv(s) else {
        return;
    };
    let mut it = rows.into_iter();
    let Some((_, header)) = it.next() else {
        return;
    };
    for (_, cells) in it {
        let mut obj = serde_json::Map::new();
        for (h, c) in header.iter().zip(cells) {
            obj.insert(h.trim().to_ascii_lowercase(), serde_json::Value::String(c));
        }
        let _ = serde_json::from_value::<ferroacs::domain::lines::LineInput>(
            serde_json::Value::Object(obj),
        );
    }
});
