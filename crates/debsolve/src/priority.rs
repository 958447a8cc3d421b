//! The decision order both of imgbuild's PubGrub providers give the solver
//! (this crate's Debian one and the Python one), kept in one place so the
//! two solves make their choices alike.
//!
//! Both number a package's candidates `1..=count` (PubGrub "versions" are
//! candidate indexes), so the same integer ranges serve both.

use std::cmp::Reverse;

use pubgrub::{PackageResolutionStatistics, Ranges};

/// PubGrub decides the highest first: the tier, then the package with more
/// conflicts so far, then the one with fewer candidates left (a forced
/// choice early prunes the most).
pub type Priority = (u8, u32, Reverse<u32>);

/// How many of the candidates `1..=count` `range` still allows.
pub fn candidates_in_range(count: u32, range: &Ranges<u32>) -> u32 {
    (1..=count).filter(|k| range.contains(k)).count() as u32
}

/// The [`Priority`] of a package in `tier` with `count` candidates, of which
/// `range` still allows some.
pub fn ranked(
    tier: u8,
    stats: &PackageResolutionStatistics,
    count: u32,
    range: &Ranges<u32>,
) -> Priority {
    (
        tier,
        stats.conflict_count(),
        Reverse(candidates_in_range(count, range)),
    )
}

/// A priority by tier alone, for what a rule rather than the candidates
/// places: the root, a package to decide first or last.
pub fn fixed(tier: u8) -> Priority {
    (tier, 0, Reverse(0))
}
