//! `DebVersion`'s order checked against dpkg itself (`dpkg --compare-versions`).
//!
//! * generated pairs (proptest), biased toward the tricky cases: epochs, `~`,
//!   `+`, `.`, letters, leading zeros, digit runs longer than u64, absent vs
//!   `-0` revisions, `1.` vs `1.0`, several hyphens, near-duplicates;
//! * real versions (`tests/data/versions.txt`, from bullseye, bookworm and
//!   trixie): consecutive pairs of each package, and every adjacent pair of
//!   the whole sample sorted by `DebVersion`'s `Ord` (so the sort order is
//!   dpkg's order);
//! * Eq ⇔ equal hashes, antisymmetry and transitivity on samples.
//!
//! dpkg is slow to start (a few ms per call), so each batch of pairs becomes one
//! shell script, split over the available cores, with one `dpkg` call per pair
//! (the relation *we* computed is asked; dpkg's own answer is only looked up
//! for disagreements). Skipped, with a message, when `dpkg` is absent.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::process::{Command, Stdio};

use imgbuild::core::version::DebVersion;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

// --- the dpkg oracle ---------------------------------------------------------

fn dpkg_available() -> bool {
    let ok = Command::new("dpkg")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipping: `dpkg` not found, cannot compare DebVersion with dpkg");
    }
    ok
}

fn op(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "lt",
        Ordering::Equal => "eq",
        Ordering::Greater => "gt",
    }
}

/// Characters dpkg accepts in a version; anything else must not reach `sh`.
fn shell_safe(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
}

/// Runs `dpkg --compare-versions A OP B` for every `(A, OP, B)`, spread over the
/// available cores; returns the indices (and dpkg exit codes) of those that
/// did not hold.
fn dpkg_refutes(checks: &[(&str, &str, &str)]) -> Vec<(usize, i32)> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let chunk = checks.len().div_ceil(cores).max(1);
    let children: Vec<_> = checks
        .chunks(chunk)
        .enumerate()
        .map(|(c, part)| {
            let mut script = tempfile::NamedTempFile::new().expect("temp file");
            for (k, (a, o, b)) in part.iter().enumerate() {
                assert!(shell_safe(a) && shell_safe(b), "unsafe version text {a:?} {b:?}");
                writeln!(
                    script,
                    "dpkg --compare-versions '{a}' {o} '{b}' 2>/dev/null; r=$?; [ $r = 0 ] || echo {} $r",
                    c * chunk + k
                )
                .unwrap();
            }
            script.flush().unwrap();
            let child = Command::new("sh")
                .arg(script.path())
                .stdout(Stdio::piped())
                .spawn()
                .expect("run sh");
            (script, child)
        })
        .collect();
    let mut bad = Vec::new();
    for (_script, child) in children {
        let out = child.wait_with_output().expect("wait for sh");
        assert!(out.status.success(), "dpkg batch script failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut w = line.split_whitespace();
            let i: usize = w.next().unwrap().parse().unwrap();
            let rc: i32 = w.next().unwrap().parse().unwrap();
            bad.push((i, rc));
        }
    }
    bad.sort();
    bad
}

/// dpkg's own three-way answer for one pair (only used to report a disagreement).
fn dpkg_cmp(a: &str, b: &str) -> String {
    for o in ["lt", "eq", "gt"] {
        let st = Command::new("dpkg")
            .args(["--compare-versions", a, o, b])
            .stderr(Stdio::null())
            .status()
            .expect("run dpkg");
        match st.code() {
            Some(0) => return o.to_string(),
            Some(1) => {}
            c => return format!("error (exit {c:?})"),
        }
    }
    "none of lt/eq/gt".to_string()
}

/// Compares every pair with `DebVersion` and dpkg; returns readable
/// disagreements (empty when all agree).
fn disagreements(pairs: &[(String, String)]) -> Vec<String> {
    let mut ours = Vec::with_capacity(pairs.len());
    let mut report = Vec::new();
    for (a, b) in pairs {
        match (DebVersion::parse(a), DebVersion::parse(b)) {
            (Ok(x), Ok(y)) => ours.push(op(x.cmp(&y))),
            (x, y) => {
                report.push(format!(
                    "parse failed for a dpkg-valid version: {a:?} -> {:?}, {b:?} -> {:?}",
                    x.err(),
                    y.err()
                ));
                ours.push("eq");
            }
        }
    }
    if !report.is_empty() {
        return report;
    }
    let checks: Vec<_> = pairs
        .iter()
        .zip(&ours)
        .map(|((a, b), o)| (a.as_str(), *o, b.as_str()))
        .collect();
    for (i, rc) in dpkg_refutes(&checks) {
        let (a, b) = &pairs[i];
        report.push(format!(
            "DebVersion says `{a}` {} `{b}`, dpkg says {} (exit {rc} for the former)",
            ours[i],
            dpkg_cmp(a, b)
        ));
    }
    report
}

