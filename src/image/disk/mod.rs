//! The bootable raw disk image of a recipe with a `[disk]` table
//! (`out/NAME/disk.raw` and `disk.qcow2`), made without mounting anything
//! and with the locked tools tree only ([`crate::tools`]):
//!
//! 1. the disk's own files are made in a small overlay tree: `/etc/fstab`
//!    (root by UUID), `/boot/grub/grub.cfg` (the newest `/boot/vmlinuz-V`
//!    with its `initrd.img-V`, serial console) and GRUB's i386-pc modules in
//!    `/boot/grub/i386-pc` (as `grub-install` would);
//! 2. `mkfs.ext4 -d -` writes the ext4 root filesystem straight into the
//!    sparse image file at offset 1 MiB (partition 1), reading the rootfs
//!    tar as it streams in through libarchive, with the overlay merged in
//!    ([`stream`]: nothing is extracted, owners, modes, xattrs and hard
//!    links come from the tar), with the recipe's filesystem UUID and
//!    directory hash seed, and `E2FSPROGS_FAKE_TIME` for every timestamp
//!    mke2fs would take from the clock; mtimes are those of the tar
//!    (clamped to SOURCE_DATE_EPOCH);
//! 3. `grub-mkimage -O i386-pc` makes core.img with an embedded early
//!    configuration that finds the root by UUID; [`mbr::boot_area`] writes
//!    the partition table, GRUB's boot.img and core.img into the first MiB;
//! 4. `qemu-img convert` writes the qcow2 copy.
//!
//! Both files are written in a temp directory and moved into the output
//! directory only when complete.

pub mod config;
pub mod mbr;
pub mod stream;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::core::growing::Growing;
use crate::image::error::{Context, ImageError, refuse};
use crate::recipe::Disk;
use crate::sandbox::Producer;
use crate::tools::{ToolRun, ToolsRoot};

/// Errors here are the image outputs' own.
type Result<T, E = ImageError> = std::result::Result<T, E>;

/// The raw disk image's file name in the output directory.
pub const RAW: &str = "disk.raw";
/// The qcow2 copy's file name.
pub const QCOW2: &str = "disk.qcow2";

/// ext4 block size.
const BLOCK: u64 = 4096;

/// GRUB modules built into core.img: enough to find the root filesystem and
/// run grub.cfg even if `/boot/grub/i386-pc` were missing.
const CORE_MODULES: &[&str] = &[
    "biosdisk",
    "part_msdos",
    "ext2",
    "search",
    "search_fs_uuid",
    "normal",
    "configfile",
    "linux",
    "echo",
    "test",
    "serial",
    "terminal",
];

/// The rootfs tar a disk is made from.
#[derive(Debug, Clone)]
pub enum RootfsTar {
    /// A complete tar.
    Path(PathBuf),
    /// A tar still being written: mkfs reads it as it grows.
    Growing(Arc<Growing>),
}

impl RootfsTar {
    /// A reader from its first byte.
    fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            // Written past the page cache: read the same way.
            RootfsTar::Path(path) => Box::new(crate::core::uncached::DirectReader::open(path)?),
            RootfsTar::Growing(growing) => Box::new(growing.reader()?),
        })
    }

    /// Its path, once complete.
    fn path(&self) -> std::io::Result<PathBuf> {
        match self {
            RootfsTar::Path(path) => Ok(path.clone()),
            RootfsTar::Growing(growing) => growing.wait_complete(),
        }
    }

    /// What messages call it.
    fn label(&self) -> String {
        match self {
            RootfsTar::Path(path) => path.display().to_string(),
            RootfsTar::Growing(_) => "the rootfs tar (as it is written)".into(),
        }
    }
}

