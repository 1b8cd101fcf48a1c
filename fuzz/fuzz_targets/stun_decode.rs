//! Any datagram at the STUN server: decoded, its integrity and fingerprint checked, and a
//! decoded message encoded again and decoded back to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferroacs_stun::check_integrity(data, b"password");
    let _ = ferroacs_stun::check_fingerprint(data);
    if let Ok(m) = ferroacs_stun::decode(data) {
        let _ = m.unknown_required();
        let bytes = m.encode(Some(b"password"));
        let again = ferroacs_stun::decode(&bytes).expect("an encoded message decodes");
        assert_eq!(again.class, m.class);
        assert_eq!(again.method, m.method);
        assert_eq!(again.transaction, m.transaction);
        assert_eq!(
            ferroacs_stun::check_integrity(&bytes, b"password"),
            ferroacs_stun::Integrity::Valid
        );
    }
});
