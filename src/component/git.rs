//! Git sources: where a repository is fetched from (the git mapping), and
//! fetching a revision with the host's `git` CLI.
//!
//! Git hosts are configuration, like Debian mirrors: the recipe and the lock
//! keep the URL as written, and a mapping redirects a URL prefix to another
//! place (a local bare mirror, a `file://` path, an internal host):
//!
//! - `--mirror git:PREFIX=REPLACEMENT` (repeatable), then
//! - `IMGBUILD_MIRROR_GIT="PREFIX=REPLACEMENT …"` (whitespace-separated).
//!
//! The longest matching prefix wins, flags before the environment. A URL no
//! rule maps is fetched as written.
//!
//! Git runs without the user's or the system's configuration
//! (`GIT_CONFIG_GLOBAL=/dev/null`, `GIT_CONFIG_NOSYSTEM=1`), never prompts,
//! and is killed after a time bound.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ComponentError;

/// Prefix of a git rule in `--mirror` values.
pub const FLAG_PREFIX: &str = "git:";

/// The environment variable holding git rules.
pub const ENV: &str = "IMGBUILD_MIRROR_GIT";

/// How long one git command may run.
const GIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// URL prefix rewrites for git sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitMirrors {
    /// (prefix, replacement), flags first.
    rules: Vec<(String, String)>,
}

impl GitMirrors {
    /// The rules of the `git:` entries among `--mirror` values, then of
    /// `env(IMGBUILD_MIRROR_GIT)`. Other `--mirror` values are ignored
    /// (they name Debian archives or the Python index).
    pub fn new(
        flags: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<GitMirrors, ComponentError> {
        let mut rules = Vec::new();
        let mut add = |setting: &str, text: &str| -> Result<(), ComponentError> {
            let bad = |reason: &str| ComponentError::MirrorSetting {
                setting: setting.to_string(),
                reason: reason.to_string(),
            };
            let (prefix, replacement) = text
                .split_once('=')
                .ok_or_else(|| bad("expected git:PREFIX=REPLACEMENT"))?;
            let (prefix, replacement) = (prefix.trim(), replacement.trim());
            if prefix.is_empty() || replacement.is_empty() {
                return Err(bad("prefix and replacement must not be empty"));
            }
            if replacement.starts_with('-') {
                return Err(bad("a replacement cannot start with `-`"));
            }
            rules.push((prefix.to_string(), replacement.to_string()));
            Ok(())
        };
        for f in flags {
            if let Some(rule) = f.strip_prefix(FLAG_PREFIX) {
                add(f, rule)?;
            }
        }
        if let Some(v) = env(ENV) {
            for rule in v.split_whitespace() {
                add(&format!("{ENV}: {rule}"), rule)?;
            }
        }
        Ok(GitMirrors { rules })
    }

    /// The mirrors of the process: `flags` and the real environment.
    pub fn from_env(flags: &[String]) -> Result<GitMirrors, ComponentError> {
        GitMirrors::new(flags, |k| std::env::var(k).ok())
    }

    /// Where to fetch `url` from: the longest matching rule applied, else
    /// `url` itself.
    pub fn resolve(&self, url: &str) -> String {
        let best = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| url.starts_with(p.as_str()))
            // Longest prefix; among equals, the first rule (flags first).
            .max_by_key(|(i, (p, _))| (p.len(), std::cmp::Reverse(*i)));
        match best {
            Some((_, (prefix, replacement))) => format!("{replacement}{}", &url[prefix.len()..]),
            None => url.to_string(),
        }
    }
}

/// A revision fetched into a private bare repository.
#[derive(Debug)]
pub struct Fetched {
    /// The bare repository (inside the caller's temp directory).
    pub git_dir: std::path::PathBuf,
    /// The commit (40 hex digits).
    pub commit: String,
    /// The commit's committer time (Unix seconds).
    pub commit_time: i64,
}

/// Runs git with a clean configuration; stdout on success, else an error
/// naming `what` and quoting git's stderr.
pub(super) fn git(args: &[&str], what: &str) -> Result<Vec<u8>, ComponentError> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let fail = |reason: String| ComponentError::Git {
        what: what.to_string(),
        reason,
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot run the host's `git`: {e}")))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + GIT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("timed out after {GIT_TIMEOUT:?}")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(fail(String::from_utf8_lossy(&stderr).trim().to_string()))
    }
}

