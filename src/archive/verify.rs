//! OpenPGP verification of `InRelease` (and `Release` + `Release.gpg`).
//!
//! Fail-closed: the result holds only the text covered by a good signature
//! from a key in the given keyring. Unsigned input, leading or trailing data,
//! bad signatures, signers outside the keyring, revoked keys and weak digests
//! are all refused.
//!
//! Key expiry is deliberately ignored, as apt does for archives: a suite's
//! freshness is `Valid-Until`'s business, and imgbuild pins indexes by content
//! so that an old, archived suite must stay verifiable after its signing key
//! expired.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{PublicKey, PublicSubkey, Signature, SignatureType};
use pgp::types::KeyDetails;

use super::ArchiveError;

/// A verified Release text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed text only (LF line endings, ending in a newline).
    pub signed_text: String,
    /// Uppercase hex fingerprint of the primary key of the signer whose
    /// signature verified (also when a signing subkey made it).
    pub fingerprint: String,
}

/// A key that may have made a data signature.
enum SigningKey {
    Primary(PublicKey),
    Subkey(PublicSubkey),
}

/// One certificate of a keyring, its self-signatures checked only when one
/// of its keys is named as a signature's issuer: a keyring holds ~10 RSA
/// certificates, and checking every binding and revocation up front cost
/// ~8 ms of each `solve --locked`, for keys that signed nothing.
struct Cert {
    key: SignedPublicKey,
    /// Uppercase hex fingerprint of the primary key.
    fingerprint: String,
    /// Whether a revocation signature of the primary key verifies.
    revoked: OnceLock<bool>,
    /// Per subkey: bound for signing and not revoked.
    subkey_ok: Vec<OnceLock<bool>>,
}

impl Cert {
    fn new(key: SignedPublicKey) -> Cert {
        Cert {
            fingerprint: format!("{:X}", key.primary_key.fingerprint()),
            revoked: OnceLock::new(),
            subkey_ok: key.public_subkeys.iter().map(|_| OnceLock::new()).collect(),
            key,
        }
    }

    fn revoked(&self) -> bool {
        *self.revoked.get_or_init(|| {
            let primary = &self.key.primary_key;
            self.key
                .details
                .revocation_signatures
                .iter()
                .any(|s| s.verify_key(primary).is_ok())
        })
    }

    /// The keys that may sign, as `(key, subkey number)`; no check made.
    fn candidates(&self) -> impl Iterator<Item = (SigningKey, Option<usize>)> + '_ {
        let subs = self.key.public_subkeys.iter().enumerate();
        let subs = subs.map(|(i, s)| (SigningKey::Subkey(s.key.clone()), Some(i)));
        subs.chain(std::iter::once((
            SigningKey::Primary(self.key.primary_key.clone()),
            None,
        )))
    }

    /// Whether the key (primary, or subkey number `sub`) may sign: the
    /// primary is not revoked and, for a subkey, it is bound for signing and
    /// not revoked itself.
    fn may_sign(&self, sub: Option<usize>) -> bool {
        if self.revoked() {
            return false;
        }
        let Some(i) = sub else { return true };
        *self.subkey_ok[i].get_or_init(|| {
            let s = &self.key.public_subkeys[i];
            subkey_can_sign(&self.key.primary_key, &s.key, &s.signatures)
        })
    }
}

/// A parsed keyring: the primary keys and bound signing subkeys that may sign.
pub struct Keyring {
    path: PathBuf,
    /// sha256 of the keyring bytes (identifies it in the verification cache).
    sha256: String,
    certs: Vec<Cert>,
    /// (signing key, its certificate, subkey number), in keyring order.
    keys: Vec<(SigningKey, usize, Option<usize>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fprs: Vec<&str> = self.certs.iter().map(|c| c.fingerprint.as_str()).collect();
        f.debug_struct("Keyring")
            .field("path", &self.path)
            .field("signers", &fprs)
            .finish()
    }
}

impl Keyring {
    /// Reads a keyring file: binary (concatenated transferable public keys,
    /// like Debian's `debian-archive-keyring.gpg`) or ASCII-armored (one or
    /// more `PUBLIC KEY BLOCK`s).
    pub fn load(path: &Path) -> Result<Keyring, ArchiveError> {
        // Bounded: a keyring named `/dev/zero` must fail at once.
        let data = crate::core::bounded::read_regular(path, crate::core::bounded::MAX_KEYRING)
            .map_err(|error| ArchiveError::Read {
                path: path.to_path_buf(),
                error,
            })?;
        Self::from_bytes(&data, path)
    }

