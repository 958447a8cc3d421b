//! The small core model shared by every stage. Debian's data model
//! (versions, relations, deb822 control data, binary package records) is
//! the pure `debcore` crate, re-exported here; this module adds what needs
//! the file system: atomic writes and file digests.

pub mod atomic;
pub mod bounded;
pub mod cpu;
pub mod digest;

pub use debcore::{deb822, package, relation, version};
