//! One module per command, over the core model.

pub mod solve;
pub mod tree;
pub mod why;
