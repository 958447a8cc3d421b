//! Recipe parsing, merging and hashing tests, on fixture workspaces in temp dirs.

use std::path::Path;

use super::*;

/// A workspace in a temp dir with `recipes/keys/debian.pgp`.
struct Ws {
    dir: tempfile::TempDir,
}

const SOURCE: &str = r#"
[[source]]
name = "bookworm"
archive = "debian"
suite = "bookworm"
components = ["main"]
keyring = "keys/debian.pgp"
"#;

impl Ws {
    fn new() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("recipes/keys")).unwrap();
        std::fs::write(dir.path().join("recipes/keys/debian.pgp"), "KEY ONE").unwrap();
        Ws { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn recipe(&self, name: &str, text: &str) {
        self.write(&format!("recipes/{name}.toml"), text);
    }

    fn load(&self, spec: &str) -> Recipe {
        Recipe::load(self.root(), spec).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes `recipes/x.toml` and returns the load error as displayed.
    fn err(&self, text: &str) -> String {
        self.recipe("x", text);
        match Recipe::load(self.root(), "x") {
            Ok(r) => panic!("expected an error, got {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Writes `recipes/x.toml` and returns its hash.
    fn hash(&self, text: &str) -> String {
        self.recipe("x", text);
        self.load("x").canonical_hash()
    }
}

#[test]
fn parses_a_full_recipe_with_defaults() {
    let ws = Ws::new();
    ws.recipe(
        "sonic-p4",
        &format!(
            "name = \"sonic-p4\"\narchitecture = \"amd64\"\nforeign-architectures = [\"i386\"]\n\
             packages = [\n  \"redis-server\",\n  \"python3-thrift (<< 0.14) | python3-thrift\",\n]\n{SOURCE}\n\
             [[source]]\nname = \"local\"\nurl = \"FILE:///srv/mirror/local\"\nsuite = \"/\"\n\
             keyring = \"keys/debian.pgp\"\npriority = 900\n"
        ),
    );
    let r = ws.load("sonic-p4");
    assert_eq!(r.name, "sonic-p4");
    assert_eq!(r.architecture, "amd64");
    assert_eq!(r.foreign_architectures, ["i386"]);
    assert!(r.essential);
    assert!(!r.recommends);
    assert_eq!(r.packages.len(), 2);
    assert_eq!(
        r.packages[1].text,
        "python3-thrift (<< 0.14) | python3-thrift"
    );
    assert_eq!(r.packages[1].dependency.alternatives.len(), 2);
    assert_eq!(r.packages[0].origin, "recipes/sonic-p4.toml:5");
    assert_eq!(r.packages[1].origin, "recipes/sonic-p4.toml:6");
    let [deb, local] = &r.sources[..] else {
        panic!("two sources expected")
    };
    assert_eq!(deb.location, Location::Archive("debian".into()));
    assert_eq!(deb.priority, DEFAULT_PRIORITY);
    assert_eq!(deb.components, ["main"]);
    assert!(deb.keyring.is_absolute());
    assert!(deb.keyring.ends_with("recipes/keys/debian.pgp"));
    // sha256("KEY ONE")
    assert_eq!(
        deb.keyring_sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"KEY ONE"))
    );
    // Scheme lowercased and a trailing slash added.
    assert_eq!(
        local.location,
        Location::Url("file:///srv/mirror/local/".into())
    );
    assert!(local.is_flat());
    assert!(local.components.is_empty());
    assert_eq!(local.priority, 900);
    assert_eq!(r.source("local").map(|s| s.priority), Some(900));
}

#[test]
fn load_by_path_and_by_name_agree() {
    let ws = Ws::new();
    ws.recipe("x", &format!("architecture = \"amd64\"\n{SOURCE}"));
    let by_name = ws.load("x");
    let path = ws.root().join("recipes/x.toml");
    let by_path = Recipe::load(ws.root(), path.to_str().unwrap()).unwrap();
    assert_eq!(by_name.canonical_hash(), by_path.canonical_hash());
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = Recipe::parse_str(&text, &path).unwrap();
    assert_eq!(parsed.canonical_hash(), by_name.canonical_hash());
    let e = Recipe::load(ws.root(), "nope").unwrap_err().to_string();
    assert_eq!(e, "no recipe `nope`: recipes/nope.toml does not exist");
}

#[test]
fn reports_toml_errors_with_file_line_col_and_hints() {
    let ws = Ws::new();
    let cases: &[(&str, &str)] = &[
        (
            "architecture = \"amd64\"\npakages = [\"a\"]\n",
            "recipes/x.toml:2:1: unknown key `pakages`; did you mean `packages`?",
        ),
        (
            "architecture = 5\n",
            "recipes/x.toml:1:16: invalid type: integer `5`, expected a string",
        ),
        (
            "architecture = \"amd64\"\narchitecture = \"arm64\"\n",
            "recipes/x.toml:2:1: duplicate key",
        ),
        (
            "architecture = \"amd64\"\n[[sources]]\nname = \"a\"\n",
            "recipes/x.toml:2:3: unknown key `sources`; did you mean `source`?",
        ),
        (
            "architecture = \"amd64\"\n\n[[source]]\nname = \"a\"\nsuit = \"b\"\n",
            "recipes/x.toml:5:1: unknown key `suit`; did you mean `suite`?",
        ),
        (
            "architecture = \"amd64\"\n\n[[source]]\nname = \"a\"\nsuite = \"b\"\n",
            "recipes/x.toml:3:1: missing required key `keyring`",
        ),
        (
            "essential = \"yes\"\n",
            "recipes/x.toml:1:13: invalid type: string \"yes\", expected a boolean",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(ws.err(text), *want, "for {text:?}");
    }
}

#[test]
fn reports_bad_relations_at_their_own_line() {
    let ws = Ws::new();
    let e = ws.err(&format!(
        "architecture = \"amd64\"\npackages = [\n  \"ok\",\n    \"foo (>= )\",\n]\n{SOURCE}"
    ));
    assert_eq!(
        e,
        "recipes/x.toml:4:5: invalid relation `foo (>= )`: missing version"
    );
}

/// `[[source]]` text with `body` appended to a minimal valid header.
fn recipe_with_source(body: &str) -> String {
    format!("architecture = \"amd64\"\n\n[[source]]\nname = \"s\"\n{body}")
}

#[test]
fn reports_bad_sources() {
    let ws = Ws::new();
    let key = "keyring = \"keys/debian.pgp\"\n";
    let cases: Vec<(String, &str)> = vec![
        (
            recipe_with_source(&format!(
                "archive = \"debian\"\nurl = \"https://example.org/debian\"\nsuite = \"b\"\ncomponents = [\"main\"]\n{key}"
            )),
            "recipes/x.toml:6:7: source `s` sets both `archive` and `url`; keep exactly one of them",
        ),
        (
            recipe_with_source(&format!("suite = \"b\"\ncomponents = [\"main\"]\n{key}")),
            "recipes/x.toml:3:1: source `s` needs `archive` or `url`; `archive = \"debian\"` names a configured archive; `url` is a literal http, https or file URL",
        ),
        (
            recipe_with_source(&format!(
                "url = \"ftp://example.org/debian\"\nsuite = \"/\"\n{key}"
            )),
            "recipes/x.toml:5:7: unsupported url scheme `ftp`; use http, https or file",
        ),
        (
            recipe_with_source(&format!("url = \"not a url\"\nsuite = \"/\"\n{key}")),
            "recipes/x.toml:5:7: invalid url `not a url`: relative URL without a base",
        ),
        (
            recipe_with_source(&format!(
                "url = \"file:///srv/flat\"\nsuite = \"/\"\ncomponents = [\"main\"]\n{key}"
            )),
            "recipes/x.toml:7:14: source `s` is a flat repository (`suite = \"/\"`) but lists components; remove `components`",
        ),
        (
            recipe_with_source(&format!(
                "archive = \"debian\"\nsuite = \"bookworm\"\n{key}"
            )),
            "recipes/x.toml:6:9: source `s` has suite `bookworm` but no components; add e.g. `components = [\"main\"]`, or use `suite = \"/\"` for a flat repository",
        ),
        (
            recipe_with_source(
                "archive = \"debian\"\nsuite = \"/\"\nkeyring = \"keys/missing.pgp\"\n",
            ),
            "recipes/x.toml:7:11: keyring `keys/missing.pgp` not found (recipes/keys/missing.pgp); keyring paths are relative to the recipe's directory",
        ),
        (
            format!("architecture = \"amd64\"\n{SOURCE}\n{SOURCE}"),
            "recipes/x.toml:12:8: duplicate source name `bookworm`; first defined at line 4",
        ),
    ];
    for (text, want) in &cases {
        assert_eq!(ws.err(text), *want, "for {text}");
    }
}

#[test]
fn reports_bad_top_level_values() {
    let ws = Ws::new();
    assert_eq!(
        ws.err(&format!("name = \"y\"\narchitecture = \"amd64\"\n{SOURCE}")),
        "recipes/x.toml:1:8: name `y` does not match the file name `x.toml`; rename the file, or drop `name` (it defaults to the file name)"
    );
    assert_eq!(
        ws.err(SOURCE),
        "recipes/x.toml:1:1: missing required key `architecture`; set it here or in the recipe this one extends"
    );
    assert_eq!(
        ws.err("architecture = \"amd64\"\n"),
        "recipes/x.toml:1:1: recipe has no `[[source]]`; add one here or in the recipe this one extends"
    );
    assert_eq!(
        ws.err(&format!("architecture = \"AMD 64\"\n{SOURCE}")),
        "recipes/x.toml:1:16: invalid architecture `AMD 64`"
    );
}

#[test]
fn reports_extends_problems() {
    let ws = Ws::new();
    assert_eq!(
        ws.err(&format!(
            "architecture = \"amd64\"\nextends = \"base\"\n{SOURCE}"
        )),
        "recipes/x.toml:2:11: extends `base`, but recipes/base.toml does not exist; `extends` names a recipe in the same directory"
    );
    ws.recipe("a", "extends = \"b\"\n");
    ws.recipe("b", "\n\nextends = \"x\"\n");
    assert_eq!(
        ws.err(&format!(
            "extends = \"a\"\narchitecture = \"amd64\"\n{SOURCE}"
        )),
        "recipes/b.toml:3:11: `extends` cycle: x → a → b → x"
    );
    assert_eq!(
        ws.err("extends = \"x\"\n"),
        "recipes/x.toml:1:11: `extends` cycle: x → x"
    );
    ws.recipe("base", &format!("architecture = \"amd64\"\n{SOURCE}"));
    assert_eq!(
        ws.err("extends = \"base\"\narchitecture = \"arm64\"\n"),
        "recipes/x.toml:2:16: architecture `arm64` differs from `amd64` set in recipes/base.toml:1"
    );
}

#[test]
fn extends_merges_parent_first() {
    let ws = Ws::new();
    ws.write("recipes/keys/other.pgp", "KEY TWO");
    ws.recipe(
        "base",
        &format!(
            "architecture = \"amd64\"\nrecommends = true\nforeign-architectures = [\"i386\"]\n\
             packages = [\"a\", \"b (>= 1)\"]\n{SOURCE}\n\
             [[source]]\nname = \"extra\"\nurl = \"https://example.org/extra/\"\nsuite = \"/\"\n\
             keyring = \"keys/debian.pgp\"\n"
        ),
    );
    ws.recipe(
        "child",
        "extends = \"base\"\nessential = false\nforeign-architectures = [\"armhf\", \"i386\"]\n\
         packages = [\"c\", \"b(>=1)\", \"a\"]\n\
         [[source]]\nname = \"bookworm\"\nurl = \"file:///srv/mirror/debian/\"\nsuite = \"bookworm\"\n\
         components = [\"main\", \"contrib\"]\nkeyring = \"keys/other.pgp\"\npriority = 600\n\
         [[source]]\nname = \"mine\"\nurl = \"file:///srv/mine/\"\nsuite = \"/\"\nkeyring = \"keys/other.pgp\"\n",
    );
    let r = ws.load("child");
    assert_eq!(r.name, "child");
    assert!(r.path.ends_with("recipes/child.toml"));
    assert_eq!(r.architecture, "amd64", "inherited");
    assert_eq!(r.foreign_architectures, ["i386", "armhf"]);
    assert!(!r.essential, "child's value wins");
    assert!(r.recommends, "parent's value kept when the child is silent");
    let names: Vec<&str> = r.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bookworm", "extra", "mine"], "replaced in place");
    let bookworm = r.source("bookworm").unwrap();
    assert_eq!(bookworm.priority, 600);
    assert_eq!(bookworm.components, ["main", "contrib"]);
    assert_eq!(
        bookworm.location,
        Location::Url("file:///srv/mirror/debian/".into())
    );
    let texts: Vec<&str> = r.packages.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(
        texts,
        ["a", "b (>= 1)", "c"],
        "parent first, duplicates dropped"
    );
    assert_eq!(r.packages[1].origin, "recipes/base.toml:4");
    assert_eq!(r.packages[2].origin, "recipes/child.toml:4");
}

#[test]
fn hash_ignores_layout_and_spelling() {
    let ws = Ws::new();
    let base = ws.hash(&format!(
        "architecture = \"amd64\"\npackages = [\"foo (>= 1)\", \"a | b\"]\n{SOURCE}"
    ));
    assert!(base.starts_with("sha256:") && base.len() == 7 + 64);
    // Whitespace, comments, key order, CRLF, relation spacing.
    let reordered = "# comment\r\npackages = [ \"foo(>=1)\" ,\r\n  \"a|b\" ]\r\n\r\n[[source]]\r\n\
        keyring = \"keys/debian.pgp\" # trailing\r\ncomponents=[\"main\"]\r\nsuite=\"bookworm\"\r\n\
        name=\"bookworm\"\r\narchive = \"debian\"\r\npriority = 500\r\n";
    let text = format!(
        "essential = true\n{}",
        reordered.replacen(
            "# comment\r\n",
            "# comment\r\narchitecture = 'amd64'\r\n",
            1
        )
    );
    assert_eq!(ws.hash(&text), base);
    // Same content at another keyring path.
    ws.write("recipes/elsewhere/copy.pgp", "KEY ONE");
    let moved = SOURCE.replace("keys/debian.pgp", "elsewhere/copy.pgp");
    assert_eq!(
        ws.hash(&format!(
            "architecture = \"amd64\"\npackages = [\"foo (>= 1)\", \"a | b\"]\n{moved}"
        )),
        base
    );
    // Split across `extends` (with a duplicate requirement in the child).
    ws.recipe(
        "base",
        &format!("architecture = \"amd64\"\npackages = [\"foo (>= 1)\"]\n{SOURCE}"),
    );
    assert_eq!(
        ws.hash("extends = \"base\"\npackages = [\"foo (>=1)\", \"a | b\"]\n"),
        base
    );
    // Foreign architectures are a set.
    let f1 = ws.hash(&format!(
        "architecture = \"amd64\"\nforeign-architectures = [\"i386\", \"armhf\"]\n{SOURCE}"
    ));
    let f2 = ws.hash(&format!(
        "architecture = \"amd64\"\nforeign-architectures = [\"armhf\", \"i386\"]\n{SOURCE}"
    ));
    assert_eq!(f1, f2);
}

#[test]
fn hash_changes_with_content() {
    let ws = Ws::new();
    let text = format!("architecture = \"amd64\"\npackages = [\"foo (>= 1)\", \"bar\"]\n{SOURCE}");
    let base = ws.hash(&text);
    let variants = [
        text.replace("foo (>= 1)", "foo (>= 2)"),
        text.replace("\"bar\"]", "\"bar\", \"baz\"]"),
        text.replace("\"foo (>= 1)\", \"bar\"", "\"bar\", \"foo (>= 1)\""),
        text.replace("amd64", "arm64"),
        text.replace("[\"main\"]", "[\"main\", \"contrib\"]"),
        text.replace(
            "archive = \"debian\"",
            "url = \"https://example.org/debian/\"",
        ),
        text.replace("suite = \"bookworm\"", "suite = \"trixie\""),
        format!("{text}priority = 501\n"),
        format!("essential = false\n{text}"),
        format!("recommends = true\n{text}"),
    ];
    for v in &variants {
        assert_ne!(ws.hash(v), base, "for {v}");
    }
    // Keyring contents count even though the path is unchanged.
    ws.write("recipes/keys/debian.pgp", "KEY ROTATED");
    assert_ne!(ws.hash(&text), base);
}

/// `architecture` + the source, then `body` from line 9 on.
fn with_steps(body: &str) -> String {
    format!("architecture = \"amd64\"{SOURCE}\n{body}")
}

#[test]
fn parses_steps_in_order_with_defaults() {
    let ws = Ws::new();
    ws.write("recipes/files/interfaces", "auto lo\n");
    ws.recipe(
        "x",
        &with_steps(
            "[[step]]\ncopy = \"files/interfaces\"\nto = \"/etc/network/interfaces\"\n\
             [[step]]\nwrite = \"/etc/m.conf\"\ncontent = \"overlay\\n\"\nmode = \"0600\"\nowner = \"0:42\"\n\
             [[step]]\nrun = [\"sh\", \"-c\", \"true\"]\n\
             [[step]]\nsysctl = { \"net.ipv4.ip_forward\" = \"1\" }\n\
             [[step]]\nenable = [\"ssh.service\"]\n\
             [[step]]\nmask = [\"swap.target\"]\n",
        ),
    );
    let r = ws.load("x");
    let keys: Vec<&str> = r.steps.iter().map(|s| s.action.key()).collect();
    assert_eq!(keys, ["copy", "write", "run", "sysctl", "enable", "mask"]);
    assert_eq!(r.steps[0].origin, "recipes/x.toml:9");
    match &r.steps[0].action {
        StepAction::Copy {
            source, mode, to, ..
        } => {
            assert!(source.ends_with("recipes/files/interfaces"));
            assert_eq!((*mode, to.as_str()), (0o644, "/etc/network/interfaces"));
        }
        a => panic!("{a:?}"),
    }
    assert_eq!(
        r.steps[1].action,
        StepAction::Write {
            path: "/etc/m.conf".into(),
            content: "overlay\n".into(),
            mode: 0o600,
            owner: Some((0, 42)),
        }
    );
}

#[test]
fn parses_user_and_group_steps() {
    let ws = Ws::new();
    ws.recipe(
        "x",
        &with_steps(
            "[[step]]\ngroup = \"p4\"\ngid = 1100\nsystem = true\n\
             [[step]]\nuser = \"admin\"\nuid = 1000\ngroups = [\"sudo\", \"p4\"]\n\
             shell = \"/bin/bash\"\npassword-hash = \"\"\n",
        ),
    );
    let r = ws.load("x");
    assert_eq!(
        r.steps[0].action,
        StepAction::Group {
            name: "p4".into(),
            gid: Some(1100),
            system: true,
        }
    );
    assert_eq!(
        r.steps[1].action,
        StepAction::User(crate::recipe::UserAccount {
            name: "admin".into(),
            uid: Some(1000),
            groups: vec!["sudo".into(), "p4".into()],
            shell: Some("/bin/bash".into()),
            home: None,
            system: false,
            password_hash: Some(String::new()),
        })
    );
}

#[test]
fn reports_bad_steps_with_file_line() {
    let ws = Ws::new();
    let cases: &[(&str, &str)] = &[
        (
            "[[step]]\ncopy = \"files/nope\"\nto = \"/etc/x\"\n",
            "recipes/x.toml:10:8: `copy` source `files/nope` not found",
        ),
        (
            "[[step]]\nwrite = \"/etc/x\"\ncontent = \"\"\nrun = [\"true\"]\n",
            "recipes/x.toml:12:7: step sets both `write` and `run`",
        ),
        (
            "[[step]]\nwrite = \"/etc/x\"\ncontent = \"\"\nfrobnicate = 1\n",
            "recipes/x.toml:12:1: unknown key `frobnicate`",
        ),
        (
            "[[step]]\nmode = \"0644\"\n",
            "recipes/x.toml:9:1: step has no action",
        ),
        (
            "[[step]]\nwrite = \"/etc/../x\"\ncontent = \"\"\n",
            "recipes/x.toml:10:9: invalid path in the image `/etc/../x`",
        ),
        (
            "[[step]]\nwrite = \"etc/x\"\ncontent = \"\"\n",
            "recipes/x.toml:10:9: invalid path in the image `etc/x`",
        ),
        (
            "[[step]]\nwrite = \"/etc/x\"\ncontent = \"\"\nmode = \"rw\"\n",
            "recipes/x.toml:12:8: invalid mode `rw`",
        ),
        (
            "[[step]]\nwrite = \"/etc/x\"\ncontent = \"\"\nowner = \"root\"\n",
            "recipes/x.toml:12:9: invalid owner `root`",
        ),
        (
            "[[step]]\nwrite = \"/etc/x\"\n",
            "recipes/x.toml:10:9: `write` step has no `content`",
        ),
        (
            "[[step]]\nrun = [\"true\"]\nmode = \"0644\"\n",
            "recipes/x.toml:11:8: `mode` does not apply to a `run` step",
        ),
        (
            "[[step]]\nmask = [\"../x.service\"]\n",
            "recipes/x.toml:10:9: invalid unit name `../x.service`",
        ),
        (
            "[[step]]\nrun = []\n",
            "recipes/x.toml:10:7: `run` needs a program",
        ),
        (
            "[[step]]\nuser = \"Admin\"\n",
            "recipes/x.toml:10:8: invalid user or group name `Admin`",
        ),
        (
            "[[step]]\nuser = \"admin\"\ngroups = [\"sudo\", \"9x\"]\n",
            "recipes/x.toml:11:19: invalid user or group name `9x`",
        ),
        (
            "[[step]]\ngroup = \"p4\"\nuid = 5\n",
            "recipes/x.toml:11:7: `uid` does not apply to a `group` step",
        ),
        (
            "[[step]]\nuser = \"admin\"\npassword-hash = \"a:b\"\n",
            "recipes/x.toml:11:17: invalid `password-hash`",
        ),
        (
            "[[step]]\nuser = \"admin\"\nshell = \"bash\"\n",
            "recipes/x.toml:11:9: invalid path in the image `bash`",
        ),
    ];
    for (body, want) in cases {
        let e = ws.err(&with_steps(body));
        assert!(e.starts_with(want), "for {body:?}:\n got {e}\nwant {want}");
    }
}

#[test]
fn steps_change_the_build_hash_not_the_canonical_hash() {
    let ws = Ws::new();
    ws.write("recipes/files/a", "one\n");
    let plain = with_steps("");
    let copy = with_steps("[[step]]\ncopy = \"files/a\"\nto = \"/etc/a\"\n");
    ws.recipe("x", &plain);
    let base = ws.load("x");
    ws.recipe("x", &copy);
    let first = ws.load("x");
    assert_eq!(first.canonical_hash(), base.canonical_hash());
    assert_ne!(first.build_hash(), base.build_hash());
    // The copied file's contents count…
    ws.write("recipes/files/a", "two\n");
    let edited = ws.load("x");
    assert_ne!(edited.build_hash(), first.build_hash());
    assert_eq!(edited.canonical_hash(), base.canonical_hash());
    // …its location and the step's line do not.
    ws.write("recipes/other/b", "two\n");
    ws.recipe(
        "x",
        &with_steps("\n\n[[step]]\nto = \"/etc/a\"\ncopy = \"other/b\"\n"),
    );
    let _ = ws.load("x");
    // `from` as written is part of the hash (it is shown in logs), so only
    // the line moves here:
    ws.recipe(
        "x",
        &with_steps("\n\n[[step]]\nto = \"/etc/a\"\ncopy = \"files/a\"\n"),
    );
    assert_eq!(ws.load("x").build_hash(), edited.build_hash());
    // Parents' steps come first.
    ws.recipe("base", &with_steps("[[step]]\nmask = [\"a.service\"]\n"));
    ws.recipe(
        "x",
        "extends = \"base\"\n[[step]]\nmask = [\"b.service\"]\n",
    );
    let r = ws.load("x");
    assert_eq!(
        r.steps
            .iter()
            .map(|s| s.origin.as_str())
            .collect::<Vec<_>>(),
        ["recipes/base.toml:9", "recipes/x.toml:2"]
    );
}

#[test]
fn hostname_is_a_build_setting() {
    let ws = Ws::new();
    ws.recipe("x", &with_steps(""));
    let base = ws.load("x");
    assert_eq!(base.hostname, None);
    ws.recipe("x", &format!("hostname = \"\"\n{}", with_steps("")));
    let none = ws.load("x");
    assert_eq!(none.hostname.as_deref(), Some(""));
    assert_eq!(
        none.canonical_hash(),
        base.canonical_hash(),
        "the lock does not depend on it"
    );
    assert_ne!(none.build_hash(), base.build_hash(), "the build does");
    ws.recipe(
        "x",
        &format!("hostname = \"node-1.lab\"\n{}", with_steps("")),
    );
    assert_eq!(ws.load("x").hostname.as_deref(), Some("node-1.lab"));
    let e = ws.err(&format!("hostname = \"bad_name\"\n{}", with_steps("")));
    assert!(
        e.starts_with("recipes/x.toml:1:12: invalid hostname `bad_name`"),
        "{e}"
    );
}

#[test]
fn tools_are_merged_parent_first_and_hashed() {
    let ws = Ws::new();
    let plain = ws.hash(&format!("architecture = \"amd64\"\n{SOURCE}"));
    ws.recipe(
        "base",
        &format!("architecture = \"amd64\"\ntools = [\"e2fsprogs\", \"qemu-utils\"]\n{SOURCE}"),
    );
    ws.recipe(
        "child",
        "extends = \"base\"\ntools = [\"grub-pc-bin\", \"e2fsprogs\"]\n",
    );
    let child = ws.load("child");
    let tools: Vec<&str> = child.tools.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(tools, ["e2fsprogs", "qemu-utils", "grub-pc-bin"]);
    assert!(
        child.tools[2].origin.ends_with("recipes/child.toml:2"),
        "{}",
        child.tools[2].origin
    );
    let with = ws.hash(&format!(
        "architecture = \"amd64\"\ntools = [\"e2fsprogs\"]\n{SOURCE}"
    ));
    assert_ne!(plain, with, "tools are part of the canonical hash");
    let e = ws.err(&format!(
        "architecture = \"amd64\"\ntools = [\"e2fsprogs (>>\"]\n{SOURCE}"
    ));
    assert!(e.starts_with("recipes/x.toml:2:10: "), "{e}");
}

#[test]
fn disk_table_defaults_overrides_and_errors() {
    let ws = Ws::new();
    ws.recipe(
        "base",
        &format!("architecture = \"amd64\"\n[disk]\nsize = \"4GiB\"\n{SOURCE}"),
    );
    let base = ws.load("base").disk.expect("a disk");
    assert_eq!(base.size, 4 << 30);
    assert_eq!(base.uuid.len(), 36);
    assert_ne!(base.uuid, base.hash_seed);
    let hash = ws.load("base").canonical_hash();
    // A child inherits the size but gets UUIDs of its own name; keys override.
    ws.recipe("child", "extends = \"base\"\n");
    let child = ws.load("child").disk.expect("inherited");
    assert_eq!(child.size, base.size);
    assert_ne!(child.uuid, base.uuid);
    ws.recipe(
        "fixed",
        "extends = \"base\"\n[disk]\nsize = \"1G\"\nuuid = \"0F3C6B1E-8A52-4D67-9C1E-2B7A5E0D4F19\"\n",
    );
    let fixed = ws.load("fixed").disk.unwrap();
    assert_eq!(fixed.size, 1 << 30);
    assert_eq!(fixed.uuid, "0f3c6b1e-8a52-4d67-9c1e-2b7a5e0d4f19");
    // Disk settings change the build, not the lock.
    ws.recipe(
        "base",
        &format!("architecture = \"amd64\"\n[disk]\nsize = \"8GiB\"\n{SOURCE}"),
    );
    assert_eq!(ws.load("base").canonical_hash(), hash);
    let e = ws.err(&format!(
        "architecture = \"amd64\"\n[disk]\nsize = \"4GB\"\n{SOURCE}"
    ));
    assert!(
        e.starts_with("recipes/x.toml:3:8: invalid disk size unit `GB`"),
        "{e}"
    );
    let e = ws.err(&format!(
        "architecture = \"amd64\"\n[disk]\nsize = \"4G\"\nhash-seed = \"nope\"\n{SOURCE}"
    ));
    assert!(
        e.starts_with("recipes/x.toml:4:13: invalid `hash-seed` `nope`"),
        "{e}"
    );
    let e = ws.err(&format!(
        "architecture = \"amd64\"\n[disk]\nsize = \"4G\"\nlabel = \"x\"\n{SOURCE}"
    ));
    assert!(e.contains("unknown key `label`"), "{e}");
}

/// A recipe with an `[onie]` table (`extra` lines appended inside it).
fn with_onie(extra: &str) -> String {
    format!(
        "architecture = \"amd64\"\npackages = [\"a\"]\n{SOURCE}\n[onie]\nmachine = \"accton_wedge100bf_32x\"\nplatforms = [\"x86_64-accton_wedge100bf_32x-r0\", \"x86_64-kvm_x86_64-r0\"]\n{extra}"
    )
}

#[test]
fn onie_is_a_build_setting() {
    let ws = Ws::new();
    ws.recipe(
        "x",
        &format!("architecture = \"amd64\"\npackages = [\"a\"]\n{SOURCE}"),
    );
    let base = ws.load("x");
    assert!(base.onie.is_none());
    ws.recipe("x", &with_onie(""));
    let with = ws.load("x");
    let onie = with.onie.as_ref().expect("[onie] parsed");
    assert_eq!(onie.machine, "accton_wedge100bf_32x");
    assert_eq!(onie.platforms.len(), 2);
    assert_eq!(onie.platforms[0].console, onie::Console::DEFAULT);
    assert_eq!(onie.partition_label, "SONiC-OS");
    assert_eq!(onie.partition_size_mib, 4096);
    assert_eq!(
        with.canonical_hash(),
        base.canonical_hash(),
        "not in the lock"
    );
    assert_ne!(with.build_hash(), base.build_hash(), "in the build");
    ws.recipe(
        "x",
        &with_onie(
            "[onie.platform-console]\n\"x86_64-accton_wedge100bf_32x-r0\" = \"ttyS1,57600\"\n",
        ),
    );
    let console = ws.load("x");
    let c = &console.onie.as_ref().unwrap().platforms[0].console;
    assert_eq!((c.unit, c.speed), (1, 57600));
    assert_ne!(console.build_hash(), with.build_hash());
}

#[test]
fn onie_errors_name_the_place() {
    let ws = Ws::new();
    let e = ws.err(&with_onie("console = \"ttyS0,1234\"\n"));
    assert!(e.contains(":14:11: invalid console `ttyS0,1234`"), "{e}");
    let e = ws.err(&with_onie(
        "[onie.platform-console]\n\"x86_64-other-r0\" = \"ttyS0,9600\"\n",
    ));
    assert!(
        e.contains("`platform-console` names `x86_64-other-r0`"),
        "{e}"
    );
    let e = ws.err(&with_onie("partition-label = \"much-too-long-label\"\n"));
    assert!(e.contains("invalid partition label"), "{e}");
    let e = ws.err(&with_onie("mahcine = \"x\"\n"));
    assert!(
        e.contains("unknown key `mahcine`; did you mean `machine`?"),
        "{e}"
    );
    let e = ws.err(&with_onie("").replace("-r0\", \"x86", "\", \"x86"));
    assert!(
        e.contains("invalid ONIE platform `x86_64-accton_wedge100bf_32x`"),
        "{e}"
    );
    let e = ws.err(&with_onie("").replace("amd64", "arm64"));
    assert!(
        e.contains("ONIE platform `x86_64-accton_wedge100bf_32x-r0` is not an `arm64` platform"),
        "{e}"
    );
    let e = ws.err(&with_onie("version = \"1.0 beta\"\n"));
    assert!(e.contains("invalid image version `1.0 beta`"), "{e}");
}

/// `copy` sources stay inside the recipe's directory (issue 11, item 2):
/// absolute paths, `..`, symlinks out of it and `/proc` files are refused
/// with the recipe's file:line, and so is a keyring that is a device.
#[test]
fn copy_sources_are_confined_and_recipe_files_bounded() {
    let ws = Ws::new();
    ws.write("secret", "host secret\n");
    ws.write("recipes/files/ok", "fine\n");
    std::fs::create_dir_all(ws.root().join("recipes/files")).unwrap();
    std::os::unix::fs::symlink("../../secret", ws.root().join("recipes/files/out")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ws.root().join("recipes/files/abs")).unwrap();
    std::os::unix::fs::symlink("ok", ws.root().join("recipes/files/in")).unwrap();
    for from in [
        "/etc/passwd",
        "/proc/self/environ",
        "../secret",
        "files/../../secret",
        "files/out",
        "files/abs",
    ] {
        let e = ws.err(&with_steps(&format!(
            "[[step]]\ncopy = \"{from}\"\nto = \"/etc/x\"\n"
        )));
        assert!(
            e.starts_with("recipes/x.toml:10:8: `copy` source")
                && e.contains("inside the recipe's directory"),
            "{from}: {e}"
        );
    }
    // A symlink that stays inside is fine.
    ws.recipe(
        "y",
        &with_steps("[[step]]\ncopy = \"files/in\"\nto = \"/etc/x\"\n"),
    );
    assert_eq!(ws.load("y").steps.len(), 1);
    // A keyring that is a device fails at once, naming the recipe line.
    let e = ws.err(
        &SOURCE
            .replace("keys/debian.pgp", "/dev/zero")
            .replace("[[source]]", "architecture = \"amd64\"\n[[source]]"),
    );
    assert!(
        e.contains("keyring `/dev/zero` cannot be read: a character device"),
        "{e}"
    );
}
