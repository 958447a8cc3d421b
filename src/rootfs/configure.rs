//! Running the maintainer scripts inside the image, in the build sandbox.
//!
//! Every package's files are already unpacked and registered as
//! `install ok unpacked` (see `dpkgdb`), so what is left of a dpkg install
//! is `preinst install` and `postinst configure`. The route, after debootstrap:
//! 1. `/usr/sbin/policy-rc.d` exiting 101 is put in place so that no service
//!    starts (removed again at the end, also on failure);
//! 2. the base set: each `preinst install` in install order (base-passwd,
//!    base-files, dpkg, libc6, … first), then the image's own
//!    `dpkg --configure --force-depends --force-configure-any BASE…`;
//! 3. every other package in install order: first its pre-dependencies are
//!    made ready (their preinsts, then `dpkg --configure` of them and all they
//!    depend on — dpkg's rule that a pre-dependency is configured before the
//!    dependant is touched), then its own `preinst install`;
//! 4. the file triggers that dpkg would have activated while unpacking are
//!    activated with `dpkg-trigger` (dpkg records them for the packages
//!    already configured and drops them for the others, whose postinst
//!    handles their files); then `dpkg --configure -a` configures the rest
//!    in dependency order and runs every trigger pending, each once.
//!
//! With initramfs-tools in the image, every dpkg run gets `INITRD=No`: the
//! initramfs is not made while configuring (where Debian makes it twice:
//! the kernel's hook, then initramfs-tools' trigger) but once, when every
//! package is configured (see `initramfs.rs`).
//!
//! A kernel's `depmod VERSION` (5 s of one core for trixie's kernel) has
//! been run ahead of its postinst, beside the scripts before it: the dpkg
//! runs get a `depmod` first on their `PATH` that copies that run's files
//! when nothing depmod reads has changed (see `depmod_ahead.rs`).
//!
//! The dpkg runs also see each Python's `py_compile.py` changed so that it
//! compiles no byte-code that normalisation would remove (see
//! `bytecode.rs`).
//!
//! dpkg always gets `--force-confdef --force-confold --force-unsafe-io`
//! (no prompts, no fsync: an interrupted build starts over). Preinsts are run
//! by imgbuild with the environment dpkg gives them (`DPKG_MAINTSCRIPT_*`,
//! `DPKG_ADMINDIR`, `DPKG_ROOT`, `DPKG_RUNNING_VERSION`), so that
//! `dpkg-maintscript-helper` and debconf work; the preinsts due before the
//! same dpkg run share one sandbox (see `preinst_batch.rs`). Unlike dpkg, a
//! preinst here runs when the package's files are already in place: this is what
//! debootstrap does for the required set and it is harmless for the
//! usual preinst tasks (diversions with `--rename`, `dpkg-maintscript-helper`
//! preparations, checks); the sandbox has no network and a fixed environment.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::bytecode::DroppedBytecode;
use super::depmod_ahead::DepmodAhead;
use super::dpkgdb::{self, write_atomic};
use super::order::{self, Pkg};
use super::preinst_batch::{self, Preinst};
use super::{AssembleOptions, Reporter, RootfsError, ScriptRun};
use crate::sandbox::{self, SandboxSpec, Status};

/// The longest a single preinst may run.
const PREINST_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest one `dpkg --configure` may run.
const DPKG_TIMEOUT: Duration = Duration::from_secs(3600);
/// Options of every dpkg run: no questions, keep the shipped conffiles, no fsync.
const DPKG_FORCE: [&str; 3] = ["--force-confdef", "--force-confold", "--force-unsafe-io"];
const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";
/// Lines of a failed script's output its error shows.
const OUTPUT_LINES: usize = 40;

