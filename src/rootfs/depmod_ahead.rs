//! The kernel's `depmod`, run ahead of its postinst on an idle core.
//!
//! A kernel package's postinst runs `depmod VERSION`: for trixie's kernel,
//! 5 s of one core reading 4,230 xz-compressed modules, while every other
//! script waits. What depmod writes depends only on what it reads — the
//! module tree, its `depmod.d` configuration and depmod itself — and all
//! of that is unpacked before the first script runs. So imgbuild runs the
//! image's own `depmod -o OUT VERSION` for every kernel as soon as the
//! packages are unpacked, in a sandbox at the lowest priority, beside the
//! scripts of the packages configured before the kernel ([`DepmodAhead::start`]).
//!
//! The dpkg runs then find a `depmod` first on their `PATH`
//! (`/run/imgbuild-ahead/bin`, a read-only bind mount of imgbuild's own
//! directory: never in the tree, gone with the sandbox). Called as
//! `depmod VERSION` for a kernel run ahead, it waits for that run to end
//! and, when the listing of what depmod reads (path, type, size, inode,
//! mtime, ctime and link target of the modules and module lists under
//! `/lib/modules/VERSION`, the `depmod.d` files and depmod itself, and the
//! name of every directory there) is the one taken before
//! and after the run ahead, copies the files that run wrote into
//! `/lib/modules/VERSION` — the same bytes, since depmod is deterministic
//! and only its output directory differed. Any other call, a changed
//! listing, a failed run ahead or an image without GNU find's `-printf`
//! runs depmod itself. The image gets the same bytes either way; the dpkg
//! runs see one more directory in front of their `PATH`.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ScriptRun;
use crate::sandbox::{self, SandboxSpec};

/// Where the sandboxes see imgbuild's directory.
const INSIDE: &str = "/run/imgbuild-ahead";
/// The longest the run ahead may take (the wrapper waits as long).
const TIMEOUT: Duration = Duration::from_secs(600);

/// The listing of what `depmod "$1"` reads, sorted; shared by the run
/// ahead and the wrapper so that both take it the same way. In the module
/// directory: every directory (by name: a file added or removed there is
/// listed or missing itself) and the files depmod reads, the modules and
/// `modules.{order,builtin,builtin.modinfo}`, not the kernel preinst's
/// `.fresh-install` (made while the run ahead reads) or depmod's own output.
const INPUTS_FN: &str = r#"inputs() {
    find -H "/lib/modules/$1" /etc/depmod.d /lib/depmod.d /usr/lib/depmod.d \
        /usr/local/lib/depmod.d /run/depmod.d "$(command -v depmod)" \
        \( -type d -printf '%p d\n' \) -o \
        \( -path "/lib/modules/$1/*" ! \( -name '*.ko' -o -name '*.ko.*' \
            -o -name modules.order -o -name modules.builtin -o -name modules.builtin.modinfo \) \) -o \
        -printf '%p %y %s %i %T@ %C@ %l\n' 2>/dev/null | LC_ALL=C sort
}
"#;

/// The run ahead, one kernel version after the other (`"$@"`): each gets
/// `inputs` before and after `depmod -o`, and `done` only when the two are
/// the same and list the module directory.
const RUN_AHEAD: &str = r#"set -e
for v; do
    d=/run/imgbuild-ahead/spec/$v
    inputs "$v" > "$d/inputs.before"
    grep -qxF "/lib/modules/$v d" "$d/inputs.before"
    depmod -o "$d/out" "$v"
    inputs "$v" > "$d/inputs"
    cmp -s "$d/inputs.before" "$d/inputs"
    : > "$d/done"
done
"#;

