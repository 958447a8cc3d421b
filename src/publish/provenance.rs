//! The SLSA provenance v1 statement of a publication (an in-toto
//! Statement v1), deterministic: no clock but SOURCE_DATE_EPOCH.
//!
//! - `subject`: every published digest (the image manifest, each image
//!   file's own sha256, the lock and the SBOMs);
//! - `buildDefinition.externalParameters`: the recipe, its canonical hash,
//!   the lock's hash, SOURCE_DATE_EPOCH, the workspace revision;
//! - `buildDefinition.internalParameters`: the build key of `manifest.json`;
//! - `buildDefinition.resolvedDependencies`: every locked input blob
//!   (packages, tools, Python files) by purl and sha256;
//! - `runDetails.builder`: imgbuild's version and commit, and its own
//!   locked Rust dependencies (`Cargo.lock`, embedded at compile time).

use serde::Serialize;
use serde_json::{Value, json};

use crate::image::Manifest as OutManifest;
use crate::image::oci::rfc3339;
use crate::lock::Lockfile;
use crate::recipe::Recipe;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of SLSA provenance v1.
pub const SLSA_PREDICATE: &str = "https://slsa.dev/provenance/v1";
/// `buildType` of an imgbuild image build.
pub const BUILD_TYPE: &str = "urn:imgbuild:build-type:image:v1";

/// imgbuild's commit, when the build sets `IMGBUILD_GIT_COMMIT` (CI does), else `unknown`.
pub const COMMIT: &str = match option_env!("IMGBUILD_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// What the statement is made from.
pub struct Inputs<'a> {
    /// (name, `sha256:<hex>`) of every published thing.
    pub subjects: &'a [(String, String)],
    /// The recipe.
    pub recipe: &'a Recipe,
    /// Its lock.
    pub lock: &'a Lockfile,
    /// `out/RECIPE/manifest.json`.
    pub out: &'a OutManifest,
    /// The workspace's commit, if known.
    pub revision: Option<&'a str>,
}

#[derive(Serialize)]
struct Dependency {
    name: String,
    uri: String,
    digest: Digest,
}

#[derive(Serialize)]
struct Digest {
    sha256: String,
}

fn hex_of(d: &str) -> String {
    d.strip_prefix("sha256:").unwrap_or(d).to_string()
}

/// The statement's JSON (pretty, final newline).
pub fn statement(i: &Inputs<'_>) -> Vec<u8> {
    let subject: Vec<Value> = i
        .subjects
        .iter()
        .map(|(name, d)| json!({"name": name, "digest": {"sha256": hex_of(d)}}))
        .collect();
    let mut deps: Vec<Dependency> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in i.lock.packages.iter().chain(&i.lock.tools) {
        if seen.insert(p.sha256.clone()) {
            deps.push(Dependency {
                name: p.filename.clone(),
                uri: crate::image::pkglist::purl(p),
                digest: Digest {
                    sha256: p.sha256.clone(),
                },
            });
        }
    }
    for p in &i.lock.python {
        deps.push(Dependency {
            name: p.filename.clone(),
            uri: format!("pkg:pypi/{}@{}", p.name, p.version),
            digest: Digest {
                sha256: p.sha256.clone(),
            },
        });
    }
    let lock_hash = i.lock.file_hash();
    let st = json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": SLSA_PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "recipe": i.recipe.name,
                    "recipeHash": i.lock.recipe.hash,
                    "lockHash": lock_hash,
                    "architecture": i.lock.recipe.architecture,
                    "sourceDateEpoch": i.out.source_date_epoch,
                    "revision": i.revision,
                },
                "internalParameters": {
                    "buildKey": i.out.build_key,
                    "stepsHash": i.recipe.build_hash(),
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": format!("urn:imgbuild:builder:{}", env!("CARGO_PKG_VERSION")),
                    "version": {
                        "imgbuild": env!("CARGO_PKG_VERSION"),
                        "commit": COMMIT,
                    },
                    "builderDependencies": builder_dependencies(),
                },
                "metadata": {
                    "invocationId": format!("{}@{}", i.recipe.name, i.out.build_key),
                    "finishedOn": rfc3339(i.out.source_date_epoch),
                },
            },
        },
    });
    let mut text = serde_json::to_vec_pretty(&st).expect("statement serialises");
    text.push(b'\n');
    text
}

/// imgbuild's locked Rust dependencies from the `Cargo.lock` it was built
/// with: `pkg:cargo/NAME@VERSION` with the registry checksum.
fn builder_dependencies() -> Vec<Value> {
    #[derive(serde::Deserialize)]
    struct CargoLock {
        #[serde(default)]
        package: Vec<Pkg>,
    }
    #[derive(serde::Deserialize)]
    struct Pkg {
        name: String,
        version: String,
        checksum: Option<String>,
    }
    let Ok(lock) = toml::from_str::<CargoLock>(include_str!("../../Cargo.lock")) else {
        return Vec::new();
    };
    lock.package
        .into_iter()
        .filter_map(|p| {
            let sum = p.checksum?;
            Some(json!({
                "uri": format!("pkg:cargo/{}@{}", p.name, p.version),
                "digest": {"sha256": sum},
            }))
        })
        .collect()
}