fn hash_of(v: &DebVersion) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Eq ⇔ cmp == Equal, Eq ⇒ equal hashes, antisymmetry.
fn check_eq_hash(a: &DebVersion, b: &DebVersion) -> Result<(), String> {
    let c = a.cmp(b);
    if (a == b) != (c == Ordering::Equal) {
        return Err(format!("Eq and Ord disagree on `{a}` vs `{b}`"));
    }
    if a == b && hash_of(a) != hash_of(b) {
        return Err(format!("`{a}` == `{b}` but their hashes differ"));
    }
    if b.cmp(a) != c.reverse() {
        return Err(format!("cmp is not antisymmetric on `{a}` vs `{b}`"));
    }
    Ok(())
}

// --- generated versions -------------------------------------------------------

fn digits() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => "[0-9]",
        3 => "[1-9][0-9]{1,3}",
        2 => "0{1,3}[0-9]{0,2}",
        1 => "[1-9][0-9]{18,30}",
        1 => "0{0,2}1844674407370955161[5-7]",
    ]
}

fn separator() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(".".to_string()),
        2 => Just("~".to_string()),
        2 => Just("+".to_string()),
        1 => Just("~~".to_string()),
        1 => Just("-".to_string()),
        1 => Just(":".to_string()),
        2 => "[a-z]{1,3}",
        1 => "[A-Z][a-z]?",
        1 => "(\\+|~)(dfsg|ds|really|rc|beta|git)",
    ]
}

fn upstream() -> impl Strategy<Value = String> {
    (
        digits(),
        prop::collection::vec((separator(), prop::option::weighted(0.7, digits())), 0..5),
    )
        .prop_map(|(first, rest)| {
            let mut s = first;
            for (sep, d) in rest {
                s.push_str(&sep);
                if let Some(d) = d {
                    s.push_str(&d);
                }
            }
            s
        })
}

fn revision() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some("0".to_string())),
        1 => Just(Some("00".to_string())),
        2 => "[0-9]{1,2}(\\.[0-9]{1,2})?".prop_map(Some),
        2 => "[0-9]{1,2}(\\+b[0-9]{1,2}|~bpo[0-9]{2}\\+[0-9]|\\+deb[0-9]{2}u[0-9]{1,2}|~deb[0-9]{2}u[0-9]|ubuntu[0-9])"
            .prop_map(Some),
        1 => "[a-z][0-9]?|[0-9]~|[0-9]\\.".prop_map(Some),
        1 => "[1-9][0-9]{20,25}".prop_map(Some),
    ]
}

fn epoch() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(None),
        2 => Just(Some("0".to_string())),
        2 => Just(Some("1".to_string())),
        1 => "0?[0-9]{1,2}".prop_map(Some),
    ]
}

/// Assembles a version dpkg accepts without complaint.
fn assemble(e: Option<String>, up: String, rev: Option<String>) -> String {
    let mut up = up;
    if e.is_none() {
        // Without an epoch the first `:` would be read as one.
        up = up.replace(':', ".");
    }
    if rev.is_none() {
        if up.ends_with('-') {
            // A trailing `-` would be an empty revision.
            up.push('0');
        }
        if let Some(h) = up.rfind('-') {
            // What follows the last `-` is the revision: no `:` there.
            let tail = up[h..].replace(':', ".");
            up.replace_range(h.., &tail);
        }
    }
    let mut s = String::new();
    if let Some(e) = e {
        s.push_str(&e);
        s.push(':');
    }
    s.push_str(&up);
    if let Some(r) = rev {
        s.push('-');
        s.push_str(&r);
    }
    s
}

fn version() -> impl Strategy<Value = String> {
    (epoch(), upstream(), revision()).prop_map(|(e, u, r)| assemble(e, u, r))
}