/// Runs the scripts as described in the module docs. `order` is the install
/// order, `base[i]` whether package `i` is in the base set. Every sandbox
/// run is named to `progress` before it starts.
// The assembly's own state, passed through as it is; a struct for one
// internal call would only rename the arguments.
#[allow(clippy::too_many_arguments)]
pub(crate) fn configure_all(
    root: &Path,
    pkgs: &[Pkg],
    base: &[bool],
    order: &[usize],
    lists: &[Vec<String>],
    opts: &AssembleOptions,
    ahead: Option<&DepmodAhead>,
    scripts: &mut Vec<ScriptRun>,
    progress: &dyn Reporter,
) -> Result<(), RootfsError> {
    let policy = root.join(POLICY_RC_D);
    let own_policy = !policy.exists() && policy.parent().is_some_and(Path::is_dir);
    if own_policy {
        write_atomic(
            &policy,
            b"#!/bin/sh\n# imgbuild: no service starts during the build.\nexit 101\n",
            0o755,
        )?;
    }
    let mut runner = Runner {
        root,
        pkgs,
        order,
        opts,
        ahead,
        bytecode: DroppedBytecode::prepare(root, lists),
        scripts,
        progress,
        dpkg_version: pkgs
            .iter()
            .find(|p| p.name == "dpkg")
            .map(|p| p.version.clone())
            .unwrap_or_default(),
        preinst_done: vec![false; pkgs.len()],
        queued: Vec::new(),
        configured: vec![false; pkgs.len()],
    };
    let result = runner.run(base, lists);
    if own_policy {
        let _ = fs::remove_file(&policy);
    }
    result
}

struct Runner<'a> {
    root: &'a Path,
    pkgs: &'a [Pkg],
    order: &'a [usize],
    opts: &'a AssembleOptions,
    ahead: Option<&'a DepmodAhead>,
    bytecode: Option<DroppedBytecode>,
    scripts: &'a mut Vec<ScriptRun>,
    progress: &'a dyn Reporter,
    dpkg_version: String,
    preinst_done: Vec<bool>,
    /// Preinsts due, run together before the next dpkg run ([`Runner::flush`]).
    queued: Vec<usize>,
    configured: Vec<bool>,
}

