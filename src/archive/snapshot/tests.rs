use super::*;
use crate::core::package::{IndexText, parse_index_range};

fn index() -> (IndexText, Vec<BinaryPackage>) {
    let hex = "0".repeat(64);
    let body = format!(
        "Package: a\nVersion: 1:2.0-1\nArchitecture: amd64\nMulti-Arch: same\nEssential: yes\nDepends: b\nFilename: pool/a.deb\nSize: 5\nSHA256: {hex}\n\n\
         Package: b\nVersion: 3\nArchitecture: all\nPriority: required\nProvides: v (= 1), w\nFilename: pool/b.deb\nSize: 6\nSHA256: {hex}\n\n\
         Package: a\nVersion: 1:2.1-1\nArchitecture: i386\nProvides: v\nFilename: pool/a2.deb\nSize: 7\nSHA256: {hex}\n\n\
         Package: c\nVersion: 1\nArchitecture: amd64\nProvides: ((bad\nFilename: pool/c.deb\nSize: 8\nSHA256: {hex}\n"
    );
    let text: IndexText = Arc::new(body.clone());
    let records = parse_index_range(&text, 0, body.len(), 0, "P", 2).unwrap();
    (text, records)
}

fn open(data: Vec<u8>, text: &IndexText) -> Option<Snapshot> {
    Snapshot::open(Arc::new(data), (**text).as_ref().len())
}

#[test]
fn round_trips_every_field() {
    let (text, records) = index();
    let snap = open(encode(&records, (*text).as_ref().len()), &text).unwrap();
    let back = snap
        .all(
            &Text {
                text: &text,
                file: None,
            },
            2,
        )
        .unwrap();
    assert_eq!(back.len(), records.len());
    for (x, y) in records.iter().zip(&back) {
        assert_eq!(
            (&x.name, &x.version, &x.architecture, &x.provides),
            (&y.name, &y.version, &y.architecture, &y.provides)
        );
        assert_eq!(
            (x.multi_arch, x.essential, x.required, x.source),
            (y.multi_arch, y.essential, y.required, y.source)
        );
        // The record has its own copy of its stanza (see `window.rs`).
        let stanza = |r: &BinaryPackage| {
            let (a, b) = r.span();
            (**r.index_text()).as_ref()[a as usize..b as usize].to_vec()
        };
        assert_eq!(stanza(x), stanza(y));
        assert!((**y.index_text()).as_ref().len() < (*text).as_ref().len());
        assert_eq!(x.depends(), y.depends());
        assert_eq!(x.filename(), y.filename());
    }
}

#[test]
fn looks_up_names_providers_and_the_flagged_set() {
    let (text, records) = index();
    let snap = open(encode(&records, (*text).as_ref().len()), &text).unwrap();
    assert_eq!(snap.named("a").collect::<Vec<_>>(), [0, 2]);
    assert_eq!(snap.named("b").collect::<Vec<_>>(), [1]);
    assert_eq!(snap.named("zz").count(), 0);
    assert_eq!(snap.named("").count(), 0);
    assert_eq!(snap.providers("v").collect::<Vec<_>>(), [1, 2]);
    assert_eq!(snap.providers("w").collect::<Vec<_>>(), [1]);
    // A Provides that does not parse provides nothing, as in the universe.
    assert_eq!(snap.providers("bad").count(), 0);
    assert_eq!(snap.providers("a").count(), 0);
    assert_eq!(snap.flagged().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(snap.name(2).unwrap(), "a");
}

#[test]
fn damage_is_a_miss_never_a_panic() {
    let (text, records) = index();
    let len = (*text).as_ref().len();
    let good = encode(&records, len);
    // Truncated anywhere, or one byte longer: refused.
    for cut in 0..good.len() {
        assert!(open(good[..cut].to_vec(), &text).is_none(), "cut at {cut}");
    }
    let mut long = good.clone();
    long.push(0);
    assert!(open(long, &text).is_none());
    // Another text length, another format.
    assert!(Snapshot::open(Arc::new(good.clone()), len - 1).is_none());
    let mut bad = good.clone();
    bad[0] ^= 1;
    assert!(open(bad, &text).is_none());
    // Every single byte changed to every interesting value: either refused
    // at open, or every lookup and build still answers without panicking.
    for at in MAGIC.len()..good.len() {
        for v in [0u8, 1, 0x7f, 0x80, 0xff] {
            let mut bad = good.clone();
            if bad[at] == v {
                continue;
            }
            bad[at] = v;
            let Some(snap) = open(bad, &text) else {
                continue;
            };
            for name in ["a", "b", "c", "v", ""] {
                for i in snap.named(name).chain(snap.providers(name)) {
                    assert!((i as usize) < snap.len());
                    let _ = snap.name(i);
                    if let Ok(r) = snap.build(
                        i,
                        &Text {
                            text: &text,
                            file: None,
                        },
                        0,
                    ) {
                        let _ = (r.depends(), r.relation_fields(), r.filename());
                    }
                }
            }
            let _ = snap.all(
                &Text {
                    text: &text,
                    file: None,
                },
                0,
            );
            let _: Vec<u32> = snap.flagged().collect();
        }
    }
}

#[test]
fn the_previous_format_is_a_miss() {
    let (text, _) = index();
    let mut old = b"imgbuild-ix2".to_vec();
    old.extend_from_slice(&[0; 64]);
    assert!(open(old, &text).is_none());
}
