//! Solver behaviour on small in-memory universes, one relation kind at a time.

use super::*;
use debcore::package::parse_packages;

/// Builds a universe from `(source name, priority, stanzas)`; stanzas need only
/// Package/Version/Architecture and relation fields.
fn universe(sources: &[(&str, i32, &str)]) -> Universe {
    let mut records = Vec::new();
    let mut infos = Vec::new();
    for (i, (name, prio, text)) in sources.iter().enumerate() {
        let mut full = String::new();
        for stanza in text.split("\n\n").filter(|s| !s.trim().is_empty()) {
            full.push_str(stanza.trim());
            if !stanza.contains("Architecture:") {
                full.push_str("\nArchitecture: amd64");
            }
            full.push_str("\nFilename: pool/x.deb\nSize: 1\nSHA256: ");
            full.push_str(&"0".repeat(64));
            full.push_str("\n\n");
        }
        records.extend(parse_packages(&full, name, i).unwrap());
        infos.push(SourceInfo {
            name: name.to_string(),
            priority: *prio,
        });
    }
    Universe::new(records, infos, "amd64")
}

fn req(text: &str) -> RootRequirement {
    RootRequirement {
        dependency: Dependency::parse(text).unwrap(),
        kind: EdgeKind::Requested,
    }
}

/// Solves and returns sorted `name=version` strings.
fn solve_names(u: &Universe, reqs: &[&str]) -> Result<Vec<String>, SolveError> {
    let sol = solve(
        u,
        Request {
            roots: reqs.iter().map(|r| req(r)).collect(),
            ..Default::default()
        },
    )?;
    let mut v: Vec<String> = sol
        .chosen
        .iter()
        .map(|(&id, &k)| format!("{}={}", u.instance(id).name, u.candidate(id, k).version))
        .collect();
    v.sort();
    Ok(v)
}

fn unsat(u: &Universe, reqs: &[&str]) -> String {
    match solve_names(u, reqs) {
        Err(SolveError::Unsatisfiable(t)) => t,
        other => panic!("expected no solution, got {other:?}"),
    }
}

#[test]
fn depends_and_pre_depends_are_followed() {
    let u = universe(&[(
        "s",
        500,
        "Package: a\nVersion: 1\nDepends: b (>= 2)\nPre-Depends: c\n\n\
         Package: b\nVersion: 1\n\nPackage: b\nVersion: 2\n\nPackage: b\nVersion: 3\n\n\
         Package: c\nVersion: 1\n\nPackage: unrelated\nVersion: 1\n",
    )]);
    assert_eq!(solve_names(&u, &["a"]).unwrap(), ["a=1", "b=3", "c=1"]);
    assert_eq!(
        solve_names(&u, &["a", "b (<< 3)"]).unwrap(),
        ["a=1", "b=2", "c=1"]
    );
}

#[test]
fn upper_bound_does_not_mean_absent() {
    // The TRAP: `Depends: b (<< 2)` must install b, not satisfy it by leaving b out.
    let u = universe(&[(
        "s",
        500,
        "Package: a\nVersion: 1\nDepends: b (<< 2)\n\nPackage: b\nVersion: 1\n",
    )]);
    assert_eq!(solve_names(&u, &["a"]).unwrap(), ["a=1", "b=1"]);
}

#[test]
fn alternatives_prefer_left_then_already_chosen() {
    let u = universe(&[(
        "s",
        500,
        "Package: x\nVersion: 1\nDepends: a | b\n\nPackage: a\nVersion: 1\n\nPackage: b\nVersion: 1\n\n\
         Package: y\nVersion: 1\nDepends: b\n",
    )]);
    assert_eq!(solve_names(&u, &["x"]).unwrap(), ["a=1", "x=1"]);
    assert_eq!(solve_names(&u, &["x", "y"]).unwrap(), ["b=1", "x=1", "y=1"]);
    // A left alternative that cannot be installed falls through to the right one.
    let u = universe(&[(
        "s",
        500,
        "Package: x\nVersion: 1\nDepends: a (>= 5) | b\n\nPackage: a\nVersion: 1\n\nPackage: b\nVersion: 1\n",
    )]);
    assert_eq!(solve_names(&u, &["x"]).unwrap(), ["b=1", "x=1"]);
}

