//! The build stage: turning a lock's verified packages into a root filesystem.
//!
//! Foundations so far:
//! - [`sandbox`]: run a command with a directory as `/` in fresh namespaces,
//!   with no network, a minimal `/dev`, a fixed environment and a timeout;
//! - [`unpack`]: read a .deb's control members and extract its data.tar into a
//!   root without ever writing outside it;
//! - [`rootfs`]: assemble a lock's packages from the vendor store into a
//!   configured, normalised root filesystem.

pub mod rootfs;
pub mod sandbox;
pub mod unpack;
