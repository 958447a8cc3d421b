//! The shared-library check of a component's files: every dynamic ELF a
//! component installs must find each `DT_NEEDED` library inside the image,
//! where the dynamic linker would look: its `DT_RUNPATH`/`DT_RPATH`
//! (`$ORIGIN` expanded), the directories of the image's
//! `/etc/ld.so.conf` (and its `include`s), then the default directories of
//! the architecture. Symlinks are followed inside the image (an absolute
//! target is taken relative to the image's root), never on the host.
//!
//! Only a component's direct `DT_NEEDED` entries are checked: the libraries
//! they name come from Debian packages whose own dependencies the solver
//! checked.

use std::fs;
use std::path::{Component as PathPart, Path, PathBuf};

use super::ComponentError;

/// One unresolved library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The ELF file, absolute inside the image.
    pub file: String,
    /// The library it needs (`libthrift-0.17.0.so`).
    pub library: String,
}

/// The multiarch triplet of a Debian architecture.
fn triplet(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" => "x86_64-linux-gnu",
        "arm64" => "aarch64-linux-gnu",
        "i386" => "i386-linux-gnu",
        "armhf" => "arm-linux-gnueabihf",
        "ppc64el" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        _ => return None,
    })
}

/// Resolves `path` (absolute inside `root`) component by component,
/// following symlinks inside `root`; the host path of what it names, if it
/// exists. At most 40 links, like the kernel.
pub fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let candidate: PathBuf = std::iter::once(root.to_path_buf())
            .chain(done.iter().map(PathBuf::from))
            .chain(std::iter::once(PathBuf::from(&part)))
            .collect();
        let meta = fs::symlink_metadata(&candidate).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = fs::read_link(&candidate).ok()?;
            if target.is_absolute() {
                done.clear();
            }
            for p in target.components().rev() {
                match p {
                    PathPart::Normal(s) => pending.push(s.to_string_lossy().into_owned()),
                    PathPart::ParentDir => pending.push("..".into()),
                    _ => {}
                }
            }
        } else {
            done.push(part);
        }
    }
    let host: PathBuf = std::iter::once(root.to_path_buf())
        .chain(done.iter().map(PathBuf::from))
        .collect();
    host.exists().then_some(host)
}

/// The library directories of `/etc/ld.so.conf` in the image (with
/// `include` globs of the `dir/*.conf` form), in order.
fn ld_so_conf(root: &Path) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut files = vec!["/etc/ld.so.conf".to_string()];
    let mut seen = 0;
    while let Some(file) = files.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        let Some(host) = resolve_in(root, &file) else {
            continue;
        };
        let Ok(text) = fs::read_to_string(host) else {
            continue;
        };
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line.strip_prefix("include") {
                let pattern = pattern.trim();
                // `include /etc/ld.so.conf.d/*.conf`: every match, sorted.
                if let Some((dir, suffix)) = pattern.rsplit_once("/*") {
                    if let Some(d) = resolve_in(root, dir)
                        && let Ok(entries) = fs::read_dir(d)
                    {
                        let mut names: Vec<String> = entries
                            .flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| n.ends_with(suffix))
                            .collect();
                        names.sort();
                        for n in names.into_iter().rev() {
                            files.push(format!("{dir}/{n}"));
                        }
                    }
                } else {
                    files.push(pattern.to_string());
                }
            } else if line.starts_with('/') {
                dirs.push(line.to_string());
            }
        }
    }
    dirs
}

/// Checks every ELF among `files` (absolute paths inside the image at
/// `root`); the libraries that cannot be found, in file order.
pub fn check(root: &Path, files: &[String], arch: &str) -> Result<Vec<Missing>, ComponentError> {
    let mut defaults = Vec::new();
    if let Some(t) = triplet(arch) {
        defaults.push(format!("/lib/{t}"));
        defaults.push(format!("/usr/lib/{t}"));
    }
    defaults.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(String::from));
    let conf = ld_so_conf(root);
    let mut missing = Vec::new();
    for file in files {
        let Some(host) = resolve_in(root, file) else {
            continue;
        };
        let meta = fs::symlink_metadata(&host).map_err(ComponentError::io(&host))?;
        if !meta.is_file() || meta.len() < 64 {
            continue;
        }
        let mut magic = [0u8; 4];
        {
            use std::io::Read;
            let mut f = fs::File::open(&host).map_err(ComponentError::io(&host))?;
            if f.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
                continue;
            }
        }
        let bytes = fs::read(&host).map_err(ComponentError::io(&host))?;
        let Ok(elf) = goblin::elf::Elf::parse(&bytes) else {
            // Not an ELF we can read (a test blob, a firmware image): nothing to check.
            continue;
        };
        if elf.dynamic.is_none() {
            continue;
        }
        let origin = Path::new(file)
            .parent()
            .map_or("/".to_string(), |p| p.display().to_string());
        let own: Vec<String> = elf
            .runpaths
            .iter()
            .chain(elf.rpaths.iter())
            .flat_map(|r| r.split(':'))
            .filter(|d| !d.is_empty())
            .map(|d| d.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin))
            .collect();
        for lib in &elf.libraries {
            let found = if lib.contains('/') {
                resolve_in(root, lib).is_some()
            } else {
                own.iter()
                    .chain(conf.iter())
                    .chain(defaults.iter())
                    .any(|d| resolve_in(root, &format!("{d}/{lib}")).is_some())
            };
            if !found {
                missing.push(Missing {
                    file: file.clone(),
                    library: lib.to_string(),
                });
            }
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_the_root_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
        fs::write(root.join("usr/lib/x86_64-linux-gnu/libz.so.1.3"), b"z").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink(
            "/usr/lib/x86_64-linux-gnu/libz.so.1.3",
            root.join("usr/lib/x86_64-linux-gnu/libz.so.1"),
        )
        .unwrap();
        // An absolute link that exists on the host but not in the root.
        std::os::unix::fs::symlink("/etc/passwd", root.join("usr/lib/escape")).unwrap();
        assert!(resolve_in(root, "/lib/x86_64-linux-gnu/libz.so.1").is_some());
        assert!(resolve_in(root, "/usr/lib/escape").is_none());
        assert!(resolve_in(root, "/lib/../lib/x86_64-linux-gnu/libz.so.1.3").is_some());
        assert!(resolve_in(root, "/nothing").is_none());
    }

    #[test]
    fn host_binary_needs_libc() {
        // The host's own `true` needs libc.so.6: found in a root that has
        // it, reported in one that does not.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::copy("/usr/bin/true", root.join("usr/bin/true")).unwrap();
        let files = vec!["/usr/bin/true".to_string()];
        let missing = check(root, &files, "amd64").unwrap();
        assert!(
            missing
                .iter()
                .any(|m| m.library == "libc.so.6" && m.file == "/usr/bin/true"),
            "{missing:?}"
        );
        fs::create_dir_all(root.join("etc/ld.so.conf.d")).unwrap();
        fs::write(
            root.join("etc/ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n",
        )
        .unwrap();
        fs::write(root.join("etc/ld.so.conf.d/x.conf"), "/opt/l # comment\n").unwrap();
        fs::create_dir_all(root.join("opt/l")).unwrap();
        fs::write(root.join("opt/l/libc.so.6"), b"libc").unwrap();
        let missing = check(root, &files, "amd64").unwrap();
        assert!(
            !missing.iter().any(|m| m.library == "libc.so.6"),
            "{missing:?}"
        );
    }
}
