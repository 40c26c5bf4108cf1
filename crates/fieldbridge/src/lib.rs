//! The `fieldbridge` binary's library half: configuration loading, the
//! `check` report and the `audit` text, public so that integration tests
//! can drive them.

pub mod audit;
pub mod check;
pub mod config;
pub mod ops;
