//! Property/fuzz tests over every parser of hostile input (issue 11): deb822,
//! dpkg versions, relations, `Packages` indexes, Release files and their
//! dates, keyrings, locks and recipes. Each gets random inputs and mutations
//! of a valid seed (byte flips, insertions, deletions, splices, truncation);
//! none may panic, and what parses must behave (round trips, total orders).
//!
//! The default run is small and fast; `IMGBUILD_FUZZ_CASES=N` sets the
//! number of cases per property for a long run (`ci/nightly.sh` runs
//! `IMGBUILD_FUZZ_CASES=20000 cargo test --test parser_fuzz`).

use std::path::Path;

use imgbuild::archive::freshness::{format_date, parse_date};
use imgbuild::archive::{Keyring, Release};
use imgbuild::core::deb822;
use imgbuild::core::package::parse_packages;
use imgbuild::core::relation::{Dependency, parse_field};
use imgbuild::core::version::DebVersion;
use imgbuild::lock::Lockfile;
use imgbuild::recipe::Recipe;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Cases per property: `IMGBUILD_FUZZ_CASES`, else a small default.
fn cases(default: u32) -> u32 {
    std::env::var("IMGBUILD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(default: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: cases(default),
        failure_persistence: None,
        ..Config::default()
    })
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

/// Bytes that matter to these formats, more often than chance would pick them.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        prop::sample::select(b"\n\n\n \t:,|()<>=~+-._/[]!#\"'\\{}0123456789abz\r\x00\xff".to_vec()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), interesting_byte()).prop_map(|(p, b)| Edit::Flip(p, b)),
        (
            any::<usize>(),
            prop::collection::vec(interesting_byte(), 1..12)
        )
            .prop_map(|(p, b)| Edit::Insert(p, b)),
        (any::<usize>(), 1usize..40).prop_map(|(p, n)| Edit::Delete(p, n)),
        (any::<usize>(), 1usize..80).prop_map(|(p, n)| Edit::Duplicate(p, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// `seed` with `edits` applied (positions taken modulo the current length).
fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut s = seed.to_vec();
    for e in edits {
        let len = s.len().max(1);
        match e {
            Edit::Flip(p, b) if !s.is_empty() => s[p % len] = *b,
            Edit::Flip(..) => {}
            Edit::Insert(p, b) => {
                let at = p % (s.len() + 1);
                s.splice(at..at, b.iter().copied());
            }
            Edit::Delete(p, n) => {
                let at = p % len;
                let end = (at + n).min(s.len());
                if at < end {
                    s.drain(at..end);
                }
            }
            Edit::Duplicate(p, n) => {
                let at = p % len;
                let end = (at + n).min(s.len());
                let piece: Vec<u8> = s.get(at..end).unwrap_or_default().to_vec();
                s.splice(at..at, piece);
            }
            Edit::Truncate(p) => s.truncate(p % (s.len() + 1)),
        }
        // Keep inputs bounded: a property is about content, not size.
        s.truncate(64 << 10);
    }
    s
}

/// Mutations of one of `seeds`, as bytes.
fn mutated(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit(), 0..8),
    )
        .prop_map(|(seed, edits)| mutate(seed.as_bytes(), &edits))
}

