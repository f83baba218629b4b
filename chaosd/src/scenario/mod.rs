//! Scenario files: the YAML surface, its checks, and the validated model a run works from.

pub mod model;
