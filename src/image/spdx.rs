//! `sbom.spdx.json`: an SPDX 2.3 JSON document of the image, from the lock.
//!
//! One package for the image (`CONTAINER`), one for the operating system
//! (`OPERATING-SYSTEM`, when the suite is a known Debian release), one per
//! locked Debian package and Python distribution with its purl (as
//! [`pkglist::sbom_purl`]) and sha256, the Debian source package in
//! `sourceInfo`; relationships: the document DESCRIBES the image, which
//! CONTAINS every package, and DEPENDS_ON edges from the lock.
//!
//! Reproducible: `created` is SOURCE_DATE_EPOCH and the namespace is derived
//! from a hash of the lock, never a random UUID.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::oci::rfc3339;
use super::pkglist::{self, operating_system, pypi_purl, sbom_purl, source_package};
use crate::lock::Lockfile;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: &'a str,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<Package>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Package {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    download_location: &'static str,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    license_concluded: &'static str,
    license_declared: &'static str,
    copyright_text: &'static str,
    supplier: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    primary_package_purpose: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

/// `SPDXRef-` + the characters SPDX allows (`[A-Za-z0-9.-]`).
fn spdx_id(kind: &str, i: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{i}-{clean}")
}

fn package(spdx_id: String, name: &str, version: &str, purl: String, sha256: &str) -> Package {
    Package {
        spdx_id,
        name: name.to_string(),
        version_info: Some(version.to_string()),
        download_location: "NOASSERTION",
        files_analyzed: false,
        checksums: vec![Checksum {
            algorithm: "SHA256",
            checksum_value: sha256.to_string(),
        }],
        source_info: None,
        license_concluded: "NOASSERTION",
        license_declared: "NOASSERTION",
        copyright_text: "NOASSERTION",
        supplier: "NOASSERTION",
        external_refs: vec![ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: purl,
        }],
        primary_package_purpose: "LIBRARY",
    }
}

fn rel(a: &str, kind: &'static str, b: &str) -> Relationship {
    Relationship {
        spdx_element_id: a.to_string(),
        relationship_type: kind,
        related_spdx_element: b.to_string(),
    }
}

/// The SPDX 2.3 JSON document of `lock` (pretty, final newline).
pub fn spdx(lock: &Lockfile, source_date_epoch: i64) -> Vec<u8> {
    let image_id = "SPDXRef-Image".to_string();
    let mut packages = vec![Package {
        spdx_id: image_id.clone(),
        name: lock.recipe.name.clone(),
        version_info: None,
        download_location: "NOASSERTION",
        files_analyzed: false,
        checksums: vec![],
        source_info: None,
        license_concluded: "NOASSERTION",
        license_declared: "NOASSERTION",
        copyright_text: "NOASSERTION",
        supplier: "NOASSERTION",
        external_refs: vec![],
        primary_package_purpose: "CONTAINER",
    }];
    let mut relationships = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", &image_id)];
    if let Some(release) = operating_system(lock) {
        let id = "SPDXRef-OperatingSystem".to_string();
        packages.push(Package {
            spdx_id: id.clone(),
            name: "debian".into(),
            version_info: Some(release.into()),
            download_location: "NOASSERTION",
            files_analyzed: false,
            checksums: vec![],
            source_info: None,
            license_concluded: "NOASSERTION",
            license_declared: "NOASSERTION",
            copyright_text: "NOASSERTION",
            supplier: "NOASSERTION",
            external_refs: vec![],
            primary_package_purpose: "OPERATING-SYSTEM",
        });
        relationships.push(rel(&image_id, "CONTAINS", &id));
    }
    let deb_ids: Vec<String> = lock
        .packages
        .iter()
        .enumerate()
        .map(|(i, p)| spdx_id("Package-deb", i, &p.name))
        .collect();
    for (p, id) in lock.packages.iter().zip(&deb_ids) {
        let mut pkg = package(
            id.clone(),
            &p.name,
            &p.version,
            sbom_purl(lock, p),
            &p.sha256,
        );
        pkg.source_info = source_package(p).map(|s| format!("built package from: {s}"));
        packages.push(pkg);
        relationships.push(rel(&image_id, "CONTAINS", id));
    }
    for (p, id) in lock.packages.iter().zip(&deb_ids) {
        let mut seen = std::collections::BTreeSet::new();
        for e in &p.depends {
            // The edge names the package that satisfies it; the first of
            // that name in lock order (as `Lockfile::package`).
            if let Some(j) = lock
                .packages
                .iter()
                .position(|q| Some(q) == lock.package(&e.name))
                && seen.insert(j)
            {
                relationships.push(rel(id, "DEPENDS_ON", &deb_ids[j]));
            }
        }
    }
    let py_ids: Vec<String> = lock
        .python
        .iter()
        .enumerate()
        .map(|(i, p)| spdx_id("Package-pypi", i, &p.name))
        .collect();
    for (p, id) in lock.python.iter().zip(&py_ids) {
        packages.push(package(
            id.clone(),
            &p.name,
            &p.version,
            pypi_purl(&p.name, &p.version),
            &p.sha256,
        ));
        relationships.push(rel(&image_id, "CONTAINS", id));
        for e in &p.depends {
            let n = crate::recipe::normalize_name(&e.name);
            if let Some(j) = lock
                .python
                .iter()
                .position(|q| crate::recipe::normalize_name(&q.name) == n)
            {
                relationships.push(rel(id, "DEPENDS_ON", &py_ids[j]));
            }
        }
    }
    let lock_hash = hex::encode(Sha256::digest(lock.to_toml().as_bytes()));
    let doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: &lock.recipe.name,
        // Unique per lock and time, the same on every rebuild.
        document_namespace: format!(
            "https://spdx.org/spdxdocs/imgbuild-{}-{}",
            pkglist::percent_encode(&lock.recipe.name),
            namespace_uuid(&lock_hash, source_date_epoch)
        ),
        creation_info: CreationInfo {
            created: rfc3339(source_date_epoch),
            creators: vec![format!("Tool: imgbuild-{}", env!("CARGO_PKG_VERSION"))],
        },
        packages,
        relationships,
    };
    let mut text = serde_json::to_vec_pretty(&doc).expect("SPDX serialises");
    text.push(b'\n');
    text
}

