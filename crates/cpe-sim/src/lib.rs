//! Test and measurement tools for ferroacs: a TR-069 CPE simulator ([`cpe`]) and a load
//! generator ([`loadgen`], and the `loadgen` binary that `scripts/bench` drives).
//!
//! The integration tests, the codec benchmarks and the benchmark script use this crate; the
//! server binary never links it (`cargo tree -p ferroacs -e normal` does not list it).
//!
//! The simulator is an independent peer of the server: its own SOAP writer, XML reader and
//! HTTP/1.1 client, so a mistake in the server's codec shows up as a disagreement instead of
//! being mirrored on both sides.

pub mod chaos;
pub mod cpe;
pub mod ledger;
pub mod loadgen;
