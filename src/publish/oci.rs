//! The OCI JSON documents of a publication (image-spec 1.1): descriptors
//! with `artifactType`, image manifests with `subject`, indexes. Field order
//! is fixed by the structs and maps are `BTreeMap`s, so the bytes, and the
//! digests, are stable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A content descriptor (image-spec), with the 1.1 `artifactType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// The target's `artifactType` (in referrers lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest (an image, or an artifact with `artifactType`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`media::MANIFEST`].
    pub media_type: String,
    /// Set for artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob ([`media::EMPTY`] for artifacts).
    pub config: Descriptor,
    /// The layers (the files of an artifact).
    pub layers: Vec<Descriptor>,
    /// The manifest this one is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (the referrers list of the tag fallback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`media::INDEX`].
    pub media_type: String,
    /// The manifests listed.
    pub manifests: Vec<Descriptor>,
}