#[test]
fn provides_real_package_preferred_and_versioned_rules() {
    let u = universe(&[(
        "s",
        500,
        "Package: want-virt\nVersion: 1\nDepends: mail\n\n\
         Package: want-real\nVersion: 1\nDepends: awk\n\n\
         Package: awk\nVersion: 1\n\nPackage: gawk\nVersion: 5\nProvides: awk\n\n\
         Package: exim\nVersion: 4\nProvides: mail\n\n\
         Package: want-ver\nVersion: 1\nDepends: libfoo (>= 2)\n\n\
         Package: foo-unversioned\nVersion: 1\nProvides: libfoo\n\n\
         Package: foo-versioned\nVersion: 1\nProvides: libfoo (= 2.5)\n",
    )]);
    assert_eq!(
        solve_names(&u, &["want-virt"]).unwrap(),
        ["exim=4", "want-virt=1"]
    );
    assert_eq!(
        solve_names(&u, &["want-real"]).unwrap(),
        ["awk=1", "want-real=1"]
    );
    // Only a versioned Provides satisfies a versioned dependency.
    assert_eq!(
        solve_names(&u, &["want-ver"]).unwrap(),
        ["foo-versioned=1", "want-ver=1"]
    );
}

#[test]
fn conflicts_and_breaks_steer_the_choice() {
    let u = universe(&[(
        "s",
        500,
        "Package: x\nVersion: 1\nDepends: a | b\n\nPackage: a\nVersion: 1\nConflicts: z\n\n\
         Package: b\nVersion: 1\n\nPackage: z\nVersion: 1\n\n\
         Package: old\nVersion: 1\nBreaks: lib (<< 2)\n\nPackage: lib\nVersion: 1\n\nPackage: lib\nVersion: 2\n\n\
         Package: pin\nVersion: 1\nDepends: lib (<< 2)\n",
    )]);
    assert_eq!(solve_names(&u, &["x", "z"]).unwrap(), ["b=1", "x=1", "z=1"]);
    assert_eq!(
        solve_names(&u, &["old", "lib"]).unwrap(),
        ["lib=2", "old=1"]
    );
    let why = unsat(&u, &["old", "pin"]);
    assert!(why.contains("old 1 (s) breaks lib (<< 2)"), "{why}");
    assert!(why.contains("pin 1 (s) depends on lib (<< 2)"), "{why}");
}

#[test]
fn conflict_on_virtual_spares_the_package_itself() {
    // The "only one MTA" idiom: Provides + Conflicts on the same virtual name.
    let u = universe(&[(
        "s",
        500,
        "Package: exim\nVersion: 1\nProvides: mta\nConflicts: mta\n\n\
         Package: postfix\nVersion: 1\nProvides: mta\nConflicts: mta\n\n\
         Package: app\nVersion: 1\nDepends: mta\n",
    )]);
    assert_eq!(solve_names(&u, &["app"]).unwrap(), ["app=1", "exim=1"]);
    let why = unsat(&u, &["exim", "postfix"]);
    assert!(why.contains("conflicts with mta"), "{why}");
}

