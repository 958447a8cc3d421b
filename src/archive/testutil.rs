//! Test helpers that build the crate's own types (recipe sources and
//! recipes); keys, compression and signed fixture repositories are the shared
//! `testkit` crate's, which the integration tests use too.

use std::path::PathBuf;

use crate::recipe::{Location, Recipe, Source};

/// A recipe source with the given name, location and suite, component `main`.
pub fn source(name: &str, location: Location, suite: &str) -> Source {
    Source {
        name: name.into(),
        location,
        suite: suite.into(),
        components: if suite == "/" {
            vec![]
        } else {
            vec!["main".into()]
        },
        keyring: PathBuf::new(),
        keyring_sha256: String::new(),
        check_valid_until: true,
        snapshot: None,
        priority: 500,
    }
}

/// A recipe over `sources` for `arch` plus `foreign` architectures.
pub fn recipe(sources: Vec<Source>, arch: &str, foreign: &[&str]) -> Recipe {
    Recipe {
        steps: vec![],
        components: vec![],
        tools: vec![],
        disk: None,
        onie: None,
        publish: Default::default(),
        hostname: None,
        python: None,
        name: "test".into(),
        path: PathBuf::from("recipes/test.toml"),
        architecture: arch.into(),
        foreign_architectures: foreign.iter().map(|s| s.to_string()).collect(),
        sources,
        packages: vec![],
        essential: true,
        recommends: false,
    }
}
