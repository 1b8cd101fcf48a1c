//! Any bytes from the XMPP server: fed to the stream decoder in two chunks split at the first
//! byte's value (so elements arrive cut anywhere), every element read as features, SASL and
//! IQ, and the login state machine fed the events; nothing may panic, and no element larger
//! than the limit comes out.
#![no_main]
use ferroacs::xmpp::codec::{self, Decoder, Event};
use ferroacs::xmpp::login::Login;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut d = Decoder::new(4096);
    let mut login = Login::new("acs@example.net/fuzz", "pw", true).expect("a JID");
    let _ = login.start();
    for chunk in [&data[..cut], &data[cut..]] {
        let Ok(events) = d.feed(chunk) else {
            return;
        };
        for ev in events {
            if let Event::Element(el) = &ev {
                let _ = codec::features(el);
                let _ = codec::sasl(el);
                if let Some(q) = codec::iq(el) {
                    let _ = q.error_condition();
                    let _ = q.bound_jid();
                    let _ = q.connection_request();
                }
            }
            if login.on_event(ev).is_err() {
                return;
            }
        }
    }
});
