//! XMPP (RFC 6120) as ferroacs needs it for TR-069 Annex K connection requests, without I/O:
//! [`codec`] turns stream bytes into elements and writes stanzas, [`login`] is the client's
//! login (STARTTLS, SASL SCRAM, resource binding) as a state machine. The connection itself
//! (sockets, TLS, reconnects) is `connreq::xmpp`.

pub mod codec;
pub mod login;
