//! A TR-069 (CWMP) CPE simulator used by the integration tests and by the load generator.
//!
//! The simulator is an independent peer of ferroacs: it has its own SOAP writer, its own
//! namespace-aware parser and its own HTTP/1.1 client, so a mistake in the ACS codec shows up
//! as a disagreement instead of being mirrored on both sides.
//!
//! Building blocks:
//!
//! * [`model`]: the parameter tree ([`Param`], [`Model`]), loading of GenieACS/genieacs-sim CSV
//!   dumps, a synthetic tree generator, root detection and the forced Inform parameters.
//! * [`device`]: a [`Device`] (identity, credentials, data model, pending events and
//!   transfers, behaviour and fault-injection knobs).
//! * [`session`]: [`Device::run_session`] drives one CWMP session against an ACS URL and
//!   returns a [`SessionReport`].
//! * [`rpc`]: what the device does with each ACS request (GetParameterValues, AddObject,
//!   Download, ...), including CWMP faults.
//! * [`http`]: the hand-written HTTP/1.1 client (keep-alive or one connection per POST,
//!   HTTP/1.0 mode, cookie jar, Basic and Digest authentication) and a small request reader.
//! * [`cr`]: the connection-request listener: one HTTP server on 127.0.0.1 that serves many
//!   devices, routing by a random path per device and checking Digest credentials.
//! * [`xml`]: XML escaping, envelope writing, the lenient namespace-aware reader and UTC
//!   time formatting.
//! * [`transfer`]: file downloads and uploads for Download/Upload/ScheduleDownload.
//! * [`udp`]: TR-111 Part 2: the UDP connection-request socket and its STUN client
//!   ([`UdpAgent`]), and [`Device::with_stun`] for the STUN parameters.
//! * [`xmpp`]: TR-069 Annex K: an XMPP session answering connection requests
//!   ([`XmppAgent`]), and [`Device::with_xmpp`] for the XMPP parameters.
//!
//! Typical use:
//!
//! ```ignore
//! let mut dev = Device::from_csv("/path/to/dump.csv")?
//!     .with_serial("SN0001")
//!     .with_acs_credentials("cpe", "secret");
//! let (_addr, mut cr) = start_cr_listener(&mut dev).await?; // sets ConnectionRequestURL
//! let report = dev.run_session(&acs_url, &[]).await?; // 0 BOOTSTRAP + 1 BOOT
//! assert!(report.ended_cleanly());
//! cr.wait(Duration::from_secs(5)).await.expect("connection request");
//! let report = dev.run_session(&acs_url, &[("6 CONNECTION REQUEST", "")]).await?;
//! ```
//!
//! Only tokio, quick-xml, md5, rand, sha1, sha2, hmac, hex, base64, serde_json and thiserror are used:
//! nothing of the server.
#![allow(dead_code)]

pub mod cr;
pub mod device;
pub mod http;
pub mod model;
pub mod rpc;
pub mod session;
pub mod transfer;
pub mod udp;
pub mod xml;
pub mod xmpp;

pub use cr::{start_cr_listener, CrHandle, CrListener, CrSignal, CrStats};
pub use device::{
    AfterAction, Behavior, CpeRequest, Credentials, Device, DeviceState, DuResult, Event,
    FaultInjection, QueuedTransfer,
};
pub use http::{ClientOptions, HttpClient, HttpResponse, SoapAction};
pub use model::{Identity, Model, Param, Root};
pub use rpc::RpcReply;
pub use session::{Exchange, ResumeMode, SessionReport};
pub use transfer::{DownloadedFile, TransferResult};
pub use udp::{BindingAnswer, UdpAgent, UdpCr};
pub use xml::{CwmpFault, SoapMessage};
pub use xmpp::{XmppAgent, XmppCr};

use std::time::Duration;

/// Everything that can go wrong while simulating a CPE.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A socket operation failed.
    #[error("I/O error talking to {peer}: {source}")]
    Io {
        /// `host:port` of the other side.
        peer: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The peer did not answer in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// A URL could not be used.
    #[error("cannot use URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The peer sent something that is not valid HTTP/1.x.
    #[error("malformed HTTP from {peer}: {detail}")]
    Http {
        /// `host:port` of the other side.
        peer: String,
        /// What was wrong.
        detail: String,
    },
    /// The server rejected the credentials after a fresh challenge.
    #[error(
        "authentication failed: HTTP 401 again after sending credentials for user {user:?}; \
         check the username/password configured on the device and on the server"
    )]
    AuthFailed {
        /// The user name that was sent.
        user: String,
    },
    /// The ACS answered with an HTTP status that does not fit the session state.
    #[error("ACS answered HTTP {status} to {sent}: {body}")]
    UnexpectedStatus {
        /// The HTTP status code.
        status: u16,
        /// What the simulator had sent ("Inform", "empty POST", ...).
        sent: String,
        /// The start of the response body, for diagnosis.
        body: String,
    },
    /// An ACS message could not be parsed as a SOAP envelope.
    #[error("cannot parse the ACS message: {0}")]
    BadXml(String),
    /// The ACS broke the CWMP message sequence.
    #[error("CWMP protocol error: {0}")]
    Protocol(String),
    /// A session was cut on purpose by [`FaultInjection::drop_after_message`].
    #[error("connection dropped on purpose after message {0}; call resume_session() to continue")]
    InjectedDrop(usize),
    /// [`Device::resume_session`] was called without a suspended session.
    #[error("there is no suspended session to resume")]
    NothingToResume,
    /// A CSV dump could not be loaded.
    #[error("cannot load CSV {path}: {detail}")]
    Csv {
        /// The file.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// The ACS kept sending requests without ever ending the session.
    #[error("the ACS sent {0} messages without ending the session with HTTP 204")]
    SessionTooLong(usize),
}
