//! The end-to-end tests, one module per area, in one test binary: one
//! build and link for all of them, and one pool of test threads.

mod alarms;
mod audit;
mod chat;
mod cli;
mod clients;
mod commands;
mod dashboard;
mod demo;
mod discovery;
mod files;
mod gateway;
mod history;
mod hostile;
mod metrics;
mod modbus;
mod mqtt;
mod names;
mod operator;
mod reload;
mod rooms;
mod serial;
mod servers;
mod state;
mod systemd;
mod tls;
