//! The CWMP (TR-069) protocol, and nothing else: message types, fault codes,
//! the SOAP codec and the session state machine.
//!
//! This crate does no I/O. It depends on no HTTP server, database or async
//! runtime and never reads a clock: it is fed bytes and timestamps and hands
//! back values and bytes. The HTTP layer moves the bytes, the domain layer
//! decides what to ask the CPE; both drive a [`Session`] that can be stored
//! as JSON between HTTP requests, so any node can continue a session.
//!
//! Typical use for one HTTP POST:
//!
//! ```text
//! let text = decode_body(&body, content_type)?;          // charset handling
//! let msg = parse_incoming(&text)?;                      // None = empty POST
//! match session.receive(msg, now_ms) {
//!     Ok(Step::Inform(inform, header)) => session.inform_response(false),
//!     Ok(Step::CpeRequest(req))        => session.respond(..) / respond_fault(..),
//!     Ok(Step::ReadyForRequest)
//!     | Ok(Step::Result { .. })        => session.send_request(..) / finish(),
//!     Ok(Step::Resend(out))            => out,            // a lost envelope, again
//!     Ok(Step::SessionOver)            => finish(),       // HTTP 204
//!     Err(e) => match e.reply() { ErrorReply::BadRequest => 400, ErrorReply::Fault(xml) => 200 },
//! }
//! ```
//!
//! Files: [`types`] (RPCs, headers, envelopes), [`fault`] (fault codes),
//! [`decode`](mod@decode) (lenient reader), [`encode`](mod@encode) (strict writer), [`session`]
//! (state machine), [`ids`] (device ID and CPE user name).
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod decode;
pub mod encode;
pub mod fault;
pub mod ids;
pub mod redact;
pub mod session;
pub mod types;

#[cfg(test)]
mod testdata;

pub use decode::{
    decode_body, parse_incoming, parse_outgoing, DecodeError, MAX_DEPTH, MAX_ELEMENTS,
};
pub use encode::{
    encode, encode_incoming, encode_request, SOAP_ENC_URI, SOAP_ENV_URI, XSD_URI, XSI_URI,
};
pub use fault::{CwmpFault, SoapFaultCode, SpvFault};
pub use ids::{cpe_username, device_id};
pub use session::{ErrorReply, Outgoing, Phase, ProtocolError, Session, Step, UsageError};
pub use types::*;
