//! Reports: the `chaos.report/v1` model and its renderings.

pub mod diff;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod model;
pub mod summary;
pub mod writer;

pub use writer::ReportDir;

#[cfg(test)]
pub(crate) mod test_support;
