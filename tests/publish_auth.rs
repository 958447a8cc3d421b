//! Publishing to registries that need credentials (TLS with htpasswd, the
//! bearer-token flow) and a publication interrupted part-way, which must
//! leave the old tag on the old, complete image.

mod support;

use std::fs;

use support::registry::{Registry, Secure};

use support::publishing::*;

#[test]
fn tls_with_htpasswd_auth() {
    need_tools!();
    let secure = Secure {
        user: "ci".into(),
        password: "correct horse".into(),
    };
    let reg = Registry::secure(&secure);
    let ws = fixture();
    let ca = reg.ca.clone().unwrap();
    let target = format!("{}/fixture", reg.addr);
    let auth = ws.path().join("auth.json");
    let write_auth = |user: &str, password: &str| {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        fs::write(
            &auth,
            format!(r#"{{"auths":{{"{}":{{"auth":"{token}"}}}}}}"#, reg.addr),
        )
        .unwrap();
    };
    let publish = |extra: &[&str]| {
        let mut args = vec!["publish", "--no-build", NAME, &target];
        args.extend_from_slice(extra);
        let mut cmd = ws.command(&args);
        cmd.env("REGISTRY_AUTH_FILE", &auth);
        support::workspace::run_bounded(cmd, std::time::Duration::from_secs(120))
    };
    // Without the test CA the certificate is not trusted.
    write_auth("ci", "correct horse");
    let run = publish(&[]).assert_failure();
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );
    // A wrong password is refused, naming where it came from.
    write_auth("ci", "wrong");
    let run = publish(&["--ca-file", ca.to_str().unwrap()]).assert_failure();
    eprintln!("--- wrong password\n{}", run.stderr);
    assert!(run.stderr.contains("refused access"), "{}", run.stderr);
    assert!(run.stderr.contains("auth.json"), "{}", run.stderr);
    // The right one works.
    write_auth("ci", "correct horse");
    publish(&["--ca-file", ca.to_str().unwrap()]).assert_success();
    // --insecure is refused for anything but loopback, before connecting.
    let run = publish_built(&ws, "192.0.2.1:5000/fixture", &[]).assert_failure();
    assert!(
        run.stderr.contains("only allowed for loopback"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_interrupted_publish_leaves_the_old_tag_on_a_complete_image() {
    need_tools!();
    let reg = Registry::plain();
    let old = fixture();
    let new = fixture_with("renamed\n");
    let target = format!("{}/fixture", reg.addr);
    publish_built(&old, &target, &[]).assert_success();
    let (a, b) = (out_digest(&old), out_digest(&new));
    assert_ne!(a, b);
    // The new image's manifest goes in (first PUT by digest), its first
    // artifact does not: the publication stops there.
    let proxy = failing_proxy(reg.addr.clone(), 2);
    let run = publish_built(&new, &format!("{proxy}/fixture"), &[]).assert_failure();
    assert!(run.stderr.contains("HTTP 400"), "{}", run.stderr);
    let inspect = |tag: &str| -> serde_json::Value {
        serde_json::from_slice(&reg.skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}:{tag}"),
        ]))
        .unwrap()
    };
    assert_eq!(inspect("1.2.3")["Digest"], a.as_str(), "the tag moved");
    let copy = tempfile::tempdir().unwrap();
    reg.skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}:1.2.3"),
        &format!("oci:{}:x", copy.path().join("img").display()),
    ]);
    // The image by digest is there, untagged; a publish that completes moves the tag.
    publish_built(&new, &target, &[]).assert_success();
    assert_eq!(inspect("1.2.3")["Digest"], b.as_str());
}

#[test]
fn bearer_token_flow_against_a_token_authenticated_registry() {
    need_tools!();
    let secure = Secure {
        user: "ci".into(),
        password: "s3cret".into(),
    };
    let reg = Registry::token(&secure);
    let ws = fixture();
    let target = format!("{}/fixture", reg.addr);
    let publish = |password: &str| {
        let mut cmd = ws.command(&[
            "publish",
            "--no-build",
            NAME,
            &target,
            "--insecure",
            "--json",
        ]);
        cmd.env("IMGBUILD_REGISTRY_USERNAME", "ci");
        cmd.env("IMGBUILD_REGISTRY_PASSWORD", password);
        support::workspace::run_bounded(cmd, std::time::Duration::from_secs(120))
    };
    let run = publish("wrong").assert_failure();
    assert!(run.stderr.contains("refused access"), "{}", run.stderr);
    let run = publish("s3cret").assert_success();
    assert_eq!(
        report(&run.stdout)["digest"],
        out_digest(&ws).as_str(),
        "{}",
        run.stderr
    );
    // Anonymous reads are refused by this registry: skopeo needs the token too.
    let creds = "--creds=ci:s3cret";
    let raw = reg.skopeo(&[
        "inspect",
        "--tls-verify=false",
        creds,
        "--raw",
        &format!("docker://{target}:1.2.3"),
    ]);
    assert_eq!(sha256(&raw), out_digest(&ws).trim_start_matches("sha256:"));
    let again = publish("s3cret").assert_success();
    assert_eq!(report(&again.stdout)["uploaded_bytes"], 0);
}
