//! The small core model shared by every stage: versions, relations, deb822
//! control data and binary package records.

pub mod atomic;
pub mod bounded;
pub mod deb822;
pub mod package;
pub mod relation;
pub mod version;