#[test]
fn source_priority_wins_over_version_unless_constrained() {
    let u = universe(&[
        (
            "bookworm",
            500,
            "Package: py\nVersion: 3.11\n\nPackage: thrift\nVersion: 0.17\nDepends: py (>= 3.11)\n",
        ),
        (
            "bullseye",
            100,
            "Package: py\nVersion: 3.9\n\nPackage: thrift\nVersion: 0.13\nDepends: py (<< 3.10)\n\nPackage: py\nVersion: 3.12\n",
        ),
    ]);
    // 3.12 is newer but comes from the lower-priority source.
    assert_eq!(solve_names(&u, &["py"]).unwrap(), ["py=3.11"]);
    assert_eq!(
        solve_names(&u, &["thrift (<< 0.14)"]).unwrap(),
        ["py=3.9", "thrift=0.13"]
    );
    let why = unsat(&u, &["thrift (<< 0.14)", "py (>= 3.11)"]);
    assert!(
        why.contains("thrift 0.13 (bullseye) depends on py (<< 3.10)"),
        "{why}"
    );
    assert!(why.contains("the recipe requires py (>= 3.11)"), "{why}");
    assert!(
        !why.contains("alternative#") && !why.contains("instance#"),
        "{why}"
    );
}

#[test]
fn multi_arch_any_needs_allowed() {
    let u = universe(&[(
        "s",
        500,
        "Package: tool\nVersion: 1\nDepends: perl:any\n\nPackage: perl\nVersion: 5\nMulti-Arch: allowed\n\n\
         Package: bad\nVersion: 1\nDepends: plain:any\n\nPackage: plain\nVersion: 1\n\n\
         Package: doc\nVersion: 1\nArchitecture: all\nDepends: perl\n",
    )]);
    assert_eq!(solve_names(&u, &["tool"]).unwrap(), ["perl=5", "tool=1"]);
    assert_eq!(solve_names(&u, &["doc"]).unwrap(), ["doc=1", "perl=5"]);
    let why = unsat(&u, &["bad"]);
    assert!(why.contains("plain:any"), "{why}");
}

#[test]
fn essential_set_comes_from_top_priority_sources() {
    let u = universe(&[
        (
            "new",
            500,
            "Package: bash\nVersion: 5\nEssential: yes\n\nPackage: libc\nVersion: 2\nPriority: required\n\nPackage: vim\nVersion: 9\n",
        ),
        (
            "old",
            100,
            "Package: oldreq\nVersion: 1\nPriority: required\n",
        ),
    ]);
    let roots = essential_requirements(&u);
    let names: Vec<String> = roots.iter().map(|r| r.dependency.to_string()).collect();
    assert_eq!(names, ["bash", "libc"]);
}

