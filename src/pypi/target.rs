//! The environment Python distributions are chosen for: the image, not the
//! host. Interpreter version from the locked `python3`, glibc level from the
//! locked `libc6`, machine from the recipe architecture.

use std::collections::HashMap;
use std::str::FromStr;

use pep440_rs::Version;
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder};

use super::error::{Context, PypiError, Result, invalid};
use crate::lock::Lockfile;

/// The image's Python environment.
#[derive(Debug, Clone)]
pub struct Target {
    /// `(3, 11)`.
    pub python: (u32, u32),
    /// `3.11.2`.
    pub python_full: String,
    /// glibc `(2, 36)`.
    pub glibc: (u32, u32),
    /// `x86_64`, `aarch64`, …
    pub machine: String,
    markers: MarkerEnvironment,
    /// Wheel tag triple → rank (lower is better).
    ranks: HashMap<String, u32>,
}

/// Debian architecture → the machine name Python reports and wheels use.
pub fn machine_of(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "i386" => "i686",
        "armhf" => "armv7l",
        "ppc64el" => "ppc64le",
        "s390x" => "s390x",
        _ => return None,
    })
}

/// The upstream part of a Debian version, as numbers: `3.11.2-1+b1` → [3, 11, 2].
fn upstream_numbers(deb: &str) -> Vec<u32> {
    let v = deb.split_once(':').map_or(deb, |(_, v)| v);
    let v = v.rsplit_once('-').map_or(v, |(u, _)| u);
    v.split('.')
        .map_while(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

impl Target {
    /// The target of a lock's Debian layer: needs `python3` and `libc6`.
    pub fn from_lock(lock: &Lockfile) -> Result<Target> {
        let python = lock
            .package("python3")
            .context("`[python]` needs the Debian package python3 in the lock; add \"python3\" to `packages`")?;
        let libc = lock
            .package("libc6")
            .context("`[python]` needs libc6 in the lock (the glibc level of manylinux wheels)")?;
        let py = upstream_numbers(&python.version);
        let lc = upstream_numbers(&libc.version);
        if py.len() < 2 || lc.len() < 2 {
            invalid!(
                "cannot read versions from python3 {} / libc6 {}",
                python.version,
                libc.version
            );
        }
        let arch = &lock.recipe.architecture;
        let machine = machine_of(arch)
            .ok_or_else(|| PypiError::Invalid(format!("no Python platform known for `{arch}`")))?;
        let full = py
            .iter()
            .take(3)
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(".");
        Target::new((py[0], py[1]), &full, (lc[0], lc[1]), machine)
    }

    /// A target from explicit values (tests, benchmarks).
    pub fn new(python: (u32, u32), full: &str, glibc: (u32, u32), machine: &str) -> Result<Target> {
        let short = format!("{}.{}", python.0, python.1);
        let markers = MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
            implementation_name: "cpython",
            implementation_version: full,
            os_name: "posix",
            platform_machine: machine,
            platform_python_implementation: "CPython",
            platform_release: "",
            platform_system: "Linux",
            platform_version: "",
            python_full_version: full,
            python_version: &short,
            sys_platform: "linux",
        })
        .with_context(|| format!("python version `{full}`"))?;
        let ranks = tag_ranks(python, glibc, machine);
        Ok(Target {
            python,
            python_full: full.to_string(),
            glibc,
            machine: machine.to_string(),
            markers,
            ranks,
        })
    }

    /// PEP 508 marker values of the image.
    pub fn markers(&self) -> &MarkerEnvironment {
        &self.markers
    }

    /// The interpreter version, for `Requires-Python`.
    pub fn python_version(&self) -> Version {
        Version::from_str(&self.python_full).expect("checked in new")
    }

    /// Rank of the best tag of a wheel (lower is better); `None`: not installable.
    pub fn wheel_rank(&self, tags: &[String]) -> Option<u32> {
        tags.iter().filter_map(|t| self.ranks.get(t)).min().copied()
    }

    /// Where local installs go in Debian: `usr/local/lib/python3.X/dist-packages`.
    pub fn site_packages(&self) -> String {
        format!(
            "usr/local/lib/python{}.{}/dist-packages",
            self.python.0, self.python.1
        )
    }

    /// `cp311-manylinux_2_36_x86_64`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "cp{}{}-manylinux_{}_{}_{}",
            self.python.0, self.python.1, self.glibc.0, self.glibc.1, self.machine
        )
    }
}

