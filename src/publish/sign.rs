//! Signing keys, DSSE envelopes and cosign-style image signatures.
//!
//! Keys are the user's PEM files: a PKCS#8 `PRIVATE KEY` (ECDSA P-256 or
//! Ed25519, as `openssl genpkey` writes them) or a SEC1 `EC PRIVATE KEY`;
//! public keys are SPKI `PUBLIC KEY` PEM (a private key is accepted too).
//! Signatures are what cosign and securesystemslib verify: ECDSA P-256 over
//! SHA-256, DER-encoded; Ed25519 raw (64 bytes). A key id is the lower-case
//! hex sha256 of the public key's SPKI DER.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a key could not be used or a signature does not verify.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A signature that does not verify.
    #[error("{what}: {reason}")]
    Bad {
        /// What was being verified.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

/// A private signing key.
pub enum SigningKey {
    /// ECDSA P-256.
    P256(p256::ecdsa::SigningKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
}

/// A public verification key.
#[derive(Debug, Clone)]
pub enum VerifyingKey {
    /// ECDSA P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

fn read_pem(path: &Path) -> Result<String, SignError> {
    let bytes = std::fs::read(path).map_err(|e| SignError::Key {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if bytes.len() > 64 << 10 {
        return Err(SignError::Key {
            path: path.to_path_buf(),
            reason: "larger than 64 KiB: not a PEM key".into(),
        });
    }
    String::from_utf8(bytes).map_err(|_| SignError::Key {
        path: path.to_path_buf(),
        reason: "not a PEM text file".into(),
    })
}

impl SigningKey {
    /// Reads a PEM private key.
    pub fn from_pem_file(path: &Path) -> Result<SigningKey, SignError> {
        let pem = read_pem(path)?;
        SigningKey::from_pem(&pem).map_err(|reason| SignError::Key {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a PEM private key (PKCS#8 P-256 or Ed25519, or SEC1 P-256).
    pub fn from_pem(pem: &str) -> Result<SigningKey, String> {
        if pem.contains("ENCRYPTED") {
            return Err("encrypted private keys are not supported: decrypt it (`openssl pkey -in KEY -out PLAIN`)".into());
        }
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(SigningKey::P256(k));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(SigningKey::Ed25519(k));
        }
        if let Ok(k) = p256::SecretKey::from_sec1_pem(pem) {
            return Ok(SigningKey::P256(k.into()));
        }
        Err("not an ECDSA P-256 or Ed25519 private key in PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`)".into())
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::P256(k) => VerifyingKey::P256(*k.verifying_key()),
            SigningKey::Ed25519(k) => VerifyingKey::Ed25519(k.verifying_key()),
        }
    }

    /// Signs `msg` (deterministic for both algorithms: RFC 6979 nonces for
    /// ECDSA), so the same statement gives the same signature.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_der().as_bytes().to_vec()
            }
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(msg).to_bytes().to_vec()
            }
        }
    }
}

impl VerifyingKey {
    /// Reads a PEM public key (or derives it from a private key).
    pub fn from_pem_file(path: &Path) -> Result<VerifyingKey, SignError> {
        let pem = read_pem(path)?;
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem) {
            return Ok(VerifyingKey::P256(k));
        }
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem) {
            return Ok(VerifyingKey::Ed25519(k));
        }
        SigningKey::from_pem(&pem)
            .map(|k| k.verifying_key())
            .map_err(|_| SignError::Key {
                path: path.to_path_buf(),
                reason:
                    "not an ECDSA P-256 or Ed25519 key in PEM (SPKI `PUBLIC KEY`, or a private key)"
                        .into(),
            })
    }

    /// The SPKI DER encoding.
    pub fn spki_der(&self) -> Vec<u8> {
        match self {
            VerifyingKey::P256(k) => k.to_public_key_der().expect("P-256 key encodes").into_vec(),
            VerifyingKey::Ed25519(k) => k
                .to_public_key_der()
                .expect("Ed25519 key encodes")
                .into_vec(),
        }
    }

    /// The SPKI PEM text.
    pub fn to_pem(&self) -> String {
        let der = self.spki_der();
        let b64 = B64.encode(der);
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }

    /// Lower-case hex sha256 of the SPKI DER.
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.spki_der()))
    }

    /// `ecdsa-sha2-nistp256` or `ed25519` (securesystemslib's names).
    pub fn scheme(&self) -> &'static str {
        match self {
            VerifyingKey::P256(_) => "ecdsa-sha2-nistp256",
            VerifyingKey::Ed25519(_) => "ed25519",
        }
    }

    /// Whether `sig` is a signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            VerifyingKey::P256(k) => {
                p256::ecdsa::Signature::from_der(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            VerifyingKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_strict(msg, &s).is_ok()),
        }
    }
}

/// `payloadType` of an in-toto statement in DSSE.
pub const IN_TOTO_PAYLOAD: &str = "application/vnd.in-toto+json";

