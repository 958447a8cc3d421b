use super::*;
use testkit::TestKey;
use testkit::index::SIGNED_AT;

const RELEASE: &str = "Origin: Test\nDate: Sat, 01 Jan 2000 00:00:00 UTC\n\
    SHA256:\n 0000000000000000000000000000000000000000000000000000000000000000 0 x\n\
    - a line starting with a dash\n";

fn keyring(bytes: &[u8]) -> Keyring {
    Keyring::from_bytes(bytes, Path::new("test.gpg")).unwrap()
}

fn fpr(key: &TestKey) -> String {
    key.fingerprint.clone()
}

#[test]
fn good_signature_returns_signed_text_and_primary_fingerprint() {
    for subkey in [false, true] {
        let key = TestKey::seeded(1, subkey);
        let signed = key.clearsign(RELEASE, SIGNED_AT);
        for ring in [key.keyring.clone(), key.armored.clone().into_bytes()] {
            let v = keyring(&ring)
                .verify_inrelease(signed.as_bytes(), "t")
                .unwrap();
            assert_eq!(v.signed_text, RELEASE);
            assert_eq!(v.fingerprint, fpr(&key));
            assert_eq!(v.fingerprint.len(), 40);
            assert!(v.fingerprint.bytes().all(|b| !b.is_ascii_lowercase()));
        }
    }
}

#[test]
fn any_key_of_a_multi_key_keyring_verifies() {
    let (a, b) = (TestKey::seeded(2, false), TestKey::seeded(3, true));
    let signed = b.clearsign(RELEASE, SIGNED_AT);
    let mut binary = a.keyring.clone();
    binary.extend(b.keyring.clone());
    let armored = format!("{}\n{}", a.armored.clone(), b.armored.clone());
    for ring in [binary, armored.into_bytes()] {
        let v = keyring(&ring)
            .verify_inrelease(signed.as_bytes(), "t")
            .unwrap();
        assert_eq!(v.fingerprint, fpr(&b));
    }
}

#[test]
fn tampered_text_is_refused() {
    let key = TestKey::seeded(4, true);
    let signed = key
        .clearsign(RELEASE, SIGNED_AT)
        .replace("Origin: Test", "Origin: Evil");
    let e = keyring(&key.keyring.clone())
        .verify_inrelease(signed.as_bytes(), "dists/x/InRelease")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dists/x/InRelease") && e.contains("BAD signature"),
        "{e}"
    );
}

#[test]
fn unknown_signer_is_refused() {
    let (good, other) = (TestKey::seeded(5, false), TestKey::seeded(6, false));
    let signed = other.clearsign(RELEASE, SIGNED_AT);
    let e = keyring(&good.keyring.clone())
        .verify_inrelease(signed.as_bytes(), "t")
        .unwrap_err()
        .to_string();
    assert!(e.contains("signer not in keyring test.gpg"), "{e}");
    assert!(e.contains(&fpr(&other)), "{e}");
}

#[test]
fn unsigned_and_extra_data_are_refused() {
    let key = TestKey::seeded(7, false);
    let ring = keyring(&key.keyring.clone());
    let signed = key.clearsign(RELEASE, SIGNED_AT);
    let cases = [
        RELEASE.to_string(),
        format!("Origin: Evil\n{signed}"),
        format!("\n{signed}"),
        format!("{signed}\nOrigin: Evil\n"),
        format!("{signed}{signed}"),
        signed.replace("Hash: SHA256", "Hash: SHA256\nComment: injected"),
        signed
            .split("-----BEGIN PGP SIGNATURE-----")
            .next()
            .unwrap()
            .to_string(),
    ];
    for (i, case) in cases.iter().enumerate() {
        let r = ring.verify_inrelease(case.as_bytes(), "t");
        assert!(r.is_err(), "case {i} accepted:\n{case}");
    }
    // Trailing whitespace after the signature is harmless and accepted.
    ring.verify_inrelease(format!("{signed}\n\n").as_bytes(), "t")
        .unwrap();
}

#[test]
fn detached_signatures() {
    use pgp::composed::{ArmorOptions, DetachedSignature};
    use pgp::types::Password;
    use rand::SeedableRng;
    let key = TestKey::seeded(8, true);
    let sig = DetachedSignature::sign_binary_data(
        rand::rngs::StdRng::seed_from_u64(1),
        &key.secret().secret_subkeys[0].key,
        &Password::empty(),
        HashAlgorithm::Sha256,
        RELEASE.as_bytes(),
    )
    .unwrap();
    let armored = sig.to_armored_bytes(ArmorOptions::default()).unwrap();
    let ring = keyring(&key.keyring.clone());
    let v = ring
        .verify_detached(RELEASE.as_bytes(), &armored, "t")
        .unwrap();
    assert_eq!(
        (v.signed_text.as_str(), v.fingerprint),
        (RELEASE, fpr(&key))
    );
    let tampered = RELEASE.replace("Test", "Evil");
    assert!(
        ring.verify_detached(tampered.as_bytes(), &armored, "t")
            .is_err()
    );
    let other = keyring(&TestKey::seeded(9, false).keyring);
    assert!(
        other
            .verify_detached(RELEASE.as_bytes(), &armored, "t")
            .is_err()
    );
}

