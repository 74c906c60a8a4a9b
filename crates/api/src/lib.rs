//! AgentCore wire shapes, the AWS error model, and request validation against the service models.
//!
//! Shared by the server (which speaks it) and the CLI (which reads it). No IO here.

pub mod control;
pub mod error;
pub mod evaluation;
pub mod evaluation_data;
pub mod evaluation_resources;
pub mod eventstream;
pub mod identity;
pub mod memory;
pub mod model;
pub mod native;

pub use error::{ApiError, ErrorKind, FieldError};