    /// Parses keyring bytes; `path` names them in errors.
    pub fn from_bytes(data: &[u8], path: &Path) -> Result<Keyring, ArchiveError> {
        let bad = |reason: String| ArchiveError::Keyring {
            path: path.to_path_buf(),
            reason,
        };
        let mut certs = Vec::new();
        let text = std::str::from_utf8(data).ok();
        if let Some(text) = text.filter(|t| t.trim_start().starts_with("-----BEGIN")) {
            const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
            // The armor reader stops after one block; split so that files
            // made by concatenating exported keys work.
            for (start, _) in text.match_indices(BEGIN) {
                let (keys, _) = SignedPublicKey::from_armor_many(Cursor::new(&text[start..]))
                    .map_err(|e| bad(format!("bad armored key: {}", short(&e))))?;
                for key in keys {
                    certs.push(key.map_err(|e| bad(format!("bad key: {}", short(&e))))?);
                }
            }
        } else if data.first().is_none_or(|b| b & 0x80 == 0) {
            // Every OpenPGP packet header has its top bit set: this is not
            // key data at all (pgp's own message would be about packet bits).
            return Err(bad(
                "not an OpenPGP keyring: neither binary key data (as made by `gpg --export`) \
                 nor an ASCII-armored `PUBLIC KEY BLOCK`"
                    .into(),
            ));
        } else {
            let keys = SignedPublicKey::from_bytes_many(Cursor::new(data))
                .map_err(|e| bad(format!("bad key data: {}", short(&e))))?;
            for key in keys {
                certs.push(key.map_err(|e| bad(format!("bad key: {}", short(&e))))?);
            }
        }
        let certs: Vec<Cert> = certs.into_iter().map(Cert::new).collect();
        // Revocations are checked here only as far as it takes to find one
        // certificate that stands (usually the first, which has none).
        if certs.iter().all(Cert::revoked) {
            return Err(bad("contains no usable (unrevoked) public key".into()));
        }
        let keys = certs
            .iter()
            .enumerate()
            .flat_map(|(c, cert)| cert.candidates().map(move |(k, sub)| (k, c, sub)))
            .collect();
        Ok(Keyring {
            sha256: crate::core::digest::sha256_hex(data),
            path: path.to_path_buf(),
            certs,
            keys,
        })
    }

    /// The file this keyring was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// sha256 of the keyring's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Verifies a clear-signed `InRelease`; `what` (file or URL) names it in errors.
    pub fn verify_inrelease(&self, data: &[u8], what: &str) -> Result<Verified, ArchiveError> {
        let bad = |reason: String| ArchiveError::Signature {
            what: what.to_string(),
            reason,
        };
        let text = std::str::from_utf8(data).map_err(|e| bad(format!("not UTF-8 text: {e}")))?;
        // Anything before the armor header would be unsigned text that a lax
        // parser might read as part of the Release.
        if !text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
            return Err(bad(
                "not a clear-signed message (unsigned, or data before the signed part)".into(),
            ));
        }
        // The parser refuses leading and trailing data and unknown armor
        // headers. Trailing whitespace is trimmed first because pgp 0.21's
        // trailing-data check misreads short whitespace tails as data.
        let trimmed = format!("{}\n", text.trim_end());
        // `from_string`, with the body's lines handed over in one piece (see
        // `WholeBody`): pgp 0.21 searches its whole body so far after every
        // line, which made a 150 kB InRelease cost ~8 ms.
        let (msg, _) = CleartextSignedMessage::from_armor_buf(
            WholeBody(trimmed.as_bytes()),
            pgp::armor::DearmorOptions::default(),
        )
        .map_err(|e| bad(format!("malformed clear-signed message: {}", short(&e))))?;
        let normalized = msg.signed_text();
        let fingerprint = self
            .first_good(
                msg.signatures(),
                normalized.as_bytes(),
                &[SignatureType::Text],
            )
            .map_err(bad)?;
        let mut signed_text = normalized.replace("\r\n", "\n");
        if !signed_text.ends_with('\n') {
            signed_text.push('\n');
        }
        Ok(Verified {
            signed_text,
            fingerprint,
        })
    }

    /// Verifies a detached signature (`Release.gpg`, armored or binary) over
    /// `release`; `what` names it in errors.
    pub fn verify_detached(
        &self,
        release: &[u8],
        signature: &[u8],
        what: &str,
    ) -> Result<Verified, ArchiveError> {
        let bad = |reason: String| ArchiveError::Signature {
            what: what.to_string(),
            reason,
        };
        let (sigs, _) = DetachedSignature::from_reader_many(Cursor::new(signature))
            .map_err(|e| bad(format!("malformed signature file: {}", short(&e))))?;
        let sigs: Vec<Signature> = sigs
            .map(|s| s.map(|s| s.signature))
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("malformed signature file: {}", short(&e))))?;
        let fingerprint = self
            .first_good(
                &sigs,
                release,
                &[SignatureType::Binary, SignatureType::Text],
            )
            .map_err(bad)?;
        let signed_text = String::from_utf8(release.to_vec())
            .map_err(|e| bad(format!("signed data is not UTF-8: {e}")))?;
        Ok(Verified {
            signed_text,
            fingerprint,
        })
    }

    /// The primary fingerprint of the first signature that verifies over
    /// `data`, or why none did.
    fn first_good(
        &self,
        sigs: &[Signature],
        data: &[u8],
        types: &[SignatureType],
    ) -> Result<String, String> {
        if sigs.is_empty() {
            return Err("no signature".into());
        }
        let mut why = Vec::new();
        for sig in sigs {
            let issuer = issuer(sig);
            if !sig.typ().is_some_and(|t| types.contains(&t)) {
                why.push(format!(
                    "{issuer}: unexpected signature type {:?}",
                    sig.typ()
                ));
                continue;
            }
            // apt refuses these digests too: collisions make them forgeable.
            if matches!(
                sig.hash_alg(),
                None | Some(HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160)
            ) {
                why.push(format!("{issuer}: weak digest {:?}", sig.hash_alg()));
                continue;
            }
            // Only a key named as the issuer is tried (pgp's rule: any key
            // when the signature names none), its certificate's
            // self-signatures checked first, once per keyring.
            let anonymous = sig.issuer_fingerprint().is_empty() && sig.issuer_key_id().is_empty();
            let mut known = false;
            for (key, c, sub) in &self.keys {
                let named = match key {
                    SigningKey::Primary(k) => is_issuer(sig, k),
                    SigningKey::Subkey(k) => is_issuer(sig, k),
                };
                let cert = &self.certs[*c];
                if !(named || anonymous) || !cert.may_sign(*sub) {
                    continue;
                }
                known |= named;
                let result = match key {
                    SigningKey::Primary(k) => sig.verify(k, data),
                    SigningKey::Subkey(k) => sig.verify(k, data),
                };
                if result.is_ok() {
                    return Ok(cert.fingerprint.clone());
                }
            }
            why.push(if known {
                format!("{issuer}: BAD signature")
            } else {
                format!("{issuer}: signer not in keyring {}", self.path.display())
            });
        }
        Err(why.join("; "))
    }
}

