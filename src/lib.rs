//! ferroacs: a TR-069 (CWMP) Auto-Configuration Server.
//!
//! Code map (ARCHITECTURE.md has the layering rules and walkthroughs):
//! - [`config`]: file + environment → validated [`config::Config`]; no globals.
//! - [`error`]: the domain error type and the error policy.
//! - [`cwmp`]: SOAP codec, RPC types, faults and the session state machine. No I/O. Its own
//!   crate, `ferroacs-cwmp` (`crates/cwmp`), re-exported here.
//! - [`auth`]: Digest/Basic verification, nonces, failed-login limiting, password and token
//!   hashing. No I/O.
//! - [`datamodel`]: TR-098/104/106/181 definitions generated from the BBF XML; validation.
//! - [`store`]: diesel storage on SQLite or PostgreSQL; the only place with SQL.
//! - [`domain`]: business rules: Inform processing, discovery, tasks.
//! - [`connreq`]: outbound connection requests to devices.
//! - [`scheduler`]: the leader lease and the tick that paces campaigns.
//! - [`http`]: actix-web: the CWMP endpoint, the admin API, error mapping.
//! - [`phones`]: configuration files of phones that do not speak TR-069 (per-vendor renderers). Pure.
//! - [`secrets`]: the key for secrets at rest and AES-256-GCM sealing of stored passwords.
//! - [`state`]: [`state::AppState`], the state handlers and jobs share; imported by `http`.
//! - [`tftp`]: the TFTP server for phones (RFC 1350, 2347-2349); its codec is pure.
//! - [`stun`]: the STUN server of TR-111 (datagrams only; decisions in `domain::stun`).
//! - [`xmpp`]: the XMPP stream codec and client login of TR-069 Annex K connection requests. Pure.
//! - [`app`]: wiring; [`cli`]: the command line; [`telemetry`]: logging.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connreq;
/// The CWMP protocol crate, re-exported so the server's paths stay `crate::cwmp::…`.
pub use ferroacs_cwmp as cwmp;
pub mod datamodel;
pub mod domain;
pub mod error;
pub mod http;
pub mod phones;
pub mod scheduler;
pub mod secrets;
pub mod state;
pub mod store;
pub mod stun;
pub mod telemetry;
pub mod tftp;
pub mod xmpp;
