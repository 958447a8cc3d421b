//! The locked tools tree (like mkosi's ToolsTree): the programs that make
//! image files (`mkfs.ext4`, `grub-mkimage`, `qemu-img`, …) come from the
//! lock, never from the host, so outputs do not drift with the host.
//!
//! - [`crate::ops::solve::tools::solve_tools`]: the recipe's `tools = [...]` plus the Essential set,
//!   solved against the recipe's own sources into the lock's `[[tool]]`s;
//! - [`ToolsRoot::prepare`]: the tools tree assembled from the vendor store
//!   (unpack only, see below), cached as a deterministic tar under a key that
//!   hashes the locked tools, extracted once and kept beside that tar
//!   (checked before each use, see [`kept`]; one build at a time uses it,
//!   under the cache's lock);
//! - [`ToolsRoot::run`]: run an argv in the build sandbox with the tools tree
//!   as `/` and declared host paths bind-mounted: inputs read-only, outputs
//!   read-write.
//!
//! Why unpack only (no maintainer scripts): the tools are run as plain
//! programs, never as a system. Unpacking gives every binary, library and
//! data file (`/etc/mke2fs.conf`, `/usr/lib/grub/i386-pc`); the only thing
//! a configure step would add that matters is the dynamic linker's cache,
//! which is made by running the tree's own `ldconfig` in the sandbox. No
//! postinst runs, so assembling the tree takes seconds, not minutes.

mod ahead;
mod error;
mod kept;
mod root;

pub use ahead::ToolsAhead;
pub use error::ToolsError;
pub use root::{ToolRun, ToolsRoot, tools_key};
