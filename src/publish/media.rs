//! Media types and artifact types of a publication.
//!
//! OCI's own where they exist, the SBOM formats' registered types, the
//! in-toto/DSSE and cosign conventions for attestations and signatures, and
//! `application/vnd.imgbuild.*` for what has no convention (the image files).

/// An image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An image index.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The empty config of an artifact (the 2-byte blob `{}`).
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The empty blob's bytes.
pub const EMPTY_BYTES: &[u8] = b"{}";

/// Artifact type of a raw disk image; its layer is [`DISK_RAW_ZSTD`].
pub const ARTIFACT_DISK_RAW: &str = "application/vnd.imgbuild.disk.raw.v1";
/// A raw disk image compressed with zstd.
pub const DISK_RAW_ZSTD: &str = "application/vnd.imgbuild.disk.raw.v1+zstd";
/// Artifact type and layer type of a qcow2 disk image.
pub const DISK_QCOW2: &str = "application/vnd.imgbuild.disk.qcow2.v1";
/// Artifact type and layer type of an ONIE installer (`.bin`, as is).
pub const ONIE_INSTALLER: &str = "application/vnd.imgbuild.onie.installer.v1";
/// Artifact type and layer type of a squashfs root filesystem.
pub const SQUASHFS: &str = "application/vnd.imgbuild.rootfs.squashfs.v1";
/// Artifact type and layer type of any other image file.
pub const FILE: &str = "application/vnd.imgbuild.file.v1";

/// Artifact type of a file attached with `publish --attach` (a report about
/// the image, such as the nightly's drift report).
pub const ATTACHMENT: &str = "application/vnd.imgbuild.attachment.v1";

/// The layer media type of an attached file, by its extension.
pub fn attachment_layer(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("md") => "text/markdown",
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

/// The lockfile (TOML).
pub const LOCK: &str = "application/vnd.imgbuild.lock.v1+toml";
/// SPDX 2.3 JSON.
pub const SPDX: &str = "application/spdx+json";
/// CycloneDX JSON.
pub const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
/// Artifact type of an in-toto attestation.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// A DSSE envelope (the provenance layer).
pub const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// Artifact type of a cosign signature.
pub const COSIGN_SIG_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// A cosign simple-signing payload (the signature layer).
pub const COSIGN_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature of the payload.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// File name of a layer (what `oras pull` writes it as).
pub const TITLE: &str = "org.opencontainers.image.title";
/// Our layer annotation: `sha256:…` of the file before compression.
pub const UNCOMPRESSED_DIGEST: &str = "vnd.imgbuild.uncompressed.digest";
/// Our layer annotation: size of the file before compression.
pub const UNCOMPRESSED_SIZE: &str = "vnd.imgbuild.uncompressed.size";
/// in-toto's annotation naming the predicate of an attestation.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";

/// The artifact type and layer media type of an image file by name, and
/// whether the layer is zstd-compressed.
pub fn image_file(name: &str) -> (&'static str, &'static str, bool) {
    if name.ends_with(".raw") {
        (ARTIFACT_DISK_RAW, DISK_RAW_ZSTD, true)
    } else if name.ends_with(".qcow2") {
        (DISK_QCOW2, DISK_QCOW2, false)
    } else if name.ends_with(".squashfs") {
        (SQUASHFS, SQUASHFS, false)
    } else if name.ends_with(".bin") {
        (ONIE_INSTALLER, ONIE_INSTALLER, false)
    } else {
        (FILE, FILE, false)
    }
}
