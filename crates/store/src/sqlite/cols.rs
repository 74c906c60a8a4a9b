//! The shared row decoding (`crate::cols`), under the name this backend's modules use.

pub(super) use crate::cols::{corrupt, json_col, opt_json_col};
