//! `imgbuild verify RECIPE`: build twice and compare, to prove the build is
//! reproducible.
//!
//! Both builds assemble from scratch (the rootfs cache is neither read nor
//! written) in different temp directories, the second with a different
//! umask (077 instead of 022) and at least a second later on the wall clock.
//! Every artifact's sha256 is compared; on a difference, the two rootfs tars
//! are walked to name the first differing files, `diffoscope` is run on
//! them when installed, both builds are kept for inspection, and an error
//! (non-zero exit) says all of it.

use crate::core::scratch::Removals;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::image::{Compression, Manifest, compare};
use crate::ops::build::{BuildArgs, Plan};

/// How many differing tar entries an error lists.
const ENTRY_LIMIT: usize = 20;
/// How long diffoscope may run.
const DIFFOSCOPE_TIMEOUT: Duration = Duration::from_secs(300);
/// How many lines of diffoscope's report an error quotes.
const DIFFOSCOPE_LINES: usize = 80;

/// The arguments of `imgbuild verify`.
#[derive(Debug, Clone, Default)]
pub struct VerifyArgs {
    /// Recipe name or path.
    pub recipe: String,
    /// The project directory (`-C`).
    pub workspace: PathBuf,
    /// `--vendor DIR`; else `$IMGBUILD_VENDOR`, else `<workspace>/vendor`.
    pub vendor: Option<PathBuf>,
    /// Where the two builds are made (and kept on a difference); default
    /// `<workspace>/out`.
    pub out: Option<PathBuf>,
    /// SOURCE_DATE_EPOCH; default derived from the lock.
    pub source_date_epoch: Option<i64>,
    /// `--no-scripts`: do not run maintainer scripts.
    pub no_scripts: bool,
    /// No progress lines or summary.
    pub quiet: bool,
}

/// A successful verification: both builds gave the same bytes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Recipe name.
    pub recipe: String,
    /// The build key both builds had.
    pub build_key: String,
    /// The artifacts, identical in both builds.
    pub manifest: Manifest,
    /// Wall-clock seconds for both builds.
    pub seconds: f64,
}

/// One of the two builds, in its own directory: `rootfs.tar` (the
/// uncompressed tar) and `out/` (every artifact).
struct OneBuild {
    tar: PathBuf,
    manifest: Manifest,
}

