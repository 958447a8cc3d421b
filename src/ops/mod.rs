//! One module per command, over the core model.

pub mod build;
pub mod fetch;
pub mod rootless;
pub mod solve;
pub mod tree;
pub mod vendor;
pub mod verify;
pub mod why;
pub mod workspace;
