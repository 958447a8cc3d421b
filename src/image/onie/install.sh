#!/bin/sh
# imgbuild's ONIE NOS installer. The installer's header runs it from the
# extracted installer/ directory, as root, under ONIE, with ONIE's onie_*
# variables exported. It puts the image on its own GPT partition of the disk
# ONIE boots from, makes GRUB boot it (ONIE stays reachable from the menu)
# and exits 0 only when all of that is done.
#
# Files next to it (written by imgbuild at build time):
#   machine.conf     machine, arch: what the installer is named for
#   platform.conf    part_label, part_size_mib: the NOS partition
#   onie-image.conf  image_name, image_version, image_kernel, image_initrd,
#                    image_cmdline
#   platforms_asic   the onie_platform names this image supports
#   platforms/NAME   per platform: console_unit, console_speed, extra_cmdline
#   fs.zip           boot/, fs.squashfs, platform.tar.gz
set -e

cd "$(dirname "$0")"
here=$(pwd)

say() { echo "installer: $*"; }
die() {
	echo "installer: error: $*" >&2
	exit 1
}

. ./machine.conf
. ./platform.conf
. ./onie-image.conf

# --- Where are we? -------------------------------------------------------
# ONIE exports onie_platform; older ONIE releases only have /etc/machine.conf.
if [ -z "${onie_platform:-}" ] && [ -r /etc/machine.conf ]; then
	. /etc/machine.conf
fi
[ -n "${onie_platform:-}" ] ||
	die "onie_platform is not set: run this installer from ONIE (onie-nos-install URL)"

if ! grep -Fxq "$onie_platform" platforms_asic; then
	die "$image_name $image_version does not support this platform ($onie_platform); it supports: $(tr '\n' ' ' <platforms_asic)"
fi
[ -r "platforms/$onie_platform" ] || die "platforms/$onie_platform is missing"
. "./platforms/$onie_platform"
say "installing $image_name $image_version on $onie_platform"

# --- The disk ONIE boots from --------------------------------------------
onie_part=$(blkid | awk -F: '/LABEL="ONIE-BOOT"/ { print $1; exit }')
[ -n "$onie_part" ] || die "no ONIE-BOOT partition found (blkid)"
# /dev/sda2 → /dev/sda; /dev/nvme0n1p2, /dev/mmcblk0p2, /dev/loop0p2 → …0n1, …0, …0
disk=$(echo "$onie_part" | sed -e 's/[0-9]*$//' -e 's/\([0-9]\)p$/\1/')
[ "$disk" != "$onie_part" ] || die "cannot tell the disk of $onie_part"
part_dev() {
	case "$disk" in
	*[0-9]) echo "${disk}p$1" ;;
	*) echo "$disk$1" ;;
	esac
}
say "ONIE-BOOT is $onie_part on $disk"

# --- The NOS partition: replace ours, never touch another ----------------
# GPT only: on an msdos-labelled disk sgdisk would convert the table to GPT
# in memory and write it back with the first change, rewriting ONIE's disk.
table=$(sgdisk -p "$disk" 2>&1) || die "cannot read the partition table of $disk"
case "$table" in
*"converting MBR to GPT"* | *"Found invalid GPT"* | *"Creating new GPT"*)
	die "$disk has no valid GPT: this installer only installs next to ONIE on a GPT disk"
	;;
esac
for n in $(sgdisk -p "$disk" | awk -v l="$part_label" '$1 ~ /^[0-9]+$/ && $NF == l { print $1 }'); do
	[ "$(part_dev "$n")" != "$onie_part" ] || die "partition $n is ONIE-BOOT, not ours"
	say "removing the previous $part_label partition ($n)"
	sgdisk -d "$n" "$disk"
done
last=$(sgdisk -p "$disk" | awk '$1 ~ /^[0-9]+$/ { n = $1 } END { print n + 0 }')
part=$((last + 1))
say "creating partition $part ($part_label, $part_size_mib MiB)"
sgdisk --new="$part::+${part_size_mib}M" --change-name="$part:$part_label" \
	--typecode="$part:8300" "$disk"
