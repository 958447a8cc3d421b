//! What is in the image, from the lock: `packages.txt` and a CycloneDX SBOM.
//!
//! Both list the lock's packages in lock order. The SBOM (CycloneDX 1.5
//! JSON) names each package by its purl, `pkg:deb/debian/NAME@VERSION?arch=ARCH`,
//! and carries the .deb's sha256; its only timestamp is SOURCE_DATE_EPOCH and
//! it has no random serial number, so the same lock gives the same bytes.

use serde::Serialize;

use super::oci::rfc3339;
use crate::lock::{LockedPackage, Lockfile};

/// `name version architecture`, one line per locked package, in lock order.
pub fn packages_txt(lock: &Lockfile) -> String {
    let mut out = String::new();
    for p in &lock.packages {
        out.push_str(&format!("{} {} {}\n", p.name, p.version, p.architecture));
    }
    out
}

/// The package URL of a locked Debian package.
///
/// Packages generated from a `[[component]]` are not Debian's: their
/// namespace is `imgbuild`.
pub fn purl(p: &LockedPackage) -> String {
    let namespace = if p.source == crate::component::build::SOURCE_NAME {
        "imgbuild"
    } else {
        "debian"
    };
    format!(
        "pkg:deb/{namespace}/{}@{}?arch={}",
        percent_encode(&p.name),
        percent_encode(&p.version),
        percent_encode(&p.architecture)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters (so an
/// epoch's `:` and a `+` in a version are encoded, as purl requires).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bom<'a> {
    bom_format: &'static str,
    spec_version: &'static str,
    version: u32,
    metadata: Metadata<'a>,
    components: Vec<Component>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    timestamp: String,
    tools: Tools,
    component: Subject<'a>,
}

#[derive(Serialize)]
struct Tools {
    components: Vec<Tool>,
}

#[derive(Serialize)]
struct Tool {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Subject<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
}

#[derive(Serialize)]
struct Component {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref")]
    bom_ref: String,
    name: String,
    version: String,
    purl: String,
    hashes: Vec<Hash>,
}

#[derive(Serialize)]
struct Hash {
    alg: &'static str,
    content: String,
}

/// The CycloneDX 1.5 JSON SBOM of `lock` (pretty, final newline).
pub fn cyclonedx(lock: &Lockfile, source_date_epoch: i64) -> Vec<u8> {
    let bom = Bom {
        bom_format: "CycloneDX",
        spec_version: "1.5",
        version: 1,
        metadata: Metadata {
            timestamp: rfc3339(source_date_epoch),
            tools: Tools {
                components: vec![Tool {
                    kind: "application",
                    name: "imgbuild",
                    version: env!("CARGO_PKG_VERSION"),
                }],
            },
            component: Subject {
                kind: "container",
                name: &lock.recipe.name,
            },
        },
        components: lock
            .packages
            .iter()
            .map(|p| Component {
                kind: "library",
                bom_ref: purl(p),
                name: p.name.clone(),
                version: p.version.clone(),
                purl: purl(p),
                hashes: vec![Hash {
                    alg: "SHA-256",
                    content: p.sha256.clone(),
                }],
            })
            .collect(),
    };
    let mut text = serde_json::to_vec_pretty(&bom).expect("SBOM serialises");
    text.push(b'\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purl_encodes_epoch_and_plus() {
        let p = LockedPackage {
            name: "libstdc++6".into(),
            version: "1:12.2.0-14+deb12u1".into(),
            architecture: "amd64".into(),
            source: "main".into(),
            filename: "pool/x.deb".into(),
            size: 1,
            sha256: "0".repeat(64),
            reason: None,
            depends: vec![],
        };
        assert_eq!(
            purl(&p),
            "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14%2Bdeb12u1?arch=amd64"
        );
    }
}
