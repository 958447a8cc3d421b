//! Why an image output (the ONIE installer, the disk image, one of
//! [`super::outputs_of`]) could not be written.
//!
//! Every failure of a library call is wrapped with what was being done to
//! which file (`Context::with_context`, typed per source error, see
//! [`crate::core::context`]); a refusal of the input says what is wrong and
//! how to mend the recipe.

use std::io;

use crate::pack::OutputError;
use crate::rootfs::RootfsError;
use crate::tools::ToolsError;

use super::disk::mbr::MbrError;

/// An error of an image output.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was done to which file (`creating /x`, `reading /boot of …`).
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The rootfs or the recipe has something the output cannot hold or
    /// lacks something it needs (no kernel, device nodes, an architecture
    /// ONIE has no name for); the message names the file and the fix.
    #[error("{0}")]
    Refused(String),
    /// Writing `fs.zip` failed.
    #[error("{what}: {source}")]
    Zip {
        /// What was done to which file.
        what: String,
        /// The underlying error.
        source: zip::result::ZipError,
    },
    /// Writing the squashfs failed.
    #[error("{what}: {source}")]
    Squashfs {
        /// What was done to which file.
        what: String,
        /// The underlying error.
        source: backhand::BackhandError,
    },
    /// The disk's boot area cannot be made from GRUB's images.
    #[error("{what}: {source}")]
    BootArea {
        /// The disk image.
        what: String,
        /// Why.
        source: MbrError,
    },
    /// Preparing the tree for the disk image failed.
    #[error("{what}: {source}")]
    Rootfs {
        /// What was done to which tree.
        what: String,
        /// Why.
        source: Box<RootfsError>,
    },
    /// The tools tree could not be made or a tool failed.
    #[error(transparent)]
    Tools(#[from] ToolsError),
    /// A shared output primitive failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// A step of an output failed (the cause follows in the chain).
    #[error("{what}")]
    Step {
        /// What was being written (`writing the disk image of `img``).
        what: String,
        /// Why.
        source: Box<ImageError>,
    },
}

crate::core::context::error_context!(ImageError, refused: ImageError::Refused, {
    io::Error => |what, source| ImageError::Io { what, source },
    zip::result::ZipError => |what, source| ImageError::Zip { what, source },
    backhand::BackhandError => |what, source| ImageError::Squashfs { what, source },
    MbrError => |what, source| ImageError::BootArea { what, source },
    RootfsError => |what, source| ImageError::Rootfs { what, source: Box::new(source) },
    ImageError => |what, source| ImageError::Step { what, source: Box::new(source) },
});

/// Returns an [`ImageError::Refused`] with a `format!` message (the typed
/// counterpart of anyhow's `bail!`).
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::image::ImageError::Refused(format!($($arg)*)))
    };
}
pub(crate) use refuse;
