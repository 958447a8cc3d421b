//! Python byte-code that normalisation drops is not compiled while
//! configuring.
//!
//! Debian's Python packages byte-compile their modules in their postinsts
//! (`python3.13 /usr/lib/python3.13/py_compile.py FILES…` for the standard
//! library, `py3compile`, which runs `python3.X -m py_compile -`, for the
//! others): about one second of one core for trixie's standard library,
//! on the path of every build, since dpkg runs one script at a time. Every
//! one of those `__pycache__/*.pyc` files is removed again by
//! normalisation (marshal output is not reproducible; see `normalize.rs`),
//! so the compiling is lost work.
//!
//! The dpkg runs therefore see, in place of each interpreter's
//! `py_compile.py`, that same file with one change ([`patched`]): when the
//! byte-code file would go into a `__pycache__` directory as `*.pyc` —
//! what normalisation removes — `compile()` reads the source and makes the
//! directory as before, and returns without compiling or writing. Every
//! other target (an explicit `cfile`, a `pycache_prefix`) is compiled as
//! before. The tree itself is not changed: the file is bind-mounted
//! read-only over the image's own for the dpkg runs only (the recipe's
//! steps and the Python layer see the real one). The image gets the same
//! bytes; what differs is that a module with a syntax error no longer
//! fails its package's postinst (it would fail on import either way), which
//! the README lists. When the image's `py_compile.py` does not have the
//! lines the change is made at (another Python), nothing is changed.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::sandbox::SandboxSpec;

/// Largest `py_compile.py` read (CPython's is ~7 kB).
const MAX_SOURCE: u64 = 1 << 20;

/// The line after which the change goes: the source has been read, the
/// byte-code target is known and checked, nothing compiled yet.
const AFTER: &str = "    source_bytes = loader.get_data(file)\n";

/// What goes after [`AFTER`]: the directory made as CPython's own code
/// below it makes it, then nothing compiled or written.
const SKIP: &str = "    if _imgbuild_dropped(cfile):
        # imgbuild: this byte-code file is removed from the image by its
        # normalisation: the directory is made, nothing compiled or written.
        try:
            dirname = os.path.dirname(cfile)
            if dirname:
                os.makedirs(dirname)
        except FileExistsError:
            pass
        return cfile
";

/// The line before which the helper goes (defined before `main()` runs).
const BEFORE: &str = "\ndef compile(";

/// The helper: exactly what `normalize.rs` removes (a `*.pyc` directly in
/// a directory named `__pycache__`).
const HELPER: &str = "
def _imgbuild_dropped(cfile):
    # imgbuild: whether normalisation removes `cfile` from the image.
    head, name = os.path.split(os.fspath(cfile))
    return os.path.basename(head) == '__pycache__' and name.endswith('.pyc') and name != '.pyc'

";

/// `source` (a `py_compile.py`) with the change of the module docs, or
/// `None` when it does not have each of the lines it is made at exactly
/// once.
pub(crate) fn patched(source: &str) -> Option<String> {
    if source.matches(AFTER).count() != 1 || source.matches(BEFORE).count() != 1 {
        return None;
    }
    let with_skip = source.replacen(AFTER, &format!("{AFTER}{SKIP}"), 1);
    Some(with_skip.replacen(BEFORE, &format!("\n{HELPER}{}", &BEFORE[1..]), 1))
}

/// The changed `py_compile.py` files of one image, ready to be bound over
/// the image's own in its dpkg runs.
pub(crate) struct DroppedBytecode {
    /// Holds the changed files (removed with it).
    _dir: tempfile::TempDir,
    /// (changed file on the host, path inside the image).
    binds: Vec<(PathBuf, PathBuf)>,
}

