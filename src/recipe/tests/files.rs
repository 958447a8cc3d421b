//! Files a recipe names: `copy` sources confined to the recipe directory, bounded reads.

use super::*;

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
