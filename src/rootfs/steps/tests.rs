//! Step application on bare temp roots.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn step(action: StepAction) -> Step {
    Step {
        action,
        origin: "recipes/x.toml:1".into(),
    }
}

fn defaults() -> StepSandbox {
    StepSandbox {
        hostname: "h".into(),
        source_date_epoch: 0,
        timeout: Duration::from_secs(30),
        ro_binds: Vec::new(),
    }
}

fn write(path: &str, content: &str, mode: u32) -> Step {
    step(StepAction::Write {
        path: path.into(),
        content: content.into(),
        mode,
        owner: None,
    })
}

#[test]
fn file_steps_land_with_modes_and_sysctl_accumulates() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let src = root.join("src-file");
    fs::write(&src, "auto lo\n").unwrap();
    let image = tmp.path().join("img");
    fs::create_dir(&image).unwrap();
    let steps = [
        step(StepAction::Copy {
            from: "files/interfaces".into(),
            source: src.clone(),
            sha256: hex::encode(Sha256::digest(b"auto lo\n")),
            to: "/etc/network/interfaces".into(),
            mode: 0o600,
            owner: None,
        }),
        write("/etc/modules-load.d/k8s.conf", "overlay\n", 0o644),
        step(StepAction::Sysctl {
            settings: [("b.x".to_string(), "2".to_string())].into(),
        }),
        step(StepAction::Sysctl {
            settings: [("a.y".to_string(), "1".to_string())].into(),
        }),
        step(StepAction::Mask {
            units: vec!["swap.target".into()],
        }),
    ];
    let log = apply(&image, &steps, &defaults()).unwrap();
    assert_eq!(log.len(), 5);
    assert!(
        log[0].starts_with("recipes/x.toml:1: copy files/interfaces"),
        "{log:?}"
    );
    let meta = fs::metadata(image.join("etc/network/interfaces")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(
        fs::read_to_string(image.join("etc/modules-load.d/k8s.conf")).unwrap(),
        "overlay\n"
    );
    let sysctl = fs::read_to_string(image.join("etc/sysctl.d/90-imgbuild.conf")).unwrap();
    assert!(sysctl.ends_with("a.y = 1\nb.x = 2\n"), "{sysctl}");
    assert_eq!(
        fs::read_link(image.join("etc/systemd/system/swap.target")).unwrap(),
        Path::new("/dev/null")
    );
    // No temp files left behind.
    let names: Vec<_> = fs::read_dir(image.join("etc/network")).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn symlinks_never_lead_outside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let image = tmp.path().join("img");
    fs::create_dir(&image).unwrap();
    // /etc → the host's `outside` (absolute) and a relative escape.
    std::os::unix::fs::symlink(&outside, image.join("etc")).unwrap();
    std::os::unix::fs::symlink("../../outside", image.join("up")).unwrap();
    // A final-component symlink is replaced, not followed.
    fs::create_dir(image.join("opt")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), image.join("opt/f")).unwrap();
    // `/etc` resolves inside the image, where that absolute path does not
    // exist (a dangling link): refused, not followed to the host.
    let e = apply(&image, &[write("/etc/x", "a", 0o644)], &defaults())
        .unwrap_err()
        .to_string();
    assert!(e.contains("/etc/x: open directory /etc"), "{e}");
    fs::create_dir(image.join("outside")).unwrap();
    let steps = [write("/up/y", "b", 0o644), write("/opt/f", "c", 0o644)];
    apply(&image, &steps, &defaults()).unwrap();
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "wrote outside");
    // `../../outside` from `/` stays at `/`: `/up/y` is `/outside/y` in the image.
    let img = ImageRoot::open(&image).unwrap();
    assert_eq!(img.read("/up/y").as_deref(), Some(&b"b"[..]));
    assert_eq!(fs::read_to_string(image.join("outside/y")).unwrap(), "b");
    assert_eq!(fs::read_to_string(image.join("opt/f")).unwrap(), "c");
    assert!(
        !fs::symlink_metadata(image.join("opt/f"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn errors_name_the_step() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("img");
    fs::create_dir_all(image.join("etc/d")).unwrap();
    let e = apply(&image, &[write("/etc/d", "x", 0o644)], &defaults())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "step at recipes/x.toml:1 (write): /etc/d: is a directory"
    );
    let src = tmp.path().join("s");
    fs::write(&src, "new").unwrap();
    let copy = step(StepAction::Copy {
        from: "s".into(),
        source: src,
        sha256: "0".repeat(64),
        to: "/etc/s".into(),
        mode: 0o644,
        owner: None,
    });
    let e = apply(&image, &[copy], &defaults()).unwrap_err().to_string();
    assert!(
        e.contains("(copy)") && e.contains("changed since the recipe was loaded"),
        "{e}"
    );
    let e = apply(
        &image,
        &[step(StepAction::Enable {
            units: vec!["ssh.service".into()],
        })],
        &defaults(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("(enable)") && e.contains("needs systemd"), "{e}");
}

#[test]
fn run_uses_the_sandbox_with_the_image_as_root() {
    if !Path::new("/usr/bin/sh").exists() && !Path::new("/bin/sh").exists() {
        eprintln!("skipped: no host shell to bind into the test image");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("img");
    for d in ["usr", "etc", "root"] {
        fs::create_dir_all(image.join(d)).unwrap();
    }
    for dir in ["bin", "sbin", "lib", "lib64"] {
        if fs::symlink_metadata(Path::new("/usr").join(dir)).is_ok() {
            std::os::unix::fs::symlink(format!("usr/{dir}"), image.join(dir)).unwrap();
        }
    }
    let mut sb = defaults();
    sb.ro_binds.push(("/usr".into(), "/usr".into()));
    let run = step(StepAction::Run {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "echo \"$(hostname) $SOURCE_DATE_EPOCH\" > /etc/motd".into(),
        ],
    });
    match apply(&image, &[run], &sb) {
        Ok(_) => {}
        Err(StepError::Sandbox { source, .. }) if !rustix::process::geteuid().is_root() => {
            eprintln!("skipped: not root and no usable user namespace: {source}");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!(fs::read_to_string(image.join("etc/motd")).unwrap(), "h 0\n");
    let fail = step(StepAction::Run {
        argv: vec!["sh".into(), "-c".into(), "echo oops >&2; exit 3".into()],
    });
    let e = apply(&image, &[fail], &sb).unwrap_err().to_string();
    assert!(
        e.starts_with("step at recipes/x.toml:1 (run) failed with exit status 3")
            && e.contains("oops"),
        "{e}"
    );
}