impl DroppedBytecode {
    /// For every `/usr/lib/python3.N/py_compile.py` the packages' file
    /// `lists` name that is a regular file in `root` (reached without a
    /// symlink: the sandbox refuses a mount point behind one) and has the
    /// lines of [`patched`]; `None` when there is none.
    pub(crate) fn prepare(root: &Path, lists: &[Vec<String>]) -> Option<DroppedBytecode> {
        let mut paths: Vec<&str> = lists
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|p| is_py_compile(p))
            .collect();
        paths.sort();
        paths.dedup();
        let sources: Vec<(&str, String)> = paths
            .into_iter()
            .filter_map(|p| Some((p, patched(&read_in_root(root, p)?)?)))
            .collect();
        if sources.is_empty() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix(".bytecode-")
            .tempdir_in(root.parent()?)
            .ok()?;
        let mut binds = Vec::new();
        for (i, (inside, text)) in sources.iter().enumerate() {
            let host = dir.path().join(format!("{i}.py"));
            fs::write(&host, text).ok()?;
            binds.push((host, PathBuf::from(inside)));
        }
        Some(DroppedBytecode { _dir: dir, binds })
    }

    /// Binds the changed files read-only over the image's in `spec`.
    pub(crate) fn apply(&self, spec: &mut SandboxSpec) {
        spec.ro_binds.extend(self.binds.iter().cloned());
    }
}

/// Whether `path` is `/usr/lib/python3.N/py_compile.py`.
fn is_py_compile(path: &str) -> bool {
    path.strip_prefix("/usr/lib/python3.")
        .and_then(|rest| rest.strip_suffix("/py_compile.py"))
        .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
}

/// The UTF-8 text of the regular file at `path` (absolute inside the
/// image), opened beneath `root` with no symlink on the way; `None` when it
/// is not that, or larger than [`MAX_SOURCE`].
fn read_in_root(root: &Path, path: &str) -> Option<String> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let fd = rustix::fs::openat2(
        &root_fd,
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    )
    .ok()?;
    let file = File::from(fd);
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_SOURCE {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_SOURCE).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The lines [`patched`] works at, as CPython 3.8–3.13 have them.
    const MINIMAL: &str = r#"import importlib.machinery
import importlib.util
import os

def compile(file, cfile=None):
    if cfile is None:
        cfile = importlib.util.cache_from_source(file)
    loader = importlib.machinery.SourceFileLoader('<py_compile>', file)
    source_bytes = loader.get_data(file)
    code = loader.source_to_code(source_bytes, file)
    try:
        dirname = os.path.dirname(cfile)
        if dirname:
            os.makedirs(dirname)
    except FileExistsError:
        pass
    with open(cfile, 'wb') as f:
        f.write(b'compiled')
    return cfile

if __name__ == '__main__':
    import sys
    for f in sys.argv[1:]:
        compile(f)
