//! Integration tests: the real server over real HTTP on loopback, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use ferroacs_cpe_sim::{cpe, loadgen};

mod api;
mod campaigns;
mod console;
mod cwmp;

mod foundation;
mod loadgen_run;
mod secrets;
mod security;
mod usecases;
mod voip;
mod voip_api;
