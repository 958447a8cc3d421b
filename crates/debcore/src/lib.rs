//! Debian's data model, as imgbuild reads it: dpkg versions ([`version`]),
//! relation fields ([`relation`]), deb822 control data ([`deb822`]) and
//! binary package records from `Packages` indexes ([`package`]).
//!
//! Pure parsing and comparison: this crate does no I/O and depends on no
//! other part of imgbuild, so every stage (and the solver) can use it.

pub mod deb822;
pub mod package;
pub mod relation;
pub mod version;
