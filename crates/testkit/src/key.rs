//! Throwaway OpenPGP signing keys and Debian-style signatures.
//!
//! Keys are ed25519 (v4), generated from a fixed seed and a fixed creation
//! time, so the fingerprint is the same on every run. The primary signs, or,
//! as Debian's archive keys do, only certifies a separate signing subkey
//! ([`TestKey::seeded`] with `subkey`). Signatures carry a caller-chosen creation time, and ed25519 is
//! deterministic, so the same text signed at the same time gives the same bytes.

use std::path::Path;
use std::sync::OnceLock;

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, DetachedSignature, KeyType, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{PacketTrait, SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, Password, SigningKey, Timestamp};
use rand::SeedableRng;

/// Creation time of every test key: 2020-01-01T00:00:00Z, well before any
/// signature date a test would use (gpgv rejects signatures older than the key).
pub const KEY_CREATED: u32 = 1_577_836_800;

/// A test signing key: secret part kept in memory, public part exportable.
pub struct TestKey {
    secret: SignedSecretKey,
    public: SignedPublicKey,
    /// Binary (non-armored) transferable public key: a keyring file for gpgv/apt.
    pub keyring: Vec<u8>,
    /// ASCII-armored public key (`-----BEGIN PGP PUBLIC KEY BLOCK-----`).
    pub armored: String,
    /// Upper-case hex v4 fingerprint (40 characters).
    pub fingerprint: String,
    /// The User ID.
    pub uid: String,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the public identity: the secret material is noise in test output.
        f.debug_struct("TestKey")
            .field("fingerprint", &self.fingerprint)
            .field("uid", &self.uid)
            .finish()
    }
}

impl TestKey {
    /// The key every fixture archive is signed with by default.
    pub fn primary() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(|| TestKey::generate(1, "imgbuild test archive <test@imgbuild.invalid>"))
    }

    /// A different key, for "signed by the wrong key" tests.
    pub fn wrong() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(|| TestKey::generate(2, "imgbuild wrong key <wrong@imgbuild.invalid>"))
    }

    /// Generates a key from `seed`; prefer [`TestKey::primary`] / [`TestKey::wrong`].
    pub fn generate(seed: u64, uid: &str) -> TestKey {
        TestKey::make(seed, uid, false)
    }

    /// A key of its own per `seed` (User ID `Test Archive SEED`), for tests that
    /// need several. With `subkey`, the primary only certifies and a separate
    /// subkey signs (the binding signature's time is not pinned: only the
    /// fingerprint is the same on every run, not the keyring bytes).
    pub fn seeded(seed: u64, subkey: bool) -> TestKey {
        TestKey::make(
            seed,
            &format!("Test Archive {seed} <test@127.0.0.1>"),
            subkey,
        )
    }

    fn make(seed: u64, uid: &str, subkey: bool) -> TestKey {
        let rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(!subkey)
            .created_at(Timestamp::from_secs(KEY_CREATED))
            .primary_user_id(uid.to_string());
        if subkey {
            params.subkeys(vec![
                SubkeyParamsBuilder::default()
                    .key_type(KeyType::Ed25519Legacy)
                    .can_sign(true)
                    .created_at(Timestamp::from_secs(KEY_CREATED))
                    .build()
                    .expect("test subkey parameters"),
            ]);
        }
        let params = params.build().expect("test key parameters");
        let mut secret = params.generate(rng).expect("generate test key");
        pin_self_signatures(&mut secret);
        let public = SignedPublicKey::from(secret.clone());
        let keyring = public.to_bytes().expect("serialize public key");
        let armored = public
            .to_armored_string(ArmorOptions::default())
            .expect("armor public key");
        let fingerprint = hex::encode_upper(secret.fingerprint().as_bytes());
        TestKey {
            secret,
            public,
            keyring,
            armored,
            fingerprint,
            uid: uid.to_string(),
        }
    }

    /// The public key, for verifying with the pgp crate directly.
    pub fn public_key(&self) -> &SignedPublicKey {
        &self.public
    }

    /// The secret key, for signatures the helpers here do not make.
    pub fn secret(&self) -> &SignedSecretKey {
        &self.secret
    }

    /// The key that signs: the signing subkey if there is one, else the primary.
    // Boxed: pgp implements `SigningKey` for `Box<&dyn SigningKey>`, not for
    // `&dyn SigningKey`, and its signing functions take `&impl SigningKey`.
    #[allow(clippy::redundant_allocation)]
    fn signer(&self) -> Box<&dyn SigningKey> {
        match self.secret.secret_subkeys.first() {
            Some(sub) => Box::new(&sub.key),
            None => Box::new(&*self.secret),
        }
    }

    /// Writes the binary keyring to `path` (creating parent directories).
    pub fn write_keyring(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, &self.keyring)
    }

    fn config(&self, typ: SignatureType, created: u32) -> SignatureConfig {
        let signer = self.signer();
        let mut config = SignatureConfig::v4(typ, signer.algorithm(), HashAlgorithm::Sha256);
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
                created,
            )))
            .expect("creation time subpacket"),
            Subpacket::regular(SubpacketData::IssuerFingerprint(signer.fingerprint()))
                .expect("issuer fingerprint subpacket"),
        ];
        config.unhashed_subpackets = vec![
            Subpacket::regular(SubpacketData::IssuerKeyId(signer.legacy_key_id()))
                .expect("issuer key id subpacket"),
        ];
        config
    }

    /// Clear-signs `text` (the InRelease form of a Release file), signature made at `created`
    /// (unix seconds).
    pub fn clearsign(&self, text: &str, created: u32) -> String {
        let config = self.config(SignatureType::Text, created);
        let msg = CleartextSignedMessage::new(text, config, &self.signer(), &Password::empty())
            .expect("clear-sign");
        msg.to_armored_string(ArmorOptions::default())
            .expect("armor clear-signed message")
    }

    /// Armored detached binary signature over `data` (the Release.gpg form).
    pub fn detached_sign(&self, data: &[u8], created: u32) -> String {
        let config = self.config(SignatureType::Binary, created);
        let sig = config
            .sign(&self.signer(), &Password::empty(), data)
            .expect("detached signature");
        DetachedSignature::new(sig)
            .to_armored_string(ArmorOptions::default())
            .expect("armor detached signature")
    }
}

/// Re-makes the User ID self-signatures with creation time [`KEY_CREATED`]: pgp stamps
/// them with the current time, which would make the keyring bytes (and so every recipe
/// hash that covers the keyring's sha256) differ between test runs.
fn pin_self_signatures(secret: &mut SignedSecretKey) {
    let public = secret.primary_key.public_key().clone();
    let fixed = Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
        KEY_CREATED,
    )))
    .expect("creation time subpacket");
    for user in &mut secret.details.users {
        let mut signatures = Vec::new();
        for sig in &user.signatures {
            let mut config = sig.config().expect("v4 self-signature").clone();
            for sp in &mut config.hashed_subpackets {
                if matches!(sp.data, SubpacketData::SignatureCreationTime(_)) {
                    *sp = fixed.clone();
                }
            }
            let sig = config
                .sign_certification(
                    &secret.primary_key,
                    &public,
                    &Password::empty(),
                    user.id.tag(),
                    &user.id,
                )
                .expect("re-sign user id");
            signatures.push(sig);
        }
        user.signatures = signatures;
    }
}
