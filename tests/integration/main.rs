//! Integration tests: the real server over real HTTP on loopback, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

mod foundation;