#[test]
fn recommends_are_soft() {
    let u = universe(&[(
        "s",
        500,
        "Package: a\nVersion: 1\nRecommends: b, missing\n\nPackage: b\nVersion: 1\n",
    )]);
    let with = solve(
        &u,
        Request {
            roots: vec![req("a")],
            recommends: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(with.chosen.len(), 2);
    let without = solve(
        &u,
        Request {
            roots: vec![req("a")],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(without.chosen.len(), 1);
}

#[test]
fn missing_package_is_named() {
    let u = universe(&[(
        "s",
        500,
        "Package: a\nVersion: 1\nDepends: ghost (>= 2)\n\nPackage: b\nVersion: 1\n",
    )]);
    let why = unsat(&u, &["a"]);
    assert!(why.contains("a 1 (s) depends on ghost (>= 2)"), "{why}");
    assert!(why.contains("no source has a package named ghost"), "{why}");
    let why = unsat(&u, &["b (>= 3)"]);
    assert!(
        why.contains("b (>= 3)") && why.contains("available: 1 (s)"),
        "{why}"
    );
}

#[test]
fn deterministic() {
    let text = "Package: x\nVersion: 1\nDepends: a | b, c | d\n\nPackage: a\nVersion: 1\nConflicts: d\n\n\
                Package: b\nVersion: 1\n\nPackage: c\nVersion: 1\nDepends: b\n\nPackage: d\nVersion: 1\n";
    let u = universe(&[("s", 500, text)]);
    let first = solve_names(&u, &["x"]).unwrap();
    for _ in 0..5 {
        assert_eq!(
            solve_names(&universe(&[("s", 500, text)]), &["x"]).unwrap(),
            first
        );
    }
}

#[test]
#[ignore = "prints explanations for eyeballing"]
fn print_explanations() {
    let u = universe(&[
        (
            "bookworm",
            500,
            "Package: python3\nVersion: 3.11.2-1\n\nPackage: python3-thrift\nVersion: 0.17.0-2\nDepends: python3 (>= 3.11~), python3 (<< 3.12)\n\nPackage: exim\nVersion: 1\nProvides: mta\nConflicts: mta\n\nPackage: postfix\nVersion: 1\nProvides: mta\nConflicts: mta\n\nPackage: app\nVersion: 1\nDepends: exim | foo\n",
        ),
        (
            "bullseye",
            100,
            "Package: python3\nVersion: 3.9.2-3\n\nPackage: python3-thrift\nVersion: 0.13.0-6\nDepends: python3 (<< 3.10), python3 (>= 3.9~)\n",
        ),
    ]);
    println!(
        "{}\n",
        unsat(&u, &["python3-thrift (<< 0.14)", "python3 (>= 3.11)"])
    );
    println!("{}\n", unsat(&u, &["app", "postfix"]));
}

#[test]
fn locked_versions_are_kept_while_allowed() {
    let u = universe(&[(
        "s",
        500,
        "Package: a\nVersion: 1\nDepends: b\n\nPackage: a\nVersion: 2\nDepends: b\n\n\
         Package: b\nVersion: 1\n\nPackage: b\nVersion: 2\n",
    )]);
    let a = u.instances_named("a")[0];
    let b = u.instances_named("b")[0];
    let prefer = [(a, 1), (b, 1)].into_iter().collect();
    let sol = solve(
        &u,
        Request {
            roots: vec![req("a")],
            prefer,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(sol.chosen[&a], 1);
    assert_eq!(sol.chosen[&b], 1);
    // A preference the requirements exclude gives way.
    let prefer = [(a, 1), (b, 1)].into_iter().collect();
    let sol = solve(
        &u,
        Request {
            roots: vec![req("a (>= 2)")],
            prefer,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((sol.chosen[&a], sol.chosen[&b]), (2, 1));
}

#[test]
fn multi_arch_same_foreign_and_no_across_architectures() {
    let u = universe(&[(
        "s",
        500,
        "Package: libfoo\nVersion: 1\nArchitecture: amd64\nMulti-Arch: same\n\n\
         Package: libfoo\nVersion: 1\nArchitecture: i386\nMulti-Arch: same\n\n\
         Package: libfoo\nVersion: 2\nArchitecture: i386\nMulti-Arch: same\n\n\
         Package: app32\nVersion: 1\nArchitecture: i386\nDepends: libfoo, tool\n\n\
         Package: tool\nVersion: 1\nArchitecture: amd64\nMulti-Arch: foreign\n\n\
         Package: plain\nVersion: 1\nArchitecture: amd64\n\n\
         Package: plain\nVersion: 1\nArchitecture: i386\n",
    )]);
    let sol = solve(
        &u,
        Request {
            roots: vec![req("libfoo"), req("app32:i386")],
            ..Default::default()
        },
    )
    .unwrap();
    let mut got: Vec<String> = sol
        .chosen
        .iter()
        .map(|(&id, &k)| {
            format!(
                "{}:{}={}",
                u.instance(id).name,
                u.instance(id).arch,
                u.candidate(id, k).version
            )
        })
        .collect();
    got.sort();
    // Multi-Arch: same co-installs only at one version (i386's newer 2 is not
    // taken); the amd64 tool is Multi-Arch: foreign, so it serves i386's dependency.
    assert_eq!(
        got,
        [
            "app32:i386=1",
            "libfoo:amd64=1",
            "libfoo:i386=1",
            "tool:amd64=1"
        ]
    );
    let why = unsat(&u, &["plain", "plain:i386"]);
    assert!(why.contains("not co-installable"), "{why}");
}