/// The `depmod` in front of the dpkg runs' `PATH`.
const WRAPPER: &str = r#"#!/bin/sh
# imgbuild: depmod's files for a kernel imgbuild ran depmod on ahead of
# time, when nothing depmod reads has changed since; else depmod itself.
# Only in imgbuild's sandbox, never in the image.
here=/run/imgbuild-ahead
PATH=${PATH#"$here/bin:"}
export PATH
"#;

/// The wrapper after [`INPUTS_FN`]: only `depmod VERSION`, for a version
/// that is a plain name and was run ahead, waits (at most as long as the
/// run ahead may take) and copies; every other call is depmod's.
const WRAPPER_BODY: &str = r#"if [ "$#" = 1 ] && [ -n "$1" ] && [ "${1#[-.]}" = "$1" ] && [ "${1#*/}" = "$1" ] \
    && [ -d "$here/spec/$1" ]; then
    d=$here/spec/$1
    n=0
    while [ ! -e "$d/done" ] && [ ! -e "$here/state/$1.failed" ] && [ "$n" -lt @TENTHS@ ]; do
        sleep 0.1 || break
        n=$((n + 1))
    done
    if [ -e "$d/done" ] && inputs "$1" | cmp -s - "$d/inputs"; then
        for m in lib/modules usr/lib/modules; do
            if [ -d "$d/out/$m/$1" ]; then
                cp "$d/out/$m/$1"/* "/$m/$1/" && exit 0
                break
            fi
        done
    fi
fi
exec depmod "$@"
"#;

/// A run of depmod ahead of the kernels' postinsts (see the module docs).
pub(crate) struct DepmodAhead {
    dir: tempfile::TempDir,
    versions: Vec<String>,
    running: Option<JoinHandle<Duration>>,
}

impl DepmodAhead {
    /// Starts depmod for every kernel version whose modules some package
    /// in `lists` (dpkg file lists: `/usr/lib/modules/VERSION/…`) unpacked
    /// into `root`, when the image has a depmod and no package ships that
    /// kernel's `modules.dep`; `None` when there is nothing to run.
    /// Works in a temp directory next to `root`.
    pub(crate) fn start(
        root: &Path,
        lists: &[Vec<String>],
        hostname: &str,
        source_date_epoch: u64,
    ) -> Option<DepmodAhead> {
        let mut sandbox = SandboxSpec::new(root, Vec::<OsString>::new());
        sandbox.hostname = hostname.to_string();
        sandbox.source_date_epoch = source_date_epoch;
        DepmodAhead::start_in(sandbox, lists)
    }

    /// [`DepmodAhead::start`] in the sandbox `sandbox` describes (its root
    /// the image, its other binds kept).
    fn start_in(mut spec: SandboxSpec, lists: &[Vec<String>]) -> Option<DepmodAhead> {
        let root = spec.root.clone();
        let versions = kernel_versions(lists);
        // The sandbox makes a missing mount point and removes it again
        // afterwards: two sandboxes at once on one tree must find them all.
        let has_mount_points = ["dev", "proc", "run", "tmp"]
            .iter()
            .all(|d| fs::symlink_metadata(root.join(d)).is_ok_and(|m| m.is_dir()));
        if versions.is_empty() || !has_mount_points {
            return None;
        }
        let parent = root.parent()?;
        let dir = tempfile::Builder::new()
            .prefix(".depmod-ahead-")
            .tempdir_in(parent)
            .ok()?;
        let made = (|| -> std::io::Result<()> {
            fs::create_dir(dir.path().join("bin"))?;
            fs::create_dir(dir.path().join("state"))?;
            fs::create_dir(dir.path().join("spec"))?;
            for v in &versions {
                fs::create_dir(dir.path().join("spec").join(v))?;
            }
            let wrapper = dir.path().join("bin/depmod");
            // It waits at most as long as the run ahead may take.
            let tenths = (TIMEOUT.as_millis() / 100).to_string();
            let body = WRAPPER_BODY.replace("@TENTHS@", &tenths);
            fs::write(&wrapper, format!("{WRAPPER}{INPUTS_FN}{body}"))?;
            fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))?;
            for sub in ["", "bin", "state", "spec"] {
                fs::set_permissions(dir.path().join(sub), fs::Permissions::from_mode(0o755))?;
            }
            Ok(())
        })();
        made.ok()?;

        let mut argv: Vec<OsString> = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("{INPUTS_FN}{RUN_AHEAD}").into(),
            "sh".into(),
        ];
        argv.extend(versions.iter().map(OsString::from));
        spec.argv = argv;
        spec.rw_binds
            .push((dir.path().join("spec"), PathBuf::from(INSIDE).join("spec")));
        spec.timeout = Some(TIMEOUT);
        let state = dir.path().join("state");
        let marked = versions.clone();
        let running = std::thread::Builder::new()
            .name("depmod-ahead".into())
            .spawn(move || {
                crate::core::scratch::lower_priority();
                let start = Instant::now();
                let ok = sandbox::run(&spec).is_ok_and(|out| out.success());
                if !ok {
                    // Only imgbuild writes here (the sandbox sees `state`
                    // read-only, or not at all): the waiting wrappers stop.
                    for v in &marked {
                        let _ = fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(state.join(format!("{v}.failed")));
                    }
                }
                start.elapsed()
            })
            .ok()?;
        Some(DepmodAhead {
            dir,
            versions,
            running: Some(running),
        })
    }

    /// Gives a dpkg run `spec` the wrapper: imgbuild's directory read-only
    /// at `/run/imgbuild-ahead` and its `bin` first on `PATH`.
    pub(crate) fn apply(&self, spec: &mut SandboxSpec) {
        let path = spec
            .env_vars()
            .into_iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v)
            .unwrap_or_default();
        spec.ro_binds
            .push((self.dir.path().to_path_buf(), PathBuf::from(INSIDE)));
        spec.env.retain(|(k, _)| k != "PATH");
        spec.env
            .push(("PATH".into(), format!("{INSIDE}/bin:{path}")));
    }

    /// Waits for the run ahead to end (it only reads the tree, but its
    /// directory goes now); the run as the build reports it, with how long
    /// it took and whether it finished for every version.
    pub(crate) fn finish(mut self) -> ScriptRun {
        let elapsed = self
            .running
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let finished = self
            .versions
            .iter()
            .all(|v| self.dir.path().join("spec").join(v).join("done").exists());
        let versions = self.versions.join(" ");
        ScriptRun {
            package: format!("linux {versions}"),
            script: if finished {
                "depmod ahead, beside the other scripts".into()
            } else {
                "depmod ahead, beside the other scripts (did not finish)".into()
            },
            command: format!("depmod -o {INSIDE}/spec/VERSION/out {versions}"),
            elapsed,
        }
    }
}

impl Drop for DepmodAhead {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.join();
        }
    }
}

/// The kernel versions with modules (`…/lib/modules/VERSION/…/*.ko*`) in
/// `lists`, when some package ships `/usr/sbin/depmod` or `/sbin/depmod`
/// and none ships that version's `modules.dep`; sorted.
fn kernel_versions(lists: &[Vec<String>]) -> Vec<String> {
    let paths = || lists.iter().flatten();
    if !paths().any(|p| p == "/usr/sbin/depmod" || p == "/sbin/depmod") {
        return Vec::new();
    }
    let mut versions = std::collections::BTreeSet::new();
    let mut shipped_dep = std::collections::BTreeSet::new();
    for path in paths() {
        let Some(rest) = path
            .strip_prefix("/usr/lib/modules/")
            .or_else(|| path.strip_prefix("/lib/modules/"))
        else {
            continue;
        };
        let Some((version, file)) = rest.split_once('/') else {
            continue;
        };
        if !valid_version(version) {
            continue;
        }
        if file == "modules.dep" {
            shipped_dep.insert(version);
        } else if is_module(file) {
            versions.insert(version);
        }
    }
    versions
        .difference(&shipped_dep)
        .map(|v| v.to_string())
        .collect()
}

/// A module file name, compressed or not.
fn is_module(file: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|ext| file.ends_with(ext))
}

/// A kernel version that is a safe single path component and shell word
/// inside double quotes (`6.12.118+deb13-amd64`).
fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 128
        && !version.starts_with(['-', '.'])
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-~".contains(&b))
}

#[cfg(test)]
mod tests;
