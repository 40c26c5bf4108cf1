//! The `fieldbridge` binary's library half: configuration loading and the
//! `check` report, public so that integration tests can drive them.

pub mod check;
pub mod config;
pub mod ops;
