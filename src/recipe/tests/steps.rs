//! `[[step]]`s: order, defaults, user/group steps, errors with file:line, the build hash.

use super::*;

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
