//! Unpacking every package into the tree, in install order.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use super::order::Pkg;
use super::{AssembleReport, Reporter, RootfsError};
use crate::deb::{self, ExtractOptions};
use crate::lock::Lockfile;

/// Unpacks `debs` (the store files of `lock.packages`, whose control data
/// `pkgs` holds) into `dest` in `install` order, the next ones read and
/// decompressed on other threads meanwhile; then re-unpacks the packages
/// whose `Replaces` a later one overwrote. Device nodes and overlap
/// warnings go to `report`. Returns each package's dpkg file list.
pub(super) fn unpack_all(
    dest: &Path,
    debs: &[PathBuf],
    lock: &Lockfile,
    pkgs: &[Pkg],
    install: &[usize],
    progress: &dyn Reporter,
    report: &mut AssembleReport,
) -> Result<Vec<Vec<String>>, RootfsError> {
    let options = ExtractOptions::default();
    let mut lists: Vec<Vec<String>> = vec![Vec::new(); pkgs.len()];
    let unpack_one = |i: usize, devices: &mut Vec<deb::DeviceNode>| {
        // Hashed as it is read: a store blob that is not the locked one
        // (same size, other bytes) stops the build before any script runs.
        let sha = &lock.packages[i].sha256;
        let u = deb::unpack_checked(&debs[i], dest, &options, sha).map_err(|source| {
            RootfsError::Unpack {
                package: pkgs[i].label(),
                source,
            }
        })?;
        merge_devices(devices, u.devices);
        Ok::<_, RootfsError>(u.paths)
    };
    // The next packages are read, hashed and decompressed on other threads
    // while one is extracted (in install order, on this thread).
    let ahead = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
    let mut queue: VecDeque<deb::ReadAhead> = VecDeque::new();
    // The largest package, if large, decompressed from the start to a
    // temp file (one: each decompression of a large one takes two cores).
    let largest = install
        .iter()
        .copied()
        .filter_map(|j| Some((fs::metadata(&debs[j]).ok()?.len(), j)))
        .max()
        .filter(|&(size, _)| size >= deb::SPOOL_FROM);
    let mut spooled = match (largest, dest.parent()) {
        (Some((_, j)), Some(dir)) => Some((
            j,
            deb::ReadAhead::spooled(&debs[j], &lock.packages[j].sha256, dir),
        )),
        _ => None,
    };
    let mut next = 0;
    for &i in install {
        while next < install.len() && queue.len() < ahead {
            let j = install[next];
            let reading = match spooled.take_if(|(k, _)| *k == j) {
                Some((_, reading)) => reading,
                None => deb::ReadAhead::start(&debs[j], &lock.packages[j].sha256),
            };
            queue.push_back(reading);
            next += 1;
        }
        progress.item(&pkgs[i].label());
        let reading = queue.pop_front().expect("queued in order");
        let u = reading
            .unpack(dest, &options)
            .map_err(|source| RootfsError::Unpack {
                package: pkgs[i].label(),
                source,
            })?;
        merge_devices(&mut report.devices, u.devices);
        lists[i] = u.paths;
    }
    for i in resolve_overlaps(dest, pkgs, install, &mut lists, &mut report.warnings) {
        unpack_one(i, &mut report.devices)?;
    }
    Ok(lists)
}

/// Adds a package's device nodes to `devices`, replacing an earlier
/// package's node at the same path.
fn merge_devices(devices: &mut Vec<deb::DeviceNode>, new: Vec<deb::DeviceNode>) {
    for d in new {
        devices.retain(|o| o.path != d.path);
        devices.push(d);
    }
}

/// Finds non-directory paths installed by several packages. Where one
/// package `Replaces` the other, the path belongs to the replacer only (as
/// dpkg moves it) and, if the replacer was unpacked first, it must be
/// unpacked again so its version is the one on disk: those packages are
/// returned, in install order. Other overlaps are reported as warnings (the
/// package unpacked last wins), except between `Multi-Arch: same` instances.
fn resolve_overlaps(
    root: &Path,
    pkgs: &[Pkg],
    install: &[usize],
    lists: &mut [Vec<String>],
    warnings: &mut Vec<String>,
) -> Vec<usize> {
    let position: HashMap<usize, usize> =
        install.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let mut owners: HashMap<&str, Vec<usize>> = HashMap::new();
    for &i in install {
        for p in &lists[i] {
            owners.entry(p.as_str()).or_default().push(i);
        }
    }
    let mut moved: Vec<(usize, String)> = Vec::new();
    let mut again = Vec::new();
    let mut shared: Vec<(&str, Vec<usize>)> =
        owners.into_iter().filter(|(_, o)| o.len() > 1).collect();
    shared.sort();
    for (path, who) in shared {
        let on_disk = root.join(path.trim_start_matches('/'));
        if fs::metadata(&on_disk).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let last = *who.iter().max_by_key(|i| position[i]).expect("two owners");
        let replacer = who.iter().copied().find(|&r| {
            who.iter()
                .any(|&o| o != r && pkgs[r].replaces.iter().any(|n| *n == pkgs[o].name))
        });
        match replacer {
            Some(r) => {
                for &o in &who {
                    if o != r {
                        moved.push((o, path.to_string()));
                    }
                }
                if r != last {
                    again.push(r);
                }
            }
            None if who
                .iter()
                .all(|&o| pkgs[o].ma_same && pkgs[o].name == pkgs[who[0]].name) => {}
            None => warnings.push(format!(
                "{path} is shipped by {}; the one unpacked last ({}) is kept",
                who.iter()
                    .map(|&o| pkgs[o].label())
                    .collect::<Vec<_>>()
                    .join(" and "),
                pkgs[last].label()
            )),
        }
    }
    for (o, path) in moved {
        lists[o].retain(|p| *p != path);
    }
    again.sort_by_key(|i| position[i]);
    again.dedup();
    again
}
