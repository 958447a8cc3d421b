//! The ONIE installer of a switch image (recipes with `[onie]`): from the
//! deterministic rootfs tar to `onie-installer-<arch>-<machine>.bin` and
//! `fs.squashfs` in the output directory.
//!
//! ```text
//! rootfs.tar ─▶ fs.squashfs (everything but /boot)          [squashfs]
//!            ─▶ boot/vmlinuz-V, boot/initrd.img-V ─┐
//! platform.tar.gz ─────────────────────────────────┼▶ fs.zip [fszip]
//! fs.squashfs ─────────────────────────────────────┘
//! install.sh, machine.conf, platform.conf, onie-image.conf,
//! platforms/<p>, platforms_asic, fs.zip ─▶ tar of installer/ ─▶ .bin [sharch]
//! ```
//!
//! Everything here is pure Rust (backhand, zip, tar): no host tool is run, so
//! nothing of the build host leaks into the bytes. The image's own initramfs
//! must be able to boot the squashfs from the partition: that is the
//! recipe's business (sonic-p4 adds an initramfs-tools script as a build
//! step); the kernel arguments it gets are `root=LABEL=<label> rw
//! loop=image-<version>/fs.squashfs loopfstype=squashfs`.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::image::error::{Context, ImageError, refuse};
use crate::recipe::onie::{Onie, onie_arch};

/// Errors here are the image outputs' own.
type Result<T, E = ImageError> = std::result::Result<T, E>;

pub mod fszip;
pub mod sharch;
pub mod squashfs;

/// The installer's `install.sh`.
pub const INSTALL_SH: &str = include_str!("install.sh");
/// File name of the squashfs artifact.
pub const SQUASHFS_NAME: &str = "fs.squashfs";

/// What an ONIE build needs besides the rootfs tar.
#[derive(Debug, Clone)]
pub struct OnieInputs<'a> {
    /// The recipe name (`image_name`).
    pub recipe: &'a str,
    /// The recipe's Debian architecture.
    pub architecture: &'a str,
    /// The recipe's `[onie]`.
    pub onie: &'a Onie,
    /// The image version (`image-<version>/`): the recipe's, else derived.
    pub version: String,
    /// SOURCE_DATE_EPOCH.
    pub source_date_epoch: i64,
}

/// Bump when the ONIE outputs change for the same rootfs and settings in a
/// way the installer scripts' text does not show (squashfs, zip or tar
/// layout).
const OUTPUT_FORMAT: &str = "imgbuild-onie-outputs v1";