/// Platform tags, best first: `manylinux_2_X` from the target glibc down to
/// 2.5 with the legacy aliases at their levels. `linux_*` (built for one
/// host, not portable) is never accepted.
fn platforms(glibc: (u32, u32), machine: &str) -> Vec<String> {
    let mut out = Vec::new();
    if glibc.0 == 2 {
        for minor in (5..=glibc.1).rev() {
            out.push(format!("manylinux_2_{minor}_{machine}"));
            let legacy = match minor {
                17 => "manylinux2014",
                12 => "manylinux2010",
                5 => "manylinux1",
                _ => continue,
            };
            let legacy_ok = match minor {
                17 => true,
                _ => matches!(machine, "x86_64" | "i686"),
            };
            if legacy_ok {
                out.push(format!("{legacy}_{machine}"));
            }
        }
    }
    out
}

/// The order `packaging.tags.sys_tags()` gives for CPython on Linux.
fn tag_ranks(python: (u32, u32), glibc: (u32, u32), machine: &str) -> HashMap<String, u32> {
    let (major, minor) = python;
    let cp = format!("cp{major}{minor}");
    let plats = platforms(glibc, machine);
    let mut order: Vec<String> = Vec::new();
    for abi in [cp.as_str(), "abi3", "none"] {
        for p in &plats {
            order.push(format!("{cp}-{abi}-{p}"));
        }
    }
    for m in (2..minor).rev() {
        for p in &plats {
            order.push(format!("cp{major}{m}-abi3-{p}"));
        }
    }
    let mut pys = vec![format!("py{major}{minor}"), format!("py{major}")];
    pys.extend((0..minor).rev().map(|m| format!("py{major}{m}")));
    for py in &pys {
        for p in &plats {
            order.push(format!("{py}-none-{p}"));
        }
    }
    order.push(format!("{cp}-none-any"));
    for py in &pys {
        order.push(format!("{py}-none-any"));
    }
    let mut ranks = HashMap::new();
    for (i, t) in order.into_iter().enumerate() {
        ranks.entry(t).or_insert(i as u32);
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_for_bookworm_amd64() {
        let t = Target::new((3, 11), "3.11.2", (2, 36), "x86_64").unwrap();
        let r = |s: &str| t.wheel_rank(&[s.to_string()]);
        let best = r("cp311-cp311-manylinux_2_36_x86_64").unwrap();
        let m2014 = r("cp311-cp311-manylinux2014_x86_64").unwrap();
        let abi3 = r("cp37-abi3-manylinux_2_17_x86_64").unwrap();
        let any = r("py3-none-any").unwrap();
        assert!(best < m2014 && m2014 < abi3 && abi3 < any);
        assert_eq!(r("cp311-cp311-manylinux_2_38_x86_64"), None, "newer glibc");
        assert_eq!(r("cp312-cp312-manylinux_2_17_x86_64"), None, "other python");
        assert_eq!(r("cp311-cp311-linux_x86_64"), None, "not portable");
        assert_eq!(
            r("cp311-cp311-manylinux_2_17_aarch64"),
            None,
            "other machine"
        );
        assert_eq!(r("py2-none-any"), None);
        assert_eq!(upstream_numbers("3.11.2-1+b1"), [3, 11, 2]);
        assert_eq!(upstream_numbers("2.36-9+deb12u13"), [2, 36]);
    }
}