/// A UUID-shaped (version 5 layout) name from the lock hash and the epoch.
fn namespace_uuid(lock_hash: &str, epoch: i64) -> String {
    let h = Sha256::digest(format!("imgbuild-spdx {lock_hash} {epoch}").as_bytes());
    let mut b: [u8; 16] = h[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{LOCK_VERSION, LockedEdge, LockedPackage, LockedRecipe, LockedSource};

    fn lock() -> Lockfile {
        let p = |name: &str, file: &str, deps: &[&str]| LockedPackage {
            name: name.into(),
            version: "1.0+b1".into(),
            architecture: "amd64".into(),
            source: "main".into(),
            filename: file.into(),
            size: 1,
            sha256: "ab".repeat(32),
            reason: None,
            depends: deps
                .iter()
                .map(|d| LockedEdge {
                    name: d.to_string(),
                    relation: d.to_string(),
                    kind: "depends".into(),
                })
                .collect(),
        };
        Lockfile {
            version: LOCK_VERSION,
            recipe: LockedRecipe {
                name: "img".into(),
                hash: "sha256:00".into(),
                architecture: "amd64".into(),
            },
            sources: vec![LockedSource {
                name: "main".into(),
                suite: "bookworm-updates".into(),
                inrelease_sha256: String::new(),
                date: String::new(),
                snapshot: None,
                signed_by: String::new(),
                indexes: vec![],
            }],
            packages: vec![
                p("hello", "pool/main/h/hello/hello_1.0_amd64.deb", &["libc6"]),
                p("libc6", "pool/main/g/glibc/libc6_1.0_amd64.deb", &[]),
            ],
            python: vec![],
            tools: vec![],
            components: vec![],
        }
    }

    #[test]
    fn purls_os_and_relationships() {
        let l = lock();
        assert_eq!(
            sbom_purl(&l, &l.packages[1]),
            "pkg:deb/debian/libc6@1.0%2Bb1?arch=amd64&distro=debian-12&upstream=glibc"
        );
        assert_eq!(
            sbom_purl(&l, &l.packages[0]),
            "pkg:deb/debian/hello@1.0%2Bb1?arch=amd64&distro=debian-12"
        );
        let doc: serde_json::Value = serde_json::from_slice(&spdx(&l, 1_700_000_000)).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        let purposes: Vec<&str> = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["primaryPackagePurpose"].as_str().unwrap())
            .collect();
        assert_eq!(
            purposes,
            ["CONTAINER", "OPERATING-SYSTEM", "LIBRARY", "LIBRARY"]
        );
        let rels = doc["relationships"].as_array().unwrap();
        assert!(rels.iter().any(|r| r["relationshipType"] == "DEPENDS_ON"
            && r["spdxElementId"] == "SPDXRef-Package-deb-0-hello"
            && r["relatedSpdxElement"] == "SPDXRef-Package-deb-1-libc6"));
        assert_eq!(
            doc["packages"][3]["sourceInfo"],
            "built package from: glibc"
        );
        // Deterministic, and the namespace follows the lock.
        assert_eq!(spdx(&l, 1), spdx(&l, 1));
        let mut other = l.clone();
        other.packages[0].version = "2.0".into();
        let ns = |l: &Lockfile| {
            let d: serde_json::Value = serde_json::from_slice(&spdx(l, 1)).unwrap();
            d["documentNamespace"].as_str().unwrap().to_string()
        };
        assert_ne!(ns(&l), ns(&other));
        let cdx: serde_json::Value = serde_json::from_slice(&pkglist::cyclonedx(&l, 1)).unwrap();
        let last = cdx["components"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            (last["type"].as_str(), last["version"].as_str()),
            (Some("operating-system"), Some("12"))
        );
        assert_eq!(
            cdx["dependencies"][0]["dependsOn"][0],
            sbom_purl(&l, &l.packages[1])
        );
    }
}
