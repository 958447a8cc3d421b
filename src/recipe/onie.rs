//! The recipe's `[onie]` table: what the ONIE installer of a switch image is
//! called, which boxes it installs on and how they boot.
//!
//! ```toml
//! [onie]
//! machine = "accton_wedge100bf_32x"   # → onie-installer-<arch>-<machine>.bin
//! platforms = ["x86_64-accton_wedge100bf_32x-r0", "x86_64-kvm_x86_64-r0"]
//! console = "ttyS0,115200"            # default serial console of every platform
//! partition-label = "SONiC-OS"        # GPT name and ext4 label of the NOS partition
//! partition-size-mib = 4096
//! version = "1.0"                     # optional: default derived from the build key
//! cmdline = "quiet"                   # optional: extra kernel arguments
//!
//! [onie.platform-console]             # per-platform serial consoles
//! "x86_64-accton_wedge100bf_32x-r0" = "ttyS0,57600"
//! ```
//!
//! A build setting: it changes the outputs, not the packages, so it is part
//! of [`super::Recipe::build_hash`] and not of the lock's canonical hash.
//! A child recipe's `[onie]` replaces its parent's as a whole.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::error::{RecipeError, SourceText};

/// `[onie]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawOnie {
    pub machine: Spanned<String>,
    pub platforms: Spanned<Vec<Spanned<String>>>,
    pub console: Option<Spanned<String>>,
    #[serde(default)]
    pub platform_console: BTreeMap<String, Spanned<String>>,
    pub partition_label: Option<Spanned<String>>,
    pub partition_size_mib: Option<Spanned<u32>>,
    pub version: Option<Spanned<String>>,
    pub cmdline: Option<Spanned<String>>,
}

/// A serial console: `ttyS<unit>` at `speed` baud, 8n1.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Console {
    /// The serial port number (`ttyS0` → 0): GRUB's `--unit`.
    pub unit: u32,
    /// Baud rate.
    pub speed: u32,
}

impl Console {
    /// The default console of ONIE x86 boxes and of QEMU: `ttyS0,115200`.
    pub const DEFAULT: Console = Console {
        unit: 0,
        speed: 115_200,
    };

    /// Parses `ttyS<N>,<speed>` (an optional `n8` suffix is accepted).
    pub fn parse(s: &str) -> Option<Console> {
        let (dev, speed) = s.split_once(',')?;
        let unit = dev.strip_prefix("ttyS")?.parse().ok()?;
        let speed = speed.strip_suffix("n8").unwrap_or(speed);
        let speed: u32 = speed.parse().ok()?;
        const SPEEDS: [u32; 8] = [
            9600, 19200, 38400, 57600, 115_200, 230_400, 460_800, 921_600,
        ];
        SPEEDS.contains(&speed).then_some(Console { unit, speed })
    }

    /// The kernel's `console=` value, `ttyS0,115200n8`.
    pub fn kernel_arg(&self) -> String {
        format!("ttyS{},{}n8", self.unit, self.speed)
    }
}

/// One box the installer supports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OniePlatform {
    /// `onie_platform`: `<arch>-<vendor>_<model>-r<rev>`.
    pub name: String,
    /// Its serial console.
    pub console: Console,
}

/// The parsed `[onie]` table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Onie {
    /// `onie_machine` the installer is named for (`onie-installer-<arch>-<machine>.bin`).
    pub machine: String,
    /// Supported platforms, in recipe order, each once.
    pub platforms: Vec<OniePlatform>,
    /// GPT partition name and file-system label of the NOS partition.
    pub partition_label: String,
    /// Size of the NOS partition in MiB.
    pub partition_size_mib: u32,
    /// Image version (`image-<version>/` on the partition); `None`: derived
    /// from the build key at build time.
    pub version: Option<String>,
    /// Extra kernel command-line arguments for every platform.
    pub cmdline: String,
}

/// Default `partition-label`, SONiC's.
pub const DEFAULT_PARTITION_LABEL: &str = "SONiC-OS";
/// Default `partition-size-mib`.
pub const DEFAULT_PARTITION_MIB: u32 = 4096;

