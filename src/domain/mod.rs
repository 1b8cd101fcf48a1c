//! Business rules: what a session does with a device, tasks, the parameter store's
//! semantics. No actix here; storage through [`crate::store::Store`].

pub mod campaigns;
pub mod connreq;
pub mod converge;
pub mod cron;
pub mod devices;
pub mod files;
pub mod lines;
pub mod params;
pub mod presets;
pub mod secrets;
pub mod services;
pub mod session;
pub mod session_state;
pub mod taskops;
pub mod tasks;
pub mod usecases;
pub mod voip;
