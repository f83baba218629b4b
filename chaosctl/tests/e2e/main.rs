//! End-to-end tests of the built `chaosctl`: real runs, real processes, real files. One test
//! binary for the whole crate (`autotests = false`); each module covers one part of the contract
//! in `spec/scenario-v1.md`.
//!
//! These tests wait on real processes and real time, which the paused tokio clock cannot fake,
//! so they measure time with `std::time::Instant`.
#![allow(clippy::disallowed_types)]

mod certs;
mod commands;
mod crash_trials;
mod diff;
mod drills_http;
mod drills_redis;
mod edges;
mod faults;
mod impact;
mod init;
mod invalid;
mod lab;
mod lab_support;
mod load;
mod lost_answers;
mod monkey;
mod signals;
mod steps;
mod support;
mod verdicts;
