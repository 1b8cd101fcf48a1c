//! Any bytes as a CWMP request body: charset detection, then the lenient envelope reader in
//! both directions. Must never panic; whatever parses must survive the strict writer. The
//! direct reader of parameter lists must agree with the event reader on every input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ct in [Some("text/xml; charset=utf-8"), Some("text/xml; charset=iso-8859-1"), None] {
        if let Ok(text) = ferroacs::cwmp::decode::decode_body(data, ct) {
            let fast = ferroacs::cwmp::decode::parse_incoming(&text);
            let events = ferroacs::cwmp::decode::parse_incoming_with_event_reader_only(&text);
            assert_eq!(fast, events, "the list readers disagree");
            let _ = ferroacs::cwmp::decode::parse_outgoing(&text);
        }
    }
});
