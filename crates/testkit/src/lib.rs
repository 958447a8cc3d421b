//! Offline test fixtures shared by imgbuild's unit tests (`src/**`, a
//! dev-dependency under `#[cfg(test)]`) and its integration tests
//! (`tests/support` re-exports them).
//!
//! Only fixtures that need none of imgbuild's own types live here: a fixture
//! that builds a `Recipe` or a `Source` must stay in the crate, or unit tests
//! would see a second, incompatible copy of those types.
//!
//! - [`key`]: throwaway OpenPGP keys and Debian-style signatures ([`TestKey`]).
//! - [`compress`]: deterministic xz and gzip ([`xz`], [`gz`]).
//! - [`index`]: `Packages` texts and signed repositories made of given index files
//!   ([`packages_text`], [`write_repo`]).

pub mod compress;
pub mod index;
pub mod key;

pub use compress::{gz, xz};
pub use index::{packages_text, write_repo};
pub use key::TestKey;

/// Lower-case hex sha256 of `data` (the fixtures' own, independent of the crate's).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}