/// Random or mutated input as text (lossy: the parsers take `&str`).
fn text_input(seeds: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => mutated(seeds).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => ".{0,200}",
        1 => prop::collection::vec(interesting_byte(), 0..300)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

const STANZAS: &[&str] = &[
    "Package: a\nVersion: 1:2.0~rc1-1+b2\nArchitecture: amd64\nMulti-Arch: same\n\
     Depends: libc6 (>= 2.34), b | c:any (<< 3), d [amd64] <!nocheck>\nPre-Depends: dpkg (>= 1.19)\n\
     Provides: v (= 1)\nDescription: x\n multi\n .\n line\nFilename: pool/a.deb\nSize: 5\n\
     SHA256: 0000000000000000000000000000000000000000000000000000000000000000\n\n\
     Package: b\nVersion: 3\nArchitecture: all\nPriority: required\nEssential: yes\n\
     Filename: pool/b.deb\nSize: 6\n\
     SHA256: 1111111111111111111111111111111111111111111111111111111111111111\n",
    "# comment\nField: value\n continued\n\tcontinued\n\n\nOther: x\r\nLast:\n",
];

#[test]
fn deb822_and_packages_never_panic() {
    runner(300)
        .run(&text_input(STANZAS), |text| {
            let mut n = 0;
            for s in deb822::stanzas(&text).take(10_000) {
                if let Ok(s) = s {
                    // Spans lie inside the text, on char boundaries.
                    prop_assert!(s.span.0 <= s.span.1 && s.span.1 <= text.len());
                    prop_assert!(text.get(s.span.0..s.span.1).is_some());
                    for (k, _) in s.fields() {
                        prop_assert!(!k.is_empty());
                    }
                }
                n += 1;
            }
            prop_assert!(n <= 10_000);
            if let Ok(records) = parse_packages(&text, "fuzz/Packages", 0) {
                for r in &records {
                    // Lazy fields read from validated stanzas cannot fail.
                    let _ = (r.depends(), r.filename(), r.size(), r.sha256());
                    prop_assert!(!r.name.is_empty());
                    let _ = parse_field(r.depends());
                }
            }
            Ok(())
        })
        .unwrap();
}

const VERSIONS: &[&str] = &[
    "1:2.30-1+deb12u2~bpo11+1",
    "0.9.3~rc1",
    "2.34-0ubuntu3.2",
    "10:1.2.3.4-a.b.c+d~e",
    "1.0",
];

#[test]
fn versions_parse_compare_and_round_trip() {
    let input = (text_input(VERSIONS), text_input(VERSIONS));
    runner(500)
        .run(&input, |(a, b)| {
            let (Ok(x), Ok(y)) = (DebVersion::parse(&a), DebVersion::parse(&b)) else {
                return Ok(());
            };
            prop_assert_eq!(x.cmp(&x), std::cmp::Ordering::Equal);
            prop_assert_eq!(x.cmp(&y), y.cmp(&x).reverse());
            let again = DebVersion::parse(&x.to_string()).expect("a rendered version parses");
            prop_assert_eq!(again.cmp(&x), std::cmp::Ordering::Equal);
            Ok(())
        })
        .unwrap();
}

const RELATIONS: &[&str] = &[
    "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any (<< 3.12),",
    "foo [amd64 !i386] <!nocheck> | bar:amd64 (= 1:2-3)",
    "a(<<1),b(<=2),c(=3),d(>=4),e(>>5),f(<6),g(>7)",
    "app | ",
];

#[test]
fn relations_never_panic_and_round_trip() {
    runner(500)
        .run(&text_input(RELATIONS), |text| {
            if let Ok(deps) = parse_field(&text) {
                for d in deps {
                    let shown = d.to_string();
                    let back = Dependency::parse(&shown).expect("a rendered relation parses");
                    prop_assert_eq!(back.to_string(), shown);
                }
            }
            let _ = Dependency::parse(&text);
            Ok(())
        })
        .unwrap();
}

const RELEASES: &[&str] = &["Origin: Debian\nSuite: stable\nCodename: bookworm\n\
     Date: Sat, 11 Jul 2026 10:16:37 UTC\nValid-Until: Sat, 18 Jul 2026 10:16:37 UTC\n\
     Acquire-By-Hash: yes\nMD5Sum:\n 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 main/x\n\
     SHA256:\n 515e692f2c4121c6fcec444ef100cc18f79a991910615f3a88c8b7becfc94d2f 50060337 main/binary-amd64/Packages\n \
     9E0B5AABB2465B3D2E7A7FE27F9913846277833F7A2826E7767ACCCFF5B588C5  8790396 main/binary-amd64/Packages.xz\n"];

#[test]
fn releases_and_dates_never_panic() {
    runner(300)
        .run(&text_input(RELEASES), |text| {
            if let Ok(r) = Release::parse(&text, "fuzz") {
                for path in r.sha256.keys() {
                    prop_assert!(!path.starts_with('/') && !path.split('/').any(|c| c == ".."));
                }
                if let Some(t) = parse_date(&r.date) {
                    // A parsed date renders to a date that parses to the same instant.
                    prop_assert_eq!(parse_date(&format_date(t)), Some(t));
                }
            }
            let _ = parse_date(&text);
            Ok(())
        })
        .unwrap();
    runner(300)
        .run(&(-(1i64 << 40)..(1i64 << 40)), |t| {
            prop_assert_eq!(
                parse_date(&format_date(t)),
                Some(t).filter(|_| {
                    // Four-digit years only.
                    (-62_135_596_800..253_402_300_800).contains(&t)
                })
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn keyrings_never_panic() {
    let input = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        ".{0,200}"
            .prop_map(|s| format!("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{s}\n").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..400).prop_map(|mut b| {
            // Packet-like: the first byte's top bit set.
            if let Some(f) = b.first_mut() {
                *f |= 0x80;
            }
            b
        }),
    ];
    runner(200)
        .run(&input, |bytes| {
            let _ = Keyring::from_bytes(&bytes, Path::new("fuzz.pgp"));
            Ok(())
        })
        .unwrap();
}

const LOCKS: &[&str] = &[r#"version = 1

[recipe]
name = "img"
hash = "sha256:85199ca1bf3b3a6e17c445f6503f9e7e7b3595d44fbf8ed36a34cfe8b6a32510"
architecture = "amd64"

[[source]]
name = "bookworm"
suite = "bookworm"
inrelease-sha256 = "77737fa4b34f2693e982cc9ee35736816c35a7778fc2d326cc1bbf5b301fe1aa"
date = "Sat, 11 Jul 2026 10:16:37 UTC"
signed-by = "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8"
indexes = [
  { path = "main/binary-amd64/Packages.xz", sha256 = "9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5", size = 8790396 },
]

[[package]]
name = "adduser"
version = "3.134"
architecture = "all"
source = "bookworm"
filename = "pool/main/a/adduser/adduser_3.134_all.deb"
size = 183272
sha256 = "c24fe4eb8e60d8632d72ed104cce7c92cff200847c897dc8ba764b6c47b519e0"
reason = "recipe"
depends = [
  { name = "passwd", relation = "passwd", kind = "depends" },
]

[[python]]
name = "ctypesgen"
version = "1.1.1"
filename = "ctypesgen-1.1.1-py3-none-any.whl"
size = 124193
sha256 = "94cc6c89ccdd93a72a4c915266cde9a82bfe693331d9d880f66fe9d82af1fc87"
requires-python = ">=3.7"
reason = "recipe"
extras = []
depends = []
"#];

#[test]
fn locks_never_panic_and_round_trip() {
    runner(300)
        .run(&text_input(LOCKS), |text| {
            if let Ok(mut lock) = Lockfile::parse(&text, Path::new("fuzz.lock")) {
                lock.sort_packages();
                let again = Lockfile::parse(&lock.to_toml(), Path::new("again.lock"))
                    .expect("a written lock reads back");
                prop_assert_eq!(again, lock);
            }
            Ok(())
        })
        .unwrap();
}

const RECIPES: &[&str] = &[r#"architecture = "amd64"
foreign-architectures = ["i386"]
hostname = "sonic"
essential = true
packages = ["linux-image-amd64", "python3-thrift (<< 0.14)", "foo:i386 | bar"]
tools = ["e2fsprogs"]

[[source]]
name = "bookworm"
archive = "debian"
suite = "bookworm"
components = ["main", "contrib"]
keyring = "keys/k.pgp"
priority = 600
check-valid-until = false

[[step]]
write = "/etc/motd"
content = "hi\n"
mode = "0644"

[[step]]
sysctl = { "net.ipv4.ip_forward" = "1" }

[[step]]
user = "admin"
groups = ["sudo"]

[disk]
size = "2G"
"#];

#[test]
fn recipes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/k.pgp"), b"key").unwrap();
    let path = dir.path().join("fuzz.toml");
    runner(200)
        .run(&text_input(RECIPES), |text| {
            if let Ok(r) = Recipe::parse_str(&text, &path) {
                // What parses hashes, deterministically.
                prop_assert_eq!(r.canonical_hash(), r.canonical_hash());
                let _ = r.build_hash();
            }
            Ok(())
        })
        .unwrap();
}