/// Small edits that keep a version valid and land close to it (or on an
/// equal version spelled differently).
fn mutate(a: &str, which: usize, digit: char) -> String {
    let has_epoch = a.contains(':');
    let first_digit = if has_epoch {
        a.find(':').unwrap() + 1
    } else {
        0
    };
    let candidates = [
        format!("{a}.0"),
        format!("{a}."),
        format!("{a}~"),
        format!("{a}~~"),
        format!("{a}+"),
        format!("{a}a"),
        format!("{a}{digit}"),
        if has_epoch {
            a.to_string()
        } else {
            format!("0:{a}")
        },
        if a[first_digit..].contains('-') {
            format!("{a}.0")
        } else {
            format!("{a}-0")
        },
        format!("{}0{}", &a[..first_digit], &a[first_digit..]),
        a[..a.len() - 1].to_string(),
        a.replacen('~', "+", 1),
        a.replacen('.', "~", 1),
        a.replacen('-', "-0", 1),
        a.replacen('0', "00", 1),
        a.to_string(),
    ];
    let b = candidates[which % candidates.len()].clone();
    if dpkg_valid(&b) { b } else { a.to_string() }
}

/// dpkg's hard syntax rules (the ones it rejects with an error, plus "starts
/// with a digit" and the character set, which it only warns about).
fn dpkg_valid(v: &str) -> bool {
    let (epoch, rest) = match v.find(':') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => ("0", v),
    };
    let epoch_ok = !epoch.is_empty()
        && epoch.bytes().all(|b| b.is_ascii_digit())
        && epoch.parse::<u64>().is_ok_and(|e| e <= i32::MAX as u64);
    let (up, rev) = match rest.rfind('-') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    epoch_ok
        && up.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && up
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~-:".contains(&b))
        && rev.is_none_or(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b))
        })
}

fn pair() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        1 => (version(), version()),
        2 => (version(), 0usize..64, prop::char::range('0', '9'))
            .prop_map(|(a, w, d)| { let b = mutate(&a, w, d); (a, b) }),
    ]
}