impl Runner<'_> {
    fn run(&mut self, base: &[bool], lists: &[Vec<String>]) -> Result<(), RootfsError> {
        let base_order: Vec<usize> = self.order.iter().copied().filter(|&i| base[i]).collect();
        for &i in &base_order {
            self.preinst(i)?;
        }
        if !base_order.is_empty() {
            let names: Vec<String> = base_order
                .iter()
                .map(|&i| self.pkgs[i].dpkg_name())
                .collect();
            let mut args = vec!["--configure", "--force-depends", "--force-configure-any"];
            args.extend(names.iter().map(String::as_str));
            self.dpkg(&args, "configure the base set")?;
            for &i in &base_order {
                self.configured[i] = true;
            }
        }
        for &i in self.order {
            if !base[i] {
                let mut guard = vec![false; self.pkgs.len()];
                self.prepare(i, &mut guard)?;
            }
        }
        self.flush()?;
        // The file triggers dpkg would have activated while unpacking, before
        // the run that configures the rest: as in a one-run dpkg install, a
        // trigger of a package that is configured already (the base set,
        // pre-dependencies) is processed in that run, and one of a package
        // still unpacked is dropped — its `postinst configure` sees every
        // file anyway. (Activated after it, every interested package ran
        // its trigger a second time on a tree its postinst had handled.)
        let paths = activated_file_triggers(self.pkgs, lists);
        if !paths.is_empty() && self.root.join("usr/bin/dpkg-trigger").exists() {
            let mut argv: Vec<OsString> = [
                "/bin/sh",
                "-c",
                "for p; do dpkg-trigger --no-await \"$p\" || exit 1; done",
                "sh",
            ]
            .into_iter()
            .map(OsString::from)
            .collect();
            argv.extend(paths.iter().map(OsString::from));
            self.sandbox(
                argv,
                Vec::new(),
                DPKG_TIMEOUT,
                "activate file triggers",
                "dpkg-trigger",
                false,
            )?;
        }
        // The last long run of scripts: the initramfs if one is made after
        // them, else `dpkg --configure -a` itself.
        let initramfs_after = super::initramfs::deferred(self.root);
        if !initramfs_after {
            self.progress.tree_settling(self.root);
        }
        self.dpkg(&["--configure", "-a"], "configure all packages")?;
        let initramfs = super::initramfs::missing(self.root);
        if initramfs_after {
            self.progress.tree_settling(self.root);
        }
        for version in initramfs {
            let argv = super::initramfs::make_command(&version);
            self.sandbox(
                argv,
                super::initramfs::make_env(),
                DPKG_TIMEOUT,
                "make the initramfs",
                &format!("linux {version}"),
                false,
            )?;
        }
        let pending: Vec<String> = dpkgdb::read_status(self.root)?
            .into_iter()
            .filter(|(_, s)| s != "install ok installed")
            .map(|(p, s)| format!("{p} ({s})"))
            .collect();
        if !pending.is_empty() {
            return Err(RootfsError::NotConfigured { packages: pending });
        }
        Ok(())
    }

    /// Makes package `i`'s pre-dependencies configured, then runs its preinst.
    fn prepare(&mut self, i: usize, guard: &mut [bool]) -> Result<(), RootfsError> {
        if self.preinst_done[i] || std::mem::replace(&mut guard[i], true) {
            return Ok(());
        }
        for t in self.pkgs[i].pre_depends.clone() {
            if self.configured[t] {
                continue;
            }
            let needed = order::closure(self.pkgs, &[t], &self.configured);
            let ordered: Vec<usize> = self
                .order
                .iter()
                .copied()
                .filter(|j| needed.contains(j))
                .collect();
            for &m in &ordered {
                self.prepare(m, guard)?;
            }
            let names: Vec<String> = ordered.iter().map(|&m| self.pkgs[m].dpkg_name()).collect();
            let mut args = vec!["--configure"];
            args.extend(names.iter().map(String::as_str));
            let what = format!(
                "configure {} (pre-dependency of {})",
                self.pkgs[t].name, self.pkgs[i].name
            );
            self.dpkg(&args, &what)?;
            for m in ordered {
                self.configured[m] = true;
            }
        }
        self.preinst(i)
    }

    /// Queues `preinst install` of package `i`, if it has one.
    fn preinst(&mut self, i: usize) -> Result<(), RootfsError> {
        if !std::mem::replace(&mut self.preinst_done[i], true)
            && self.pkgs[i].control.get("preinst").is_some()
        {
            self.queued.push(i);
        }
        Ok(())
    }

    /// Runs the queued preinsts, in order: one alone, several one after the
    /// other in one sandbox (setting one up costs more than most preinsts
    /// take: r2lab-node's 38 ran 10 ms apart), each with the environment
    /// dpkg gives it.
    fn flush(&mut self) -> Result<(), RootfsError> {
        let queued = std::mem::take(&mut self.queued);
        let script = |i: usize| format!("/var/lib/dpkg/info/{}.preinst", self.pkgs[i].dpkg_name());
        let mut env = vec![
            ("DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT".to_string(), "1".into()),
            ("DPKG_MAINTSCRIPT_NAME".into(), "preinst".into()),
            ("DPKG_MAINTSCRIPT_DEBUG".into(), "0".into()),
            ("DPKG_RUNNING_VERSION".into(), self.dpkg_version.clone()),
            ("DPKG_ADMINDIR".into(), "/var/lib/dpkg".into()),
            ("DPKG_ROOT".into(), String::new()),
            ("DEBCONF_NONINTERACTIVE_SEEN".into(), "true".into()),
        ];
        match queued[..] {
            [] => Ok(()),
            [i] => {
                let pkg = &self.pkgs[i];
                env.push(("DPKG_MAINTSCRIPT_PACKAGE".into(), pkg.name.clone()));
                env.push(("DPKG_MAINTSCRIPT_ARCH".into(), pkg.arch.clone()));
                let argv = vec![OsString::from(script(i)), OsString::from("install")];
                let label = pkg.label();
                self.sandbox(argv, env, PREINST_TIMEOUT, "preinst install", &label, false)
            }
            _ => {
                let batch: Vec<Preinst> = queued
                    .iter()
                    .map(|&i| Preinst {
                        label: self.pkgs[i].label(),
                        name: self.pkgs[i].name.clone(),
                        arch: self.pkgs[i].arch.clone(),
                        script: script(i),
                    })
                    .collect();
                let timeout = PREINST_TIMEOUT * batch.len() as u32;
                let what = format!("{} packages", batch.len());
                let argv = preinst_batch::argv(&batch);
                let out = self.launch(argv, env, timeout, "preinst install", &what, false)?;
                if out.success() {
                    return Ok(());
                }
                Err(preinst_batch::failure(&batch, &out, timeout, OUTPUT_LINES))
            }
        }
    }

    /// Runs the image's dpkg with the fixed options and `args`.
    fn dpkg(&mut self, args: &[&str], what: &str) -> Result<(), RootfsError> {
        // dpkg configures what the preinsts prepared.
        self.flush()?;
        let mut argv: Vec<OsString> = vec!["dpkg".into()];
        argv.extend(DPKG_FORCE.iter().map(OsString::from));
        argv.extend(args.iter().map(OsString::from));
        let mut env = vec![(
            "DEBCONF_NONINTERACTIVE_SEEN".to_string(),
            "true".to_string(),
        )];
        if super::initramfs::deferred(self.root) {
            // initramfs-tools' kernel hook skips `update-initramfs -c`, and
            // its trigger (`-u`) finds no initramfs to update: the image's
            // initramfs is made once, when every package is configured
            // (see `initramfs.rs`), not twice.
            env.push(("INITRD".to_string(), "No".to_string()));
        }
        self.sandbox(argv, env, DPKG_TIMEOUT, what, "dpkg", true)
    }

    /// Runs `argv` in the image; a `dpkg_run` (where the postinsts run)
    /// with the depmod run ahead in reach of its scripts and the byte-code
    /// normalisation drops left uncompiled (`bytecode.rs`).
    fn sandbox(
        &mut self,
        argv: Vec<OsString>,
        env: Vec<(String, String)>,
        timeout: Duration,
        script: &str,
        package: &str,
        dpkg_run: bool,
    ) -> Result<(), RootfsError> {
        let out = self.launch(argv.clone(), env, timeout, script, package, dpkg_run)?;
        if out.success() {
            return Ok(());
        }
        let status = status_text(out.status, timeout);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Err(RootfsError::Script {
            package: package.to_string(),
            script: script.to_string(),
            command: command_line(&argv),
            status,
            output: tail(&text, OUTPUT_LINES),
        })
    }

    /// Runs `argv` as [`Runner::sandbox`] does and records the run; its
    /// output, whatever its status.
    fn launch(
        &mut self,
        argv: Vec<OsString>,
        env: Vec<(String, String)>,
        timeout: Duration,
        script: &str,
        package: &str,
        dpkg_run: bool,
    ) -> Result<sandbox::Output, RootfsError> {
        let mut spec = SandboxSpec::new(self.root, argv.clone());
        spec.env = env;
        spec.hostname = sandbox_hostname(&self.opts.hostname);
        spec.source_date_epoch = self.opts.source_date_epoch.max(0) as u64;
        spec.timeout = Some(timeout);
        if dpkg_run {
            if let Some(ahead) = self.ahead {
                ahead.apply(&mut spec);
            }
            if let Some(bytecode) = &self.bytecode {
                bytecode.apply(&mut spec);
            }
        }
        self.progress.item(&format!("{script} ({package})"));
        let start = Instant::now();
        let out = sandbox::run(&spec).map_err(|source| RootfsError::Sandbox {
            what: format!("{script} ({package})"),
            source,
        })?;
        self.scripts.push(ScriptRun {
            package: package.to_string(),
            script: script.to_string(),
            command: command_line(&argv),
            elapsed: start.elapsed(),
        });
        Ok(out)
    }
}

