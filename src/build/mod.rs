//! The build stage: turning a lock's verified packages into a root filesystem
//! and reproducible artifacts.
//!
//! - [`sandbox`]: run a command with a directory as `/` in fresh namespaces,
//!   with no network, a minimal `/dev`, a fixed environment and a timeout;
//! - [`unpack`]: read a .deb's control members and extract its data.tar into a
//!   root without ever writing outside it;
//! - [`rootfs`]: assemble a lock's packages from the vendor store into a
//!   configured, normalised root filesystem;
//! - [`steps`]: a recipe's `[[step]]`s, applied to an assembled root before
//!   normalisation;
//! - [`output`]: reproducible artifacts from an assembled root (deterministic
//!   tar, OCI layout, package list, SBOM, manifest);
//! - [`cache`]: assembled roots kept by the hash of their inputs;
//! - [`tools`]: the locked tools tree (the lock's `[[tool]]`s) and running
//!   its programs in the sandbox with declared bind mounts;
//! - [`image`]: image files made with the tools tree (the bootable disk);
//! - [`onie`]: the ONIE installer (`.bin` and `fs.squashfs`) of recipes with
//!   `[onie]`.

pub mod cache;
pub mod image;
pub mod onie;
pub mod output;
pub mod rootfs;
pub mod sandbox;
pub mod steps;
pub mod tools;
pub mod unpack;
