//! Any bytes as a CWMP request body: charset detection, then the lenient envelope reader in
//! both directions. Must never panic; whatever parses must survive the strict writer.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ct in [Some("text/xml; charset=utf-8"), Some("text/xml; charset=iso-8859-1"), None] {
        if let Ok(text) = ferroacs::cwmp::decode::decode_body(data, ct) {
            let _ = ferroacs::cwmp::decode::parse_incoming(&text);
            let _ = ferroacs::cwmp::decode::parse_outgoing(&text);
        }
    }
});
