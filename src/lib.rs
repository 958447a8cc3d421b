//! imgbuild: reproducible OS images from pinned, verified lockfiles.
//!
//! The modules follow the pipeline: [`recipe`] → [`archive`] (verified
//! indexes) → [`solve`] → [`lock`] → [`fetch`] (the verified vendor store) →
//! later stages. [`ops`] holds one module per command over that core.

pub mod archive;
pub mod build;
pub mod core;
pub mod fetch;
pub mod lock;
pub mod ops;
pub mod publish;
pub mod pypi;
pub mod recipe;
pub mod registry;
pub mod solve;
