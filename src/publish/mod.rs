//! Publishing an image's outputs to an OCI registry, and pulling them back.
//!
//! - [`sign`]: keys, DSSE envelopes, cosign-style image signatures;
//! - [`plan`]: what one publication is (image, artifacts, referrers, tags),
//!   computed offline from `out/RECIPE/` with every digest known;
//! - [`provenance`]: the SLSA provenance v1 statement;
//! - [`attach`]: files attached to a publication (`--attach`);
//! - [`media`]: the media and artifact types used;
//! - [`oci`]: the OCI JSON documents.

pub mod attach;
mod compress;
pub mod media;
pub mod oci;
pub mod plan;
pub mod provenance;
pub mod sign;

pub use plan::{Blob, Document, Plan, PlanOptions, Publication};

/// Why a publication could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// An output file is missing, changed or malformed.
    #[error("{}: {reason}", path.display())]
    Output {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A key or signature problem.
    #[error(transparent)]
    Sign(#[from] sign::SignError),
}