/// How a sandboxed run ended, for messages.
pub(super) fn status_text(status: Status, timeout: Duration) -> String {
    match status {
        Status::Exited(c) => format!("exit status {c}"),
        Status::Signaled(s) => format!("killed by signal {s}"),
        Status::TimedOut => format!("timed out after {}s", timeout.as_secs()),
    }
}

/// `argv` as one line, for messages.
fn command_line(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` lines of `text`.
pub(super) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// File-trigger paths that some package installed something under: dpkg
/// would have activated them while unpacking.
fn activated_file_triggers(pkgs: &[Pkg], lists: &[Vec<String>]) -> Vec<String> {
    let interests: BTreeSet<String> = pkgs
        .iter()
        .flat_map(dpkgdb::trigger_interests)
        .map(|(_, name)| name)
        .filter(|n| n.starts_with('/'))
        .collect();
    interests
        .into_iter()
        .filter(|t| {
            let under = format!("{}/", t.trim_end_matches('/'));
            lists
                .iter()
                .flatten()
                .any(|p| p == t || p.starts_with(&under))
        })
        .collect()
}

/// The hostname commands see during the build: the image's, or `localhost`
/// when the image has none (its name comes from DHCP at boot).
pub(crate) fn sandbox_hostname(hostname: &str) -> String {
    if hostname.is_empty() {
        "localhost".into()
    } else {
        hostname.to_string()
    }
}
