//! Integration tests: the real server over real HTTP on loopback, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use ferroacs_cpe_sim::{cpe, loadgen};

mod api;
mod bootstrap_faults;
mod campaign_bench;
mod campaigns;
mod cluster;
mod connreq;
mod console;
mod console_campaigns;
mod console_phones;
mod credentials;
mod cwmp;
mod deploy;
mod discovery_faults;
mod exactly_once;

mod foundation;
mod gateway;
mod loadgen_run;
mod nat;
mod phones;
mod phones_cert;
mod schedules;
mod sealed_jobs;
mod secrets;
mod security;
mod stun;
mod task_status;
mod usecases;
mod voip;
mod voip_api;
mod xmpp;