/// The build key of a recipe with `[onie]`: `build_key` (rootfs and output
/// options) combined with the installer scripts and the ONIE output format,
/// so editing `install.sh` or the header makes `imgbuild build` redo the
/// outputs instead of reporting them up to date.
pub fn output_key(build_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [OUTPUT_FORMAT, build_key, INSTALL_SH, sharch::HEADER] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The default image version: `<recipe>-<first 12 hex digits of the
/// rootfs key>`, so it changes exactly when the image does and two builds
/// of the same inputs agree.
pub fn default_version(recipe: &str, rootfs_key: &str) -> String {
    let hex = rootfs_key.strip_prefix("sha256:").unwrap_or(rootfs_key);
    format!("{recipe}-{}", &hex[..hex.len().min(12)])
}

/// The installer's file name: `onie-installer-<arch>-<machine>.bin`, one of
/// the names ONIE tries by default.
pub fn installer_name(architecture: &str, onie: &Onie) -> Result<String> {
    let arch = onie_arch(architecture)
        .with_context(|| format!("ONIE has no name for architecture `{architecture}`"))?;
    Ok(format!("onie-installer-{arch}-{}.bin", onie.machine))
}

/// What [`emit`] wrote.
#[derive(Debug, Clone)]
pub struct OnieReport {
    /// The installer's path.
    pub installer: PathBuf,
    /// The squashfs's path.
    pub squashfs: PathBuf,
    /// The kernel version found in `/boot`.
    pub kernel_version: String,
    /// The image version.
    pub version: String,
}

/// A regular file's data inside the rootfs tar.
#[derive(Debug, Clone)]
struct TarFile {
    name: String,
    offset: u64,
    len: u64,
}

/// The kernel and initramfs in the tar's `/boot`: exactly one kernel
/// version with both files.
fn find_boot_files(tar: &Path) -> Result<(String, TarFile, TarFile)> {
    let file = File::open(tar).with_context(|| format!("opening {}", tar.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut kernels: Vec<TarFile> = Vec::new();
    let mut initrds: Vec<TarFile> = Vec::new();
    for entry in archive
        .entries_with_seek()
        .with_context(|| format!("reading {}", tar.display()))?
    {
        let entry = entry.with_context(|| format!("reading {}", tar.display()))?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = path
            .strip_prefix("./boot/")
            .or_else(|| path.strip_prefix("boot/"))
        else {
            continue;
        };
        if !entry.header().entry_type().is_file() || name.contains('/') {
            continue;
        }
        let f = TarFile {
            name: name.to_string(),
            offset: entry.raw_file_position(),
            len: entry.size(),
        };
        if name.starts_with("vmlinuz-") {
            kernels.push(f);
        } else if name.starts_with("initrd.img-") {
            initrds.push(f);
        }
    }
    let version = match kernels.as_slice() {
        [k] => k.name["vmlinuz-".len()..].to_string(),
        [] => refuse!(
            "{}: no /boot/vmlinuz-*: an ONIE image needs a kernel (add linux-image-amd64 to the recipe)",
            tar.display()
        ),
        many => refuse!(
            "{}: several kernels in /boot ({}); an ONIE image boots exactly one",
            tar.display(),
            many.iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let kernel = kernels.remove(0);
    let Some(initrd) = initrds
        .into_iter()
        .find(|i| i.name == format!("initrd.img-{version}"))
    else {
        refuse!(
            "{}: /boot/vmlinuz-{version} has no /boot/initrd.img-{version} (is initramfs-tools in the recipe?)",
            tar.display()
        );
    };
    Ok((version, kernel, initrd))
}

/// Copies a file's bytes out of the tar.
fn extract(tar: &Path, f: &TarFile, dest: &Path) -> Result<()> {
    let mut src = File::open(tar).with_context(|| format!("opening {}", tar.display()))?;
    src.seek(SeekFrom::Start(f.offset))
        .with_context(|| format!("reading {}", tar.display()))?;
    let mut out = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let n = io::copy(&mut src.take(f.len), &mut out)
        .with_context(|| format!("extracting /boot/{}", f.name))?;
    if n != f.len {
        refuse!("{}: /boot/{} is truncated", tar.display(), f.name);
    }
    out.flush()
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

/// A shell assignment line with a single-quoted value (values are
/// validated plain names, the quoting is belt and braces).
fn assign(key: &str, value: &str) -> String {
    format!("{key}='{}'\n", value.replace('\'', "'\\''"))
}

/// The small files of `installer/` (everything but `install.sh` and
/// `fs.zip`), by name.
pub fn config_files(
    inputs: &OnieInputs<'_>,
    kernel_version: &str,
) -> Result<Vec<(String, String)>> {
    let o = inputs.onie;
    let arch = onie_arch(inputs.architecture)
        .with_context(|| format!("ONIE has no name for `{}`", inputs.architecture))?;
    let mut files = Vec::new();
    files.push((
        "machine.conf".to_string(),
        format!(
            "# The ONIE machine this installer is named for.\n{}{}",
            assign("machine", &o.machine),
            assign("arch", arch)
        ),
    ));
    files.push((
        "platform.conf".to_string(),
        format!(
            "# The NOS partition on the ONIE disk.\n{}{}",
            assign("part_label", &o.partition_label),
            assign("part_size_mib", &o.partition_size_mib.to_string())
        ),
    ));
    files.push((
        "onie-image.conf".to_string(),
        [
            "# The image: unpacked into image-<version>/ on the NOS partition.\n".to_string(),
            assign("image_name", inputs.recipe),
            assign("image_version", &inputs.version),
            assign("image_kernel", &format!("vmlinuz-{kernel_version}")),
            assign("image_initrd", &format!("initrd.img-{kernel_version}")),
            assign("image_cmdline", &o.cmdline),
        ]
        .concat(),
    ));
    let mut asic = String::new();
    for p in &o.platforms {
        asic.push_str(&p.name);
        asic.push('\n');
        files.push((
            format!("platforms/{}", p.name),
            format!(
                "# Boot settings of {}.\n{}{}{}",
                p.name,
                assign("console_unit", &p.console.unit.to_string()),
                assign("console_speed", &p.console.speed.to_string()),
                assign("extra_cmdline", "")
            ),
        ));
    }
    files.push(("platforms_asic".to_string(), asic));
    Ok(files)
}

/// Writes `fs.squashfs` and the installer into `dir` from the rootfs tar.
pub fn emit(tar: &Path, dir: &Path, inputs: &OnieInputs<'_>) -> Result<OnieReport> {
    let name = installer_name(inputs.architecture, inputs.onie)?;
    let (kernel_version, kernel, initrd) = find_boot_files(tar)?;
    let work = tempfile::Builder::new()
        .prefix(".onie-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a temp directory in {}", dir.display()))?;
    let boot = work.path().join("boot");
    fs::create_dir(&boot).with_context(|| format!("creating {}", boot.display()))?;
    extract(tar, &kernel, &boot.join(&kernel.name))?;
    extract(tar, &initrd, &boot.join(&initrd.name))?;

    let squashfs = dir.join(SQUASHFS_NAME);
    squashfs::write_from_tar(tar, &squashfs, inputs.source_date_epoch)
        .with_context(|| format!("writing {}", squashfs.display()))?;
    fs::set_permissions(&squashfs, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod {}", squashfs.display()))?;

    let platform_tgz = work.path().join("platform.tar.gz");
    let names: Vec<&str> = inputs
        .onie
        .platforms
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    fszip::platform_tar_gz(&platform_tgz, &names, inputs.source_date_epoch)?;

    let zip = work.path().join("fs.zip");
    let members = [
        fszip::Member {
            name: format!("boot/{}", kernel.name),
            source: boot.join(&kernel.name),
        },
        fszip::Member {
            name: format!("boot/{}", initrd.name),
            source: boot.join(&initrd.name),
        },
        fszip::Member {
            name: SQUASHFS_NAME.into(),
            source: squashfs.clone(),
        },
        fszip::Member {
            name: "platform.tar.gz".into(),
            source: platform_tgz,
        },
    ];
    fszip::write(&zip, &members, inputs.source_date_epoch)?;

    let mut files = vec![
        sharch::PayloadFile {
            name: "install.sh".into(),
            mode: 0o755,
            contents: sharch::Contents::Bytes(INSTALL_SH.as_bytes().to_vec()),
        },
        sharch::PayloadFile {
            name: "fs.zip".into(),
            mode: 0o644,
            contents: sharch::Contents::File(zip),
        },
    ];
    for (n, text) in config_files(inputs, &kernel_version)? {
        files.push(sharch::PayloadFile {
            name: n,
            mode: 0o644,
            contents: sharch::Contents::Bytes(text.into_bytes()),
        });
    }
    let installer = dir.join(&name);
    sharch::write_installer(
        &installer,
        &work.path().join("payload.tar"),
        &format!("{} {}", inputs.recipe, inputs.version),
        &files,
        inputs.source_date_epoch,
    )?;
    work.close()
        .with_context(|| format!("removing the temp directory in {}", dir.display()))?;
    Ok(OnieReport {
        installer,
        squashfs,
        kernel_version,
        version: inputs.version.clone(),
    })
}

/// The ONIE installer as an [`ImageOutput`](crate::image::ImageOutput).
pub struct OnieOutput<'a>(pub &'a Onie);

impl crate::image::ImageOutput for OnieOutput<'_> {
    fn describe(&self) -> &'static str {
        "the ONIE installer"
    }

    fn extend_key(&self, build_key: &str) -> String {
        output_key(build_key)
    }

    fn emit(&self, ctx: &crate::image::EmitContext<'_>) -> Result<Vec<String>> {
        let version = self
            .0
            .version
            .clone()
            .unwrap_or_else(|| default_version(&ctx.recipe.name, ctx.rootfs_key));
        let inputs = OnieInputs {
            recipe: &ctx.recipe.name,
            architecture: &ctx.recipe.architecture,
            onie: self.0,
            version,
            source_date_epoch: ctx.source_date_epoch,
        };
        let r = emit(ctx.rootfs_tar, ctx.dir, &inputs)?;
        Ok(vec![format!(
            "ONIE installer {} (image {}, kernel {})",
            r.installer
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            r.version,
            r.kernel_version
        )])
    }
}