/// Runs the verification; an `Err` on any difference (naming it).
pub fn run(args: &VerifyArgs) -> Result<VerifyReport> {
    let started = Instant::now();
    let plan = Plan::new(&BuildArgs {
        recipe: args.recipe.clone(),
        workspace: args.workspace.clone(),
        vendor: args.vendor.clone(),
        out: args.out.clone(),
        source_date_epoch: args.source_date_epoch,
        quiet: args.quiet,
        compression: Compression::None,
        no_scripts: args.no_scripts,
        cache_dir: None,
    })?;
    let _lock =
        super::guard::Guard::acquire(&args.workspace, &plan.out_root, &plan.cache_dir, args.quiet)?;
    fs::create_dir_all(&plan.out_root)
        .with_context(|| format!("creating {}", plan.out_root.display()))?;
    let work = tempfile::Builder::new()
        .prefix(&format!(".{}.verify-", plan.recipe.name))
        .tempdir_in(&plan.out_root)
        .with_context(|| format!("creating a temp directory in {}", plan.out_root.display()))?;

    let a = build_once(&plan, &work.path().join("a"), 0o022)?;
    // A later wall clock for the second build: anything that leaks the
    // time of the build (at one-second resolution or finer) shows.
    let min_gap = Duration::from_millis(1100);
    if let Some(wait) = min_gap.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
    let b = build_once(&plan, &work.path().join("b"), 0o077)?;

    let diffs = compare::artifacts(&a.manifest, &b.manifest);
    if diffs.is_empty() && !plan.components.is_empty() {
        // Both builds installed the same component packages; build those
        // once more from scratch (a fresh cache) and compare them too.
        if !args.quiet {
            eprintln!(
                "Rebuilding {} component(s) from scratch…",
                plan.components.len()
            );
        }
        let cache = work.path().join("component-cache");
        crate::component::build::verify_rebuild(
            &plan.recipe,
            &plan.lock,
            &crate::component::build::BuildContext {
                store: &plan.store,
                cache_dir: &cache,
                work: &work.path().join("component-work"),
                source_date_epoch: plan.assemble.source_date_epoch,
                jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
                quiet: args.quiet,
            },
        )?;
    }
    if diffs.is_empty() {
        let report = VerifyReport {
            recipe: plan.recipe.name.clone(),
            build_key: plan.build_key.clone(),
            manifest: a.manifest,
            seconds: started.elapsed().as_secs_f64(),
        };
        if !args.quiet {
            eprintln!(
                "{} is reproducible: {} artifacts identical in two builds ({:.1}s)",
                report.recipe,
                report.manifest.artifacts.len(),
                report.seconds
            );
        }
        return Ok(report);
    }

    let kept = work.keep();
    let _ = fs::write(
        kept.join(super::guard::KEPT_MARKER),
        "kept by imgbuild verify\n",
    );
    let mut msg = format!(
        "`{}` is not reproducible: {} artifact(s) differ between two builds:",
        plan.recipe.name,
        diffs.len()
    );
    for d in &diffs {
        let _ = write!(msg, "\n  {d}");
    }
    let entries = compare::tars(&a.tar, &b.tar, ENTRY_LIMIT)
        .with_context(|| format!("comparing {} and {}", a.tar.display(), b.tar.display()))?;
    if entries.is_empty() {
        let _ = write!(msg, "\nthe rootfs tars have the same entries");
    } else {
        let _ = write!(msg, "\nfirst differing files in the rootfs:");
        for e in &entries {
            let _ = write!(msg, "\n  {e}");
        }
    }
    if let Some(report) = diffoscope(&a.tar, &b.tar) {
        let _ = write!(msg, "\ndiffoscope:\n{report}");
    }
    let _ = write!(
        msg,
        "\nboth builds are kept in {} (a/rootfs.tar, a/out/, b/…)",
        kept.display()
    );
    bail!(msg)
}

/// Assembles and emits one build into `dir` with the process umask set to
/// `umask` for the duration (restored after, also on error).
fn build_once(plan: &Plan, dir: &Path, umask: u32) -> Result<OneBuild> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tar = dir.join("rootfs.tar");
    let out = dir.join("out");
    let result = with_umask(umask, || -> Result<Manifest> {
        write_tar_file(&tar, |w| {
            plan.assemble_tar(dir, w, None, &Removals::default(), None)
                .map(drop)
        })?;
        fs::create_dir(&out).with_context(|| format!("creating {}", out.display()))?;
        plan.emit(&tar, &out, dir, None, None)
    });
    Ok(OneBuild {
        manifest: result?,
        tar,
    })
}

/// Runs `f` with the process umask set to `mask`. The umask is process-wide:
/// other threads creating files meanwhile get it too.
fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
    let out = f();
    rustix::process::umask(old);
    out
}

/// The head of `diffoscope`'s text report on two files, if it is installed
/// (None when it is not, or fails to start).
fn diffoscope(a: &Path, b: &Path) -> Option<String> {
    let mut child = Command::new("diffoscope")
        .args(["--text", "-", "--no-progress"])
        .arg(a)
        .arg(b)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + DIFFOSCOPE_TIMEOUT;
    let mut timed_out = false;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let mut lines: Vec<&str> = text.lines().take(DIFFOSCOPE_LINES + 1).collect();
    let cut = lines.len() > DIFFOSCOPE_LINES;
    lines.truncate(DIFFOSCOPE_LINES);
    let mut out = lines.join("\n");
    if cut {
        out.push_str("\n[…]");
    }
    if timed_out {
        out.push_str("\n[diffoscope timed out]");
    }
    Some(out)
}
/// Creates the file at `path` for a tar and writes it via `f` .
fn write_tar_file(
    path: &Path,
    f: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<()>,
) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    f(&mut w)?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