/// Verifies a clear-signed `InRelease` against the keys in `keyring`.
pub fn verify_inrelease(data: &[u8], keyring: &Path) -> Result<Verified, ArchiveError> {
    Keyring::load(keyring)?.verify_inrelease(data, "InRelease")
}

/// Verifies `Release` against its detached signature `Release.gpg`.
pub fn verify_detached(
    release: &[u8],
    signature: &[u8],
    keyring: &Path,
) -> Result<Verified, ArchiveError> {
    Keyring::load(keyring)?.verify_detached(release, signature, "Release.gpg")
}

/// A reader whose `read_line` reads every line up to and including the next
/// one that starts with `-----` (or the end). pgp reads a clear-signed body
/// line by line and, after each, looks for the last `\n-----` in all it has
/// read; handed the lines up to the first such line at once, it finds that
/// same line and splits there, so the result is the same, in linear time.
/// Everything else (the armor headers, the signature) is read through
/// `fill_buf`, unchanged.
struct WholeBody<R>(R);

impl<R: std::io::Read> std::io::Read for WholeBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for WholeBody<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.0.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.0.consume(n)
    }

    fn read_line(&mut self, buf: &mut String) -> std::io::Result<usize> {
        let mut total = 0;
        // Each round reads one line: bounded by the input.
        loop {
            let start = buf.len();
            let n = self.0.read_line(buf)?;
            total += n;
            if n == 0 || buf[start..].starts_with("-----") {
                return Ok(total);
            }
        }
    }
}

/// Whether a subkey is bound to `primary` for signing and not revoked.
fn subkey_can_sign(primary: &PublicKey, sub: &PublicSubkey, sigs: &[Signature]) -> bool {
    let valid = |s: &&Signature| s.verify_subkey_binding(primary, sub).is_ok();
    let revoked = sigs
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
        .any(|s| valid(&s));
    // A signing subkey needs the subkey's back-signature too; without it,
    // anyone could bind someone else's signing key to their certificate.
    let bound = sigs
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .filter(valid)
        .any(|s| {
            s.key_flags().sign()
                && s.embedded_signature()
                    .is_some_and(|b| b.verify_primary_key_binding(sub, primary).is_ok())
        });
    bound && !revoked
}

fn is_issuer(sig: &Signature, key: &impl KeyDetails) -> bool {
    sig.issuer_fingerprint()
        .iter()
        .any(|f| **f == key.fingerprint())
        || sig
            .issuer_key_id()
            .iter()
            .any(|k| **k == key.legacy_key_id())
}

/// An error message cut to a readable length: pgp's parser errors can embed
/// the whole unparsed input as a byte list.
fn short(e: &impl std::fmt::Display) -> String {
    let s = e.to_string();
    match s.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// The issuer of a signature, for messages.
fn issuer(sig: &Signature) -> String {
    if let Some(f) = sig.issuer_fingerprint().first() {
        format!("signature by {f:X}")
    } else if let Some(k) = sig.issuer_key_id().first() {
        format!("signature by key id {}", hex::encode_upper(k))
    } else {
        "signature without issuer".into()
    }
}

#[cfg(test)]
mod tests;
