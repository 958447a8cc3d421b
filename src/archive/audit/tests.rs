//! The pure parts of the lock audit: stanza re-reading, entry matching and
//! header checks (`tests/lock_audit.rs` runs it end to end over a fixture
//! archive on 127.0.0.1).

use std::sync::Arc;

use super::*;
use crate::core::package::{BinaryPackage, IndexText, MultiArch, parse_index_range};
use crate::core::version::DebVersion;
use crate::lock::LockedIndex;

const HEX_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HEX_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn index() -> (IndexText, Vec<BinaryPackage>) {
    let body = format!(
        "Package: app\nVersion: 1.0\nArchitecture: amd64\nDescription: x\n Package: evil\n \
         Version: 6.6\nFilename: pool/app_1.0.deb\nSize: 10\nSHA256: {HEX_A}\n\n\
         Package: lib\nVersion: 2\nArchitecture: all\nFilename: pool/lib_2.deb\nSize: 20\nSHA256: {HEX_B}\n"
    );
    let len = body.len();
    let text: IndexText = Arc::new(body);
    let records = parse_index_range(&text, 0, len, 0, "P", 0).unwrap();
    (text, records)
}

fn locked(r: &BinaryPackage) -> LockedPackage {
    LockedPackage {
        name: r.name.to_string(),
        version: r.version.to_string(),
        architecture: r.architecture.to_string(),
        source: "s".into(),
        filename: r.filename().into(),
        size: r.size(),
        sha256: r.sha256(),
        reason: None,
        depends: vec![],
    }
}

/// A record with the given eager fields and span, as a (possibly edited)
/// snapshot would produce.
fn forged(text: &IndexText, name: &str, version: &str, span: (u32, u32)) -> BinaryPackage {
    BinaryPackage::from_parts(
        name,
        DebVersion::parse(version).unwrap(),
        "amd64",
        MultiArch::No,
        false,
        false,
        "",
        0,
        text.clone(),
        span,
    )
}

#[test]
fn genuine_entries_match_and_edits_are_named() {
    let (_, recs) = index();
    for r in &recs {
        match_entry(&locked(r), &[r]).unwrap();
    }
    let mut p = locked(&recs[0]);
    p.sha256 = HEX_B.into();
    p.filename = "pool/trojan.deb".into();
    let e = match_entry(&p, &[&recs[0]]).unwrap_err();
    assert!(
        e.contains("Filename `pool/app_1.0.deb`") && e.contains("pool/trojan.deb"),
        "{e}"
    );
    let mut p = locked(&recs[0]);
    p.version = "9".into();
    let e = match_entry(&p, &[&recs[0]]).unwrap_err();
    assert!(e.contains("it has 1.0 (amd64)"), "{e}");
    let e = match_entry(&p, &[]).unwrap_err();
    assert!(e.contains("no stanza for `app` at all"), "{e}");
}

#[test]
fn snapshot_fields_and_spans_are_not_trusted() {
    let (text, recs) = index();
    let (a, b) = recs[0].span();
    // Eager fields edited: the stanza says otherwise.
    let edited = forged(&text, "app", "6.6", (a, b));
    let mut p = locked(&recs[0]);
    p.version = "6.6".into();
    assert!(match_entry(&p, &[&edited]).is_err());
    // A span starting inside the description, where ` Package: evil` would
    // read as a field once its leading space is cut off.
    let body = std::str::from_utf8((*text).as_ref()).unwrap();
    let inner = body.find("Package: evil").unwrap() as u32;
    assert!(reparse(&forged(&text, "evil", "6.6", (inner, b))).is_none());
    // A span cut short, or covering two stanzas.
    assert!(reparse(&forged(&text, "app", "1.0", (a, b - 3))).is_none());
    let (_, b2) = recs[1].span();
    assert!(reparse(&forged(&text, "app", "1.0", (a, b2))).is_none());
    // Out of range.
    assert!(reparse(&forged(&text, "app", "1.0", (a, b2 + 100))).is_none());
    // The genuine spans re-read to themselves.
    for r in &recs {
        let again = reparse(r).unwrap();
        assert_eq!(
            (again.name, again.version),
            (r.name.clone(), r.version.clone())
        );
    }
}

#[test]
fn headers_must_agree_with_the_signed_release() {
    let text = "Date: Sat, 11 Jul 2026 10:16:37 UTC\nSHA256:\n \
                aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 42 main/binary-amd64/Packages.xz\n";
    let release = Release::parse(text, "t").unwrap();
    let good = LockedSource {
        name: "s".into(),
        suite: "bookworm".into(),
        inrelease_sha256: HEX_B.into(),
        date: "Sat, 11 Jul 2026 10:16:37 UTC".into(),
        snapshot: None,
        signed_by: "ABCD".into(),
        indexes: vec![LockedIndex {
            path: "main/binary-amd64/Packages.xz".into(),
            sha256: HEX_A.into(),
            size: 42,
        }],
    };
    check_header(&good, "abcd", &release).unwrap();
    let e = check_header(&good, "EF01", &release).unwrap_err();
    assert!(e.contains("signed-by ABCD") && e.contains("EF01"), "{e}");
    let mut l = good.clone();
    l.date = "Sun, 12 Jul 2026 10:16:37 UTC".into();
    assert!(
        check_header(&l, "ABCD", &release)
            .unwrap_err()
            .contains("date")
    );
    let mut l = good.clone();
    l.indexes[0].size = 43;
    let e = check_header(&l, "ABCD", &release).unwrap_err();
    assert!(e.contains("43 bytes") && e.contains("42 bytes"), "{e}");
    let mut l = good;
    l.indexes[0].path = "main/binary-i386/Packages.xz".into();
    let e = check_header(&l, "ABCD", &release).unwrap_err();
    assert!(e.contains("not listed"), "{e}");
}
