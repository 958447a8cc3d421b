//! The canonical hash of a merged recipe, recorded in the lock to detect a
//! stale lock without re-solving.
//!
//! It hashes a canonical JSON rendering of the *parsed* recipe, not the file
//! bytes, so whitespace, comments, key order, relation spacing, CRLF
//! checkouts and how the recipe is split across `extends` do not matter (a
//! raw-bytes checksum is what made apko locks break on CRLF checkouts).

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Location, Recipe, Requirement, Source, Step, StepAction};

/// Bumped whenever the canonical form changes meaning, so that old locks are
/// reported stale instead of silently matching a differently-built hash.
const CANONICAL_FORMAT: &str = "imgbuild-recipe-1";

#[derive(Serialize)]
struct CanonicalRecipe<'a> {
    format: &'static str,
    name: &'a str,
    architecture: &'a str,
    foreign_architectures: Vec<&'a str>,
    essential: bool,
    recommends: bool,
    sources: Vec<CanonicalSource<'a>>,
    packages: Vec<String>,
    // Absent for recipes without `[python]`, so their hash is unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    python: Option<super::python::CanonicalPython>,
    /// Left out when empty, so locks of recipes without tools keep their hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<String>,
    /// Left out when empty, so locks of recipes without components keep their hash.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    components: &'a [super::Component],
}

#[derive(Serialize)]
struct CanonicalSource<'a> {
    name: &'a str,
    archive: Option<&'a str>,
    url: Option<&'a str>,
    suite: &'a str,
    components: &'a [String],
    keyring_sha256: &'a str,
    priority: i32,
}

impl Recipe {
    /// `sha256:<hex>` of the canonical form of this merged recipe.
    ///
    /// Equal for recipes that parse and merge to the same content; the
    /// keyring's contents count, its path does not. Requirement order and
    /// source order are kept (not sorted) because they can steer the solver.
    pub fn canonical_hash(&self) -> String {
        // Destructure exhaustively: adding a field to `Recipe` fails to
        // compile here until someone decides whether it belongs in the hash.
        let Recipe {
            name,
            path: _,
            architecture,
            foreign_architectures,
            sources,
            packages,
            essential,
            recommends,
            // Steps and the hostname change the build, not what is installed:
            // they are in `build_hash`, so changing them does not make the lock stale.
            steps: _,
            hostname: _,
            python,
            // The tools are solved into the lock (`[[tool]]`): they count.
            tools,
            // The disk layout is a build setting, in `build_hash`.
            disk: _,
            onie: _,
            // Naming and labels for `publish`: not part of what is built.
            publish: _,
            // Sources, scripts and relations of components are locked: they count.
            components,
        } = self;
        // Foreign architectures are a set: order and repeats do not matter.
        let mut foreign: Vec<&str> = foreign_architectures.iter().map(String::as_str).collect();
        foreign.sort_unstable();
        foreign.dedup();
        let canonical = CanonicalRecipe {
            format: CANONICAL_FORMAT,
            name,
            architecture,
            foreign_architectures: foreign,
            essential: *essential,
            recommends: *recommends,
            sources: sources.iter().map(canonical_source).collect(),
            packages: packages.iter().map(canonical_requirement).collect(),
            python: python.as_ref().map(|p| p.canonical()),
            tools: tools.iter().map(canonical_requirement).collect(),
            components,
        };
        let json = serde_json::to_vec(&canonical).expect("plain data serializes");
        format!("sha256:{}", hex::encode(Sha256::digest(&json)))
    }
}

/// Bumped whenever the canonical form of the steps changes meaning.
const STEPS_FORMAT: &str = "imgbuild-steps-2";

#[derive(Serialize)]
struct CanonicalSteps<'a> {
    format: &'static str,
    hostname: Option<&'a str>,
    steps: Vec<&'a StepAction>,
    /// Left out when unset, so recipes without a disk keep their hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    disk: Option<&'a super::Disk>,
    // Absent when unset, so recipes without `[onie]` keep their hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    onie: Option<&'a super::onie::Onie>,
}

impl Recipe {
    /// `sha256:<hex>` of the build steps: their actions in order, with the
    /// *contents* (sha256) of copied files, not their paths; origins do not
    /// count. Part of the rootfs cache key, not of the lock.
    pub fn build_hash(&self) -> String {
        let canonical = CanonicalSteps {
            format: STEPS_FORMAT,
            hostname: self.hostname.as_deref(),
            // `StepAction` serializes every field but the copy source's
            // paths (`#[serde(skip)]`: its sha256 stands for it); `Step`
            // adds only its origin.
            steps: self
                .steps
                .iter()
                .map(|Step { action, origin: _ }| action)
                .collect(),
            disk: self.disk.as_ref(),
            onie: self.onie.as_ref(),
        };
        let json = serde_json::to_vec(&canonical).expect("plain data serializes");
        format!("sha256:{}", hex::encode(Sha256::digest(&json)))
    }
}

fn canonical_source(s: &Source) -> CanonicalSource<'_> {
    let Source {
        name,
        location,
        suite,
        components,
        keyring: _,
        keyring_sha256,
        priority,
        // Which InRelease is accepted, not what the lock holds.
        check_valid_until: _,
        // Which archive state is read; the lock records it and
        // `Lockfile::is_stale_for` compares it.
        snapshot: _,
    } = s;
    let (archive, url) = match location {
        Location::Archive(a) => (Some(a.as_str()), None),
        Location::Url(u) => (None, Some(u.as_str())),
    };
    CanonicalSource {
        name,
        archive,
        url,
        suite,
        components,
        keyring_sha256,
        priority: *priority,
    }
}

/// The parsed relation re-rendered (`foo(>=1)` → `foo (>= 1)`); the text as
/// written and its origin line are presentation only.
fn canonical_requirement(r: &Requirement) -> String {
    r.dependency.to_string()
}
