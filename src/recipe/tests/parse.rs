//! The recipe file: values and defaults, TOML and relation errors with file:line, sources, extends, the canonical hash.

use super::*;

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
