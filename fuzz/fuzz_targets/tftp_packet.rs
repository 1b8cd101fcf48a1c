//! Any datagram as a TFTP packet, then as the client's answer to a transfer in progress;
//! also any text as a phone's requested file name.
#![no_main]
use libfuzzer_sys::fuzz_target;

use ferroacs::tftp::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(codec::Packet::Rrq(req)) = codec::decode(data) {
        let n = codec::negotiate(&req, 4000, 8192);
        let mut s = codec::Sender::new(std::sync::Arc::from(vec![7u8; 4000]), &n);
        let _ = s.start();
    }
    let n = codec::Negotiated { blksize: 512, timeout: None, oack: None };
    let mut s = codec::Sender::new(std::sync::Arc::from(vec![1u8; 1500]), &n);
    let _ = s.start();
    let _ = s.on_packet(data);
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = ferroacs::phones::files::parse(name);
        let _ = ferroacs::phones::Mac::parse(name);
    }
});
