//! Container images for Berth: the OCI registry Berth serves, pulls from any Distribution-API
//! registry, and the content-addressed layer cache images are unpacked into.
//!
//! - [`reference`]: image references (`repo:tag`, `repo@sha256:...`, ECR-style URIs) and how a
//!   reference maps to the built-in registry or an external one.
//! - [`registry`]: the built-in registry's storage and rules (blobs, chunked uploads, manifests,
//!   tags, catalog), with no HTTP framework; `berth-server` maps the Distribution API onto it.
//! - [`pull`]: resolving a reference to a digest and fetching an image (index -> host platform ->
//!   manifest -> config -> layers), digests verified, through `oci-client`.
//! - [`unpack`]: layers unpacked into the layer cache, safely (no path escapes, no bombs), as
//!   directories an overlay mount stacks into a root filesystem.

pub mod pull;
pub mod reference;
pub mod registry;
pub mod unpack;
