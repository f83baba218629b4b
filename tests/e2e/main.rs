//! End-to-end tests of the built binaries (`chaosctl`, `chaos-agent`, `chaosd`, `chaos-demo`):
//! real runs, real processes, real files, the lab of network-namespace hosts, the drills. One test
//! binary for the whole package (`autotests = false`); each module covers one part of the
//! contract. The harness and the lab are the package's library, `chaos_tests`.
//!
//! These tests wait on real processes and real time, which the paused tokio clock cannot fake,
//! so they measure time with `std::time::Instant`.
#![allow(clippy::disallowed_types)]

mod bandwidth;
mod certs;
mod commands;
mod containers;
mod crash_trials;
mod diff;
mod dns;
mod drills_http;
mod drills_redis;
mod edges;
mod fanout;
mod faults;
mod http_fault;
mod impact;
mod import;
mod init;
mod inside;
mod invalid;
mod lab;
mod load;
mod lost_answers;
mod monkey;
mod netem;
mod otel;
mod signals;
mod steps;
mod stress;
mod stress_inside;
mod syncs;
mod verdicts;
