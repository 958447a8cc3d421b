//! `imgbuild solve` over more than one source and what reads its lock: a flat
//! repository as a second source, `why`/`tree`/`--json`, recipe errors, and
//! the tools tree solved into `[[tool]]`.

mod support;

use support::solving::*;
use support::*;

#[test]
fn flat_repository_as_second_source() {
    // The kubernetes-r2lab shape: a Debian suite plus the upstream flat repository.
    let site = Site::new();
    site.archive("debian")
        .suite("trixie", &["amd64"], &["main"])
        .add(DebSpec::new("conntrack", "1.4.8-2", "amd64"))
        .add(DebSpec::new("iptables", "1.8.11-2", "amd64"))
        .add(DebSpec::new("kubectl", "1.32.3+ds-1", "amd64"))
        .build();
    site.flat("kubernetes", &["amd64"])
        .add(
            DebSpec::new("kubelet", "1.32.9-1.1", "amd64")
                .depends("conntrack, iptables (>= 1.4.21), kubernetes-cni (>= 1.1.1)"),
        )
        .add(
            DebSpec::new("kubeadm", "1.32.9-1.1", "amd64")
                .depends("kubelet (>= 1.19.0), kubectl (>= 1.19.0), cri-tools (>= 1.30.0)"),
        )
        .add(DebSpec::new("kubectl", "1.32.9-1.1", "amd64"))
        .add(DebSpec::new("cri-tools", "1.32.0-1.1", "amd64"))
        .add(DebSpec::new("kubernetes-cni", "1.6.0-1.1", "amd64"))
        .build();
    let server = site.serve();
    let ws = Workspace::new();
    let key = ws.install_key(TestKey::primary(), "test.pgp");
    let debian = SourceToml::archive("trixie", "debian", "trixie")
        .components(&["main"])
        .keyring(&key);
    let k8s = SourceToml::archive("kubernetes-v1.32", "kubernetes-v1.32", "/")
        .keyring(&key)
        .priority(400);
    ws.write_recipe(
        "node",
        &RecipeToml::new("amd64")
            .essential(false)
            .source(debian)
            .to_toml(),
    );
    ws.write_recipe(
        "k8s",
        &RecipeToml::new("amd64")
            .extends("node")
            .packages(&["kubeadm", "kubectl"])
            .source(k8s)
            .to_toml(),
    );
    let m1 = format!("debian={}", server.url("debian/"));
    let m2 = format!("kubernetes-v1.32={}", server.url("kubernetes/"));
    ws.run(&["solve", "k8s", "--mirror", &m1, "--mirror", &m2])
        .assert_success();
    let l = lock(&ws, "k8s");
    let kubelet = l.package("kubelet").unwrap();
    assert_eq!(kubelet.source, "kubernetes-v1.32");
    assert_eq!(kubelet.filename, "amd64/kubelet_1.32.9-1.1_amd64.deb");
    assert_eq!(l.package("conntrack").unwrap().source, "trixie");
    // Debian's kubectl wins by priority, as the kubernetes-r2lab recipe intends.
    assert_eq!(l.package("kubectl").unwrap().version, "1.32.3+ds-1");
    assert_eq!(
        l.sources
            .iter()
            .map(|s| s.suite.as_str())
            .collect::<Vec<_>>(),
        ["trixie", "/"]
    );
}

#[test]
fn why_tree_and_json() {
    let (site, _repo) = relations_site();
    let server = site.serve();
    let ws = Workspace::new();
    recipe(&ws, "base", &server.url("debian/"), &["app"], true);
    let out = ws.run(&["solve", "base", "--json"]).assert_success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["packages"], 6);
    let out = ws.run(&["why", "base", "libfoo"]).assert_success();
    assert!(
        out.stdout.contains("the recipe requires app"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("app 1.0 depends on libfoo (>= 1.2) | libbar"),
        "{}",
        out.stdout
    );
    let out = ws.run(&["why", "base", "base"]).assert_success();
    assert!(
        out.stdout.contains("Essential/required set"),
        "{}",
        out.stdout
    );
    ws.run(&["why", "base", "postfix"]).assert_failure();
    let out = ws.run(&["tree", "base"]).assert_success();
    assert!(
        out.stdout.contains("└── app 1.0") && out.stdout.contains("exim 4"),
        "{}",
        out.stdout
    );
}

