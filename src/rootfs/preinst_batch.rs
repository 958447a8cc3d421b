//! Several packages' preinsts run one after the other in one sandbox.
//!
//! Setting a sandbox up (namespaces, mounts, `pivot_root`) costs more than
//! most preinsts take: r2lab-node's 38 preinsts outside the base set ran
//! 10 ms apart, each a few ms long. The preinsts due before the next dpkg
//! run go to one `sh` ([`DRIVER`]) that runs each with the environment dpkg
//! gives it, stops at the first failure and says which one it was, so the
//! build's error still names the package, its script, its status and its
//! own output ([`failure`]).

use std::ffi::OsString;
use std::time::Duration;

use super::RootfsError;
use crate::sandbox::{Output, Status};

/// The driver: its arguments are triples (package, architecture, script).
/// Before each script a marker line goes to standard output; the script's
/// standard error goes there too, so that its output is one piece. On a
/// failure the driver writes `INDEX STATUS` to its own standard error and
/// exits 1.
pub(crate) const DRIVER: &str = r#"n=0
while [ "$#" -ge 3 ]; do
    printf 'imgbuild: preinst %s\n' "$n"
    DPKG_MAINTSCRIPT_PACKAGE="$1" DPKG_MAINTSCRIPT_ARCH="$2" "$3" install 2>&1 || {
        s=$?
        printf '%s %s\n' "$n" "$s" >&2
        exit 1
    }
    n=$((n + 1))
    shift 3
done
"#;

/// What starts each script's part of the driver's output (written into
/// [`DRIVER`] itself: the scripts get dpkg's environment and nothing more).
const MARKER: &str = "imgbuild: preinst";

/// One preinst of a batch.
pub(crate) struct Preinst {
    /// `name version arch`, for messages.
    pub(crate) label: String,
    /// Package name (`DPKG_MAINTSCRIPT_PACKAGE`).
    pub(crate) name: String,
    /// Architecture (`DPKG_MAINTSCRIPT_ARCH`).
    pub(crate) arch: String,
    /// The script's path inside the image.
    pub(crate) script: String,
}

/// The driver's command line for `batch`, in order.
pub(crate) fn argv(batch: &[Preinst]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = ["/bin/sh", "-c", DRIVER, "sh"]
        .into_iter()
        .map(OsString::from)
        .collect();
    for p in batch {
        argv.extend([&p.name, &p.arch, &p.script].map(OsString::from));
    }
    argv
}

/// The error of a failed driver run `out`: the preinst it names (else the
/// one whose part of the output came last: a timeout, a signal), with its
/// status and the last `lines` of its own output.
pub(crate) fn failure(
    batch: &[Preinst],
    out: &Output,
    timeout: Duration,
    lines: usize,
) -> RootfsError {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reported = stderr.lines().next_back().and_then(|l| {
        let (n, s) = l.split_once(' ')?;
        Some((n.parse::<usize>().ok()?, s.parse::<i32>().ok()?))
    });
    let last_marked = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(MARKER)?.trim().parse::<usize>().ok());
    let (index, status) = match (reported, out.status) {
        (Some((n, s)), Status::Exited(1)) if n < batch.len() => (n, exit_status(s)),
        (_, status) => (
            last_marked.unwrap_or(0),
            super::configure::status_text(status, timeout),
        ),
    };
    let index = index.min(batch.len().saturating_sub(1));
    // Its part of the output: after its marker (the last one with its index).
    let marker = format!("{MARKER} {index}");
    let all: Vec<&str> = stdout.lines().collect();
    let own = match all.iter().rposition(|l| *l == marker) {
        Some(at) => all[at + 1..].join("\n"),
        None => all.join("\n"),
    };
    let preinst = &batch[index];
    RootfsError::Script {
        package: preinst.label.clone(),
        script: "preinst install".into(),
        command: format!("{} install", preinst.script),
        status,
        output: super::configure::tail(&own, lines),
    }
}

/// A shell's `$?`: above 128 a signal killed the script.
fn exit_status(s: i32) -> String {
    if s > 128 {
        format!("killed by signal {}", s - 128)
    } else {
        format!("exit status {s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn run(batch: &[Preinst]) -> Output {
        let argv = argv(batch);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        Output {
            status: match out.status.code() {
                Some(c) => Status::Exited(c),
                None => Status::Signaled(9),
            },
            stdout: out.stdout,
            stderr: out.stderr,
            elapsed: Duration::ZERO,
        }
    }

    fn preinst(dir: &std::path::Path, name: &str, body: &str) -> Preinst {
        let script = dir.join(format!("{name}.preinst"));
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Preinst {
            label: format!("{name} 1.0 amd64"),
            name: name.into(),
            arch: "amd64".into(),
            script: script.to_str().unwrap().into(),
        }
    }

    #[test]
    fn the_driver_prints_the_marker_it_is_parsed_by() {
        assert!(DRIVER.contains(&format!("printf '{MARKER} %s")));
    }

    #[test]
    fn each_runs_in_order_with_its_own_package_and_argument() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let body = format!(
            "echo \"$DPKG_MAINTSCRIPT_PACKAGE $DPKG_MAINTSCRIPT_ARCH $1${{MARKER:-}}\" >> {}",
            log.display()
        );
        let batch = [
            preinst(dir.path(), "a", &body),
            preinst(dir.path(), "b", &body),
            preinst(dir.path(), "c", &body),
        ];
        let out = run(&batch);
        assert_eq!(out.status, Status::Exited(0), "{out:?}");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "a amd64 install\nb amd64 install\nc amd64 install\n"
        );
    }

    #[test]
    fn a_failure_stops_the_batch_and_names_its_package_status_and_output() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("c-ran");
        let batch = [
            preinst(dir.path(), "a", "echo a says hello"),
            preinst(
                dir.path(),
                "b",
                "echo b starts\necho b is broken >&2\nexit 3",
            ),
            preinst(dir.path(), "c", &format!("touch {}", mark.display())),
        ];
        let out = run(&batch);
        assert_eq!(out.status, Status::Exited(1));
        assert!(!mark.exists(), "the batch went on after a failure");
        let RootfsError::Script {
            package,
            command,
            status,
            output,
            ..
        } = failure(&batch, &out, Duration::from_secs(5), 40)
        else {
            panic!("not a script error");
        };
        assert_eq!(package, "b 1.0 amd64");
        assert_eq!(command, format!("{} install", batch[1].script));
        assert_eq!(status, "exit status 3");
        assert_eq!(output, "b starts\nb is broken");
    }

    #[test]
    fn a_timeout_is_the_running_preinsts() {
        let batch = [
            Preinst {
                label: "a 1 all".into(),
                name: "a".into(),
                arch: "all".into(),
                script: "/a".into(),
            },
            Preinst {
                label: "b 1 all".into(),
                name: "b".into(),
                arch: "all".into(),
                script: "/b".into(),
            },
        ];
        let out = Output {
            status: Status::TimedOut,
            stdout: format!("{MARKER} 0\nfine\n{MARKER} 1\nstuck\n").into_bytes(),
            stderr: Vec::new(),
            elapsed: Duration::ZERO,
        };
        let RootfsError::Script {
            package,
            status,
            output,
            ..
        } = failure(&batch, &out, Duration::from_secs(7), 40)
        else {
            panic!("not a script error");
        };
        assert_eq!(
            (package.as_str(), status.as_str(), output.as_str()),
            ("b 1 all", "timed out after 7s", "stuck")
        );
    }
}