/// Characters allowed in names that end up in file names, shell variables'
/// values and GRUB configuration unquoted.
fn is_plain(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// Validates `[onie]`.
pub(super) fn parse(src: &SourceText<'_>, raw: &Spanned<RawOnie>) -> Result<Onie, RecipeError> {
    let r = raw.get_ref();
    let machine = r.machine.get_ref();
    if !is_plain(machine, b"_-") {
        return Err(src.error_hint(
            r.machine.span(),
            format!("invalid ONIE machine `{machine}`"),
            Some("letters, digits, `_` and `-`, e.g. `accton_wedge100bf_32x`".into()),
        ));
    }
    let console_of = |s: &Spanned<String>| {
        Console::parse(s.get_ref()).ok_or_else(|| {
            src.error_hint(
                s.span(),
                format!("invalid console `{}`", s.get_ref()),
                Some("write `ttyS<N>,<baud>`, e.g. \"ttyS0,115200\"".into()),
            )
        })
    };
    let default_console = match &r.console {
        Some(c) => console_of(c)?,
        None => Console::DEFAULT,
    };
    if r.platforms.get_ref().is_empty() {
        return Err(src.error(r.platforms.span(), "`platforms` lists no ONIE platform"));
    }
    let mut platforms: Vec<OniePlatform> = Vec::new();
    for p in r.platforms.get_ref() {
        let name = p.get_ref();
        // <arch>-<vendor>_<model>-r<rev>: at least three `-`-separated parts,
        // the last a revision.
        let parts: Vec<&str> = name.split('-').collect();
        let ok = is_plain(name, b"_-.")
            && parts.len() >= 3
            && parts
                .last()
                .is_some_and(|rev| rev.starts_with('r') && rev.len() > 1);
        if !ok {
            return Err(src.error_hint(
                p.span(),
                format!("invalid ONIE platform `{name}`"),
                Some("write `<arch>-<vendor>_<model>-r<rev>`, e.g. `x86_64-accton_wedge100bf_32x-r0`".into()),
            ));
        }
        if platforms.iter().any(|q| q.name == *name) {
            return Err(src.error(p.span(), format!("ONIE platform `{name}` listed twice")));
        }
        platforms.push(OniePlatform {
            name: name.clone(),
            console: default_console.clone(),
        });
    }
    for (name, value) in &r.platform_console {
        let Some(p) = platforms.iter_mut().find(|p| p.name == *name) else {
            return Err(src.error_hint(
                value.span(),
                format!("`platform-console` names `{name}`, which is not in `platforms`"),
                Some("add it to `platforms` or remove this line".into()),
            ));
        };
        p.console = console_of(value)?;
    }
    let partition_label = match &r.partition_label {
        None => DEFAULT_PARTITION_LABEL.to_string(),
        Some(l) => {
            let v = l.get_ref();
            // ext4 labels hold 16 bytes.
            if !is_plain(v, b"_-") || v.len() > 16 {
                return Err(src.error_hint(
                    l.span(),
                    format!("invalid partition label `{v}`"),
                    Some("at most 16 letters, digits, `_` or `-`".into()),
                ));
            }
            v.clone()
        }
    };
    let partition_size_mib = match &r.partition_size_mib {
        None => DEFAULT_PARTITION_MIB,
        Some(s) if *s.get_ref() >= 256 => *s.get_ref(),
        Some(s) => {
            return Err(src.error(
                s.span(),
                format!(
                    "partition-size-mib {} is too small (at least 256)",
                    s.get_ref()
                ),
            ));
        }
    };
    let version = match &r.version {
        None => None,
        Some(v) if is_plain(v.get_ref(), b"._+-") => Some(v.get_ref().clone()),
        Some(v) => {
            return Err(src.error_hint(
                v.span(),
                format!("invalid image version `{}`", v.get_ref()),
                Some("letters, digits, `.`, `_`, `+`, `-` (it names a directory)".into()),
            ));
        }
    };
    let cmdline = match &r.cmdline {
        None => String::new(),
        Some(c) => {
            let v = c.get_ref();
            // It goes into grub.cfg and a shell script unquoted: keep to
            // kernel-argument characters.
            let ok = v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" ._,:=/+-@".contains(&b));
            if !ok {
                return Err(src.error(
                    c.span(),
                    format!("`cmdline` `{v}` has characters that need quoting"),
                ));
            }
            v.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    Ok(Onie {
        machine: machine.clone(),
        platforms,
        partition_label,
        partition_size_mib,
        version,
        cmdline,
    })
}

/// ONIE's name for a Debian architecture (`onie_arch`), if ONIE has one.
pub fn onie_arch(debian_arch: &str) -> Option<&'static str> {
    match debian_arch {
        "amd64" => Some("x86_64"),
        "arm64" => Some("arm64"),
        "armhf" => Some("armhf"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consoles() {
        assert_eq!(
            Console::parse("ttyS1,57600"),
            Some(Console {
                unit: 1,
                speed: 57600
            })
        );
        assert_eq!(Console::parse("ttyS0,115200n8"), Some(Console::DEFAULT));
        assert_eq!(Console::parse("ttyS0,12345"), None);
        assert_eq!(Console::parse("tty0,115200"), None);
        assert_eq!(Console::DEFAULT.kernel_arg(), "ttyS0,115200n8");
    }
}