#[test]
fn generated_pairs_agree_with_dpkg() {
    if !dpkg_available() {
        return;
    }
    let mut runner = TestRunner::new(Config {
        cases: 16,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let batch = prop::collection::vec(pair(), 64);
    let result = runner.run(&batch, |pairs| {
        for (a, b) in &pairs {
            prop_assert!(
                dpkg_valid(a) && dpkg_valid(b),
                "generator made {a:?} / {b:?}"
            );
            let (x, y) = (DebVersion::parse(a), DebVersion::parse(b));
            prop_assert!(x.is_ok() && y.is_ok(), "parse failed: {a:?} {b:?}");
            if let Err(e) = check_eq_hash(&x.unwrap(), &y.unwrap()) {
                prop_assert!(false, "{}", e);
            }
        }
        let bad = disagreements(&pairs);
        prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn tricky_pairs_agree_with_dpkg() {
    if !dpkg_available() {
        return;
    }
    let pairs = [
        ("1.", "1.0"),
        ("1.0", "1.0-0"),
        ("1.0", "1.0-00"),
        ("0:1.0", "1.0"),
        ("00:1.0", "1.0"),
        ("01:1.0", "1:1.0"),
        ("1.0~rc1", "1.0"),
        ("1.0", "1.0a"),
        ("1.0a", "1.0+dfsg"),
        ("1.0~~", "1.0~"),
        ("1.0~~a", "1.0~~"),
        ("1.0-1~bpo11+1", "1.0-1"),
        ("1:0.1", "9.9"),
        ("1.0-1-2", "1.0-1-10"),
        ("1.0-1-2", "1.0-12"),
        ("1:2:3-1", "1:2:3-1"),
        ("1:2:3", "1:2.3"),
        ("1.001", "1.1"),
        ("1.0010", "1.010"),
        ("1.0a", "1.0A"),
        ("1.0Z", "1.0a"),
        ("1.0+", "1.0."),
        ("1.0.", "1.0~"),
        (
            "99999999999999999999999999.1",
            "99999999999999999999999998.9",
        ),
        ("18446744073709551616", "18446744073709551615"),
        ("0018446744073709551616", "18446744073709551616"),
        ("1.2-3+deb12u10", "1.2-3+deb12u9"),
        ("2.06-13+deb12u2", "2.06-13+deb12u1"),
        ("252.39-1~deb12u2", "252.39-1"),
        ("1.0-a", "1.0-0"),
        ("1.0-0.", "1.0-0"),
        ("1.0-1.", "1.0-1.0"),
        ("1", "1a"),
        ("1a", "1.a"),
        ("1.0a", "1.a"),
        ("1~", "1"),
        ("2147483647:1", "1"),
    ];
    let owned: Vec<_> = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let bad = disagreements(&owned);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    for (a, b) in &owned {
        let (x, y) = (DebVersion::parse(a).unwrap(), DebVersion::parse(b).unwrap());
        check_eq_hash(&x, &y).unwrap();
    }
}

// --- real versions -------------------------------------------------------------

fn real_versions() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/versions.txt");
    let text = std::fs::read_to_string(path).expect("tests/data/versions.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (p, v) = l.split_once(' ').expect("PACKAGE VERSION");
            (p.to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn real_consecutive_pairs_agree_with_dpkg() {
    if !dpkg_available() {
        return;
    }
    let rows = real_versions();
    assert!(rows.len() > 1000, "sample too small: {}", rows.len());
    let pairs: Vec<_> = rows
        .windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .map(|w| (w[0].1.clone(), w[1].1.clone()))
        .collect();
    assert!(
        pairs.len() > 1000,
        "too few same-package pairs: {}",
        pairs.len()
    );
    let bad = disagreements(&pairs);
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn real_versions_sorted_by_ord_are_in_dpkg_order() {
    if !dpkg_available() {
        return;
    }
    let mut vs: Vec<DebVersion> = real_versions()
        .iter()
        .map(|(_, v)| DebVersion::parse(v).expect("real version parses"))
        .collect();
    // Rust's sort detects (and may panic on) an inconsistent total order.
    vs.sort();
    vs.dedup_by(|a, b| a.as_str() == b.as_str());
    let pairs: Vec<_> = vs
        .windows(2)
        .map(|w| (w[0].as_str().to_string(), w[1].as_str().to_string()))
        .collect();
    let bad = disagreements(&pairs);
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// No dpkg needed: algebraic laws on the real sample plus generated values.
#[test]
fn eq_hash_and_transitivity_on_samples() {
    let mut vs: Vec<DebVersion> = real_versions()
        .iter()
        .map(|(_, v)| DebVersion::parse(v).unwrap())
        .collect();
    // Equal-but-differently-spelled variants of real versions.
    let variants: Vec<DebVersion> = vs
        .iter()
        .take(400)
        .flat_map(|v| {
            let s = v.as_str();
            let mut out = Vec::new();
            if !s.contains(':') {
                out.push(format!("0:{s}"));
            }
            if !s.contains('-') {
                out.push(format!("{s}-0"));
            }
            out.push(s.replacen(".0", ".00", 1));
            out.into_iter().filter_map(|t| DebVersion::parse(&t).ok())
        })
        .collect();
    vs.extend(variants);

    // Deterministic xorshift: reproducible triples without another dependency.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let n = vs.len();
    for _ in 0..200_000 {
        let (a, b, c) = (&vs[next(n)], &vs[next(n)], &vs[next(n)]);
        check_eq_hash(a, b).unwrap();
        if a <= b && b <= c {
            assert!(a <= c, "not transitive: {a} <= {b} <= {c} but {a} > {c}");
        }
        if a == b && b == c {
            assert_eq!(a, c);
        }
    }
    // Variants must equal their originals, with the same hash.
    for v in vs.iter().take(400) {
        let s = v.as_str();
        for t in [format!("0:{s}"), s.replacen(".0", ".00", 1)] {
            if s.contains(':') {
                continue;
            }
            let w = DebVersion::parse(&t).unwrap();
            assert_eq!(v, &w, "{s} vs {t}");
            assert_eq!(hash_of(v), hash_of(&w), "hash {s} vs {t}");
        }
    }
}

/// Versions dpkg rejects with an error must not parse. Ignored because it
/// fails today: `DebVersion::parse` accepts an empty revision (`1.0-`, which
/// it then orders equal to `1.0`) and epochs above i32::MAX, both of which
/// `dpkg --compare-versions` refuses (exit 2, "bad syntax").
#[test]
fn rejects_what_dpkg_rejects() {
    for v in [
        "",
        ":1",
        "1:",
        "a:1",
        "1:-1",
        "1.0-1:2",
        "1 0",
        "1.0-",
        "1-",
        "2147483648:1",
    ] {
        assert!(
            DebVersion::parse(v).is_err(),
            "{v:?} parsed, dpkg rejects it"
        );
    }
}