/// A DSSE envelope (<https://github.com/secure-systems-lab/dsse>).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 (standard, padded) of the payload.
    pub payload: String,
    /// The payload's type.
    pub payload_type: String,
    /// The signatures over [`pae`]`(payloadType, payload)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// [`VerifyingKey::key_id`] of the signer.
    pub keyid: String,
    /// Base64 of the signature.
    pub sig: String,
}

/// DSSE's pre-authentication encoding: `DSSEv1 LEN(type) type LEN(body) body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// An envelope of `payload`, signed by `key` when given.
    pub fn sign(payload_type: &str, payload: &[u8], key: Option<&SigningKey>) -> Envelope {
        let signatures = key
            .map(|k| {
                vec![EnvelopeSignature {
                    keyid: k.verifying_key().key_id(),
                    sig: B64.encode(k.sign(&pae(payload_type, payload))),
                }]
            })
            .unwrap_or_default();
        Envelope {
            payload: B64.encode(payload),
            payload_type: payload_type.to_string(),
            signatures,
        }
    }

    /// The payload if some signature verifies with `key`.
    pub fn verify(&self, key: &VerifyingKey, what: &str) -> Result<Vec<u8>, SignError> {
        let bad = |reason: String| SignError::Bad {
            what: what.to_string(),
            reason,
        };
        let payload = B64
            .decode(&self.payload)
            .map_err(|e| bad(format!("payload is not base64: {e}")))?;
        if self.signatures.is_empty() {
            return Err(bad("the envelope is not signed".into()));
        }
        let msg = pae(&self.payload_type, &payload);
        let ok = self
            .signatures
            .iter()
            .any(|s| B64.decode(&s.sig).is_ok_and(|sig| key.verify(&msg, &sig)));
        if ok {
            Ok(payload)
        } else {
            Err(bad(format!(
                "no signature verifies with the given key (key id {})",
                key.key_id()
            )))
        }
    }
}

/// The cosign "simple signing" payload for an image manifest digest.
pub fn simple_signing_payload(repository: &str, manifest_digest: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Payload<'a> {
        critical: Critical<'a>,
        optional: Optional,
    }
    #[derive(Serialize)]
    struct Critical<'a> {
        identity: Identity<'a>,
        image: Image<'a>,
        #[serde(rename = "type")]
        kind: &'static str,
    }
    #[derive(Serialize)]
    struct Identity<'a> {
        #[serde(rename = "docker-reference")]
        docker_reference: &'a str,
    }
    #[derive(Serialize)]
    struct Image<'a> {
        #[serde(rename = "docker-manifest-digest")]
        docker_manifest_digest: &'a str,
    }
    #[derive(Serialize)]
    struct Optional {
        creator: &'static str,
    }
    serde_json::to_vec(&Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: repository,
            },
            image: Image {
                docker_manifest_digest: manifest_digest,
            },
            kind: "cosign container image signature",
        },
        optional: Optional {
            creator: concat!("imgbuild ", env!("CARGO_PKG_VERSION")),
        },
    })
    .expect("payload serialises")
}

/// The `docker-manifest-digest` a simple-signing payload vouches for.
pub fn simple_signing_digest(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.pointer("/critical/image/docker-manifest-digest")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn sign_and_verify_both_algorithms() {
        let p = SigningKey::P256(p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap());
        let e = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]));
        for k in [&p, &e] {
            let env = Envelope::sign(IN_TOTO_PAYLOAD, b"{}", Some(k));
            assert_eq!(
                env,
                Envelope::sign(IN_TOTO_PAYLOAD, b"{}", Some(k)),
                "deterministic"
            );
            assert_eq!(env.verify(&k.verifying_key(), "t").unwrap(), b"{}");
            let mut tampered = env.clone();
            tampered.payload = B64.encode(b"{\"x\":1}");
            assert!(tampered.verify(&k.verifying_key(), "t").is_err());
        }
        let env = Envelope::sign(IN_TOTO_PAYLOAD, b"{}", Some(&p));
        let err = env.verify(&e.verifying_key(), "provenance").unwrap_err();
        assert!(err.to_string().contains("no signature verifies"), "{err}");
        assert!(
            Envelope::sign(IN_TOTO_PAYLOAD, b"{}", None)
                .verify(&p.verifying_key(), "t")
                .is_err()
        );
    }

    #[test]
    fn pem_round_trip_and_key_id() {
        let k = SigningKey::P256(p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.pub");
        std::fs::write(&f, k.verifying_key().to_pem()).unwrap();
        let v = VerifyingKey::from_pem_file(&f).unwrap();
        assert_eq!(v.key_id(), k.verifying_key().key_id());
        std::fs::write(&f, "junk").unwrap();
        assert!(
            VerifyingKey::from_pem_file(&f)
                .unwrap_err()
                .to_string()
                .contains("k.pub")
        );
    }

    #[test]
    fn simple_signing() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let p = simple_signing_payload("reg.test/x", &d);
        assert_eq!(simple_signing_digest(&p).as_deref(), Some(d.as_str()));
    }
}
