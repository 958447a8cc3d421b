//! Hashing a lock's cached index texts ahead of the audit's other steps.

use std::collections::HashMap;

use crate::archive::ArchiveError;
use crate::archive::cache::{Cache, HashedPlain};

/// The cached decompressed texts of a lock's indexes, hashed on threads of
/// their own from the start of the audit. A result is only used once the
/// signed Release says what it must be ([`Cache::accept_plain`]); one that
/// is never asked for (the suite moved on) is simply dropped.
pub(super) struct Prehash {
    jobs: std::sync::Mutex<HashMap<String, PrehashJob>>,
}

type PrehashJob = std::thread::JoinHandle<Result<Option<HashedPlain>, ArchiveError>>;

impl Prehash {
    /// Starts hashing the cached text of each compressed index `sha256`.
    pub(super) fn start(cache: &Cache, sha256s: impl Iterator<Item = String>) -> Prehash {
        let mut jobs = HashMap::new();
        for sha in sha256s {
            // The lock is input: only a well-formed hash names a cache file.
            if !crate::core::digest::valid_sha256(&sha) || jobs.contains_key(&sha) {
                continue;
            }
            let (cache, key) = (cache.clone(), sha.clone());
            if let Ok(job) = std::thread::Builder::new()
                .name("audit-hash".into())
                .spawn(move || cache.hash_plain(&key))
            {
                jobs.insert(sha, job);
            }
        }
        Prehash {
            jobs: std::sync::Mutex::new(jobs),
        }
    }

    /// The hashed text of index `sha256`, if it was started (waits for it).
    pub(super) fn take(&self, sha256: &str) -> Option<Result<Option<HashedPlain>, ArchiveError>> {
        let job = self.jobs.lock().ok()?.remove(sha256)?;
        Some(
            job.join()
                .unwrap_or_else(|_| Err(ArchiveError::Setup("hashing thread panicked".into()))),
        )
    }
}
