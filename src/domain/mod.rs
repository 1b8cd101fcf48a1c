//! Business rules: what a session does with a device, tasks, the parameter store's
//! semantics. No actix here; storage through [`crate::store::Store`].

pub mod campaigns;
pub mod connreq;
pub mod converge;
pub mod credentials;
pub mod cron;
pub mod devices;
pub mod driver;
pub mod files;
pub mod lines;
pub mod params;
pub mod phone_fetchlog;
pub mod phones;
pub mod plan;
pub mod presets;
pub mod schedules;
pub mod secrets;
pub mod services;
pub mod session;
pub mod session_state;
pub mod stun;
pub mod taskops;
pub mod tasks;
pub mod textdiff;
pub mod tr111;
pub mod usecases;
pub mod voip;

/// A source of "now" in UTC milliseconds; replaceable in tests.
pub type Clock = std::sync::Arc<dyn Fn() -> i64 + Send + Sync>;
