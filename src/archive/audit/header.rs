//! The lock's header for a source (signer, date, indexes) against the
//! verified Release, and how a snapshot search is named in messages.

use super::super::release::Release;
use crate::lock::LockedSource;

/// "snapshot TS", or "the times after Date" for a message.
pub(super) fn snapshot_time(locked: &LockedSource) -> String {
    match &locked.snapshot {
        Some(ts) => ts.to_string(),
        None => format!("the times after its Date ({})", locked.date),
    }
}

/// The lock's header for a source against its verified Release.
pub(super) fn check_header(
    locked: &LockedSource,
    signer: &str,
    release: &Release,
) -> Result<(), String> {
    if !locked.signed_by.eq_ignore_ascii_case(signer) {
        return Err(format!(
            "the lock says signed-by {}, but the InRelease is signed by {signer}",
            locked.signed_by
        ));
    }
    if locked.date != release.date {
        return Err(format!(
            "the lock says date `{}`, but the signed InRelease says `{}`",
            locked.date, release.date
        ));
    }
    for ix in &locked.indexes {
        match release.sha256.get(&ix.path) {
            Some(h) if h.sha256.eq_ignore_ascii_case(&ix.sha256) && h.size == ix.size => {}
            Some(h) => {
                return Err(format!(
                    "index {}: the lock says {} bytes sha256 {}, the signed Release {} bytes sha256 {}",
                    ix.path, ix.size, ix.sha256, h.size, h.sha256
                ));
            }
            None => {
                return Err(format!(
                    "index {} is not listed in the signed Release",
                    ix.path
                ));
            }
        }
    }
    Ok(())
}
