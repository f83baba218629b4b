//! Reports: the `chaos.report/v1` model and its renderings.

pub mod model;
