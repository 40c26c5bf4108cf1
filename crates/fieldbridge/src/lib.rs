//! The `fieldbridge` binary's library half: configuration loading and the
//! `check` report and what a reload changes, public so that integration
//! tests can drive them.

pub mod audit;
pub mod check;
pub mod config;
pub mod dashboard;
pub mod ops;
pub mod reload;
