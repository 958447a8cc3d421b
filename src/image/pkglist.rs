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

/// The Debian release of a codename (`bookworm` → `12`), for the purl's
/// `distro` qualifier and the SBOMs' operating-system component.
pub fn debian_release(suite: &str) -> Option<&'static str> {
    // `bookworm-updates`, `bookworm-security`, `bookworm/updates`.
    let codename = suite.split(['-', '/']).next().unwrap_or(suite);
    Some(match codename {
        "buster" => "10",
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        _ => return None,
    })
}

/// `debian-12` for a package from a source whose suite is a known Debian
/// release.
pub fn distro_of(lock: &Lockfile, p: &LockedPackage) -> Option<String> {
    let source = lock.sources.iter().find(|s| s.name == p.source)?;
    debian_release(&source.suite).map(|r| format!("debian-{r}"))
}

/// The image's operating system: the release of the first source that is
/// a known Debian suite.
pub fn operating_system(lock: &Lockfile) -> Option<&'static str> {
    lock.sources.iter().find_map(|s| debian_release(&s.suite))
}

/// The source package of a binary package, from its pool directory
/// (`pool/main/g/glibc/libc6_….deb` → `glibc`).
pub fn source_package(p: &LockedPackage) -> Option<&str> {
    // pool/COMPONENT/PREFIX/SOURCE/FILE; flat repositories have no such layout.
    let parts: Vec<&str> = p.filename.split('/').collect();
    match parts.as_slice() {
        ["pool", .., src, _file] if parts.len() >= 5 && !src.is_empty() => Some(src),
        _ => None,
    }
}

/// The full purl of a locked package as scanners want it:
/// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-12&upstream=SOURCE`
/// (qualifiers sorted; `distro` when the suite is a known release,
/// `upstream` when the source package has another name).
pub fn sbom_purl(lock: &Lockfile, p: &LockedPackage) -> String {
    let mut out = purl(p);
    if let Some(d) = distro_of(lock, p) {
        out.push_str(&format!("&distro={}", percent_encode(&d)));
    }
    if let Some(src) = source_package(p).filter(|s| *s != p.name) {
        out.push_str(&format!("&upstream={}", percent_encode(src)));
    }
    out
}

/// The purl of a locked Python distribution (`pkg:pypi/NAME@VERSION`,
/// the name normalised lower-case with `-`).
pub fn pypi_purl(name: &str, version: &str) -> String {
    let name = name.to_ascii_lowercase().replace(['_', '.'], "-");
    format!(
        "pkg:pypi/{}@{}",
        percent_encode(&name),
        percent_encode(version)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters (so an
/// epoch's `:` and a `+` in a version are encoded, as purl requires).
pub(crate) fn percent_encode(s: &str) -> String {
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dependencies: Vec<Dependency>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dependency {
    #[serde(rename = "ref")]
    reference: String,
    depends_on: Vec<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
}

#[derive(Serialize)]
struct Hash {
    alg: &'static str,
    content: String,
}

/// Every package, the Python distributions, then the operating system.
fn components(lock: &Lockfile) -> Vec<Component> {
    let mut out: Vec<Component> = lock
        .packages
        .iter()
        .map(|p| Component {
            kind: "library",
            bom_ref: sbom_purl(lock, p),
            name: p.name.clone(),
            version: p.version.clone(),
            purl: Some(sbom_purl(lock, p)),
            hashes: vec![Hash {
                alg: "SHA-256",
                content: p.sha256.clone(),
            }],
        })
        .collect();
    for p in &lock.python {
        out.push(Component {
            kind: "library",
            bom_ref: pypi_purl(&p.name, &p.version),
            name: p.name.clone(),
            version: p.version.clone(),
            purl: Some(pypi_purl(&p.name, &p.version)),
            hashes: vec![Hash {
                alg: "SHA-256",
                content: p.sha256.clone(),
            }],
        });
    }
    if let Some(release) = operating_system(lock) {
        // Trivy only matches OS packages when the SBOM names the OS.
        out.push(Component {
            kind: "operating-system",
            bom_ref: format!("os:debian@{release}"),
            name: "debian".into(),
            version: release.into(),
            purl: None,
            hashes: vec![],
        });
    }
    out
}

/// The lock's dependency edges, by bom-ref.
fn dependencies(lock: &Lockfile) -> Vec<Dependency> {
    let mut out = Vec::new();
    for p in &lock.packages {
        let mut deps: Vec<String> = p
            .depends
            .iter()
            .filter_map(|e| lock.package(&e.name))
            .map(|d| sbom_purl(lock, d))
            .collect();
        deps.dedup();
        out.push(Dependency {
            reference: sbom_purl(lock, p),
            depends_on: deps,
        });
    }
    for p in &lock.python {
        let deps = p
            .depends
            .iter()
            .filter_map(|e| {
                let n = crate::recipe::normalize_name(&e.name);
                lock.python
                    .iter()
                    .find(|q| crate::recipe::normalize_name(&q.name) == n)
            })
            .map(|q| pypi_purl(&q.name, &q.version))
            .collect();
        out.push(Dependency {
            reference: pypi_purl(&p.name, &p.version),
            depends_on: deps,
        });
    }
    out
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
        components: components(lock),
        dependencies: dependencies(lock),
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