#[test]
fn bad_keyrings_are_refused() {
    for data in [
        &b""[..],
        b"not a key",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n",
    ] {
        let e = Keyring::from_bytes(data, Path::new("k.asc"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("keyring k.asc"), "{e}");
    }
    // Text that is no key at all: the file and a plain message, not pgp's
    // packet-bit diagnostics.
    let e = Keyring::from_bytes(b"unused", Path::new("k.gpg"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("keyring k.gpg: not an OpenPGP keyring"),
        "{e}"
    );
    // A device is refused at once, never read.
    let t = std::time::Instant::now();
    let e = Keyring::load(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("character device"),
        "{e}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
    let e = verify_inrelease(b"x", Path::new("/nonexistent/k.gpg"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/k.gpg"), "{e}");
}

/// Cross-checks a generated signature with GnuPG's `gpgv` (run manually:
/// `cargo test gpgv -- --ignored`).
#[test]
#[ignore = "needs gpgv"]
fn gpgv_accepts_our_fixture_signatures() {
    let dir = tempfile::tempdir().unwrap();
    for subkey in [false, true] {
        let key = TestKey::seeded(10, subkey);
        let ring = dir.path().join("k.gpg");
        let file = dir.path().join("InRelease");
        std::fs::write(&ring, key.keyring.clone()).unwrap();
        std::fs::write(&file, key.clearsign(RELEASE, SIGNED_AT)).unwrap();
        let out = std::process::Command::new("gpgv")
            .arg("--keyring")
            .arg(&ring)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Verifies a real Debian InRelease saved at `$IMGBUILD_TEST_INRELEASE`
/// against the host's Debian keyring.
#[test]
#[ignore = "needs a downloaded InRelease and debian-archive-keyring"]
fn verifies_a_saved_debian_inrelease() {
    let path = std::env::var("IMGBUILD_TEST_INRELEASE").expect("set IMGBUILD_TEST_INRELEASE");
    let data = std::fs::read(path).unwrap();
    let ring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    let t = std::time::Instant::now();
    let v = verify_inrelease(&data, ring).unwrap();
    eprintln!("verified in {:?} by {}", t.elapsed(), v.fingerprint);
    assert!(v.signed_text.contains("\nSHA256:\n"));
    assert!(!v.signed_text.contains("BEGIN PGP"));
}

/// A Text signature over `normalized` by `key`'s primary, with issuer subpackets.
fn text_signature(key: &TestKey, normalized: &str) -> Signature {
    use pgp::packet::{SignatureConfig, Subpacket, SubpacketData};
    use pgp::types::{Password, Timestamp};
    use rand::SeedableRng;
    let rng = rand::rngs::StdRng::seed_from_u64(3);
    let k = &key.secret().primary_key;
    let mut config = SignatureConfig::from_key(rng, k, SignatureType::Text).unwrap();
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::now())).unwrap(),
        Subpacket::regular(SubpacketData::IssuerFingerprint(k.fingerprint())).unwrap(),
    ];
    config
        .sign(k, &Password::empty(), normalized.as_bytes())
        .unwrap()
}

/// Debian's InRelease carries signatures by several keys, some of which an
/// older keyring lacks: one good signature is enough, in any position.
#[test]
fn one_good_signature_among_unknown_ones_suffices() {
    use pgp::composed::ArmorOptions;
    let (unknown, good) = (TestKey::seeded(11, false), TestKey::seeded(12, false));
    let msg = CleartextSignedMessage::new_many(RELEASE, |normalized| {
        Ok(vec![
            text_signature(&unknown, normalized),
            text_signature(&good, normalized),
        ])
    })
    .unwrap();
    let signed = msg.to_armored_string(ArmorOptions::default()).unwrap();
    let v = keyring(&good.keyring.clone())
        .verify_inrelease(signed.as_bytes(), "t")
        .unwrap();
    assert_eq!(
        (v.signed_text.as_str(), v.fingerprint),
        (RELEASE, fpr(&good))
    );
    let e = keyring(&TestKey::seeded(13, false).keyring)
        .verify_inrelease(signed.as_bytes(), "t")
        .unwrap_err()
        .to_string();
    // Every signature is accounted for in the message.
    assert!(e.contains(&fpr(&unknown)) && e.contains(&fpr(&good)), "{e}");
}

/// `WholeBody` changes how fast pgp reads a clear-signed body, not what it
/// reads: the same message (or the same refusal) as `from_string`, for
/// bodies with dash-escaped lines, CRLF, an empty body, text after the
/// signature and no signature at all.
#[test]
fn reading_the_body_in_one_piece_parses_the_same() {
    let key = TestKey::seeded(1, false);
    let good = key.clearsign(RELEASE, SIGNED_AT);
    let empty = key.clearsign("", SIGNED_AT);
    let crlf = good.replace('\n', "\r\n");
    let trailing = format!("{good}extra\n");
    let cut = good[..good.find("-----BEGIN PGP SIGNATURE").unwrap()].to_string();
    let dash = good.replace("- a line", "- -----BEGIN PGP SIGNATURE-----\n- a line");
    for text in [&good, &empty, &crlf, &trailing, &cut, &dash] {
        let plain = CleartextSignedMessage::from_string(text);
        let whole = CleartextSignedMessage::from_armor_buf(
            WholeBody(text.as_bytes()),
            pgp::armor::DearmorOptions::default(),
        );
        match (plain, whole) {
            (Ok((a, _)), Ok((b, _))) => {
                assert_eq!(a.signed_text(), b.signed_text());
                assert_eq!(a.signatures().len(), b.signatures().len());
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("differ on {text:?}: {:?} / {:?}", a.is_ok(), b.is_ok()),
        }
    }
    assert!(
        keyring(&key.keyring)
            .verify_inrelease(good.as_bytes(), "t")
            .is_ok()
    );
}

/// `cert` as keyring bytes.
fn ring_bytes(cert: &SignedPublicKey) -> Vec<u8> {
    use pgp::ser::Serialize;
    cert.to_bytes().unwrap()
}

/// A key revocation of `key`'s primary, made by itself.
fn revocation(key: &TestKey) -> Signature {
    use pgp::packet::{SignatureConfig, Subpacket, SubpacketData};
    use pgp::types::{Password, Timestamp};
    let k = &key.secret().primary_key;
    let mut config = SignatureConfig::v4(
        SignatureType::KeyRevocation,
        k.algorithm(),
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
            SIGNED_AT,
        )))
        .unwrap(),
        Subpacket::regular(SubpacketData::IssuerFingerprint(k.fingerprint())).unwrap(),
    ];
    config
        .sign_key(k, &Password::empty(), &key.public_key().primary_key)
        .unwrap()
}

/// A revoked certificate signs nothing, its subkeys included, although its
/// revocation is only looked at when one of its keys is a signature's
/// issuer; a keyring of revoked certificates only is refused when read.
#[test]
fn revoked_keys_are_refused() {
    for subkey in [false, true] {
        let (revoked, good) = (TestKey::seeded(14, subkey), TestKey::seeded(15, false));
        let mut cert = revoked.public_key().clone();
        cert.details
            .revocation_signatures
            .push(revocation(&revoked));
        let alone = Keyring::from_bytes(&ring_bytes(&cert), Path::new("r.gpg"))
            .unwrap_err()
            .to_string();
        assert!(
            alone.contains("no usable (unrevoked) public key"),
            "{alone}"
        );
        let mut both = ring_bytes(&cert);
        both.extend(good.keyring.clone());
        let ring = keyring(&both);
        let e = ring
            .verify_inrelease(revoked.clearsign(RELEASE, SIGNED_AT).as_bytes(), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("signer not in keyring"), "{e}");
        let v = ring
            .verify_inrelease(good.clearsign(RELEASE, SIGNED_AT).as_bytes(), "t")
            .unwrap();
        assert_eq!(v.fingerprint, fpr(&good));
        // The same certificate without its revocation signs.
        let unrevoked = keyring(&revoked.keyring);
        let v = unrevoked
            .verify_inrelease(revoked.clearsign(RELEASE, SIGNED_AT).as_bytes(), "t")
            .unwrap();
        assert_eq!(v.fingerprint, fpr(&revoked));
    }
}

/// A signing subkey counts only when its own certificate's primary bound
/// it: another certificate's subkey, with that certificate's binding
/// signatures, grafted onto this one signs nothing for it.
#[test]
fn a_subkey_bound_by_another_primary_is_refused() {
    let (mine, theirs) = (TestKey::seeded(16, true), TestKey::seeded(17, true));
    let mut cert = mine.public_key().clone();
    cert.public_subkeys = theirs.public_key().public_subkeys.clone();
    let ring = keyring(&ring_bytes(&cert));
    let e = ring
        .verify_inrelease(theirs.clearsign(RELEASE, SIGNED_AT).as_bytes(), "t")
        .unwrap_err()
        .to_string();
    assert!(e.contains("signer not in keyring"), "{e}");
    // Its own certificate binds it.
    let v = keyring(&theirs.keyring)
        .verify_inrelease(theirs.clearsign(RELEASE, SIGNED_AT).as_bytes(), "t")
        .unwrap();
    assert_eq!(v.fingerprint, fpr(&theirs));
}
