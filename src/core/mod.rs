//! The small core model shared by every stage. Debian's data model
//! (versions, relations, deb822 control data, binary package records) is
//! the pure `debcore` crate, re-exported here; this module adds what needs
//! the file system (atomic writes, file digests), snapshot timestamps and
//! typed error context.

pub mod alloc;
pub mod atomic;
pub mod bounded;
pub mod context;
pub mod cpu;
pub mod digest;
pub mod growing;
pub mod hashing_writer;
pub mod scratch;
pub mod stamps;
pub mod timestamp;
pub mod uncached;

pub use debcore::{deb822, package, relation, version};