#[test]
fn recipe_errors_name_the_file_and_line() {
    let ws = Workspace::new();
    let key = ws.install_key(TestKey::primary(), "test.pgp");
    ws.write_recipe(
        "bad",
        &format!(
            "architecture = \"amd64\"\npackages = [\n  \"ok\",\n  \"broken (>= )\",\n]\n\n[[source]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/\"\nsuite = \"x\"\ncomponents = [\"main\"]\nkeyring = \"{key}\"\n"
        ),
    );
    let out = ws.run(&["solve", "bad"]).assert_failure();
    assert!(out.stderr.contains("recipes/bad.toml:4"), "{}", out.stderr);
    ws.write_recipe("typo", "architecture = \"amd64\"\npakages = []\n");
    let out = ws.run(&["solve", "typo"]).assert_failure();
    assert!(
        out.stderr.contains("recipes/typo.toml:2") && out.stderr.contains("packages"),
        "{}",
        out.stderr
    );
}

/// `tools = [...]` is solved as a request of its own against the recipe's
/// sources into `[[tool]]`: the tools, what they depend on and the Essential
/// set, independent of the image's packages; `--locked` sees a tools change.
#[test]
fn tools_are_solved_into_their_own_section() {
    let site = Site::new();
    let repo = site
        .archive("debian")
        .suite("bookworm", &["amd64"], &["main"])
        .add(DebSpec::new("base", "1", "amd64").essential())
        .add(DebSpec::new("app", "1.0", "amd64"))
        .add(DebSpec::new("mkfs", "1.47", "amd64").depends("libext2fs (>= 1.40)"))
        .add(DebSpec::new("libext2fs", "1.47", "amd64"))
        .add(DebSpec::new("imgtool", "8.0", "amd64").depends("mkfs"))
        .build();
    let server = site.serve();
    let ws = Workspace::new();
    let src = ws.trusted_source("bookworm", &server.url("debian/"), "bookworm", &["main"]);
    let text = |tools: &str| {
        RecipeToml::new("amd64")
            .packages(&["app"])
            .line(&format!("tools = [{tools}]"))
            .source(src.clone())
            .to_toml()
    };
    ws.write_recipe("img", &text("\"imgtool\""));
    ws.run(&["solve", "img"]).assert_success();
    let l = lock(&ws, "img");
    let names = |ps: &[imgbuild::lock::LockedPackage]| {
        ps.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&l.packages), ["app", "base"]);
    assert_eq!(names(&l.tools), ["base", "imgtool", "libext2fs", "mkfs"]);
    let tool = l.tools.iter().find(|p| p.name == "imgtool").unwrap();
    assert_eq!(tool.reason.as_deref(), Some("recipe"));
    let deb = repo.deb("mkfs", "1.47");
    let mkfs = l.tools.iter().find(|p| p.name == "mkfs").unwrap();
    assert_eq!(
        (mkfs.sha256.as_str(), mkfs.size),
        (deb.sha256.as_str(), deb.size)
    );
    let written = ws.read("locks/img.lock");
    assert!(written.contains("\n[[tool]]\nname = \"base\""), "{written}");
    // Solving again changes nothing; changing the tools makes the lock stale.
    ws.run(&["solve", "img", "--locked"]).assert_success();
    ws.write_recipe("img", &text("\"mkfs\""));
    let out = ws.run(&["solve", "img", "--locked"]).assert_failure();
    assert!(out.stderr.contains("recipe changed"), "{}", out.stderr);
    ws.run(&["solve", "img"]).assert_success();
    assert_eq!(
        names(&lock(&ws, "img").tools),
        ["base", "libext2fs", "mkfs"]
    );
    // An unsatisfiable tool names the tools solve.
    ws.write_recipe("img", &text("\"no-such-tool\""));
    let out = ws.run(&["solve", "img"]).assert_failure();
    assert!(
        out.stderr.contains("cannot solve the tools of `img`"),
        "{}",
        out.stderr
    );
}