/// Whether `rev` is a full commit id.
pub fn is_commit_id(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Fetches `want` (a commit id when locked, else the recipe's `rev`) of the
/// repository at `from` into a new bare repository under `work`, shallowly.
/// With `expect`, the fetched commit must be that one: a commit the mirror
/// does not have is an error naming both.
pub fn fetch(
    label: &str,
    from: &str,
    want: &str,
    expect: Option<&str>,
    work: &Path,
) -> Result<Fetched, ComponentError> {
    let git_dir = work.join("repo.git");
    let gd = git_dir.to_str().ok_or_else(|| ComponentError::Git {
        what: label.to_string(),
        reason: format!("{} is not UTF-8", git_dir.display()),
    })?;
    git(&["init", "-q", "--bare", gd], label)?;
    // `--` ends options: neither the URL nor the revision can be one.
    let fetched = git(
        &[
            "-C",
            gd,
            "fetch",
            "-q",
            "--depth",
            "1",
            "--no-tags",
            "--",
            from,
            want,
        ],
        &format!("{label}: fetching `{want}` from {from}"),
    );
    if let Err(e) = fetched {
        return Err(match expect {
            Some(commit) => ComponentError::MissingCommit {
                component: label.to_string(),
                commit: commit.to_string(),
                from: from.to_string(),
                reason: e.to_string(),
            },
            None => e,
        });
    }
    let commit = String::from_utf8_lossy(&git(
        &["-C", gd, "rev-parse", "--verify", "FETCH_HEAD^{commit}"],
        label,
    )?)
    .trim()
    .to_string();
    if let Some(want) = expect
        && commit != want
    {
        return Err(ComponentError::MissingCommit {
            component: label.to_string(),
            commit: want.to_string(),
            from: from.to_string(),
            reason: format!("the mirror gave commit {commit} instead"),
        });
    }
    let time = String::from_utf8_lossy(&git(
        &["-C", gd, "show", "-s", "--format=%ct", &commit],
        label,
    )?)
    .trim()
    .parse::<i64>()
    .map_err(|e| ComponentError::Git {
        what: label.to_string(),
        reason: format!("commit time of {commit}: {e}"),
    })?;
    Ok(Fetched {
        git_dir,
        commit,
        commit_time: time,
    })
}

/// Checks out `fetched.commit` into the empty directory `dest` (no `.git`),
/// through a private index file, with no line-ending conversion and real
/// symlinks.
pub fn checkout(label: &str, fetched: &Fetched, dest: &Path) -> Result<(), ComponentError> {
    let gd = fetched.git_dir.to_str().expect("checked in fetch");
    let index = fetched.git_dir.join("export-index");
    let dest = dest.to_str().ok_or_else(|| ComponentError::Git {
        what: label.to_string(),
        reason: format!("{} is not UTF-8", dest.display()),
    })?;
    let index_arg = format!("--index-output={}", index.display());
    git(
        &["--git-dir", gd, "read-tree", &index_arg, &fetched.commit],
        label,
    )?;
    let prefix = format!("--prefix={dest}/");
    let out = Command::new("git")
        .args([
            "-c",
            "core.autocrlf=false",
            "-c",
            "core.symlinks=true",
            "--git-dir",
            gd,
            "--work-tree",
            dest,
            "checkout-index",
            "-a",
            "-f",
            &prefix,
        ])
        // checkout-index reads the index named by GIT_INDEX_FILE.
        .env("GIT_INDEX_FILE", &index)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ComponentError::Git {
            what: label.to_string(),
            reason: format!("cannot run the host's `git`: {e}"),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ComponentError::Git {
            what: format!("{label}: checking out {}", fetched.commit),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_longest_prefix_flags_first() {
        let flags = vec![
            "debian=http://127.0.0.1:9/debian".to_string(),
            "git:https://github.com/=file:///srv/git/".to_string(),
            "git:https://github.com/p4lang/=/m/p4/".to_string(),
        ];
        let m = GitMirrors::new(&flags, |k| {
            (k == ENV).then(|| "https://github.com/=/env/ https://x.org/=/x/".to_string())
        })
        .unwrap();
        assert_eq!(
            m.resolve("https://github.com/p4lang/behavioral-model"),
            "/m/p4/behavioral-model"
        );
        assert_eq!(
            m.resolve("https://github.com/parmentelat/kube-install"),
            "file:///srv/git/parmentelat/kube-install"
        );
        assert_eq!(m.resolve("https://x.org/a.git"), "/x/a.git");
        assert_eq!(m.resolve("https://other/a"), "https://other/a");
        let e = GitMirrors::new(&["git:nothing".into()], |_| None).unwrap_err();
        assert!(e.to_string().contains("git:nothing"), "{e}");
        let e = GitMirrors::new(&["git:a=-x".into()], |_| None).unwrap_err();
        assert!(e.to_string().contains("cannot start with"), "{e}");
    }
}
