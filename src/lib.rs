//! imgbuild: reproducible OS images from pinned, verified lockfiles.
//!
//! The modules follow the pipeline: [`recipe`] → [`archive`] (verified
//! indexes) → [`solve`] → [`lock`] → [`fetch`] (the verified vendor store) →
//! later stages. [`ops`] holds one module per command over that core.

pub mod archive;
pub mod component;
pub mod core;
pub mod deb;
pub mod fetch;
pub mod http;
pub mod image;
pub mod lock;
pub mod ops;
pub mod pack;
pub mod publish;
pub mod pypi;
pub mod recipe;
pub mod registry;
pub mod rootfs;
pub mod sandbox;
/// The Debian resolver (the pure `debsolve` crate): universe, PubGrub provider, explanations.
pub use debsolve as solve;
pub mod tools;