/// Writes `disk.raw` and `disk.qcow2` for the rootfs tar `rootfs_tar` into
/// `out_dir`, using `tools` and a temp directory under `work`. `title`
/// names the boot menu entry (the recipe name). Returns the files written.
pub fn emit(
    title: &str,
    disk: &Disk,
    tools: &ToolsRoot,
    rootfs_tar: &RootfsTar,
    out_dir: &Path,
    work: &Path,
    source_date_epoch: i64,
) -> Result<Vec<PathBuf>> {
    if !has_libarchive(&tools.root()) {
        refuse!(
            "the tools tree of `{title}` has no libarchive.so.13, which mkfs.ext4 needs to \
             read the rootfs tar: add `libarchive13t64` to the recipe's `tools` and re-solve"
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix(".disk-")
        .tempdir_in(work)
        .with_context(|| format!("creating a temp directory in {}", work.display()))?;
    let dir = tmp.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", dir.display()))?;
    let in_tools = |argv: &[&str]| ToolRun::new(argv.iter().copied()).output(dir, "/work");

    let raw = dir.join(RAW);
    File::create(&raw)
        .and_then(|f| f.set_len(disk.size))
        .with_context(|| format!("creating {}", raw.display()))?;
    let fs_blocks = (disk.size - mbr::PART_START * mbr::SECTOR) / BLOCK;
    let (producer, streamed) = tar_producer(title, disk, tools, rootfs_tar, dir, source_date_epoch);
    // GRUB's core image does not depend on the filesystem: made beside
    // mkfs, in its own directory under the sandbox's /run (a mount point
    // under /run is made inside each sandbox, so two runs at once in the
    // tools tree do not race for it).
    let (made, core_img) = std::thread::scope(|scope| {
        let core = scope.spawn(|| core_image(disk, tools, dir));
        let made = tools.run(
            &in_tools(&[
                "mkfs.ext4",
                "-F",
                "-q",
                "-t",
                "ext4",
                "-b",
                &BLOCK.to_string(),
                "-L",
                "root",
                "-U",
                &disk.uuid,
                // The image file is new and sparse, so its journal blocks
                // read as zeros already: `lazy_journal_init` leaves them
                // holes instead of writing 64 MiB of zeros (the same bytes).
                "-E",
                &format!(
                    "hash_seed={},offset={},root_owner=0:0,lazy_journal_init=1",
                    disk.hash_seed,
                    mbr::PART_START * mbr::SECTOR
                ),
                "-d",
                "-",
                "/work/disk.raw",
                &fs_blocks.to_string(),
            ])
            .stdin(producer)
            .env("E2FSPROGS_FAKE_TIME", source_date_epoch.to_string()),
        );
        let core = core.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (made, core)
    });
    // The stream's own failure (the rootfs tar unreadable, no kernel) says
    // more than mkfs's complaint about a short archive; a pipe mkfs closed
    // says less than mkfs's own error.
    let streamed = streamed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_else(|| {
            Err(ImageError::Refused(
                "mkfs.ext4 ended before reading the rootfs".into(),
            ))
        });
    let merged = match (made, streamed) {
        (Ok(_), Ok(merged)) => merged,
        (Err(made), Err(ImageError::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Err(made.into());
        }
        (_, Err(streamed)) => return Err(streamed),
        (Err(made), Ok(_)) => return Err(made.into()),
    };
    if !merged.devices.is_empty() {
        let path = rootfs_tar.path().map_err(|source| ImageError::Io {
            what: format!("reading {}", rootfs_tar.label()),
            source,
        })?;
        refuse_device_nodes(title, &path, &merged.devices)?;
    }

    let mut core_img = core_img?;
    let boot_img = tools.root().join("usr/lib/grub/i386-pc/boot.img");
    let boot_img = fs::read(&boot_img).with_context(|| {
        format!(
            "reading {} from the tools tree (is grub-pc-bin in the recipe's tools?)",
            boot_img.display()
        )
    })?;
    let padded = core_img.len().div_ceil(mbr::SECTOR as usize) * mbr::SECTOR as usize;
    core_img.resize(padded, 0);
    let area = mbr::boot_area(&boot_img, &core_img, disk.size, disk_signature(&disk.uuid))
        .with_context(|| format!("making the boot sector of {}", raw.display()))?;
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&raw)
        .with_context(|| format!("opening {}", raw.display()))?;
    // Synced below, beside its hash and its conversion (not started here:
    // queueing the writeback of ~0.5 GB blocks for a while, and the hash,
    // the longest path, would wait behind it).
    file.write_all_at(&area, 0)
        .with_context(|| format!("writing the boot area of {}", raw.display()))?;
    drop(file);

    // disk.raw is complete. Three independent paths, side by side: its
    // hash (for the manifest; 4 GiB, the longest), its sync, and qemu-img's
    // qcow2, hashed and synced as soon as it is written (the manifest then
    // reads neither file again).
    let qcow2 = dir.join(QCOW2);
    // The qcow2 is written past the page cache (`-t none`, O_DIRECT) where
    // the file system allows, and read back the same way to hash it: no
    // page is allocated for a file nothing reads again (see
    // `core::uncached`); the same bytes either way.
    let mut convert = vec!["qemu-img", "convert", "-f", "raw", "-O", "qcow2"];
    if crate::core::uncached::supported(dir) {
        convert.extend(["-t", "none"]);
    }
    convert.extend(["/work/disk.raw", "/work/disk.qcow2"]);
    let (raw_sha, raw_synced, qcow2_sha) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| crate::core::digest::hash_file(&raw));
        let syncing = scope.spawn(|| File::open(&raw).and_then(|f| f.sync_all()));
        let converted = tools
            .run(&in_tools(&convert))
            .map_err(ImageError::from)
            .and_then(|_| {
                // Its hash and its sync side by side, as the raw file's.
                let syncing = scope.spawn(|| File::open(&qcow2).and_then(|f| f.sync_all()));
                // (Reads as `digest::hash_file` where O_DIRECT is refused.)
                let hash = crate::core::uncached::hash_file(&qcow2)
                    .with_context(|| format!("hashing {}", qcow2.display()));
                let synced = syncing
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
                    .with_context(|| format!("syncing {}", qcow2.display()));
                synced.and(hash)
            });
        let hashed = hashing.join();
        let synced = syncing.join();
        (
            hashed.unwrap_or_else(|p| std::panic::resume_unwind(p)),
            synced.unwrap_or_else(|p| std::panic::resume_unwind(p)),
            converted,
        )
    });
    let qcow2_sha = qcow2_sha?;
    raw_synced.with_context(|| format!("syncing {}", raw.display()))?;

    let mut written = Vec::new();
    for name in [RAW, QCOW2] {
        let from = dir.join(name);
        let to = out_dir.join(name);
        fs::set_permissions(&from, fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod {}", from.display()))?;
        fs::rename(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        written.push(to);
    }
    if let Ok((sha, _)) = raw_sha {
        crate::core::digest::remember(&out_dir.join(RAW), &sha);
    }
    crate::core::digest::remember(&out_dir.join(QCOW2), &qcow2_sha.0);
    Ok(written)
}

/// GRUB's i386-pc core image for the disk `disk` (its early config finds
/// the root filesystem by UUID), made by the tools' grub-mkimage in `dir/grub`.
fn core_image(disk: &Disk, tools: &ToolsRoot, dir: &Path) -> Result<Vec<u8>> {
    let grub = dir.join("grub");
    fs::create_dir(&grub).with_context(|| format!("creating {}", grub.display()))?;
    fs::write(grub.join("early.cfg"), config::early_cfg(&disk.uuid))
        .with_context(|| format!("writing {}", grub.join("early.cfg").display()))?;
    let mut mkimage = vec![
        "grub-mkimage",
        "--format=i386-pc",
        "--directory=/usr/lib/grub/i386-pc",
        "--config=/run/grub/early.cfg",
        "--prefix=/boot/grub",
        "--output=/run/grub/core.img",
    ];
    mkimage.extend(CORE_MODULES);
    tools.run(&ToolRun::new(mkimage).output(&grub, "/run/grub"))?;
    fs::read(grub.join("core.img")).with_context(|| "reading core.img".to_string())
}

/// The disk holds no device nodes (never made on the build host, and kept
/// out of the tree the disk was once made from): a rootfs with package
/// device nodes is refused, naming each entry and the package whose dpkg
/// file list has it (the rootfs tar and the OCI image carry them).
fn refuse_device_nodes(title: &str, rootfs_tar: &Path, devices: &[String]) -> Result<()> {
    let file =
        File::open(rootfs_tar).with_context(|| format!("opening {}", rootfs_tar.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut lists: Vec<(String, String)> = Vec::new();
    let read = |source: std::io::Error| ImageError::Io {
        what: format!("reading {}", rootfs_tar.display()),
        source,
    };
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = format!("/{}", name.trim_start_matches("./"));
        if let Some(pkg) = path
            .strip_prefix("/var/lib/dpkg/info/")
            .and_then(|n| n.strip_suffix(".list"))
        {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).map_err(read)?;
            lists.push((pkg.to_string(), text));
        }
    }
    let named: Vec<String> = devices
        .iter()
        .map(|d| {
            let owner = lists
                .iter()
                .find(|(_, text)| text.lines().any(|l| l == d))
                .map_or("no package".to_string(), |(p, _)| format!("package {p}"));
            format!("{d} ({owner})")
        })
        .collect();
    refuse!(
        "the rootfs of `{title}` has device nodes, which the disk image cannot hold \
         (they are never made on the build host): {}",
        named.join(", ")
    )
}

/// The stdin of `mkfs.ext4 -d -` ([`stream::merge`] of the rootfs tar and
/// the disk's own files, made under `dir`), and where its outcome is left.
fn tar_producer(
    title: &str,
    disk: &Disk,
    tools: &ToolsRoot,
    rootfs_tar: &RootfsTar,
    dir: &Path,
    source_date_epoch: i64,
) -> (Producer, Arc<Mutex<Option<Result<stream::Merged>>>>) {
    let outcome = Arc::new(Mutex::new(None));
    let (title, disk, tools_root) = (title.to_string(), disk.clone(), tools.root());
    let (rootfs_tar, overlay_dir) = (rootfs_tar.clone(), dir.join("overlay"));
    let slot = outcome.clone();
    let producer = Producer::new(move |out| {
        // mkfs wakes this thread each time it reads from a full pipe; woken
        // without preempting mkfs, it refills the pipe in its own turn (it
        // preempted mkfs 14,000 times per image, one small read each).
        crate::core::scratch::batch_scheduling();
        let result = (|| -> Result<stream::Merged> {
            // Read in 1 MiB blocks already (past the page cache): a tar
            // header's 512 bytes are copied out of the block, no syscall.
            let mut input = rootfs_tar
                .open()
                .with_context(|| format!("opening {}", rootfs_tar.label()))?;
            // Whole blocks into the pipe, not a write per tar header and
            // per 8 KiB of data: each of those woke mkfs, and its 74,000
            // context switches doubled its CPU time on the project's VM.
            let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
            let mut failure = None;
            let merged = stream::merge(&mut input, &mut out, &overlay_paths(), |boot| {
                let made = boot_overlay(&title, &disk, &tools_root, &overlay_dir, boot)
                    .and_then(|()| overlay_tar(&overlay_dir, source_date_epoch));
                made.map_err(|e| {
                    let text = e.to_string();
                    failure = Some(e);
                    std::io::Error::other(text)
                })
            });
            let merged = merged.and_then(|m| out.flush().map(|()| m));
            match (merged, failure) {
                (_, Some(e)) => Err(e),
                (Ok(m), None) => Ok(m),
                (Err(source), None) => Err(ImageError::Io {
                    what: format!("streaming {} to mkfs.ext4", rootfs_tar.label()),
                    source,
                }),
            }
        })();
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    });
    (producer, outcome)
}

/// Whether the tools tree has the libarchive mke2fs opens at run time
/// (in `/usr/lib` or a multiarch directory under it).
fn has_libarchive(tools_root: &Path) -> bool {
    const NAME: &str = "libarchive.so.13";
    let lib = tools_root.join("usr/lib");
    lib.join(NAME).exists()
        || fs::read_dir(&lib)
            .is_ok_and(|entries| entries.flatten().any(|e| e.path().join(NAME).exists()))
}

/// The paths the disk's own files take over from the rootfs.
fn overlay_paths() -> BTreeSet<String> {
    ["etc/fstab", "boot/grub/grub.cfg"]
        .into_iter()
        .map(String::from)
        .collect()
}

/// The overlay tree as a tar (mtimes clamped to `source_date_epoch`).
fn overlay_tar(root: &Path, source_date_epoch: i64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    crate::pack::tar::write_tree(
        root,
        &mut bytes,
        &crate::pack::tar::TarOptions { source_date_epoch },
    )
    .map_err(|e| ImageError::Io {
        what: format!("archiving {}", root.display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(bytes)
}

/// Writes `/etc/fstab`, `/boot/grub/grub.cfg` and GRUB's modules into a
/// new overlay tree `tree`; `boot` holds the names in the rootfs's `/boot`.
fn boot_overlay(
    title: &str,
    disk: &Disk,
    tools_root: &Path,
    tree: &Path,
    boot_names: &[String],
) -> Result<()> {
    let Some(kernel) = config::pick_kernel(boot_names.iter().map(String::as_str)) else {
        refuse!(
            "the rootfs of `{title}` has no /boot/vmlinuz-V with a matching /boot/initrd.img-V; \
             a disk image needs a kernel and an initramfs (e.g. packages linux-image-amd64 and initramfs-tools)"
        );
    };
    let boot = tree.join("boot");
    for d in [tree, &tree.join("etc"), &boot] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", d.display()))?;
    }
    // Modes are set explicitly: the files and directories made here must not
    // depend on the caller's umask.
    write_file(&tree.join("etc/fstab"), &config::fstab(&disk.uuid))?;
    let grub = boot.join("grub");
    let modules = grub.join("i386-pc");
    for d in [&grub, &modules] {
        if !d.is_dir() {
            fs::create_dir(d).with_context(|| format!("creating {}", d.display()))?;
        }
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", d.display()))?;
    }
    write_file(
        &grub.join("grub.cfg"),
        &config::grub_cfg(title, &disk.uuid, &kernel),
    )?;
    let lib = tools_root.join("usr/lib/grub/i386-pc");
    let mut entries: Vec<PathBuf> = fs::read_dir(&lib)
        .with_context(|| {
            format!(
                "reading {} in the tools tree (is grub-pc-bin in the recipe's tools?)",
                lib.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mod" || x == "lst"))
        .collect();
    entries.sort();
    for from in entries {
        let to = modules.join(from.file_name().expect("a file name"));
        fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod {}", to.display()))?;
    }
    Ok(())
}

/// Writes `text` to `path` with mode 0644 whatever the umask.
fn write_file(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o644)))
        .with_context(|| format!("writing {}", path.display()))
}

/// The MBR disk signature: the first 4 bytes of the filesystem UUID.
fn disk_signature(uuid: &str) -> u32 {
    let hex: String = uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    u32::from_str_radix(&hex, 16).unwrap_or(0)
}

/// The bootable disk as an [`ImageOutput`](crate::image::ImageOutput).
pub struct DiskOutput<'a>(pub &'a Disk);

impl crate::image::ImageOutput for DiskOutput<'_> {
    fn describe(&self) -> &'static str {
        DiskOutput::DESCRIPTION
    }

    fn emit(&self, ctx: &crate::image::EmitContext<'_>) -> Result<Vec<String>> {
        self.emit_from(ctx, &RootfsTar::Path(ctx.rootfs_tar.to_path_buf()))
    }
}

impl DiskOutput<'_> {
    /// What it is called in progress lines and error messages.
    pub const DESCRIPTION: &'static str = "the disk image";

    /// As [`ImageOutput::emit`](crate::image::ImageOutput::emit), reading
    /// the rootfs tar from `rootfs_tar` (one that may still be growing)
    /// instead of `ctx.rootfs_tar`.
    pub fn emit_from(
        &self,
        ctx: &crate::image::EmitContext<'_>,
        rootfs_tar: &RootfsTar,
    ) -> Result<Vec<String>> {
        let tools = ctx.tools()?;
        let files = emit(
            &ctx.recipe.name,
            self.0,
            &tools,
            rootfs_tar,
            ctx.dir,
            ctx.work,
            ctx.source_date_epoch,
        )?;
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        Ok(vec![format!("disk image {}", names.join(", "))])
    }
}