"#;

    #[test]
    fn patched_only_with_each_line_once() {
        let p = patched(MINIMAL).unwrap();
        assert!(p.find("def _imgbuild_dropped").unwrap() < p.find("def compile(").unwrap());
        let skip = p.find("if _imgbuild_dropped(cfile)").unwrap();
        assert!(p.find(AFTER).unwrap() < skip && skip < p.find("source_to_code").unwrap());
        assert_eq!(patched("print('no compile here')\n"), None);
        assert_eq!(patched(&format!("{MINIMAL}{AFTER}")), None);
        assert_eq!(patched(&MINIMAL.replace(BEFORE, "\ndef other(")), None);
    }

    #[test]
    fn only_the_interpreters_own_files_are_chosen() {
        assert!(is_py_compile("/usr/lib/python3.13/py_compile.py"));
        assert!(is_py_compile("/usr/lib/python3.9/py_compile.py"));
        for p in [
            "/usr/lib/python3/py_compile.py",
            "/usr/lib/python3.x/py_compile.py",
            "/usr/lib/python3.13/test/py_compile.py",
            "/usr/lib/python2.7/py_compile.py",
            "/usr/lib/python3.13/py_compile.pyc",
        ] {
            assert!(!is_py_compile(p), "{p}");
        }
    }

    #[test]
    fn files_behind_symlinks_or_not_regular_are_left() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("usr/lib/python3.13")).unwrap();
        fs::create_dir_all(root.join("usr/lib/python3.12/py_compile.py")).unwrap();
        fs::write(root.join("usr/lib/python3.13/py_compile.py"), MINIMAL).unwrap();
        fs::write(tmp.path().join("outside.py"), MINIMAL).unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("usr/lib/python3.11")).unwrap();
        std::os::unix::fs::symlink(
            tmp.path().join("outside.py"),
            root.join("usr/lib/python3.10"),
        )
        .unwrap();
        fs::create_dir_all(root.join("usr/lib/python3.10x")).unwrap();
        let lists = vec![
            ["11", "12", "13", "10"]
                .iter()
                .map(|v| format!("/usr/lib/python3.{v}/py_compile.py"))
                .collect::<Vec<_>>(),
        ];
        let made = DroppedBytecode::prepare(&root, &lists).unwrap();
        let inside: Vec<_> = made.binds.iter().map(|(_, i)| i.clone()).collect();
        assert_eq!(inside, [PathBuf::from("/usr/lib/python3.13/py_compile.py")]);
        assert_eq!(
            fs::read_to_string(&made.binds[0].0).unwrap(),
            patched(MINIMAL).unwrap()
        );
        let dir = made.binds[0].0.parent().unwrap().to_path_buf();
        drop(made);
        assert!(!dir.exists(), "the changed files go with it");
        fs::remove_file(root.join("usr/lib/python3.13/py_compile.py")).unwrap();
        assert!(DroppedBytecode::prepare(&root, &lists).is_none());
    }

    /// The host's own `py_compile.py`, changed, run by the host's Python:
    /// the `__pycache__` target is only a directory, an explicit target is
    /// compiled, and a missing source still fails.
    #[test]
    fn the_changed_module_skips_only_what_normalisation_drops() {
        let Some(host) = fs::read_dir("/usr/lib")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("py_compile.py"))
            .find(|p| p.to_str().is_some_and(is_py_compile) && p.is_file())
        else {
            eprintln!("no /usr/lib/python3.N/py_compile.py on this host: skipped");
            return;
        };
        let python = format!(
            "/usr/bin/{}",
            host.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        );
        if !Path::new(&python).is_file() {
            eprintln!("no {python} beside {}: skipped", host.display());
            return;
        }
        let text = fs::read_to_string(&host).unwrap();
        let changed = patched(&text).expect("the host's CPython has the lines");
        let tmp = tempfile::tempdir().unwrap();
        let module = tmp.path().join("py_compile.py");
        fs::write(&module, changed).unwrap();
        let pkg = tmp.path().join("pkg");
        fs::create_dir(&pkg).unwrap();
        fs::write(pkg.join("good.py"), "x = 1\n").unwrap();
        fs::write(pkg.join("bad.py"), "def (:\n").unwrap();
        let run = |args: &[&str]| {
            Command::new(&python)
                .args(["-E", "-S"])
                .args(args)
                .output()
                .unwrap()
        };
        let good = pkg.join("good.py");
        let out = run(&[module.to_str().unwrap(), good.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let cache = pkg.join("__pycache__");
        assert!(cache.is_dir(), "the directory is made as before");
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 0, "nothing written");
        // The same through `-m py_compile -`, as py3compile runs it.
        let bad = pkg.join("bad.py");
        let mut child = Command::new(&python)
            .args(["-E", "-S", module.to_str().unwrap(), "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let list = format!("{}\n{}\n", good.display(), bad.display());
        child
            .stdin
            .take()
            .unwrap()
            .write_all(list.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 0);
        // An explicit target is compiled, and a syntax error is one there.
        let script = format!(
            "import sys; sys.path.insert(0, {dir:?}); import py_compile\n\
             print(py_compile.compile({good:?}, cfile={out:?}, doraise=True))\n\
             try:\n    py_compile.compile({bad:?}, cfile={out:?}, doraise=True)\n\
             except py_compile.PyCompileError:\n    print('refused')\n",
            dir = tmp.path().to_str().unwrap(),
            good = good.to_str().unwrap(),
            bad = bad.to_str().unwrap(),
            out = tmp.path().join("explicit.pyc").to_str().unwrap(),
        );
        let out = run(&["-c", &script]);
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("refused"));
        assert!(tmp.path().join("explicit.pyc").metadata().unwrap().len() > 16);
        // A missing source fails as before.
        let missing = pkg.join("missing.py");
        let out = run(&[module.to_str().unwrap(), missing.to_str().unwrap()]);
        assert!(!out.status.success(), "{out:?}");
    }
}