partprobe "$disk" 2>/dev/null || blockdev --rereadpt "$disk" 2>/dev/null || true
dev=$(part_dev "$part")
tries=0
while [ ! -e "$dev" ] && [ "$tries" -lt 10 ]; do
	sleep 1
	tries=$((tries + 1))
done
[ -e "$dev" ] || die "$dev did not appear after partitioning"
mkfs.ext4 -F -q -L "$part_label" "$dev"

# --- The image -----------------------------------------------------------
mnt=$(mktemp -d "${TMPDIR:-/tmp}/nos-mnt.XXXXXX")
mounted=
cleanup() {
	cd /
	if [ -n "$mounted" ]; then umount "$mnt" || true; fi
	rmdir "$mnt" 2>/dev/null || true
}
trap cleanup EXIT
mount -t ext4 "$dev" "$mnt"
mounted=1
image_dir="image-$image_version"
mkdir -p "$mnt/$image_dir"
say "unpacking fs.zip into $image_dir/"
unzip -o -q "$here/fs.zip" -d "$mnt/$image_dir"
for f in "boot/$image_kernel" "boot/$image_initrd" fs.squashfs; do
	[ -s "$mnt/$image_dir/$f" ] || die "$image_dir/$f is missing after unzip"
done
# What ONIE knew about this box, for the NOS.
{
	for v in platform machine arch vendor_id serial_num eth_addr; do
		eval "echo onie_$v=\${onie_$v:-}"
	done
} >"$mnt/machine.conf"

# --- GRUB ----------------------------------------------------------------
firmware=${onie_firmware:-}
if [ -z "$firmware" ]; then
	if [ -d /sys/firmware/efi/efivars ]; then firmware=uefi; else firmware=bios; fi
fi
mkdir -p "$mnt/grub"
if [ "$firmware" = uefi ]; then
	say "installing GRUB for UEFI"
	grub-install --target=x86_64-efi --efi-directory=/boot/efi \
		--bootloader-id="$part_label" --boot-directory="$mnt" --recheck "$disk"
else
	say "installing GRUB for BIOS on $disk"
	grub-install --target=i386-pc --boot-directory="$mnt" --recheck "$disk"
fi

console="ttyS$console_unit,${console_speed}n8"
cmdline="root=LABEL=$part_label rw loop=$image_dir/fs.squashfs loopfstype=squashfs console=tty0 console=$console $image_cmdline $extra_cmdline"
cat >"$mnt/grub/grub.cfg" <<GRUBCFG
# Written by the $image_name installer for $onie_platform.
serial --unit=$console_unit --speed=$console_speed --word=8 --parity=no --stop=1
terminal_input console serial
terminal_output console serial
set timeout=5
set default=0

menuentry '$image_name $image_version' {
	search --no-floppy --label --set=root $part_label
	echo 'Loading $image_name $image_version ...'
	linux /$image_dir/boot/$image_kernel $cmdline
	initrd /$image_dir/boot/$image_initrd
}
GRUBCFG
# ONIE's own entries: ONIE ships a generator for them; else go through
# ONIE's grub.cfg on ONIE-BOOT (the "chainload" back into ONIE).
onie_grub=/mnt/onie-boot/onie/grub.d/50_onie_grub
if [ -x "$onie_grub" ]; then
	"$onie_grub" >>"$mnt/grub/grub.cfg"
else
	cat >>"$mnt/grub/grub.cfg" <<'GRUBCFG'

menuentry 'ONIE' {
	search --no-floppy --label --set=root ONIE-BOOT
	configfile /grub/grub.cfg
}
GRUBCFG
fi

# --- Done ----------------------------------------------------------------
if command -v onie-nos-mode >/dev/null 2>&1; then
	onie-nos-mode -s
fi
sync
umount "$mnt"
mounted=
say "$image_name $image_version installed on $dev"
exit 0
