//! Build settings and image tables: hostname, tools, `[disk]`, `[onie]`.

use super::*;

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
