//! Offline test fixtures shared by the integration tests (`mod support;`).
//!
//! - [`deb`]: real, deterministic .deb files from a [`DebSpec`].
//! - [`hostbase`]: a runnable base package made of the host's binaries ([`hostbase::host_base`]).
//! - [`key`]: throwaway OpenPGP keys ([`TestKey::primary`], [`TestKey::wrong`]), from the
//!   `testkit` crate shared with the unit tests.
//! - [`repo`]: signed Debian archives and flat repositories ([`RepoBuilder`], [`Repo`]).
//! - [`rootfs`]: the rootfs assembly tests' fixture store and lock.
//! - [`rootless`]: the non-root leg of a test, as a user with a subordinate id range.
//! - [`site`]: a temp dir of archives ([`Site`]).
//! - [`img`]: recipe `img` over a served archive `debian`, solved and fetched ([`fetched_img`]).
//! - [`http`]: a loopback HTTP server with fault injection ([`TestServer`], [`Fault`]).
//! - [`apt`]: the real apt with a private configuration, as an independent judge ([`Apt`]).
//! - [`onie`]: a fixture rootfs for the ONIE installer and a simulated ONIE.
//! - [`publishing`]: the publish tests' fixture workspace, keys and independent checks.
//! - [`pypi`]: a PEP 691 package index with real wheels and sdists ([`PyIndex`]).
//! - [`solving`]: helpers of the `imgbuild solve` end-to-end tests.
//! - [`tree`]: a rootfs-like test tree and its deterministic tar.
//! - [`registry`]: a real `docker-registry` on loopback, plain or TLS + htpasswd.
//! - [`scripted`]: a loopback HTTP server answering through a closure.
//! - [`snapshot`]: a snapshot service (`archive/<archive>/<TS>/`) on loopback ([`SnapshotService`]).
//! - [`workspace`]: a project dir with recipes, and running the built binary ([`Workspace`]).
//!
//! Each test binary uses a subset, hence the blanket `dead_code` allowance.
#![allow(dead_code, unused_imports)]

pub mod apt;
pub mod deb;
pub mod hostbase;
pub mod http;
pub mod img;
pub mod onie;
pub mod publishing;
pub mod pypi;
pub mod registry;
pub mod repo;
pub mod rootfs;
pub mod rootless;
pub mod scripted;
pub mod site;
pub mod snapshot;
pub mod solving;
pub mod tree;
pub mod workspace;

/// The keys live in the shared fixture kit, which the unit tests use too.
pub use testkit::key;

pub use apt::Apt;
pub use deb::{Compression, DebSpec, RawEntry, RawKind};
pub use http::{Fault, RequestRecord, TestServer, raw_request};
pub use img::{build_args, debian_site, fetched_img, fetched_on_host_base, write_img_recipe};
pub use key::TestKey;
pub use pypi::{PyIndex, WheelSpec};
pub use repo::{BuiltDeb, Repo, RepoBuilder};
pub use site::Site;
pub use snapshot::SnapshotService;
pub use workspace::{RecipeToml, RunOutput, SourceToml, Workspace};

/// The process umask is process-wide, and `imgbuild verify` (like tests that
/// make trees under a chosen umask) changes it for a while: tests of one
/// binary that build, or look at file modes, hold this lock so that none of
/// them runs while another has the umask changed.
pub fn umask_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
